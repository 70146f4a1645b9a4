//! The SFTP store's side of a delta transfer: chunk lists in the remote `.sync-chunks/`,
//! ranges read for a delta download, and a delta upload assembled on the server with
//! `copy-data` (OpenSSH's extension, which our server speaks too): the old version's chunks
//! copied into the temp there, only the new bytes sent.

use super::walk;
use super::wire::{is_status, put_str, sftp_time};
use super::xfer::{self, Started, Writes, started};
use super::{REQUEST_TIMEOUT_SECS, SftpError, SftpStore};
use crate::delta::{ChunkList, MOST_LIST_BYTES, Piece, Plan, list_name};
use crate::index::{ContentHash, Kind, MTime};
use crate::proto::ext;
use crate::relpath::RelPath;
use crate::replica::chunks;
use crate::replica::layout::CHUNKS_DIR;
use crate::scan::Observed;
use crate::store::{Put, Seen, StoreError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, Status, StatusCode};
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Requests in flight while a temp is assembled.
const DEPTH: usize = 32;
/// The most one `copy-data` copies: each must finish within the timeout, on a slow card too.
const COPY_MOST: u64 = 64 << 20;
/// Seconds a request of a delta upload may take (a copy behind others, an fsync, a hash).
const LONG_TIMEOUT_SECS: u64 = 600;

impl SftpStore {
    fn chunks_path(&self, h: &ContentHash) -> String {
        self.s.join(&format!("{CHUNKS_DIR}/{}", list_name(h)))
    }

    pub(super) async fn chunks_async(&self, h: &ContentHash) -> Option<ChunkList> {
        let bytes = self
            .s
            .read_all_at_most(&self.chunks_path(h), MOST_LIST_BYTES)
            .await
            .ok()??;
        ChunkList::decode(&bytes)
    }

    pub(super) async fn keep_chunks_async(&self, h: &ContentHash, list: &ChunkList) {
        if let Err(e) = self.s.keep_list(h, list).await {
            tracing::debug!("cannot keep the chunk list of {}: {e}", list_name(h));
        }
    }

    pub(super) async fn prune_chunks_async(&self, keep: &HashSet<ContentHash>) {
        let s = &self.s;
        let dir = s.join(CHUNKS_DIR);
        // Not through a link: only our own folder's files are ours to delete.
        match s.lstat(&dir).await {
            Ok(Some(a)) if a.file_type().is_dir() => {}
            _ => return,
        }
        let Ok(files) = walk::list(s, &dir).await else {
            return;
        };
        let gone = files
            .into_iter()
            .filter(|f| chunks::stale(&f.filename, keep))
            .map(|f| format!("{dir}/{}", f.filename));
        futures::stream::iter(gone)
            .for_each_concurrent(DEPTH, |path| async move {
                let _ = s.raw().remove(path.as_str()).await;
            })
            .await;
    }

