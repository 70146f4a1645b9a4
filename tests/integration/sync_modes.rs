//! Permission bits sync like content, on every backend (local, our hub, OpenSSH's sshd), as an
//! unprivileged user: nothing arrives more readable than it was, `+x` and private folders
//! arrive as they are, a chmod is a change, and a chmod meets a concurrent edit without a
//! conflict.

use crate::harness::*;
use proptest::prelude::*;
use std::os::unix::fs::PermissionsExt;

fn mode(f: &Folder, rel: &str) -> u32 {
    std::fs::symlink_metadata(f.p(rel))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777
}

fn chmod(f: &Folder, rel: &str, m: u32) {
    std::fs::set_permissions(f.p(rel), std::fs::Permissions::from_mode(m)).expect("chmod");
}

#[track_caller]
fn assert_mode(s: &Pair, rel: &str, want: u32) {
    for (side, f) in [("laptop", &s.a), ("far side", &s.b)] {
        assert_eq!(
            mode(f, rel),
            want,
            "{rel} on the {side} is {:o}, not {want:o}",
            mode(f, rel)
        );
    }
}

/// The pair with everything run as nobody when the tests run as root: the far side (the pair
/// does that) and the client too, so the laptop's permissions bind the sync as well.
fn as_nobody(mut s: Pair) -> Pair {
    s.as_nobody();
    s
}

/// The uid the syncs run as when the tests run as root.
const NOBODY_UID: u32 = 65534;

/// One sync, client included as nobody (see `as_nobody`); its stdout.
#[track_caller]
fn sync(s: &Pair) -> String {
    let run = match s.remote {
        // Two local folders: the pair already runs the whole sync as nobody.
        Remote::Local => s.sync_cmd(),
        _ => s.sync_cmd().unprivileged(),
    };
    let r = run.output();
    assert!(r.status.success(), "sync failed: {r}");
    r.stdout
}

/// A sync that must change modes only: nothing sent, received or in conflict.
#[track_caller]
fn sync_modes_only(s: &Pair) -> String {
    let out = sync(s);
    assert!(
        out.contains("sent 0 files (0 B), received 0 files (0 B), moved 0, deleted 0, conflicts 0"),
        "a mode change moved content: {out}"
    );
    out
}

/// Syncs; both sides then hold the same files, and a second sync moves nothing and sets no
/// permissions.
#[track_caller]
fn settle(s: &Pair) {
    sync(s);
    s.assert_same();
    let again = sync(s);
    assert!(
        again.contains(
            "sent 0 files (0 B), received 0 files (0 B), moved 0, deleted 0, conflicts 0"
        ),
        "second sync was not a no-op: {again}"
    );
    assert!(!again.contains("permissions"), "not a no-op: {again}");
}

fn modes_sync_both_ways(s: Pair) {
    let s = as_nobody(s);
    s.a.write("secret.txt", "s")
        .write("private/notes.txt", "n")
        .write("run.sh", "#!/bin/sh\necho hi\n")
        .write("doc.txt", "base")
        .write("locked/inside.txt", "i");
    chmod(&s.a, "secret.txt", 0o600);
    chmod(&s.a, "private", 0o700);
    chmod(&s.a, "run.sh", 0o755);
    // A folder its owner may not write: filled first, closed after.
    chmod(&s.a, "locked", 0o500);
    s.b.write("far-secret.txt", "f");
    chmod(&s.b, "far-secret.txt", 0o600);
    settle(&s);
    // The sync ran as the unprivileged user, the far side's writes included.
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = |f: &Folder, rel: &str| std::fs::metadata(f.p(rel)).expect("stat").uid();
        assert_eq!(owner(&s.b, "secret.txt"), NOBODY_UID);
        assert_eq!(owner(&s.a, "far-secret.txt"), NOBODY_UID);
    }
    assert_mode(&s, "secret.txt", 0o600);
    assert_mode(&s, "private", 0o700);
    assert_mode(&s, "private/notes.txt", 0o644);
    assert_mode(&s, "run.sh", 0o755);
    assert_mode(&s, "locked", 0o500);
    assert_mode(&s, "far-secret.txt", 0o600);
    assert_mode(&s, "doc.txt", 0o644);

    // A chmod alone is a change, either way.
    chmod(&s.a, "run.sh", 0o700);
    chmod(&s.b, "private", 0o750);
    let out = sync_modes_only(&s);
    assert!(out.contains("permissions set 2"), "{out}");
    assert_mode(&s, "run.sh", 0o700);
    assert_mode(&s, "private", 0o750);
    settle(&s);

    // A chmod here and an edit there merge: the edit's content with the chmod's mode.
    chmod(&s.a, "doc.txt", 0o755);
    s.b.write("doc.txt", "edited on the far side");
    let out = sync(&s);
    assert!(out.contains("conflicts 0"), "{out}");
    assert_eq!(s.a.read("doc.txt"), b"edited on the far side");
    assert_mode(&s, "doc.txt", 0o755);
    settle(&s);

    // A laptop file replaced by the far side's edit keeps its mode.
    s.b.write("secret.txt", "edited there");
    settle(&s);
    assert_eq!(s.a.read("secret.txt"), b"edited there");
    assert_mode(&s, "secret.txt", 0o600);
    // And the other way.
    s.a.write("far-secret.txt", "edited here");
    settle(&s);
    assert_eq!(s.b.read("far-secret.txt"), b"edited here");
    assert_mode(&s, "far-secret.txt", 0o600);
}

