//! Settling names: hand cases, and a property test that applies the settled plan to two
//! indexes (as `apply` records results) and checks that the folding side holds every name
//! apart, nothing is lost, and a second sync has nothing to do.

use super::*;
use crate::index::{ContentHash, Entry, MTime, ReplicaId, VersionVector};
use proptest::prelude::*;

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

const CASE: NameRules = NameRules {
    fold_case: true,
    fold_normalization: false,
    windows_names: false,
};
const APFS: NameRules = NameRules {
    fold_case: true,
    fold_normalization: true,
    windows_names: false,
};
const FAT: NameRules = NameRules {
    fold_case: true,
    fold_normalization: false,
    windows_names: true,
};

fn file(content: u32, replica: ReplicaId) -> Entry {
    let vv = VersionVector::new().bumped(replica);
    Entry::file(
        4,
        MTime::new(1_700_000_000 + content as i64, 0),
        Some(ContentHash::of(&content.to_le_bytes())),
        vv,
    )
}

fn index(id: u64, files: &[(&str, u32)]) -> Index {
    let mut i = Index::new(ReplicaId(id));
    for (name, c) in files {
        i.entries.insert(p(name), file(*c, ReplicaId(id)));
    }
    i
}

/// The plan applied to both indexes, as `apply::fold` records step results.
fn applied(plan: &Plan, mut l: Index, mut r: Index) -> (Index, Index) {
    for s in &plan.steps {
        let idx = match s.side {
            Side::Left => &mut l,
            Side::Right => &mut r,
        };
        match &s.op {
            Op::MoveAside { to } => {
                idx.entries.remove(&s.path);
                idx.entries.insert(to.clone(), s.result.clone());
            }
            Op::Move {
                from, from_result, ..
            } => {
                idx.entries.insert(from.clone(), from_result.clone());
                idx.entries.insert(s.path.clone(), s.result.clone());
            }
            _ => {
                idx.entries.insert(s.path.clone(), s.result.clone());
            }
        }
    }
    (l, r)
}

fn live_keys(i: &Index, r: NameRules) -> Vec<String> {
    i.entries
        .iter()
        .filter(|(_, e)| e.is_live())
        .map(|(p, _)| r.key(p))
        .collect()
}

fn contents(i: &Index) -> BTreeSet<String> {
    i.entries
        .values()
        .filter(|e| e.kind == Kind::File && e.is_live())
        .map(|e| format!("{:?}", e.hash))
        .collect()
}

fn settled(l: &Index, r: &Index, rules: [NameRules; 2]) -> (Plan, Vec<HeldName>) {
    let mut plan = crate::plan::plan(l, r);
    let held = settle(&mut plan, l, r, rules);
    (plan, held)
}

#[test]
fn readme_and_readme_both_arrive_one_as_a_conflict_copy() {
    let l = index(1, &[("README", 1), ("readme", 2)]);
    let r = index(2, &[]);
    let (plan, held) = settled(&l, &r, [NameRules::EXACT, CASE]);
    assert!(held.is_empty());
    let (l2, r2) = applied(&plan, l, r);
    let names: Vec<&str> = r2.entries.keys().map(RelPath::as_str).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"README"), "{names:?}");
    assert!(
        names[1].starts_with("readme.sync-conflict-")
            || names[0].starts_with("readme.sync-conflict-")
    );
    assert_eq!(
        l2.entries.keys().collect::<Vec<_>>(),
        r2.entries.keys().collect::<Vec<_>>()
    );
    assert_eq!(plan.conflicts.len(), 1);
}

#[test]
fn a_new_spelling_never_lands_on_the_file_the_receiver_has() {
    let mut l = index(1, &[("README", 1)]);
    let r = {
        let mut r = Index::new(ReplicaId(2));
        r.entries = l.entries.clone();
        r
    };
    l.entries.insert(p("readme"), file(7, ReplicaId(1)));
    let (plan, _) = settled(&l, &r, [NameRules::EXACT, CASE]);
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| s.side == Side::Right && s.path == p("readme")),
        "{plan:?}"
    );
    let (_, r2) = applied(&plan, l, r);
    assert_eq!(
        r2.entries.get(&p("README")).map(|e| e.hash),
        Some(Some(ContentHash::of(&1u32.to_le_bytes())))
    );
}

#[test]
fn nfc_and_nfd_spellings_both_kept_on_a_normalizing_receiver() {
    let (nfc, nfd) = ("caf\u{e9}.txt", "cafe\u{301}.txt");
    let l = index(1, &[(nfc, 1), (nfd, 2)]);
    let r = index(2, &[]);
    for rules in [
        APFS,
        NameRules {
            fold_case: false,
            ..APFS
        },
    ] {
        let (plan, _) = settled(&l, &r, [NameRules::EXACT, rules]);
        let (l2, r2) = applied(&plan, l.clone(), r.clone());
        let keys = live_keys(&r2, rules);
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0], keys[1]);
        assert_eq!(contents(&r2), contents(&l2));
    }
    // A receiver that keeps them apart gets both names as they are.
    let (plan, _) = settled(&l, &r, [NameRules::EXACT, CASE]);
    assert!(plan.conflicts.is_empty());
}

