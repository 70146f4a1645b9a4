//! systemd's notify protocol against a real `NOTIFY_SOCKET` (a datagram socket this test binds):
//! READY after the index is loaded (and, with `[server]`, after the port accepts connections),
//! WATCHDOG on time, RELOADING/READY on SIGHUP, STOPPING on SIGTERM and exit code 0.

use crate::harness::*;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

struct Notifications {
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Notifications {
    fn bind() -> Notifications {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notifications {
            sock,
            _dir: dir,
            path,
        }
    }

    fn recv(&self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// The first datagram with the line `want`, and when it came; others are skipped.
    fn wait_for(&self, want: &str, timeout: Duration) -> Option<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(m) = self.recv()
                && m.lines().any(|l| l == want)
            {
                return Some((m, Instant::now()));
            }
        }
        None
    }
}

#[test]
fn ready_watchdog_reload_stop() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    std::fs::write(root.join("f"), "x").unwrap();
    let n = Notifications::bind();
    let sock = n.path.to_str().unwrap().to_string();
    // 1 s watchdog: pings are due every 500 ms.
    let d = sb.daemon_with(
        &root,
        &sb.config(),
        &[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "1000000")],
    );
    let (ready, _) = n
        .wait_for("READY=1", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no READY=1; log:\n{}", d.log()));
    assert!(ready.contains("STATUS="), "{ready}");
    // READY means the index is loaded and checked.
    assert!(live_entries(&root).is_some_and(|l| l.contains_key("f")));

    let mut pings = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if let Some(m) = n.recv()
            && m.lines().any(|l| l == "WATCHDOG=1")
        {
            pings.push(Instant::now());
        }
    }
    assert!(pings.len() >= 4, "{} pings in 3 s", pings.len());
    let worst = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        worst < Duration::from_secs(1),
        "a gap of {worst:?} misses the watchdog"
    );

    d.signal(libc::SIGHUP);
    let (reloading, _) = n
        .wait_for("RELOADING=1", Duration::from_secs(10))
        .expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    n.wait_for("READY=1", Duration::from_secs(10))
        .expect("READY=1 after the reload");

    d.signal(libc::SIGTERM);
    n.wait_for("STOPPING=1", Duration::from_secs(10))
        .expect("STOPPING=1");
    let log = d.log();
    let status = d.stop();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
}

#[test]
fn corrupt_index_exits_with_a_clear_error_and_no_ready() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    std::fs::write(root.join(".sync"), "{not json").unwrap();
    let n = Notifications::bind();
    let sock = n.path.to_str().unwrap().to_string();
    let mut d = sb.daemon_with(&root, &sb.config(), &[("NOTIFY_SOCKET", &sock)]);
    assert!(wait_until(Duration::from_secs(20), || d
        .try_exit()
        .is_some()));
    let status = d.try_exit().unwrap();
    assert!(!status.success());
    assert!(d.log().contains("filesync index"), "{}", d.log());
    assert!(n.wait_for("READY=1", Duration::from_millis(300)).is_none());
}

/// With `[server]`, READY must wait until the SFTP port accepts connections, and SIGTERM
/// stops the server with the rest.
#[test]
fn ready_comes_after_the_server_port_accepts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sb = Sandbox::new();
    let client_key = sb.keygen("client_key", "ed25519");
    let keys = sb.path().join("authorized_keys");
    std::fs::copy(client_key.with_extension("pub"), &keys).unwrap();
    sb.set_config(
        &format!(
            "name = \"hub\"\n[server]\nlisten = \"127.0.0.1:{port}\"\nhost_key = \"{}\"\nauthorized_keys = \"{}\"\n",
            sb.path().join("host_key").display(),
            keys.display()
        ),
    );
    let root = sb.folder("hub").path;
    let n = Notifications::bind();
    let sock = n.path.to_str().unwrap().to_string();
    let mut d = sb.daemon_with(&root, &sb.config(), &[("NOTIFY_SOCKET", &sock)]);
    let mut ready = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(m) = n.recv()
            && m.lines().any(|l| l == "READY=1")
        {
            ready = true;
            break;
        }
        if d.try_exit().is_some() {
            break;
        }
    }
    assert!(ready, "no READY with [server]; log:\n{}", d.log());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "READY before the port accepts connections"
    );
    let log = d.log();
    assert!(d.stop().success(), "{log}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after the daemon stopped"
    );
}
