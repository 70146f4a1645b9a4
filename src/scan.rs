//! Change detection: walk a folder, compare with its index, hash only what changed.
//!
//! `reconcile` is the pure rule shared by the scanner, the watcher and the tests: kind, size and
//! mtime first, content hash only when those differ; a real change bumps this replica's counter.

use crate::index::{ContentHash, Entry, Index, Kind, MTime, VersionVector};
use crate::relpath::RelPath;
use crate::replica::layout::{IGNORE_FILE, is_internal, is_temp_name};
use ignore::gitignore::Gitignore;
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// The same from an `fstatat` (what the walk reads).
    #[allow(clippy::unnecessary_cast)] // `st_mtime` is narrower on 32-bit targets
    pub fn from_stat(st: &rustix::fs::Stat) -> Option<Observed> {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            _ => return None,
        };
        Some(Observed {
            kind,
            size: if kind == Kind::File {
                st.st_size as u64
            } else {
                0
            },
            mtime: MTime::new(st.st_mtime as i64, st.st_mtime_nsec as u32),
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
    /// Files that were being written as the scan read them (their size or mtime moved):
    /// left as they were in the index, for the next scan.
    pub moving: Vec<RelPath>,
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
}

/// Everything found under `scope` of the folder at `root`, minus ignored and internal paths.
pub struct Walk {
    pub observed: BTreeMap<RelPath, Observed>,
    /// Folders (or files) that could not be read: their subtrees are not judged.
    pub unreadable: BTreeMap<RelPath, String>,
    /// Our temp files met on the walk.
    pub temps: Vec<PathBuf>,
    /// Folders whose `.syncignore` the walk applied (even one that ignores itself).
    pub ignore_dirs: Vec<RelPath>,
}

/// Walks `root/scope` without following symlinks, honouring `.syncignore` files.
///
/// Folders are read through descriptors (`openat`, `getdents`, `fstatat` by name), so no
/// entry costs a lookup of its full path; sibling folders are walked in parallel on rayon's
/// pool (no threads are started per walk, which matters for the watcher's many small ones).
pub fn walk(root: &Path, scope: &RelPath) -> Result<Walk, ScanError> {
    let root_err = |e: rustix::io::Errno| ScanError::Root {
        path: root.to_path_buf(),
        source: e.into(),
    };
    // The root itself may be a symlink the user chose; nothing below it is followed.
    let root_flags = dir_flags() - OFlags::NOFOLLOW;
    let root_fd = rustix::fs::open(root, root_flags, Mode::empty()).map_err(root_err)?;
    let found = if scope.is_root() {
        visit(root, root_fd, scope, &Rules::default())
    } else {
        walk_scope(root, root_fd, scope)
    };
    let mut unreadable = BTreeMap::new();
    for (p, m) in found.unreadable {
        unreadable.entry(p).or_insert(m);
    }
    Ok(Walk {
        observed: found.observed.into_iter().collect(),
        unreadable,
        temps: found.temps,
        ignore_dirs: found.ignore_dirs,
    })
}

/// A folder below the root, or a single file: its ancestors' ignore files still apply.
fn walk_scope(root: &Path, root_fd: OwnedFd, scope: &RelPath) -> Found {
    let unreadable = |e: rustix::io::Errno| Found {
        unreadable: vec![(scope.clone(), io::Error::from(e).to_string())],
        ..Found::default()
    };
    let rules: Rules = rules_above(root, scope)
        .into_iter()
        .map(|(_, gi)| gi)
        .collect();
    let mut parent = root_fd;
    for c in scope.components().take(scope.depth() - 1) {
        parent = match rustix::fs::openat(&parent, c, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => return unreadable(e),
        };
    }
    let st = match rustix::fs::statat(&parent, scope.name(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(e) => return unreadable(e),
    };
    let Some(o) = Observed::from_stat(&st) else {
        return Found::default();
    };
    let mut found = Found::default();
    found.observed.push((scope.clone(), o));
    if o.kind == Kind::Dir {
        match rustix::fs::openat(&parent, scope.name(), dir_flags(), Mode::empty()) {
            Ok(fd) => found.append(visit(root, fd, scope, &rules)),
            Err(e) => found.append(unreadable(e)),
        }
    }
    found
}

/// What part of a walk found; the parts of a walk are gathered, then sorted once.
#[derive(Default)]
struct Found {
    observed: Vec<(RelPath, Observed)>,
    unreadable: Vec<(RelPath, String)>,
    temps: Vec<PathBuf>,
    ignore_dirs: Vec<RelPath>,
}

impl Found {
    fn append(&mut self, mut other: Found) {
        self.observed.append(&mut other.observed);
        self.unreadable.append(&mut other.unreadable);
        self.temps.append(&mut other.temps);
        self.ignore_dirs.append(&mut other.ignore_dirs);
    }
}

/// The ignore files in force in a folder, outermost first.
type Rules = Vec<Arc<Gitignore>>;

/// Gitignore precedence: of the ignore files in force (outermost first), the deepest that
/// says anything about a path decides. The local walk and the remote (SFTP) walk both judge
/// by this.
pub(crate) fn ignored<'a>(
    rules: impl DoubleEndedIterator<Item = &'a Gitignore>,
    full: &Path,
    is_dir: bool,
) -> bool {
    for gi in rules.rev() {
        match gi.matched(full, is_dir) {
            ignore::Match::Ignore(_) => return true,
            ignore::Match::Whitelist(_) => return false,
            ignore::Match::None => {}
        }
    }
    false
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Reads the folder `dir` (open as `fd`) and everything below it.
fn visit(root: &Path, fd: OwnedFd, dir: &RelPath, rules: &Rules) -> Found {
    let mut found = Found::default();
    let failed = |found: &mut Found, e: rustix::io::Errno| {
        found
            .unreadable
            .push((dir.clone(), io::Error::from(e).to_string()));
    };
    let mut listing = match rustix::fs::Dir::new(fd) {
        Ok(d) => d,
        Err(e) => {
            failed(&mut found, e);
            return found;
        }
    };
    let mut names: Vec<(String, FileType)> = Vec::new();
    while let Some(ent) = listing.read() {
        match ent {
            Ok(ent) => {
                let bytes = ent.file_name().to_bytes();
                if bytes == b"." || bytes == b".." {
                    continue;
                }
                match std::str::from_utf8(bytes) {
                    Ok(name) => names.push((name.to_owned(), ent.file_type())),
                    Err(_) => tracing::warn!(
                        path = %dir.to_path(root).join(std::ffi::OsStr::from_bytes(bytes)).display(),
                        "skipping unsyncable name: not UTF-8"
                    ),
                }
            }
            Err(e) => {
                // What was listed is still judged; the folder's missing part is not.
                failed(&mut found, e);
                break;
            }
        }
    }
    let dfd = match listing.fd() {
        Ok(fd) => fd,
        Err(e) => {
            failed(&mut found, e);
            return found;
        }
    };
    // A folder's own ignore file governs its entries, so it is read before they are judged.
    let mut here = rules.clone();
    if names.iter().any(|(n, _)| n == IGNORE_FILE) {
        let f = dir.to_path(root).join(IGNORE_FILE);
        here.push(Arc::new(Gitignore::new(&f).0));
        found.ignore_dirs.push(dir.clone());
    }
    let mut subdirs = Vec::new();
    for (name, ft) in names {
        if is_temp_name(&name) {
            found.temps.push(dir.to_path(root).join(&name));
            continue;
        }
        let rel = match dir.join(&name) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %dir.to_path(root).join(&name).display(), "skipping unsyncable name: {e}");
                continue;
            }
        };
        if is_internal(&rel) {
            continue;
        }
        // Symlinks, sockets, devices: never synced, never followed, not even looked at.
        if !matches!(
            ft,
            FileType::RegularFile | FileType::Directory | FileType::Unknown
        ) {
            continue;
        }
        if rel.depth() > MAX_DEPTH {
            tracing::warn!(path = %rel, "skipping: deeper than {MAX_DEPTH} levels");
            continue;
        }
        let o = match rustix::fs::statat(dfd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match Observed::from_stat(&st) {
                Some(o) => o,
                None => continue,
            },
            // Deleted since it was listed: it is simply not there.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                found.unreadable.push((rel, io::Error::from(e).to_string()));
                continue;
            }
        };
        let is_dir = o.kind == Kind::Dir;
        if !here.is_empty() && ignored(here.iter().map(|g| &**g), &rel.to_path(root), is_dir) {
            continue;
        }
        if o.kind == Kind::Dir {
            subdirs.push(rel.clone());
        }
        found.observed.push((rel, o));
    }
    let below: Vec<Found> = subdirs
        .par_iter()
        .map(
            |sub| match rustix::fs::openat(dfd, sub.name(), dir_flags(), Mode::empty()) {
                Ok(fd) => visit(root, fd, sub, &here),
                Err(e) => Found {
                    unreadable: vec![(sub.clone(), io::Error::from(e).to_string())],
                    ..Found::default()
                },
            },
        )
        .collect();
    for b in below {
        found.append(b);
    }
    found
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
        // The caller reports these (`index`, a sync's errors, the watcher's log).
        tracing::debug!(path = %p, "cannot read, left as it was: {m}");
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
    // One matcher per folder that has an ignore file, keyed by that folder, outermost first.
    by_dir: Vec<(RelPath, Arc<Gitignore>)>,
}

