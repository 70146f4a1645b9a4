//! Version vectors and replica ids: the causal history of one index entry.

use std::cmp::Ordering;
use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// A replica's random, stable id (64 bits, written as 16 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReplicaId(pub u64);

impl ReplicaId {
    pub fn random() -> Self {
        // Zero is reserved as "unknown" so a fresh id is never confused with a missing one.
        loop {
            let v: u64 = rand::random();
            if v != 0 {
                return ReplicaId(v);
            }
        }
    }

    /// The first 8 hex digits: enough to tell replicas apart in a conflict file name.
    pub fn short(&self) -> String {
        format!("{:016x}", self.0)[..8].to_string()
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for ReplicaId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 {
            return Err(format!("replica id {s:?} is not 1-16 hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(ReplicaId)
            .map_err(|_| format!("replica id {s:?} is not hex"))
    }
}

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    Equal,
    /// The left side has seen everything the right has, and more.
    Dominates,
    /// The right side has seen everything the left has, and more.
    DominatedBy,
    Concurrent,
}

/// `{replica: counter}`, kept sorted by replica; zero counters are never stored.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct VersionVector(Pairs);

/// The pairs of a vector, laid out for size: most entries were only ever changed by one
/// replica, and a million of them each with a heap block of their own add up; a pair kept
/// inline and a thin pointer share 16 bytes (the zero replica id marks the pointer).
/// Canonical (`One` for exactly one pair of a replica other than zero, `Other` for the rest),
/// so derived equality holds.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Pairs {
    One(NonZeroU64, u64),
    /// No pair, or several (or one of the zero replica, which an index may name).
    Other(Option<Box<Several>>),
}

/// Two pairs or more, behind one more pointer: a thin one fits beside the inline pair.
type Several = Box<[(ReplicaId, u64)]>;

impl Default for Pairs {
    fn default() -> Self {
        Pairs::Other(None)
    }
}

impl Pairs {
    /// The pairs, in order; `one` holds a lone pair kept inline.
    fn as_slice<'a>(&'a self, one: &'a mut [(ReplicaId, u64); 1]) -> &'a [(ReplicaId, u64)] {
        match self {
            Pairs::One(r, n) => {
                *one = [(ReplicaId(r.get()), *n)];
                one
            }
            Pairs::Other(None) => &[],
            Pairs::Other(Some(v)) => v,
        }
    }

