//! Getting things back, on every backend (two local folders, our hub served and as the
//! daemon, plain OpenSSH): a deletion restored on the far side comes back everywhere and does
//! not win again; a folder restored as it was at a time; each way of resolving a conflict
//! ends it on both sides; the trash cap evicts oldest first and never a last copy; the
//! changes log names each change and its source. The far side (`b`) is worked on over SFTP
//! with `--peer`, as a laptop reaches the hub. Tests: `history::{local,serve,daemon,sshd}::NAME`.

use crate::harness::*;

on_backends!([local, serve, daemon, sshd](
    a_deletion_restored_on_the_far_side_comes_back_everywhere,
    a_folder_comes_back_as_it_was_at_a_time,
    each_way_of_resolving_ends_the_conflict_on_both_sides,
    the_trash_cap_evicts_oldest_first_and_never_a_last_copy,
    changes_name_each_change_and_its_source,
));

// What a restore leaves alone, and what it refuses: on a local far side and on the hub.
mod guarded {
    use super::{
        a_brief_lock_is_waited_for, a_file_named_like_the_log_is_kept,
        conflicts_waits_for_no_lock_it_lacks,
    };
    on_backends!([local, serve](
        a_file_named_like_the_log_is_kept,
        conflicts_waits_for_no_lock_it_lacks,
        a_brief_lock_is_waited_for,
    ));
}

/// A user's own `.sync-log` on either side goes to the trash whole when the log starts there.
fn a_file_named_like_the_log_is_kept(t: &mut Pair) {
    t.a.write(".sync-log", "my own notes\n");
    t.b.write(".sync-log", "the hub's notes\n");
    t.a.write("x.txt", "x");
    t.b.write("y.txt", "y");
    t.sync_and_settle();
    assert_eq!(t.a.trash_contents(), vec![b"my own notes\n".to_vec()]);
    assert_eq!(t.b.trash_contents(), vec![b"the hub's notes\n".to_vec()]);
    let far = on_far(t, &["changes"]).ok().stdout;
    assert!(far.contains("added x.txt"), "{far}");
}

/// `conflicts` rescans only under the lock: with a sync holding the far lock it is refused,
/// and a temp file there (the running sync's) is left alone. Typed paths out of the replica
/// are refused too.
fn conflicts_waits_for_no_lock_it_lacks(t: &mut Pair) {
    t.a.write("x.txt", "x");
    t.sync_and_settle();
    let temp = ".x.txt.sync-tmp.0123456789abcdef";
    t.b.write(temp, "half written");
    let info = format!(
        r#"{{"host":"elsewhere","pid":1,"time":{},"what":"filesync sync"}}"#,
        now_secs()
    );
    t.b.write(".sync.lock", info.as_bytes());
    on_far(t, &["conflicts"])
        .fails()
        .one_line_error(&["locked"]);
    assert!(t.b.exists(temp), "the temp of a running sync was removed");
    std::fs::remove_file(t.b.p(".sync.lock")).expect("rm lock");
    let none = on_far(t, &["conflicts"]).ok().stdout;
    assert!(none.contains("no open conflicts"), "{none}");
    for typed in ["../x.txt", "/etc/passwd"] {
        on_far(t, &["restore", typed])
            .fails()
            .one_line_error(&[typed]);
    }
}

/// A restore meeting a daemon's index update (a lock held for seconds at most) waits for
/// it, as a sync does, and goes through once it is released.
fn a_brief_lock_is_waited_for(t: &mut Pair) {
    t.a.write("x.txt", "x");
    t.sync_and_settle();
    t.a.remove("x.txt");
    t.sync_and_settle();
    let info = format!(
        r#"{{"host":"elsewhere","pid":1,"time":{},"what":"filesync daemon (index update)"}}"#,
        now_secs()
    );
    t.b.write(".sync.lock", info.as_bytes());
    let lock = t.b.p(".sync.lock");
    // Stands for the daemon: its update ends by itself a moment later.
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        std::fs::remove_file(lock).expect("rm lock");
    });
    let out = on_far(t, &["restore", "x.txt"]).output();
    release.join().expect("release thread");
    assert!(out.status.success(), "{out}");
    assert_eq!(t.b.read("x.txt"), b"x");
}

