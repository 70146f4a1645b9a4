//! The journal's encoding, replay and compaction rule, byte by byte and by property.

use super::*;
use crate::index::{Kind, MTime, ReplicaId, VersionVector, from_json_slice, to_json_vec};
use proptest::prelude::*;

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn file(n: u64, r: u64) -> Entry {
    Entry::file(
        n,
        MTime::new(n as i64, 3),
        Some(ContentHash::of(&n.to_le_bytes())),
        VersionVector::new().bumped(ReplicaId(r)),
    )
}

fn base() -> Index {
    let mut idx = Index::new(ReplicaId(0xbeef));
    idx.entries
        .insert(p("d"), Entry::dir(MTime::new(1, 0), VersionVector::new()));
    idx.entries.insert(p("d/a"), file(1, 1));
    idx.entries.insert(p("d/b"), file(2, 1));
    idx
}

/// The index as a reader of `.sync` would see it after a full save.
fn saved(idx: &Index) -> Vec<u8> {
    to_json_vec(&from_json_slice(&to_json_vec(idx)).unwrap())
}

/// Loads snapshot + journal the way a store does.
fn load(snapshot: &[u8], journal: &[u8]) -> (Index, Replay) {
    let (idx, r, snap) = super::load(snapshot.to_vec(), journal).unwrap();
    assert_eq!(snap, SnapshotId::of(snapshot));
    (idx, r)
}

/// A snapshot, a journal of three batches, and the index after each prefix of them.
fn three_batches() -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>, Vec<usize>) {
    let mut idx = base();
    let snap = to_json_vec(&idx);
    let mut journal = header(SnapshotId::of(&snap));
    let mut states = vec![saved(&idx)];
    let mut ends = vec![journal.len()];
    let batches = vec![
        vec![Change::Set(p("d/c"), file(3, 2))],
        vec![
            Change::Set(
                p("d/a"),
                Entry::tombstone(MTime::new(9, 0), VersionVector::new().bumped(ReplicaId(2))),
            ),
            Change::Root(Entry::dir(MTime::new(5, 5), VersionVector::new())),
        ],
        vec![Change::Remove(p("d/b")), Change::Set(p("e"), file(4, 3))],
    ];
    for b in batches {
        for c in b.clone() {
            c.apply(&mut idx);
        }
        journal.extend_from_slice(&encode_batch(&b));
        states.push(saved(&idx));
        ends.push(journal.len());
    }
    (snap, journal, states, ends)
}

#[test]
fn batches_replay_to_the_same_index() {
    let (snap, journal, states, ends) = three_batches();
    let (idx, r) = load(&snap, &journal);
    assert_eq!(to_json_vec(&idx), states[3]);
    assert_eq!(
        r,
        Replay::Applied {
            batches: 3,
            changes: 5,
            valid: *ends.last().unwrap() as u64,
            ignored: 0
        }
    );
    assert_eq!(r.trouble(), None);
    assert_eq!(idx.entries[&p("d/a")].kind, Kind::Deleted);
    assert!(!idx.entries.contains_key(&p("d/b")));
}

/// A journal cut at every byte: always exactly the state after the last whole batch, and the
/// next batch goes right after it.
#[test]
fn a_torn_tail_is_ignored_whole_at_every_cut() {
    let (snap, journal, states, ends) = three_batches();
    for cut in 0..=journal.len() {
        let (idx, r) = load(&snap, &journal[..cut]);
        if cut < HEADER_LEN {
            assert_eq!(to_json_vec(&idx), states[0], "cut {cut}");
            assert!(r.append_at().is_none(), "cut {cut}: {r:?}");
            continue;
        }
        let whole = ends.iter().rposition(|&e| e <= cut).unwrap();
        assert_eq!(to_json_vec(&idx), states[whole], "cut {cut}");
        assert_eq!(r.append_at(), Some(ends[whole] as u64), "cut {cut}");
        assert_eq!(r.trouble().is_some(), cut != ends[whole], "cut {cut}");
    }
}

/// A byte changed anywhere: the state after some whole batch before the damage, never an
/// entry lost that every earlier state had.
#[test]
fn a_garbled_byte_anywhere_keeps_a_whole_prefix() {
    let (snap, journal, states, ends) = three_batches();
    for at in 0..journal.len() {
        for flip in [1u8, 0x80, 0xff] {
            let mut bad = journal.clone();
            bad[at] ^= flip;
            let (idx, r) = load(&snap, &bad);
            let got = to_json_vec(&idx);
            let before = ends.iter().rposition(|&e| e <= at).unwrap_or(0);
            assert!(
                states[..=before].contains(&got),
                "flip {flip:#x} at {at}: {r:?}"
            );
            assert!(
                r.trouble().is_some() || r == Replay::BadHeader,
                "at {at}: {r:?}"
            );
        }
    }
}

