//! `Entries`: an index's path → entry map, laid out for size.
//!
//! One vector sorted by path holds nearly every entry (no tree nodes, no per-entry map
//! overhead, and a parsed `.sync` becomes it without a second copy). Paths added out of order
//! since the vector was last sorted wait in a small side map until there are enough of them
//! to merge in place; removed ones leave a hole until then. Lookups are binary searches,
//! iteration merges the two sorted sequences. Pure data, like the rest of `index`.

use super::Entry;
use crate::relpath::RelPath;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::fmt;
use std::iter::Peekable;

/// Paths kept apart before a merge: at least this many, or a share of the vector.
const MIN_SIDE: usize = if cfg!(test) { 4 } else { 1024 };
const SIDE_DIVISOR: usize = 32;

#[derive(Clone, Default)]
pub struct Entries {
    /// Sorted by path, each path once; `None` where the path was removed since the last merge.
    sorted: Vec<(RelPath, Option<Entry>)>,
    /// Paths absent from `sorted`, added since the last merge.
    side: BTreeMap<RelPath, Entry>,
    /// Holes in `sorted`.
    holes: usize,
}

impl Entries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries already in path order, each path once.
    fn from_sorted(v: Vec<(RelPath, Entry)>) -> Self {
        debug_assert!(v.is_sorted_by(|a, b| a.0 < b.0));
        let sorted = v.into_iter().map(|(p, e)| (p, Some(e))).collect();
        Entries {
            sorted,
            side: BTreeMap::new(),
            holes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sorted.len() - self.holes + self.side.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, p: &RelPath) -> Result<usize, usize> {
        self.sorted.binary_search_by(|(q, _)| q.cmp(p))
    }

    pub fn get(&self, p: &RelPath) -> Option<&Entry> {
        match self.find(p) {
            Ok(i) => self.sorted[i].1.as_ref(),
            Err(_) => self.side.get(p),
        }
    }

    pub fn get_mut(&mut self, p: &RelPath) -> Option<&mut Entry> {
        match self.find(p) {
            Ok(i) => self.sorted[i].1.as_mut(),
            Err(_) => self.side.get_mut(p),
        }
    }

    pub fn contains_key(&self, p: &RelPath) -> bool {
        self.get(p).is_some()
    }

    /// Sets `p`'s entry; the one it had, if any.
    pub fn insert(&mut self, p: RelPath, e: Entry) -> Option<Entry> {
        match self.find(&p) {
            Ok(i) => {
                let old = self.sorted[i].1.replace(e);
                if old.is_none() {
                    self.holes -= 1;
                }
                old
            }
            Err(i) if i == self.sorted.len() && self.side.is_empty() => {
                // In order (a scan or a parse building the index): straight onto the end.
                self.sorted.push((p, Some(e)));
                None
            }
            Err(_) => {
                let old = self.side.insert(p, e);
                if self.side.len() > MIN_SIDE.max(self.sorted.len() / SIDE_DIVISOR) {
                    self.merge();
                }
                old
            }
        }
    }

    pub fn remove(&mut self, p: &RelPath) -> Option<Entry> {
        match self.find(p) {
            Ok(i) => {
                let old = self.sorted[i].1.take();
                if old.is_some() {
                    self.holes += 1;
                    if self.holes > MIN_SIDE.max(self.sorted.len() / SIDE_DIVISOR) {
                        self.merge();
                    }
                }
                old
            }
            Err(_) => self.side.remove(p),
        }
    }

    /// Folds the side map into the vector and closes its holes, in place: the vector grows
    /// by the side's length and is filled from the back, so no second copy of it is made.
    fn merge(&mut self) {
        if self.holes > 0 {
            self.sorted.retain(|(_, e)| e.is_some());
            self.holes = 0;
        }
        let side = std::mem::take(&mut self.side);
        if side.is_empty() {
            return;
        }
        let mut i = self.sorted.len();
        self.sorted.reserve_exact(side.len());
        self.sorted
            .resize_with(i + side.len(), || (RelPath::root(), None));
        let mut k = self.sorted.len();
        let mut rest = side.into_iter().rev().peekable();
        while let Some((p, _)) = rest.peek() {
            k -= 1;
            if i > 0 && self.sorted[i - 1].0 > *p {
                self.sorted.swap(i - 1, k);
                i -= 1;
            } else if let Some((p, e)) = rest.next() {
                self.sorted[k] = (p, Some(e));
            }
        }
    }

    /// Every entry, in path order.
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(&self.sorted, self.side.iter())
    }

    /// The entries from `r.start` on, in path order.
    pub fn range(&self, r: std::ops::RangeFrom<RelPath>) -> Iter<'_> {
        let at = self.sorted.partition_point(|(q, _)| *q < r.start);
        Iter::new(&self.sorted[at..], self.side.range(r))
    }

    pub fn keys(&self) -> impl Iterator<Item = &RelPath> {
        self.iter().map(|(p, _)| p)
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.iter().map(|(_, e)| e)
    }

    /// Every entry, mutably, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.sorted
            .iter_mut()
            .filter_map(|(_, e)| e.as_mut())
            .chain(self.side.values_mut())
    }
}

