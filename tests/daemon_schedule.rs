//! Scheduled syncs: two folders, each with a daemon; A pulls from B every second. Edits on
//! either side arrive on the other without anyone running `sync`; an unavailable peer gives
//! one log line and backoff, not a flood; when it returns, syncing resumes. `filesync status`
//! asks the running daemon.

mod common;

use common::daemon::*;
use std::path::{Path, PathBuf};
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

/// B's side of the hub setup: keys, a known_hosts entry for A, and a config that serves B's
/// folder on a free loopback port.
struct Hub {
    port: u16,
    client_key: PathBuf,
    known_hosts: PathBuf,
    config: PathBuf,
}

fn hub(env: &Env) -> Hub {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client_key = env.path().join("client_key");
    let host_key = env.path().join("host_key");
    common::server::keygen(&client_key);
    common::server::keygen(&host_key);
    let keys = env.path().join("authorized_keys");
    std::fs::copy(client_key.with_extension("pub"), &keys).unwrap();
    let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let mut parts = host_pub.split_whitespace();
    let known_hosts = env.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{port} {} {}\n",
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let config = env.path().join("config-b.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"b\"\n[server]\nlisten = \"127.0.0.1:{port}\"\nhost_key = {:?}\nauthorized_keys = {:?}\n",
            host_key, keys
        ),
    )
    .unwrap();
    Hub {
        port,
        client_key,
        known_hosts,
        config,
    }
}

/// The hub setup: B's daemon serves its folder over SFTP, A's daemon pulls from it every
/// second. Stopping B (its server with it) gives A one log line and backoff; starting B again
/// resumes the exchange.
#[test]
fn pulls_over_sftp_from_a_serving_daemon() {
    let env = Env::new("");
    let a = env.folder("a");
    let b = env.folder("b");
    let Hub {
        port,
        client_key,
        known_hosts,
        config: cfg_b,
    } = hub(&env);
    std::fs::write(
        &env.config,
        format!(
            "name = \"a\"\n[peers.hub]\nurl = \"sftp://tester@127.0.0.1:{port}/\"\nidentity = {:?}\nknown_hosts = {:?}\nevery = \"1s\"\n",
            client_key, known_hosts
        ),
    )
    .unwrap();
    std::fs::write(a.join("from-a.txt"), "hello from a").unwrap();
    std::fs::write(b.join("from-b.txt"), "hello from b").unwrap();

    let db = env.daemon_with(&b, &cfg_b, &[]);
    assert!(
        db.wait_log("serving SFTP", Duration::from_secs(20)),
        "{}",
        db.log()
    );
    let da = env.daemon(&a, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            read(&b.join("from-a.txt")).as_deref() == Some("hello from a")
                && read(&a.join("from-b.txt")).as_deref() == Some("hello from b")
        }),
        "first sync over SFTP did not happen; log a:\n{}\nlog b:\n{}",
        da.log(),
        db.log()
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
    assert!(db.stop().success());
    std::thread::sleep(Duration::from_secs(8));
    let log = da.log();
    assert_eq!(log.matches("peer unreachable").count(), 1, "{log}");
    assert!(log.matches("peer still unreachable").count() <= 4, "{log}");

    // Start it again: the exchange resumes by itself.
    let db = env.daemon_with(&b, &cfg_b, &[]);
    std::fs::write(a.join("while-away.txt"), "written while the hub was down").unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            read(&b.join("while-away.txt")).is_some()
        }),
        "no resume; log a:\n{}\nlog b:\n{}",
        da.log(),
        db.log()
    );
    assert!(da.wait_log("reachable again", Duration::from_secs(5)));
    let log_a = da.log();
    assert!(da.stop().success(), "{log_a}");
    assert!(db.stop().success());
}

/// A sync from a laptop right after edits on the hub carries them. The hub's watcher answers
/// the index refresh: what it has seen but not yet written is rescanned, and once it has
/// caught up, nothing is (the log says so).
#[test]
fn a_sync_right_after_an_edit_on_the_hub_carries_it() {
    let env = Env::new("");
    let a = env.folder("a");
    let b = env.folder("b");
    let h = hub(&env);
    std::fs::write(
        &env.config,
        format!(
            "name = \"a\"\n[peers.hub]\nurl = \"sftp://tester@127.0.0.1:{}/\"\nidentity = {:?}\nknown_hosts = {:?}\n",
            h.port, h.client_key, h.known_hosts
        ),
    )
    .unwrap();
    for i in 0..30 {
        let p = b.join(format!("d{}/f{i}.txt", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("first {i:03}")).unwrap();
    }
    let db = env.daemon_with(&b, &h.config, &[]);
    assert!(
        db.wait_log("serving SFTP", Duration::from_secs(20)),
        "{}",
        db.log()
    );
    let sync = || {
        let out = env.run(&["sync", "--no-progress", "hub", a.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}{}\nhub log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            db.log()
        );
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
            db.log()
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
        db.log().contains("index current by the watcher"),
        "{}",
        db.log()
    );
    assert!(db.stop().success());
}