    fn from_vec(v: Vec<(ReplicaId, u64)>) -> Self {
        match v.as_slice() {
            [] => Pairs::Other(None),
            [(r, n)] if r.0 != 0 => match NonZeroU64::new(r.0) {
                Some(r) => Pairs::One(r, *n),
                None => unreachable!("a replica id other than zero is not zero"),
            },
            _ => Pairs::Other(Some(Box::new(v.into_boxed_slice()))),
        }
    }
}

impl VersionVector {
    pub const EMPTY: VersionVector = VersionVector(Pairs::Other(None));

    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.0, Pairs::Other(None))
    }

    pub fn get(&self, r: ReplicaId) -> u64 {
        let mut one = [Default::default()];
        let v = self.0.as_slice(&mut one);
        match v.binary_search_by_key(&r, |&(k, _)| k) {
            Ok(i) => v[i].1,
            Err(_) => 0,
        }
    }

    pub fn set(&mut self, r: ReplicaId, n: u64) {
        let mut v = self.0.as_slice(&mut [Default::default()]).to_vec();
        match v.binary_search_by_key(&r, |&(k, _)| k) {
            Ok(i) if n == 0 => {
                v.remove(i);
            }
            Ok(i) => v[i].1 = n,
            Err(_) if n == 0 => return,
            Err(i) => v.insert(i, (r, n)),
        }
        self.0 = Pairs::from_vec(v);
    }

    /// Records one more change made by replica `r`.
    pub fn bump(&mut self, r: ReplicaId) {
        let n = self.get(r).saturating_add(1);
        self.set(r, n);
    }

    pub fn bumped(&self, r: ReplicaId) -> Self {
        let mut v = self.clone();
        v.bump(r);
        v
    }

    /// Pointwise maximum: a history that includes both.
    pub fn merged(&self, other: &Self) -> Self {
        let (mut a, mut b) = ([Default::default()], [Default::default()]);
        let (l, r) = (self.0.as_slice(&mut a), other.0.as_slice(&mut b));
        let mut out = Vec::with_capacity(l.len().max(r.len()));
        let (mut i, mut j) = (0, 0);
        while i < l.len() || j < r.len() {
            match (l.get(i), r.get(j)) {
                (Some(&(a, x)), Some(&(b, y))) => match a.cmp(&b) {
                    Ordering::Less => {
                        out.push((a, x));
                        i += 1;
                    }
                    Ordering::Greater => {
                        out.push((b, y));
                        j += 1;
                    }
                    Ordering::Equal => {
                        out.push((a, x.max(y)));
                        i += 1;
                        j += 1;
                    }
                },
                (Some(&p), None) => {
                    out.push(p);
                    i += 1;
                }
                (None, Some(&p)) => {
                    out.push(p);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        VersionVector(Pairs::from_vec(out))
    }

    pub fn compare(&self, other: &Self) -> Causality {
        let (mut a, mut b) = ([Default::default()], [Default::default()]);
        let (l, r) = (self.0.as_slice(&mut a), other.0.as_slice(&mut b));
        let (mut greater, mut less) = (false, false);
        let (mut i, mut j) = (0, 0);
        while i < l.len() || j < r.len() {
            match (l.get(i), r.get(j)) {
                (Some(&(a, x)), Some(&(b, y))) => match a.cmp(&b) {
                    Ordering::Less => {
                        greater = true;
                        i += 1;
                    }
                    Ordering::Greater => {
                        less = true;
                        j += 1;
                    }
                    Ordering::Equal => {
                        greater |= x > y;
                        less |= x < y;
                        i += 1;
                        j += 1;
                    }
                },
                (Some(_), None) => {
                    greater = true;
                    i += 1;
                }
                (None, Some(_)) => {
                    less = true;
                    j += 1;
                }
                (None, None) => break,
            }
        }
        match (greater, less) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Dominates,
            (false, true) => Causality::DominatedBy,
            (true, true) => Causality::Concurrent,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, u64)> + '_ {
        let (one, many): (_, &[_]) = match &self.0 {
            Pairs::One(r, n) => (Some((ReplicaId(r.get()), *n)), &[]),
            Pairs::Other(None) => (None, &[]),
            Pairs::Other(Some(v)) => (None, v),
        };
        one.into_iter().chain(many.iter().copied())
    }

    /// The vector of `pairs`; a replica named twice keeps its larger counter.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (ReplicaId, u64)>) -> Self {
        let mut v: Vec<(ReplicaId, u64)> = pairs.into_iter().filter(|&(_, n)| n > 0).collect();
        v.sort_unstable();
        // Sorted by replica then counter: of each run of one replica, the last is the largest.
        v.reverse();
        v.dedup_by_key(|p| p.0);
        v.reverse();
        VersionVector(Pairs::from_vec(v))
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(r, n)| (r.short(), n)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vv(p: &[(u64, u64)]) -> VersionVector {
        VersionVector::from_pairs(p.iter().map(|&(r, n)| (ReplicaId(r), n)))
    }

    #[test]
    fn compare_cases() {
        assert_eq!(vv(&[]).compare(&vv(&[])), Causality::Equal);
        assert_eq!(vv(&[(1, 1)]).compare(&vv(&[])), Causality::Dominates);
        assert_eq!(vv(&[]).compare(&vv(&[(1, 1)])), Causality::DominatedBy);
        assert_eq!(
            vv(&[(1, 2), (2, 1)]).compare(&vv(&[(1, 1), (2, 1)])),
            Causality::Dominates
        );
        assert_eq!(vv(&[(1, 1)]).compare(&vv(&[(2, 1)])), Causality::Concurrent);
        assert_eq!(vv(&[(1, 0)]).compare(&vv(&[])), Causality::Equal);
    }

    #[test]
    fn replica_id_roundtrip() {
        let r = ReplicaId(0x00ab_cdef_0123_4567);
        assert_eq!(r.to_string().parse::<ReplicaId>().unwrap(), r);
        assert_eq!(r.short(), "00abcdef");
        assert!("xyz".parse::<ReplicaId>().is_err());
    }

    fn arb_vv() -> impl Strategy<Value = VersionVector> {
        // Replica zero too: an index may name it, and it is kept apart from the inline pair.
        proptest::collection::vec((0u64..5, 0u64..4), 0..5)
            .prop_map(|p| VersionVector::from_pairs(p.into_iter().map(|(r, n)| (ReplicaId(r), n))))
    }

    #[test]
    fn a_vector_stays_small() {
        assert_eq!(size_of::<VersionVector>(), 16);
    }

    proptest! {
        /// Whatever the layout holds, the pairs read back as given.
        #[test]
        fn pairs_read_back(p in proptest::collection::vec((0u64..5, 1u64..4), 0..5)) {
            let a = VersionVector::from_pairs(p.iter().map(|&(r, n)| (ReplicaId(r), n)));
            let mut want: std::collections::BTreeMap<u64, u64> = Default::default();
            for &(r, n) in &p {
                let m = want.entry(r).or_default();
                *m = (*m).max(n);
            }
            let got: Vec<(u64, u64)> = a.iter().map(|(r, n)| (r.0, n)).collect();
            prop_assert_eq!(got, want.iter().map(|(&r, &n)| (r, n)).collect::<Vec<_>>());
            for (&r, &n) in &want {
                prop_assert_eq!(a.get(ReplicaId(r)), n);
            }
            prop_assert_eq!(a.is_empty(), want.is_empty());
            let mut b = VersionVector::new();
            for (&r, &n) in &want {
                b.set(ReplicaId(r), n);
            }
            prop_assert_eq!(b, a);
        }

        #[test]
        fn merge_dominates_both(a in arb_vv(), b in arb_vv()) {
            let m = a.merged(&b);
            prop_assert!(matches!(m.compare(&a), Causality::Equal | Causality::Dominates));
            prop_assert!(matches!(m.compare(&b), Causality::Equal | Causality::Dominates));
            prop_assert_eq!(m.clone(), b.merged(&a));
        }

        #[test]
        fn compare_is_antisymmetric(a in arb_vv(), b in arb_vv()) {
            let flip = match a.compare(&b) {
                Causality::Dominates => Causality::DominatedBy,
                Causality::DominatedBy => Causality::Dominates,
                c => c,
            };
            prop_assert_eq!(b.compare(&a), flip);
        }

        #[test]
        fn bump_dominates(a in arb_vv(), r in 1u64..6) {
            prop_assert_eq!(a.bumped(ReplicaId(r)).compare(&a), Causality::Dominates);
        }
    }
}
