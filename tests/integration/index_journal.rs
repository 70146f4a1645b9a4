//! The index journal end to end: the daemon appends its changes to `.sync.journal` and leaves
//! `.sync` alone, a sync folds the journal into a new `.sync`; SIGKILL during appends and
//! compactions never loses an entry nor brings a deleted file back; a damaged journal, a
//! journal without its snapshot, a snapshot newer than its journal and both unreadable each
//! end in a defined state with every file kept.

use crate::harness::*;
use filesync::index::journal::{Change, SnapshotId, encode_batch, header};
use filesync::index::{Entry, Index, Kind, MTime, VersionVector};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// Inode and size of `.sync`: what a rewrite changes.
fn snapshot_id(root: &Path) -> (u64, u64) {
    let m = std::fs::metadata(root.join(".sync")).expect(".sync");
    (m.ino(), m.size())
}

fn started(sb: &Sandbox, root: &Path) -> Daemon {
    let d = sb.daemon(root);
    assert!(
        d.wait_log("index loaded", Duration::from_secs(30)),
        "{}",
        d.log()
    );
    d
}

/// Path -> live? of every entry.
fn liveness(idx: &Index) -> BTreeMap<String, bool> {
    idx.entries
        .iter()
        .map(|(p, e)| (p.to_string(), e.is_live()))
        .collect()
}

#[test]
fn daemon_edits_go_to_the_journal_and_a_sync_folds_it_in() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    for i in 0..200 {
        write(&root, &format!("d{}/f{i}.txt", i % 7), &format!("file {i}"));
    }
    let d = started(&sb, &root);
    wait_index_matches(&sb, &root, Duration::from_secs(20)).unwrap();
    let snap = snapshot_id(&root);

    write(&root, "d1/f1.txt", "edited");
    write(&root, "new/file.txt", "new");
    std::fs::remove_file(root.join("d2/f2.txt")).unwrap();
    wait_index_matches(&sb, &root, Duration::from_secs(20)).unwrap();
    assert_eq!(snapshot_id(&root), snap, "an edit rewrote .sync");
    let journal = std::fs::metadata(root.join(".sync.journal"))
        .expect("the edits are in the journal")
        .len();
    assert!(
        journal > 0 && journal < snap.1 / 4,
        "journal of {journal} bytes"
    );
    let idx = load_index(&root).unwrap();
    assert_eq!(
        idx.entries[&filesync::relpath::RelPath::parse("d2/f2.txt").unwrap()].kind,
        Kind::Deleted
    );
    assert!(d.stop().success());

    let other = sb.folder("b");
    sb.filesync()
        .args(["sync", "--no-progress"])
        .arg(&root)
        .arg(&other.path)
        .ok();
    assert_eq!(other.read("d1/f1.txt"), b"edited");
    assert_eq!(other.read("new/file.txt"), b"new");
    assert!(!other.exists("d2/f2.txt"));
    assert!(
        !root.join(".sync.journal").exists(),
        "the sync's new .sync left the journal behind"
    );
    assert_ne!(snapshot_id(&root), snap);
}

/// xorshift, so a failing round can be replayed.
/// The steps of a journal append and of a compaction after which a test may have
/// `filesync` die (`TEST_FILESYNC_CRASH_AT=<point>#<n>`, see `store::local::index_file`).
const CRASH_POINTS: [&str; 9] = [
    "append: new journal staged",
    "append: new journal in place",
    "append: opened",
    "append: tail cut",
    "append: half written",
    "append: synced",
    "compact: staged",
    "compact: in place",
    "compact: journal removed",
];

/// One edit of the folder, the `k`-th: a new file, a deletion or a rewrite (of a file
/// `confirmed` live); its path and what the index shows once it holds it.
fn edit(root: &Path, k: usize, confirmed: &BTreeMap<String, bool>) -> (String, Option<u64>) {
    let live: Vec<&String> = confirmed
        .iter()
        .filter(|(p, l)| **l && p.ends_with(".txt"))
        .map(|(p, _)| p)
        .collect();
    let pick = live.get(k * 7 % live.len().max(1)).map(|p| p.to_string());
    match (k % 3, pick) {
        (1, Some(p)) => {
            std::fs::remove_file(root.join(&p)).unwrap();
            (p, None)
        }
        (2, Some(p)) => {
            let body = format!("rewrite {k} ").repeat(1 + k % 5);
            write(root, &p, &body);
            (p, Some(body.len() as u64))
        }
        _ => {
            let p = format!("d{}/n{k}.txt", k % 4);
            write(root, &p, "new");
            (p, Some(3))
        }
    }
}

