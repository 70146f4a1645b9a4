//! `SftpStore`: a replica folder behind SFTP (russh client), reached without any remote shell.
//!
//! Uploads go to a temp name beside the target, get their mtime and are fsynced
//! (`fsync@openssh.com`) before `posix-rename@openssh.com` puts them in place; what they
//! replace is kept in the remote `.sync-trash/`. Transfers keep many READ/WRITE requests in
//! flight (`xfer`) and are spread over several SFTP channels of one connection, so a server
//! that handles each channel's requests in turn (fsyncs included) works on several files at
//! once. Against our own server small files go many per request (`batch`); against any other,
//! a batch's files are all under way at once, within a window of open files per channel.

mod archive;
mod batch;
mod connect;
mod delta;
mod index;
mod links;
mod locking;
mod made;
mod open;
mod put;
mod session;
mod walk;
mod wire;
mod xfer;

pub use open::open;
pub(crate) use session::Sftp;
pub(crate) use wire::to_io;

use super::{BatchFile, Current, Put, Reader, Seen, StagedIndex, Store, StoreError, Vouched};
use crate::delta::{ChunkList, Plan};
use crate::index::{ContentHash, Index};
use crate::relpath::RelPath;
use crate::replica::layout::TRASH_DIR;
use crate::replica::lock::{self, LockInfo};
use crate::scan::{Observed, ScanStats};
use index::Fingerprint;
use links::Links;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;
use std::io;
use std::sync::{Arc, Mutex};
use wire::{is_status, observed_of, put_str, sftp_time, status_ok};

/// How long one SFTP request may take (an fsync of a large file on a slow card included)
/// before the connection counts as lost.
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// SFTP channels opened on one SSH connection to our server. A server runs each channel's
/// requests one after another (OpenSSH's sftp-server is one process per channel), so several
/// channels let its fsyncs and file system calls overlap; transfers are spread over them.
const CHANNELS: usize = 4;
/// The same for any other server, where every small file has its own fsync: more of them
/// overlap, and the disk commits them together. Within OpenSSH's default `MaxSessions` (10).
const PLAIN_CHANNELS: usize = 8;

pub struct SftpStore {
    s: Arc<Sftp>,
    describe: String,
    lock_stale_secs: u64,
    st: Box<State>,
}

impl Drop for SftpStore {
    /// Dropped with the remote lock taken (a sync abandoned half-way): the lock file cannot be
    /// removed from here, but it is no longer held, so a later attempt of this process may
    /// break it.
    fn drop(&mut self) {
        if self.st.locked.load(std::sync::atomic::Ordering::Relaxed) {
            lock::note_held(&self.s.lock_place(), false);
        }
    }
}

/// What a store remembers between calls during one sync.
struct State {
    /// The remote `.sync` as loaded (see `Fingerprint`), to skip a needless upload.
    loaded: Mutex<Option<Fingerprint>>,
    /// The fingerprint of a staged index, `loaded` once it is committed.
    staged: Mutex<Option<Fingerprint>>,
    /// Whether this store holds the remote `.sync.lock`.
    locked: std::sync::atomic::AtomicBool,
    /// What the last walk of the remote folder learnt of links: nothing is written through one.
    links: Mutex<Links>,
    /// The outcome of the server's index refresh `vouch` asked for, for `current_index` to
    /// build on rather than ask again: what it left as it was, or why it failed.
    refreshed: Mutex<Option<Result<ScanStats, index::RefreshFailed>>>,
}

impl SftpStore {
    /// Runs a store call, failing it at once when the SSH connection is gone: russh-sftp
    /// leaves the requests in flight at that moment waiting for their timeout.
    async fn guard<T>(
        &self,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::select! {
            r = f => r,
            _ = closed(&self.s.ssh) => Err(connection_lost(&self.s.host)),
        }
    }

