//! The remote lister: a remote folder listed over SFTP (directory listings carry the
//! attributes, several folders listed at once), judged by the one walker (`scan::walk`) under
//! the one rule stack, and only changed files downloaded to hash them. What comes of it is
//! settled by `scan::settle`, as a local scan's is.

use super::{Sftp, SftpError, StoreError, is_status, observed_of, xfer};
use crate::index::{Index, Kind, MTime};
use crate::relpath::RelPath;
use crate::replica::layout::IGNORE_FILE;
use crate::replica::protocol::is_leftover_temp;
use crate::scan::walk::{Found, Listed, Skip, Skipped, Stat, What, judge, rules_for};
use crate::scan::{Hashed, Observed, Rules, ScanStats, Walked, settle};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use russh_sftp::protocol::{File, StatusCode};
use std::collections::{HashMap, HashSet};

/// Folders listed at once, and files hashed at once.
const LIST_DEPTH: usize = 64;
const HASH_DEPTH: usize = 8;

/// Lists a whole remote folder.
pub(super) async fn list(s: &Sftp, path: &str) -> Result<Vec<File>, SftpError> {
    let raw = s.raw();
    let h = raw.opendir(path).await?.handle;
    let mut out = Vec::new();
    let res = loop {
        match raw.readdir(h.as_str()).await {
            Ok(n) => out.extend(n.files),
            Err(e) if is_status(&e, StatusCode::Eof) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let _ = raw.close(h).await;
    res.map(|_| out)
}

/// A READDIR entry as the walker takes it: the listing carries its attributes.
fn listed(f: File) -> Listed {
    let t = f.attrs.file_type();
    let what = if t.is_symlink() {
        What::Link
    } else if t.is_file() {
        What::File
    } else if t.is_dir() {
        What::Dir
    } else {
        What::Other
    };
    Listed {
        seen: observed_of(&f.attrs),
        mtime: f.attrs.mtime.map(|t| MTime::new(i64::from(t), 0)),
        name: f.filename,
        what,
    }
}

/// Lists the folder `dir` and judges it: what it holds, and the folders to list next.
async fn visit(s: &Sftp, dir: RelPath, above: Rules) -> (Found, Vec<(RelPath, Rules)>) {
    let path = s.path(&dir);
    let files = match list(s, &path).await {
        Ok(files) => files,
        Err(e) => {
            let e = super::to_io(e);
            if dir.is_root() {
                tracing::warn!("cannot list {}:{path}: {e}", s.host);
            }
            return (
                Found::failed(&dir, format!("cannot list {}:{path}: {e}", s.host)),
                Vec::new(),
            );
        }
    };
    if let Err(why) = enterable(s, &path, &files).await {
        return (Found::failed(&dir, why), Vec::new());
    }
    let mut found = Found::default();
    let files = without_mangled(s, &dir, &path, files, &mut found).await;
    let listing: Vec<Listed> = files.into_iter().map(listed).collect();
    let ignore = if listing
        .iter()
        .any(|e| e.name == IGNORE_FILE && e.what == What::File)
    {
        let at = format!("{path}/{IGNORE_FILE}");
        s.read_all(&at).await.unwrap_or_else(|e| {
            tracing::warn!("cannot read {at}: {e}");
            None
        })
    } else {
        None
    };
    let rules = rules_for(&dir, &listing, &above, &mut found, || ignore);
    // Every entry came with its attributes: nothing to ask the server about.
    let mut no_stat = |_: &str| Stat::Gone;
    let subdirs = judge(&dir, listing, &rules, &mut found, &mut no_stat);
    let next = subdirs.into_iter().map(|d| (d, rules.clone())).collect();
    (found, next)
}

/// Whether the folder at `path` can be entered. A server lists a folder without `x` as its
/// names only, and OpenSSH's (and ours) drop every name whose attributes cannot be read:
/// the listing comes back empty, which must not read as "everything here was deleted". A
/// listing with `.` proves it can (its attributes were read through the folder); without
/// one, asking for a name in it tells: found or not found, it could be looked for (`path/.`
/// would not do: some servers resolve it without entering the folder).
async fn enterable(s: &Sftp, path: &str, files: &[File]) -> Result<(), String> {
    if files.iter().any(|f| f.filename == ".") {
        return Ok(());
    }
    match s.raw().lstat(format!("{path}/{ENTER_PROBE}")).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
        Err(e) => Err(format!("cannot enter it: {}", super::to_io(e))),
    }
}

/// The name looked up in a folder to learn whether it can be entered (whether it is there
/// does not matter).
const ENTER_PROBE: &str = ".sync.enter-probe";

/// The listing without the names the SFTP library could not decode as UTF-8 (it puts U+FFFD
/// in their place, and a mangled name must never be synced): each is counted as skipped. A
/// name that really holds U+FFFD is told apart by asking for it.
async fn without_mangled(
    s: &Sftp,
    dir: &RelPath,
    path: &str,
    files: Vec<File>,
    found: &mut Found,
) -> Vec<File> {
    let mut kept = Vec::with_capacity(files.len());
    for f in files {
        if f.filename.contains(char::REPLACEMENT_CHARACTER)
            && s.lstat(&format!("{path}/{}", f.filename))
                .await
                .ok()
                .flatten()
                .is_none()
        {
            found
                .skipped
                .push(Skipped::new(dir, f.filename.as_bytes(), Skip::NotUtf8));
            continue;
        }
        kept.push(f);
    }
    kept
}

/// Lists the whole remote folder, many folders at once.
pub(crate) async fn walk(s: &Sftp) -> Walked {
    let mut found = Found::default();
    let mut pending = FuturesUnordered::new();
    let mut queue: Vec<(RelPath, Rules)> = vec![(RelPath::root(), Rules::built_in())];
    loop {
        while pending.len() < LIST_DEPTH
            && let Some((dir, rules)) = queue.pop()
        {
            pending.push(visit(s, dir, rules));
        }
        let Some((part, next)) = pending.next().await else {
            break;
        };
        found.append(part);
        queue.extend(next);
    }
    Walked::new(found, Rules::built_in())
}

/// BLAKE3 of a remote file; `Moving` when it is gone, or not what the walk saw once read.
async fn hash(s: &Sftp, p: &RelPath, seen: Observed) -> Result<Hashed, StoreError> {
    let path = s.path(p);
    let (h, n, list) = match xfer::hash_remote(s, &path, seen.size).await {
        Ok(r) => r,
        Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(Hashed::Moving),
        Err(e) => {
            let e = super::to_io(e);
            if e.kind() == std::io::ErrorKind::ConnectionAborted {
                return Err(StoreError::io(format!("scanning {}", s.host), e));
            }
            return Ok(Hashed::Failed(e.to_string()));
        }
    };
    // A file still being written: judged on a later scan, not half-way.
    let now = s.lstat(&path).await.ok().flatten();
    if n != seen.size || now.as_ref().and_then(observed_of) != Some(seen) {
        return Ok(Hashed::Moving);
    }
    // Kept beside the file, for whoever fetches or replaces it by delta.
    if let Some(list) = list
        && let Err(e) = s.keep_list(&h, &list).await
    {
        tracing::debug!("cannot keep the chunk list of {path}: {e}");
    }
    Ok(Hashed::Done(h, n))
}

/// Folds a walk of the remote folder into `index` (which may be new: a remote without
/// `.sync`), hashing what changed.
pub(crate) async fn refresh(
    s: &Sftp,
    index: &mut Index,
    w: Walked,
    locked: bool,
) -> Result<ScanStats, StoreError> {
    if w.unreadable.contains_key(&RelPath::root()) {
        return Err(StoreError::Unlistable {
            place: format!("{}:{}", s.host, s.root),
        });
    }
    let todo = w.needs_hash(index);
    let mut results = futures::stream::iter(todo.into_iter().map(|(p, seen)| async move {
        let r = hash(s, &p, seen).await;
        (p, r)
    }))
    .buffer_unordered(HASH_DEPTH);
    let mut hashed = Vec::new();
    while let Some((p, r)) = results.next().await {
        hashed.push((p, r?));
    }
    drop(results);
    let leftovers: Vec<String> = w
        .temps
        .iter()
        .filter(|(p, _)| {
            let named = index.get(p).is_some_and(crate::index::Entry::is_live);
            is_leftover_temp(locked, named)
        })
        .map(|(t, _)| s.path(t))
        .collect();
    remove_leftovers(s, leftovers).await;
    let dirs_now: HashSet<RelPath> = w
        .observed
        .iter()
        .filter(|(_, o)| o.kind == Kind::Dir)
        .map(|(p, _)| p.clone())
        .collect();
    let kinds: HashMap<RelPath, bool> = index
        .entries
        .iter()
        .map(|(p, e)| (p.clone(), e.kind == Kind::Dir))
        .collect();
    // A path that is not on the remote any more was what the index says it was.
    let is_dir = |q: &RelPath| dirs_now.contains(q) || kinds.get(q).copied().unwrap_or(false);
    Ok(settle(index, &RelPath::root(), w, hashed, &is_dir))
}

/// Removes the temps `protocol::is_leftover_temp` judged leftovers.
async fn remove_leftovers(s: &Sftp, leftovers: Vec<String>) {
    if !leftovers.is_empty() {
        tracing::info!(
            "removing {} temp files left by an interrupted sync on {}",
            leftovers.len(),
            s.host
        );
    }
    let raw = s.raw();
    futures::stream::iter(leftovers)
        .map(|t| async move { raw.remove(t).await })
        .buffer_unordered(LIST_DEPTH)
        .for_each(|_| async {})
        .await;
}

/// Removes trash entries whose name stamp (`~YYYYMMDD-HHMMSS`) is older than `cutoff`, and
/// the folders that leaves empty. Best effort: problems are logged, not returned.
pub(crate) async fn expire_trash(s: &Sftp, trash: &str, cutoff: i64) {
    let cutoff_stamp = crate::time::stamp(cutoff);
    let mut dirs = vec![trash.to_string()];
    let mut all_dirs = Vec::new();
    while let Some(d) = dirs.pop() {
        let files = match list(s, &d).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("cannot list {d}: {}", super::to_io(e));
                continue;
            }
        };
        for e in files {
            if e.filename == "." || e.filename == ".." {
                continue;
            }
            let full = format!("{d}/{}", e.filename);
            let old = e
                .filename
                .rsplit_once('~')
                .map(|(_, st)| st.get(..15).unwrap_or(st) < cutoff_stamp.as_str())
                .unwrap_or(false);
            if e.attrs.file_type().is_dir() {
                if old {
                    // A whole folder trashed at once: everything below went at the same time.
                    remove_tree(s, &full).await;
                } else {
                    dirs.push(full.clone());
                    all_dirs.push(full);
                }
            } else if old {
                let _ = s.raw().remove(full.as_str()).await;
            }
        }
    }
    // Deepest first; rmdir fails harmlessly on folders that still hold something.
    all_dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for d in all_dirs {
        let _ = s.raw().rmdir(d.as_str()).await;
    }
}

async fn remove_tree(s: &Sftp, top: &str) {
    let mut stack = vec![top.to_string()];
    let mut dirs = Vec::new();
    while let Some(d) = stack.pop() {
        if let Ok(files) = list(s, &d).await {
            for e in files {
                if e.filename == "." || e.filename == ".." {
                    continue;
                }
                let full = format!("{d}/{}", e.filename);
                if e.attrs.file_type().is_dir() {
                    stack.push(full);
                } else {
                    let _ = s.raw().remove(full.as_str()).await;
                }
            }
        }
        dirs.push(d);
    }
    for d in dirs.into_iter().rev() {
        let _ = s.raw().rmdir(d.as_str()).await;
    }
}
