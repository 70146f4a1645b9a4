//! Getting things back on one replica, through its store (local or over SFTP): what the
//! trash keeps, a restore or a resolve carried out as ordinary edits of the replica (under
//! its lock, what they replace kept in the trash), and the changes log read and appended.
//! The decisions are the pure modules'; this is their I/O.

use crate::history::conflicts::{self, Copy, Keep};
use crate::history::log::{self, BY_RESOLVE, BY_RESTORE, Change, LOG_FILE, LOG_MAX, What};
use crate::history::versions::{self, Live, Pick, RestoreError, Step, Versions};
use crate::index::{Index, Kind, ReplicaId};
use crate::relpath::RelPath;
use crate::replica::layout::TRASH_DIR;
use crate::replica::lock::LockInfo;
use crate::store::{Archive, Put, StoreError};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("{0} has no conflict copy; `filesync conflicts` lists them")]
    NoConflict(RelPath),
    #[error(
        "{path} has {} conflict copies ({}); resolve one at a time by the copy's name",
        .copies.len(), .copies.join(", ")
    )]
    ManyCopies { path: RelPath, copies: Vec<String> },
}

/// A replica locked for a restore or a resolve, its index brought up to date.
pub struct Held<'s, S: Archive> {
    pub store: &'s S,
    pub index: Index,
    started: i64,
    run: u64,
}

impl<'s, S: Archive> Held<'s, S> {
    /// Takes the replica's lock and scans it (over SFTP the scan also learns the links no
    /// write may go through).
    pub async fn take(store: &'s S, what: &str) -> Result<Self, StoreError> {
        let info = LockInfo::here(what);
        crate::store::while_brief(|| store.lock(&info)).await?;
        match store.current_index().await {
            Ok(c) => Ok(Held {
                store,
                index: c.index,
                started: crate::time::now_secs(),
                run: rand::random(),
            }),
            Err(e) => {
                let _ = store.unlock().await;
                Err(e)
            }
        }
    }

    pub async fn release(self) -> Result<(), StoreError> {
        self.store.unlock().await
    }

    /// The live files, as a restore weighs them.
    pub fn live(&self) -> BTreeMap<RelPath, Live> {
        live_files(&self.index)
    }

    /// When this replica last synced with any other.
    pub fn last_sync(&self) -> Option<i64> {
        self.index.peers.values().map(|p| p.last_sync).max()
    }

    /// Carries out a restore's steps in order; one that fails stops the rest (what is done
    /// stays done: each step is a whole edit). Returns what was done, as log lines.
    pub async fn restore(
        &self,
        steps: &[Step],
        on_step: impl Fn(&Step),
    ) -> Result<Vec<Change>, StoreError> {
        let live = self.live();
        let mut done = Vec::new();
        for s in steps {
            on_step(s);
            match s {
                Step::Put { kept, to } => {
                    self.put_back(kept, to, live.contains_key(to)).await?;
                    done.push(self.change(
                        What::Restored,
                        to,
                        Some(&kept.slot),
                        live.contains_key(to),
                    ));
                }
                Step::Trash(p) => {
                    self.store.trash(p).await?;
                    done.push(self.change(What::Deleted, p, None, true));
                }
            }
        }
        Ok(done)
    }

    async fn put_back(
        &self,
        kept: &versions::Kept,
        to: &RelPath,
        there: bool,
    ) -> Result<(), StoreError> {
        if let Some(parent) = to.parent().filter(|p| !p.is_root()) {
            self.store.mkdir(&parent, None).await?;
        }
        let data = self.store.read(&kept.slot, Some(kept.size)).await?;
        let put = Put {
            mtime: kept.mtime,
            expect: None,
            fresh: !there,
            size: kept.size,
            mode: kept.mode,
        };
        self.store.write(to, data, put).await.map(|_| ())
    }

    fn change(&self, what: What, path: &RelPath, other: Option<&RelPath>, trashed: bool) -> Change {
        let source = match what {
            What::Resolved => BY_RESOLVE,
            _ => BY_RESTORE,
        };
        Change {
            t: self.started,
            done: crate::time::now_secs(),
            run: self.run,
            what,
            path: path.clone(),
            other: other.cloned(),
            source: source.into(),
            trashed,
            error: None,
        }
    }

    /// The conflict copies among the live files.
    pub fn conflicts(&self) -> Vec<Copy> {
        conflicts::find(
            self.index
                .live()
                .filter(|(_, e)| e.kind == Kind::File)
                .map(|(p, _)| p),
        )
    }