impl IgnoreRules {
    /// The rules of these ignore files, keyed by the folder holding each (any order).
    pub fn new(mut by_dir: Vec<(RelPath, Arc<Gitignore>)>) -> Self {
        by_dir.sort_by_key(|(dir, _)| dir.depth());
        IgnoreRules { by_dir }
    }

    /// The rules from the ignore files above `scope` (what governs `scope` itself).
    pub fn above(root: &Path, scope: &RelPath) -> Self {
        IgnoreRules::new(rules_above(root, scope))
    }

    /// The rules from the ignore files a walk met, plus those above its scope.
    pub fn from_walk(root: &Path, scope: &RelPath, w: &Walk) -> Self {
        let mut by_dir = rules_above(root, scope);
        let met = w.ignore_dirs.iter().cloned();
        by_dir.extend(met.filter_map(|dir| load_rules(root, dir)));
        IgnoreRules::new(by_dir)
    }

    /// True when the walk would leave `p` out (see `leaves_out`), judged by the disk under
    /// `root`.
    pub fn is_ignored(&self, root: &Path, p: &RelPath) -> bool {
        let is_dir =
            |q: &RelPath| std::fs::symlink_metadata(q.to_path(root)).is_ok_and(|m| m.is_dir());
        self.leaves_out(root, p, &is_dir)
    }

