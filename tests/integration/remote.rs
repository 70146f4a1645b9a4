//! Two-way sync between a local folder and a remote one over SFTP, each scenario run against
//! every backend: our `filesync serve`, the hub daemon (`filesync daemon` with `[server]`), and
//! OpenSSH's sshd with nothing of ours installed. Then what only a plain server shows.

use crate::harness::*;
use std::path::{Path, PathBuf};

on_backends!([serve, daemon, sshd](
    propagation_both_ways_and_noop,
    concurrent_edits_keep_both,
    delete_vs_edit_keeps_the_edit,
    clock_skew_later_edit_wins,
    remote_lock_held_is_refused_then_next_sync_works,
    killing_the_server_mid_sync_tears_nothing,
    remote_syncignore_is_honoured,
    an_index_update_lock_is_waited_for,
    many_files_in_one_sync,
    replaced_small_files_keep_their_old_versions,
    remote_disk_full_fails_cleanly_then_completes,
    a_remote_symlink_is_never_written_through,
    a_file_appended_to_during_a_sync_is_left_for_the_next,
    a_big_tree_of_small_files_goes_up_in_one_sync,
    a_failure_in_a_batch_holds_back_only_its_files,
));

fn propagation_both_ways_and_noop(t: &mut Pair) {
    t.a.write("a.txt", b"local a");
    t.a.write("dir/b.txt", b"local b");
    t.a.write("big.bin", pattern(3 << 20, 1));
    t.b.write("r.txt", b"remote r");
    t.b.write("rdir/deep/c.txt", b"remote c");
    std::fs::create_dir_all(t.b.p("empty")).expect("mkdir");
    t.sync();
    t.assert_same();
    assert_eq!(t.a.read("rdir/deep/c.txt"), b"remote c");
    assert_eq!(t.b.read("big.bin"), pattern(3 << 20, 1));
    assert!(t.b.p(".sync").is_file(), "the remote index is written");

    // Nothing changed: nothing moves and the remote index is not rewritten.
    let before = std::fs::metadata(t.b.p(".sync"))
        .and_then(|m| m.modified())
        .expect("stat .sync");
    let out = t.sync();
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );
    let after = std::fs::metadata(t.b.p(".sync"))
        .and_then(|m| m.modified())
        .expect("stat .sync");
    // (Our own server refreshes and saves its index itself; only the upload is ours to skip.)
    if matches!(t.remote, Remote::Sshd(_)) {
        assert_eq!(before, after, "a no-op sync rewrote the remote index");
    }

    // Edits, deletions, renames and new folders on both sides.
    t.b.write("a.txt", b"remote edit of a, longer");
    std::fs::remove_file(t.a.p("r.txt")).expect("rm");
    std::fs::create_dir_all(t.b.p("dir2")).expect("mkdir");
    std::fs::rename(t.b.p("dir/b.txt"), t.b.p("dir2/b.txt")).expect("mv");
    std::fs::rename(t.a.p("rdir"), t.a.p("rdir-renamed")).expect("mv dir");
    std::fs::remove_dir(t.a.p("empty")).expect("rmdir");
    t.a.write("new/x.txt", b"new x");
    t.sync();
    t.assert_same();
    let r = t.b.tree();
    assert_eq!(t.b.read("a.txt"), b"remote edit of a, longer");
    assert!(!r.contains_key("r.txt"));
    assert!(r.contains_key("dir2/b.txt") && !r.contains_key("dir/b.txt"));
    assert!(r.contains_key("rdir-renamed/deep/c.txt") && !r.contains_key("rdir"));
    assert!(!r.contains_key("empty"));
    // Replaced and deleted files are kept in the remote trash.
    assert!(t.b.p(".sync-trash").is_dir());

    let out = t.sync();
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );
}

fn concurrent_edits_keep_both(t: &mut Pair) {
    t.a.write("doc.txt", b"base");
    t.sync();
    t.a.write("doc.txt", b"local version");
    t.b.write("doc.txt", b"remote version!");
    t.sync();
    t.assert_same();
    let l = t.a.tree();
    let versions: Vec<&Vec<u8>> = l
        .iter()
        .filter(|(k, _)| k.starts_with("doc"))
        .filter_map(|(_, v)| v.as_ref())
        .collect();
    assert_eq!(versions.len(), 2, "{:?}", l.keys());
    assert!(versions.contains(&&b"local version".to_vec()));
    assert!(versions.contains(&&b"remote version!".to_vec()));
    assert!(l.keys().any(|k| k.contains(".sync-conflict-")));
    t.sync();
    t.assert_same();
}

