//! Both sides' indexes as a sync starts: each vouched for by the program that keeps it (then
//! only loaded) or loaded and scanned, and the sync stopped at once when together they are
//! the pair this machine last left settled (`settled`).

use super::{SyncOptions, SyncReport, settled};
use crate::scan::ScanStats;
use crate::store::{Current, Store, StoreError, Vouched};
use std::future::Future;

/// How a sync starts.
// One value per sync, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Start {
    /// Both sides are as the last sync left them: nothing to do.
    Settled(SyncReport),
    /// Both indexes, current.
    Loaded(Current, Current),
}

/// Asks both sides to vouch, then stops at a settled pair or loads both indexes. When one
/// side vouched for the state it was settled in, the other is scanned while the vouched one
/// loads; when the scan changed nothing, the sync stops without waiting for that load (a
/// download stops there; a local read runs on to its end): a slow link never carries a big
/// index to find nothing to do.
pub(super) async fn start<L: Store, R: Store>(
    left: &L,
    right: &R,
    opts: &SyncOptions,
    now: i64,
) -> Result<Start, StoreError> {
    let (vl, vr) = tokio::join!(left.vouch(), right.vouch());
    let kept = (opts.settled.as_deref())
        .and_then(settled::load)
        .filter(|k| settled::recent(k, now));
    let Some(k) = kept else {
        return loaded(left, right).await;
    };
    let holds = |kept: &str, v: &Option<Vouched>| {
        v.as_ref()
            .is_some_and(|v| settled::side_holds(kept, v.token, &v.stats))
    };
    match (holds(&k.left, &vl), holds(&k.right, &vr)) {
        (true, true) => Ok(Start::Settled(report(stats(vl), stats(vr)))),
        (false, true) if vl.is_none() => {
            let scan = unless_settled(left.current_index(), right.current_index(), &k.left);
            match scan.await? {
                (cl, None) => Ok(Start::Settled(report(cl.stats, stats(vr)))),
                (cl, Some(cr)) => checked(left, right, cl, cr),
            }
        }
        (true, false) if vr.is_none() => {
            let scan = unless_settled(right.current_index(), left.current_index(), &k.right);
            match scan.await? {
                (cr, None) => Ok(Start::Settled(report(stats(vl), cr.stats))),
                (cr, Some(cl)) => checked(left, right, cl, cr),
            }
        }
        _ => loaded(left, right).await,
    }
}

/// `scanned` and `other` at once; when `scanned` stands as `kept` (that side of the settled
/// pair) says, with no change found, `other` is not waited for (unless it already failed).
async fn unless_settled(
    scanned: impl Future<Output = Result<Current, StoreError>>,
    other: impl Future<Output = Result<Current, StoreError>>,
    kept: &str,
) -> Result<(Current, Option<Current>), StoreError> {
    tokio::pin!(other);
    tokio::pin!(scanned);
    let mut done = None;
    let c = loop {
        tokio::select! {
            c = &mut scanned => break c?,
            o = &mut other, if done.is_none() => done = Some(o),
        }
    };
    let unchanged = c.loaded == c.index.entries_digest();
    if unchanged
        && c.token
            .is_some_and(|t| settled::side_holds(kept, t, &c.stats))
    {
        return Ok((c, None));
    }
    let o = match done {
        Some(o) => o?,
        None => other.await?,
    };
    Ok((c, Some(o)))
}

/// Both sides loaded and brought up to date with their folders, at once.
async fn loaded<L: Store, R: Store>(left: &L, right: &R) -> Result<Start, StoreError> {
    let (cl, cr) = tokio::join!(left.current_index(), right.current_index());
    checked(left, right, cl?, cr?)
}

/// Two folders with one replica id (a folder copied with its `.sync`) are refused: their
/// histories would merge.
fn checked<L: Store, R: Store>(
    left: &L,
    right: &R,
    cl: Current,
    cr: Current,
) -> Result<Start, StoreError> {
    if cl.index.replica == cr.index.replica {
        return Err(StoreError::SameReplica {
            left: left.describe(),
            right: right.describe(),
            replica: cl.index.replica,
        });
    }
    Ok(Start::Loaded(cl, cr))
}

/// The report of a sync that found nothing to do, with what each side left out.
fn report(left: ScanStats, right: ScanStats) -> SyncReport {
    SyncReport {
        scan_left: left,
        scan_right: right,
        ..Default::default()
    }
}

fn stats(v: Option<Vouched>) -> ScanStats {
    v.map(|v| v.stats).unwrap_or_default()
}
