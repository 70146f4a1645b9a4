//! Scheduled syncs: two folders, each with a daemon; A pulls from B every second. Edits on
//! either side arrive on the other without anyone running `sync`; an unavailable peer gives
//! one log line and backoff, not a flood; when it returns, syncing resumes. `filesync status`
//! asks the running daemon.

mod common;

use common::daemon::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

#[test]
fn pulls_on_a_schedule_backs_off_and_resumes() {
    let env = Env::new("");
    let a = env.folder("a");
    let b = env.folder("b");
    std::fs::write(
        &env.config,
        format!(
            "name = \"a\"\n[peers.b]\nurl = \"{}\"\nevery = \"1s\"\n",
            b.display()
        ),
    )
    .unwrap();
    let cfg_b = env.path().join("config-b.toml");
    std::fs::write(&cfg_b, "name = \"b\"\n").unwrap();
    std::fs::write(a.join("from-a.txt"), "hello from a").unwrap();
    std::fs::write(b.join("from-b.txt"), "hello from b").unwrap();

    let db = env.daemon_with(&b, &cfg_b, &[]);
    let da = env.daemon(&a, &[]);
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || {
            read(&b.join("from-a.txt")).as_deref() == Some("hello from a")
                && read(&a.join("from-b.txt")).as_deref() == Some("hello from b")
        }),
        "first sync did not happen; log a:\n{}",
        da.log()
    );
    eprintln!("first exchange after {:?}", t0.elapsed());

    // Edits on either side, nobody runs `sync`.
    std::fs::write(a.join("from-a.txt"), "edited on a").unwrap();
    std::fs::write(b.join("new-on-b.txt"), "made on b").unwrap();
    let t1 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || {
            read(&b.join("from-a.txt")).as_deref() == Some("edited on a")
                && read(&a.join("new-on-b.txt")).as_deref() == Some("made on b")
        }),
        "edits did not travel; log a:\n{}",
        da.log()
    );
    eprintln!("edits arrived after {:?}", t1.elapsed());

    // The daemon answers `filesync status` (the sync's own writes settle within a debounce).
    let mut text = String::new();
    let settled = wait_until(Duration::from_secs(5), || {
        let out = env.run(&["status", "--root", a.to_str().unwrap()]);
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && text.contains("pending changes: 0")
    });
    assert!(settled, "{text}");
    assert!(text.contains("daemon pid"), "{text}");
    assert!(text.contains("b every 1s: online, last sync"), "{text}");

    // The peer goes away: one warning, a few backed-off attempts, no flood.
    let away = env.path().join("b-away");
    std::fs::rename(&b, &away).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let log = da.log();
    assert_eq!(
        log.matches("peer unreachable").count(),
        1,
        "not exactly one line for going offline:\n{log}"
    );
    let attempts = log.matches("peer still unreachable").count();
    assert!(
        attempts <= 4,
        "{attempts} attempts in 8 s is not backing off:\n{log}"
    );
    let out = env.run(&["status", "--root", a.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OFFLINE"), "{text}");

    // Back again: syncing resumes by itself.
    std::fs::rename(&away, &b).unwrap();
    std::fs::write(b.join("after-return.txt"), "welcome back").unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            read(&a.join("after-return.txt")).as_deref() == Some("welcome back")
        }),
        "no resume; log a:\n{}",
        da.log()
    );
    assert!(da.wait_log("reachable again", Duration::from_secs(5)));

    let log_a = da.log();
    assert!(da.stop().success(), "{log_a}");
    assert!(db.stop().success());
}

#[test]
fn status_without_a_daemon_scans() {
    let env = Env::new("name = \"a\"\n");
    let a = env.folder("a");
    std::fs::write(a.join("f"), "x").unwrap();
    let out = env.run(&["index", "--root", a.to_str().unwrap()]);
    assert!(out.status.success());
    std::fs::write(a.join("g"), "y").unwrap();
    let out = env.run(&["status", "--root", a.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pending local changes: 1 added"), "{text}");
    assert!(!text.contains("daemon pid"), "{text}");
}