fn delete_vs_edit_keeps_the_edit(t: &mut Pair) {
    t.a.write("x.txt", b"v1");
    t.a.write("y.txt", b"v1");
    t.sync();
    std::fs::remove_file(t.a.p("x.txt")).expect("rm");
    t.b.write("x.txt", b"edited remotely");
    std::fs::remove_file(t.b.p("y.txt")).expect("rm");
    t.a.write("y.txt", b"edited locally");
    t.sync();
    t.assert_same();
    assert_eq!(t.a.read("x.txt"), b"edited remotely");
    assert_eq!(t.b.read("y.txt"), b"edited locally");
}

fn clock_skew_later_edit_wins(t: &mut Pair) {
    t.a.write("a.txt", b"one");
    t.a.write("b.txt", b"one");
    t.sync();
    // Edits stamped an hour in the past (a machine whose clock is behind) still win: the
    // version vector says they came after what the other side has.
    t.a.write("a.txt", b"local edit");
    t.a.set_mtime_offset("a.txt", -3600);
    t.b.write("b.txt", b"remote edit");
    t.b.set_mtime_offset("b.txt", -3600);
    t.sync();
    t.assert_same();
    assert_eq!(t.b.read("a.txt"), b"local edit");
    assert_eq!(t.a.read("b.txt"), b"remote edit");
}

fn remote_lock_held_is_refused_then_next_sync_works(t: &mut Pair) {
    t.a.write("a.txt", b"a");
    let info = format!(
        r#"{{"host":"elsewhere","pid":1,"time":{},"what":"filesync sync"}}"#,
        now_secs()
    );
    t.b.write(".sync.lock", info.as_bytes());
    let out = t.sync_fails();
    assert!(
        out.stderr.contains("locked") && out.stderr.contains(".sync.lock"),
        "{out}"
    );
    assert!(!t.a.p(".sync.lock").exists(), "the local lock is released");
    std::fs::remove_file(t.b.p(".sync.lock")).expect("rm lock");
    t.sync();
    t.assert_same();
}

fn killing_the_server_mid_sync_tears_nothing(t: &mut Pair) {
    let mut expect_files = std::collections::BTreeMap::new();
    let mut history: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for i in 0..120 {
        let len = if i % 30 == 0 { 2 << 20 } else { 16 << 10 };
        let rel = format!("d{}/f{i:03}.bin", i % 7);
        let b = pattern(len, i);
        t.a.write(&rel, &b);
        history.entry(rel.clone()).or_default().push(b.clone());
        expect_files.insert(rel, b);
    }
    for round in 0..3u64 {
        // Change some files each round so every round has work to interrupt.
        for i in (round..120).step_by(5) {
            let rel = format!("d{}/f{i:03}.bin", i % 7);
            let b = pattern(20 << 10, 1000 * (round + 1) + i);
            t.a.write(&rel, &b);
            history.entry(rel.clone()).or_default().push(b.clone());
            expect_files.insert(rel, b);
        }
        let child = t.sync_cmd().spawn();
        let delay = 150 + (round * 277) % 500;
        std::thread::sleep(std::time::Duration::from_millis(delay));
        t.kill_server();
        let out = child.wait_with_output().expect("wait filesync");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "round {round}: killed after {delay} ms: {:?}: {err}",
            out.status
        );
        if !out.status.success() {
            assert!(!err.is_empty(), "a failed sync says why");
        }
        // Whatever made it across is whole: every remote file is some version we wrote.
        for (rel, content) in t.b.tree() {
            let Some(content) = content else { continue };
            let known = history.get(&rel).is_some_and(|v| v.contains(&content));
            assert!(known, "torn or stray file {rel} after round {round}");
        }
        t.restart_server();
        t.sync();
        t.assert_same();
        for (rel, content) in &expect_files {
            assert_eq!(t.a.get(rel).as_ref(), Some(content), "{rel} lost");
        }
        // The interrupted uploads' temps are cleared up by the next sync, whatever their age.
        assert_eq!(t.b.temp_files(), Vec::<String>::new(), "round {round}");
        assert_eq!(t.a.temp_files(), Vec::<String>::new(), "round {round}");
    }
}