#[test]
fn a_journal_of_another_snapshot_is_stale() {
    let (snap, journal, states, _) = three_batches();
    // The snapshot was rewritten since (a compaction, or another program).
    let mut newer = from_json_slice(&snap).unwrap();
    newer.entries.insert(p("z"), file(7, 7));
    let newer = to_json_vec(&newer);
    let (idx, r) = load(&newer, &journal);
    assert_eq!(r, Replay::Stale);
    assert_eq!(r.append_at(), None);
    assert!(idx.entries.contains_key(&p("z")));
    assert_ne!(to_json_vec(&idx), states[3]);
    // No journal: the snapshot alone.
    let (idx, r) = load(&snap, b"");
    assert_eq!((to_json_vec(&idx), r), (states[0].clone(), Replay::Absent));
}

#[test]
fn records_that_check_but_make_no_sense_end_the_replay() {
    let snap = to_json_vec(&base());
    let id = SnapshotId::of(&snap);
    let bodies: Vec<Vec<u8>> = vec![
        vec![9, 1, 2],
        vec![SET, 1, 0, 0, 0, b'.', b'{', b'}'],
        vec![SET, 3, 0, 0, 0, b'a', b'/', b'b', b'x'],
        vec![REMOVE, 200, 0, 0, 0, b'a'],
        vec![ROOT, b'{'],
        vec![END, 1],
    ];
    for body in bodies {
        let mut j = header(id);
        j.extend_from_slice(&encode_batch(&[Change::Set(p("ok"), file(1, 1))]));
        let good = j.len() as u64;
        push_record(&mut j, &body);
        j.extend_from_slice(&encode_batch(&[Change::Remove(p("d/a"))]));
        let (idx, r) = load(&snap, &j);
        assert!(idx.entries.contains_key(&p("ok")));
        assert!(idx.entries.contains_key(&p("d/a")), "{body:?}");
        assert_eq!(r.append_at(), Some(good), "{body:?}");
    }
    // An end record that counts wrong is damage too.
    let mut j = header(id);
    let mut b = encode_batch(&[Change::Remove(p("d/a"))]);
    let end_at = b.len() - 9 - FRAME;
    b.truncate(end_at);
    let mut end = vec![END];
    end.extend_from_slice(&2u64.to_le_bytes());
    push_record(&mut b, &end);
    j.extend_from_slice(&b);
    let (idx, _) = load(&snap, &j);
    assert!(idx.entries.contains_key(&p("d/a")));
}

/// Tokens tell index states apart by what loads: every whole batch makes a new one, a torn or
/// garbled tail has none, and a stale journal adds nothing to its snapshot's.
#[test]
fn a_token_names_exactly_what_a_load_gives() {
    let (snap, journal, states, ends) = three_batches();
    let id = SnapshotId::of(&snap);
    let mut seen = std::collections::HashMap::new();
    for (i, &end) in ends.iter().enumerate() {
        let part = &journal[..end];
        let r = survey(id, part);
        assert_eq!(r, load(&snap, part).1);
        let t = Token::of(id, part, &r).unwrap();
        assert_eq!(seen.insert(t, i), None, "batch {i} repeats a token");
        assert_eq!(to_json_vec(&load(&snap, part).0), states[i]);
    }
    // One byte into the next batch: damage, so no token (a rescan decides).
    let torn = &journal[..ends[1] + 1];
    assert_eq!(Token::of(id, torn, &survey(id, torn)), None);
    let mut garbled = journal.clone();
    garbled[HEADER_LEN + 20] ^= 1;
    assert_eq!(Token::of(id, &garbled, &survey(id, &garbled)), None);
    // A journal of another snapshot is ignored by a load, and by the token.
    let other = SnapshotId::of(b"{}");
    let stale = Token::of(other, &journal, &survey(other, &journal)).unwrap();
    assert_eq!(stale, Token::of_snapshot(other));
    assert_ne!(Token::of_snapshot(id), Token::of_snapshot(other));
}

#[test]
fn compaction_once_the_journal_passes_a_quarter_of_the_snapshot() {
    assert!(!should_compact(1000, 0));
    assert!(!should_compact(1000, 250));
    assert!(should_compact(1000, 251));
    assert!(should_compact(0, 1));
    assert!(should_compact(u64::MAX, u64::MAX));
    assert!(encode_batch(&[]).is_empty());
}

