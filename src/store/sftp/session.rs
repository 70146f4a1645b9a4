//! `Sftp`: the sessions on one connection and the file operations every part of the store
//! builds on (stat, rename over, hard link, folders made with their mode, durable renames,
//! small whole files read and written).

use super::wire::{is_status, put_str, status_ok, to_io};
use super::{made, xfer};
use crate::proto::ext;
use crate::relpath::RelPath;
use crate::replica::layout::LOCK_FILE;
use crate::store::{Reader, StoreError};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::io;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The SFTP sessions on one connection and what the server said it can do.
pub(crate) struct Sftp {
    /// At least one; requests on a handle stay on the session that opened it.
    pub(super) sessions: Vec<Arc<RawSftpSession>>,
    /// The SSH connection; keeps it open as long as the sessions live.
    pub(super) ssh: Arc<super::connect::Handle>,
    pub(super) next: std::sync::atomic::AtomicUsize,
    /// `user@host:port`, for messages.
    pub(super) host: String,
    /// Absolute remote path of the replica root, without a trailing slash (unless `/`).
    pub(super) root: String,
    pub(super) posix_rename: bool,
    pub(super) hardlink: bool,
    pub(super) fsync: bool,
    pub(super) index_refresh: bool,
    /// Our server from the version that says the state of its index after a refresh.
    pub(super) refresh_token: bool,
    /// `copy-data`: ranges copied between two open files on the server (delta uploads).
    /// Turned off for the session when the server refuses it (OpenSSH advertises it even
    /// when `sftp-server -P copy-data` denies it).
    pub(super) copy_data: std::sync::atomic::AtomicBool,
    /// `blake3@filesync` (our server): a file's hash asked of the server.
    pub(super) blake3: bool,
    /// Our own server's batch extensions (`batch`).
    pub(super) batch: bool,
    pub(super) read_len: u32,
    pub(super) write_len: u32,
    /// Temps made and not yet put in place nor removed.
    pub(super) made: made::Made,
    /// One window of files open for writing per session (see `OPEN_FOR_WRITING`).
    pub(super) writing: Vec<Arc<Semaphore>>,
}

/// Files open for writing at once on one session. Enough that a batch of small files keeps
/// the server busy while replies travel; few enough that, with the reads and single
/// transfers of the same sync, a session stays below 128 open handles: past that an OpenSSH
/// server's handle ids get a byte over 0x7f, which russh-sftp mangles (see
/// `xfer::ChunkStream::wait_for_close`).
pub(super) const OPEN_FOR_WRITING: usize = 48;

/// A session's place for one more file open for writing, given back when dropped.
pub(crate) struct WriteSlot {
    pub(super) raw: Arc<RawSftpSession>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Sftp {
    /// The remote `.sync.lock`, as messages and the process-wide record of held locks name it.
    pub(super) fn lock_place(&self) -> String {
        format!("{}:{}", self.host, self.join(LOCK_FILE))
    }

    /// A session for the next operation, in turn. Path-based requests may use any session;
    /// everything done through one handle must keep the session it got here.
    pub(super) fn raw(&self) -> &Arc<RawSftpSession> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.sessions[i % self.sessions.len()]
    }

    /// The next session in turn, once it has room for one more file open for writing.
    pub(super) async fn write_slot(&self) -> WriteSlot {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.sessions.len();
        self.write_slot_on(&self.sessions[i]).await
    }

    /// `write_slot` on session `raw` (a file worked on together with another handle there).
    pub(super) async fn write_slot_on(&self, raw: &Arc<RawSftpSession>) -> WriteSlot {
        let window = self
            .sessions
            .iter()
            .position(|r| Arc::ptr_eq(r, raw))
            .and_then(|i| self.writing.get(i));
        // The semaphores are never closed: a failed acquire only means no window to keep.
        let permit = match window {
            Some(w) => w.clone().acquire_owned().await.ok(),
            None => None,
        };
        WriteSlot {
            raw: raw.clone(),
            _permit: permit,
        }
    }

    /// The remote path of `p`.
    pub(super) fn path(&self, p: &RelPath) -> String {
        self.join(p.as_str())
    }

