//! How SSH sessions with the hub end and last: the sftp subsystem ends with exit status 0, as
//! OpenSSH's does, so `ssh -s sftp`, `scp` and restic see success; an idle client that
//! answers keepalives stays; a client that vanishes without closing its TCP connection is
//! dropped within the keepalive bound, with one line in the hub's log.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn ssh_s_sftp_and_scp_exit_0() {
    require("ssh");
    require("scp");
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    let ssh = Command::new("ssh")
        .args(["-p", &hub.port.to_string()])
        .args(hub.ssh_options())
        .args(["-s", "tester@127.0.0.1", "sftp"])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    assert_eq!(
        ssh.status.code(),
        Some(0),
        "ssh -s sftp: {}\nhub log:\n{}",
        String::from_utf8_lossy(&ssh.stderr),
        hub.log_text()
    );

    let local = sb.folder("local");
    let data = pattern(3 * 1024 * 1024 + 17, 5);
    local.write("up.bin", &data);
    let scp = |from: String, to: String| {
        let o = Command::new("scp")
            .args(["-P", &hub.port.to_string()])
            .args(hub.ssh_options())
            .args([from, to])
            .output()
            .expect("run scp");
        assert_eq!(
            o.status.code(),
            Some(0),
            "scp: {}\nhub log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            hub.log_text()
        );
    };
    scp(
        local.p("up.bin").display().to_string(),
        "tester@127.0.0.1:/up.bin".into(),
    );
    assert_eq!(hub.root.read("up.bin"), data);
    scp(
        "tester@127.0.0.1:/up.bin".into(),
        local.p("down.bin").display().to_string(),
    );
    assert_eq!(local.read("down.bin"), data);
}

#[test]
fn restic_backs_up_to_the_hub_and_restores_byte_exact() {
    require("restic");
    require("ssh");
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    let data = sb.folder("data");
    data.write("photos/a.jpg", pattern(2 * 1024 * 1024 + 3, 1));
    data.write("photos/b.jpg", pattern(70_000, 2));
    data.write("notes.txt", "restic through the hub\n");
    let command = format!(
        "ssh -p {} {} tester@127.0.0.1 -s sftp",
        hub.port,
        hub.ssh_options().join(" ")
    );
    let restic = |args: &[&str]| {
        let o = Command::new("restic")
            .args(["-r", "sftp:tester@127.0.0.1:/repo", "--no-cache"])
            .args(["-o", &format!("sftp.command={command}")])
            .args(args)
            .env("RESTIC_PASSWORD", "test password")
            .env("HOME", sb.home())
            .output()
            .expect("run restic");
        assert!(
            o.status.success(),
            "restic {args:?}: {}\n{}\nhub log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            hub.log_text()
        );
    };
    restic(&["init"]);
    restic(&["backup", data.s()]);
    restic(&["check", "--read-data"]);
    let out = sb.folder("restored");
    restic(&["restore", "latest", "--target", out.s()]);
    // restic restores the absolute path below the target.
    let restored = Folder::at(
        out.path
            .join(data.path.strip_prefix("/").expect("absolute")),
    );
    assert_eq!(restored.tree(), data.tree());
    assert!(!data.tree().is_empty());
    // Its `mkdir -p` probes are answers it expects, not warnings.
    let log = hub.log_text();
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn an_idle_client_that_answers_keepalives_stays_connected() {
    let sb = Sandbox::new();
    let hub = Hub::started(
        &sb,
        HubKind::Serve,
        "client_alive_interval = 1\nclient_alive_count_max = 2\n",
    );
    // Idle for well past interval × (count + 1): only answered keepalives keep it.
    hub.python_ok("idle.py", &["6"]);
    assert!(
        !hub.log_text().contains("stopped answering"),
        "{}",
        hub.log_text()
    );
}

#[test]
fn a_client_that_vanishes_is_dropped_within_the_keepalive_bound() {
    require("sftp");
    let (interval, count) = (1, 2);
    let sb = Sandbox::new();
    let hub = Hub::started(
        &sb,
        HubKind::Serve,
        &format!("client_alive_interval = {interval}\nclient_alive_count_max = {count}\n"),
    );
    let relay = Relay::to(hub.port);
    let mut client = Command::new("sftp")
        .args(["-b", "-", "-P", &relay.port.to_string()])
        .args(hub.ssh_options())
        .arg("tester@127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sftp");
    let mut stdin = client.stdin.take().expect("stdin");
    stdin.write_all(b"mkdir here\n").expect("write batch");
    let logged_in = wait_until(Duration::from_secs(20), || hub.root.exists("here"));
    assert!(
        logged_in,
        "the client never got through:\n{}",
        hub.log_text()
    );
    // The network goes: nothing passes either way, and nothing closes.
    relay.freeze();
    let frozen = Instant::now();
    // client_alive_interval × (client_alive_count_max + 1).
    let bound = Duration::from_secs(interval * (count + 1));
    let dropped = wait_until(bound + Duration::from_secs(5), || {
        hub.log_text().contains("stopped answering")
    });
    let took = frozen.elapsed();
    assert!(dropped, "never dropped:\n{}", hub.log_text());
    assert!(
        took >= bound - Duration::from_millis(500),
        "dropped after {took:?}"
    );
    // One line, naming the client.
    let log = hub.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("stopped answering"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("tester") && lines[0].contains("127.0.0.1"),
        "{log}"
    );
    drop(stdin);
    let _ = client.kill();
    let _ = client.wait();
}

/// A loopback TCP relay for one connection that can go silent: frozen, it neither forwards
/// nor reads, and keeps both sockets open (a phone that walked out of Wi-Fi range).
struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn to(port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let relay = Relay {
            port: listener.local_addr().expect("relay address").port(),
            frozen: Arc::default(),
            stop: Arc::default(),
        };
        let (frozen, stop) = (relay.frozen.clone(), relay.stop.clone());
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let ends = [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ];
            let pumps: Vec<_> = ends
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                .map(|(from, to)| {
                    let (frozen, stop) = (frozen.clone(), stop.clone());
                    std::thread::spawn(move || pump(from, to, &frozen, &stop))
                })
                .collect();
            for p in pumps {
                let _ = p.join();
            }
            drop((client, server));
        });
        relay
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if frozen.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Probes a client makes while it looks around are not warnings; a real failure is one
/// warning naming the client, the request, the path and the error.
#[test]
fn failed_requests_are_one_line_naming_client_request_and_path() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    hub.root.write("full/x", "x");
    hub.root.write("file.txt", "a plain file");
    hub.python_ok("probe.py", &["file.txt", "full"]);
    let o = hub.sftp("-rmdir full\n");
    assert!(o.status.success(), "{o}");
    let log = hub.log_text();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SFTP request failed"))
        .collect();
    let warnings: Vec<&&str> = failed.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for word in ["127.0.0.1", "tester", "rmdir", "full", "not empty"] {
        assert!(warnings[0].contains(word), "no {word:?} in {}", warnings[0]);
    }
    for probe in ["readlink", "stat", "mkdir"] {
        assert!(
            failed
                .iter()
                .any(|l| l.contains("DEBUG") && l.contains(&format!("request=\"{probe}\""))),
            "{probe} not logged at debug:\n{log}"
        );
    }
}
