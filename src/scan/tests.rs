//! The walk against the `ignore` crate's walker (the oracle), on a fixed tree and random ones;
//! the rules against the walk; `reconcile`'s rules.

use super::*;
use crate::index::ReplicaId;
use crate::replica::layout::{IGNORE_FILE, is_internal, is_temp_name};
use crate::replica::{Follow, Root};
#[cfg(unix)]
use rustix::fs::{FileType, Mode};
use std::path::Path;
use std::sync::Arc;

fn open(root: &Path) -> Root {
    Root::open(root, Follow::Never).unwrap()
}

fn walk(root: &Path, scope: &RelPath) -> Result<Walked, ScanError> {
    local::walk(&open(root), scope)
}

/// What the rules say of `q` (as the watcher and the planner ask), judged by the disk.
fn is_ignored(w: &Walked, root: &Path, q: &RelPath) -> bool {
    let is_dir = |d: &RelPath| std::fs::symlink_metadata(d.to_path(root)).is_ok_and(|m| m.is_dir());
    w.rules.leaves_out(q, &is_dir)
}

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn obs(kind: Kind, size: u64, t: i64) -> Observed {
    Observed {
        kind,
        size,
        mtime: MTime::new(t, 0),
        mode: None,
    }
}

/// The walk as the `ignore` crate's walker sees it (what `walk` used before): the oracle.
fn oracle(root: &Path) -> (Vec<(RelPath, Observed)>, Vec<RelPath>) {
    let temps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, t) = (root.to_path_buf(), temps.clone());
    // The built-in rules, as a global ignore file: below every `.syncignore` in precedence.
    let global = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(global.path(), rules::BUILT_IN.join("\n")).unwrap();
    let mut b = ignore::WalkBuilder::new(root);
    b.add_ignore(global.path());
    b.standard_filters(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(move |d| {
            if d.file_name().to_str().is_some_and(is_temp_name) {
                t.lock()
                    .unwrap()
                    .push(RelPath::from_fs(&r, d.path()).unwrap());
                return false;
            }
            !is_internal(&RelPath::from_fs(&r, d.path()).unwrap())
        });
    let mut seen = Vec::new();
    for d in b.build() {
        let d = d.unwrap();
        let rel = RelPath::from_fs(root, d.path()).unwrap();
        if let Some(o) = Observed::from_metadata(&d.metadata().unwrap())
            && !rel.is_root()
        {
            seen.push((rel, o));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let mut temps = std::mem::take(&mut *temps.lock().unwrap());
    temps.sort();
    (seen, temps)
}

fn walked(root: &Path, scope: &RelPath) -> (Vec<(RelPath, Observed)>, Vec<RelPath>) {
    let w = walk(root, scope).unwrap();
    assert!(w.unreadable.is_empty(), "{:?}", w.unreadable);
    let mut temps: Vec<RelPath> = w.temps.into_iter().map(|(p, _)| p).collect();
    temps.sort();
    (w.observed.into_iter().collect(), temps)
}

#[cfg(unix)] // its tree has symlinks, a FIFO and a non-UTF-8 name, which Windows cannot make
#[test]
fn walk_agrees_with_the_ignore_crate() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let files = [
        "a/b/c.txt",
        "a/b/keep.log",
        "a/x.log",
        "a/deep/er/file",
        "build/out.bin",
        "src/build/kept",
        "src/main.rs",
        "notes/.hidden",
        "notes/ünïcode name",
        "top.log",
        "d/.f.sync-tmp.0123456789abcdef",
        "d/report.sync-tmp.docx",
        ".sync-notes.txt",
        "x/y/z/.syncignore",
        "x/y/z/w.tmp",
        "x/y/z/v.txt",
    ];
    for f in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f.as_bytes()).unwrap();
    }
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    std::fs::write(root.join(".syncignore"), "*.log\n/build/\n").unwrap();
    std::fs::write(root.join("a/b/.syncignore"), "!keep.log\n").unwrap();
    std::fs::write(root.join("x/y/z/w.tmp"), b"w").unwrap();
    std::fs::write(root.join("x/.syncignore"), "*.tmp\nz/v.txt\n").unwrap();
    std::os::unix::fs::symlink("a", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("top.log", root.join("a/link-to-file")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("a/fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    // Ours, at the root: never walked.
    std::fs::create_dir_all(root.join(".sync-trash/a")).unwrap();
    std::fs::write(root.join(".sync-trash/a/old"), b"1").unwrap();
    std::fs::write(root.join(".sync"), b"{}").unwrap();

    let (seen, temps) = walked(&root, &RelPath::root());
    assert_eq!((seen.clone(), temps), oracle(&root));
    let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    for present in [
        "a/b/keep.log",
        "src/build/kept",
        "x/y/z/v.txt",
        "empty/dir",
        "d/report.sync-tmp.docx",
        ".sync-notes.txt",
    ] {
        assert!(names.contains(&present), "{present} missing from {names:?}");
    }
    for absent in [
        "a/x.log",
        "build",
        "x/y/z/w.tmp",
        "link-to-dir",
        "a/fifo",
        ".sync",
    ] {
        assert!(!names.contains(&absent), "{absent} walked: {names:?}");
    }

    // A walk below the root keeps the rules above it, and sees only its own subtree.
    for scope in ["a", "a/b", "x/y", "src/main.rs"] {
        let scope = RelPath::parse(scope).unwrap();
        let (part, _) = walked(&root, &scope);
        let whole: Vec<_> = seen
            .iter()
            .filter(|(p, _)| p.starts_with(&scope))
            .cloned()
            .collect();
        assert_eq!(part, whole, "scope {scope}");
    }
    // What the walk left out is what the rules say is ignored (asked of paths it did not
    // visit: vanished entries, the watcher's rescans), and nothing else.
    let whole = walk(&root, &RelPath::root()).unwrap();
    for f in files.iter().copied().chain(["build", "a/b", "x/y/z"]) {
        let q = RelPath::parse(f).unwrap();
        assert_eq!(
            is_ignored(&whole, &root, &q),
            !names.contains(&f),
            "{f}: rules and walk disagree"
        );
    }

    // A root reached through a symlink is walked like the folder itself.
    let link = dir.path().with_extension("link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let through: Vec<_> = walk(&link, &RelPath::root())
        .unwrap()
        .observed
        .into_iter()
        .collect();
    std::fs::remove_file(&link).unwrap();
    assert_eq!(through, seen);

    // A scope that is gone is reported, not walked.
    let w = walk(&root, &RelPath::parse("no/such").unwrap()).unwrap();
    assert!(w.observed.is_empty());
    assert!(
        w.unreadable
            .contains_key(&RelPath::parse("no/such").unwrap())
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Random trees and ignore files (negations, anchors, folder patterns): same as the oracle.
    #[test]
    #[cfg(unix)] // random names end in dots, which Windows cannot hold
    fn walk_agrees_with_the_ignore_crate_on_random_trees(
        files in proptest::collection::vec("[abc]{1,2}(/[abc.]{1,2}){0,3}", 1..24),
        rules in proptest::collection::vec(
            (0usize..3, proptest::collection::vec("!?/?[abc*]{1,2}/?", 1..4)),
            0..4,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for f in &files {
            let p = root.join(f);
            // A name used both as a file and as a folder: first one wins.
            if std::fs::create_dir_all(p.parent().unwrap()).is_ok() && !p.exists() {
                let _ = std::fs::write(&p, f.as_bytes());
            }
        }
        let dirs = ["", "a", "a/b"];
        for (d, lines) in &rules {
            let d = root.join(dirs[*d]);
            if std::fs::create_dir_all(&d).is_ok() {
                std::fs::write(d.join(IGNORE_FILE), lines.join("\n")).unwrap();
            }
        }
        proptest::prop_assert_eq!(walked(&root, &RelPath::root()), oracle(&root));
        // The rules say "ignored" of exactly what the walk left out.
        let w = walk(&root, &RelPath::root()).unwrap();
        for f in &files {
            // Names like `.` or `..` made no file of their own.
            let Ok(q) = RelPath::parse(f) else { continue };
            for q in q.ancestors().chain([q.clone()]) {
                if q.to_path(&root).exists() {
                    proptest::prop_assert_eq!(
                        is_ignored(&w, &root, &q),
                        !w.observed.contains_key(&q),
                        "{}", q
                    );
                }
            }
        }
    }
}

/// Reconciles the whole tree, every path kept, at one fixed "now".
fn whole(idx: &mut Index, o: &BTreeMap<RelPath, Observed>, h: &Hashes) -> ScanStats {
    reconcile(idx, &RelPath::root(), o, h, |_| true, MTime::new(99, 0))
}

#[test]
fn reconcile_rules() {
    let me = ReplicaId(1);
    let mut idx = Index::new(me);
    let mut o = BTreeMap::new();
    o.insert(p("a"), obs(Kind::File, 1, 10));
    o.insert(p("d"), obs(Kind::Dir, 0, 10));
    let mut h = Hashes::new();
    h.insert(p("a"), ContentHash::of(b"1"));
    let st = whole(&mut idx, &o, &h);
    assert_eq!(st.added, 2);
    assert_eq!(idx.entries[&p("a")].vv.get(me), 1);

    // Unchanged stat: nothing to hash, nothing bumped.
    assert!(needs_hash(&idx, &o).is_empty());
    let st = whole(&mut idx, &o, &Hashes::new());
    assert_eq!(st.changes(), 0);

    // Touched (mtime moved, same content): no bump. Clock running backwards still counts.
    o.insert(p("a"), obs(Kind::File, 1, 5));
    assert_eq!(needs_hash(&idx, &o), vec![p("a")]);
    whole(&mut idx, &o, &h);
    assert_eq!(idx.entries[&p("a")].vv.get(me), 1);
    h.insert(p("a"), ContentHash::of(b"2"));
    o.insert(p("a"), obs(Kind::File, 1, 4));
    let st = whole(&mut idx, &o, &h);
    assert_eq!(st.modified, 1);
    assert_eq!(idx.entries[&p("a")].vv.get(me), 2);

    // Unreadable: left alone. Vanished: tombstone with a bump.
    o.remove(&p("a"));
    o.remove(&p("d"));
    let st = reconcile(
        &mut idx,
        &RelPath::root(),
        &o,
        &Hashes::new(),
        |q| q != &p("d"),
        MTime::new(99, 0),
    );
    assert_eq!(st.deleted, 1);
    assert_eq!(idx.entries[&p("a")].kind, Kind::Deleted);
    assert_eq!(idx.entries[&p("a")].vv.get(me), 3);
    assert_eq!(idx.entries[&p("d")].kind, Kind::Dir);
}

/// Everything a walk leaves out is accounted for, once, with its bytes as they are: links,
/// FIFOs and names that are not UTF-8 (and nothing below such a folder); what the rules or we
/// leave out is not.
#[cfg(unix)] // its tree has symlinks, a FIFO and a non-UTF-8 name, which Windows cannot make
#[test]
fn what_the_walk_leaves_out_is_accounted_for() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/plain.txt"), b"p").unwrap();
    std::os::unix::fs::symlink("plain.txt", root.join("d/link")).unwrap();
    std::os::unix::fs::symlink("d", root.join("ignored-link")).unwrap();
    std::fs::write(root.join(".syncignore"), "ignored-link\n").unwrap();
    let fifo = root.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let odd = root.join("d").join(OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join("inside.txt"), b"i").unwrap();
    std::fs::create_dir_all(root.join(".sync-trash")).unwrap();
    std::os::unix::fs::symlink("x", root.join(".sync-trash/link")).unwrap();

    let w = walk(root, &RelPath::root()).unwrap();
    let shown: Vec<(String, Skip)> = w.skipped.iter().map(|s| (s.to_string(), s.why)).collect();
    assert_eq!(
        shown,
        [
            ("d/caf\\xe9".to_string(), Skip::NotUtf8),
            ("d/link".to_string(), Skip::Link),
            ("fifo".to_string(), Skip::Special),
        ]
    );
    assert_eq!(w.skipped[0].path, b"d/caf\xe9");
    assert_eq!(w.skipped[1].rel(), Some(p("d/link")));
    assert_eq!(w.skipped[0].rel(), None);
    let names: Vec<&str> = w.observed.keys().map(|p| p.as_str()).collect();
    assert_eq!(names, [".syncignore", "d", "d/plain.txt"]);
    assert!(w.unreadable.is_empty(), "{:?}", w.unreadable);
}

#[test]
fn skip_keywords_round_trip() {
    for s in Skip::ALL {
        assert_eq!(Skip::from_keyword(s.keyword()), Some(s));
    }
    assert_eq!(Skip::from_keyword("nonsense"), None);
}

#[test]
fn folders_that_only_lead_to_a_refused_path_are_not_synced() {
    let mut found = walk::Found::default();
    for (q, kind) in [
        ("l0", Kind::Dir),
        ("l0/side.txt", Kind::File),
        ("l0/l1", Kind::Dir),
        ("l0/l1/l2", Kind::Dir),
        ("l0/empty", Kind::Dir),
    ] {
        found.observed.push((p(q), obs(kind, 0, 1)));
    }
    found.too_deep.push(p("l0/l1/l2/l3"));
    let w = Walked::new(found, Rules::built_in());
    assert_eq!(w.refused_ways, vec![p("l0/l1"), p("l0/l1/l2")]);
    let kept: Vec<&str> = w.observed.keys().map(RelPath::as_str).collect();
    assert_eq!(kept, ["l0", "l0/empty", "l0/side.txt"]);

    // What the index had there stays as it was: nothing is deleted for being refused.
    let mut index = Index::new(ReplicaId(1));
    let vv = VersionVector::new().bumped(ReplicaId(1));
    index
        .entries
        .insert(p("l0/l1"), Entry::dir(MTime::default(), vv));
    let st = settle(&mut index, &RelPath::root(), w, Vec::new(), &|_| true);
    assert_eq!(st.deleted, 0);
    assert!(index.get(&p("l0/l1")).is_some_and(Entry::is_live));
}

#[test]
fn a_temp_the_index_names_is_the_users_and_stays() {
    let named = p("d/.f.sync-tmp.0123456789abcdef");
    let ours = p("d/.g.sync-tmp.0123456789abcdef");
    let mut found = walk::Found::default();
    found.observed.push((p("d"), obs(Kind::Dir, 0, 1)));
    found.temps = vec![(named.clone(), None), (ours.clone(), None)];
    let mut index = Index::new(ReplicaId(1));
    let vv = VersionVector::new().bumped(ReplicaId(1));
    index
        .entries
        .insert(p("d"), Entry::dir(MTime::default(), vv.clone()));
    let kept = Entry::file(3, MTime::new(5, 0), Some(ContentHash([7; 32])), vv);
    index.entries.insert(named.clone(), kept.clone());
    let w = Walked::new(found, Rules::built_in());
    let st = settle(&mut index, &RelPath::root(), w, Vec::new(), &|_| false);
    // Only the one no index names is a leftover to remove; the other keeps its entry.
    assert_eq!(st.temps, vec![ours]);
    assert_eq!(index.get(&named), Some(&kept));
    assert_eq!(st.deleted, 0);
}

/// The index with every tombstone's time set to one value: a tombstone's time is the moment
/// of the scan that made it, which two scans cannot share.
fn timeless(idx: &Index) -> Vec<(RelPath, Entry)> {
    idx.entries
        .iter()
        .map(|(q, e)| {
            let mut e = e.clone();
            if !e.is_live() {
                e.mtime = MTime::default();
            }
            (q.clone(), e)
        })
        .collect()
}

/// A scan in parts (`local::scan`, a few paths a part under test) and one walk of the whole
/// tree (`scan_walked` of `walk`) to the same index and the same figures.
fn both_scans(root: &Path, parts: &mut Index, whole: &mut Index) -> (ScanStats, ScanStats) {
    let r = open(root);
    let top = RelPath::root();
    let a = local::scan(&r, parts, &top, &nothing_busy).unwrap();
    let w = local::walk(&r, &top).unwrap();
    let b = local::scan_walked(&r, whole, &top, w, &nothing_busy);
    (a, b)
}

fn figures(s: &ScanStats) -> (u64, u64, u64, u64, u64, usize, usize) {
    (
        s.added,
        s.modified,
        s.deleted,
        s.chmodded,
        s.hashed,
        s.unreadable.len(),
        s.skipped.len(),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Random trees with ignore files, scanned, changed (files and whole folders removed,
    /// others added or rewritten) and scanned again: a scan taken in parts judges every path
    /// as one walk of the whole tree does.
    #[test]
    fn a_scan_in_parts_is_one_scan(
        files in proptest::collection::vec("[abc]{1,2}(/[abc]{1,2}){0,3}", 1..40),
        rules in proptest::collection::vec(
            (0usize..3, proptest::collection::vec("!?/?[abc*]{1,2}/?", 1..3)),
            0..3,
        ),
        gone in proptest::collection::vec("[abc]{1,2}(/[abc]{1,2}){0,2}", 0..6),
        added in proptest::collection::vec("[abc]{1,2}(/[abc]{1,2}){0,3}", 0..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let write_all = |names: &[String], tag: &str| {
            for f in names {
                let q = root.join(f);
                if std::fs::create_dir_all(q.parent().unwrap()).is_ok() && !q.is_dir() {
                    let _ = std::fs::write(&q, format!("{f}{tag}"));
                }
            }
        };
        write_all(&files, "");
        let dirs = ["", "a", "a/b"];
        for (d, lines) in &rules {
            let d = root.join(dirs[*d]);
            if std::fs::create_dir_all(&d).is_ok() {
                std::fs::write(d.join(IGNORE_FILE), lines.join("\n")).unwrap();
            }
        }
        let (mut parts, mut whole) = (Index::new(ReplicaId(1)), Index::new(ReplicaId(1)));
        let (a, b) = both_scans(&root, &mut parts, &mut whole);
        proptest::prop_assert_eq!(figures(&a), figures(&b));
        proptest::prop_assert_eq!(timeless(&parts), timeless(&whole));

        for g in &gone {
            let q = root.join(g);
            let _ = std::fs::remove_dir_all(&q).or_else(|_| std::fs::remove_file(&q));
        }
        write_all(&added, "+");
        let (a, b) = both_scans(&root, &mut parts, &mut whole);
        proptest::prop_assert_eq!(figures(&a), figures(&b));
        proptest::prop_assert_eq!(timeless(&parts), timeless(&whole));
    }
}

/// A tree bigger than a part: the folders a part does not enter are scanned as parts of
/// their own, and every path still reaches the index once.
#[test]
fn a_big_tree_is_scanned_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    for d in 0..6 {
        for e in 0..3 {
            let sub = root.join(format!("d{d}/e{e}"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..4 {
                std::fs::write(sub.join(format!("f{f}")), format!("{d}{e}{f}")).unwrap();
            }
        }
    }
    let r = open(&root);
    let w = local::walk_within(&r, &RelPath::root(), &local::Budget::new(8)).unwrap();
    assert!(!w.deferred.is_empty(), "one part took the whole tree");
    let mut idx = Index::new(ReplicaId(1));
    let st = local::scan(&r, &mut idx, &RelPath::root(), &nothing_busy).unwrap();
    // 6 + 18 folders, 72 files.
    assert_eq!((st.added, st.hashed), (96, 72));
    assert_eq!(idx.counts(), (72, 24, 0));
}

proptest::proptest! {
    /// The folders a settling leaves alone hold exactly the paths some one of them holds.
    #[test]
    fn subtrees_hold_what_one_of_them_holds(
        folders in proptest::collection::vec("[ab]{1,2}(/[ab ]{1,2}){0,2}", 0..8),
        paths in proptest::collection::vec("[ab]{1,2}(/[ab ]{1,2}){0,3}", 1..16),
    ) {
        let folders: Vec<RelPath> = folders.iter().filter_map(|f| RelPath::parse(f).ok()).collect();
        let held = Subtrees::new(folders.clone());
        for q in paths.iter().filter_map(|q| RelPath::parse(q).ok()) {
            proptest::prop_assert_eq!(held.hold(&q), folders.iter().any(|f| q.starts_with(f)), "{}", q);
        }
    }
}
