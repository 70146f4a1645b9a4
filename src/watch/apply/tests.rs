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

/// A journal damaged in the middle is set aside and the folder rescanned whole: a change
/// outside the batch's paths, which only the batches past the damage could have held, is
/// found, and `.sync` alone holds it.
#[test]
fn a_journal_damaged_in_the_middle_is_set_aside_and_the_folder_rescanned() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(root.join("x.txt"), b"v1").unwrap();
    std::fs::write(root.join("y.txt"), b"y").unwrap();
    let store = LocalStore::open(&root, 0).unwrap();
    let mut idx = store.new_index();
    let handle = store.handle().clone();
    scan::scan(&handle, &mut idx, &RelPath::root(), &scan::nothing_busy).unwrap();
    store.save_index_blocking(&idx).unwrap();

    let snapshot = std::fs::read(root.join(".sync")).unwrap();
    let mut j = journal::header(journal::SnapshotId::of(&snapshot));
    let sound = journal::encode_batch(&[Change::Remove(p("gone-a"))]);
    j.extend_from_slice(&sound);
    let mid = j.len() + 14;
    j.extend_from_slice(&journal::encode_batch(&[Change::Remove(p("gone-b"))]));
    j.extend_from_slice(&journal::encode_batch(&[Change::Remove(p("gone-c"))]));
    j[mid] ^= 0x55;
    std::fs::write(root.join(".sync.journal"), &j).unwrap();
    std::fs::write(root.join("x.txt"), b"v2 past the damage").unwrap();

    let batch = Batch {
        dirty: [p("y.txt")].into(),
        full: false,
    };
    let mut id = None;
    let store = LocalStore::open(&root, 0).unwrap();
    match apply_locked(&store, &mut idx, &batch, &mut id).unwrap() {
        Applied::Done { .. } => {}
        Applied::Locked => panic!("locked"),
    }
    assert!(!root.join(".sync.journal").exists());
    let aside: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".sync.journal.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(crate::replica::layout::is_reserved_root_name(&aside[0]));
    let alone = crate::index::from_json_vec(std::fs::read(root.join(".sync")).unwrap()).unwrap();
    assert_eq!(
        alone.entries[&p("x.txt")].size,
        18,
        "the full rescan did not run"
    );
    assert!(!store.take_rescan_due());
}

/// Another writer appends to the journal after this process read the index (a refresh a
/// client asked for, beside the daemon): this process's next write finds the files changed
/// under it, reads them again and re-applies its own batch, so the index on disk holds both
/// changes and the other writer's is never written over.
#[test]
fn a_write_overtaken_by_another_writer_reads_again_and_keeps_both() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(root.join("a.txt"), b"a").unwrap();
    std::fs::write(root.join("b.txt"), b"b").unwrap();
    // Enough other files that one change goes to the journal, not into a new snapshot.
    for i in 0..60 {
        std::fs::write(root.join(format!("other{i}.txt")), b"o").unwrap();
    }
    let daemon = LocalStore::open(&root, 0).unwrap();
    let mut idx = daemon.new_index();
    let none = &scan::nothing_busy;
    scan::scan(daemon.handle(), &mut idx, &RelPath::root(), none).unwrap();
    daemon.save_index_blocking(&idx).unwrap();

    // The other writer: its own store, its own read, one journal batch.
    std::fs::write(root.join("b.txt"), b"b, edited by the other writer").unwrap();
    let other = LocalStore::open(&root, 0).unwrap();
    let mut theirs = other.load_index_blocking().unwrap().unwrap();
    let b = Batch {
        dirty: [p("b.txt")].into(),
        full: false,
    };
    apply_recorded_fresh(&other, &mut theirs, &b, none, false).unwrap();
    assert!(root.join(".sync.journal").exists());

    // This process, with memory from before the other's write, records its own change.
    std::fs::write(root.join("a.txt"), b"a, edited here").unwrap();
    let a = Batch {
        dirty: [p("a.txt")].into(),
        full: false,
    };
    apply_recorded_fresh(&daemon, &mut idx, &a, none, false).unwrap();
    for (name, size) in [("a.txt", 14), ("b.txt", 29)] {
        assert_eq!(idx.entries[&p(name)].size, size, "{name} in memory");
    }
    let reader = LocalStore::open(&root, 0).unwrap();
    let on_disk = reader.load_index_blocking().unwrap().unwrap();
    for (name, size) in [("a.txt", 14), ("b.txt", 29)] {
        assert_eq!(on_disk.entries[&p(name)].size, size, "{name} on disk");
    }
    // A whole save from stale memory is refused as well.
    let stale = idx.clone();
    std::fs::write(root.join("b.txt"), b"b3").unwrap();
    apply_recorded_fresh(&other, &mut theirs, &b, none, false).unwrap();
    assert!(matches!(
        daemon.save_index_blocking(&stale),
        Err(StoreError::IndexMoved { .. })
    ));
    let on_disk = reader.load_index_blocking().unwrap().unwrap();
    assert_eq!(on_disk.entries[&p("b.txt")].size, 2);
}
