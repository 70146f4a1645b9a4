//! Our names and the user's never collide, a copied replica is a new one, an interrupted
//! sync leaves nothing of its own on the far side, and what a person reads is true. Each
//! scenario runs on every side it applies to: `sync_names::{local,daemon,sshd}::NAME`.

use crate::harness::*;
use std::time::Duration;

on_backends!([local, daemon, sshd](
    names_like_ours_are_the_users,
    a_copied_replica_conflicts_instead_of_overwriting,
    an_interrupted_sync_leaves_no_temps_on_the_far_side,
));

/// Names that look like ours but are not (anywhere, and at the root).
const LOOKALIKES: &[&str] = &[
    "x/report.sync-tmp.docx",
    "report.sync-tmp.docx",
    ".sync-notes.txt",
    ".sync.bak",
    ".sync-x",
    "a.sync-tmp.b",
    ".x.sync-tmp.0123",
    ".x.sync-tmp.0123456789ABCDEF",
    ".sync.corrupt-1",
    ".sync-cookie.jar",
    "d/.sync",
    "d/.sync.lock",
    "d/.sync-trash/kept.txt",
];

/// A file named like our temps (`report.sync-tmp.docx`) or our root names (`.sync-notes.txt`)
/// is synced both ways, edited, and deleted only to the trash; a real leftover temp (exact
/// shape, named by no index) is removed, never synced.
fn names_like_ours_are_the_users(t: &mut Pair) {
    for (i, n) in LOOKALIKES.iter().enumerate() {
        let side = if i % 2 == 0 { &t.a } else { &t.b };
        side.write(n, format!("user file {n}\n"));
    }
    let leftover = "x/.report.docx.sync-tmp.0123456789abcdef";
    t.a.write(leftover, "half a temp");
    t.a.set_mtime_offset(leftover, -3600);
    t.sync_and_settle();
    for n in LOOKALIKES {
        for side in [&t.a, &t.b] {
            assert_eq!(
                side.get(n),
                Some(format!("user file {n}\n").into_bytes()),
                "{n} at {}",
                side.path.display()
            );
        }
    }
    assert!(!t.a.exists(leftover), "a leftover temp survived");
    assert!(!t.b.exists(leftover), "a leftover temp was synced");

    // Edited on the far side, it arrives; deleted here, it goes to the far side's trash.
    t.b.write("x/report.sync-tmp.docx", "edited far away\n");
    t.sync_and_settle();
    assert_eq!(t.a.read("x/report.sync-tmp.docx"), b"edited far away\n");
    t.a.remove("x/report.sync-tmp.docx")
        .remove(".sync-notes.txt");
    let out = t.sync_and_settle();
    assert!(out.contains("deleted 2"), "{out}");
    assert!(out.contains("kept in .sync-trash"), "{out}");
    assert!(!t.b.exists("x/report.sync-tmp.docx"));
    let trash = t.b.trash_contents();
    for kept in [
        b"edited far away\n".to_vec(),
        b"user file .sync-notes.txt\n".to_vec(),
    ] {
        assert!(
            trash.contains(&kept),
            "{kept:?} not in the trash: {trash:?}"
        );
    }
}

/// The issue's reproduction: a replica copied with `cp -a` (its `.sync` too) takes a new
/// replica id, so an edit made in the copy and one made in the original conflict, and both
/// are kept, on every side.
fn a_copied_replica_conflicts_instead_of_overwriting(t: &mut Pair) {
    t.a.write("doc", "base\n");
    t.sync();
    let l2 = t.sb.path().join("l2");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&t.a.path)
        .arg(&l2)
        .status()
        .expect("cp -a");
    assert!(st.success());
    let l2 = Folder::at(l2);
    t.a.write("doc", "A\n");
    t.sync();
    l2.write("doc", "B1\n");
    let first = t.sb.filesync().args(["index", "--root", l2.s()]).ok();
    assert!(first.stderr.contains("was copied"), "{first}");
    l2.write("doc", "B2, longer\n");
    let second = t.sb.filesync().args(["index", "--root", l2.s()]).ok();
    assert!(
        !second.stderr.contains("was copied"),
        "said twice: {second}"
    );
    let out =
        t.sb.filesync()
            .args(["sync", "--no-progress"])
            .arg(t.target())
            .arg(&l2.path)
            .ok();
    assert!(out.stdout.contains("conflict: doc"), "{out}");
    t.sync();
    for side in [&t.a, &t.b, &l2] {
        let mut versions: Vec<Vec<u8>> = side
            .tree()
            .into_iter()
            .filter(|(k, _)| k.starts_with("doc"))
            .filter_map(|(_, v)| v)
            .collect();
        versions.sort();
        if side.path == l2.path {
            // The copy has not synced since the original's last sync: it holds both too.
            assert!(versions.contains(&b"B2, longer\n".to_vec()), "{versions:?}");
            continue;
        }
        assert_eq!(
            versions,
            vec![b"A\n".to_vec(), b"B2, longer\n".to_vec()],
            "at {}",
            side.path.display()
        );
    }
}