    pub(super) async fn read_ranges_async(
        &self,
        p: &RelPath,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<u8>, StoreError> {
        self.not_through_link(p).await?;
        let s = &self.s;
        let path = s.path(p);
        let raw = s.raw().clone();
        let fail = |e| s.err("cannot read", &path, e);
        let h = raw
            .open(path.as_str(), OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(fail)?
            .handle;
        let step = u64::from(s.read_len);
        let parts: Vec<(u64, u64)> = ranges
            .iter()
            .flat_map(|&(at, len)| {
                (0..len.div_ceil(step)).map(move |i| (at + i * step, (len - i * step).min(step)))
            })
            .collect();
        let reads = futures::stream::iter(
            parts
                .into_iter()
                .map(|(at, len)| read_exact(&raw, &h, at, len)),
        )
        .buffered(DEPTH)
        .collect::<Vec<_>>()
        .await;
        let _ = raw.close(h).await;
        let mut out = Vec::new();
        for r in reads {
            out.extend_from_slice(&r.map_err(fail)?);
        }
        Ok(out)
    }

    pub(super) async fn write_delta_async(
        &self,
        p: &RelPath,
        plan: &Plan,
        old: Seen,
        sent: Vec<u8>,
        put: Put,
    ) -> Result<Observed, StoreError> {
        let s = &self.s;
        if !s.copy_data.load(Ordering::Relaxed) {
            return Err(self.no_delta(p, "the server cannot copy ranges"));
        }
        self.not_through_link_or_trash(p).await?;
        if sent.len() as u64 != plan.sent() {
            return Err(StoreError::SourceChanged { path: p.clone() });
        }
        // Both handles on one session: `copy-data` names them together.
        let raw = s.raw().clone();
        let path = s.path(p);
        let src = raw
            .open(path.as_str(), OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(|e| s.err("cannot read", &path, e))?
            .handle;
        let tmp = s.temp_for(p);
        // Copies queued behind each other, the fsync of a big temp and its hash take longer
        // than a request's usual patience.
        raw.set_timeout(LONG_TIMEOUT_SECS);
        let res = self
            .build(p, (&raw, &src), &tmp, (plan, sent), old, put)
            .await;
        raw.set_timeout(REQUEST_TIMEOUT_SECS);
        let _ = raw.close(src).await;
        if res.is_err() {
            let _ = s.raw().remove(tmp.as_str()).await;
            s.made.done(&tmp);
        }
        res
    }

    /// The temp `tmp` assembled from the old version (open as `src` on `raw`) and `sent`,
    /// checked to hold the new version, then put in place of `p`.
    async fn build(
        &self,
        p: &RelPath,
        (raw, src): (&Arc<RawSftpSession>, &str),
        tmp: &str,
        (plan, sent): (&Plan, Vec<u8>),
        old: Seen,
        put: Put,
    ) -> Result<Observed, StoreError> {
        let s = &self.s;
        let Some(want) = put.expect else {
            return Err(self.no_delta(p, "there is no hash to check the result against"));
        };
        self.still(p, raw, src, old).await?;
        let created = xfer::create_on(s, raw, tmp, put.mode)
            .await
            .map_err(|e| s.err("cannot create a temp file", tmp, e))?;
        let shown = self
            .assemble(tmp, raw, src, &created, plan, sent, put)
            .await?;
        // Copied from what was there all along: it did not change under the copy. The old
        // version may still have changed behind its index's back (size and mtime kept), or
        // its list be wrong: only the result's hash tells.
        self.still(p, raw, src, old).await?;
        if self.hash_of(raw, tmp).await != Some(want) {
            return Err(self.no_delta(p, "what it built is not the new version"));
        }
        self.install(tmp, p, put.fresh).await?;
        s.made.done(tmp);
        Ok(Observed {
            kind: Kind::File,
            size: plan_size(plan),
            mtime: MTime::new(i64::from(sftp_time(put.mtime)), 0),
            mode: shown.or(put.mode),
        })
    }

    /// The BLAKE3 of the file at `path`: asked of our server (`blake3@filesync`); read back
    /// and hashed here from one that cannot say (OpenSSH), which costs its size on the wire
    /// down. `None` when neither works.
    async fn hash_of(&self, raw: &RawSftpSession, path: &str) -> Option<ContentHash> {
        if !self.s.blake3 {
            let (h, read, _) = xfer::hash_remote(&self.s, path, 0).await.ok()?;
            tracing::debug!(
                path,
                read_back = read,
                "read a delta's result back to check it"
            );
            return Some(h);
        }
        let h = raw
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
            .ok()?
            .handle;
        let mut d = Vec::new();
        put_str(&mut d, &h);
        let reply = raw.extended(ext::BLAKE3, d).await;
        let _ = raw.close(h).await;
        match reply.ok()? {
            Packet::ExtendedReply(r) if r.data.len() == 36 => {
                Some(ContentHash(r.data[4..].try_into().ok()?))
            }
            _ => None,
        }
    }

    /// Fails with `NoDelta` unless the old version (open as `h`) is still what the index saw.
    async fn still(
        &self,
        p: &RelPath,
        raw: &RawSftpSession,
        h: &str,
        old: Seen,
    ) -> Result<(), StoreError> {
        let a = raw
            .fstat(h)
            .await
            .map_err(|e| self.s.err("cannot stat", &self.s.path(p), e))?
            .attrs;
        let same = a.size == Some(old.size) && a.mtime.map(i64::from) == Some(old.mtime.secs);
        if same {
            Ok(())
        } else {
            Err(self.no_delta(p, "it changed since the scan"))
        }
    }

    /// Sends the plan: `copy-data` for each run of copied chunks, WRITEs for the new bytes,
    /// all pipelined; then the temp's tail as any upload's (times and mode, fsync, close). The
    /// temp's handle is closed whatever fails.
    #[allow(clippy::too_many_arguments)]
    async fn assemble(
        &self,
        tmp: &str,
        raw: &Arc<RawSftpSession>,
        src: &str,
        created: &xfer::Created,
        plan: &Plan,
        sent: Vec<u8>,
        put: Put,
    ) -> Result<Option<u32>, StoreError> {
        let s = &self.s;
        let mut inflight: Writes<'_> = FuturesUnordered::new();
        let sending = async {
            let mut pos = 0usize;
            for (at, run) in runs(plan, u64::from(s.write_len)) {
                let req = match run {
                    Run::Copy { from, len } => self.copy(raw, src, created, (from, len, at)).await,
                    Run::Send { len } => {
                        let short = || io::Error::from(io::ErrorKind::UnexpectedEof);
                        let bytes = sent
                            .get(pos..pos + len as usize)
                            .ok_or_else(|| StoreError::io("the bytes sent", short()))?
                            .to_vec();
                        pos += len as usize;
                        let (raw, h) = (raw.clone(), created.handle().to_string());
                        started(async move { raw.write(h, at, bytes).await }).await
                    }
                };
                inflight.push(req);
                if inflight.len() >= DEPTH
                    && let Some(r) = inflight.next().await
                {
                    r.map_err(|e| s.err("cannot write", tmp, e))?;
                }
            }
            Ok::<(), StoreError>(())
        };
        if let Err(e) = sending.await {
            drop(inflight);
            let _ = raw.close(created.handle()).await;
            return Err(e);
        }
        xfer::finish(s, tmp, created, Some(put.mtime), inflight).await
    }

    /// Starts one `copy-data` of `len` bytes at `from` of `src` to `at` of the temp. A server
    /// that refuses it gets none again this session.
    async fn copy<'a>(
        &'a self,
        raw: &Arc<RawSftpSession>,
        src: &str,
        created: &xfer::Created,
        (from, len, at): (u64, u64, u64),
    ) -> Started<'a, Result<Status, SftpError>> {
        let mut d = Vec::new();
        put_str(&mut d, src);
        d.extend_from_slice(&from.to_be_bytes());
        d.extend_from_slice(&len.to_be_bytes());
        put_str(&mut d, created.handle());
        d.extend_from_slice(&at.to_be_bytes());
        let raw = raw.clone();
        let on = &self.s.copy_data;
        started(async move {
            let r = as_status(raw.extended(ext::COPY_DATA, d).await);
            let refused = [StatusCode::PermissionDenied, StatusCode::OpUnsupported]
                .iter()
                .any(|&c| matches!(&r, Err(e) if is_status(e, c)));
            if refused && on.swap(false, Ordering::Relaxed) {
                tracing::info!("the server refuses copy-data: no more delta uploads to it");
            }
            r
        })
        .await
    }

    fn no_delta(&self, p: &RelPath, why: &str) -> StoreError {
        StoreError::NoDelta {
            path: p.clone(),
            place: self.s.place(),
            why: why.to_string(),
        }
    }
}

impl super::Sftp {
    /// Keeps a chunk list in the remote `.sync-chunks/`.
    pub(super) async fn keep_list(
        &self,
        h: &ContentHash,
        list: &ChunkList,
    ) -> Result<(), StoreError> {
        let dir = RelPath::root().join_unchecked(CHUNKS_DIR);
        self.mkdir_p(&dir, None).await?;
        let name = list_name(h);
        let tmp = self.temp_for(&dir.join_unchecked(&name));
        self.write_temp(&tmp, list.encode()).await?;
        let to = self.path(&dir.join_unchecked(&name));
        let res = self.rename_over(&tmp, &to).await;
        self.made.done(&tmp);
        if res.is_err() {
            let _ = self.raw().remove(tmp.as_str()).await;
        }
        res.map_err(|e| self.err("cannot put in place", &to, e))
    }
}

fn plan_size(plan: &Plan) -> u64 {
    plan.pieces
        .iter()
        .map(|p| match p {
            Piece::Copy { len, .. } => u64::from(*len),
            Piece::Send { len, .. } => *len,
        })
        .sum()
}

/// What one request does: copy a run of the old version, or send new bytes.
enum Run {
    Copy { from: u64, len: u64 },
    Send { len: u64 },
}

/// The plan as requests, each with where it lands: copied chunks that follow each other in
/// the old version go as one copy of at most `COPY_MOST` bytes, new bytes in WRITEs of at
/// most `write_len` (what the server takes).
fn runs(plan: &Plan, write_len: u64) -> Vec<(u64, Run)> {
    let write_len = write_len.max(1);
    let mut out: Vec<(u64, Run)> = Vec::new();
    let mut at = 0u64;
    for p in &plan.pieces {
        match *p {
            Piece::Copy { from, len, .. } => {
                let len = u64::from(len);
                match out.last_mut() {
                    Some((_, Run::Copy { from: f, len: l }))
                        if *f + *l == from && *l + len <= COPY_MOST =>
                    {
                        *l += len
                    }
                    _ => out.push((at, Run::Copy { from, len })),
                }
                at += len;
            }
            Piece::Send { len, .. } => {
                let mut left = len;
                while left > 0 {
                    let part = left.min(write_len);
                    out.push((at, Run::Send { len: part }));
                    at += part;
                    left -= part;
                }
            }
        }
    }
    out
}

/// An extended request's status reply as a WRITE's.
fn as_status(r: Result<Packet, SftpError>) -> Result<Status, SftpError> {
    match r? {
        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(s),
        Packet::Status(s) => Err(SftpError::Status(s)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

/// `len` bytes at `at` of open file `h`, asking again for what a short reply left out.
async fn read_exact(
    raw: &RawSftpSession,
    h: &str,
    at: u64,
    len: u64,
) -> Result<Vec<u8>, SftpError> {
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        let want = (len - out.len() as u64) as u32;
        let got = raw.read(h, at + out.len() as u64, want).await?.data;
        if got.is_empty() {
            return Err(SftpError::UnexpectedBehavior("the file ended early".into()));
        }
        out.extend_from_slice(&got);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(from: u64, len: u32) -> Piece {
        Piece::Copy {
            from,
            len,
            hash: [0; 32],
        }
    }

    #[test]
    fn runs_keep_to_the_write_length_and_the_copy_cap() {
        let chunk = 512 * 1024u32;
        let mut pieces: Vec<Piece> = (0..200u64)
            .map(|i| copy(i * u64::from(chunk), chunk))
            .collect();
        pieces.push(Piece::Send {
            at: 200 * u64::from(chunk),
            len: 100_000,
        });
        let out = runs(&Plan { pieces }, 32 * 1024);
        let mut at = 0;
        for (where_, run) in &out {
            assert_eq!(*where_, at, "runs leave a gap or overlap");
            at += match run {
                Run::Copy { len, .. } => {
                    assert!(*len <= COPY_MOST);
                    len
                }
                Run::Send { len } => {
                    assert!(*len <= 32 * 1024);
                    len
                }
            };
        }
        assert_eq!(at, 200 * u64::from(chunk) + 100_000);
        let copies = out
            .iter()
            .filter(|(_, r)| matches!(r, Run::Copy { .. }))
            .count();
        // 100 MiB of adjacent chunks: two copies, not one, not 200.
        assert_eq!(copies, 2);
        let sends = out
            .iter()
            .filter(|(_, r)| matches!(r, Run::Send { .. }))
            .count();
        assert_eq!(sends, 4);
    }
}
