//! The remote `.sync`: loaded with its journal (or brought up to date by our server first),
//! staged and committed (the journal then removed), and not uploaded when nothing in it
//! changed.

use super::wire::status_ok;
use super::{Links, REQUEST_TIMEOUT_SECS, SftpStore, walk};
use crate::index::journal::{self, Token};
use crate::index::{ContentHash, Index, ReplicaId, to_json_vec};
use crate::proto::ext;
use crate::relpath::RelPath;
use crate::replica::layout::{INDEX_FILE, JOURNAL_FILE};
use crate::scan::ScanStats;
use crate::store::{Current, StagedIndex, StoreError, Vouched};
use russh_sftp::protocol::Packet;
use std::collections::HashSet;
use std::io;

/// What an upload of the index would change: its entries (by digest) and everything else
/// with the peer records' counters zeroed. Equal fingerprints mean the upload is needless.
#[derive(PartialEq)]
pub(super) struct Fingerprint {
    entries: ContentHash,
    rest: Vec<u8>,
}

impl Fingerprint {
    pub(super) fn of(index: &Index, entries: ContentHash) -> Fingerprint {
        let mut rest = Index::new(index.replica);
        rest.name = index.name.clone();
        rest.root = index.root.clone();
        rest.extra = index.extra.clone();
        rest.peers = index.peers.clone();
        for p in rest.peers.values_mut() {
            p.last_sync = 0;
            p.transferred = 0;
            p.conflicts = 0;
        }
        Fingerprint {
            entries,
            rest: to_json_vec(&rest),
        }
    }
}

impl SftpStore {
    pub(super) fn index_path(&self) -> String {
        self.s.join(INDEX_FILE)
    }

    /// The remote `.sync` with its journal applied (see `index::journal`) and its entries
    /// digest; `None` when there is no `.sync`. After a damaged journal the digest is one no
    /// index has: what it held past the damage is found only by a walk, and the index is
    /// then uploaded whole (which removes the journal).
    pub(super) async fn load_digested(
        &self,
    ) -> Result<Option<(Index, ContentHash, Option<Token>)>, StoreError> {
        let path = self.index_path();
        let journal_path = self.s.join(JOURNAL_FILE);
        let (bytes, journal) = tokio::join!(self.s.read_all(&path), self.s.read_all(&journal_path));
        let Some(bytes) = bytes? else {
            return Ok(None);
        };
        let journal = journal?.unwrap_or_default();
        let host = self.s.host.clone();
        // Parsing a big index takes milliseconds: off the runtime, beside the other side's.
        let parsed = tokio::task::spawn_blocking(move || {
            let (idx, replay, snap) = journal::load(bytes, &journal)?;
            let digest = match replay.trouble() {
                Some(t) => {
                    tracing::warn!(
                        "{host}:{journal_path}: {t}; the folder is walked and .sync written whole"
                    );
                    DAMAGED
                }
                None => idx.entries_digest(),
            };
            let token = Token::of(snap, &journal, &replay);
            Ok::<_, crate::index::FormatError>((idx, digest, token))
        })
        .await
        .map_err(|e| StoreError::io("the index parse task failed", io::Error::other(e)))?;
        let (idx, digest, token) = parsed.map_err(|e| {
            StoreError::bad_index(
                format!("{}:{path}", self.s.host),
                e,
                format!(
                    "On that machine run `filesync index --root {}`, or move it aside there (`sftp> rename {path} {path}.bad`) and sync again to index the folder anew",
                    self.s.root
                ),
            )
        })?;
        if let Ok(mut l) = self.st.loaded.lock() {
            *l = Some(Fingerprint::of(&idx, digest));
        }
        Ok(Some((idx, digest, token)))
    }

    pub(super) async fn stage_index_async(
        &self,
        index: &Index,
    ) -> Result<Option<StagedIndex>, StoreError> {
        let norm = Fingerprint::of(index, index.entries_digest());
        let same = self
            .st
            .loaded
            .lock()
            .map(|l| l.as_ref() == Some(&norm))
            .unwrap_or(false);
        if same {
            tracing::debug!("remote index unchanged; not uploading it");
            return Ok(None);
        }
        let tmp = self.s.temp_for(&RelPath::root().join_unchecked(INDEX_FILE));
        let bytes = to_json_vec(index);
        let token = Token::of_snapshot(journal::SnapshotId::of(&bytes));
        self.s.write_temp(&tmp, bytes).await?;
        if let Ok(mut st) = self.st.staged.lock() {
            *st = Some(norm);
        }
        Ok(Some(StagedIndex {
            tmp: tmp.into(),
            token,
        }))
    }

    pub(super) async fn commit_index_async(&self, staged: StagedIndex) -> Result<(), StoreError> {
        let tmp = staged.tmp.to_string_lossy();
        let path = self.index_path();
        if let Err(e) = self.s.rename_over(&tmp, &path).await {
            let _ = self.s.raw().remove(tmp.as_ref()).await;
            return Err(self.s.err("cannot put in place", &path, e));
        }
        self.s.made.done(&tmp);
        // The new `.sync` holds the journal's changes. Left behind (this fails, or we are
        // cut off first), it names the old `.sync`, and every reader ignores it. Removed
        // only once the rename is durable: a power cut could still bring back the old
        // `.sync`, which needs it.
        if self.s.make_rename_durable(&path).await {
            let _ = self
                .s
                .raw()
                .remove(self.s.join(JOURNAL_FILE).as_str())
                .await;
        }
        let staged = self.st.staged.lock().ok().and_then(|mut s| s.take());
        if let Ok(mut l) = self.st.loaded.lock() {
            *l = staged;
        }
        Ok(())
    }