/// The entries of two sorted sequences, merged (each path is in one of them only).
pub struct Iter<'a> {
    sorted: Peekable<SortedIter<'a>>,
    side: Peekable<SideIter<'a>>,
}

/// The vector's entries, its holes skipped.
type SortedIter<'a> = std::iter::FilterMap<std::slice::Iter<'a, (RelPath, Option<Entry>)>, Live>;

type Live = for<'b> fn(&'b (RelPath, Option<Entry>)) -> Option<(&'b RelPath, &'b Entry)>;

/// The side map's entries: all of it, or a range of it.
pub enum SideIter<'a> {
    All(btree_map::Iter<'a, RelPath, Entry>),
    Range(btree_map::Range<'a, RelPath, Entry>),
}

impl<'a> Iterator for SideIter<'a> {
    type Item = (&'a RelPath, &'a Entry);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SideIter::All(i) => i.next(),
            SideIter::Range(i) => i.next(),
        }
    }
}

impl<'a> From<btree_map::Iter<'a, RelPath, Entry>> for SideIter<'a> {
    fn from(i: btree_map::Iter<'a, RelPath, Entry>) -> Self {
        SideIter::All(i)
    }
}

impl<'a> From<btree_map::Range<'a, RelPath, Entry>> for SideIter<'a> {
    fn from(i: btree_map::Range<'a, RelPath, Entry>) -> Self {
        SideIter::Range(i)
    }
}

fn live(x: &(RelPath, Option<Entry>)) -> Option<(&RelPath, &Entry)> {
    x.1.as_ref().map(|e| (&x.0, e))
}

impl<'a> Iter<'a> {
    fn new(sorted: &'a [(RelPath, Option<Entry>)], side: impl Into<SideIter<'a>>) -> Self {
        Iter {
            sorted: sorted.iter().filter_map(live as Live).peekable(),
            side: side.into().peekable(),
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a RelPath, &'a Entry);
    fn next(&mut self) -> Option<Self::Item> {
        let take_sorted = match (self.sorted.peek(), self.side.peek()) {
            (Some(a), Some(b)) => a.0.cmp(b.0) == Ordering::Less,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_sorted {
            self.sorted.next()
        } else {
            self.side.next()
        }
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = (&'a RelPath, &'a Entry);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(RelPath, Entry)> for Entries {
    /// Sorted once; of a path given twice, the last one counts (as a map's `collect`).
    fn from_iter<I: IntoIterator<Item = (RelPath, Entry)>>(it: I) -> Self {
        let mut v: Vec<(RelPath, Entry)> = it.into_iter().collect();
        if !v.is_sorted_by(|a, b| a.0 < b.0) {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            // A stable sort keeps duplicates in the order given: keep the last of each run.
            v.reverse();
            v.dedup_by(|later, earlier| later.0 == earlier.0);
            v.reverse();
        }
        Entries::from_sorted(v)
    }
}

impl Extend<(RelPath, Entry)> for Entries {
    fn extend<I: IntoIterator<Item = (RelPath, Entry)>>(&mut self, it: I) {
        for (p, e) in it {
            self.insert(p, e);
        }
    }
}

impl std::ops::Index<&RelPath> for Entries {
    type Output = Entry;
    fn index(&self, p: &RelPath) -> &Entry {
        match self.get(p) {
            Some(e) => e,
            None => panic!("no entry for {p}"),
        }
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests;
