//! A sync job assembled from the config and two targets: the stores opened, the two folders
//! checked to be apart, the options chosen. `filesync sync` and the daemon's scheduled syncs
//! both run one, so both get the same rules.

use super::{SyncOptions, SyncReport};
use crate::config::Config;
use crate::endpoint::Target;
use crate::store::{AnyStore, LocalStore, Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a stopping daemon gives an abandoned sync to remove its temps and release its
/// locks: a peer that stopped answering keeps its lock until it goes stale
/// (`lock_stale_secs`) rather than holding up a stop.
pub const UNLOCK_LIMIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot open {target}")]
    Open {
        target: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The same folder given as both replicas: it would wait on its own lock.
    #[error("{} is given twice (as both replicas); sync it with another folder", .0.display())]
    SameFolder(PathBuf),
    /// One replica inside the other would copy itself into itself at every sync.
    #[error(
        "{} is inside {}; a synced folder cannot hold the other replica: pick two folders side by side",
        .inner.display(),
        .outer.display()
    )]
    Nested { inner: PathBuf, outer: PathBuf },
}

/// Two replicas and how to sync them. The left side is this machine's folder (the
/// configured root, or the second argument), the right side the peer.
pub struct Job {
    pub left: AnyStore,
    pub right: AnyStore,
    pub opts: SyncOptions,
}

/// One side of a job: where it is and the name the other side records it by.
pub struct End<'a> {
    pub target: &'a Target,
    pub name: String,
}

impl Job {
    pub async fn open(
        cfg: &Config,
        left: End<'_>,
        right: End<'_>,
        accept_new: bool,
    ) -> Result<Job, JobError> {
        let l = open_target(left.target, cfg, accept_new).await?;
        let r = open_target(right.target, cfg, accept_new).await?;
        if let (AnyStore::Local(a), AnyStore::Local(b)) = (&l, &r) {
            apart(a.root(), b.root())?;
        }
        // Each SFTP step waits on round trips: more steps in flight hide that latency.
        let remote = [left.target, right.target]
            .iter()
            .any(|t| matches!(t, Target::Remote(_)));
        let concurrency = if remote {
            cfg.concurrency.saturating_mul(4)
        } else {
            cfg.concurrency
        };
        Ok(Job {
            opts: SyncOptions {
                concurrency,
                trash_days: cfg.trash_days,
                progress: false,
                left_name: left.name,
                right_name: right.name,
                dry_run: false,
                trash_max: cfg.trash_cap(),
                settled: settled_path(&l, &r),
            },
            left: l,
            right: r,
        })
    }

    pub async fn run(&self) -> Result<SyncReport, StoreError> {
        super::sync(&self.left, &self.right, &self.opts).await
    }

    /// After the job's future was dropped mid-way: nothing half-written is in place (temp
    /// files only), so releasing the locks is safe. Each store removes the temps it made and
    /// releases only its own lock, within `limit`: a side that does not answer by then keeps
    /// its lock until it goes stale, and its temps until its next sync.
    pub async fn abandon(&self, limit: Duration) {
        let (l, r) = tokio::join!(
            tokio::time::timeout(limit, self.left.unlock()),
            tokio::time::timeout(limit, self.right.unlock())
        );
        for (res, store) in [(l, &self.left), (r, &self.right)] {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    "cannot release the lock on {}: {}",
                    store.describe(),
                    crate::store::Chain(&e)
                ),
                Err(_) => tracing::warn!(
                    "{} did not answer within {limit:?}; its lock stays until it goes stale",
                    store.describe()
                ),
            }
        }
    }
}

/// Where this machine keeps the pair `left`–`right` when a sync leaves it settled (see
/// `sync::settled`): one file per pair in the state folder.
fn settled_path(left: &AnyStore, right: &AnyStore) -> Option<PathBuf> {
    let pair = format!("{}\0{}", left.describe(), right.describe());
    let name = blake3::hash(pair.as_bytes()).to_hex();
    Some(
        crate::sys::state_dir()?
            .join("settled")
            .join(format!("{}.json", &name[..32])),
    )
}

/// Opens a sync target: a local folder, or a replica over SFTP.
pub async fn open_target(t: &Target, cfg: &Config, accept_new: bool) -> Result<AnyStore, JobError> {
    match t {
        Target::Local(p) => Ok(AnyStore::Local(LocalStore::open(p, cfg.lock_stale_secs)?)),
        Target::Remote(r) => {
            crate::store::open_remote(r, cfg, accept_new)
                .await
                .map_err(|source| JobError::Open {
                    target: r.describe(),
                    source,
                })
        }
    }
}

/// Two local replicas must be two folders side by side: the same folder twice would wait on
/// its own lock, and one inside the other would copy itself into itself at every sync.
fn apart(a: &Path, b: &Path) -> Result<(), JobError> {
    if a == b {
        return Err(JobError::SameFolder(a.to_path_buf()));
    }
    for (outer, inner) in [(a, b), (b, a)] {
        if inner.starts_with(outer) {
            return Err(JobError::Nested {
                inner: inner.to_path_buf(),
                outer: outer.to_path_buf(),
            });
        }
    }
    Ok(())
}
