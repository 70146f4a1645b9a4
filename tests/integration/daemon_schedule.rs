//! Scheduled syncs: two folders, each with a daemon; A pulls from B every second. Edits on
//! either side arrive on the other without anyone running `sync`; an unavailable peer gives
//! one log line and backoff, not a flood; when it returns, syncing resumes. `filesync status`
//! asks the running daemon.

use crate::harness::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

#[test]
fn pulls_on_a_schedule_backs_off_and_resumes() {
    let sb = Sandbox::new();
    let a = sb.folder("a").path;
    let b = sb.folder("b").path;
    sb.set_config(&format!(
        "name = \"a\"\n[peers.b]\nurl = \"{}\"\nevery = \"1s\"\n",
        b.display()
    ));
    let cfg_b = sb.file("config-b.toml", "name = \"b\"\n");
    std::fs::write(a.join("from-a.txt"), "hello from a").unwrap();
    std::fs::write(b.join("from-b.txt"), "hello from b").unwrap();

    let db = sb.daemon_with(&b, &cfg_b, &[]);
    let da = sb.daemon(&a);
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
        let out = sb.filesync().arg("status").arg("--root").arg(&a).output();
        text = out.stdout.clone();
        out.status.success() && text.contains("pending changes: 0")
    });
    assert!(settled, "{text}");
    assert!(text.contains("daemon pid"), "{text}");
    assert!(text.contains("b every 1s: online, last sync"), "{text}");

    // The peer goes away: one warning, a few backed-off attempts, no flood.
    let away = sb.path().join("b-away");
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
    let out = sb.filesync().arg("status").arg("--root").arg(&a).output();
    assert!(out.stdout.contains("OFFLINE"), "{out}");

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
    let sb = Sandbox::with_config("name = \"a\"\n");
    let a = sb.folder("a").path;
    std::fs::write(a.join("f"), "x").unwrap();
    sb.filesync().arg("index").arg("--root").arg(&a).ok();
    std::fs::write(a.join("g"), "y").unwrap();
    let out = sb.filesync().arg("status").arg("--root").arg(&a).output();
    assert!(
        out.stdout.contains("pending local changes: 1 added"),
        "{out}"
    );
    assert!(!out.stdout.contains("daemon pid"), "{out}");
}

/// A's config naming the hub as peer `hub` (with `every`, when given).
fn peer_config(sb: &Sandbox, hub: &Hub, every: Option<&str>) {
    let known_hosts = sb.file("known_hosts", &hub.known_hosts());
    let every = every
        .map(|e| format!("every = {e:?}\n"))
        .unwrap_or_default();
    sb.set_config(&format!(
        "name = \"a\"\n[peers.hub]\nurl = {:?}\nidentity = {:?}\nknown_hosts = {known_hosts:?}\n{every}",
        hub.url(),
        hub.key
    ));
}

/// The hub setup: B's daemon serves its folder over SFTP, A's daemon pulls from it every
/// second. Stopping B (its server with it) gives A one log line and backoff; starting B again
/// resumes the exchange.
#[test]
fn pulls_over_sftp_from_a_serving_daemon() {
    let sb = Sandbox::new();
    let a = sb.folder("a").path;
    let mut hub = Hub::new(&sb, HubKind::Daemon, "");
    let b = hub.root.path.clone();
    std::fs::write(b.join("from-b.txt"), "hello from b").unwrap();
    hub.start();
    peer_config(&sb, &hub, Some("1s"));
    std::fs::write(a.join("from-a.txt"), "hello from a").unwrap();
    let da = sb.daemon(&a);
    assert!(
        wait_until(Duration::from_secs(30), || {
            read(&b.join("from-a.txt")).as_deref() == Some("hello from a")
                && read(&a.join("from-b.txt")).as_deref() == Some("hello from b")
        }),
        "first sync over SFTP did not happen; log a:\n{}\nlog b:\n{}",
        da.log(),
        hub.log_text()
    );
    std::fs::write(b.join("edited-on-b.txt"), "via the hub").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            read(&a.join("edited-on-b.txt")).as_deref() == Some("via the hub")
        }),
        "edit on B did not arrive; log a:\n{}",
        da.log()
    );

    // Stop the hub: one line on A, backoff, no flood.
    assert!(hub.terminate(Duration::from_secs(15)));
    std::thread::sleep(Duration::from_secs(8));
    let log = da.log();
    assert_eq!(log.matches("peer unreachable").count(), 1, "{log}");
    assert!(log.matches("peer still unreachable").count() <= 4, "{log}");

    // Start it again: the exchange resumes by itself.
    hub.start();
    std::fs::write(a.join("while-away.txt"), "written while the hub was down").unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            read(&b.join("while-away.txt")).is_some()
        }),
        "no resume; log a:\n{}\nlog b:\n{}",
        da.log(),
        hub.log_text()
    );
    assert!(da.wait_log("reachable again", Duration::from_secs(5)));
    let log_a = da.log();
    assert!(da.stop().success(), "{log_a}");
    assert!(hub.terminate(Duration::from_secs(15)));
}

/// A sync from a laptop right after edits on the hub carries them. The hub's watcher answers
/// the index refresh: what it has seen but not yet written is rescanned, and once it has
/// caught up, nothing is (the log says so).
#[test]
fn a_sync_right_after_an_edit_on_the_hub_carries_it() {
    let sb = Sandbox::new();
    let a = sb.folder("a").path;
    let mut hub = Hub::new(&sb, HubKind::Daemon, "");
    let b = hub.root.path.clone();
    for i in 0..30 {
        let p = b.join(format!("d{}/f{i}.txt", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("first {i:03}")).unwrap();
    }
    hub.start();
    peer_config(&sb, &hub, None);
    let sync = || {
        let out = sb
            .filesync()
            .args(["sync", "--no-progress", "hub"])
            .arg(&a)
            .output();
        assert!(out.status.success(), "{out}\nhub log:\n{}", hub.log_text());
    };
    sync();
    assert_eq!(read(&a.join("d1/f1.txt")).as_deref(), Some("first 001"));

    // Each round: edit (same size), create and delete on the hub, then sync at once.
    for round in 0..10 {
        let edited = format!("d{}/f{round}.txt", round % 3);
        std::fs::write(b.join(&edited), format!("again {round:03}")).unwrap();
        std::fs::write(b.join(format!("new{round}.txt")), "new").unwrap();
        let gone = format!("d{}/f{}.txt", (round + 10) % 3, round + 10);
        std::fs::remove_file(b.join(&gone)).unwrap();
        sync();
        assert_eq!(
            read(&a.join(&edited)).as_deref(),
            Some(format!("again {round:03}").as_str()),
            "round {round}: {edited}\nhub log:\n{}",
            hub.log_text()
        );
        assert_eq!(
            read(&a.join(format!("new{round}.txt"))).as_deref(),
            Some("new")
        );
        assert!(!a.join(&gone).exists(), "round {round}: {gone} still there");
    }

    // Quiet for longer than the watcher's debounce: the refresh rescans nothing.
    std::thread::sleep(Duration::from_secs(2));
    sync();
    assert!(
        hub.log_text().contains("index current by the watcher"),
        "{}",
        hub.log_text()
    );
    assert!(hub.terminate(Duration::from_secs(15)));
}