/// Ctrl-C in the middle of a big upload: the sync stops, says so, and leaves none of its temp
/// files (nor its lock) on the far side; the next sync finishes the job.
fn an_interrupted_sync_leaves_no_temps_on_the_far_side(t: &mut Pair) {
    for i in 0..3000 {
        t.a.write(&format!("d{}/f{i:04}.txt", i % 10), pattern(2048, i));
    }
    for i in 0..4 {
        t.a.write(&format!("big{i}.bin"), pattern(8 << 20, 100 + i));
    }
    let child = t.sync_cmd().spawn();
    // Interrupted once the far side holds some of what is being written.
    let under_way = wait_until(Duration::from_secs(60), || written(&t.b.path) >= 50);
    assert!(under_way, "the sync never started writing");
    signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().expect("wait filesync");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("interrupted"),
        "the sync was not interrupted: {:?} {err}",
        out.status
    );
    assert_eq!(t.b.temp_files(), Vec::<String>::new(), "{err}");
    assert!(!t.b.exists(".sync.lock"), "the far lock is left: {err}");
    t.sync();
    t.assert_same();
}

/// A path deeper than the index can hold is refused without a trace on the other side: no
/// empty chain of folders is made for it, and the rest syncs.
#[test]
fn a_path_too_deep_leaves_no_empty_folders_behind() {
    let t = Pair::local();
    let deep: Vec<String> = (0..130).map(|i| format!("l{i}")).collect();
    t.a.write(&format!("{}/bottom.txt", deep.join("/")), "deep");
    t.a.write("l0/side.txt", "beside the deep path");
    t.a.write("flat.txt", "flat");
    let out = t.sync_cmd().ok();
    assert!(
        out.stdout
            .contains("1 path deeper than 120 levels was not synced"),
        "{out}"
    );
    assert_eq!(t.b.read("flat.txt"), b"flat");
    assert_eq!(t.b.read("l0/side.txt"), b"beside the deep path");
    assert!(!t.b.exists("l0/l1"), "an empty chain of folders was made");
    let again = t.sync();
    assert!(
        again.contains("sent 0 files (0 B), received 0 files (0 B)"),
        "{again}"
    );
    assert!(!t.b.exists("l0/l1"));
    assert!(t.a.exists(&format!("{}/bottom.txt", deep.join("/"))));
}

/// A held lock names its holder's start as a date and an age, never a raw epoch.
#[test]
fn a_held_lock_says_since_when_in_words() {
    let s = Pair::local();
    s.a.write("x", "1");
    let started = now_secs() - 90;
    let live = format!(
        r#"{{"host":"{}","pid":{},"time":{started},"what":"test"}}"#,
        filesync::sys::hostname(),
        std::process::id(),
    );
    s.b.write(".sync.lock", &live);
    let out = s.sync_fails();
    assert!(!out.stderr.contains(&started.to_string()), "{out}");
    let when = filesync::time::readable(started as i64);
    assert!(out.stderr.contains(&format!("since {when}")), "{out}");
    assert!(
        out.stderr.contains("1m 30s ago") || out.stderr.contains("1m 31s ago"),
        "{out}"
    );
}

