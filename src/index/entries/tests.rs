use super::*;
use crate::index::{MTime, VersionVector};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Insert(String, i64),
    Remove(String),
    Bump(String),
}

fn path() -> impl Strategy<Value = String> {
    // Few names, nested, so inserts, removals and re-inserts of the same path are common and
    // component order (`a/b` before `a.b`) matters.
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "a.b", "c-d", "z"]),
        1..4,
    )
    .prop_map(|v| v.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (path(), any::<i64>()).prop_map(|(p, t)| Op::Insert(p, t)),
        1 => path().prop_map(Op::Remove),
        1 => path().prop_map(Op::Bump),
    ]
}

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn entry(t: i64) -> Entry {
    Entry::file(1, MTime::new(t, 0), None, VersionVector::new())
}

/// Every query of `e` answers as the map `m` does.
fn same(e: &Entries, m: &BTreeMap<RelPath, Entry>) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.len(), m.len());
    prop_assert!(e.iter().eq(m.iter()));
    for from in ["", "a", "a/b", "b", "z/z"] {
        let from = p(from);
        prop_assert!(e.range(from.clone()..).eq(m.range(from..)));
    }
    for (k, v) in m {
        prop_assert_eq!(e.get(k), Some(v));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The layout is a map: any sequence of inserts, removals and edits in place leaves it
    /// answering every query as a `BTreeMap` given the same sequence does.
    #[test]
    fn entries_behave_as_a_sorted_map(start in prop::collection::vec((path(), any::<i64>()), 0..20),
                                      ops in prop::collection::vec(op(), 0..200)) {
        let mut m: BTreeMap<RelPath, Entry> = BTreeMap::new();
        for (k, t) in &start {
            m.insert(p(k), entry(*t));
        }
        let mut e: Entries = start.iter().map(|(k, t)| (p(k), entry(*t))).collect();
        same(&e, &m)?;
        for o in ops {
            match o {
                Op::Insert(k, t) => prop_assert_eq!(e.insert(p(&k), entry(t)), m.insert(p(&k), entry(t))),
                Op::Remove(k) => prop_assert_eq!(e.remove(&p(&k)), m.remove(&p(&k))),
                Op::Bump(k) => {
                    if let (Some(a), Some(b)) = (e.get_mut(&p(&k)), m.get_mut(&p(&k))) {
                        a.size += 1;
                        b.size += 1;
                    }
                    prop_assert_eq!(e.contains_key(&p(&k)), m.contains_key(&p(&k)));
                }
            }
            same(&e, &m)?;
        }
        let mut count = 0;
        for v in e.values_mut() {
            v.size = 0;
            count += 1;
        }
        prop_assert_eq!(count, m.len());
    }
}

#[test]
fn in_order_inserts_go_straight_onto_the_vector() {
    let mut e = Entries::new();
    for i in 0..10_000 {
        e.insert(p(&format!("d/f{i:05}")), entry(i));
    }
    assert!(e.side.is_empty());
    assert_eq!(e.len(), 10_000);
}

/// The layout stays small: every one of a million entries pays this.
#[test]
fn an_entry_stays_small() {
    assert!(
        size_of::<Option<Entry>>() <= 104,
        "{}",
        size_of::<Option<Entry>>()
    );
    // A short path inline, a longer one behind a pointer.
    assert_eq!(size_of::<RelPath>(), 24);
}
