//! Stopping is prompt whatever a peer does: a daemon whose scheduled sync is connecting to an
//! address that accepts TCP and never speaks SSH, or is halfway through a transfer with a peer
//! that stopped reading and sending, exits within a few seconds of SIGTERM with its index
//! saved (a change the watcher holds back is flushed into `.sync` on the way out), and
//! SIGHUP's restart of the schedule does not wait on the connect either.

use crate::harness::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the issue allows between SIGTERM and exit.
const PROMPT: Duration = Duration::from_secs(5);

/// A's config: peer `peer` at `url`, every second; changes are held back by a long debounce,
/// so only the stop's flush can put them in `.sync`.
fn config(sb: &Sandbox, url: &str, extra: &str) {
    sb.set_config(&format!(
        "name = \"a\"\n[daemon]\ndebounce_ms = 600000\n\
         [peers.peer]\nurl = {url:?}\nevery = \"1s\"\n{extra}"
    ));
}

/// Writes `late.txt`, waits until the daemon has seen it (pending, not yet indexed), sends
/// SIGTERM and returns how long the daemon took to exit; fails unless it exited 0 within
/// `PROMPT` with `late.txt` in its index.
fn stop_and_time(sb: &Sandbox, a: &Path, mut d: Daemon) -> Duration {
    std::fs::write(a.join("late.txt"), "written just before the stop").unwrap();
    let mut status = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        let out = sb.filesync().arg("status").arg("--root").arg(a).output();
        status = out.stdout;
        status.contains("pending changes: 1")
    });
    assert!(
        seen,
        "the daemon did not see late.txt: {status}\nlog:\n{}",
        d.log()
    );
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    // Waits well past the bound, so a failure says how long the stop really took.
    let exited = wait_until(Duration::from_secs(60), || d.try_exit().is_some());
    let took = t.elapsed();
    let st = d.try_exit();
    eprintln!("exit {st:?} {took:?} after SIGTERM");
    assert!(exited, "no exit within 60 s of SIGTERM; log:\n{}", d.log());
    assert!(
        took < PROMPT,
        "exit took {took:?} after SIGTERM (allowed {PROMPT:?}); log:\n{}",
        d.log()
    );
    assert!(st.is_some_and(|s| s.success()), "{st:?}; log:\n{}", d.log());
    assert!(
        live_entries(a).is_some_and(|l| l.contains_key("late.txt")),
        "the index was not saved at the stop; log:\n{}",
        d.log()
    );
    took
}

#[test]
fn stops_promptly_while_connecting_to_a_black_hole() {
    let sb = Sandbox::new();
    let a = sb.folder("a").path;
    let hole = Relay::black_hole();
    let kh = sb.file("known_hosts", "");
    config(
        &sb,
        &format!("sftp://tester@127.0.0.1:{}/", hole.port),
        &format!("known_hosts = {kh:?}\n"),
    );
    let d = sb.daemon(&a);
    assert!(
        wait_until(Duration::from_secs(20), || hole.connections() > 0),
        "the daemon never connected; log:\n{}",
        d.log()
    );
    // SIGHUP restarts the schedule: the connect in flight ends at once, the next one begins.
    let t = Instant::now();
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log("configuration reloaded", Duration::from_secs(60)),
        "no reload; log:\n{}",
        d.log()
    );
    let reload = t.elapsed();
    assert!(reload < PROMPT, "reload took {reload:?}; log:\n{}", d.log());
    assert!(
        wait_until(Duration::from_secs(20), || hole.connections() > 1),
        "no connect after the reload; log:\n{}",
        d.log()
    );
    let took = stop_and_time(&sb, &a, d);
    eprintln!("black hole: reloaded in {reload:?}, stopped in {took:?}");
}

#[test]
fn stops_promptly_while_a_peer_stalls_mid_transfer() {
    let sb = Sandbox::new();
    let a = sb.folder("a");
    let hub = Hub::started(&sb, HubKind::Serve, "");
    // Both ways at once: a download the peer stops sending and an upload it stops reading.
    hub.root.write("down.bin", pattern(32 << 20, 1));
    a.write("up.bin", pattern(32 << 20, 2));
    let relay = Relay::stalling_after(format!("127.0.0.1:{}", hub.port).parse().unwrap(), 4 << 20);
    let kh = hub.known_hosts().replace(
        &format!("[127.0.0.1]:{}", hub.port),
        &format!("[127.0.0.1]:{}", relay.port),
    );
    let kh = sb.file("known_hosts", &kh);
    config(
        &sb,
        &format!("sftp://tester@127.0.0.1:{}/", relay.port),
        &format!("identity = {:?}\nknown_hosts = {kh:?}\n", hub.key),
    );
    let d = sb.daemon(&a.path);
    assert!(
        wait_until(Duration::from_secs(30), || relay.stalled()),
        "the sync never got to the stall; log:\n{}\nhub log:\n{}",
        d.log(),
        hub.log_text()
    );
    let took = stop_and_time(&sb, &a.path, d);
    eprintln!("stalled peer: stopped in {took:?}");
    assert!(
        !a.exists("down.bin"),
        "a torn or whole file arrived through a stalled relay"
    );
}