/// The daemon killed (SIGKILL) after each step of a journal append and of a compaction, the
/// first and the second time it gets there, each run starting on what the last kill left.
/// Before each kill every edit is confirmed on disk before the next is made; after it the
/// index loads and holds every entry of the last confirmed state with the same liveness
/// (nothing lost, no deletion undone), but for the one edit under way. A run whose daemon
/// never reaches its point fails. Then a daemon without a crash point catches up.
#[test]
fn sigkill_after_each_step_of_appends_and_compaction_loses_nothing() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let root = sb.folder("a").path;
    for i in 0..40 {
        write(&root, &format!("d{}/f{i}.txt", i % 4), &format!("file {i}"));
    }
    sb.filesync().args(["index", "--root"]).arg(&root).ok();
    let mut k = 0;
    for point in CRASH_POINTS {
        for n in [1, 2] {
            let at = format!("{point}#{n}");
            let env = [("TEST_FILESYNC_CRASH_AT", at.as_str())];
            let mut d = sb.daemon_with(&root, &sb.config(), &env);
            let mut confirmed = liveness(&load_index(&root).expect("the index loads"));
            let mut under_way = None;
            for _ in 0..120 {
                k += 1;
                let (path, want) = edit(&root, k, &confirmed);
                let holds = |i: &Index| {
                    let e = filesync::relpath::RelPath::parse(&path)
                        .ok()
                        .and_then(|p| i.entries.get(&p).cloned());
                    match want {
                        Some(size) => e.is_some_and(|e| e.is_live() && e.size == size),
                        None => e.is_some_and(|e| !e.is_live()),
                    }
                };
                let mut seen = None;
                wait_until(Duration::from_secs(20), || {
                    seen = load_index(&root).filter(holds).map(|i| liveness(&i));
                    seen.is_some() || matches!(d.child.try_wait(), Ok(Some(_)))
                });
                match seen {
                    Some(state) => confirmed = state,
                    None => {
                        under_way = Some(path);
                        break;
                    }
                }
                if matches!(d.child.try_wait(), Ok(Some(_))) {
                    break;
                }
            }
            let died = wait_until(Duration::from_secs(10), || {
                matches!(d.child.try_wait(), Ok(Some(_)))
            });
            if !died {
                let _ = d.child.kill();
                let _ = d.child.wait();
                panic!("{at}: the daemon never got there; {}", d.log());
            }
            let status = d.child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "{at}: {status}; {}", d.log());
            let _ = std::fs::remove_file(root.join(".sync.lock"));
            let after = load_index(&root)
                .map(|i| liveness(&i))
                .unwrap_or_else(|| panic!("{at}: the index does not load"));
            for (p, live) in &confirmed {
                if under_way.as_ref() == Some(p) {
                    continue;
                }
                assert_eq!(after.get(p), Some(live), "{at}: {p} as confirmed");
            }
        }
    }
    let d = started(&sb, &root);
    wait_index_matches(&sb, &root, Duration::from_secs(30)).unwrap();
    assert!(d.stop().success());
}

/// A folder indexed by `filesync index`, with a journal batch appended that records `edit`
/// in place of what the folder holds, as the daemon would.
fn indexed_with_journal(sb: &Sandbox, name: &str) -> (Folder, Vec<u8>) {
    let f = sb.folder(name);
    f.write("keep.txt", "keep").write("sub/edit.txt", "v1");
    sb.filesync().args(["index", "--root", f.s()]).ok();
    f.write("sub/edit.txt", "v2 from the journal");
    let snapshot = std::fs::read(f.p(".sync")).unwrap();
    let idx = load_index(&f.path).unwrap();
    let p = filesync::relpath::RelPath::parse("sub/edit.txt").unwrap();
    let mut e: Entry = idx.entries[&p].clone();
    let m = std::fs::metadata(f.p("sub/edit.txt")).unwrap();
    e.size = m.len();
    e.mtime = MTime::from_system(m.modified().unwrap());
    e.hash = Some(filesync::index::ContentHash::of(b"v2 from the journal"));
    e.vv = e.vv.bumped(idx.replica);
    let mut j = header(SnapshotId::of(&snapshot));
    j.extend_from_slice(&encode_batch(&[Change::Set(p, e)]));
    std::fs::write(f.p(".sync.journal"), &j).unwrap();
    (f, j)
}

fn counter_of(root: &Path, path: &str) -> u64 {
    counters(root)[path]
}

