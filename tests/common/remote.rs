//! A throwaway OpenSSH `sshd` on 127.0.0.1 (from `../shared/peers/start-sshd.sh`), a fake HOME
//! with the client key and known_hosts, and the real `filesync` binary driven against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_filesync")
}

fn start_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/start-sshd.sh")
}

/// True when this machine can run the sshd tests (sshd and the shared script are there).
pub fn sshd_available() -> bool {
    let sshd = Path::new("/usr/sbin/sshd").exists()
        || Command::new("sh")
            .args(["-c", "command -v sshd"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !sshd || !start_script().exists() {
        eprintln!("skipping: sshd or ../shared/peers/start-sshd.sh missing");
        return false;
    }
    true
}

/// An OpenSSH server serving this user's files on a loopback port; stopped on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub user: String,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_start(dir.path(), None);
        let get = |k: &str| -> String {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("start-sshd.sh printed no {k}: {out}"))
                .to_string()
        };
        Sshd {
            port: get("SSHD_PORT").parse().expect("port"),
            key: get("SSHD_KEY").into(),
            known_hosts: get("SSHD_KNOWN_HOSTS").into(),
            user: get("SSHD_USER"),
            dir,
        }
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("sshd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Kills the listener and every session process it forked: connections drop at once.
    pub fn kill(&self) {
        let Some(pid) = self.pid() else { return };
        for p in descendants(pid).into_iter().chain([pid]) {
            unsafe_kill(p);
        }
        let _ = std::fs::remove_file(self.dir.path().join("sshd.pid"));
        // Let the port go.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Starts the server again on the same port with the same keys.
    pub fn restart(&self) {
        self.kill();
        for _ in 0..50 {
            let out = Command::new("bash")
                .arg(start_script())
                .arg(self.dir.path())
                .arg(self.port.to_string())
                .output()
                .expect("start-sshd.sh");
            if out.status.success() && self.pid().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not restart on port {}", self.port);
    }

    /// Restarts the server with extra flags for its SFTP subsystem (e.g. `-R`: read-only).
    pub fn restart_sftp_flags(&self, flags: &str) {
        self.kill();
        let cfg = self.dir.path().join("sshd_config");
        let text = std::fs::read_to_string(&cfg).expect("sshd_config");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("Subsystem sftp") {
                    format!("Subsystem sftp internal-sftp {flags}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&cfg, text).expect("write sshd_config");
        let sshd = if Path::new("/usr/sbin/sshd").exists() {
            "/usr/sbin/sshd"
        } else {
            "sshd"
        };
        for _ in 0..50 {
            let st = Command::new(sshd)
                .arg("-f")
                .arg(&cfg)
                .arg("-E")
                .arg(self.dir.path().join("sshd.log"))
                .status()
                .expect("run sshd");
            for _ in 0..20 {
                if st.success() && self.pid().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("sshd did not restart on port {}", self.port);
    }

    pub fn url(&self, path: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// A HOME holding `.ssh/id_ed25519` and (when `trusted`) the server in known_hosts.
    pub fn home(&self, trusted: bool) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("tempdir");
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir .ssh");
        std::fs::copy(&self.key, ssh.join("id_ed25519")).expect("copy key");
        if trusted {
            std::fs::copy(&self.known_hosts, ssh.join("known_hosts")).expect("copy known_hosts");
        }
        home
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run_start(dir: &Path, port: Option<u16>) -> String {
    let mut c = Command::new("bash");
    c.arg(start_script()).arg(dir);
    if let Some(p) = port {
        c.arg(p.to_string());
    }
    let out = c.output().expect("run start-sshd.sh");
    assert!(
        out.status.success(),
        "start-sshd.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unsafe_kill(pid: i32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).output();
}

/// Processes below `pid` (read from /proc), so only what this test's sshd forked is killed.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == q && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Runs `filesync sync REMOTE LOCAL` as a user whose HOME is `home`.
pub fn sync(home: &Path, remote: &str, local: &Path, extra: &[&str]) -> Output {
    command(home, remote, local, extra)
        .output()
        .expect("run filesync")
}

pub fn command(home: &Path, remote: &str, local: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("sync")
        .arg(remote)
        .arg(local)
        .arg("--no-progress")
        .args(extra)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("FILESYNC_CONFIG")
        .env_remove("RUST_LOG");
    // Client logs for debugging a test: TEST_CLIENT_LOG=filesync=debug cargo test ...
    if let Ok(v) = std::env::var("TEST_CLIENT_LOG") {
        c.env("RUST_LOG", v);
    }
    c
}

/// A sync that must succeed; returns stdout.
pub fn sync_ok(home: &Path, remote: &str, local: &Path) -> String {
    let out = sync(home, remote, local, &[]);
    assert!(
        out.status.success(),
        "sync failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every user file below `root` (not ours: no index, lock, trash or temp files), with content.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let name = e.file_name().to_string_lossy().into_owned();
            if d == root && (name.starts_with(".sync") && name != ".syncignore") {
                continue;
            }
            if name.contains(".sync-tmp.") {
                continue;
            }
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// Temp files anywhere below `root` (leftovers a finished sync must not leave in user folders).
pub fn temps(root: &Path) -> Vec<String> {
    tree_names(root)
        .into_iter()
        .filter(|n| n.contains(".sync-tmp."))
        .collect()
}

fn tree_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".sync-trash") {
                continue;
            }
            out.push(p.to_string_lossy().into_owned());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out
}

pub fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, bytes).expect("write");
}

/// Sets a file's mtime to `secs` relative to now (negative: in the past).
pub fn set_mtime(path: &Path, secs_from_now: i64) {
    let now = std::time::SystemTime::now();
    let t = if secs_from_now >= 0 {
        now + Duration::from_secs(secs_from_now as u64)
    } else {
        now - Duration::from_secs(secs_from_now.unsigned_abs())
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for mtime");
    f.set_modified(t).expect("set mtime");
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
