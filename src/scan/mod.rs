//! Change detection: walk a folder, compare with its index, hash only what changed.
//!
//! `reconcile` is the pure rule shared by the local scan, the remote one, the watcher and the
//! tests: kind, size and mtime first, content hash only when those differ; a real change bumps
//! this replica's counter. The walk is judged once (`walk`), under one rule stack (`rules`);
//! `local` lists and hashes this machine's folders, `store::sftp` a remote one, and both end
//! in `settle`.

pub mod local;
pub mod rules;
pub mod walk;

pub use local::{scan, scan_walked};
pub use rules::Rules;
pub use walk::{Skip, Skipped};

use crate::index::{ContentHash, Entry, Index, Kind, MTime, ReplicaId, VersionVector};
use crate::relpath::RelPath;
use crate::replica::root::{FileKind, Meta};
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::PathBuf;
use walk::Found;

/// Deeper paths are skipped: the nested `.sync` JSON must stay within parser recursion limits.
pub const MAX_DEPTH: usize = 120;

/// What the disk holds at a path, from one `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub kind: Kind,
    pub size: u64,
    pub mtime: MTime,
    /// Permission bits, where the lister reports them.
    pub mode: Option<u32>,
}

/// The synced permission bits of `m`; Windows keeps none.
#[cfg(unix)]
fn perm_bits_of(m: &std::fs::Metadata) -> Option<u32> {
    Some(crate::index::mode::perm_bits(
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()),
    ))
}

#[cfg(windows)]
fn perm_bits_of(_: &std::fs::Metadata) -> Option<u32> {
    None
}

impl Observed {
    pub fn from_metadata(m: &std::fs::Metadata) -> Option<Observed> {
        let ft = m.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            // Symlinks, sockets, devices: never synced, never followed.
            return None;
        };
        let mtime = m.modified().map(MTime::from_system).unwrap_or_default();
        Some(Observed {
            kind,
            size: if kind == Kind::File { m.len() } else { 0 },
            mtime,
            mode: perm_bits_of(m),
        })
    }

    /// The same from a look through the root (what the walk reads).
    pub fn from_meta(st: &Meta) -> Option<Observed> {
        let kind = match st.kind {
            FileKind::File => Kind::File,
            FileKind::Dir => Kind::Dir,
            _ => return None,
        };
        Some(Observed {
            kind,
            size: if kind == Kind::File { st.size } else { 0 },
            mtime: st.mtime,
            mode: st.mode,
        })
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    /// Files and folders whose permission bits alone changed.
    pub chmodded: u64,
    /// Files whose content was read to hash it.
    pub hashed: u64,
    pub hashed_bytes: u64,
    /// Paths that could not be read; their index entries were left as they were.
    pub unreadable: Vec<(RelPath, String)>,
    /// Files that were being written as the scan read them (their size or mtime moved):
    /// left as they were in the index, for the next scan.
    pub moving: Vec<RelPath>,
    /// Those of `moving` that a client of the hub's SFTP server still has open for writing
    /// (or closed a moment ago): reported apart, as files still being written.
    pub writing: Vec<RelPath>,
    /// Our temp files met on the walk (leftovers of interrupted writes, or writes under way).
    pub temps: Vec<RelPath>,
    /// Paths left out of the index (links, FIFOs, names that are not UTF-8, ...), sorted.
    pub skipped: Vec<Skipped>,
    /// More paths left out than `skipped` names, by reason (a far side that lists only some).
    pub skipped_more: Vec<(Skip, u64)>,
}

impl ScanStats {
    pub fn changes(&self) -> u64 {
        self.added + self.modified + self.deleted + self.chmodded
    }

    /// Adds the figures of a scan of another part of the folder.
    pub fn absorb(&mut self, other: ScanStats) {
        self.added += other.added;
        self.modified += other.modified;
        self.deleted += other.deleted;
        self.chmodded += other.chmodded;
        self.hashed += other.hashed;
        self.hashed_bytes += other.hashed_bytes;
        self.unreadable.extend(other.unreadable);
        self.moving.extend(other.moving);
        self.writing.extend(other.writing);
        self.temps.extend(other.temps);
        self.skipped.extend(other.skipped);
        self.skipped.sort();
        self.skipped.dedup();
        for (why, n) in other.skipped_more {
            match self.skipped_more.iter_mut().find(|(w, _)| *w == why) {
                Some((_, m)) => *m += n,
                None => self.skipped_more.push((why, n)),
            }
        }
    }
}

/// The digests a scan read, by path: a sorted vector (a million of them in a map would cost
/// the map's buckets on top of the paths).
#[derive(Debug, Default, Clone)]
pub struct Hashes(Vec<(RelPath, ContentHash)>);