    /// `guard` for a call with one result per file: all of them fail when the connection goes.
    async fn guard_all<T>(
        &self,
        n: usize,
        f: impl Future<Output = Vec<Result<T, StoreError>>>,
    ) -> Vec<Result<T, StoreError>> {
        tokio::select! {
            r = f => r,
            _ = closed(&self.s.ssh) => (0..n).map(|_| Err(connection_lost(&self.s.host))).collect(),
        }
    }
}

/// Resolves once the SSH connection has ended.
pub(crate) async fn closed(ssh: &connect::Handle) {
    while !ssh.is_closed() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn connection_lost(host: &str) -> StoreError {
    StoreError::ConnectionLost {
        host: host.to_string(),
    }
}

impl SftpStore {
    async fn cleanup_async(&self, trash_days: u64) -> Result<(), StoreError> {
        if trash_days == 0 {
            return Ok(());
        }
        let s = &self.s;
        let trash = s.join(TRASH_DIR);
        // Not through a link: expiry deletes, and only the trash's own files are old versions.
        match s.lstat(&trash).await {
            Ok(Some(a)) if a.file_type().is_dir() => {}
            _ => return Ok(()),
        }
        let cutoff = crate::time::now_secs() - (trash_days as i64) * 86_400;
        walk::expire_trash(s, &trash, cutoff).await;
        Ok(())
    }
}

impl Store for SftpStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Our server takes a batch in a few requests; any other takes its files all under way
    /// at once, which beats one engine step per file.
    fn batches(&self) -> bool {
        true
    }

    async fn lock(&self, info: &LockInfo) -> Result<(), StoreError> {
        self.guard(self.lock_async(info)).await
    }

    async fn unlock(&self) -> Result<(), StoreError> {
        self.guard(self.unlock_async()).await
    }

    async fn current_index(&self) -> Result<Current, StoreError> {
        self.guard(self.current_async()).await
    }

    async fn vouch(&self) -> Option<Vouched> {
        self.guard(async { Ok(self.vouch_async().await) })
            .await
            .ok()
            .flatten()
    }

    async fn stage_index(&self, index: &Index) -> Result<Option<StagedIndex>, StoreError> {
        self.guard(self.stage_index_async(index)).await
    }

    async fn commit_index(&self, staged: StagedIndex) -> Result<(), StoreError> {
        self.guard(self.commit_index_async(staged)).await
    }

    async fn discard_index(&self, staged: StagedIndex) {
        let tmp = staged.tmp.to_string_lossy();
        if self.s.raw().remove(tmp.as_ref()).await.is_ok() {
            self.s.made.done(&tmp);
        }
    }

    async fn stat(&self, p: &RelPath) -> Result<Option<Observed>, StoreError> {
        self.guard(async {
            let path = self.s.path(p);
            match self.s.lstat(&path).await {
                Ok(a) => Ok(a.as_ref().and_then(observed_of)),
                Err(e) => Err(self.s.err("cannot stat", &path, e)),
            }
        })
        .await
    }

    async fn read(&self, p: &RelPath, size: Option<u64>) -> Result<Reader, StoreError> {
        self.guard(async {
            self.not_through_link(p).await?;
            let path = self.s.path(p);
            let r = xfer::open_read(&self.s, &path, size)
                .await
                .map_err(|e| self.s.err("cannot read", &path, e))?;
            Ok(Box::pin(xfer::ChunkReader::new(r, self.s.host.clone(), path)) as Reader)
        })
        .await
    }

    async fn write(&self, p: &RelPath, data: Reader, put: Put) -> Result<Observed, StoreError> {
        self.guard(async {
            self.not_through_link_or_trash(p).await?;
            self.write_async(p, data, put).await
        })
        .await
    }

    async fn read_batch(&self, files: &[(RelPath, u64)]) -> Vec<Result<Vec<u8>, StoreError>> {
        self.guard_all(files.len(), self.read_batch_async(files))
            .await
    }

    async fn write_batch(&self, files: Vec<BatchFile>) -> Vec<Result<Observed, StoreError>> {
        let n = files.len();
        if self.s.batch {
            return self.guard_all(n, self.write_batch_async(files)).await;
        }
        // Any other server: every file under way at once, as far as the sessions' windows of
        // files open for writing let them (`xfer::create` waits for room); each file's
        // requests go out together, and each file is durable before its rename.
        let each = files.into_iter().map(|f| async move {
            self.not_through_link_or_trash(&f.path).await?;
            let data: Reader = Box::pin(io::Cursor::new(f.bytes));
            self.write_async(&f.path, data, f.put).await
        });
        self.guard_all(n, futures::future::join_all(each)).await
    }

    async fn set_mode(&self, p: &RelPath, mode: u32) -> Result<Option<u32>, StoreError> {
        self.guard(async {
            self.not_through_link(p).await?;
            self.s.exact_mode(p, Some(mode)).await
        })
        .await
    }

    async fn mkdir(&self, p: &RelPath, mode: Option<u32>) -> Result<Option<u32>, StoreError> {
        self.guard(async {
            self.not_through_link(p).await?;
            self.s.mkdir_p(p, mode).await
        })
        .await
    }

    async fn trash(&self, p: &RelPath) -> Result<(), StoreError> {
        self.guard(async {
            self.not_through_link_or_trash(p).await?;
            self.s.trash(p).await
        })
        .await
    }

    async fn rmdir(&self, p: &RelPath) -> Result<(), StoreError> {
        self.guard(async {
            self.not_through_link_or_trash(p).await?;
            let path = self.s.path(p);
            match self.s.raw().rmdir(path.as_str()).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
                // Still holds something (ignored files, or a late arrival): keep it in the trash.
                Err(_) => self.s.trash(p).await,
            }
        })
        .await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), StoreError> {
        self.guard(self.rename_async(from, to)).await
    }

    async fn cleanup(&self, trash_days: u64) -> Result<(), StoreError> {
        self.guard(self.cleanup_async(trash_days)).await
    }

    async fn chunks(&self, hash: &ContentHash) -> Option<ChunkList> {
        self.guard(async { Ok(self.chunks_async(hash).await) })
            .await
            .ok()
            .flatten()
    }

    async fn keep_chunks(&self, hash: &ContentHash, list: &ChunkList) {
        let _ = self
            .guard(async {
                self.keep_chunks_async(hash, list).await;
                Ok(())
            })
            .await;
    }

    async fn prune_chunks(&self, keep: &std::collections::HashSet<ContentHash>) {
        let _ = self
            .guard(async {
                self.prune_chunks_async(keep).await;
                Ok(())
            })
            .await;
    }

    async fn read_ranges(&self, p: &RelPath, ranges: &[(u64, u64)]) -> Result<Vec<u8>, StoreError> {
        self.guard(self.read_ranges_async(p, ranges)).await
    }

    async fn write_delta(
        &self,
        p: &RelPath,
        plan: &Plan,
        old: Seen,
        sent: Vec<u8>,
        put: Put,
    ) -> Result<Observed, StoreError> {
        self.guard(self.write_delta_async(p, plan, old, sent, put))
            .await
    }
}

impl SftpStore {
    async fn rename_async(&self, from: &RelPath, to: &RelPath) -> Result<(), StoreError> {
        self.not_through_link(from).await?;
        self.not_through_link(to).await?;
        let s = &self.s;
        let (src, dst) = (s.path(from), s.path(to));
        match s.lstat(&dst).await {
            Ok(Some(_)) => {
                return Err(StoreError::Appeared {
                    path: to.clone(),
                    place: s.place(),
                });
            }
            Ok(None) => {}
            Err(e) => return Err(s.err("cannot stat", &dst, e)),
        }
        if let Some(parent) = to.parent() {
            s.mkdir_p(&parent, None).await?;
        }
        s.raw()
            .rename(src.as_str(), dst.as_str())
            .await
            .map(|_| ())
            .map_err(|e| s.err(&format!("cannot rename {from} to"), &dst, e))
    }
}
