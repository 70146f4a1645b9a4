//! `Netns`: a network namespace the test makes (`ip netns add`), deleted when dropped, and a
//! veth cable between two of them: a small private network where multicast (mDNS) works and
//! nothing reaches the machine's own. Needs root.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    super::require("ip");
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Netns {
    pub fn new() -> Netns {
        super::require_root("it makes network namespaces");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("fs{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Joins `a` (address `a_ip`/24) and `b` (`b_ip`/24) with a veth pair.
    pub fn cable(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let (ea, eb) = (
            format!("va{}{n}", std::process::id() % 100_000),
            format!("vb{}{n}", std::process::id() % 100_000),
        );
        ip(&["link", "add", &ea, "type", "veth", "peer", "name", &eb]);
        ip(&["link", "set", &ea, "netns", &a.name]);
        ip(&["link", "set", &eb, "netns", &b.name]);
        for (ns, dev, addr) in [(a, &ea, a_ip), (b, &eb, b_ip)] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]);
            ip(&["-n", &ns.name, "link", "set", dev, "multicast", "on", "up"]);
        }
    }

    /// `c` run inside this namespace (same program, arguments and environment).
    pub fn wrap(&self, c: &Command) -> Command {
        Netns::wrap_named(&self.name, c)
    }

    pub fn wrap_named(name: &str, c: &Command) -> Command {
        let mut w = Command::new("ip");
        w.args(["netns", "exec", name])
            .arg(c.get_program())
            .args(c.get_args())
            .env_clear();
        for (k, v) in c.get_envs() {
            if let Some(v) = v {
                w.env(k, v);
            }
        }
        w
    }

    /// Moves the calling thread (and the threads it starts from now on) into namespace `name`.
    pub fn enter_named(name: &str) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
        // SAFETY: setns on a namespace file we opened; it changes only this thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