/// A symlink on the remote (here to a folder outside the synced one) is never written
/// through: the files meant for a folder of that name stay where they are, with an error
/// naming it, and nothing is deleted on either side by the next sync.
fn a_remote_symlink_is_never_written_through(t: &mut Pair) {
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), t.b.p("evil")).expect("symlink");
    t.a.write("evil/new.txt", b"mine");
    t.a.write("plain.txt", b"fine");
    // A link inside a folder only the remote ignores (its ignore file ignores itself, so it
    // stays there): the remote's walk never lists it, and the local side still sends into it.
    t.b.write(".syncignore", b"build/\n/.syncignore\n");
    std::fs::create_dir_all(t.b.p("build")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), t.b.p("build/out")).expect("symlink");
    t.a.write("build/out/f.txt", b"mine too");
    for round in 0..2 {
        let out = t.sync_cmd().output();
        let err = &out.stderr;
        assert!(!out.status.success(), "round {round}: sync passed\n{err}");
        assert!(
            err.contains("evil") && err.contains("build/out"),
            "round {round}: {err}"
        );
        let written: Vec<_> = std::fs::read_dir(outside.path()).expect("ls").collect();
        assert!(
            written.is_empty(),
            "round {round}: written outside: {written:?}"
        );
        assert_eq!(
            std::fs::read(t.a.p("evil/new.txt")).ok(),
            Some(b"mine".to_vec())
        );
        assert_eq!(
            std::fs::read(t.b.p("plain.txt")).ok(),
            Some(b"fine".to_vec())
        );
    }
}

fn remote_syncignore_is_honoured(t: &mut Pair) {
    t.b.write(".syncignore", b"*.log\nbuild/\n");
    t.b.write("keep.txt", b"keep");
    t.b.write("noise.log", b"ignored");
    t.b.write("sub/deeper.log", b"ignored too");
    t.b.write("build/out.bin", b"ignored folder");
    // A deeper ignore file re-includes what the root's excludes (gitignore precedence).
    t.b.write("a/b/.syncignore", b"!keep.log\n");
    t.b.write("a/b/keep.log", b"re-included");
    t.b.write("a/b/other.log", b"still ignored");
    t.sync();
    let l = t.a.tree();
    assert!(
        l.contains_key("keep.txt") && l.contains_key(".syncignore"),
        "{:?}",
        l.keys()
    );
    assert!(!l.contains_key("noise.log") && !l.contains_key("sub/deeper.log"));
    assert!(!l.contains_key("build/out.bin"));
    assert_eq!(
        t.a.get("a/b/keep.log").as_deref(),
        Some(&b"re-included"[..]),
        "{:?}",
        l.keys()
    );
    assert!(!l.contains_key("a/b/other.log"));
    // Ignored remote files are left alone, never deleted.
    t.sync();
    assert!(t.b.p("noise.log").exists() && t.b.p("build/out.bin").exists());
    // The re-included file's deletion reaches the other side like any other.
    std::fs::remove_file(t.b.p("a/b/keep.log")).expect("rm keep.log");
    t.sync();
    assert!(!t.a.p("a/b/keep.log").exists());
    assert!(t.b.p("a/b/other.log").exists());
    // So does its folder's, even though the ignore file that re-included it went too.
    t.b.write("a/b/keep.log", b"back");
    t.sync();
    assert!(t.a.p("a/b/keep.log").exists());
    std::fs::remove_dir_all(t.b.p("a")).expect("rm a");
    t.sync();
    assert!(!t.a.p("a/b/keep.log").exists(), "{:?}", t.a.tree().keys());
    // The remote index agrees with its disk: made again here, the file reaches the remote.
    t.a.write("a/b/.syncignore", b"!keep.log\n");
    t.a.write("a/b/keep.log", b"again");
    t.sync();
    assert_eq!(
        std::fs::read(t.b.p("a/b/keep.log")).ok().as_deref(),
        Some(&b"again"[..])
    );
}

