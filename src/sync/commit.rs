//! The end of a sync: each side's record of the other, both indexes written (staged at once,
//! put in place left first), and the trash swept when due.

use crate::index::journal::Token;
use crate::index::{ContentHash, Index, PeerRecord, ReplicaId};
use crate::store::{Store, StoreError};

/// Index key (top level) holding when this replica's trash was last swept, unix seconds.
const SWEPT_KEY: &str = ".swept";
const SWEEP_EVERY_SECS: i64 = 6 * 3600;

/// One side as the commit sees it: its store, its index and what that index held on disk.
pub(super) struct Side<'a, S> {
    pub store: &'a S,
    pub index: &'a mut Index,
    pub loaded: ContentHash,
    /// The state of its index files as loaded.
    pub token: Option<Token>,
    /// The name this side records the other by.
    pub peer_name: &'a str,
}

/// What both sides recorded, for `cleanup`, and the state of both sides' index files after.
pub(super) struct Committed {
    sweep_left: bool,
    sweep_right: bool,
    pub tokens: (Option<Token>, Option<Token>),
}

/// Records the sync in both indexes and writes those that changed. Both are written at once
/// and put in place left first: any counter the planner bumped belongs to the left replica
/// (see `plan`), so the right must never name one the left has not kept.
pub(super) async fn commit<L: Store, R: Store>(
    left: Side<'_, L>,
    right: Side<'_, R>,
    now: i64,
    transferred: u64,
    conflicts: u64,
) -> Result<Committed, StoreError> {
    let (lid, rid) = (left.index.replica, right.index.replica);
    let save_l = note_peer(
        left.index,
        left.loaded,
        rid,
        left.peer_name,
        now,
        transferred,
        conflicts,
    );
    let save_r = note_peer(
        right.index,
        right.loaded,
        lid,
        right.peer_name,
        now,
        transferred,
        conflicts,
    );
    // Expiring the trash walks it (many round trips on a remote): a few times a day is enough
    // for an age counted in days.
    let sweep_left = sweep_due(left.index, now);
    let sweep_right = sweep_due(right.index, now);
    let (sl, sr) = tokio::join!(
        stage(left.store, left.index, save_l || sweep_left),
        stage(right.store, right.index, save_r || sweep_right),
    );
    let after =
        |staged: &Result<Option<crate::store::StagedIndex>, StoreError>, loaded| match staged {
            Ok(Some(s)) => Some(s.token),
            _ => loaded,
        };
    let tokens = (after(&sl, left.token), after(&sr, right.token));
    let committed_l = match sl {
        Ok(Some(s)) => left.store.commit_index(s).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match (committed_l, sr) {
        (Ok(()), Ok(Some(s))) => right.store.commit_index(s).await?,
        (Ok(()), r) => r.map(drop)?,
        (Err(e), r) => {
            if let Ok(Some(s)) = r {
                right.store.discard_index(s).await;
            }
            return Err(e);
        }
    }
    Ok(Committed {
        sweep_left,
        sweep_right,
        tokens,
    })
}

async fn stage<S: Store>(
    s: &S,
    index: &Index,
    due: bool,
) -> Result<Option<crate::store::StagedIndex>, StoreError> {
    if due {
        s.stage_index(index).await
    } else {
        Ok(None)
    }
}

/// Expires old trash on the sides whose sweep was due; a failure is only logged.
pub(super) async fn cleanup<L: Store, R: Store>(
    left: &L,
    right: &R,
    done: Committed,
    trash_days: u64,
) {
    // `cleanup(0)` keeps everything and returns at once.
    let days = |due: bool| if due { trash_days } else { 0 };
    let (cl, cr) = tokio::join!(
        left.cleanup(days(done.sweep_left)),
        right.cleanup(days(done.sweep_right)),
    );
    for (s, name) in [(cl, left.describe()), (cr, right.describe())] {
        if let Err(e) = s {
            tracing::warn!("trash cleanup on {name}: {}", crate::store::Chain(&e));
        }
    }
}

/// Whether the trash of `idx`'s replica is due for expiry; if so, records `now` as its sweep.
fn sweep_due(idx: &mut Index, now: i64) -> bool {
    let last = idx
        .extra
        .get(SWEPT_KEY)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    // A clock that went backwards would otherwise postpone the sweep for as long.
    if (0..SWEEP_EVERY_SECS).contains(&(now - last)) {
        return false;
    }
    idx.extra.insert(SWEPT_KEY.into(), now.into());
    true
}

/// Records a sync with `peer`; true when the index must be written: its entries changed, or
/// its record of this peer is missing or over an hour old. A no-op sync writes nothing.
fn note_peer(
    idx: &mut Index,
    loaded: ContentHash,
    peer: ReplicaId,
    name: &str,
    now: i64,
    transferred: u64,
    conflicts: u64,
) -> bool {
    let changed = idx.entries_digest() != loaded;
    let stale = idx
        .peers
        .get(&peer)
        .is_none_or(|p| p.name != name || now - p.last_sync > 3600);
    if changed || stale {
        idx.peers.insert(
            peer,
            PeerRecord {
                name: name.to_string(),
                last_sync: now,
                transferred,
                conflicts,
            },
        );
    }
    changed || stale
}
