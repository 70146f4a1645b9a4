//! `Sandbox`: one test's private world (HOME, runtime folder, config file, folders, keys) and
//! the real `filesync` binary run inside it: one-shot commands through the `Run` builder,
//! daemons as `Daemon`s that are stopped when dropped.

use super::{BIN, Folder, require, signal};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["home/.ssh", "run"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("sandbox folders");
        }
        std::fs::write(tmp.path().join("config.toml"), "").expect("config");
        Sandbox { tmp }
    }

    /// A sandbox whose config file holds `toml`.
    pub fn with_config(toml: &str) -> Self {
        let sb = Self::new();
        sb.set_config(toml);
        sb
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    pub fn set_config(&self, toml: &str) {
        std::fs::write(self.config(), toml).expect("write config");
    }

    /// A file in the sandbox holding `text` (another config, an authorized_keys, ...).
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// The folder `name` in the sandbox (created; its path canonical, as the binary sees it).
    pub fn folder(&self, name: &str) -> Folder {
        let f = Folder::at(self.path().join(name));
        Folder {
            path: std::fs::canonicalize(&f.path).expect("canonical"),
        }
    }

    /// An unencrypted OpenSSH key pair `name` (and `name.pub`) of `kind` (ed25519, ecdsa, rsa).
    pub fn keygen(&self, name: &str, kind: &str) -> PathBuf {
        let p = self.path().join(name);
        if !p.exists() {
            keygen(&p, kind, &[]);
        }
        p
    }

    /// The binary with this sandbox's HOME, runtime folder and config, and nothing else of
    /// the caller's environment (no agent, no user config); warnings only on stderr.
    pub fn filesync(&self) -> Run {
        self.filesync_with(&self.config())
    }

    pub fn filesync_with(&self, config: &Path) -> Run {
        Run(command_in(self.path(), config))
    }

    /// `filesync daemon --root ROOT` with the sandbox's config, logging at debug to a file.
    pub fn daemon(&self, root: &Path) -> Daemon {
        self.daemon_with(root, &self.config(), &[])
    }

    /// A daemon with its own config file and extra environment (a second replica, systemd's
    /// variables).
    pub fn daemon_with(&self, root: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned());
        let log = self.path().join(format!(
            "daemon-{}-{}.log",
            name.unwrap_or_default(),
            super::now_secs()
        ));
        let f = std::fs::File::create(&log).expect("log file");
        let mut run = self
            .filesync_with(config)
            .env("RUST_LOG", "filesync=debug,info")
            .arg("daemon")
            .arg("--root")
            .arg(root);
        for (k, v) in env {
            run = run.env(k, v);
        }
        let mut c = run.command();
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(f);
        Daemon {
            child: c.spawn().expect("spawn daemon"),
            log,
        }
    }
}

/// The binary as a sandbox at `dir` runs it (see `Sandbox::filesync`).
pub fn command_in(dir: &Path, config: &Path) -> Command {
    let home = dir.join("home");
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("TEST_CLIENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .arg("--config")
        .arg(config);
    c
}

/// An unencrypted OpenSSH key pair of `kind` at `path`.
pub fn keygen_at(path: &Path, kind: &str) {
    keygen(path, kind, &[]);
}

/// The same in the older PEM format.
pub fn keygen_pem(path: &Path, kind: &str) {
    keygen(path, kind, &["-m", "PEM"]);
}

/// Makes an OpenSSH key pair at `path` with `ssh-keygen` (`extra`: e.g. `-m PEM`).
pub fn keygen(path: &Path, kind: &str, extra: &[&str]) {
    require("ssh-keygen");
    let bits: &[&str] = match kind {
        "rsa" => &["-b", "3072"],
        "ecdsa" => &["-b", "256"],
        _ => &[],
    };
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "filesync-test"])
        .args(bits)
        .args(extra)
        .arg("-f")
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen -t {kind} failed");
}

/// A command being put together: `sb.filesync().args(["sync", a, b]).ok()`.
pub struct Run(Command);

impl Run {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.0.arg(a);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, a: I) -> Self {
        self.0.args(a);
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.0.env(k, v);
        self
    }

    /// Run as `nobody` when the tests run as root (see `harness::unprivileged`).
    pub fn unprivileged(self) -> Self {
        Run(super::unprivileged(self.0))
    }

    /// The command itself, to spawn and control.
    pub fn command(self) -> Command {
        self.0
    }

    /// Starts it in the background, its stderr kept for `wait_with_output` (a test that
    /// stops or kills it mid-way reads what it said).
    pub fn spawn(self) -> std::process::Child {
        self.command()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn filesync")
    }

    /// Runs it to the end.
    pub fn output(mut self) -> Ran {
        let o = self.0.output().expect("run filesync");
        Ran {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs it; it must succeed.
    #[track_caller]
    pub fn ok(self) -> Ran {
        let r = self.output();
        assert!(r.status.success(), "failed: {r}");
        r
    }

    /// Runs it; it must fail.
    #[track_caller]
    pub fn fails(self) -> Ran {
        let r = self.output();
        assert!(!r.status.success(), "succeeded: {r}");
        r
    }
}

/// What a finished command did.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Its stderr is one line that holds every one of `words`.
    #[track_caller]
    pub fn one_line_error(&self, words: &[&str]) {
        assert_eq!(
            self.stderr.trim().lines().count(),
            1,
            "not one line: {self}"
        );
        for w in words {
            assert!(self.stderr.contains(w), "no {w:?} in: {self}");
        }
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A running daemon; killed on drop if the test did not stop it.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn signal(&self, sig: i32) {
        signal(self.child.id(), sig);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.log().contains(needle))
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