    /// Asks our server to bring its index up to date and for its state (`Store::vouch`);
    /// `None` from a server that cannot say it, or whose refresh failed. Either way the
    /// outcome is kept for `current_async`, which does not ask again.
    pub(super) async fn vouch_async(&self) -> Option<Vouched> {
        if !self.s.index_refresh {
            return None;
        }
        let (vouched, kept) = match self.refresh_logged().await {
            Ok((stats, token)) => (
                token.map(|token| Vouched {
                    token,
                    stats: stats.clone(),
                }),
                Ok(stats),
            ),
            Err(failed) => (None, Err(failed)),
        };
        if let Ok(mut r) = self.st.refreshed.lock() {
            *r = Some(kept);
        }
        vouched
    }

    /// `server_refresh`, a failure said once with the server's own words kept.
    async fn refresh_logged(&self) -> Result<(ScanStats, Option<Token>), RefreshFailed> {
        self.server_refresh().await.map_err(|e| {
            tracing::warn!("the server could not refresh its index ({e}); scanning");
            RefreshFailed {
                said: std::error::Error::source(&e).map(|c| c.to_string()),
            }
        })
    }

    pub(super) async fn current_async(&self) -> Result<Current, StoreError> {
        // Why our server could not refresh its index: when its `.sync` is damaged, the
        // server's words name the folder it serves, which the path we see (`/`) does not.
        let mut hub_said = None;
        if self.s.index_refresh {
            let t0 = std::time::Instant::now();
            let asked = self.st.refreshed.lock().ok().and_then(|mut r| r.take());
            let refreshed = match asked {
                Some(r) => r,
                None => self.refresh_logged().await.map(|(stats, _)| stats),
            };
            match refreshed {
                Ok(stats) => {
                    let refreshed = t0.elapsed().as_millis() as u64;
                    let loaded = self.load_digested().await?;
                    tracing::debug!(
                        refreshed,
                        loaded = t0.elapsed().as_millis() as u64,
                        "remote index current (ms)"
                    );
                    if let Some((index, loaded, token)) = loaded.filter(|(_, d, _)| *d != DAMAGED) {
                        return Ok(Current {
                            index,
                            loaded,
                            stats,
                            token,
                        });
                    }
                }
                Err(failed) => hub_said = failed.said,
            }
        }
        // The listing does not need the index: walk the folder while `.sync` downloads.
        let (loaded, mut found) = tokio::join!(self.load_digested(), walk::walk(&self.s));
        if let Ok(mut l) = self.st.links.lock() {
            *l = Links {
                links: std::mem::take(&mut found.links).into_iter().collect(),
                unwalked: std::mem::take(&mut found.unwalked).into_iter().collect(),
                checked: HashSet::new(),
            };
        }
        let loaded = loaded.map_err(|e| match (e, hub_said) {
            (StoreError::CorruptIndex { path, source, .. }, Some(said)) => {
                StoreError::CorruptIndex {
                    path,
                    source,
                    fix: hub_fix(&said),
                }
            }
            (e, _) => e,
        });
        let (mut index, loaded, token) = match loaded? {
            Some(x) => x,
            None => {
                let i = Index::new(ReplicaId::random());
                let d = i.entries_digest();
                (i, d, None)
            }
        };
        let locked = self.st.locked.load(std::sync::atomic::Ordering::Relaxed);
        let stats = walk::refresh(&self.s, &mut index, found, locked).await?;
        Ok(Current {
            index,
            loaded,
            stats,
            token,
        })
    }

    /// Asks our own server to bring its `.sync` up to date; returns what it left as it was:
    /// the paths its scan could not read, the files its clients are still writing (also
    /// "moving": left for the next sync) and what it leaves out by nature.
    pub(super) async fn server_refresh(&self) -> Result<(ScanStats, Option<Token>), StoreError> {
        let s = &self.s;
        let raw = s.raw();
        raw.set_timeout(3600);
        let asked = if s.refresh_token {
            ext::REFRESH_WITH_TOKEN
        } else {
            ext::REFRESH_READS_JOURNAL
        };
        let res = raw.extended(ext::INDEX_REFRESH, asked.to_vec()).await;
        raw.set_timeout(REQUEST_TIMEOUT_SECS);
        let reply = res.map_err(|e| s.err("index refresh", &s.root, e))?;
        let Packet::ExtendedReply(r) = reply else {
            return status_ok(reply)
                .map(|()| (ScanStats::default(), None))
                .map_err(|e| s.err("index refresh", &s.root, e));
        };
        let left =
            crate::proto::left_out::decode_reply(&bytes::Bytes::from(r.data)).map_err(|_| {
                StoreError::io(
                    format!("the reply to {} from {}", ext::INDEX_REFRESH, s.host),
                    io::Error::new(io::ErrorKind::InvalidData, "malformed"),
                )
            })?;
        let token = left.token.map(|t| Token(ContentHash(t)));
        let stats = ScanStats {
            unreadable: left.unreadable,
            moving: left.writing.clone(),
            writing: left.writing,
            skipped: left.skipped,
            skipped_more: left.skipped_more,
            ..ScanStats::default()
        };
        Ok((stats, token))
    }
}

/// Why our server's refresh failed, in its own words where it gave them.
#[derive(Debug)]
pub(super) struct RefreshFailed {
    said: Option<String>,
}

/// The digest of an index whose journal was damaged: no index has it, so the index is
/// uploaded whole.
const DAMAGED: ContentHash = ContentHash([0; 32]);

/// What to do about our server's damaged index, from what it said: its own advice (which
/// names the folder it serves), else its words as they are.
fn hub_fix(said: &str) -> String {
    match said.find("Run `") {
        Some(i) => format!("On the hub, r{}", &said[i + 1..]),
        None => format!("The hub says: {said}"),
    }
}
