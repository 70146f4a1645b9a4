//! How a phase's steps are grouped into units of work.

use super::*;
use crate::index::{ContentHash, MTime, VersionVector};

fn fetch(side: Side, i: usize, size: u64, hashed: bool) -> Step {
    let e = Entry::file(
        size,
        MTime::new(1, 0),
        hashed.then_some(ContentHash([1; 32])),
        VersionVector::new(),
    );
    let path = RelPath::parse(&format!("f{i}")).unwrap();
    Step {
        side,
        path: path.clone(),
        op: Op::Fetch {
            from: path,
            source: e.clone(),
            replace: None,
        },
        result: e,
    }
}

fn shape(units: &[Unit]) -> Vec<(char, usize)> {
    units
        .iter()
        .map(|u| match u {
            Unit::One(_) => ('1', 1),
            Unit::Batch(v) => ('B', v.len()),
        })
        .collect()
}

#[test]
fn small_hashed_fetches_are_batched_per_side_within_the_limits() {
    let mut steps = Vec::new();
    for i in 0..(BATCH_FILES + 10) {
        steps.push(fetch(Side::Right, i, 10, true));
    }
    steps.push(fetch(Side::Right, 9000, BATCH_FILE + 1, true)); // too big
    steps.push(fetch(Side::Right, 9001, 10, false)); // no hash to check it by
    for i in 0..3 {
        steps.push(fetch(Side::Left, 10_000 + i, 10, true));
    }
    let refs: Vec<&Step> = steps.iter().collect();
    let u = units(&refs, true, true);
    assert_eq!(
        shape(&u),
        vec![('B', BATCH_FILES), ('B', 3), ('B', 10), ('1', 1), ('1', 1)]
    );
    // Every step is in exactly one unit, and a batch holds one side only.
    let mut seen = 0;
    for unit in &u {
        if let Unit::Batch(v) = unit {
            assert!(v.iter().all(|s| s.side == v[0].side));
            seen += v.len();
        } else {
            seen += 1;
        }
    }
    assert_eq!(seen, steps.len());
    // A side whose store does not batch gets single steps.
    let u = units(&refs, true, false);
    assert_eq!(shape(&u).iter().filter(|s| s.0 == 'B').count(), 1);
    assert_eq!(u.len(), 1 + BATCH_FILES + 10 + 2);
}

#[test]
fn a_batch_stays_within_its_byte_budget() {
    let big = BATCH_FILE; // the largest batchable file
    let n = (BATCH_BYTES / big) as usize;
    let steps: Vec<Step> = (0..n + 1)
        .map(|i| fetch(Side::Left, i, big, true))
        .collect();
    let refs: Vec<&Step> = steps.iter().collect();
    assert_eq!(shape(&units(&refs, true, true)), vec![('B', n), ('B', 1)]);
}