#[test]
fn a_garbled_journal_tail_is_ignored_and_said_once() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let (a, j) = indexed_with_journal(&sb, "a");
    let mut bad = j.clone();
    bad.extend_from_slice(&encode_batch(&[Change::Remove(
        filesync::relpath::RelPath::parse("keep.txt").unwrap(),
    )]));
    let n = bad.len();
    bad[n - 3] ^= 0x55;
    std::fs::write(a.p(".sync.journal"), &bad).unwrap();
    // The whole batches count, the damaged one is not read as a deletion.
    let idx = load_index(&a.path).unwrap();
    assert!(idx.live().any(|(p, _)| p.as_str() == "keep.txt"));
    assert_eq!(counter_of(&a.path, "sub/edit.txt"), 2);

    let b = sb.folder("b");
    let out = sb
        .filesync()
        .args(["sync", "--no-progress", a.s(), b.s()])
        .ok();
    assert_eq!(
        out.stderr.matches("damaged").count(),
        1,
        "said once: {}",
        out.stderr
    );
    assert_eq!(b.read("keep.txt"), b"keep");
    assert_eq!(b.read("sub/edit.txt"), b"v2 from the journal");
    assert!(!a.exists(".sync.journal"));
    // Set aside for a person to look at, never synced.
    let aside = std::fs::read_dir(&a.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".sync.journal.corrupt-")
        })
        .count();
    assert_eq!(aside, 1);
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_journal_without_its_snapshot_indexes_the_folder_anew() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let (a, _) = indexed_with_journal(&sb, "a");
    std::fs::remove_file(a.p(".sync")).unwrap();
    let b = sb.folder("b");
    b.write("theirs.txt", "b");
    let out = sb
        .filesync()
        .args(["sync", "--no-progress", a.s(), b.s()])
        .ok();
    assert!(out.stderr.contains("no .sync"), "{}", out.stderr);
    assert!(out.stderr.contains("moved aside as"), "{}", out.stderr);
    assert_eq!(b.read("sub/edit.txt"), b"v2 from the journal");
    assert_eq!(a.read("theirs.txt"), b"b");
    assert_eq!(a.tree(), b.tree());
    assert!(!a.exists(".sync.journal"));
}

#[test]
fn a_snapshot_newer_than_its_journal_wins() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let (a, _) = indexed_with_journal(&sb, "a");
    // Another program (the seed's, or an older filesync) rewrote `.sync` from the snapshot
    // alone, without the journal's change: the journal names the old snapshot.
    let mut idx = filesync::index::from_json_slice(&std::fs::read(a.p(".sync")).unwrap()).unwrap();
    idx.entries.insert(
        filesync::relpath::RelPath::parse("from-the-other.txt").unwrap(),
        Entry::tombstone(MTime::new(1, 0), VersionVector::new()),
    );
    std::fs::write(a.p(".sync"), filesync::index::to_json_vec(&idx)).unwrap();
    let loaded = load_index(&a.path).unwrap();
    assert_eq!(
        counter_of(&a.path, "sub/edit.txt"),
        1,
        "the stale journal was applied"
    );
    assert!(
        loaded
            .entries
            .keys()
            .any(|p| p.as_str() == "from-the-other.txt")
    );

    // The scan finds the edit the journal held; nothing is lost.
    let b = sb.folder("b");
    sb.filesync()
        .args(["sync", "--no-progress", a.s(), b.s()])
        .ok();
    assert_eq!(b.read("sub/edit.txt"), b"v2 from the journal");
    assert_eq!(b.read("keep.txt"), b"keep");
    assert!(!a.exists(".sync.journal"));
}

#[test]
fn index_rebuilds_when_snapshot_and_journal_are_both_unreadable() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let (a, _) = indexed_with_journal(&sb, "a");
    a.write(".sync", "{\"not\": json")
        .write(".sync.journal", "FSJRNL1\ngarbage");
    let b = sb.folder("b");
    let out = sb.filesync().args(["sync", a.s(), b.s()]).fails();
    out.one_line_error(&["corrupt", "filesync index"]);
    assert!(!b.exists("keep.txt"), "a failed sync copied files");

    sb.filesync().args(["index", "--root", a.s()]).ok();
    assert!(!a.exists(".sync.journal"));
    let idx = load_index(&a.path).unwrap();
    assert_eq!(idx.live().filter(|(_, e)| e.kind == Kind::File).count(), 2);
    sb.filesync()
        .args(["sync", "--no-progress", a.s(), b.s()])
        .ok();
    assert_eq!(b.read("sub/edit.txt"), b"v2 from the journal");
    assert_eq!(a.tree(), b.tree());
}