#[test]
fn names_windows_refuses_are_held_back_once_with_all_below() {
    let l = index(
        1,
        &[
            ("CON/a.txt", 1),
            ("CON/b/c.txt", 2),
            ("a:b", 3),
            ("ok.txt", 4),
            ("dot.", 5),
        ],
    );
    let mut l = l;
    for d in ["CON", "CON/b"] {
        l.entries.insert(
            p(d),
            Entry::dir(MTime::new(1, 0), VersionVector::new().bumped(ReplicaId(1))),
        );
    }
    let r = index(2, &[]);
    let (plan, held) = settled(&l, &r, [NameRules::EXACT, FAT]);
    let paths: Vec<&str> = held.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(paths, ["CON", "a:b", "dot."]);
    assert!(held.iter().all(|h| h.side == Side::Right));
    let right: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.side == Side::Right)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(right, ["ok.txt"]);
    // Rules bind only the side that receives: a Windows-rules sender sends what it holds.
    let (_, held) = settled(&l, &r, [FAT, NameRules::EXACT]);
    assert!(held.is_empty());
}

#[test]
fn a_folder_differing_only_in_case_is_held_back() {
    let mut l = index(1, &[("Docs/a", 1), ("docs/b", 2)]);
    for d in ["Docs", "docs"] {
        l.entries.insert(
            p(d),
            Entry::dir(MTime::new(1, 0), VersionVector::new().bumped(ReplicaId(1))),
        );
    }
    let (plan, held) = settled(&l, &index(2, &[]), [NameRules::EXACT, CASE]);
    assert_eq!(
        held.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
        ["docs"]
    );
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| s.side == Side::Right && s.path.starts_with(&p("docs")))
    );
    assert!(
        plan.steps
            .iter()
            .any(|s| s.side == Side::Right && s.path == p("Docs/a"))
    );
}

#[test]
fn exact_receivers_leave_the_plan_alone() {
    let l = index(1, &[("README", 1), ("readme", 2), ("CON", 3)]);
    let r = index(2, &[("Readme", 4)]);
    let plain = crate::plan::plan(&l, &r);
    let (plan, held) = settled(&l, &r, [NameRules::EXACT, NameRules::EXACT]);
    assert_eq!(plan, plain);
    assert!(held.is_empty());
}

const SPELLINGS: [&str; 6] = [
    "README",
    "readme",
    "ReadMe",
    "caf\u{e9}",
    "cafe\u{301}",
    "CAF\u{c9}",
];

proptest! {
    /// Any spellings on either side, a folding receiver on either side: after the sync the
    /// folding side holds no two names as one, no content is lost, and the next sync is a no-op.
    #[test]
    fn folding_receivers_converge_without_loss(
        lmask in 0u8..64, rmask in 0u8..64, fold_right in any::<bool>(), apfs in any::<bool>(),
    ) {
        let rules = if apfs { APFS } else { CASE };
        let pick = |mask: u8, base: u32| -> Vec<(&str, u32)> {
            SPELLINGS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(i, s)| (*s, base + i as u32)).collect()
        };
        let l = index(1, &pick(lmask, 10));
        // The folding side's disk can hold only one spelling of each key.
        let mut seen = BTreeSet::new();
        let rfiles: Vec<_> = pick(rmask, 20).into_iter().filter(|(s, _)| seen.insert(rules.key(&p(s)))).collect();
        let r = index(2, &rfiles);
        let (l, r) = if fold_right { (l, r) } else { (r, l) };
        let sides = if fold_right { [NameRules::EXACT, rules] } else { [rules, NameRules::EXACT] };
        let before: BTreeSet<_> = contents(&l).union(&contents(&r)).cloned().collect();
        let (plan, held) = settled(&l, &r, sides);
        prop_assert!(held.is_empty());
        let (l2, r2) = applied(&plan, l, r);
        let folding = if fold_right { &r2 } else { &l2 };
        let keys = live_keys(folding, rules);
        let distinct: BTreeSet<_> = keys.iter().collect();
        prop_assert_eq!(keys.len(), distinct.len(), "two names as one: {:?}", folding.entries.keys().collect::<Vec<_>>());
        let after: BTreeSet<_> = contents(&l2).union(&contents(&r2)).cloned().collect();
        prop_assert!(before.is_subset(&after), "lost content");
        let (again, _) = settled(&l2, &r2, sides);
        prop_assert!(again.steps.is_empty(), "second sync: {:?}", again.steps);
    }
}