/// The remote trash is expired by age (the stamp in each name), at most every few hours: an
/// old entry goes at the first sync, a recent one stays, and a sync soon after does not walk
/// the trash again.
fn remote_trash_expires_now_and_then(t: &mut Pair) {
    t.b.write("keep.txt", b"k");
    t.b.write(".sync-trash/old.txt~20200101-000000", b"old");
    t.b.write(".sync-trash/sub/older.txt~20190101-000000", b"older");
    let recent = format!(
        "recent.txt~{}",
        filesync::time::stamp(filesync::time::now_secs())
    );
    t.b.write(&format!(".sync-trash/{recent}"), b"recent");
    t.sync();
    let trash = t.b.p(".sync-trash");
    assert!(!trash.join("old.txt~20200101-000000").exists());
    assert!(!trash.join("sub").exists(), "emptied trash folders go too");
    assert!(trash.join(&recent).exists());
    // Swept a moment ago: the next sync leaves even an old entry for the next sweep.
    t.b.write(".sync-trash/late.txt~20200101-000000", b"late");
    t.sync();
    assert!(trash.join("late.txt~20200101-000000").exists());
}

/// A remote lock held for a daemon's index update (seconds at most) is waited for, not an
/// error: the sync goes through once it is released.
fn an_index_update_lock_is_waited_for(t: &mut Pair) {
    t.a.write("a.txt", b"a");
    let info = format!(
        r#"{{"host":"elsewhere","pid":1,"time":{},"what":"filesync daemon (index update)"}}"#,
        now_secs()
    );
    t.b.write(".sync.lock", info.as_bytes());
    let lock = t.b.p(".sync.lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        std::fs::remove_file(lock).expect("rm lock");
    });
    let out = t.sync_cmd().output();
    release.join().expect("release thread");
    assert!(out.status.success(), "{out}");
    t.assert_same();
}

/// More files in one sync than any server keeps handles open at once (ours allows 1,024 per
/// session), both ways: every handle a transfer opens must be usable and closed. Found by
/// syncing a 10,000-file tree with our server: handles past 0x7f came back mangled.
/// More small files than the server can write as fast as they arrive (64 MiB: many batches
/// of them in flight at once): the sync completes in one go, the session is not dropped.
fn a_big_tree_of_small_files_goes_up_in_one_sync(t: &mut Pair) {
    for i in 0..1600 {
        t.a.write(
            &format!("up{}/f{i}.bin", i % 16),
            pattern(40 << 10, i as u64),
        );
    }
    let out = t.sync();
    assert!(out.contains("sent 1600 files"), "{out}");
    t.assert_same();
}

/// One far folder turns read-only for the far side's user between syncs: the next sync,
/// whose small files travel in batches (all under way at once on a plain server), names each
/// file of that folder, installs every other one whole, and leaves no temp file and nothing
/// under a final name that is not the new file; once the folder is writable the rest arrives.
fn a_failure_in_a_batch_holds_back_only_its_files(t: &mut Pair) {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    t.a.write("shut/old.txt", "old");
    t.sync_and_settle();
    t.as_nobody();
    let name = |i: u64| match i % 100 {
        42 => format!("shut/f{i:03}.txt"),
        _ => format!("open{}/f{i:03}.txt", i % 4),
    };
    // More than one batch's bytes: the refused files sit in the middle of the first.
    for i in 0..600 {
        t.a.write(&name(i), pattern(5 << 10, i));
    }
    chmod(&t.b.p("shut"), 0o555);
    let out = t.sync_fails();
    let shut: Vec<u64> = (0..600).filter(|i| i % 100 == 42).collect();
    for i in &shut {
        assert!(
            out.stderr.contains(&name(*i)),
            "{} not named: {out}",
            name(*i)
        );
    }
    assert!(out.stdout.contains("sent 594 files"), "{out}");
    let far = t.b.tree();
    for i in (0..600).filter(|i| !shut.contains(i)) {
        assert_eq!(t.b.read(&name(i)), pattern(5 << 10, i), "{}", name(i));
    }
    let near = t.a.tree();
    for (rel, content) in &far {
        assert_eq!(near.get(rel), Some(content), "{rel} is not what was sent");
    }
    assert_eq!(t.b.temp_files(), Vec::<String>::new());
    chmod(&t.b.p("shut"), 0o755);
    let out = t.sync();
    assert!(out.contains("sent 6 files"), "{out}");
    t.assert_same();
}

fn many_files_in_one_sync(t: &mut Pair) {
    for i in 0..1300 {
        t.a.write(&format!("up{}/f{i}.txt", i % 7), format!("up {i}"));
    }
    // Downloads enough to keep all of the engine's batch slots busy at once.
    for i in 0..5000 {
        t.b.write(&format!("down{}/f{i}.txt", i % 11), format!("down {i}"));
    }
    let out = t.sync();
    assert!(
        out.contains("sent 1300 files") && out.contains("received 5000 files"),
        "{out}"
    );
    t.assert_same();
    let out = t.sync();
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );
}