/// The hub's daemon records edits made on the hub in its journal; a client's sync reads
/// `.sync` and the journal over SFTP, so it gets them, deletions included, without the hub
/// rewriting `.sync`.
#[test]
fn a_client_reads_the_hubs_journal_over_sftp() {
    let s = Pair::hub(HubKind::Daemon);
    for i in 0..50 {
        s.b.write(&format!("photos/p{i}.jpg"), format!("photo {i}"));
    }
    s.sync_and_settle();
    let snap = snapshot_id(&s.b.path);
    s.b.write("photos/p1.jpg", "cropped");
    s.b.remove("photos/p2.jpg");
    s.b.write("notes/new.txt", "from the hub");
    assert!(
        wait_until(Duration::from_secs(20), || {
            load_index(&s.b.path).is_some_and(|i| {
                i.live().any(|(p, _)| p.as_str() == "notes/new.txt")
                    && i.entries
                        .iter()
                        .any(|(p, e)| p.as_str() == "photos/p2.jpg" && !e.is_live())
            })
        }),
        "the hub's daemon did not record the edits"
    );
    assert!(
        s.b.exists(".sync.journal"),
        "the edits are not in the journal"
    );
    assert_eq!(
        snapshot_id(&s.b.path),
        snap,
        "an edit on the hub rewrote .sync"
    );
    s.sync();
    assert_eq!(s.a.read("photos/p1.jpg"), b"cropped");
    assert_eq!(s.a.read("notes/new.txt"), b"from the hub");
    assert!(!s.a.exists("photos/p2.jpg"));
    s.sync_and_settle();
    assert_eq!(s.a.tree(), s.b.tree());
}

/// An older filesync reads the hub's `.sync` alone: a refresh in its form (no data) gets
/// `.sync` whole, with the journal's changes, deletions included, folded in.
/// A user's own file named `.sync.journal`, from before the name was ours, is kept (set
/// aside under a reserved name, said in one line), never overwritten by a journal.
#[test]
fn a_users_file_named_like_the_journal_is_kept() {
    let sb = Sandbox::with_config("name = \"a\"\n");
    let a = sb.folder("a");
    a.write("notes.txt", "n")
        .write(".sync.journal", "my own notes");
    let b = sb.folder("b");
    let out = sb
        .filesync()
        .args(["sync", "--no-progress", a.s(), b.s()])
        .ok();
    assert!(out.stderr.contains("moved aside as"), "{}", out.stderr);
    let kept: Vec<_> = std::fs::read_dir(&a.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".sync.journal.corrupt-")
        })
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(kept, vec![b"my own notes".to_vec()]);
    assert_eq!(b.read("notes.txt"), b"n");
}

#[test]
fn a_refresh_in_the_old_form_gets_a_current_sync_alone() {
    let s = Pair::hub(HubKind::Daemon);
    for i in 0..20 {
        s.b.write(&format!("photos/p{i}.jpg"), format!("photo {i}"));
    }
    s.sync_and_settle();
    s.b.write("photos/p1.jpg", "cropped");
    s.b.remove("photos/p2.jpg");
    s.b.write("notes/new.txt", "from the hub");
    assert!(
        wait_until(Duration::from_secs(20), || {
            load_index(&s.b.path).is_some_and(|i| {
                i.live().any(|(p, _)| p.as_str() == "notes/new.txt")
                    && i.entries
                        .iter()
                        .any(|(p, e)| p.as_str() == "photos/p2.jpg" && !e.is_live())
            })
        }),
        "the hub's daemon did not record the edits"
    );
    assert!(
        s.b.exists(".sync.journal"),
        "the edits are not in the journal"
    );
    let Remote::Hub(hub) = &s.remote else {
        unreachable!("a hub pair")
    };
    let before = load_index(&s.b.path).unwrap();
    hub.python_ok("old_refresh.py", &[]);
    assert!(
        !s.b.exists(".sync.journal"),
        "a journal is left beside .sync; hub log:\n{}",
        hub.log_text()
    );
    let alone = filesync::index::from_json_slice(&std::fs::read(s.b.p(".sync")).unwrap()).unwrap();
    let live = liveness(&alone);
    assert_eq!(live.get("notes/new.txt"), Some(&true), "{live:?}");
    assert_eq!(live.get("photos/p2.jpg"), Some(&false), "{live:?}");
    let p1 = filesync::relpath::RelPath::parse("photos/p1.jpg").unwrap();
    assert_eq!(alone.entries[&p1], before.entries[&p1]);
}
