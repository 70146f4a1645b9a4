//! Turning a batch of dirty paths into index updates: the scopes to rescan (coalesced), each
//! rescanned as a full scan would judge it, all under `.sync.lock` and saved at once.

use super::WatchError;
use crate::index::journal::{self, Change};
use crate::index::{Index, MTime};
use crate::relpath::RelPath;
use crate::replica::Root;
use crate::replica::lock::{INDEX_UPDATE, LockInfo};
use crate::replica::root::FileKind;
use crate::scan::{self, Busy, ScanError, ScanStats};
use crate::store::{LocalStore, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// More scopes than this after coalescing: one full walk is cheaper than many small ones.
const MAX_SCOPES: usize = 2_000;
/// A folder with more dirty children than this is rescanned whole, in one walk.
const COARSEN_CHILDREN: usize = 32;

/// One batch of work taken from the inbox.
#[derive(Debug, Default)]
pub struct Batch {
    pub dirty: BTreeSet<RelPath>,
    pub full: bool,
}

pub(super) enum Applied {
    Done { changed: bool, stats: ScanStats },
    Locked,
}

/// Identity of `.sync` and its journal on disk: a rename-into-place gives a new inode, an
/// append a new size.
pub(super) type IndexId = Option<(
    crate::store::local::FileId,
    Option<crate::store::local::FileId>,
)>;

pub(super) fn index_file_id(root: &Root) -> IndexId {
    crate::store::local::index_files_id(root)
}

/// Applies `batch` under the lock and saves the index when it moved; `Locked` when a sync
/// holds the lock (the batch then waits).
pub(super) fn apply_locked(
    store: &LocalStore,
    index: &mut Index,
    batch: &Batch,
    disk_id: &mut IndexId,
) -> Result<Applied, WatchError> {
    match store.lock_blocking(&LockInfo::here(INDEX_UPDATE)) {
        Ok(()) => {}
        Err(StoreError::Locked { .. }) => return Ok(Applied::Locked),
        Err(e) => return Err(e.into()),
    }
    let res = (|| -> Result<Applied, WatchError> {
        let root = store.handle();
        // A sync (or `filesync index`) may have rewritten `.sync` since we last saw it.
        let now_id = index_file_id(root);
        if now_id != *disk_id
            && let Some(fresh) = store.load_index_blocking()?
        {
            *index = fresh;
        }
        // A damaged journal was set aside: only a full rescan finds what it held.
        let full = Batch {
            dirty: BTreeSet::new(),
            full: true,
        };
        let due = store.take_rescan_due();
        let batch = if due { &full } else { batch };
        let busy = store.busy();
        // Until the write lands, memory is ahead of `.sync`: if it fails, the retry must
        // reload and rescan rather than find nothing new and vouch for the old file.
        *disk_id = None;
        let (stats, changed) = apply_recorded_fresh(
            store,
            index,
            batch,
            &|p| busy.contains(p),
            now_id.is_none() || due,
        )?;
        *disk_id = index_file_id(root);
        Ok(Applied::Done { changed, stats })
    })();
    let unlocked = store.unlock_blocking();
    let applied = res?;
    unlocked?;
    Ok(applied)
}

/// The start-up full rescan, under the lock; `Ok(false)` when a sync holds the lock.
pub fn initial_scan(
    store: &LocalStore,
    index: &mut Index,
) -> Result<Option<ScanStats>, WatchError> {
    let mut id = index_file_id(store.handle());
    let batch = Batch {
        dirty: BTreeSet::new(),
        full: true,
    };
    Ok(match apply_locked(store, index, &batch, &mut id)? {
        Applied::Done { stats, .. } => Some(stats),
        Applied::Locked => None,
    })
}

/// Applies a batch to `index`: a full rescan, or a rescan of each coalesced scope.
pub fn apply(
    root: &Root,
    index: &mut Index,
    batch: &Batch,
    busy: Busy,
) -> Result<ScanStats, ScanError> {
    let Some(scopes) = scopes_of(batch) else {
        let st = scan::scan(root, index, &RelPath::root(), busy)?;
        crate::store::local::remove_leftover_temps(root, &st.temps, true);
        return Ok(st);
    };
    let mut total = ScanStats::default();
    for s in &scopes {
        total.absorb(rescan_path(root, index, s, busy)?);
    }
    Ok(total)
}

/// The subtrees a batch rescans; `None`: the whole folder.
pub fn scopes_of(batch: &Batch) -> Option<Vec<RelPath>> {
    if batch.full {
        None
    } else {
        coalesce(&batch.dirty)
    }
}

/// How often a write that found the index files changed under it reads them again and
/// re-applies its batch before the error goes up (each time, another writer got there first).
const STALE_TRIES: usize = 3;

/// `apply_recorded`, with `index` read again and the batch re-applied whenever another
/// writer changed the index files since `index` was read (`IndexMoved`): what memory holds
/// is never written over what the other wrote.
pub(crate) fn apply_recorded_fresh(
    store: &LocalStore,
    index: &mut Index,
    batch: &Batch,
    busy: Busy,
    whole: bool,
) -> Result<(ScanStats, bool), WatchError> {
    let full = Batch {
        dirty: BTreeSet::new(),
        full: true,
    };
    let (mut batch, mut whole) = (batch, whole);
    for _ in 1..STALE_TRIES {
        match apply_recorded(store, index, batch, busy, whole) {
            Err(WatchError::Store(StoreError::IndexMoved { .. })) => {}
            r => return r,
        }
        tracing::debug!("the index changed under this write; reading it again");
        *index = match store.load_index_blocking()? {
            Some(i) => i,
            None => {
                // Gone meanwhile: only a walk of the whole folder makes a new one.
                (batch, whole) = (&full, true);
                store.new_index()
            }
        };
        if store.take_rescan_due() {
            (batch, whole) = (&full, true);
        }
    }
    apply_recorded(store, index, batch, busy, whole)
}

/// `apply`, with what moved written: a rescan of some paths as one journal batch, a full
/// rescan (or a rescan that reached past its scopes, or `whole`) as a new snapshot. Whether
/// the index moved.
pub(crate) fn apply_recorded(
    store: &LocalStore,
    index: &mut Index,
    batch: &Batch,
    busy: Busy,
    whole: bool,
) -> Result<(ScanStats, bool), WatchError> {
    let root = store.handle();
    let scopes = match scopes_of(batch) {
        Some(s) if !whole => s,
        _ => {
            let (stats, changed) = apply_changed(root, index, batch, busy)?;
            if changed || whole {
                store.save_index_blocking(index)?;
            }
            return Ok((stats, changed || whole));
        }
    };
    // The entries outside the region, by digest: a rescan that reached past its scopes is
    // written whole rather than trusted to the region's diff.
    let outside = |i: &Index, region: &BTreeMap<RelPath, crate::index::Entry>| {
        i.entries_digest_where(|p| !region.contains_key(p))
    };
    let before = journal::region(index, &scopes);
    let (root_before, outside_before) = (index.root.clone(), outside(index, &before));
    let stats = apply(root, index, batch, busy)?;
    let after = journal::region(index, &scopes);
    if outside(index, &after) != outside_before {
        tracing::debug!("a rescan changed entries outside its scopes; writing the index whole");
        store.save_index_blocking(index)?;
        return Ok((stats, true));
    }
    let mut changes = journal::diff(&before, &after);
    if index.root != root_before {
        changes.push(Change::Root(index.root.clone()));
    }
    store.record_index_blocking(index, &changes)?;
    Ok((stats, !changes.is_empty()))
}

/// `apply`, and whether the entries moved (a touched file's new mtime counts: it is saved).
pub fn apply_changed(
    root: &Root,
    index: &mut Index,
    batch: &Batch,
    busy: Busy,
) -> Result<(ScanStats, bool), ScanError> {
    let before = index.entries_digest();
    let stats = apply(root, index, batch, busy)?;
    Ok((stats, index.entries_digest() != before))
}

/// The scopes to rescan for a set of dirty paths: busy folders whole, descendants of another
/// scope dropped. `None` means "rescan everything".
pub fn coalesce(dirty: &BTreeSet<RelPath>) -> Option<Vec<RelPath>> {
    let mut per_parent: HashMap<RelPath, usize> = HashMap::new();
    for p in dirty {
        *per_parent
            .entry(p.parent().unwrap_or_else(RelPath::root))
            .or_default() += 1;
    }
    let mut set: BTreeSet<RelPath> = BTreeSet::new();
    for p in dirty {
        let parent = p.parent().unwrap_or_else(RelPath::root);
        if per_parent.get(&parent).copied().unwrap_or(0) > COARSEN_CHILDREN {
            if parent.is_root() {
                return None;
            }
            set.insert(parent);
        } else {
            set.insert(p.clone());
        }
    }
    // Ancestors sort before their descendants in component order.
    let mut out: Vec<RelPath> = Vec::new();
    for p in set {
        if out.last().is_some_and(|last| p.starts_with(last)) {
            continue;
        }
        out.push(p);
        if out.len() > MAX_SCOPES {
            return None;
        }
    }
    Some(out)
}

fn kind_at(root: &Root, p: &RelPath) -> Result<Option<FileKind>, std::io::Error> {
    match root.lstat_opt(p) {
        Ok(st) => Ok(st.map(|st| st.kind)),
        Err(e) => Err(e.into_io()),
    }
}

/// Rescans one path as a full scan would judge it: its subtree if it is there, tombstones for
/// its subtree if it is gone, nothing if it is ignored.
pub fn rescan_path(
    root: &Root,
    index: &mut Index,
    p: &RelPath,
    busy: Busy,
) -> Result<ScanStats, ScanError> {
    // A path below something that is no longer a real folder is judged from that ancestor.
    let mut scope = p.clone();
    let mut ancestors: Vec<RelPath> = p.ancestors().collect();
    ancestors.reverse();
    for a in ancestors {
        if !matches!(kind_at(root, &a), Ok(Some(FileKind::Dir))) {
            scope = a;
            break;
        }
    }
    let rules = scan::local::rules_above(root, &scope);
    let is_dir = |q: &RelPath| matches!(kind_at(root, q), Ok(Some(FileKind::Dir)));
    if rules.leaves_out(&scope, &is_dir) {
        return Ok(ScanStats::default());
    }
    match kind_at(root, &scope) {
        Ok(Some(FileKind::Dir | FileKind::File)) => scan::scan(root, index, &scope, busy),
        Ok(kind) => {
            let mut st = vanish(index, &scope, &rules, &is_dir);
            // Something never synced where the path was: accounted for as a full scan would.
            let why = match kind {
                None => None,
                Some(FileKind::Link) => Some(scan::Skip::Link),
                Some(_) => Some(scan::Skip::Special),
            };
            if let Some(why) = why
                && !crate::replica::layout::is_internal(&scope)
            {
                st.skipped.push(scan::Skipped {
                    path: scope.as_str().as_bytes().to_vec(),
                    why,
                });
            }
            Ok(st)
        }
        Err(e) => {
            tracing::warn!(path = %scope, "cannot read, left as it was: {e}");
            Ok(ScanStats {
                unreadable: vec![(scope, e.to_string())],
                ..Default::default()
            })
        }
    }
}

/// Gone from disk (or not syncable any more): tombstones for the subtree, by `reconcile`.
fn vanish(
    index: &mut Index,
    scope: &RelPath,
    rules: &scan::Rules,
    is_dir: &dyn Fn(&RelPath) -> bool,
) -> ScanStats {
    scan::reconcile(
        index,
        scope,
        &BTreeMap::new(),
        &scan::Hashes::new(),
        |q| !rules.leaves_out(q, is_dir),
        MTime::from_system(std::time::SystemTime::now()),
    )
}

#[cfg(test)]
mod tests;