impl Hashes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, p: &RelPath) -> Option<&ContentHash> {
        let i = self.0.binary_search_by(|(q, _)| q.cmp(p)).ok()?;
        Some(&self.0[i].1)
    }

    pub fn insert(&mut self, p: RelPath, h: ContentHash) {
        match self.0.binary_search_by(|(q, _)| q.cmp(&p)) {
            Ok(i) => self.0[i].1 = h,
            Err(i) => self.0.insert(i, (p, h)),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(RelPath, ContentHash)> for Hashes {
    /// Of a path given twice, one of its digests is kept.
    fn from_iter<I: IntoIterator<Item = (RelPath, ContentHash)>>(it: I) -> Self {
        let mut v: Vec<_> = it.into_iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Hashes(v)
    }
}

/// Whether an observed file must be hashed: it is new, or its size or mtime moved.
fn must_hash(e: Option<&Entry>, o: &Observed) -> bool {
    match e {
        Some(e) if e.kind == Kind::File => {
            e.hash.is_none() || e.size != o.size || e.mtime != o.mtime
        }
        _ => true,
    }
}

/// The observed files whose content has to be read.
pub fn needs_hash(index: &Index, observed: &BTreeMap<RelPath, Observed>) -> Vec<RelPath> {
    observed
        .iter()
        .filter(|(p, o)| o.kind == Kind::File && must_hash(index.get(p), o))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Brings the index entries under `scope` in line with `observed` (everything found under it).
///
/// `hashes` holds the digests of the files `needs_hash` asked for; a file missing there could
/// not be read and keeps its entry. Unobserved entries for which `still_ours` is false (below an
/// unreadable folder, or now ignored) are left alone; the rest become tombstones.
pub fn reconcile(
    index: &mut Index,
    scope: &RelPath,
    observed: &BTreeMap<RelPath, Observed>,
    hashes: &Hashes,
    still_ours: impl Fn(&RelPath) -> bool,
    now: MTime,
) -> ScanStats {
    let me = index.replica;
    let mut st = ScanStats::default();
    for (p, o) in observed {
        let e = index.entries.get(p);
        let new = match o.kind {
            Kind::Dir => dir_entry(e, o, me, &mut st),
            Kind::File => file_entry(e, o, hashes.get(p), me, &mut st),
            Kind::Deleted => None,
        };
        if let Some(new) = new {
            index.entries.insert(p.clone(), new);
        }
    }

    let vanished: Vec<RelPath> = index
        .entries
        .range(scope.clone()..)
        .take_while(|(p, _)| p.starts_with(scope))
        .filter(|(p, e)| e.is_live() && !p.is_root() && !observed.contains_key(*p))
        .map(|(p, _)| p.clone())
        .filter(|p| still_ours(p))
        .collect();
    for p in vanished {
        if let Some(e) = index.entries.get_mut(&p) {
            *e = Entry::tombstone(now, e.vv.bumped(me));
            st.deleted += 1;
        }
    }
    st
}

/// The entry for a folder seen at a path (`None`: the index already has it right).
fn dir_entry(e: Option<&Entry>, o: &Observed, me: ReplicaId, st: &mut ScanStats) -> Option<Entry> {
    match e {
        Some(e) if e.kind == Kind::Dir && !e.vv.is_empty() => seen_mode(e, o, me, st),
        Some(e) if e.kind == Kind::Dir => {
            let n = Entry::dir(e.mtime, e.vv.bumped(me)).with_mode(o.mode.or(e.mode));
            Some(n)
        }
        Some(e) => {
            if e.is_live() {
                st.modified += 1;
            } else {
                st.added += 1;
            }
            Some(Entry::dir(o.mtime, e.vv.bumped(me)).with_mode(o.mode))
        }
        None => {
            st.added += 1;
            Some(Entry::dir(o.mtime, VersionVector::new().bumped(me)).with_mode(o.mode))
        }
    }
}

/// An entry whose kind and content are as the index says, with the mode the disk shows: the
/// same (`None`), adopted without a change where the index did not know it (an index from
/// before modes were kept, so an upgrade changes nothing), or a chmod.
fn seen_mode(e: &Entry, o: &Observed, me: ReplicaId, st: &mut ScanStats) -> Option<Entry> {
    let m = o.mode?;
    match e.mode {
        _ if e.shown_mode() == Some(m) => None,
        None => Some(e.clone().with_mode(Some(m))),
        Some(_) => {
            st.chmodded += 1;
            Some(e.chmodded(m, me))
        }
    }
}

/// The entry for a file seen at a path, with its hash when it was read (`None`: the index
/// already has it right, or it could not be read and keeps its entry).
fn file_entry(
    e: Option<&Entry>,
    o: &Observed,
    hash: Option<&ContentHash>,
    me: ReplicaId,
    st: &mut ScanStats,
) -> Option<Entry> {
    if !must_hash(e, o) {
        // Unchanged but maybe for its mode; an entry without history (an old index) gets its
        // first counter.
        let e = e?;
        if !e.vv.is_empty() {
            return seen_mode(e, o, me, st);
        }
        let mut n = e.clone().with_mode(o.mode.or(e.mode));
        n.vv.bump(me);
        return Some(n);
    }
    let h = hash?;
    Some(match e {
        Some(e) if e.kind == Kind::File && e.hash == Some(*h) && e.size == o.size => {
            // Touched, not changed: keep the history, note the new mtime (and a new mode).
            let mut n = e.clone();
            n.mtime = o.mtime;
            if n.vv.is_empty() {
                n.vv.bump(me);
                n.mode = o.mode.or(e.mode);
            } else if let Some(m) = seen_mode(&n, o, me, st) {
                n = m;
            }
            n
        }
        Some(e) => {
            if e.is_live() {
                st.modified += 1;
            } else {
                st.added += 1;
            }
            let mut n = Entry::file(o.size, o.mtime, Some(*h), e.vv.bumped(me));
            n.extra = e.extra.clone();
            // A disk that does not report modes, or shows what it showed when it could not
            // hold the mode, keeps the one the index knows.
            if e.is_live() && (o.mode.is_none() || o.mode == e.disk_mode) {
                n.mode = e.mode;
                n.disk_mode = e.disk_mode;
            } else {
                n.mode = o.mode;
            }
            n
        }
        None => {
            st.added += 1;
            Entry::file(o.size, o.mtime, Some(*h), VersionVector::new().bumped(me))
                .with_mode(o.mode)
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read folder {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Paths a scan must leave as they are in the index: files one of our own SFTP clients has
/// open for writing (or wrote a moment ago). Their old entries stay; nothing is offered.
pub type Busy<'a> = &'a (dyn Fn(&RelPath) -> bool + Sync);

/// For scans with nothing of ours writing in the folder.
pub fn nothing_busy(_: &RelPath) -> bool {
    false
}

/// How hashing a file went.
#[derive(Debug)]
pub enum Hashed {
    /// Its digest and how many bytes it held.
    Done(ContentHash, u64),
    /// It changed while it was read, or is gone: the next scan judges it.
    Moving,
    Failed(String),
}

/// A walk, gathered and sorted: what a lister found and the rules it judged by.
#[derive(Debug)]
pub struct Walked {
    pub observed: BTreeMap<RelPath, Observed>,
    /// What could not be read: its subtree keeps its index entries.
    pub unreadable: BTreeMap<RelPath, String>,
    pub temps: Vec<(RelPath, Option<MTime>)>,
    pub links: Vec<RelPath>,
    pub unwalked: Vec<RelPath>,
    /// The rules above the walk's scope and every `.syncignore` it met.
    pub rules: Rules,
    /// Files left for the next scan (being written).
    pub moving: Vec<RelPath>,
    /// What the walk left out, sorted, each once.
    pub skipped: Vec<Skipped>,
    /// Folders that hold nothing but the way to a path too deep to sync: not synced (the
    /// other side would get an empty chain of folders), and their entries kept as they are.
    pub refused_ways: Vec<RelPath>,
    /// Folders observed here whose contents are left for walks of their own (see
    /// `local::scan`): what is below them keeps its entries in this walk's settling.
    pub deferred: Vec<RelPath>,
}

/// The folders among `observed` that hold nothing but the way to one of `refused`: every
/// observed path below them is itself such a folder.
fn ways_to(refused: &[RelPath], observed: &BTreeMap<RelPath, Observed>) -> Vec<RelPath> {
    let mut on_way: HashSet<RelPath> = HashSet::new();
    for r in refused {
        let mut p = r.parent();
        while let Some(d) = p.filter(|d| !d.is_root()) {
            p = d.parent();
            if !on_way.insert(d) {
                break;
            }
        }
    }
    let mut ways: Vec<RelPath> = on_way
        .iter()
        .filter(|d| {
            observed
                .range((*d).clone()..)
                .take_while(|(q, _)| q.starts_with(d))
                .all(|(q, o)| o.kind == Kind::Dir && on_way.contains(q))
        })
        .cloned()
        .collect();
    ways.sort();
    ways
}

impl Walked {
    pub fn new(found: Found, above: Rules) -> Walked {
        let mut unreadable = BTreeMap::new();
        for (p, m) in found.unreadable {
            unreadable.entry(p).or_insert(m);
        }
        let mut observed: BTreeMap<RelPath, Observed> = found.observed.into_iter().collect();
        let refused_ways = ways_to(&found.too_deep, &observed);
        for p in &refused_ways {
            observed.remove(p);
        }
        Walked {
            observed,
            refused_ways,
            unreadable,
            temps: found.temps,
            links: found.links,
            unwalked: found.unwalked,
            rules: above.with_files(found.ignore_files),
            deferred: found.deferred,
            moving: Vec::new(),
            skipped: {
                let mut s = found.skipped;
                s.sort();
                s.dedup();
                s
            },
        }
    }

    /// The walk with the files `busy` names set aside as moving.
    pub fn without(mut self, busy: Busy) -> Walked {
        let held: Vec<RelPath> = self
            .observed
            .iter()
            .filter(|(p, o)| o.kind == Kind::File && busy(p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in held {
            self.observed.remove(&p);
            self.moving.push(p);
        }
        self
    }

    /// The files whose content has to be read, with what the walk saw of each.
    pub fn needs_hash(&self, index: &Index) -> Vec<(RelPath, Observed)> {
        needs_hash(index, &self.observed)
            .into_iter()
            .filter_map(|p| self.observed.get(&p).map(|o| (p, *o)))
            .collect()
    }
}

/// Folders whose subtrees a settling leaves as they are: sorted, none below another, so the
/// one that could hold a path is the last at or before it (a folder's descendants sort right
/// after it). A part of a big scan leaves thousands of folders to other parts, and every
/// entry below them is asked about.
struct Subtrees(Vec<RelPath>);

impl Subtrees {
    fn new(mut v: Vec<RelPath>) -> Self {
        v.sort();
        let mut outer: Vec<RelPath> = Vec::with_capacity(v.len());
        for p in v {
            if !outer.last().is_some_and(|o| p.starts_with(o)) {
                outer.push(p);
            }
        }
        Subtrees(outer)
    }

    /// Whether `p` is one of the folders or lies below one.
    fn hold(&self, p: &RelPath) -> bool {
        let i = self.0.partition_point(|b| b <= p);
        i > 0 && p.starts_with(&self.0[i - 1])
    }
}

/// The end of every scan, local or remote: the hashes folded into `index` by `reconcile`.
/// What the walk could not read, what was moving and what the rules leave out keep their
/// entries (`is_dir` tells whether a path not walked is a folder, for the rules).
pub fn settle(
    index: &mut Index,
    scope: &RelPath,
    mut w: Walked,
    hashed: Vec<(RelPath, Hashed)>,
    is_dir: &dyn Fn(&RelPath) -> bool,
) -> ScanStats {
    // An unreadable folder keeps its entry whole: the mode that made it unreadable (a
    // mistaken chmod) is not a change to sync to the other side.
    for b in w.unreadable.keys() {
        if let Some(o) = w.observed.get_mut(b) {
            o.mode = None;
        }
    }
    let mut unreadable: Vec<(RelPath, String)> = w
        .unreadable
        .iter()
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    let mut moving = w.moving;
    let mut hashed_bytes = 0;
    let hashes: Hashes = hashed
        .into_iter()
        .filter_map(|(p, h)| match h {
            Hashed::Done(h, n) => {
                hashed_bytes += n;
                Some((p, h))
            }
            Hashed::Moving => {
                moving.push(p);
                None
            }
            Hashed::Failed(m) => {
                unreadable.push((p, m));
                None
            }
        })
        .collect();
    for (p, m) in &unreadable {
        // The caller reports these (`index`, a sync's errors, the watcher's log).
        tracing::debug!(path = %p, "cannot read, left as it was: {m}");
    }
    let bad = Subtrees::new(
        w.unreadable
            .keys()
            .chain(&w.refused_ways)
            .chain(&w.deferred)
            .cloned()
            .collect(),
    );
    // A file of our temp shape that the index names is the user's (an index the original
    // tool wrote names everything): it keeps its entry and is never removed.
    let (named, temps): (Vec<_>, Vec<_>) = w
        .temps
        .into_iter()
        .map(|(p, _)| p)
        .partition(|p| index.get(p).is_some_and(Entry::is_live));
    let mut held: HashSet<&RelPath> = moving.iter().collect();
    held.extend(&named);
    let mut st = reconcile(
        index,
        scope,
        &w.observed,
        &hashes,
        |p| !bad.hold(p) && !held.contains(p) && !w.rules.leaves_out(p, is_dir),
        MTime::from_system(std::time::SystemTime::now()),
    );
    st.hashed = hashes.len() as u64;
    st.hashed_bytes = hashed_bytes;
    st.unreadable = unreadable;
    st.temps = temps;
    st.moving = moving;
    st.skipped = w.skipped;
    st
}

#[cfg(test)]
mod tests;
