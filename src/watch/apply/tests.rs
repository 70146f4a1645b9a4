//! Coalescing dirty paths, and a rescan of a few paths agreeing with a full scan.

use super::*;
use crate::index::ReplicaId;
use crate::replica::Follow;

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[test]
fn coalesce_drops_descendants_and_coarsens_busy_folders() {
    let dirty: BTreeSet<RelPath> = ["a", "a/b", "a/b/c", "x/y", "x/z"]
        .into_iter()
        .map(p)
        .collect();
    assert_eq!(coalesce(&dirty), Some(vec![p("a"), p("x/y"), p("x/z")]));

    let busy: BTreeSet<RelPath> = (0..100).map(|i| p(&format!("d/f{i}"))).collect();
    assert_eq!(coalesce(&busy), Some(vec![p("d")]));

    let top: BTreeSet<RelPath> = (0..100).map(|i| p(&format!("f{i}"))).collect();
    assert_eq!(coalesce(&top), None);
}

#[test]
fn rescan_path_matches_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    std::fs::write(root.join("d/e/f"), b"1").unwrap();
    std::fs::write(root.join("g"), b"2").unwrap();
    std::fs::write(root.join(".syncignore"), b"*.log\n").unwrap();
    let handle = Root::open(&root, Follow::Never).unwrap();
    let none = &scan::nothing_busy;
    let mut idx = Index::new(ReplicaId(7));
    scan::scan(&handle, &mut idx, &RelPath::root(), none).unwrap();

    // Edit, create, delete a tree, an ignored file: only the touched paths are rescanned.
    std::fs::write(root.join("g"), b"22").unwrap();
    std::fs::write(root.join("h"), b"3").unwrap();
    std::fs::write(root.join("x.log"), b"ignored").unwrap();
    std::fs::remove_dir_all(root.join("d")).unwrap();
    for s in ["g", "h", "x.log", "d/e/f", "d"] {
        rescan_path(&handle, &mut idx, &p(s), none).unwrap();
    }
    let mut full = Index::new(ReplicaId(7));
    scan::scan(&handle, &mut full, &RelPath::root(), none).unwrap();
    let live = |i: &Index| {
        i.live()
            .map(|(p, e)| (p.clone(), e.kind, e.size, e.hash))
            .collect::<Vec<_>>()
    };
    assert_eq!(live(&idx), live(&full));
    assert!(!idx.entries[&p("d/e/f")].is_live());
    assert_eq!(idx.entries[&p("g")].vv.get(ReplicaId(7)), 2);
    assert!(idx.get(&p("x.log")).is_none());
}