    /// True when a walk would leave `p` out: a `.syncignore` excludes it or one of its
    /// folders, judged as the walk judges (each folder on the way down by the rules above it,
    /// the deepest file that says anything deciding; an excluded folder hides all below it).
    /// The matchers were built for ignore files under `base`. `is_dir` tells whether a path is
    /// a folder now: asked of `p` (`build/` matches folders only) and of the folders on the way
    /// down. A folder that is gone hides nothing: what was below it is gone with it, even where
    /// an ignore file that went with it had re-included it (asked only when rules exist).
    pub fn leaves_out(&self, base: &Path, p: &RelPath, is_dir: &dyn Fn(&RelPath) -> bool) -> bool {
        if is_internal(p) {
            return true;
        }
        if self.by_dir.is_empty() {
            return false;
        }
        let judged = |q: &RelPath, q_is_dir: bool| {
            let in_force = self
                .by_dir
                .iter()
                .filter(|(dir, _)| q.starts_with(dir) && q != dir)
                .map(|(_, gi)| &**gi);
            ignored(in_force, &q.to_path(base), q_is_dir)
        };
        let mut way: Vec<RelPath> = p.ancestors().collect();
        way.reverse();
        for q in &way {
            if judged(q, true) {
                return true;
            }
            if !is_dir(q) {
                return false;
            }
        }
        judged(p, is_dir(p))
    }
}

