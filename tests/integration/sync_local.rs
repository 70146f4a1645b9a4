//! Two-way sync between two local folders, through the real binary.

use crate::harness::*;

#[test]
fn changes_propagate_both_ways_and_settle() {
    let s = Pair::local();
    s.a.write("docs/report.txt", "v1").write("top.txt", "top");
    s.b.write("photos/cat.jpg", [0u8, 1, 2, 255])
        .mkdir("empty-dir");
    s.sync_and_settle();
    assert_eq!(s.b.read("docs/report.txt"), b"v1");
    assert_eq!(s.a.read("photos/cat.jpg"), [0u8, 1, 2, 255]);
    assert!(s.a.p("empty-dir").is_dir());

    // Modify, delete, rename files and folders on both sides.
    s.a.write("docs/report.txt", "v2 longer").remove("top.txt");
    s.a.rename("docs", "documents");
    s.b.rename("photos/cat.jpg", "photos/kitten.jpg")
        .remove("empty-dir");
    s.b.write("new/deep/file.bin", vec![7u8; 100_000]);
    s.sync_and_settle();
    let t = s.b.tree();
    assert_eq!(
        t.get("documents/report.txt"),
        Some(&Some(b"v2 longer".to_vec()))
    );
    assert!(!t.contains_key("docs"), "old folder name survived: {t:?}");
    assert!(!t.contains_key("top.txt"));
    assert!(!t.contains_key("empty-dir"));
    assert!(s.a.exists("photos/kitten.jpg") && !s.a.exists("photos/cat.jpg"));
    assert_eq!(s.a.read("new/deep/file.bin"), vec![7u8; 100_000]);
    // What was deleted or replaced is recoverable from the trash.
    assert!(
        s.a.trash_contents().contains(&b"top".to_vec())
            || s.b.trash_contents().contains(&b"top".to_vec())
    );
    assert!(s.b.trash_contents().contains(&b"v1".to_vec()));
}

#[test]
fn concurrent_edits_keep_both_versions_on_both_sides() {
    let s = Pair::local();
    s.a.write("notes.md", "base");
    s.sync_and_settle();
    s.a.write("notes.md", "edited on A");
    s.b.write("notes.md", "edited on B, longer");
    let out = s.sync_and_settle();
    assert!(out.contains("conflict: notes.md"), "{out}");
    for side in [&s.a, &s.b] {
        let t = side.tree();
        let mut versions: Vec<Vec<u8>> = t
            .iter()
            .filter(|(k, _)| k.starts_with("notes"))
            .filter_map(|(_, v)| v.clone())
            .collect();
        versions.sort();
        assert_eq!(
            versions,
            vec![b"edited on A".to_vec(), b"edited on B, longer".to_vec()],
            "{t:?}"
        );
        assert!(
            t.keys()
                .any(|k| k.starts_with("notes.sync-conflict-") && k.ends_with(".md")),
            "{t:?}"
        );
    }
}

#[test]
fn delete_versus_edit_keeps_the_edit() {
    let s = Pair::local();
    s.a.write("plan.txt", "original")
        .write("dir/inner.txt", "x");
    s.sync_and_settle();
    s.a.remove("plan.txt").remove("dir");
    s.b.write("plan.txt", "edited meanwhile")
        .write("dir/inner.txt", "edited inner");
    s.sync_and_settle();
    assert_eq!(s.a.read("plan.txt"), b"edited meanwhile");
    assert_eq!(s.a.read("dir/inner.txt"), b"edited inner");
}

#[test]
fn later_edit_wins_even_when_its_clock_is_an_hour_behind() {
    let s = Pair::local();
    s.a.write("f.txt", "first");
    s.sync_and_settle();
    // A edits; sync; then B edits later, but B's clock runs an hour behind.
    s.a.write("f.txt", "second (A)");
    s.sync_and_settle();
    s.b.write("f.txt", "third (B, skewed clock)")
        .set_mtime_offset("f.txt", -3600);
    let out = s.sync_and_settle();
    assert!(!out.contains("conflict:"), "{out}");
    assert_eq!(s.a.read("f.txt"), b"third (B, skewed clock)");
    assert!(s.a.trash_contents().contains(&b"second (A)".to_vec()));
}

