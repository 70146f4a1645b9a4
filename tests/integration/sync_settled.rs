//! A sync that finds both sides as it last left them, each vouched current by the program
//! that keeps its index (the laptop's daemon, the hub) or scanned, stops before loading the
//! other's index; and any change on either side, made the instant before the sync, is still
//! synced.

use crate::harness::*;
use std::time::Duration;

/// What the client logs (at debug) when it stops early.
const STOPPED: &str = "both sides as last settled";

/// Syncs; its stdout, and whether it stopped early.
#[track_caller]
fn sync(t: &Pair) -> (String, bool) {
    let r = t.sync_cmd().env("RUST_LOG", "filesync=debug").ok();
    (r.stdout.clone(), r.stderr.contains(STOPPED))
}

/// A daemon on `f`, once its first scan is done.
fn daemon_on(t: &Pair, f: &Folder) -> Daemon {
    let d = t.sb.daemon(&f.path);
    assert!(
        d.wait_log("index loaded and checked", Duration::from_secs(30)),
        "{}",
        d.log()
    );
    d
}

/// A change made to one side or the other, named for messages.
type Change<'a> = (&'a str, &'a dyn Fn(&Pair));

/// `daemons` keep the near side's index (and the far one's, for two local folders).
fn every_change_is_still_synced(t: &mut Pair, mut daemons: Vec<Daemon>) {
    t.a.write("x.txt", "one");
    t.b.write("y.txt", "two");
    let (_, stopped) = sync(t);
    assert!(!stopped, "the first sync had nothing settled to stop at");
    t.assert_same();
    let (out, stopped) = sync(t);
    assert!(
        stopped,
        "a sync of a settled pair loaded both indexes\n{out}"
    );
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );

    // Each change the instant before a sync: never missed, then settled again.
    let changes: [Change; 4] = [
        ("an edit here", &|t| {
            t.a.write("x.txt", "edited here");
        }),
        ("an edit there", &|t| {
            t.b.write("y.txt", "edited there");
        }),
        ("a new folder there", &|t| {
            t.b.write("new/z.txt", "new there");
        }),
        ("a deletion here", &|t| {
            std::fs::remove_file(t.a.p("x.txt")).expect("rm");
        }),
    ];
    for (what, change) in changes {
        change(t);
        let (out, stopped) = sync(t);
        assert!(!stopped, "{what} was missed: the sync stopped early\n{out}");
        t.assert_same();
        let (out, stopped) = sync(t);
        assert!(
            stopped,
            "after {what}, the pair did not settle again\n{out}"
        );
    }
    assert_eq!(t.a.read("y.txt"), b"edited there");
    assert!(!t.b.p("x.txt").exists());

    // No daemon vouches for this side: each sync scans it, and stops early only when that
    // scan found it as it was settled (the other side's index is then never loaded).
    let near = daemons.remove(0);
    assert!(near.stop().success());
    t.a.write("w.txt", "while no daemon ran");
    let (out, stopped) = sync(t);
    assert!(!stopped, "{out}");
    assert_eq!(t.b.read("w.txt"), b"while no daemon ran");
    let (out, stopped) = sync(t);
    assert!(
        stopped,
        "a scan that found nothing new did not stop the sync\n{out}"
    );
    t.b.write("y.txt", "edited there again");
    let (out, stopped) = sync(t);
    assert!(!stopped, "{out}");
    assert_eq!(t.a.read("y.txt"), b"edited there again");
}

#[test]
fn two_local_folders_each_with_its_daemon() {
    let mut t = Pair::local();
    let d = vec![daemon_on(&t, &t.a), daemon_on(&t, &t.b)];
    every_change_is_still_synced(&mut t, d);
}

#[test]
fn a_laptop_with_its_daemon_and_the_hub_daemon() {
    let mut t = Pair::hub(HubKind::Daemon);
    let d = vec![daemon_on(&t, &t.a)];
    every_change_is_still_synced(&mut t, d);
}

/// `filesync serve` has no watcher: its refresh rescans the folder, and still says the state.
#[test]
fn a_laptop_with_its_daemon_and_a_hub_without_a_watcher() {
    let mut t = Pair::hub(HubKind::Serve);
    let d = vec![daemon_on(&t, &t.a)];
    every_change_is_still_synced(&mut t, d);
}

/// A plain SFTP server vouches for nothing: each sync walks it, and stops early only when the
/// walk found it as it was settled.
#[test]
fn a_plain_server_is_walked_every_time() {
    let t = Pair::sshd();
    let _d = daemon_on(&t, &t.a);
    t.a.write("x.txt", "one");
    let (out, stopped) = sync(&t);
    assert!(!stopped, "{out}");
    let (out, stopped) = sync(&t);
    assert!(stopped, "{out}");
    t.b.write("x.txt", "edited on the server");
    let (out, stopped) = sync(&t);
    assert!(!stopped, "an edit on the server was missed\n{out}");
    assert_eq!(t.a.read("x.txt"), b"edited on the server");
    t.assert_same();
}

/// A sync that left something for a person (here a link on the hub where the laptop has a
/// file: a clash) keeps no settled pair: every next sync looks again and says it again.
#[test]
fn a_sync_that_left_something_settles_nothing() {
    let t = Pair::hub(HubKind::Daemon);
    let _d = daemon_on(&t, &t.a);
    t.a.write("c", "a file here");
    std::os::unix::fs::symlink("elsewhere", t.b.p("c")).expect("symlink");
    for _ in 0..2 {
        let r = t.sync_cmd().env("RUST_LOG", "filesync=debug").output();
        assert!(!r.stderr.contains(STOPPED), "{r}");
        assert!(
            r.stderr.contains("symbolic link"),
            "the clash was not said again\n{r}"
        );
    }
    assert_eq!(t.a.read("c"), b"a file here");
}