/// Small files travel in batches (several hundred per durability barrier, on our server one
/// request for many): replacing them on either side still keeps every old version in that
/// side's trash, sets the source's mtime, and leaves no temp file behind.
fn replaced_small_files_keep_their_old_versions(t: &mut Pair) {
    let name = |i: usize| format!("s{}/f{i:04}.txt", i % 5);
    let v1 = |i: usize| {
        format!("first version of {i} ")
            .repeat(1 + i % 40)
            .into_bytes()
    };
    for i in 0..700 {
        t.a.write(&name(i), v1(i));
    }
    let out = t.sync();
    assert!(out.contains("sent 700 files"), "{out}");
    t.assert_same();
    // Local edits of 400 files (more than one batch), remote edits of 100 others. Each edit
    // changes the size: a remote edit within the second of the last sync is seen by size only
    // through plain SFTP (its times are whole seconds).
    let v2 = |i: usize| format!("second version of {i}, edited").into_bytes();
    for i in 0..400 {
        t.a.write(&name(i), v2(i));
        t.a.set_mtime_offset(&name(i), -3600 - i as i64);
    }
    for i in 500..600 {
        t.b.write(&name(i), v2(i));
    }
    let out = t.sync();
    assert!(
        out.contains("sent 400 files") && out.contains("received 100 files"),
        "{out}"
    );
    t.assert_same();
    for i in (0..400).chain(500..600) {
        assert_eq!(t.b.read(&name(i)), v2(i), "{}", name(i));
        assert_eq!(t.a.read(&name(i)), v2(i), "{}", name(i));
    }
    for i in [0, 123, 399] {
        assert_eq!(t.b.mtime(&name(i)), t.a.mtime(&name(i)));
    }
    let mut want_r: Vec<Vec<u8>> = (0..400).map(v1).collect();
    want_r.sort();
    assert_eq!(
        t.b.trash_contents(),
        want_r,
        "every replaced remote file is in its trash"
    );
    let mut want_l: Vec<Vec<u8>> = (500..600).map(v1).collect();
    want_l.sort();
    assert_eq!(
        t.a.trash_contents(),
        want_l,
        "every replaced local file is in its trash"
    );
    assert_eq!(t.b.temp_files(), Vec::<String>::new());
    assert_eq!(t.a.temp_files(), Vec::<String>::new());
}

/// A small tmpfs over the remote folder (the test fails unless it runs as root).
struct SmallFs(PathBuf);