#[test]
fn the_region_of_a_scope_is_its_subtree_and_ancestors() {
    let mut idx = base();
    idx.entries.insert(p("d/x/y"), file(5, 1));
    idx.entries
        .insert(p("d/x"), Entry::dir(MTime::new(1, 0), VersionVector::new()));
    idx.entries.insert(p("d y"), file(6, 1));
    idx.entries.insert(p("dz"), file(6, 1));
    let scopes = [p("d/x")];
    let r = region(&idx, &scopes);
    let keys: Vec<&str> = r.keys().map(RelPath::as_str).collect();
    assert_eq!(keys, ["d", "d/x", "d/x/y"]);
    assert_eq!(region(&idx, &[RelPath::root()]).len(), idx.entries.len());
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (0u8..3, 0u64..5, 0u64..4, proptest::option::of(0u32..0o777)).prop_map(|(k, n, r, mode)| {
        let vv = VersionVector::new().bumped(ReplicaId(r + 1));
        match k {
            0 => file(n, r + 1).with_mode(mode),
            1 => Entry::dir(MTime::new(n as i64, 0), vv).with_mode(mode),
            _ => Entry::tombstone(MTime::new(n as i64, 0), vv),
        }
    })
}

fn arb_path() -> impl Strategy<Value = RelPath> {
    prop::sample::select(vec![
        "a", "b", "a/x", "a/y", "b/x", "b/x/deep", "c d", ".sx", "\\e",
    ])
    .prop_map(p)
}

/// One edit: an entry set, or one removed.
fn arb_edit() -> impl Strategy<Value = (RelPath, Option<Entry>)> {
    (arb_path(), proptest::option::weighted(0.8, arb_entry()))
}

proptest! {
    #![proptest_config(crate::index::fuzz_config())]

    /// Any sequence of edit batches, each saved as a journal batch (diffed as the daemon does)
    /// with compactions at random, loads as the same index one full save of the end state
    /// gives; a journal cut anywhere loads as the state after some whole batch.
    #[test]
    fn journal_and_compaction_equal_one_full_save(
        batches in prop::collection::vec(
            (prop::collection::vec(arb_edit(), 0..6), any::<bool>(), any::<bool>()), 0..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut idx = Index::new(ReplicaId(0xfeed));
        let mut snap = to_json_vec(&idx);
        let mut journal: Vec<u8> = Vec::new();
        let mut states = vec![saved(&idx)];
        for (edits, compact, touch_root) in batches {
            let before = region(&idx, &[RelPath::root()]);
            for (path, e) in edits {
                match e {
                    Some(e) => { idx.entries.insert(path, e); }
                    None => { idx.entries.remove(&path); }
                }
            }
            // As a scan leaves it: every entry's folder is in the index too.
            let orphans: Vec<RelPath> = idx
                .entries
                .keys()
                .flat_map(|p| p.ancestors().collect::<Vec<_>>())
                .filter(|a| !idx.entries.contains_key(a))
                .collect();
            for a in orphans {
                idx.entries.insert(a, Entry::dir(MTime::new(1, 0), VersionVector::new()));
            }
            let mut changes = diff(&before, &region(&idx, &[RelPath::root()]));
            if touch_root {
                idx.root.mtime.secs += 1;
                changes.push(Change::Root(idx.root.clone()));
            }
            let batch = encode_batch(&changes);
            if compact || should_compact(snap.len() as u64, (journal.len() + batch.len()) as u64) {
                snap = to_json_vec(&idx);
                // A crash before the reset leaves the old journal: stale, so harmless.
                let (old, r) = load(&snap, &journal);
                prop_assert!(matches!(r, Replay::Stale | Replay::Absent), "{r:?}");
                prop_assert_eq!(to_json_vec(&old), saved(&idx));
                journal.clear();
                states = vec![saved(&idx)];
                continue;
            }
            if journal.is_empty() && !batch.is_empty() {
                journal = header(SnapshotId::of(&snap));
            }
            journal.extend_from_slice(&batch);
            states.push(saved(&idx));
        }
        let (loaded, r) = load(&snap, &journal);
        prop_assert_eq!(r.trouble(), None);
        prop_assert_eq!(to_json_vec(&loaded), saved(&idx));
        let (torn, _) = load(&snap, &journal[..cut.index(journal.len() + 1)]);
        prop_assert!(states.contains(&to_json_vec(&torn)));
    }
}
