//! `Pair`: two replicas and the real binary between them, so a test reads as "edit here, edit
//! there, sync, expect these trees". `a` is a folder on this machine; `b` is the other
//! replica's folder, reached as a local path, through our hub, or through OpenSSH's sshd.

use super::{Folder, Hub, HubKind, Ran, Run, Sandbox, Sshd};

pub enum Remote {
    Local,
    Hub(Hub),
    Sshd(Sshd),
}

pub struct Pair {
    pub sb: Sandbox,
    /// The local replica (the second argument of `filesync sync`).
    pub a: Folder,
    /// The other replica's folder, as it is on disk.
    pub b: Folder,
    pub remote: Remote,
    /// The far side (and with two local folders, the whole sync) runs as `nobody`.
    nobody: bool,
}

impl Pair {
    /// Two folders on this machine.
    pub fn local() -> Pair {
        let sb = Sandbox::new();
        let (a, b) = (sb.folder("a"), sb.folder("b"));
        Pair {
            sb,
            a,
            b,
            remote: Remote::Local,
            nobody: false,
        }
    }

    /// A local folder and the root of our hub (`kind`: `filesync serve` or the daemon).
    pub fn hub(kind: HubKind) -> Pair {
        let sb = Sandbox::new();
        let a = sb.folder("a");
        let hub = Hub::new(&sb, kind, "");
        std::fs::copy(&hub.key, sb.home().join(".ssh/id_ed25519")).expect("client key");
        let b = Folder {
            path: hub.root.path.clone(),
        };
        let mut p = Pair {
            sb,
            a,
            b,
            remote: Remote::Hub(hub),
            nobody: false,
        };
        p.restart_server();
        p
    }

    /// A local folder and a folder served by OpenSSH's sshd.
    pub fn sshd() -> Pair {
        let sb = Sandbox::new();
        let a = sb.folder("a");
        let b = sb.folder("remote");
        let sshd = Sshd::start();
        sshd.install_client(&sb.home(), true);
        Pair {
            sb,
            a,
            b,
            remote: Remote::Sshd(sshd),
            nobody: false,
        }
    }

    /// From now on the far side runs as `nobody` when the tests run as root (two local
    /// folders: the whole sync), so permissions bind it as they bind a user: our hub serves as
    /// nobody, OpenSSH's sessions log in as nobody. Each sync gives the sandbox to nobody
    /// first, so files the test writes as root stay the far side's to change.
    pub fn as_nobody(&mut self) {
        self.nobody = true;
        super::give_to_nobody(self.sb.path());
        match &mut self.remote {
            Remote::Local => {}
            Remote::Sshd(s) => s.log_in_as_nobody(),
            Remote::Hub(h) => {
                h.nobody = true;
                self.restart_server();
            }
        }
    }

    /// The hub of a hub pair.
    pub fn hub_ref(&self) -> &Hub {
        match &self.remote {
            Remote::Hub(h) => h,
            _ => panic!("not a hub pair"),
        }
    }

    pub fn sshd_mut(&mut self) -> &mut Sshd {
        match &mut self.remote {
            Remote::Sshd(s) => s,
            _ => panic!("not an sshd pair"),
        }
    }

    /// How `filesync sync` names the other replica.
    pub fn target(&self) -> String {
        match &self.remote {
            Remote::Local => self.b.s().to_string(),
            Remote::Hub(h) => h.url(),
            Remote::Sshd(s) => s.url(&self.b.path),
        }
    }

    /// `filesync sync --no-progress TARGET A`, not yet run.
    pub fn sync_cmd(&self) -> Run {
        let run = self
            .sb
            .filesync()
            .args(["sync", "--no-progress"])
            .arg(self.target())
            .arg(&self.a.path);
        if !self.nobody {
            return run;
        }
        super::give_to_nobody(self.sb.path());
        match self.remote {
            Remote::Local => run.unprivileged(),
            _ => run,
        }
    }

    /// A sync that must succeed; its stdout.
    #[track_caller]
    pub fn sync(&self) -> String {
        let r = self.sync_cmd().output();
        assert!(r.status.success(), "sync failed: {r}{}", self.server_log());
        r.stdout
    }

    /// A sync that must fail.
    #[track_caller]
    pub fn sync_fails(&self) -> Ran {
        self.sync_cmd().fails()
    }

    /// Syncs, checks both trees are equal, and that a second sync moves nothing and rewrites
    /// no local index.
    #[track_caller]
    pub fn sync_and_settle(&self) -> String {
        let first = self.sync();
        self.assert_same();
        let stamp = |f: &Folder| {
            std::fs::metadata(f.p(".sync"))
                .and_then(|m| m.modified())
                .ok()
        };
        let before = (stamp(&self.a), stamp(&self.b));
        let second = self.sync();
        if matches!(self.remote, Remote::Local) {
            assert_eq!(
                before,
                (stamp(&self.a), stamp(&self.b)),
                "a no-op sync rewrote an index"
            );
        }
        assert!(
            second.contains(
                "sent 0 files (0 B), received 0 files (0 B), moved 0, deleted 0, conflicts 0"
            ),
            "second sync was not a no-op: {second}"
        );
        first
    }

    /// Both sides hold the same user files, and no temp file is left in them.
    #[track_caller]
    pub fn assert_same(&self) {
        let (a, b) = (self.a.tree(), self.b.tree());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "trees differ"
        );
        assert!(a == b, "file contents differ");
        assert_eq!(self.a.temp_files(), Vec::<String>::new());
        // Our server's index refresh leaves a killed client's temps to its own rules (they are
        // hidden and ignored); everywhere else the sync's scan removes them at once.
        if !matches!(self.remote, Remote::Hub(_)) {
            assert_eq!(self.b.temp_files(), Vec::<String>::new());
        }
    }

    /// Kills the server and every session it serves: connections drop at once.
    pub fn kill_server(&mut self) {
        match &mut self.remote {
            Remote::Local => {}
            Remote::Sshd(s) => s.kill(),
            Remote::Hub(h) => h.kill(),
        }
    }

    /// Starts the server again (our hub picks a new port: known_hosts follows).
    pub fn restart_server(&mut self) {
        let home = self.sb.home();
        match &mut self.remote {
            Remote::Local => {}
            Remote::Sshd(s) => s.restart(),
            Remote::Hub(h) => {
                h.start();
                std::fs::write(home.join(".ssh/known_hosts"), h.known_hosts())
                    .expect("write known_hosts");
            }
        }
    }

    fn server_log(&self) -> String {
        match &self.remote {
            Remote::Hub(h) => format!("\nhub log:\n{}", h.log_text()),
            _ => String::new(),
        }
    }
}
