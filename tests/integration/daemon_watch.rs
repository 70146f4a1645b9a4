//! The daemon keeps `.sync` current: after edits, creates, deletes, renames, editor saves and a
//! 10,000-file burst, its index equals what `filesync index` makes of the folder from scratch,
//! with no version bumps beyond the real changes.

use crate::harness::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// `filesync sync other root`, retried while the daemon briefly holds the lock.
fn sync(sb: &Sandbox, other: &Path, root: &Path) -> String {
    for _ in 0..50 {
        let out = sb
            .filesync()
            .args(["sync", "--no-progress"])
            .arg(other)
            .arg(root)
            .output();
        let text = format!("{}{}", out.stdout, out.stderr);
        if out.status.success() {
            return text;
        }
        assert!(text.contains("locked"), "sync failed: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the replica stayed locked");
}

#[test]
fn edits_creates_deletes_renames_and_editor_saves() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    write(&root, "keep.txt", "same");
    write(&root, "edit.txt", "v1");
    write(&root, "doc.txt", "draft 1");
    write(&root, "old-name.txt", "moving");
    write(&root, "tree/sub/x", "x");
    write(&root, "tree/sub/y", "y");
    write(&root, "tree/z", "z");
    write(&root, ".syncignore", "*.log\n");
    let d = sb.daemon(&root);
    assert!(
        d.wait_log("index loaded", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    wait_index_matches(&sb, &root, Duration::from_secs(10)).unwrap();
    let before = counters(&root);

    let t0 = Instant::now();
    write(&root, "edit.txt", "v2, longer");
    write(&root, "new/deep/file.txt", "new");
    write(&root, "ignored.log", "never indexed");
    std::fs::remove_dir_all(root.join("tree")).unwrap();
    std::fs::rename(root.join("old-name.txt"), root.join("new-name.txt")).unwrap();
    // An editor's save: write a temp file beside it, then rename it over the original.
    write(&root, ".doc.txt.swp~", "draft 2");
    std::fs::rename(root.join(".doc.txt.swp~"), root.join("doc.txt")).unwrap();
    wait_index_matches(&sb, &root, Duration::from_secs(10)).unwrap();
    eprintln!("index current {:?} after the edits", t0.elapsed());

    let after = counters(&root);
    assert_eq!(
        after["keep.txt"], before["keep.txt"],
        "untouched file bumped"
    );
    assert_eq!(after["edit.txt"], before["edit.txt"] + 1);
    assert_eq!(after["doc.txt"], before["doc.txt"] + 1);
    assert_eq!(
        after["tree/sub/x"],
        before["tree/sub/x"] + 1,
        "delete is one bump"
    );
    assert_eq!(after["old-name.txt"], before["old-name.txt"] + 1);
    assert_eq!(after["new-name.txt"], 1);
    assert!(!after.contains_key("ignored.log"));

    // Touched, not changed: the new mtime is recorded, the version is not bumped.
    let st = std::process::Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(root.join("keep.txt"))
        .status()
        .unwrap();
    assert!(st.success());
    wait_index_matches(&sb, &root, Duration::from_secs(10)).unwrap();
    assert_eq!(counters(&root)["keep.txt"], before["keep.txt"]);

    // The index is exactly what a sync needs: a second sync right after the first is a no-op.
    let other = sb.folder("b").path;
    let first = sync(&sb, &other, &root);
    assert!(first.contains("received 0 files"), "{first}");
    let second = sync(&sb, &other, &root);
    assert!(
        second.contains("sent 0 files") && second.contains("received 0 files"),
        "{second}"
    );
    assert_eq!(counters(&root)["keep.txt"], before["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(other.join("doc.txt")).unwrap(),
        "draft 2"
    );

    let log = d.log();
    assert!(d.stop().success(), "{log}");
}

#[test]
fn a_burst_of_ten_thousand_files_coalesces() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    write(&root, "seed.txt", "seed");
    let d = sb.daemon(&root);
    assert!(
        d.wait_log("index loaded", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    let t0 = Instant::now();
    for i in 0..10_000 {
        write(
            &root,
            &format!("d{:02}/f{i:05}.txt", i % 100),
            &format!("file {i}"),
        );
    }
    let written = t0.elapsed();
    let t1 = Instant::now();
    let all_in = wait_until(Duration::from_secs(20), || {
        live_entries(&root).is_some_and(|l| l.len() == 10_000 + 100 + 1)
    });
    eprintln!(
        "10,000 files written in {written:?}; all indexed {:?} after the last write",
        t1.elapsed()
    );
    assert!(all_in, "not all files indexed within 20 s");
    wait_index_matches(&sb, &root, Duration::from_secs(10)).unwrap();
    let log = d.log();
    let updates = log.matches("index updated").count();
    assert!(
        updates < 50,
        "{updates} index updates for one burst:\n{log}"
    );
    let live = live_entries(&root).unwrap();
    assert_eq!(live.len(), 10_000 + 100 + 1);
    // A file the 2 s max-delay cut catches between its creation and its write really had two
    // states (empty, then written) and counts two versions; anything more would be spurious.
    let bumped: Vec<_> = counters(&root)
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    eprintln!("{} of 10,000 files caught mid-write", bumped.len());
    assert!(
        bumped.len() <= 100 && bumped.iter().all(|(_, n)| *n == 2),
        "spurious bumps: {} {:?}",
        bumped.len(),
        &bumped[..bumped.len().min(10)]
    );
    assert!(d.stop().success());
}

#[test]
fn changes_wait_for_the_lock_and_apply_to_the_index_the_sync_wrote() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    write(&root, "f.txt", "1");
    let d = sb.daemon(&root);
    assert!(
        d.wait_log("index loaded", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    wait_index_matches(&sb, &root, Duration::from_secs(10)).unwrap();

    // Play a sync: hold the lock, rewrite `.sync` (a peer record), then release.
    let lock = serde_json::json!({
        "host": filesync::sys::hostname(),
        "pid": std::process::id(),
        "time": filesync::time::now_secs(),
        "what": "test sync",
    });
    std::fs::write(root.join(".sync.lock"), lock.to_string()).unwrap();
    write(&root, "while-locked.txt", "queued");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !live_entries(&root)
            .unwrap()
            .contains_key("while-locked.txt"),
        "the index was written while locked"
    );
    // As a sync does: the whole index (snapshot and journal) written as a new `.sync`.
    let mut idx = load_index(&root).unwrap();
    idx.peers.insert(
        filesync::index::ReplicaId(42),
        filesync::index::PeerRecord {
            name: "the-sync".into(),
            last_sync: 1,
            transferred: 0,
            conflicts: 0,
        },
    );
    std::fs::write(root.join(".sync"), filesync::index::to_json_vec(&idx)).unwrap();
    let _ = std::fs::remove_file(root.join(".sync.journal"));
    std::fs::remove_file(root.join(".sync.lock")).unwrap();

    wait_index_matches(&sb, &root, Duration::from_secs(10)).unwrap();
    let idx = load_index(&root).unwrap();
    assert!(
        idx.peers.values().any(|p| p.name == "the-sync"),
        "the update was applied to a stale index"
    );
    assert!(d.stop().success());
}
