//! Indexing a remote folder over SFTP: a stat walk (directory listings carry the attributes,
//! several folders listed at once), `.syncignore` honoured, and only changed files downloaded
//! to hash them. The rule itself is `scan::reconcile`, shared with the local scanner.

use super::{Sftp, SftpError, StoreError, is_status, observed_of, xfer};
use crate::index::{ContentHash, Index, Kind, MTime};
use crate::relpath::RelPath;
use crate::replica::layout::{IGNORE_FILE, is_internal, is_temp_name};
use crate::scan::{self, IgnoreRules, MAX_DEPTH, Observed, ScanStats, needs_hash, reconcile};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use russh_sftp::protocol::{File, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Folders listed at once, and files hashed at once.
const LIST_DEPTH: usize = 64;
const HASH_DEPTH: usize = 8;

/// Ignore files met so far, by the folder holding them.
type Rules = Arc<Vec<(RelPath, Arc<Gitignore>)>>;

/// Paths are matched under this made-up root (the matchers only need a common prefix).
fn virt(p: &RelPath) -> PathBuf {
    p.to_path(Path::new("/r"))
}

/// Judged as the local walk judges: the rules of the folders on the way down to `p`
/// (outermost first), the deepest that says anything deciding.
fn ignored(rules: &[(RelPath, Arc<Gitignore>)], p: &RelPath, is_dir: bool) -> bool {
    scan::ignored(rules.iter().map(|(_, gi)| &**gi), &virt(p), is_dir)
}

/// Lists a whole remote folder.
async fn list(s: &Sftp, path: &str) -> Result<Vec<File>, SftpError> {
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

pub(crate) struct Found {
    observed: BTreeMap<RelPath, Observed>,
    unreadable: BTreeMap<RelPath, String>,
    temps: Vec<(String, Option<u32>)>,
    rules: Vec<(RelPath, Arc<Gitignore>)>,
    /// Symlinks met (never followed, never written through).
    pub(crate) links: Vec<RelPath>,
    /// Folders met but not listed (ignored, too deep, unreadable): what is below them is
    /// unknown, so a write below one checks its way down first.
    pub(crate) unwalked: Vec<RelPath>,
}

/// Lists the whole remote folder (what `refresh` folds into an index).
pub(crate) async fn walk(s: &Sftp) -> Found {
    let mut f = Found {
        observed: BTreeMap::new(),
        unreadable: BTreeMap::new(),
        temps: Vec::new(),
        rules: Vec::new(),
        links: Vec::new(),
        unwalked: Vec::new(),
    };
    let mut pending = FuturesUnordered::new();
    let mut queue: Vec<(RelPath, Rules)> = vec![(RelPath::root(), Arc::new(Vec::new()))];
    loop {
        while pending.len() < LIST_DEPTH
            && let Some((dir, rules)) = queue.pop()
        {
            let path = s.path(&dir);
            pending.push(async move {
                let r = list(s, &path).await;
                (dir, rules, path, r)
            });
        }
        let Some((dir, rules, path, res)) = pending.next().await else {
            break;
        };
        let files = match res {
            Ok(files) => files,
            Err(e) => {
                if dir.is_root() {
                    tracing::warn!("cannot list {}:{path}: {}", s.host, super::to_io(e));
                }
                f.unreadable
                    .insert(dir.clone(), format!("cannot list {}:{path}", s.host));
                f.unwalked.push(dir);
                continue;
            }
        };
        let mut rules = rules;
        if files
            .iter()
            .any(|e| e.filename == IGNORE_FILE && e.attrs.file_type().is_file())
        {
            let ig = format!("{path}/{IGNORE_FILE}");
            match s.read_all(&ig).await {
                Ok(Some(bytes)) => {
                    let mut b = GitignoreBuilder::new(virt(&dir));
                    for line in String::from_utf8_lossy(&bytes).lines() {
                        let _ = b.add_line(None, line);
                    }
                    if let Ok(gi) = b.build() {
                        let gi = Arc::new(gi);
                        f.rules.push((dir.clone(), gi.clone()));
                        let mut v = (*rules).clone();
                        v.push((dir.clone(), gi));
                        rules = Arc::new(v);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot read {ig}: {e}"),
            }
        }
        for e in files {
            if e.filename == "." || e.filename == ".." {
                continue;
            }
            if is_temp_name(&e.filename) {
                f.temps
                    .push((format!("{path}/{}", e.filename), e.attrs.mtime));
                continue;
            }
            let p = match dir.join(&e.filename) {
                Ok(p) => p,
                Err(err) => {
                    tracing::warn!("skipping unsyncable name {path}/{}: {err}", e.filename);
                    continue;
                }
            };
            // Links first: `.sync-trash` as a link would take the trash elsewhere.
            if e.attrs.file_type().is_symlink() {
                f.links.push(p);
                continue;
            }
            if is_internal(&p) {
                continue;
            }
            let Some(o) = observed_of(&e.attrs) else {
                continue;
            };
            if ignored(&rules, &p, o.kind == Kind::Dir) {
                if o.kind == Kind::Dir {
                    f.unwalked.push(p);
                }
                continue;
            }
            if o.kind == Kind::Dir {
                if p.depth() >= MAX_DEPTH {
                    tracing::warn!(path = %p, "skipping: deeper than {MAX_DEPTH} levels");
                    f.unwalked.push(p);
                    continue;
                }
                queue.push((p.clone(), rules.clone()));
            }
            f.observed.insert(p, o);
        }
    }
    f
}

/// Folds a listing of the remote folder into `index` (which may be new: a remote without
/// `.sync`), hashing what changed.
pub(crate) async fn refresh(
    s: &Sftp,
    index: &mut Index,
    f: Found,
    locked: bool,
) -> Result<ScanStats, StoreError> {
    if f.unreadable.contains_key(&RelPath::root()) {
        return Err(StoreError::Refused(format!(
            "cannot list the synced folder {}:{}; check that it exists and is readable",
            s.host, s.root
        )));
    }
    let todo = needs_hash(index, &f.observed);
    let mut results = futures::stream::iter(todo.into_iter().map(|p| async move {
        let path = s.path(&p);
        let r = xfer::hash_remote(s, &path).await;
        (p, r)
    }))
    .buffer_unordered(HASH_DEPTH);
    let mut hashes: HashMap<RelPath, ContentHash> = HashMap::new();
    let mut unreadable: Vec<(RelPath, String)> = f
        .unreadable
        .iter()
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    let mut hashed_bytes = 0;
    while let Some((p, r)) = results.next().await {
        match r {
            Ok((h, n)) => {
                hashed_bytes += n;
                hashes.insert(p, h);
            }
            Err(e) => {
                let e = super::to_io(e);
                if e.kind() == std::io::ErrorKind::ConnectionAborted {
                    return Err(StoreError::io(format!("scanning {}", s.host), e));
                }
                unreadable.push((p, e.to_string()));
            }
        }
    }
    drop(results);
    for (p, m) in &unreadable {
        // The sync reports these among its errors.
        tracing::debug!(path = %p, "cannot read on {}, left as it was: {m}", s.host);
    }
    let bad: Vec<RelPath> = f.unreadable.keys().cloned().collect();
    let rules = IgnoreRules::new(f.rules);
    let base = virt(&RelPath::root());
    let dirs_now: std::collections::HashSet<RelPath> = f
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
    let mut st = reconcile(
        index,
        &RelPath::root(),
        &f.observed,
        &hashes,
        |p| {
            !bad.iter().any(|b| p.starts_with(b))
                && !rules.leaves_out(&base, p, &|q| {
                    // `p` is not on the remote any more: what it was, the index says.
                    dirs_now.contains(q) || (q == p && kinds.get(p).copied().unwrap_or(false))
                })
        },
        MTime::from_system(std::time::SystemTime::now()),
    );
    st.hashed = hashes.len() as u64;
    st.hashed_bytes = hashed_bytes;
    st.unreadable = unreadable;
    // A sync holds the remote lock while it scans, so no other sync is writing these: they
    // are leftovers of an interrupted one, whatever their age. Without the lock, only old
    // ones would be safe to remove.
    let leftovers: Vec<String> = f
        .temps
        .iter()
        .filter(|(_, mtime)| locked || super::stale_temp(*mtime))
        .map(|(t, _)| t.clone())
        .collect();
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
    st.temps = f.temps.into_iter().map(|(t, _)| PathBuf::from(t)).collect();
    Ok(st)
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
