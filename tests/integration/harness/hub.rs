//! `Hub`: our own SFTP server on 127.0.0.1 (`filesync serve`, or `filesync daemon` with
//! `[server]`, the hub's real process) with a throwaway root, host key and client keys, and
//! the real clients that drive it: OpenSSH `sftp -b` and scripts in `tests/clients/`.

use super::sandbox::command_in;
use super::{Folder, Ran, Sandbox, require, require_python, signal};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Which of our processes serves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HubKind {
    /// `filesync serve`: the SFTP server alone.
    Serve,
    /// `filesync daemon`: watcher, index and server together, as on the Pi.
    Daemon,
}

pub struct Hub {
    /// The served folder.
    pub root: Folder,
    /// A folder beside the root that no client may ever change.
    pub outside: Folder,
    /// An authorized client key (ed25519), and one that is not.
    pub key: PathBuf,
    pub other_key: PathBuf,
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
    pub config: PathBuf,
    pub kind: HubKind,
    pub port: u16,
    pub log: PathBuf,
    /// Serve as `nobody` when the tests run as root (its files must be given to it).
    pub nobody: bool,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    sandbox: PathBuf,
    child: Option<Child>,
}

impl Hub {
    /// A hub's files in `sb` (not started); `server` is added to the `[server]` table.
    pub fn new(sb: &Sandbox, kind: HubKind, server: &str) -> Hub {
        let dir = sb.path().join("hub");
        let root = sb.folder("hub/root");
        let outside = sb.folder("hub/outside");
        outside.write("secret", "outside the root\n");
        let key = sb.keygen("hub/client_key", "ed25519");
        let other_key = sb.keygen("hub/other_key", "ed25519");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized_keys).expect("authorized_keys");
        let host_key = dir.join("state/host_key");
        // One port for the hub's whole life: a restarted hub is where its clients knew it.
        let port = super::free_port();
        let config = sb.file(
            "hub/config.toml",
            &format!(
                "name = \"hub\"\n[server]\nlisten = \"127.0.0.1:{port}\"\nhost_key = {host_key:?}\n\
                 state_dir = {:?}\n\
                 authorized_keys = {authorized_keys:?}\n{server}\n",
                dir.join("state")
            ),
        );
        Hub {
            root,
            outside,
            key,
            other_key,
            host_key,
            authorized_keys,
            config,
            kind,
            port,
            log: dir.join("server.log"),
            nobody: false,
            netns: None,
            sandbox: sb.path().to_path_buf(),
            child: None,
        }
    }

    /// The command that starts this hub (`serve` or `daemon`), for a test to run itself.
    pub fn command(&self) -> Command {
        let args: &[&str] = match self.kind {
            HubKind::Serve => &["serve"],
            HubKind::Daemon => &["daemon"],
        };
        let mut c = command_in(&self.sandbox, &self.config);
        c.env("RUST_LOG", "filesync=debug,info")
            .args(args)
            .arg("--root")
            .arg(&self.root.path);
        let c = if self.nobody {
            super::unprivileged(c)
        } else {
            c
        };
        match &self.netns {
            Some(ns) => super::Netns::wrap_named(ns, &c),
            None => c,
        }
    }

    /// Starts it and waits until it accepts connections.
    pub fn start(&mut self) -> &mut Self {
        self.stop_now();
        let log = std::fs::File::create(&self.log).expect("log file");
        let mut c = self.command();
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = c.spawn().expect("start the hub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        self.child = Some(child);
        let up = match self.kind {
            // One machine-readable line on stdout: `listening on ADDR`.
            HubKind::Serve => rx
                .recv_timeout(Duration::from_secs(30))
                .is_ok_and(|l| l.starts_with("listening on ")),
            // The daemon logs `serving SFTP` once its port is bound.
            HubKind::Daemon => super::wait_until(Duration::from_secs(30), || {
                self.log_text().contains("serving SFTP")
            }),
        };
        assert!(up, "the hub did not start; log:\n{}", self.log_text());
        self
    }

    /// A started hub of `kind` in `sb`.
    pub fn started(sb: &Sandbox, kind: HubKind, server: &str) -> Hub {
        let mut h = Hub::new(sb, kind, server);
        h.start();
        h
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("sftp://tester@127.0.0.1:{}/", self.port)
    }

    /// known_hosts lines naming this hub's host keys.
    pub fn known_hosts(&self) -> String {
        let mut out = String::new();
        for k in self.host_keys() {
            let o = Command::new("ssh-keygen")
                .arg("-y")
                .arg("-f")
                .arg(&k)
                .output()
                .expect("ssh-keygen -y");
            let pubkey = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if !pubkey.is_empty() {
                out.push_str(&format!("[127.0.0.1]:{} {pubkey}\n", self.port));
            }
        }
        out
    }

    /// The private host key files next to `host_key` (the hub keeps one of each kind there).
    pub fn host_keys(&self) -> Vec<PathBuf> {
        let dir = self.host_key.parent().unwrap_or(Path::new("."));
        let mut keys: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("host_key"))
                    && p.extension().is_none_or(|e| e != "pub")
            })
            .collect();
        keys.sort();
        keys
    }

    /// OpenSSH client options that log in to this hub with the test key, trusting its host
    /// key without asking (the port is given apart: `-p` for ssh, `-P` for scp and sftp).
    pub fn ssh_options(&self) -> Vec<String> {
        let mut o: Vec<String> = [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ]
        .iter()
        .flat_map(|opt| ["-o".to_string(), opt.to_string()])
        .collect();
        o.extend(["-i".to_string(), self.key.display().to_string()]);
        o
    }

    /// Runs OpenSSH `sftp -b -` with `batch` on stdin, as `user` with `key`.
    pub fn sftp_as(&self, user: &str, key: &Path, batch: &str) -> Ran {
        require("sftp");
        let mut child = Command::new("sftp")
            .args(["-b", "-", "-o", "StrictHostKeyChecking=no"])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-P"])
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
            .expect("stdin")
            .write_all(batch.as_bytes())
            .expect("write batch");
        ran(child.wait_with_output().expect("sftp"))
    }

    pub fn sftp(&self, batch: &str) -> Ran {
        self.sftp_as("tester", &self.key, batch)
    }

    /// Runs `tests/clients/<script>` with python3 (paramiko): args are port, key, root, then
    /// `extra`.
    pub fn python(&self, script: &str, key: &Path, extra: &[&str]) -> Ran {
        ran(self
            .python_cmd(script, key, extra)
            .output()
            .expect("run python3"))
    }

    /// The command `python` runs, for a test to spawn beside other work.
    pub fn python_cmd(&self, script: &str, key: &Path, extra: &[&str]) -> Command {
        require_python("paramiko");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(script);
        let mut c = Command::new("python3");
        c.arg(path)
            .arg(self.port.to_string())
            .arg(key)
            .arg(&self.root.path)
            .args(extra);
        c
    }

    /// The same, failing the test (with the hub's log) unless the script succeeds.
    #[track_caller]
    pub fn python_ok(&self, script: &str, extra: &[&str]) -> Ran {
        let o = self.python(script, &self.key, extra);
        assert!(o.status.success(), "{o}\nhub log:\n{}", self.log_text());
        o
    }

    /// Sends SIGTERM; whether it exited successfully within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        signal(child.id(), libc::SIGTERM);
        let ok = super::wait_until(limit, || child.try_wait().ok().flatten().is_some());
        let status = child.try_wait().ok().flatten();
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
        }
        status.is_some_and(|s| s.success())
    }

    /// Kills it at once (every session with it: they are threads of one process).
    pub fn kill(&mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn ran(o: std::process::Output) -> Ran {
    Ran {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