impl SmallFs {
    #[track_caller]
    fn mount(dir: &Path, size: &str) -> SmallFs {
        require_root("it mounts a small tmpfs to fill");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs failed");
        SmallFs(dir.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(st.success());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazily: a server may still hold the folder open until its test ends.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The remote disk fills up mid-sync, with big files (one at a time) and small ones (in
/// batches) under way: the sync fails saying so, nothing torn or half-written is left, and
/// once there is room the next sync completes.
fn remote_disk_full_fails_cleanly_then_completes(t: &mut Pair) {
    let fs = SmallFs::mount(&t.b.path, "3m");
    if matches!(t.remote, Remote::Hub(_)) {
        // Our server holds the folder it serves open: serve the tmpfs, not what it covers.
        t.restart_server();
    }
    for i in 0..6 {
        t.a.write(&format!("big{i}.bin"), pattern(1 << 20, i));
    }
    for i in 0..300 {
        t.a.write(&format!("small/f{i:03}.txt"), pattern(8 << 10, 100 + i));
    }
    let out = t.sync_fails();
    let err = out.stderr.to_lowercase();
    eprintln!("the full disk, as reported: {err}");
    assert!(
        err.contains("disk full") || err.contains("no space left"),
        "{err}"
    );
    // Nothing torn, no temp file left: whatever arrived is whole.
    let l = t.a.tree();
    for (rel, content) in t.b.tree() {
        assert_eq!(l.get(&rel), Some(&content), "torn {rel}");
    }
    assert_eq!(t.b.temp_files(), Vec::<String>::new());
    fs.resize("32m");
    t.sync();
    t.assert_same();
}

#[test]
fn remote_trash_expires_now_and_then_on_a_plain_server() {
    remote_trash_expires_now_and_then(&mut Pair::sshd());
}

#[test]
fn permission_denied_is_reported_and_retried() {
    let mut t = Pair::sshd();
    t.a.write("a.txt", b"a");
    t.b.write("r.txt", b"r");
    // A read-only SFTP server refuses every write with "permission denied", even for root.
    t.sshd_mut().restart_sftp_flags("-R");
    let out = t.sync_fails();
    assert!(out.stderr.contains("permission denied"), "{out}");
    assert!(out.stderr.contains(t.b.s()), "names the remote path: {out}");
    assert!(!t.a.p(".sync.lock").exists(), "the local lock is released");
    t.sshd_mut().restart_sftp_flags("");
    t.sync();
    t.assert_same();
}

#[test]
fn host_keys_unknown_accept_new_changed() {
    let sb = Sandbox::new();
    let sshd = Sshd::start();
    sshd.install_client(&sb.home(), false);
    let local = sb.folder("local");
    let remote = sb.folder("remote");
    local.write("a.txt", b"a");
    let url = sshd.url(&remote.path);
    let sync = |extra: &[&str]| {
        sb.filesync()
            .args(["sync", "--no-progress"])
            .args(extra)
            .arg(&url)
            .arg(&local.path)
    };

    // Unknown: refused, with the fingerprint and the flag to trust it; nothing synced.
    let out = sync(&[]).fails();
    assert!(
        out.stderr.contains("SHA256:") && out.stderr.contains("--accept-new"),
        "{out}"
    );
    assert!(!remote.exists("a.txt"));

    // Accepted with --accept-new and remembered.
    sync(&["--accept-new"]).ok();
    let kh = sb.home().join(".ssh/known_hosts");
    let text = std::fs::read_to_string(&kh).expect("known_hosts");
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{text}"
    );
    sync(&[]).ok();

    // Hashed known_hosts entries work too.
    let st = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(st.status.success());
    assert!(
        !std::fs::read_to_string(&kh)
            .expect("kh")
            .contains("127.0.0.1")
    );
    sync(&[]).ok();

    // Changed: refused loudly, even with --accept-new.
    let k = sb.keygen("other-host-key", "ed25519");
    let pubkey = std::fs::read_to_string(k.with_extension("pub")).expect("pub");
    let mut parts = pubkey.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        sshd.port,
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    std::fs::write(&kh, line).expect("write known_hosts");
    local.write("b.txt", b"b");
    let out = sync(&["--accept-new"]).fails();
    assert!(out.stderr.contains("CHANGED"), "{out}");
    assert!(!remote.exists("b.txt"));
}

/// A write the index calls fresh (nothing was at the path when scanned) never replaces a file
/// that appeared there since: through SFTP as on the local disk, the newcomer stays as it is.
#[test]
fn a_fresh_write_never_replaces_a_newcomer() {
    use filesync::index::MTime;
    use filesync::store::{Put, Reader, Store};
    let sb = Sandbox::new();
    let sshd = Sshd::start();
    let remote_dir = sb.folder("remote").path;
    let local_dir = sb.folder("local").path;
    let cfg_path = sb.file(
        "store.toml",
        &format!(
            "root = {:?}\n[peers.r]\nurl = \"sftp://{}@127.0.0.1:{}{}\"\nidentity = {:?}\nknown_hosts = {:?}\n",
            local_dir,
            sshd.user,
            sshd.port,
            remote_dir.display(),
            sshd.key,
            sshd.known_hosts
        ),
    );
    let cfg = filesync::config::Config::load(Some(&cfg_path)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (target, _) = filesync::endpoint::Target::parse("r", &cfg).unwrap();
        let remote = filesync::sync::job::open_target(&target, &cfg, false)
            .await
            .unwrap();
        let local = filesync::store::AnyStore::Local(
            filesync::store::LocalStore::open(&local_dir, 3600).unwrap(),
        );
        let p = filesync::relpath::RelPath::parse("sub/new.txt").unwrap();
        let put = Put {
            mtime: MTime::new(1_700_000_000, 0),
            expect: None,
            fresh: true,
            size: 13,
            mode: None,
        };
        let data = || -> Reader { Box::pin(std::io::Cursor::new(b"from the sync".to_vec())) };
        for (store, dir) in [(&remote, &remote_dir), (&local, &local_dir)] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("sub/new.txt"), "arrived meanwhile").unwrap();
            let err = store.write(&p, data(), put).await.unwrap_err().to_string();
            assert!(err.contains("appeared"), "{err}");
            assert_eq!(
                std::fs::read_to_string(dir.join("sub/new.txt")).unwrap(),
                "arrived meanwhile"
            );
            // Once it is gone, the same fresh write lands.
            std::fs::remove_file(dir.join("sub/new.txt")).unwrap();
            store.write(&p, data(), put).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.join("sub/new.txt")).unwrap(),
                "from the sync"
            );
            // A source longer than the index said is written whole, never cut at the hint.
            let q = filesync::relpath::RelPath::parse("sub/grew.txt").unwrap();
            let long = vec![b'x'; 300_000];
            let short_hint = Put { size: 2, ..put };
            store
                .write(&q, Box::pin(std::io::Cursor::new(long.clone())), short_hint)
                .await
                .unwrap();
            assert_eq!(std::fs::read(dir.join("sub/grew.txt")).unwrap(), long);
            std::fs::remove_file(dir.join("sub/grew.txt")).unwrap();
            let leftovers: Vec<_> = std::fs::read_dir(dir.join("sub"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
        }
    });
}