/// `filesync SUBCOMMAND ...` on the far replica: its folder, or over SFTP.
fn on_far(t: &Pair, args: &[&str]) -> Run {
    let run = t.sb.filesync().args(args);
    match t.remote {
        Remote::Local => run.arg("--root").arg(&t.b.path),
        _ => run.arg("--peer").arg(t.target()),
    }
}

/// `filesync SUBCOMMAND ...` on the laptop's replica.
fn on_near(t: &Pair, args: &[&str]) -> Run {
    t.sb.filesync().args(args).arg("--root").arg(&t.a.path)
}

/// Deleted on the laptop, synced (the hub keeps it in its trash), restored on the hub from
/// the laptop, synced: back on both sides byte-exact, and a second sync changes nothing.
fn a_deletion_restored_on_the_far_side_comes_back_everywhere(t: &mut Pair) {
    let report = pattern(70_000, 26);
    t.a.write("docs/report.txt", &report)
        .write("docs/keep.txt", "k");
    t.sync_and_settle();
    t.a.remove("docs/report.txt");
    t.sync_and_settle();
    assert!(!t.b.exists("docs/report.txt"));

    let listed = on_far(t, &["trash", "docs/report.txt"]).ok().stdout;
    assert!(
        listed.contains("    1  ") && listed.contains("deleted by a sync with"),
        "{listed}"
    );
    assert!(listed.contains("68.4 KiB"), "{listed}");

    let out = on_far(t, &["restore", "docs/report.txt"]).ok().stdout;
    assert!(out.contains("restored docs/report.txt"), "{out}");
    t.sync_and_settle();
    assert_eq!(t.a.read("docs/report.txt"), report);
    assert_eq!(t.b.read("docs/report.txt"), report);

    // Asking again changes nothing; what was never kept, or is kept no more, is one line.
    let again = on_far(t, &["restore", "docs/report.txt"]).ok().stdout;
    assert!(again.contains("nothing to restore"), "{again}");
    on_far(t, &["restore", "docs/never.txt"])
        .fails()
        .one_line_error(&["no version of docs/never.txt is kept"]);
    on_far(t, &["restore", "docs/report.txt", "--version", "4"])
        .fails()
        .one_line_error(&["version 4 of docs/report.txt is no longer kept", "1 kept"]);

    // An edit made on the far side since its last sync is not overwritten unasked.
    t.b.write("docs/report.txt", "edited on the hub after the sync")
        .set_mtime_offset("docs/report.txt", 600);
    on_far(t, &["restore", "docs/report.txt", "--version", "1"])
        .fails()
        .one_line_error(&["docs/report.txt was changed at", "--force"]);
    assert_eq!(
        t.b.read("docs/report.txt"),
        b"edited on the hub after the sync"
    );
    on_far(
        t,
        &["restore", "docs/report.txt", "--version", "1", "--force"],
    )
    .ok();
    assert_eq!(t.b.read("docs/report.txt"), report);
    assert!(
        t.b.trash_contents()
            .contains(&b"edited on the hub after the sync".to_vec())
    );
    // The hub's edit, now the newest kept version, comes back beside it under a new name.
    on_far(
        t,
        &["restore", "docs/report.txt", "--as", "docs/hub-edit.txt"],
    )
    .ok();
    t.sync_and_settle();
    assert_eq!(t.a.read("docs/report.txt"), report);
    assert_eq!(
        t.a.read("docs/hub-edit.txt"),
        b"edited on the hub after the sync"
    );
}