/// `filesync status` names what the last sync did as synced files, not "moved".
#[test]
fn status_counts_synced_files() {
    let s = Pair::local();
    s.b.write("one", "1").write("two", "2");
    s.sync();
    let out = s.sb.filesync().args(["status", "--root", s.a.s()]).ok();
    assert!(out.stdout.contains("2 files synced"), "{out}");
    assert!(!out.stdout.contains("moved"), "{out}");
}

/// A damaged hub index is refused with advice naming the folder the hub serves, not the `/`
/// its clients see.
#[test]
fn a_corrupt_hub_index_names_the_hubs_folder() {
    let t = Pair::hub(HubKind::Serve);
    t.a.write("a.txt", "a");
    t.sync();
    t.b.write(".sync", "{\"garbage");
    let out = t.sync_fails();
    let fix = format!("filesync index --root {}", t.b.path.display());
    assert!(out.stderr.contains(&fix), "{out}");
    assert!(!out.stderr.contains("--root /`"), "{out}");
}

/// How many files (temps included) are below `dir`, by name only.
fn written(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() && e.file_name() != ".sync-trash" => written(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// Folders the random trees put files in (none of them a file name below).
const DIRS: &[&str] = &["", "d", ".sync-d", "d/.sync.bak.d"];
/// File names, most of them close to ours.
const NAMES: &[&str] = &[
    "n.txt",
    ".sync-x",
    "a.sync-tmp.b",
    ".x.sync-tmp.0123",
    "report.sync-tmp.docx",
    ".sync.bak",
    ".sync-notes.txt",
    ".sync.corrupt-1",
    ".sync-cookie.jar",
    ".sync.lock.old",
    ".x.sync-tmp.0123456789ABCDEF",
    "..sync-tmp.0123456789abcdef",
    ".sync-trash.txt",
];

/// One side's files: (folder, name, version).
fn random_tree() -> impl proptest::strategy::Strategy<Value = Vec<(usize, usize, u8)>> {
    proptest::collection::vec((0..DIRS.len(), 0..NAMES.len(), 0..3u8), 0..10)
}

fn rel(dir: usize, name: usize) -> String {
    match DIRS[dir] {
        "" => NAMES[name].to_string(),
        d => format!("{d}/{}", NAMES[name]),
    }
}

/// What `files` put on a side, by path (a later write of a path wins).
fn put(side: &Folder, files: &[(usize, usize, u8)], tag: &str) -> Vec<(String, Vec<u8>)> {
    let mut written = std::collections::BTreeMap::new();
    for &(d, n, v) in files {
        let p = rel(d, n);
        let content = format!("{p} v{v} from {tag}\n").into_bytes();
        side.write(&p, &content);
        written.insert(p, content);
    }
    written.into_iter().collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Random trees on both sides, with names like ours: one sync leaves both sides the same
    /// and holding every version written (conflicts keep both); a real leftover temp goes
    /// and is never synced; then each file deleted on one side is in the other's trash.
    #[test]
    fn random_lookalike_trees_sync_whole_and_lose_nothing(
        left in random_tree(),
        right in random_tree(),
        gone in proptest::collection::vec(proptest::prelude::any::<bool>(), 10),
    ) {
        let t = Pair::local();
        let on_a = put(&t.a, &left, "a");
        let on_b = put(&t.b, &right, "b");
        let leftover = "d/.n.txt.sync-tmp.0123456789abcdef";
        t.a.write(leftover, "half a temp");
        t.a.set_mtime_offset(leftover, -3600);
        t.sync();
        t.assert_same();
        let tree = t.a.tree();
        for (p, content) in on_a.iter().chain(&on_b) {
            assert!(tree.values().any(|v| v.as_ref() == Some(content)), "{p}: {content:?} lost: {tree:?}");
        }
        assert!(!t.a.exists(leftover) && !t.b.exists(leftover), "the leftover temp");

        let mut deleted = Vec::new();
        for ((p, _), g) in on_a.iter().zip(&gone) {
            if *g && let Some(content) = t.a.get(p) {
                t.a.remove(p);
                deleted.push(content);
            }
        }
        t.sync();
        t.assert_same();
        let trash = t.b.trash_contents();
        for content in &deleted {
            assert!(trash.contains(content), "deleted {content:?} is not in the far trash");
        }
    }
}
