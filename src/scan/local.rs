//! The local lister: folders read through descriptors below the replica's `Root` (getdents,
//! `fstatat` by name, never a full path), sibling folders in parallel on rayon's pool (no
//! threads started per walk, which matters for the watcher's many small ones); files hashed
//! through the root as well, and looked at again after reading so a file being written is
//! left for the next scan.

use super::rules::{IgnoreFile, Rules};
use super::walk::{Found, Listed, Skip, Skipped, Stat, What, judge, rules_for};
use super::{Busy, Hashed, Observed, ScanError, ScanStats, Walked, settle};
use crate::index::Index;
use crate::relpath::RelPath;
use crate::replica::Root;
use crate::replica::layout::IGNORE_FILE;
use crate::replica::root::{self, FileKind, Folder};
use rayon::prelude::*;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Everything under `scope` of the replica, minus what is ignored or ours.
pub fn walk(root: &Root, scope: &RelPath) -> Result<Walked, ScanError> {
    walk_within(root, scope, &Budget::unlimited())
}

/// How many paths one walk may gather before it leaves the folders it has not yet entered
/// to walks of their own (`Found::deferred`); shared by the walk's threads.
pub(super) struct Budget(AtomicUsize);

impl Budget {
    pub(super) fn new(paths: usize) -> Self {
        Budget(AtomicUsize::new(paths))
    }

    fn unlimited() -> Self {
        Budget::new(usize::MAX)
    }

