//! OpenSSH's `sshd` on 127.0.0.1, started by the test in a folder of its own (keys, config,
//! log), key login only, serving this user's files; stopped with every session on drop.

use super::sandbox::keygen;
use super::{free_port, require, signal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The client's private key (authorized).
    pub key: PathBuf,
    /// A known_hosts file naming this server.
    pub known_hosts: PathBuf,
    pub user: String,
    child: Option<Child>,
}

fn sshd_bin() -> &'static str {
    if Path::new("/usr/sbin/sshd").exists() {
        "/usr/sbin/sshd"
    } else {
        "sshd"
    }
}

impl Sshd {
    /// Starts a new server; fails the test (naming the package) when sshd is missing.
    pub fn start() -> Sshd {
        require("sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_ed25519"), "ed25519", &[]);
        keygen(&d.join("client_ed25519"), "ed25519", &[]);
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let port = free_port();
        let host_pub = std::fs::read_to_string(d.join("host_ed25519.pub")).expect("host key");
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {key}\n"))
            .expect("known_hosts");
        let user = String::from_utf8_lossy(
            &Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .trim()
        .to_string();
        let mut s = Sshd {
            key: d.join("client_ed25519"),
            known_hosts,
            user,
            port,
            child: None,
            dir,
        };
        s.write_config("");
        s.launch();
        s
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// The server's config; `sftp_flags` go to its SFTP subsystem (e.g. `-R`: read-only).
    fn write_config(&self, sftp_flags: &str) {
        let d = self.dir.path().display();
        let text = format!(
            "ListenAddress 127.0.0.1\nPort {}\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             MaxStartups 100:30:200\nMaxSessions 100\n\
             Subsystem sftp internal-sftp {sftp_flags}\nLogLevel ERROR\n",
            self.port
        );
        std::fs::write(self.config(), text).expect("sshd_config");
    }

    /// Runs sshd in the foreground (`-D`) until it accepts connections on its port.
    fn launch(&mut self) {
        // Privilege separation wants this folder when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        for _ in 0..50 {
            let child = Command::new(sshd_bin())
                .arg("-D")
                .arg("-f")
                .arg(self.config())
                .arg("-E")
                .arg(self.dir.path().join("sshd.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run sshd");
            self.child = Some(child);
            let up = super::wait_until(Duration::from_secs(5), || {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() || self.exited()
            });
            // A port someone else took answers too: our sshd then exits at once.
            std::thread::sleep(Duration::from_millis(100));
            if up && !self.exited() {
                return;
            }
            // The port was taken (or freed too late): try again.
            self.kill();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "sshd did not start on port {}: {}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
        );
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Kills the listener and every session it forked: connections drop at once.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        for p in descendants(child.id()) {
            signal(p, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Restarts it with flags for its SFTP subsystem (`-R`: read-only; "" for none).
    pub fn restart_sftp_flags(&mut self, flags: &str) {
        self.kill();
        self.write_config(flags);
        self.launch();
    }

    /// From now on clients log in as `nobody` when the tests run as root (the sessions then
    /// meet permissions as a user's do); its files must be given to it.
    pub fn log_in_as_nobody(&mut self) {
        if !super::is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        // sshd reads the authorized keys as the user logging in.
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the sshd folder");
        self.user = "nobody".into();
    }

    pub fn url(&self, path: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// Puts the client key into `home/.ssh/id_ed25519`, and (when `trusted`) the server into
    /// its known_hosts.
    pub fn install_client(&self, home: &Path, trusted: bool) {
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir .ssh");
        std::fs::copy(&self.key, ssh.join("id_ed25519")).expect("copy key");
        if trusted {
            std::fs::copy(&self.known_hosts, ssh.join("known_hosts")).expect("known_hosts");
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Processes below `pid` (read from /proc), so only what this test's sshd forked is killed.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parent_of.push((p, ppid));
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