#[test]
fn modes_sync_both_ways_local() {
    modes_sync_both_ways(Pair::local());
}

#[test]
fn modes_sync_both_ways_hub() {
    modes_sync_both_ways(Pair::hub(HubKind::Serve));
}

/// The hub as on the Pi: its watcher sees chmods there too.
#[test]
fn modes_sync_both_ways_hub_daemon() {
    modes_sync_both_ways(Pair::hub(HubKind::Daemon));
}

#[test]
fn modes_sync_both_ways_sshd() {
    modes_sync_both_ways(Pair::sshd());
}

/// Many small files go to our hub in batches: each keeps its mode there too.
#[test]
fn batched_files_keep_their_modes_on_the_hub() {
    let s = as_nobody(Pair::hub(HubKind::Serve));
    for i in 0..40u32 {
        let name = format!("many/f{i}");
        s.a.write(&name, format!("{i}"));
        chmod(&s.a, &name, [0o600, 0o640, 0o755, 0o400][i as usize % 4]);
    }
    settle(&s);
    for i in 0..40u32 {
        assert_mode(
            &s,
            &format!("many/f{i}"),
            [0o600, 0o640, 0o755, 0o400][i as usize % 4],
        );
    }
}

/// An index from before modes were kept: the first sync after the upgrade moves no content
/// and makes nothing more readable; where an old sync widened a copy, the narrower wins.
#[test]
fn an_index_without_modes_upgrades_without_changes() {
    let s = as_nobody(Pair::local());
    s.a.write("secret.txt", "s")
        .write("run.sh", "x")
        .write("plain", "p");
    settle(&s);
    chmod(&s.a, "secret.txt", 0o600);
    chmod(&s.b, "secret.txt", 0o644);
    chmod(&s.a, "run.sh", 0o755);
    chmod(&s.b, "run.sh", 0o644);
    for side in [&s.a, &s.b] {
        let idx = String::from_utf8(side.read(".sync")).unwrap();
        let old = idx
            .split(",\".sm\":")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part.to_string()
                } else {
                    part.trim_start_matches(|c: char| c.is_ascii_digit())
                        .to_string()
                }
            })
            .collect::<String>();
        assert!(!old.contains(".sm"), "{old}");
        side.write(".sync", old);
    }
    sync_modes_only(&s);
    assert_mode(&s, "secret.txt", 0o600);
    assert_mode(&s, "run.sh", 0o755);
    assert_mode(&s, "plain", 0o644);
    settle(&s);
}

fn arb_tree() -> impl Strategy<Value = Vec<(String, u32, Option<u32>)>> {
    let file_modes = prop::sample::select(vec![0o400, 0o444, 0o600, 0o640, 0o644, 0o700, 0o755]);
    // Folders the owner may write: a sync cannot put a conflict copy or a new file into one
    // it may not (`modes_sync_both_ways` has a folder that is closed after it is filled).
    let dir_modes = prop::sample::select(vec![0o700, 0o711, 0o750, 0o755]);
    let entry = (
        prop::sample::select(vec!["", "d/", "d/e/", "f/"]),
        // Plain names and names like ours (`.sync-x`, `r.sync-tmp.docx`): all are the user's.
        prop::sample::select(vec![
            "a",
            "b",
            "c.txt",
            ".sync-x",
            ".sync.bak",
            "r.sync-tmp.docx",
            ".n.sync-tmp.0123",
        ]),
        file_modes,
        prop::option::of(dir_modes),
    )
        .prop_map(|(dir, name, m, dm)| (format!("{dir}{name}"), m, dm));
    prop::collection::vec(entry, 1..8)
}

/// Writes a tree: each file with its mode, and its folder with the folder mode given.
fn plant(f: &Folder, tree: &[(String, u32, Option<u32>)], tag: &str) {
    let mut dirs = Vec::new();
    for (path, m, dm) in tree {
        if f.p(path).exists() {
            continue;
        }
        f.write(path, format!("{tag} {path}"));
        chmod(f, path, *m);
        if let (Some(dm), Some(parent)) = (dm, std::path::Path::new(path).parent())
            && !parent.as_os_str().is_empty()
        {
            dirs.push((parent.to_string_lossy().into_owned(), *dm));
        }
    }
    // Folders last: one its owner may not write must not stop the planting.
    for (d, m) in dirs {
        chmod(f, &d, m);
    }
}

/// Every path below `f` (ours left out) with its mode.
fn modes_of(f: &Folder) -> Vec<(String, u32)> {
    f.tree().keys().map(|k| (k.clone(), mode(f, k))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random trees with random modes and names like ours on both sides: one sync leaves
    /// both with the same content and the same modes, and a second sync does nothing.
    #[test]
    fn random_trees_with_random_modes_converge(left in arb_tree(), right in arb_tree()) {
        let s = as_nobody(Pair::local());
        plant(&s.a, &left, "left");
        plant(&s.b, &right, "right");
        settle(&s);
        prop_assert_eq!(modes_of(&s.a), modes_of(&s.b));
    }
}