/// The ignore file of the folder `dir`, if it has one.
fn load_rules(root: &Path, dir: RelPath) -> Option<(RelPath, Arc<Gitignore>)> {
    let f = dir.to_path(root).join(IGNORE_FILE);
    f.is_file().then(|| (dir, Arc::new(Gitignore::new(&f).0)))
}

/// The ignore files from the root down to `scope`'s folder (not `scope`'s own), outermost first.
fn rules_above(root: &Path, scope: &RelPath) -> Vec<(RelPath, Arc<Gitignore>)> {
    if scope.is_root() {
        return Vec::new();
    }
    let mut dirs: Vec<RelPath> = scope.ancestors().collect();
    dirs.push(RelPath::root());
    dirs.reverse();
    dirs.into_iter()
        .filter_map(|d| load_rules(root, d))
        .collect()
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

    /// The walk as the `ignore` crate's walker sees it (what `walk` used before): the oracle.
    fn oracle(root: &Path) -> (Vec<(RelPath, Observed)>, Vec<PathBuf>) {
        let temps = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, t) = (root.to_path_buf(), temps.clone());
        let mut b = ignore::WalkBuilder::new(root);
        b.standard_filters(false)
            .follow_links(false)
            .add_custom_ignore_filename(IGNORE_FILE)
            .filter_entry(move |d| {
                if d.file_name().to_str().is_some_and(is_temp_name) {
                    t.lock().unwrap().push(d.path().to_path_buf());
                    return false;
                }
                !is_internal(&RelPath::from_fs(&r, d.path()).unwrap())
            });
        let mut seen = Vec::new();
        for d in b.build() {
            let d = d.unwrap();
            let rel = RelPath::from_fs(root, d.path()).unwrap();
            if let Some(o) = Observed::from_metadata(&d.metadata().unwrap())
                && !rel.is_root()
            {
                seen.push((rel, o));
            }
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut temps = std::mem::take(&mut *temps.lock().unwrap());
        temps.sort();
        (seen, temps)
    }

    fn walked(root: &Path, scope: &RelPath) -> (Vec<(RelPath, Observed)>, Vec<PathBuf>) {
        let w = walk(root, scope).unwrap();
        assert!(w.unreadable.is_empty(), "{:?}", w.unreadable);
        let mut temps = w.temps;
        temps.sort();
        (w.observed.into_iter().collect(), temps)
    }

    #[test]
    fn walk_agrees_with_the_ignore_crate() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let files = [
            "a/b/c.txt",
            "a/b/keep.log",
            "a/x.log",
            "a/deep/er/file",
            "build/out.bin",
            "src/build/kept",
            "src/main.rs",
            "notes/.hidden",
            "notes/ünïcode name",
            "top.log",
            "d/.f.sync-tmp.1234",
            "x/y/z/.syncignore",
            "x/y/z/w.tmp",
            "x/y/z/v.txt",
        ];
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f.as_bytes()).unwrap();
        }
        std::fs::create_dir_all(root.join("empty/dir")).unwrap();
        std::fs::write(root.join(".syncignore"), "*.log\n/build/\n").unwrap();
        std::fs::write(root.join("a/b/.syncignore"), "!keep.log\n").unwrap();
        std::fs::write(root.join("x/y/z/w.tmp"), b"w").unwrap();
        std::fs::write(root.join("x/.syncignore"), "*.tmp\nz/v.txt\n").unwrap();
        std::os::unix::fs::symlink("a", root.join("link-to-dir")).unwrap();
        std::os::unix::fs::symlink("top.log", root.join("a/link-to-file")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("a/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Ours, at the root: never walked.
        std::fs::create_dir_all(root.join(".sync-trash/a")).unwrap();
        std::fs::write(root.join(".sync-trash/a/old"), b"1").unwrap();
        std::fs::write(root.join(".sync"), b"{}").unwrap();

        let (seen, temps) = walked(&root, &RelPath::root());
        assert_eq!((seen.clone(), temps), oracle(&root));
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        for present in ["a/b/keep.log", "src/build/kept", "x/y/z/v.txt", "empty/dir"] {
            assert!(names.contains(&present), "{present} missing from {names:?}");
        }
        for absent in [
            "a/x.log",
            "build",
            "x/y/z/w.tmp",
            "link-to-dir",
            "a/fifo",
            ".sync",
        ] {
            assert!(!names.contains(&absent), "{absent} walked: {names:?}");
        }

        // A walk below the root keeps the rules above it, and sees only its own subtree.
        for scope in ["a", "a/b", "x/y", "src/main.rs"] {
            let scope = RelPath::parse(scope).unwrap();
            let (part, _) = walked(&root, &scope);
            let whole: Vec<_> = seen
                .iter()
                .filter(|(p, _)| p.starts_with(&scope))
                .cloned()
                .collect();
            assert_eq!(part, whole, "scope {scope}");
        }
        // What the walk left out is what the rules say is ignored (asked of paths it did not
        // visit: vanished entries, the watcher's rescans), and nothing else.
        let rules = IgnoreRules::from_walk(
            &root,
            &RelPath::root(),
            &walk(&root, &RelPath::root()).unwrap(),
        );
        for f in files.iter().copied().chain(["build", "a/b", "x/y/z"]) {
            let q = RelPath::parse(f).unwrap();
            assert_eq!(
                rules.is_ignored(&root, &q),
                !names.contains(&f),
                "{f}: rules and walk disagree"
            );
        }

        // A root reached through a symlink is walked like the folder itself.
        let link = dir.path().with_extension("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let through: Vec<_> = walk(&link, &RelPath::root())
            .unwrap()
            .observed
            .into_iter()
            .collect();
        std::fs::remove_file(&link).unwrap();
        assert_eq!(through, seen);

        // A scope that is gone is reported, not walked.
        let w = walk(&root, &RelPath::parse("no/such").unwrap()).unwrap();
        assert!(w.observed.is_empty());
        assert!(
            w.unreadable
                .contains_key(&RelPath::parse("no/such").unwrap())
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Random trees and ignore files (negations, anchors, folder patterns): same as the oracle.
        #[test]
        fn walk_agrees_with_the_ignore_crate_on_random_trees(
            files in proptest::collection::vec("[abc]{1,2}(/[abc.]{1,2}){0,3}", 1..24),
            rules in proptest::collection::vec(
                (0usize..3, proptest::collection::vec("!?/?[abc*]{1,2}/?", 1..4)),
                0..4,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let root = std::fs::canonicalize(dir.path()).unwrap();
            for f in &files {
                let p = root.join(f);
                // A name used both as a file and as a folder: first one wins.
                if std::fs::create_dir_all(p.parent().unwrap()).is_ok() && !p.exists() {
                    let _ = std::fs::write(&p, f.as_bytes());
                }
            }
            let dirs = ["", "a", "a/b"];
            for (d, lines) in &rules {
                let d = root.join(dirs[*d]);
                if std::fs::create_dir_all(&d).is_ok() {
                    std::fs::write(d.join(IGNORE_FILE), lines.join("\n")).unwrap();
                }
            }
            proptest::prop_assert_eq!(walked(&root, &RelPath::root()), oracle(&root));
            // The rules say "ignored" of exactly what the walk left out.
            let w = walk(&root, &RelPath::root()).unwrap();
            let rules = IgnoreRules::from_walk(&root, &RelPath::root(), &w);
            for f in &files {
                // Names like `.` or `..` made no file of their own.
                let Ok(q) = RelPath::parse(f) else { continue };
                for q in q.ancestors().chain([q.clone()]) {
                    if q.to_path(&root).exists() {
                        proptest::prop_assert_eq!(
                            rules.is_ignored(&root, &q),
                            !w.observed.contains_key(&q),
                            "{}", q
                        );
                    }
                }
            }
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