    /// Ends the conflict(s) of `path` (a file, or one of its copies). Returns the log lines.
    pub async fn resolve(&self, path: &RelPath, keep: Keep) -> Result<Vec<Change>, OpError> {
        let all = self.conflicts();
        let copies = conflicts::about(path, &all);
        let Some(first) = copies.first() else {
            return Err(OpError::NoConflict(path.clone()));
        };
        if keep != Keep::This && copies.len() > 1 {
            return Err(OpError::ManyCopies {
                path: path.clone(),
                copies: copies.iter().map(|c| c.copy.to_string()).collect(),
            });
        }
        let mut done = Vec::new();
        match keep {
            Keep::This => {
                for c in &copies {
                    self.store.trash(&c.copy).await?;
                    done.push(self.change(What::Resolved, &c.original, Some(&c.copy), true));
                }
            }
            Keep::Other => {
                let e = self.index.get(&first.copy).cloned();
                let size = e.as_ref().map_or(0, |e| e.size);
                let data = self.store.read(&first.copy, Some(size)).await?;
                let there = self.index.get(&first.original).is_some_and(|e| e.is_live());
                let put = Put {
                    mtime: e.as_ref().map_or_else(Default::default, |e| e.mtime),
                    expect: None,
                    fresh: !there,
                    size,
                    mode: e.as_ref().and_then(|e| e.shown_mode()),
                };
                self.store.write(&first.original, data, put).await?;
                self.store.trash(&first.copy).await?;
                done.push(self.change(What::Resolved, &first.original, Some(&first.copy), true));
            }
            Keep::Both => {
                let taken: BTreeSet<RelPath> = self.index.entries.keys().cloned().collect();
                let to = conflicts::both_name(first, &self.replica_name(&first.replica), &taken);
                self.store.rename(&first.copy, &to).await?;
                done.push(self.change(What::Resolved, &to, Some(&first.copy), false));
            }
        }
        Ok(done)
    }

    /// A replica's name from the 8 hex digits of its id, as this replica knows it.
    pub fn replica_name(&self, short: &str) -> String {
        replica_name(&self.index, short)
    }
}

/// A replica's name from the 8 hex digits of its id: this one's, or a peer's it synced with.
pub fn replica_name(index: &Index, short: &str) -> String {
    let named = |id: &ReplicaId, name: Option<&str>| {
        (id.short() == short).then(|| name.filter(|n| !n.is_empty()).unwrap_or(short).to_string())
    };
    named(&index.replica, index.name.as_deref())
        .or_else(|| {
            index
                .peers
                .iter()
                .find_map(|(id, p)| named(id, Some(&p.name)))
        })
        .unwrap_or_else(|| short.to_string())
}

/// The live files of an index, as a restore weighs them.
pub fn live_files(index: &Index) -> BTreeMap<RelPath, Live> {
    index
        .live()
        .filter(|(_, e)| e.kind == Kind::File)
        .map(|(p, e)| {
            (
                p.clone(),
                Live {
                    mtime: e.mtime,
                    size: e.size,
                },
            )
        })
        .collect()
}

/// Every path's kept versions on a replica.
pub async fn kept<S: Archive>(store: &S) -> Result<Versions, StoreError> {
    Ok(versions::group(store.list_trash().await?))
}

/// The replica's changes log, oldest first.
pub async fn read_log<S: Archive>(store: &S) -> Result<Vec<Change>, StoreError> {
    Ok(store
        .read_own(LOG_FILE, 2 * LOG_MAX)
        .await?
        .map(|b| log::read(&b))
        .unwrap_or_default())
}

/// Appends to the replica's changes log (nothing when there is nothing to say).
pub async fn append_log<S: Archive>(store: &S, changes: &[Change]) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut old = store
        .read_own(LOG_FILE, 2 * LOG_MAX)
        .await?
        .unwrap_or_default();
    if !log::is_log(&old) {
        // The user's own file: kept whole in the trash, and the log starts anew.
        store
            .trash(&RelPath::root().join_unchecked(LOG_FILE))
            .await?;
        tracing::warn!(
            "{LOG_FILE} on {} was not filesync's changes log; it is in {TRASH_DIR}/ now, as \
             filesync keeps its log under that name",
            store.describe()
        );
        old.clear();
    }
    store
        .replace_own(LOG_FILE, log::append(&old, changes, LOG_MAX))
        .await
}

/// What a restore of `target` does on this replica (see `versions::plan_restore`).
pub fn plan<S: Archive>(
    held: &Held<'_, S>,
    kept: &Versions,
    target: &RelPath,
    to: &RelPath,
    pick: Pick,
    force: bool,
) -> Result<Vec<Step>, RestoreError> {
    versions::plan_restore(
        target,
        to,
        pick,
        kept,
        &held.live(),
        held.last_sync(),
        force,
    )
}

/// Removes the oldest trash entries while the trash is over `cap` (never a deleted file's
/// last copy: `evict::sweep`).
pub async fn hold_to_cap<S: Archive>(
    store: &S,
    index: &Index,
    cap: crate::history::evict::Cap,
) -> Result<crate::history::evict::Sweep, StoreError> {
    let kept = kept(store).await?;
    let disk = match cap {
        crate::history::evict::Cap::Percent(_) => store.disk_size().await,
        crate::history::evict::Cap::Bytes(_) => None,
    };
    let Some(bytes) = cap.bytes(disk) else {
        tracing::warn!(
            "trash_max is a share of the disk, and {} does not say how big its disk is",
            store.describe()
        );
        return Ok(Default::default());
    };
    let live: BTreeSet<RelPath> = live_files(index).into_keys().collect();
    let sweep =
        crate::history::evict::sweep(&kept, &live, crate::time::now_secs(), None, Some(bytes));
    if !sweep.remove.is_empty() {
        store.remove_kept(sweep.remove.clone()).await?;
    }
    if sweep.over > 0 {
        tracing::warn!(
            "the trash on {} is over trash_max by {} bytes: what is left are the last copies of deleted files",
            store.describe(),
            sweep.over
        );
    }
    Ok(sweep)
}