#[test]
fn odd_names_survive_the_round_trip() {
    let s = Pair::local();
    let names = [
        "with space.txt",
        "new\nline.txt",
        "ünïcödé/日本語.txt",
        "-leading-dash",
        "back\\slash",
        ".sd",
        ".st",
        "\\.st",
        "tab\tname",
        &"long".repeat(63),
    ];
    for (i, n) in names.iter().enumerate() {
        s.a.write(n, format!("content {i}"));
    }
    s.sync_and_settle();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(s.b.read(n), format!("content {i}").as_bytes(), "{n:?}");
    }
    // The index reloads (status parses it) and a fresh rebuild agrees.
    let out = s.sb.filesync().args(["status", "--root", s.b.s()]).ok();
    assert!(
        out.stdout.contains("0 added, 0 modified, 0 deleted"),
        "{out}"
    );
}

#[test]
fn syncignore_and_internal_files_stay_local() {
    let s = Pair::local();
    s.a.write(".syncignore", "*.tmp\nbuild/\n")
        .write("keep.txt", "k")
        .write("scratch.tmp", "no")
        .write("build/out.o", "no")
        .write(".sync-trash/old~x", "mine");
    s.sync();
    assert!(s.b.exists("keep.txt") && s.b.exists(".syncignore"));
    assert!(!s.b.exists("scratch.tmp") && !s.b.exists("build"));
    assert!(!s.b.exists(".sync-trash/old~x"));
    // Deleting an ignored file never propagates a deletion.
    s.a.remove("scratch.tmp");
    s.b.write("scratch.tmp", "b's own");
    s.sync();
    assert_eq!(s.b.read("scratch.tmp"), b"b's own");
}

/// The names apps give files they are still writing stay where they are, unless a
/// `.syncignore` brings one back.
#[test]
fn half_written_app_files_stay_local_unless_brought_back() {
    let s = Pair::local();
    let names = [
        "DCIM/IMG_1.jpg.part",
        "dl/big.zip.crdownload",
        "x.tmp",
        "docs/~$report.docx",
        "docs/.~lock.report.odt#",
        ".notes.txt.swp",
    ];
    for n in names {
        s.a.write(n, "half written");
    }
    s.a.write("DCIM/IMG_1.jpg", "a photo");
    s.sync();
    assert!(s.b.exists("DCIM/IMG_1.jpg"));
    for n in names {
        assert!(!s.b.exists(n), "{n} was synced");
    }
    s.a.write(".syncignore", "!*.part\n");
    s.sync();
    assert!(
        s.b.exists("DCIM/IMG_1.jpg.part"),
        "!*.part did not bring it back"
    );
    assert!(!s.b.exists("x.tmp"));
}

#[test]
fn a_reincluded_file_goes_with_its_deleted_folder() {
    let s = Pair::local();
    s.a.write(".syncignore", "*.log\n")
        .write("a/b/.syncignore", "!keep.log\n")
        .write("a/b/keep.log", "kept")
        .write("a/b/note.txt", "n");
    s.sync_and_settle();
    assert_eq!(s.b.read("a/b/keep.log"), b"kept");
    // The ignore file that re-included keep.log goes with the folder: keep.log is gone, not
    // ignored, and its deletion reaches the other side like its neighbours'.
    s.a.remove("a");
    s.sync_and_settle();
    assert!(!s.b.exists("a"), "{:?}", s.b.tree());
    assert!(s.b.trash_contents().contains(&b"kept".to_vec()));
    // A's index agrees with its disk: made again on B, the file comes back to A.
    s.b.write("a/b/.syncignore", "!keep.log\n")
        .write("a/b/keep.log", "again");
    s.sync_and_settle();
    assert_eq!(s.a.read("a/b/keep.log"), b"again");
}