/// A folder restored `--at` a time before a sync replaced and deleted files in it holds what
/// it held then: the old versions back, a file written since moved to the trash; on both
/// sides. (The files' mtimes are set apart from the time asked by minutes.)
fn a_folder_comes_back_as_it_was_at_a_time(t: &mut Pair) {
    t.a.write("d/x.txt", "x one")
        .write("d/y.txt", "y one")
        .write("d/sub/z.txt", "z one");
    for f in ["d/x.txt", "d/y.txt", "d/sub/z.txt"] {
        t.a.set_mtime_offset(f, -600);
    }
    t.sync_and_settle();
    t.a.write("d/x.txt", "x two, longer")
        .remove("d/y.txt")
        .remove("d/sub")
        .write("d/new.txt", "made later");
    t.a.set_mtime_offset("d/new.txt", -300);
    t.sync_and_settle();

    let out = on_far(t, &["restore", "d", "--at", "450s ago"]).ok().stdout;
    assert!(out.contains("moved d/new.txt to the trash"), "{out}");
    t.sync_and_settle();
    for side in [&t.a, &t.b] {
        assert_eq!(side.read("d/x.txt"), b"x one");
        assert_eq!(side.read("d/y.txt"), b"y one");
        assert_eq!(side.read("d/sub/z.txt"), b"z one");
        assert!(!side.exists("d/new.txt"));
    }
    on_far(t, &["restore", "d", "--version", "1"])
        .fails()
        .one_line_error(&["d is a folder", "--at"]);
}

/// The one conflict copy of `notes.md` on a side.
fn copy_of(f: &Folder) -> Option<String> {
    f.tree()
        .into_keys()
        .find(|k| k.starts_with("notes.sync-conflict-"))
}

/// Both sides edit notes.md; the sync keeps the laptop's (newer) version at the name. Each
/// round's far version differs in size and mtime from the last: plain SFTP shows whole
/// seconds, and a file of the same size and second reads as unchanged.
fn conflict(t: &Pair, round: usize) {
    t.a.write("notes.md", format!("laptop {round}"));
    t.b.write("notes.md", far_version(round));
    t.b.set_mtime_offset("notes.md", -60 * round as i64);
    let out = t.sync_and_settle();
    assert!(out.contains("conflict: notes.md"), "{out}");
    assert!(copy_of(&t.a).is_some() && copy_of(&t.b).is_some());
}

fn far_version(round: usize) -> Vec<u8> {
    format!("far side {round}, longer{}", "!".repeat(round)).into_bytes()
}

/// `--keep other` on the laptop, `--keep this` on the far side, `--keep both`: each time the
/// conflict copy is gone from both sides after a sync, and the kept content is everywhere.
fn each_way_of_resolving_ends_the_conflict_on_both_sides(t: &mut Pair) {
    t.a.write("notes.md", "base");
    t.sync_and_settle();

    conflict(t, 1);
    // The laptop is named in the indexes as `filesync sync` was given it.
    let listed = on_near(t, &["conflicts"]).ok().stdout;
    assert!(
        listed.contains(&format!("notes.md: {}'s version", t.a.s())),
        "{listed}"
    );
    assert!(listed.contains("1 open conflicts"), "{listed}");
    let status =
        t.sb.filesync()
            .args(["status", "--root"])
            .arg(&t.a.path)
            .ok()
            .stdout;
    assert!(status.contains("conflicts: 1 open"), "{status}");
    on_near(t, &["resolve", "notes.md", "--keep", "other"]).ok();
    t.sync_and_settle();
    for side in [&t.a, &t.b] {
        assert_eq!(side.read("notes.md"), far_version(1));
        assert_eq!(copy_of(side), None);
    }

    conflict(t, 2);
    let copy = copy_of(&t.b).expect("copy");
    on_far(t, &["resolve", &copy, "--keep", "this"]).ok();
    t.sync_and_settle();
    for side in [&t.a, &t.b] {
        assert_eq!(side.read("notes.md"), b"laptop 2");
        assert_eq!(copy_of(side), None);
    }

    conflict(t, 3);
    on_far(t, &["resolve", "notes.md", "--keep", "both"]).ok();
    t.sync_and_settle();
    for side in [&t.a, &t.b] {
        assert_eq!(side.read("notes.md"), b"laptop 3");
        assert_eq!(copy_of(side), None);
        let beside: Vec<String> = side
            .tree()
            .into_keys()
            .filter(|k| k.starts_with("notes (from "))
            .collect();
        assert_eq!(beside.len(), 1, "{beside:?}");
        assert_eq!(side.read(&beside[0]), far_version(3));
    }
    on_near(t, &["resolve", "notes.md", "--keep", "this"])
        .fails()
        .one_line_error(&["notes.md has no conflict copy"]);
    let none = on_near(t, &["conflicts"]).ok().stdout;
    assert!(none.contains("no open conflicts"), "{none}");
}