/// A damaged remote index is refused with advice that works there (not a local command
/// naming a URL), and an index from a later version is not called damaged at all.
#[test]
fn a_bad_remote_index_says_what_to_do_on_that_machine() {
    let t = Pair::sshd();
    t.a.write("a.txt", b"a");
    t.b.write("r.txt", b"r");
    for (bytes, says) in [
        (
            &b"{\"garbage"[..],
            "On that machine run `filesync index --root ",
        ),
        (br#"{".": {".sd": 0}, ".format": 99}"#, "Upgrade filesync"),
    ] {
        t.b.write(".sync", bytes);
        let out = t.sync_fails();
        assert!(out.stderr.contains(says), "{out}");
        assert!(
            !out.stderr.contains("sftp://"),
            "advice names a URL as a folder: {out}"
        );
        assert!(!t.b.exists("a.txt") && !t.a.exists("r.txt"));
        assert_eq!(t.b.get(".sync").as_deref(), Some(bytes));
    }
}

/// `host:` with no folder (the login folder) or `sftp://host/` (the whole file system) of a
/// plain server is refused before anything is read or written there.
#[test]
fn a_target_without_a_folder_is_refused_on_a_plain_server() {
    let mut t = Pair::sshd();
    let (whole, login) = {
        let s = t.sshd_mut();
        (
            format!("sftp://{}@127.0.0.1:{}/", s.user, s.port),
            format!("{}@127.0.0.1:{}", s.user, s.port),
        )
    };
    for (url, says) in [(whole, "whole file system"), (login, "login folder")] {
        let out =
            t.sb.filesync()
                .args(["sync", "--no-progress", &url])
                .arg(&t.a.path)
                .fails();
        out.one_line_error(&[says]);
    }
    assert!(!Path::new("/.sync").exists() && !Path::new("/.sync.lock").exists());
}

/// A local program appends to a file while syncs run: every sync exits 0, the other side
/// only ever holds a state the file really had (a prefix of what it ends as, never torn),
/// and once the writer stops the next sync carries the final content.
fn a_file_appended_to_during_a_sync_is_left_for_the_next(t: &mut Pair) {
    use std::io::Write;
    t.a.write("grow.log", pattern(2 << 20, 3));
    for i in 0..200 {
        t.a.write(&format!("small/{i}.txt"), pattern(1000 + i, i as u64));
    }
    t.sync();
    let path = t.a.p("grow.log");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&pattern(4096, 100 + n)).expect("append");
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(4) {
        // Something changes on each side every round, so every sync has work to do.
        t.a.write(
            "small/0.txt",
            pattern(1000, started.elapsed().as_millis() as u64),
        );
        let r = t.sync_cmd().output();
        assert!(r.status.success(), "a sync during the appends failed: {r}");
        seen.push(t.b.read("grow.log"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    let last = t.a.read("grow.log");
    for (i, other) in seen.iter().enumerate() {
        assert!(
            last.starts_with(other),
            "sync {i} left a torn copy ({} bytes) on the other side",
            other.len()
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    t.sync();
    assert_eq!(
        t.b.read("grow.log"),
        last,
        "the next sync did not carry the final content"
    );
}