#[test]
fn a_symlink_is_never_written_through() {
    let s = Pair::local();
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), s.b.p("evil")).expect("symlink");
    s.a.write("evil/new.txt", "mine").write("plain.txt", "fine");
    for round in 0..2 {
        let out = s.sb.filesync().args(["sync", s.a.s(), s.b.s()]).output();
        let err = &out.stderr;
        assert!(!out.status.success(), "round {round}: sync passed\n{err}");
        assert!(
            err.contains("evil") && err.contains("symbolic link"),
            "{err}"
        );
        let written: Vec<_> = std::fs::read_dir(outside.path()).expect("ls").collect();
        assert!(
            written.is_empty(),
            "round {round}: written outside: {written:?}"
        );
        assert_eq!(s.a.read("evil/new.txt"), b"mine");
        assert_eq!(s.b.read("plain.txt"), b"fine");
    }
}

#[test]
fn the_same_folder_twice_or_one_inside_the_other_is_refused() {
    let s = Pair::local();
    s.a.write("x.txt", "x").mkdir("inner");
    let a = s.a.s().to_string();
    let inner = s.a.p("inner");
    let same_via_dots = format!("{a}/inner/..");
    for (x, y, says) in [
        (a.as_str(), a.as_str(), "given twice"),
        (a.as_str(), same_via_dots.as_str(), "given twice"),
        (a.as_str(), inner.to_str().unwrap(), "is inside"),
        (inner.to_str().unwrap(), a.as_str(), "is inside"),
    ] {
        let out = s.sb.filesync().args(["sync", x, y]).output();
        let err = &out.stderr;
        assert!(!out.status.success(), "{x} {y}: {err}");
        assert!(err.contains(says), "{x} {y}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Nothing was written into either.
    assert!(!s.a.exists(".sync") && !s.a.exists("inner/.sync"));
    assert_eq!(std::fs::read_dir(&inner).unwrap().count(), 0);
}

#[test]
fn an_index_from_the_original_tool_loads() {
    let s = Pair::local();
    s.a.write("file1", "one");
    s.a.write(
        ".sync",
        r#"{".": {".st": 1637981552, ".sd": 0, "file1": {".st": 1637981552, ".sd": 1}, "gone": {".st": 1637981552, ".sd": null}}}"#,
    );
    s.sb.filesync().args(["index", "--root", s.a.s()]).ok();
    s.sync_and_settle();
    assert_eq!(s.b.read("file1"), b"one");
}

#[test]
fn dry_run_changes_nothing() {
    let s = Pair::local();
    s.a.write("x", "1");
    let out =
        s.sb.filesync()
            .args(["sync", "--dry-run", s.a.s(), s.b.s()])
            .ok();
    assert!(out.stdout.contains("copy"), "{out}");
    assert!(!s.b.exists("x"));
}

#[test]
fn rescanning_an_unchanged_tree_reads_no_content() {
    let s = Pair::local();
    for i in 0..200 {
        s.a.write(&format!("d{}/f{i}", i % 10), vec![i as u8; 1000]);
    }
    let index = |s: &Pair| {
        s.sb.filesync()
            .args(["index", "--root", s.a.s()])
            .ok()
            .stdout
    };
    let first = index(&s);
    assert!(
        first.contains("210 added") && first.contains("200 hashed"),
        "{first}"
    );
    let second = index(&s);
    assert!(
        second.contains("0 added, 0 modified, 0 deleted, 0 hashed"),
        "{second}"
    );
    // Touched but not changed: hashed once, not a modification.
    s.a.set_mtime_offset("d3/f3", -10);
    let third = index(&s);
    assert!(
        third.contains("0 modified") && third.contains("1 hashed"),
        "{third}"
    );
}

#[test]
fn a_renamed_file_is_moved_not_sent_again() {
    let s = Pair::local();
    s.a.write("photos/2024/img.jpg", vec![9u8; 2 << 20]);
    s.sync_and_settle();
    s.a.mkdir("archive")
        .rename("photos/2024/img.jpg", "archive/img-renamed.jpg");
    let out = s.sync_and_settle();
    assert!(
        out.contains("sent 0 files (0 B)") && out.contains("moved 1"),
        "{out}"
    );
    assert_eq!(s.b.read("archive/img-renamed.jpg"), vec![9u8; 2 << 20]);
    assert!(!s.b.exists("photos/2024/img.jpg"));
}