    fn spend(&self, n: usize) {
        // Saturating: `fetch_update` only fails when the closure returns `None`, and it never does.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(n))
            });
    }

    fn spent(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// `walk`, entering folders only while `budget` lasts.
pub(super) fn walk_within(
    root: &Root,
    scope: &RelPath,
    budget: &Budget,
) -> Result<Walked, ScanError> {
    let rules = rules_above(root, scope);
    let found = if scope.is_root() {
        let fd = root.open_folder(scope).map_err(|e| ScanError::Root {
            path: root.path().to_path_buf(),
            source: e.into_io(),
        })?;
        visit(fd, scope, &rules, budget)
    } else {
        walk_scope(root, scope, &rules, budget)
    };
    Ok(Walked::new(found, rules))
}

/// A folder below the root, or a single file: its ancestors' ignore files still apply.
fn walk_scope(root: &Root, scope: &RelPath, rules: &Rules, budget: &Budget) -> Found {
    let o = match root.lstat(scope) {
        Ok(st) => Observed::from_meta(&st),
        Err(e) => return Found::failed(scope, e.into_io()),
    };
    let Some(o) = o else {
        return Found::default();
    };
    let mut found = Found::default();
    found.observed.push((scope.clone(), o));
    if o.kind == crate::index::Kind::Dir {
        match root.open_folder(scope) {
            Ok(fd) => found.append(visit(fd, scope, rules, budget)),
            Err(e) => found.append(Found::failed(scope, e.into_io())),
        }
    }
    found
}

/// The rules in force at `scope`: the built-in ones and every `.syncignore` from the root down
/// to `scope`'s folder (not `scope`'s own).
pub fn rules_above(root: &Root, scope: &RelPath) -> Rules {
    if scope.is_root() {
        return Rules::built_in();
    }
    let mut dirs: Vec<RelPath> = scope.ancestors().collect();
    dirs.push(RelPath::root());
    let files = dirs.into_iter().rev().filter_map(|d| ignore_file(root, &d));
    Rules::built_in().with_files(files)
}

/// The `.syncignore` of folder `dir`, if it has one that is a regular file.
pub fn ignore_file(root: &Root, dir: &RelPath) -> Option<IgnoreFile> {
    let mut bytes = Vec::new();
    let mut f = root.open_regular(&dir.join_unchecked(IGNORE_FILE)).ok()?;
    f.read_to_end(&mut bytes).ok()?;
    Some(IgnoreFile::parse(dir, &bytes))
}

/// Reads the folder `dir` (open as `fd`) and everything below it that `budget` allows; the
/// subfolders it does not enter are `deferred`.
fn visit(fd: Folder, dir: &RelPath, above: &Rules, budget: &Budget) -> Found {
    let mut found = Found::default();
    let (listing, dfd) = match list(fd, dir, &mut found) {
        Some(l) => l,
        None => return found,
    };
    // A folder's own ignore file governs its entries, so it is read before they are judged.
    let rules = rules_for(dir, &listing, above, &mut found, || {
        read_at(&dfd, IGNORE_FILE)
    });
    let mut stat = |name: &str| stat_at(&dfd, name);
    budget.spend(listing.len());
    let subdirs = judge(dir, listing, &rules, &mut found, &mut stat);
    let below: Vec<Found> = subdirs
        .par_iter()
        .map(|sub| {
            if budget.spent() {
                return Found {
                    deferred: vec![sub.clone()],
                    ..Found::default()
                };
            }
            match root::open_folder_at(&dfd, sub.name()) {
                Ok(fd) => visit(fd, sub, &rules, budget),
                Err(e) => Found::failed(sub, e.into_io()),
            }
        })
        .collect();
    for b in below {
        found.append(b);
    }
    found
}

/// A folder's entries as the OS lists them, and the folder to look them up by name.
/// What was listed before a failure is still judged; the folder's missing part is not. A
/// folder that can be listed but not entered (no `x`: names without attributes) is
/// unreadable as a whole, not a folder of unreadable entries.
fn list(fd: Folder, dir: &RelPath, found: &mut Found) -> Option<(Vec<Listed>, Folder)> {
    let (entries, failed) = match root::read_dir(&fd) {
        Ok(r) => r,
        Err(e) => {
            found.append(Found::failed(dir, e.into_io()));
            return None;
        }
    };
    if let Some(e) = failed {
        found
            .unreadable
            .push((dir.clone(), e.into_io().to_string()));
    }
    let mut listing = Vec::new();
    for ent in entries {
        let name = match String::from_utf8(ent.name) {
            Ok(name) => name,
            Err(e) => {
                let bytes = e.into_bytes();
                found.skipped.push(Skipped::new(dir, &bytes, Skip::NotUtf8));
                continue;
            }
        };
        listing.push(Listed {
            name,
            what: what_of(ent.kind),
            seen: None,
            mtime: None,
        });
    }
    Some((listing, fd))
}

fn what_of(t: FileKind) -> What {
    match t {
        FileKind::File => What::File,
        FileKind::Dir => What::Dir,
        FileKind::Link => What::Link,
        FileKind::Unknown => What::Unknown,
        FileKind::Other => What::Other,
    }
}

fn stat_at(dir: &Folder, name: &str) -> Stat {
    match root::stat_at(dir, name) {
        Ok(st) => Observed::from_meta(&st).map_or(Stat::Gone, Stat::Seen),
        // Deleted since it was listed: it is simply not there.
        Err(e) if e.is_not_found() => Stat::Gone,
        Err(e) => Stat::Failed(e.into_io().to_string()),
    }
}

/// A regular file `name` of folder `dir`, whole; `None` when it is not one or cannot be read.
fn read_at(dir: &Folder, name: &str) -> Option<Vec<u8>> {
    let f = root::open_read_at(dir, name).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    (&f).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// BLAKE3 of the file at `p`, read through the root; `Moving` when it is gone or its size or
/// mtime is not what the walk saw once it has been read (it is being written).
pub fn hash(root: &Root, p: &RelPath, seen: Observed) -> Hashed {
    let f = match root.open_regular(p) {
        Ok(f) => f,
        // Gone, or held open by a program that lets no one read it (Windows): changing.
        Err(e) if e.is_not_found() || e.is_busy() => return Hashed::Moving,
        Err(e) => return Hashed::Failed(e.into_io().to_string()),
    };
    // The chunk list of a big file comes with its hash, from the same read.
    let mut h = crate::delta::Chunker::for_size(seen.size);
    if let Err(e) = io::copy(&mut &f, &mut h) {
        return Hashed::Failed(e.to_string());
    }
    let (hash, n, list) = h.finish();
    match f.metadata() {
        Ok(m) if Observed::from_metadata(&m) == Some(seen) => {
            if let Some(list) = list {
                crate::replica::chunks::keep(root, &hash, &list);
            }
            Hashed::Done(hash, n)
        }
        Ok(_) => Hashed::Moving,
        Err(e) => Hashed::Failed(e.to_string()),
    }
}

/// Paths one part of a scan gathers before the folders it has not entered are scanned as
/// parts of their own: a part's walk, digests and path copies cost a few hundred bytes a
/// path beside the index, so a big tree is taken a bounded part at a time.
const PART_PATHS: usize = if cfg!(test) { 8 } else { 32 * 1024 };

/// Rescans `scope` of the replica into `index`: the one entry point for a local scan. Paths
/// `busy` names (open for writing by one of our own SFTP clients) keep their old entries.
///
/// A big tree is scanned in parts, each a folder with what is below it up to `PART_PATHS`
/// paths, and the folders it did not enter left to parts of their own (in path order, depth
/// first); each part settles its own subtree only, so the whole is judged as one walk would.
pub fn scan(
    root: &Root,
    index: &mut Index,
    scope: &RelPath,
    busy: Busy,
) -> Result<ScanStats, ScanError> {
    let mut total = ScanStats::default();
    let mut parts = vec![scope.clone()];
    while let Some(part) = parts.pop() {
        let w = walk_within(root, &part, &Budget::new(PART_PATHS))?;
        let mut deferred = w.deferred.clone();
        deferred.sort();
        parts.extend(deferred.into_iter().rev());
        total.absorb(scan_walked(root, index, &part, w, busy));
    }
    Ok(total)
}

/// The rest of `scan` after its walk: hash what changed (in parallel) and fold it in.
pub fn scan_walked(
    root: &Root,
    index: &mut Index,
    scope: &RelPath,
    w: Walked,
    busy: Busy,
) -> ScanStats {
    let w = w.without(busy);
    let todo = w.needs_hash(index);
    let hashed: Vec<(RelPath, Hashed)> = todo
        .into_par_iter()
        .map(|(p, seen)| {
            let h = hash(root, &p, seen);
            (p, h)
        })
        .collect();
    let is_dir = |q: &RelPath| root.lstat(q).is_ok_and(|st| st.kind == FileKind::Dir);
    settle(index, scope, w, hashed, &is_dir)
}
