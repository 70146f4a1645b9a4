//! A stranger on the network cannot lock anyone out of the hub: a flood of idle and garbage
//! connections from one address, clients that send a byte at a time, an address that keeps
//! failing to log in; and the many real clients at once that must all get through.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// OpenSSH `sftp` from source address `src`, logging in with `key` and running `pwd`; its
/// result and how long it took.
fn sftp_from(hub: &Hub, src: &str) -> (Ran, Duration) {
    require("sftp");
    let t0 = Instant::now();
    let mut child = Command::new("sftp")
        .args(["-b", "-", "-P", &hub.port.to_string(), "-i"])
        .arg(&hub.key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args([
            "-o",
            &format!("BindAddress={src}"),
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("tester@127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sftp");
    let _ = child.stdin.take().expect("stdin").write_all(b"pwd\n");
    let o = child.wait_with_output().expect("sftp");
    let r = Ran {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    (r, t0.elapsed())
}

/// Connections from 127.0.0.1 that say nothing (`idle`) and that send garbage (`garbage`),
/// interleaved, all kept open.
fn flood(port: u16, idle: usize, garbage: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(idle + garbage);
    for i in 0..idle.max(garbage) {
        if i < idle
            && let Ok(s) = TcpStream::connect(("127.0.0.1", port))
        {
            open.push(s);
        }
        if i < garbage
            && let Ok(mut s) = TcpStream::connect(("127.0.0.1", port))
        {
            // Refused ones are closed at once: writing to them may fail, which is fine.
            let _ = s.write_all(&pattern(600, i as u64));
            open.push(s);
        }
    }
    open
}

#[test]
fn a_flood_from_one_address_locks_no_one_out() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Daemon, "login_grace_secs = 3\n");
    let held = flood(hub.port, 300, 200);
    assert_eq!(held.len(), 500, "the flood could not even connect");
    // Someone else, while the flood is open.
    let (r, took) = sftp_from(&hub, "127.0.0.2");
    assert!(r.status.success(), "{r}\nhub log:\n{}", hub.log_text());
    assert!(
        took < Duration::from_secs(2),
        "login from elsewhere took {took:?}"
    );
    // The flooding address itself, once its half-open connections have had their grace time.
    std::thread::sleep(Duration::from_secs(4));
    let (r, _) = sftp_from(&hub, "127.0.0.1");
    assert!(r.status.success(), "{r}\nhub log:\n{}", hub.log_text());
    let log = hub.log_text();
    assert_eq!(
        log.matches("refusing more connections from this address")
            .count(),
        1,
        "not one line for the cap:\n{log}"
    );
    drop(held);
    let (r, _) = sftp_from(&hub, "127.0.0.2");
    assert!(r.status.success(), "after the flood: {r}");
}

/// A client that sends a byte at a time, and one that says hello and then nothing, are both
/// dropped when their grace time is up.
#[test]
fn slow_clients_are_dropped_at_the_grace_time() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "login_grace_secs = 2\n");
    let hello = |s: &mut TcpStream| {
        let _ = s.write_all(b"SSH-2.0-SilentClient\r\n");
    };
    let mut silent = TcpStream::connect(("127.0.0.1", hub.port)).expect("connect");
    hello(&mut silent);
    let t0 = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", hub.port)).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut slow_ended = None;
    let banner = b"SSH-2.0-Slowloris-sending-one-byte-at-a-time-for-as-long-as-it-is-let";
    let mut buf = [0u8; 4096];
    for b in banner.iter().cycle().take(60) {
        if slow.write_all(&[*b]).is_err() {
            slow_ended = Some(t0.elapsed());
            break;
        }
        if let Ok(0) = slow.read(&mut buf) {
            slow_ended = Some(t0.elapsed());
            break;
        }
    }
    let slow_ended = slow_ended.expect("the byte-a-time client was never dropped");
    assert!(
        slow_ended >= Duration::from_millis(1500) && slow_ended < Duration::from_secs(6),
        "dropped after {slow_ended:?}"
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout");
    let mut got = Vec::new();
    // The server's banner, then the end once the grace time is up.
    let _ = silent.read_to_end(&mut got);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the silent client was not dropped"
    );
    // Dropped at the grace time, not refused: it is no failure, and others still get in.
    let (r, _) = sftp_from(&hub, "127.0.0.1");
    assert!(r.status.success(), "{r}");
}

/// An address that keeps failing to log in is refused for a while (said once in the log),
/// others are not, and a trusted address never is.
#[test]
fn an_address_that_keeps_failing_is_refused_for_a_while() {
    require_python("paramiko");
    let hash = {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password_with_salt(b"the right one", b"filesynctestsalt")
            .expect("hash")
            .to_string()
    };
    let sb = Sandbox::new();
    let hub = Hub::started(
        &sb,
        HubKind::Serve,
        &format!("password_hash = {hash:?}\ntrusted = [\"127.0.0.3\"]\n"),
    );
    let guess = |src: &str, n: &str| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients/wrong_passwords.py");
        let o = Command::new("python3")
            .arg(script)
            .args([&hub.port.to_string(), src, n])
            .output()
            .expect("python3");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(guess("127.0.0.1", "9"), "admitted");
    assert_eq!(guess("127.0.0.1", "1"), "refused", "{}", hub.log_text());
    // Refused whatever it brings now, even the right key; others are not held back.
    let (r, _) = sftp_from(&hub, "127.0.0.1");
    assert!(!r.status.success(), "{r}");
    let (r, _) = sftp_from(&hub, "127.0.0.2");
    assert!(r.status.success(), "{r}");
    assert_eq!(guess("127.0.0.3", "25"), "admitted");
    let log = hub.log_text();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refusing this address"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains("127.0.0.1")
            && said[0].contains("30 s")
            && said[0].contains("10 failed logins"),
        "{}",
        said[0]
    );
}

/// Many real clients at once, each uploading and listing: every one gets through.
#[test]
fn thirty_two_clients_at_once_all_complete() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Daemon, "");
    hub.python_ok("parallel.py", &["32", "40"]);
}

/// Random SFTP packets after a real login (random bodies, lying lengths) close at most their
/// own session: nothing outside the root changes and the server goes on serving.
#[test]
fn random_packets_after_login_stop_nothing() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Serve, "");
    hub.root.symlink(&hub.outside.path, "out");
    hub.start();
    let before = hub.outside.snapshot();
    let r = hub.python_ok("garbage_sftp.py", &["30", "50"]);
    assert!(r.stdout.starts_with("ok"), "{r}");
    assert_eq!(hub.outside.snapshot(), before, "outside changed");
    let (r, _) = sftp_from(&hub, "127.0.0.1");
    assert!(r.status.success(), "{r}");
}

/// A client that sends requests and never reads an answer is held to its connection's
/// budget and then cut off; the server is not held up, and others still get in.
#[test]
fn a_client_that_never_reads_its_answers_is_cut_off() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    let r = hub.python_ok("greedy.py", &["3000000"]);
    assert!(r.stdout.contains("closed"), "{r}");
    let cut = wait_until(Duration::from_secs(10), || {
        hub.log_text()
            .contains("without reading the answers; closing the session")
    });
    assert!(cut, "{}", hub.log_text());
    let (r, _) = sftp_from(&hub, "127.0.0.1");
    assert!(r.status.success(), "{r}");
}
