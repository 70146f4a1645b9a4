//! Starts `filesync serve` on 127.0.0.1 with a throwaway root, host key and client key, and
//! drives real clients against it: OpenSSH `sftp -b` and Python paramiko scripts.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Fails with what to install when a client tool is missing.
pub fn require(tool: &str, install: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(found, "{tool} is missing: install it with `{install}`");
}

pub fn require_paramiko() {
    require("python3", "apt-get install -y python3");
    let ok = Command::new("python3")
        .args(["-c", "import paramiko"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python paramiko is missing: install it with `pip install paramiko`"
    );
}

pub fn keygen(path: &Path) {
    require("ssh-keygen", "apt-get install -y openssh-client");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

/// A temp folder with `root/` (served), `outside/` (must never change), keys and config.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub key: PathBuf,
    pub other_key: PathBuf,
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
    pub config: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_config("")
    }

    /// `extra` is appended to the `[server]` table of the config file.
    pub fn with_config(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"outside the root\n").unwrap();
        let key = dir.path().join("client_key");
        let other_key = dir.path().join("other_key");
        keygen(&key);
        keygen(&other_key);
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized_keys).unwrap();
        let host_key = dir.path().join("state/host_key");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhost_key = {:?}\nauthorized_keys = {:?}\n{extra}\n",
                host_key, authorized_keys
            ),
        )
        .unwrap();
        Fixture {
            dir,
            root,
            outside,
            key,
            other_key,
            host_key,
            authorized_keys,
            config,
        }
    }

    pub fn serve_command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_filesync"));
        c.arg("serve")
            .arg("--root")
            .arg(&self.root)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("FILESYNC_CONFIG", &self.config)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env_remove("STATE_DIRECTORY")
            .env("RUST_LOG", "filesync=debug");
        c
    }

    pub fn start(&self) -> Server {
        let log = self
            .dir
            .path()
            .join(format!("server-{}.log", rand_suffix()));
        let mut child = self
            .serve_command()
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start filesync serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let mut server = Server {
            child,
            port: 0,
            log,
            fx_root: self.root.clone(),
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let addr = line
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
                server.port = addr.rsplit(':').next().unwrap().parse().unwrap();
            }
            Err(_) => panic!("server did not start; log:\n{}", server.log_text()),
        }
        server
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    fx_root: PathBuf,
}

impl Server {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs OpenSSH `sftp -b -` with `batch` on stdin, as `user` with `key`.
    pub fn sftp_as(&self, user: &str, key: &Path, batch: &str) -> Output {
        require("sftp", "apt-get install -y openssh-client");
        let mut child = Command::new("sftp")
            .args([
                "-b",
                "-",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-P",
            ])
            .arg(self.port.to_string())
            .arg("-i")
            .arg(key)
            .arg(format!("{user}@127.0.0.1"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sftp");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn sftp(&self, key: &Path, batch: &str) -> Output {
        self.sftp_as("tester", key, batch)
    }

    /// Runs `tests/clients/<script>` with python3: args are port, key, root, then `extra`.
    pub fn paramiko(&self, script: &str, key: &Path, extra: &[&str]) -> Output {
        require_paramiko();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(script);
        Command::new("python3")
            .arg(path)
            .arg(self.port.to_string())
            .arg(key)
            .arg(&self.fx_root)
            .args(extra)
            .output()
            .expect("run python3")
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir` with its bytes, for "nothing outside changed" checks.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else if ft.is_symlink() {
                out.push((
                    p.clone(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Deterministic pseudo-random bytes (xorshift), so big files need no fixture on disk.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}
