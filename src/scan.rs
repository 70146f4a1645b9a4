//! Change detection: walk a folder, compare with its index, hash only what changed.
//!
//! `reconcile` is the pure rule shared by the scanner, the watcher and the tests: kind, size and
//! mtime first, content hash only when those differ; a real change bumps this replica's counter.

use crate::index::{
    ContentHash, Entry, IGNORE_FILE, Index, Kind, MTime, VersionVector, is_internal, is_temp_name,
};
use crate::relpath::RelPath;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Deeper paths are skipped: the nested `.sync` JSON must stay within parser recursion limits.
pub const MAX_DEPTH: usize = 120;

/// What the disk holds at a path, from one `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub kind: Kind,
    pub size: u64,
    pub mtime: MTime,
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
        })
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    /// Files whose content was read to hash it.
    pub hashed: u64,
    pub hashed_bytes: u64,
    /// Paths that could not be read; their index entries were left as they were.
    pub unreadable: Vec<(RelPath, String)>,
    /// Our temp files met on the walk (leftovers of interrupted writes, or writes under way).
    pub temps: Vec<PathBuf>,
}

impl ScanStats {
    pub fn changes(&self) -> u64 {
        self.added + self.modified + self.deleted
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
    hashes: &HashMap<RelPath, ContentHash>,
    still_ours: impl Fn(&RelPath) -> bool,
    now: MTime,
) -> ScanStats {
    let me = index.replica;
    let mut st = ScanStats::default();
    for (p, o) in observed {
        let e = index.entries.get(p);
        let new = match o.kind {
            Kind::Dir => match e {
                Some(e) if e.kind == Kind::Dir && !e.vv.is_empty() => continue,
                Some(e) if e.kind == Kind::Dir => Entry::dir(e.mtime, e.vv.bumped(me)),
                Some(e) => {
                    if e.is_live() {
                        st.modified += 1;
                    } else {
                        st.added += 1;
                    }
                    Entry::dir(o.mtime, e.vv.bumped(me))
                }
                None => {
                    st.added += 1;
                    Entry::dir(o.mtime, VersionVector::new().bumped(me))
                }
            },
            Kind::File => {
                if !must_hash(e, o) {
                    match e {
                        Some(e) if e.vv.is_empty() => {
                            let mut n = e.clone();
                            n.vv.bump(me);
                            n
                        }
                        _ => continue,
                    }
                } else {
                    let Some(h) = hashes.get(p) else {
                        continue;
                    };
                    match e {
                        Some(e)
                            if e.kind == Kind::File && e.hash == Some(*h) && e.size == o.size =>
                        {
                            // Touched, not changed: keep the history, note the new mtime.
                            let mut n = e.clone();
                            n.mtime = o.mtime;
                            if n.vv.is_empty() {
                                n.vv.bump(me);
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
                            n
                        }
                        None => {
                            st.added += 1;
                            Entry::file(o.size, o.mtime, Some(*h), VersionVector::new().bumped(me))
                        }
                    }
                }
            }
            Kind::Deleted => continue,
        };
        index.entries.insert(p.clone(), new);
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

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read folder {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("scanning {path}: {message}")]
    Walk { path: PathBuf, message: String },
}

/// Everything found under `scope` of the folder at `root`, minus ignored and internal paths.
pub struct Walk {
    pub observed: BTreeMap<RelPath, Observed>,
    /// Folders (or files) that could not be read: their subtrees are not judged.
    pub unreadable: BTreeMap<RelPath, String>,
    /// Our temp files met on the walk.
    pub temps: Vec<PathBuf>,
}

/// Walks `root/scope` without following symlinks, honouring `.syncignore` files.
pub fn walk(root: &Path, scope: &RelPath) -> Result<Walk, ScanError> {
    let start = scope.to_path(root);
    std::fs::symlink_metadata(root).map_err(|source| ScanError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let mut builder = ignore::WalkBuilder::new(&start);
    builder
        .hidden(false)
        .git_ignore(false)
        .git_global(false)
        .git_exclude(false)
        .ignore(false)
        .parents(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE);
    // Ignore files between the root and the scope still apply to a partial walk.
    if !scope.is_root() {
        for anc in scope.ancestors().chain(std::iter::once(RelPath::root())) {
            let f = anc.to_path(root).join(IGNORE_FILE);
            if f.is_file() {
                builder.add_ignore(f);
            }
        }
    }
    let root_owned = root.to_path_buf();
    let temps = std::sync::Arc::new(Mutex::new(Vec::new()));
    let temps_seen = temps.clone();
    builder.filter_entry(move |d| {
        if d.file_name().to_str().is_some_and(is_temp_name) {
            lock(&temps_seen).push(d.path().to_path_buf());
            return false;
        }
        match RelPath::from_fs(&root_owned, d.path()) {
            Ok(p) => !is_internal(&p),
            Err(_) => true,
        }
    });

    let found: Mutex<Walk> = Mutex::new(Walk {
        observed: BTreeMap::new(),
        unreadable: BTreeMap::new(),
        temps: Vec::new(),
    });
    let fatal: Mutex<Option<ScanError>> = Mutex::new(None);
    builder.threads(2).build_parallel().run(|| {
        Box::new(|res| {
            use ignore::WalkState;
            match res {
                Ok(d) => {
                    let path = d.path();
                    let rel = match RelPath::from_fs(root, path) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), "skipping unsyncable name: {e}");
                            return WalkState::Skip;
                        }
                    };
                    if rel.is_root() {
                        return WalkState::Continue;
                    }
                    if rel.depth() > MAX_DEPTH {
                        tracing::warn!(path = %rel, "skipping: deeper than {MAX_DEPTH} levels");
                        return WalkState::Skip;
                    }
                    match d.metadata() {
                        Ok(m) => {
                            if let Some(o) = Observed::from_metadata(&m) {
                                lock(&found).observed.insert(rel, o);
                            }
                        }
                        Err(e) => {
                            lock(&found).unreadable.insert(rel, e.to_string());
                        }
                    }
                    WalkState::Continue
                }
                Err(e) => {
                    match error_path(&e) {
                        Some(p) => match RelPath::from_fs(root, &p) {
                            Ok(rel) => {
                                lock(&found).unreadable.insert(rel, io_message(&e));
                            }
                            Err(_) => {
                                lock(&found)
                                    .unreadable
                                    .insert(RelPath::root(), io_message(&e));
                            }
                        },
                        None => {
                            *lock(&fatal) = Some(ScanError::Walk {
                                path: root.to_path_buf(),
                                message: e.to_string(),
                            });
                            return WalkState::Quit;
                        }
                    }
                    WalkState::Continue
                }
            }
        })
    });
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut w = found.into_inner().unwrap_or_else(|p| p.into_inner());
    w.temps = std::mem::take(&mut *lock(&temps));
    if !scope.is_root() {
        w.observed.retain(|p, _| p.starts_with(scope));
    }
    Ok(w)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error_path(e: &ignore::Error) -> Option<PathBuf> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

fn io_message(e: &ignore::Error) -> String {
    match e.io_error() {
        Some(io) => io.to_string(),
        None => e.to_string(),
    }
}

/// BLAKE3 of a file's content, streamed.
pub fn hash_file(path: &Path) -> io::Result<(ContentHash, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let n = io::copy(&mut f, &mut h)?;
    Ok((ContentHash(*h.finalize().as_bytes()), n))
}

/// Rescans `scope` of the folder at `root` into `index`: the one entry point for a full scan.
pub fn scan(root: &Path, index: &mut Index, scope: &RelPath) -> Result<ScanStats, ScanError> {
    let w = walk(root, scope)?;
    scan_walked(root, index, scope, w)
}

/// The rest of `scan` after its walk: hash what changed and fold it into `index`.
pub fn scan_walked(
    root: &Path,
    index: &mut Index,
    scope: &RelPath,
    w: Walk,
) -> Result<ScanStats, ScanError> {
    let todo = needs_hash(index, &w.observed);
    type Hashed = Result<(ContentHash, u64), String>;
    let results: Vec<(RelPath, Hashed)> = todo
        .par_iter()
        .map(|p| {
            let full = p.to_path(root);
            let r = hash_file(&full)
                .map_err(|e| e.to_string())
                .and_then(|(h, n)| {
                    // A file still being written: judge it on a later scan, not half-way.
                    match std::fs::symlink_metadata(&full) {
                        Ok(m) if Observed::from_metadata(&m) == w.observed.get(p).copied() => {
                            Ok((h, n))
                        }
                        Ok(_) => {
                            Err("changed while being read; will be picked up next scan".into())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                });
            (p.clone(), r)
        })
        .collect();
    let mut hashes = HashMap::with_capacity(results.len());
    let mut unreadable: Vec<(RelPath, String)> = w
        .unreadable
        .iter()
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    let mut hashed_bytes = 0;
    for (p, r) in results {
        match r {
            Ok((h, n)) => {
                hashed_bytes += n;
                hashes.insert(p, h);
            }
            Err(m) => unreadable.push((p, m)),
        }
    }
    for (p, m) in &unreadable {
        tracing::warn!(path = %p, "cannot read, left as it was: {m}");
    }
    let bad: Vec<RelPath> = w.unreadable.keys().cloned().collect();
    let matcher = IgnoreRules::from_walk(root, scope, &w);
    let mut st = reconcile(
        index,
        scope,
        &w.observed,
        &hashes,
        |p| !bad.iter().any(|b| p.starts_with(b)) && !matcher.is_ignored(root, p),
        MTime::from_system(std::time::SystemTime::now()),
    );
    st.hashed = hashes.len() as u64;
    st.hashed_bytes = hashed_bytes;
    st.unreadable = unreadable;
    st.temps = w.temps;
    Ok(st)
}

/// The `.syncignore` rules of a folder, asked about paths the walk did not visit.
pub struct IgnoreRules {
    // One matcher per folder that has an ignore file, keyed by that folder.
    by_dir: Vec<(RelPath, ignore::gitignore::Gitignore)>,
}

impl IgnoreRules {
    /// The rules from the ignore files a walk met, plus those above its scope.
    pub fn from_walk(root: &Path, scope: &RelPath, w: &Walk) -> Self {
        let mut by_dir = Vec::new();
        let above = scope.ancestors().chain(std::iter::once(RelPath::root()));
        let dirs = w
            .observed
            .keys()
            .filter(|p| p.name() == IGNORE_FILE)
            .filter_map(|p| p.parent())
            .chain(
                if scope.is_root() { None } else { Some(above) }
                    .into_iter()
                    .flatten(),
            );
        for dir in dirs {
            let f = dir.to_path(root).join(IGNORE_FILE);
            if f.is_file() {
                let (gi, _) = ignore::gitignore::Gitignore::new(&f);
                by_dir.push((dir, gi));
            }
        }
        IgnoreRules { by_dir }
    }

    /// True when a `.syncignore` excludes `p` (or one of its parents).
    pub fn is_ignored(&self, root: &Path, p: &RelPath) -> bool {
        if is_internal(p) {
            return true;
        }
        let full = p.to_path(root);
        self.by_dir.iter().any(|(dir, gi)| {
            p.starts_with(dir)
                && p != dir
                && gi
                    .matched_path_or_any_parents(&full, full.is_dir())
                    .is_ignore()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ReplicaId;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn obs(kind: Kind, size: u64, t: i64) -> Observed {
        Observed {
            kind,
            size,
            mtime: MTime::new(t, 0),
        }
    }

    #[test]
    fn reconcile_rules() {
        let me = ReplicaId(1);
        let mut idx = Index::new(me);
        let mut o = BTreeMap::new();
        o.insert(p("a"), obs(Kind::File, 1, 10));
        o.insert(p("d"), obs(Kind::Dir, 0, 10));
        let mut h = HashMap::new();
        h.insert(p("a"), ContentHash::of(b"1"));
        let st = reconcile(
            &mut idx,
            &RelPath::root(),
            &o,
            &h,
            |_| true,
            MTime::new(99, 0),
        );
        assert_eq!(st.added, 2);
        assert_eq!(idx.entries[&p("a")].vv.get(me), 1);

        // Unchanged stat: nothing to hash, nothing bumped.
        assert!(needs_hash(&idx, &o).is_empty());
        let st = reconcile(
            &mut idx,
            &RelPath::root(),
            &o,
            &HashMap::new(),
            |_| true,
            MTime::new(99, 0),
        );
        assert_eq!(st.changes(), 0);

        // Touched (mtime moved, same content): no bump. Clock running backwards still counts.
        o.insert(p("a"), obs(Kind::File, 1, 5));
        assert_eq!(needs_hash(&idx, &o), vec![p("a")]);
        reconcile(
            &mut idx,
            &RelPath::root(),
            &o,
            &h,
            |_| true,
            MTime::new(99, 0),
        );
        assert_eq!(idx.entries[&p("a")].vv.get(me), 1);
        h.insert(p("a"), ContentHash::of(b"2"));
        o.insert(p("a"), obs(Kind::File, 1, 4));
        let st = reconcile(
            &mut idx,
            &RelPath::root(),
            &o,
            &h,
            |_| true,
            MTime::new(99, 0),
        );
        assert_eq!(st.modified, 1);
        assert_eq!(idx.entries[&p("a")].vv.get(me), 2);

        // Unreadable: left alone. Vanished: tombstone with a bump.
        o.remove(&p("a"));
        o.remove(&p("d"));
        let st = reconcile(
            &mut idx,
            &RelPath::root(),
            &o,
            &HashMap::new(),
            |q| q != &p("d"),
            MTime::new(99, 0),
        );
        assert_eq!(st.deleted, 1);
        assert_eq!(idx.entries[&p("a")].kind, Kind::Deleted);
        assert_eq!(idx.entries[&p("a")].vv.get(me), 3);
        assert_eq!(idx.entries[&p("d")].kind, Kind::Dir);
    }
}