    pub(super) fn join(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else if self.root == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// Where this store is, as messages say it (`on user@host:port`).
    pub(super) fn place(&self) -> String {
        format!("on {}", self.host)
    }

    pub(super) fn err(&self, what: &str, path: &str, e: SftpError) -> StoreError {
        StoreError::io(format!("{what} {}:{path}", self.host), to_io(e))
    }

    /// `lstat`; `None` when nothing is there.
    pub(super) async fn lstat(&self, path: &str) -> Result<Option<FileAttributes>, SftpError> {
        match self.raw().lstat(path).await {
            Ok(a) => Ok(Some(a.attrs)),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renames, replacing `to` atomically when the server has `posix-rename@openssh.com`.
    pub(super) async fn rename_over(&self, from: &str, to: &str) -> Result<(), SftpError> {
        if self.posix_rename {
            let mut data = Vec::with_capacity(from.len() + to.len() + 8);
            put_str(&mut data, from);
            put_str(&mut data, to);
            return status_ok(self.raw().extended(ext::POSIX_RENAME, data).await?);
        }
        match self.raw().rename(from, to).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // Plain SFTP rename refuses to replace: remove the old one, then rename.
                if self.lstat(to).await?.is_some() {
                    self.raw().remove(to).await?;
                    self.raw().rename(from, to).await.map(|_| ())
                } else {
                    Err(e)
                }
            }
        }
    }

    pub(super) async fn hardlink(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let mut data = Vec::new();
        put_str(&mut data, from);
        put_str(&mut data, to);
        status_ok(self.raw().extended(ext::HARDLINK, data).await?)
    }

    /// Creates `p` and its missing parents; `p` itself, when made, with `mode` (see
    /// `Store::mkdir`).
    pub(super) async fn mkdir_p(
        &self,
        p: &RelPath,
        mode: Option<u32>,
    ) -> Result<Option<u32>, StoreError> {
        let filling = mode.map(crate::index::mode::while_filling);
        let attrs = FileAttributes {
            permissions: filling,
            ..FileAttributes::empty()
        };
        // Usually the parent exists (the engine makes folders top-down): one round trip.
        if !p.is_root() && self.raw().mkdir(self.path(p).as_str(), attrs).await.is_ok() {
            return self.exact_mode(p, filling).await;
        }
        let mut missing = Vec::new();
        let mut cur = Some(p.clone());
        while let Some(d) = cur.filter(|d| !d.is_root()) {
            let path = self.path(&d);
            match self.lstat(&path).await {
                Ok(Some(a)) if a.file_type().is_dir() => break,
                Ok(Some(_)) => {
                    return Err(StoreError::InTheWay {
                        path: d,
                        place: self.place(),
                    });
                }
                Ok(None) => missing.push(path),
                Err(e) => return Err(self.err("cannot stat", &path, e)),
            }
            cur = d.parent();
        }
        let made = missing.first().cloned();
        for path in missing.into_iter().rev() {
            let attrs = FileAttributes {
                permissions: filling.filter(|_| Some(&path) == made.as_ref()),
                ..FileAttributes::empty()
            };
            if let Err(e) = self.raw().mkdir(path.as_str(), attrs).await {
                // Someone else (a concurrent step) may have made it meanwhile.
                match self.lstat(&path).await {
                    Ok(Some(a)) if a.file_type().is_dir() => {}
                    _ => return Err(self.err("cannot create folder", &path, e)),
                }
            }
        }
        match made {
            Some(_) => self.exact_mode(p, filling).await,
            None => Ok(None),
        }
    }

    /// Sets `p`'s permission bits to exactly `mode` (the server's umask may have narrowed
    /// what it was made with); nothing without a mode.
    /// Returns the mode `p` shows after (read in the same round trip): a server whose disk
    /// cannot hold modes refuses the change, which is no error (see `Store::set_mode`).
    pub(super) async fn exact_mode(
        &self,
        p: &RelPath,
        mode: Option<u32>,
    ) -> Result<Option<u32>, StoreError> {
        let Some(m) = mode else { return Ok(None) };
        let path = self.path(p);
        let attrs = FileAttributes {
            permissions: Some(crate::index::mode::perm_bits(m)),
            ..FileAttributes::empty()
        };
        // One session: the server answers in order, so the stat sees the change.
        let raw = self.raw();
        let (set, now) =
            futures::join!(raw.setstat(path.as_str(), attrs), raw.lstat(path.as_str()));
        match (set, now) {
            (Err(e), _) if is_status(&e, StatusCode::NoSuchFile) => {
                Err(self.err("cannot set the permissions of", &path, e))
            }
            (_, Ok(a)) => Ok(a.attrs.permissions.map(crate::index::mode::perm_bits)),
            (_, Err(e)) => Err(self.err("cannot stat", &path, e)),
        }
    }

    /// Makes the rename that just put `path` (in the root) in place durable, before anything
    /// that relies on it (the other side's index) is written. Our server fsyncs a folder
    /// handle; OpenSSH's fsyncs only files, so there the renamed file is fsynced, which on a
    /// journalling file system commits the rename with it. Best effort: a server without
    /// `fsync@openssh.com` has no way to ask.
    pub(super) async fn make_rename_durable(&self, path: &str) -> bool {
        if !self.fsync {
            return false;
        }
        let raw = self.raw();
        let res = async {
            let h = if self.batch {
                raw.opendir(self.root.as_str()).await?.handle
            } else {
                raw.open(path, OpenFlags::READ, FileAttributes::empty())
                    .await?
                    .handle
            };
            let mut d = Vec::new();
            put_str(&mut d, &h);
            let synced = raw.extended(ext::FSYNC, d).await.and_then(status_ok);
            let _ = raw.close(h).await;
            synced
        }
        .await;
        match res {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot make {}:{path} durable: {}", self.host, to_io(e));
                false
            }
        }
    }

    /// Reads a whole (small) file, `None` when it does not exist.
    pub(super) async fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_all_at_most(path, u64::MAX).await
    }

    /// `read_all`, stopping once more than `most` bytes came: a file that big is not what
    /// the caller reads (which sees it by its length).
    pub(super) async fn read_all_at_most(
        &self,
        path: &str,
        most: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut r = match xfer::open_read(self, path, None).await {
            Ok(r) => r,
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(self.err("cannot read", path, e)),
        };
        while let Some(chunk) = r.next_chunk().await {
            out.extend_from_slice(&chunk.map_err(|e| self.err("cannot read", path, e))?);
            if out.len() as u64 > most {
                break;
            }
        }
        Ok(Some(out))
    }

    /// `bytes` into a new file at `tmp`, fsynced; nothing left behind on failure. Putting it
    /// in place is the caller's rename.
    pub(super) async fn write_temp(&self, tmp: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let len = bytes.len() as u64;
        let data: Reader = Box::pin(io::Cursor::new(bytes));
        let res = async {
            let h = xfer::create(self, tmp, None)
                .await
                .map_err(|e| self.err("cannot create", tmp, e))?;
            xfer::upload(self, tmp, h, data, None, None, Some(len)).await
        }
        .await;
        if res.is_err() {
            let _ = self.raw().remove(tmp).await;
        }
        res.map(|_| ())
    }
}