/// With `trash_max` at 1150 bytes the far trash, holding two old versions of a live file
/// (100 B each) and the only copy of a deleted one (1000 B), lets go of the oldest version
/// only; at 10 bytes it lets go of both versions and still keeps the last copy.
fn the_trash_cap_evicts_oldest_first_and_never_a_last_copy(t: &mut Pair) {
    t.sb.set_config("trash_max = \"1150 B\"\n");
    t.a.write("keep.txt", [b'1'; 100])
        .write("gone.bin", [b'g'; 1000]);
    t.sync_and_settle();
    t.a.write("keep.txt", [b'2'; 100]);
    t.sync_and_settle();
    t.a.write("keep.txt", [b'3'; 100]).remove("gone.bin");
    t.sync_and_settle();
    let mut want = vec![vec![b'2'; 100], vec![b'g'; 1000]];
    want.sort();
    assert_eq!(t.b.trash_contents(), want);

    t.sb.set_config("trash_max = \"10 B\"\n");
    t.a.write("keep.txt", [b'4'; 100]);
    t.sync_and_settle();
    assert_eq!(t.b.trash_contents(), vec![vec![b'g'; 1000]]);
    let listed = on_far(t, &["trash"]).ok().stdout;
    assert!(listed.contains("1 versions of 1 files"), "{listed}");
    let status =
        t.sb.filesync()
            .args(["status", "--root"])
            .arg(&t.b.path)
            .ok()
            .stdout;
    assert!(
        status.contains("trash: 1 versions of 1 files, 1000 B"),
        "{status}"
    );
    assert!(status.contains("last sync's errors: none"), "{status}");
}

/// One sync with a conflict, a deletion and a rename: each side's log names each change and
/// the replica it came from, and what went to the trash for it.
fn changes_name_each_change_and_its_source(t: &mut Pair) {
    t.a.write("notes.md", "base")
        .write("old.txt", "old")
        .write("photo.jpg", pattern(50_000, 7));
    t.sync_and_settle();
    t.a.write("notes.md", "laptop edit").remove("old.txt");
    t.a.rename("photo.jpg", "cat.jpg");
    t.b.write("notes.md", "far edit, longer");
    t.b.set_mtime_offset("notes.md", -60);
    t.sync_and_settle();

    // The laptop is named in the indexes as `filesync sync` was given it.
    let laptop = t.a.s();
    let far = on_far(t, &["changes"]).ok().stdout;
    for line in [
        format!("deleted old.txt from {laptop} (the old version is in the trash)"),
        format!("renamed photo.jpg -> cat.jpg from {laptop}"),
        format!(
            "conflict notes.md: {laptop}'s version keeps the name, the other is notes.sync-conflict-"
        ),
    ] {
        assert!(far.contains(&line), "no {line:?} in:\n{far}");
    }
    let near = on_near(t, &["changes", "--since", "1h"]).ok().stdout;
    assert!(near.contains("added notes.sync-conflict-"), "{near}");
    assert!(near.contains("conflict notes.md"), "{near}");
    let later = on_near(t, &["changes", "--since", "2099-01-01"])
        .ok()
        .stdout;
    assert!(later.contains("0 changes"), "{later}");

    // A sync that fails on a path: the laptop's status names it until a clean sync.
    t.a.write("clash.txt", "mine");
    t.b.write("target.txt", "t")
        .symlink("target.txt", "clash.txt");
    t.sync_fails();
    let status = |t: &Pair| {
        t.sb.filesync()
            .args(["status", "--root"])
            .arg(&t.a.path)
            .ok()
            .stdout
    };
    let failed = status(t);
    assert!(
        failed.contains("last sync's errors: 1\n  clash.txt: "),
        "{failed}"
    );
    let logged = on_near(t, &["changes", "--since", "1m"]).ok().stdout;
    assert!(logged.contains("error clash.txt"), "{logged}");
    // A sync that changes nothing on a side leaves no trace there: the clean sync here
    // brings the laptop a file.
    std::fs::remove_file(t.b.p("clash.txt")).expect("remove the link");
    t.b.write("after.txt", "a");
    t.sync_and_settle();
    assert!(
        status(t).contains("last sync's errors: none"),
        "{}",
        status(t)
    );
}
