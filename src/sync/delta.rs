//! Fetching a big file by delta: what the receiving side keeps of the old version is not
//! sent again. Both sides' chunk lists (kept by content hash wherever the file was hashed
//! or sent) give the plan (`delta::plan`); the new bytes are checked against the new list
//! before they go, and the receiver checks the old version it builds on. Anything amiss and
//! the whole file goes, as for a small one.

use crate::delta::{self, DELTA_MIN};
use crate::index::{ContentHash, Entry, Index};
use crate::relpath::RelPath;
use crate::scan::Observed;
use crate::store::{Put, Seen, Store, StoreError};
use std::collections::HashSet;

/// A delta sends at most this share of a file; past it the whole file goes (an unrelated
/// replacement, say).
const MOST_SHARE: u64 = 2;
/// ... and at most this many bytes: they are held in memory on the way.
const MOST_BYTES: u64 = 64 << 20;

/// Fetches `from` on `there` into `p` on `here` (where `replace` stands) by delta; `None`
/// when there is none to make (no lists, not worth it, the old version changed) and the
/// caller sends the whole file.
pub(super) async fn fetch<H: Store, T: Store>(
    here: &H,
    there: &T,
    (p, from): (&RelPath, &RelPath),
    source: &Entry,
    replace: Option<&Entry>,
    put: Put,
) -> Option<Result<Observed, StoreError>> {
    let old = replace?;
    let (new_h, old_h) = (source.hash?, old.hash?);
    if source.size < DELTA_MIN || old.size < DELTA_MIN || new_h == old_h {
        return None;
    }
    let new = there.chunks(&new_h).await?;
    let old_list = match here.chunks(&old_h).await {
        Some(l) => l,
        None => there.chunks(&old_h).await?,
    };
    if new.size() != source.size || old_list.size() != old.size {
        return None;
    }
    let plan = delta::plan(&old_list, &new);
    let sent = plan.sent();
    if sent > source.size / MOST_SHARE || sent > MOST_BYTES {
        return None;
    }
    let bytes = there.read_ranges(from, &plan.sent_ranges()).await.ok()?;
    if !delta::sent_ok(&plan, &new, &bytes) {
        // The source changed since its scan: the whole-file path says so.
        return None;
    }
    let seen = Seen {
        size: old.size,
        mtime: old.mtime,
    };
    match here.write_delta(p, &plan, seen, bytes, put).await {
        Ok(o) => {
            here.keep_chunks(&new_h, &new).await;
            tracing::debug!(path = %p, sent, size = source.size, "fetched by delta");
            Some(Ok(o))
        }
        // A delta is only a shortcut: whatever stops it (a refused or slow copy, a hash the
        // receiver cannot take, the end of the upload), the whole file still goes, and meets
        // any lasting trouble there.
        Err(e) => {
            tracing::info!("{e}; sending all of it");
            None
        }
    }
}

/// After a whole-file fetch of a big file its chunk list goes along, so its next change can
/// move by delta.
pub(super) async fn carry_list<H: Store, T: Store>(here: &H, there: &T, source: &Entry) {
    if source.size < DELTA_MIN {
        return;
    }
    if let Some(h) = source.hash
        && let Some(list) = there.chunks(&h).await
    {
        here.keep_chunks(&h, &list).await;
    }
}

/// Drops from both sides' `.sync-chunks/` the lists of content neither index holds (nothing
/// builds on them or sends them any more), and temps left there.
pub(super) async fn prune<L: Store, R: Store>(left: &L, right: &R, li: &Index, ri: &Index) {
    let keep: HashSet<ContentHash> = li
        .live()
        .chain(ri.live())
        .filter_map(|(_, e)| e.hash)
        .collect();
    tokio::join!(left.prune_chunks(&keep), right.prune_chunks(&keep));
}
