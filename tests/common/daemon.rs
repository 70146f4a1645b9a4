//! Running the real `filesync` binary as a daemon in a throwaway environment: its own HOME,
//! runtime folder and config file, stderr captured to a file, always stopped on drop.

use filesync::index::{Kind, from_json_slice};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_filesync");

/// A private HOME, runtime folder and config file for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    pub fn new(config: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        std::fs::create_dir_all(dir.path().join("run")).expect("run");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("config");
        Env {
            dir,
            config: config_path,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new empty folder under the test's temp dir.
    pub fn folder(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).expect("folder");
        std::fs::canonicalize(&p).expect("canonical")
    }

    pub fn command(&self) -> Command {
        self.command_with(&self.config)
    }

    pub fn command_with(&self, config: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("RUST_LOG", "filesync=debug,info")
            .env("NO_COLOR", "1")
            .arg("--config")
            .arg(config);
        c
    }

    /// Runs a one-shot command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run filesync")
    }

    pub fn daemon(&self, root: &Path, extra_env: &[(&str, &str)]) -> Daemon {
        self.daemon_with(root, &self.config, extra_env)
    }

    /// A daemon with its own config file (a second replica in the same test).
    pub fn daemon_with(&self, root: &Path, config: &Path, extra_env: &[(&str, &str)]) -> Daemon {
        let log = self.path().join(format!(
            "daemon-{}.log",
            root.file_name().unwrap().to_string_lossy()
        ));
        let f = std::fs::File::create(&log).expect("log file");
        let mut c = self.command_with(config);
        c.arg("daemon")
            .arg("--root")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let child = c.spawn().expect("spawn daemon");
        Daemon { child, log }
    }
}

/// A running daemon; killed on drop if the test did not stop it.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// SIGTERM, then the exit status (killed after 15 s).
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a live entry records, as the scan would see it: folders by kind only (their mtime is
/// the one first seen), files by size, hash and mtime.
pub type Live = BTreeMap<String, (Kind, u64, Option<String>, Option<(i64, u32)>)>;

pub fn live_entries(root: &Path) -> Option<Live> {
    let bytes = std::fs::read(root.join(".sync")).ok()?;
    let idx = from_json_slice(&bytes).ok()?;
    Some(
        idx.live()
            .map(|(p, e)| {
                let file = e.kind == Kind::File;
                (
                    p.to_string(),
                    (
                        e.kind,
                        e.size,
                        e.hash.map(|h| h.to_hex()),
                        file.then_some((e.mtime.secs, e.mtime.nanos)),
                    ),
                )
            })
            .collect(),
    )
}

/// The version counters of every entry, by path.
pub fn counters(root: &Path) -> BTreeMap<String, u64> {
    let bytes = std::fs::read(root.join(".sync")).expect("read .sync");
    let idx = from_json_slice(&bytes).expect("parse .sync");
    idx.entries
        .iter()
        .map(|(p, e)| (p.to_string(), e.vv.iter().map(|(_, n)| n).sum()))
        .collect()
}

/// What `filesync index` makes of a copy of `root` (mtimes kept) from scratch.
pub fn fresh_index(env: &Env, root: &Path) -> Live {
    let copy = env.path().join(format!(
        "fresh-{}-{}",
        root.file_name().unwrap().to_string_lossy(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    copy_tree(root, &copy);
    let out = env.run(&["index", "--root", copy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = live_entries(&copy).expect("fresh index");
    let _ = std::fs::remove_dir_all(&copy);
    live
}

/// Waits until the daemon's `.sync` under `root` equals a from-scratch index of the folder.
pub fn wait_index_matches(env: &Env, root: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        // Quiet first: a copy taken mid-update would compare against a moving target.
        let fresh = fresh_index(env, root);
        let got = live_entries(root);
        if got.as_ref() == Some(&fresh) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let got = got.unwrap_or_default();
            let missing: Vec<_> = fresh
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !fresh.contains_key(*k))
                .take(5)
                .collect();
            let differ: Vec<_> = fresh
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .take(5)
                .collect();
            return Err(format!(
                "index differs from a fresh scan: {} vs {} entries; missing {missing:?}, extra {extra:?}, differ {differ:?}",
                got.len(),
                fresh.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Copies a folder with file mtimes, skipping our internal files; things vanishing mid-copy
/// (the daemon's temp files) are skipped.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    let Ok(rd) = std::fs::read_dir(from) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".sync"
            || name.starts_with(".sync.")
            || name.starts_with(".sync-")
            || name.contains(".sync-tmp.")
        {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        let dst = to.join(&name);
        if ft.is_dir() {
            copy_tree(&e.path(), &dst);
        } else if ft.is_file() {
            let Ok(meta) = e.metadata() else { continue };
            if std::fs::copy(e.path(), &dst).is_ok()
                && let (Ok(f), Ok(m)) = (
                    std::fs::File::options().write(true).open(&dst),
                    meta.modified(),
                )
            {
                let _ = f.set_modified(m);
            }
        }
    }
}
