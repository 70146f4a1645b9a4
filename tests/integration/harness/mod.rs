//! The one test harness: a `Sandbox` (a private HOME, config and folders) that runs the real
//! binary, the servers it starts (`Hub`: our own; `Sshd`: OpenSSH's), two-replica scenarios
//! (`Pair`), and the few helpers every test shares (one tree walker, one byte pattern).

mod folder;
mod hub;
mod index;
mod mitm;
mod netns;
mod pair;
mod relay;
mod sandbox;
mod sshd;

pub use folder::Folder;
pub use hub::{Hub, HubKind};
pub use index::{counters, live_entries, load_index, wait_index_matches};
pub use mitm::Mitm;
pub use netns::Netns;
pub use pair::{Pair, Remote};
pub use relay::Relay;
pub use sandbox::{Daemon, Ran, Run, Sandbox, keygen_at, keygen_pem};
pub use sshd::Sshd;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_filesync");

/// The Debian package (or other install line) that provides a test tool.
fn install_line(tool: &str) -> &'static str {
    match tool {
        "sftp" | "ssh" | "ssh-keygen" | "ssh-keyscan" => "apt-get install -y openssh-client",
        "sshd" => "apt-get install -y openssh-server",
        "curl" => "apt-get install -y curl",
        "rclone" => "apt-get install -y rclone",
        "restic" => "apt-get install -y restic",
        "scp" => "apt-get install -y openssh-client",
        "setpriv" => "apt-get install -y util-linux",
        "ip" => "apt-get install -y iproute2",
        "psftp" | "puttygen" => "apt-get install -y putty-tools",
        "java" | "javac" => "apt-get install -y default-jdk-headless libjsch-java",
        "node" | "npm" => "apt-get install -y nodejs npm",
        "python3" => "apt-get install -y python3",
        "fusefat" => "apt-get install -y fusefat",
        "sshfs" => "apt-get install -y sshfs",
        "lftp" => "apt-get install -y lftp",
        "duplicity" => "apt-get install -y duplicity",
        "gio" => "apt-get install -y libglib2.0-bin gvfs gvfs-backends",
        "dbus-run-session" => "apt-get install -y dbus-daemon",
        "fusermount" => "apt-get install -y fuse",
        "mkfs.vfat" => "apt-get install -y dosfstools",
        _ => "scripts/install-test-deps.sh",
    }
}

/// Fails the test, naming what to install, when `tool` is not on the PATH. A test never
/// passes because its tool is missing.
#[track_caller]
pub fn require(tool: &str) {
    let found = if tool == "sshd" {
        Path::new("/usr/sbin/sshd").exists() || on_path(tool)
    } else {
        on_path(tool)
    };
    assert!(
        found,
        "{tool} is missing: install it with `{}` (scripts/install-test-deps.sh installs every test tool)",
        install_line(tool)
    );
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails the test, naming the pip package, when a Python module is missing.
#[track_caller]
pub fn require_python(module: &str) {
    require("python3");
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let package = if module == "fuse" { "fusepy" } else { module };
    assert!(
        ok,
        "python {module} is missing: install it with `python3 -m pip install {package}`"
    );
}

/// Deterministic pseudo-random bytes (xorshift), so big files need no fixture on disk.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Polls `f` every 50 ms until it holds or `timeout` passes; whether it held.
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

/// Fails the test, saying why, unless it runs as root (CI does): `why` names what needs it.
#[track_caller]
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root: {why}; run it as root (CI does), e.g. `sudo -E cargo test`"
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The user (uid and gid) tests drop to when they run as root: root reads and enters every
/// folder, which hides permission bugs.
const NOBODY: &str = "65534";

/// `c` run as `nobody` when the tests run as root, unchanged otherwise; the files it needs
/// must be given to it (`give_to_nobody`). Its environment is what `c` set (sandboxed
/// commands clear theirs).
pub fn unprivileged(c: Command) -> Command {
    if !is_root() {
        return c;
    }
    require("setpriv");
    let mut u = Command::new("setpriv");
    u.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(c.get_program())
        .args(c.get_args())
        .env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            u.env(k, v);
        }
    }
    if let Some(d) = c.get_current_dir() {
        u.current_dir(d);
    }
    u
}

/// Gives `path` and everything below it to `nobody`, when the tests run as root.
pub fn give_to_nobody(path: &Path) {
    if !is_root() {
        return;
    }
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown -R nobody {} failed", path.display());
}

/// A free TCP port on 127.0.0.1 (free when asked; a server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A finished command's status and output, for an assertion's message.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
