//! `SftpStore`: a replica folder behind SFTP (russh client), reached without any remote shell.
//!
//! Uploads go to a temp name beside the target, are fsynced (`fsync@openssh.com`) and get their
//! mtime before `posix-rename@openssh.com` puts them in place; what they replace is kept in the
//! remote `.sync-trash/`. Transfers keep many READ/WRITE requests in flight (`xfer`) and are
//! spread over several SFTP channels of one connection, so a server that handles each
//! channel's requests in turn (fsyncs included) works on several files at once. Against our
//! own server small files go many per request (`batch`).

mod archive;
mod batch;
mod connect;
mod made;
mod walk;
mod xfer;

use super::{BatchFile, Current, Put, Reader, StagedIndex, Store, StoreError};
use crate::config::Config;
use crate::endpoint::Remote;
use crate::index::{ContentHash, Index, Kind, MTime, ReplicaId, from_json_slice, to_json_vec};
use crate::relpath::RelPath;
use crate::replica::layout::{
    INDEX_FILE, LOCK_FILE, TRASH_DIR, TRASH_SLOTS, temp_name, trash_name, trash_slot_name,
};
use crate::replica::lock::{self, LockInfo};
use crate::scan::{Observed, ScanStats};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

use crate::proto::ext;

/// How long one SFTP request may take (an fsync of a large file on a slow card included)
/// before the connection counts as lost.
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Temp files older than this are leftovers of an interrupted sync.
const STALE_TEMP_SECS: i64 = 15 * 60;

/// SFTP channels opened on one SSH connection. A server runs each channel's requests one
/// after another (OpenSSH's sftp-server is one process per channel), so several channels let
/// its fsyncs and file system calls overlap; transfers are spread over them.
const CHANNELS: usize = 4;

/// The SFTP sessions on one connection and what the server said it can do.
pub(crate) struct Sftp {
    /// At least one; requests on a handle stay on the session that opened it.
    sessions: Vec<Arc<RawSftpSession>>,
    /// The SSH connection; keeps it open as long as the sessions live.
    ssh: Arc<connect::Handle>,
    next: std::sync::atomic::AtomicUsize,
    /// `user@host:port`, for messages.
    host: String,
    /// Absolute remote path of the replica root, without a trailing slash (unless `/`).
    root: String,
    posix_rename: bool,
    hardlink: bool,
    fsync: bool,
    index_refresh: bool,
    /// Our own server's batch extensions (`batch`).
    batch: bool,
    read_len: u32,
    write_len: u32,
    /// Temps made and not yet put in place nor removed.
    made: made::Made,
}

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
}

/// Links on the remote (the server follows them, wherever they point; filesync never does).
#[derive(Default)]
struct Links {
    /// Symlinks the walk met.
    links: HashSet<RelPath>,
    /// Folders it did not list (ignored, too deep, unreadable).
    unwalked: HashSet<RelPath>,
    /// Folders below those that a write has since found to be real folders.
    checked: HashSet<RelPath>,
}

/// "No such file" reads as "no such file" after a colon; "EOF" and a message that names a path
/// further on keep their case (a path is case-sensitive).
fn sentence_case(msg: String) -> String {
    let mut c = msg.chars();
    match (c.next(), c.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(msg.chars().skip(1)).collect()
        }
        _ => msg,
    }
}

/// Turns an SFTP client error into an `io::Error` whose kind callers can branch on.
pub(crate) fn to_io(e: SftpError) -> io::Error {
    use io::ErrorKind as K;
    match e {
        SftpError::Status(s) => {
            let kind = match s.status_code {
                StatusCode::NoSuchFile => K::NotFound,
                StatusCode::PermissionDenied => K::PermissionDenied,
                StatusCode::Eof => K::UnexpectedEof,
                StatusCode::NoConnection | StatusCode::ConnectionLost => K::ConnectionAborted,
                StatusCode::OpUnsupported => K::Unsupported,
                _ => K::Other,
            };
            let msg = if s.error_message.is_empty() {
                s.status_code.to_string()
            } else {
                s.error_message
            };
            io::Error::new(kind, sentence_case(msg))
        }
        SftpError::Timeout => io::Error::new(K::TimedOut, "the server did not answer in time"),
        SftpError::IO(m) => io::Error::new(K::ConnectionAborted, format!("connection lost ({m})")),
        SftpError::UnexpectedBehavior(m)
            if m.contains("sender dropped") || m.contains("session closed") =>
        {
            io::Error::new(K::ConnectionAborted, "connection lost")
        }
        other => io::Error::other(other.to_string()),
    }
}

fn is_status(e: &SftpError, code: StatusCode) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == code)
}

fn observed_of(a: &FileAttributes) -> Option<Observed> {
    let t = a.file_type();
    let kind = if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else {
        return None;
    };
    Some(Observed {
        kind,
        size: if kind == Kind::File { a.len() } else { 0 },
        mtime: MTime::new(i64::from(a.mtime.unwrap_or(0)), 0),
        mode: a.permissions.map(crate::index::mode::perm_bits),
    })
}

/// SFTP v3 times are unsigned 32-bit seconds.
fn sftp_time(t: MTime) -> u32 {
    t.secs.clamp(0, i64::from(u32::MAX)) as u32
}

/// An SSH string: u32 length, then the bytes.
fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn status_ok(p: Packet) -> Result<(), SftpError> {
    match p {
        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(s) => Err(SftpError::Status(s)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

impl Sftp {
    /// The remote `.sync.lock`, as messages and the process-wide record of held locks name it.
    fn lock_place(&self) -> String {
        format!("{}:{}", self.host, self.join(LOCK_FILE))
    }

    /// A session for the next operation, in turn. Path-based requests may use any session;
    /// everything done through one handle must keep the session it got here.
    fn raw(&self) -> &Arc<RawSftpSession> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.sessions[i % self.sessions.len()]
    }

    /// The remote path of `p`.
    fn path(&self, p: &RelPath) -> String {
        self.join(p.as_str())
    }

    fn join(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else if self.root == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// Where this store is, as messages say it (`on user@host:port`).
    fn place(&self) -> String {
        format!("on {}", self.host)
    }

    fn err(&self, what: &str, path: &str, e: SftpError) -> StoreError {
        StoreError::io(format!("{what} {}:{path}", self.host), to_io(e))
    }

    /// `lstat`; `None` when nothing is there.
    async fn lstat(&self, path: &str) -> Result<Option<FileAttributes>, SftpError> {
        match self.raw().lstat(path).await {
            Ok(a) => Ok(Some(a.attrs)),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renames, replacing `to` atomically when the server has `posix-rename@openssh.com`.
    async fn rename_over(&self, from: &str, to: &str) -> Result<(), SftpError> {
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

    async fn hardlink(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let mut data = Vec::new();
        put_str(&mut data, from);
        put_str(&mut data, to);
        status_ok(self.raw().extended(ext::HARDLINK, data).await?)
    }

    /// Creates `p` and its missing parents; `p` itself, when made, with `mode` (see
    /// `Store::mkdir`).
    async fn mkdir_p(&self, p: &RelPath, mode: Option<u32>) -> Result<Option<u32>, StoreError> {
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
    async fn exact_mode(&self, p: &RelPath, mode: Option<u32>) -> Result<Option<u32>, StoreError> {
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

    /// A free name for `p` in the trash (`.sync-trash/<p>~<stamp>`), its folder created.
    async fn trash_slot(&self, p: &RelPath) -> Result<String, StoreError> {
        let (dir, base) = trash_name(p, crate::time::now_secs());
        self.mkdir_p(&dir, None).await?;
        for n in 0..TRASH_SLOTS {
            let slot = format!("{}/{}", self.path(&dir), trash_slot_name(&base, n));
            match self.lstat(&slot).await {
                Ok(None) => return Ok(slot),
                Ok(Some(_)) => continue,
                Err(e) => return Err(self.err("cannot stat", &slot, e)),
            }
        }
        Err(StoreError::io(
            format!("no free name for {p} in the trash {}", self.place()),
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }

    async fn trash(&self, p: &RelPath) -> Result<(), StoreError> {
        let path = self.path(p);
        match self.lstat(&path).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => {}
            Err(e) => return Err(self.err("cannot stat", &path, e)),
        }
        let slot = self.trash_slot(p).await?;
        match self.raw().rename(path.as_str(), slot.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
            Err(e) => Err(self.err("cannot move to the trash", &path, e)),
        }
    }

    /// A new temp beside `p`, remembered until it is put in place (`made`).
    fn temp_for(&self, p: &RelPath) -> String {
        let name = temp_name(p.name());
        let tmp = match p.parent() {
            Some(parent) if !parent.is_root() => format!("{}/{name}", self.path(&parent)),
            _ => self.join(&name),
        };
        self.made.add(&tmp);
        tmp
    }

    /// Makes the rename that just put `path` (in the root) in place durable, before anything
    /// that relies on it (the other side's index) is written. Our server fsyncs a folder
    /// handle; OpenSSH's fsyncs only files, so there the renamed file is fsynced, which on a
    /// journalling file system commits the rename with it. Best effort: a server without
    /// `fsync@openssh.com` has no way to ask.
    async fn make_rename_durable(&self, path: &str) {
        if !self.fsync {
            return;
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
        if let Err(e) = res {
            tracing::warn!("cannot make {}:{path} durable: {}", self.host, to_io(e));
        }
    }

    /// Reads a whole (small) file, `None` when it does not exist.
    async fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut r = match xfer::open_read(self, path, None).await {
            Ok(r) => r,
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(self.err("cannot read", path, e)),
        };
        while let Some(chunk) = r.next_chunk().await {
            out.extend_from_slice(&chunk.map_err(|e| self.err("cannot read", path, e))?);
        }
        Ok(Some(out))
    }

    /// `bytes` into a new file at `tmp`, fsynced; nothing left behind on failure. Putting it
    /// in place is the caller's rename.
    async fn write_temp(&self, tmp: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
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

/// Connects to a remote replica (host key checked against known_hosts): the SSH connection,
/// the first SFTP channel and what the server can do, the synced folder checked, and more
/// channels beside the first.
pub async fn open(r: &Remote, cfg: &Config, accept_new: bool) -> Result<SftpStore, StoreError> {
    let ssh = connect::connect(r, accept_new).await?;
    let port = r.port.unwrap_or(22);
    let host = if r.host.contains(':') {
        format!("{}@[{}]:{port}", connect::user_of(r), r.host)
    } else {
        format!("{}@{}:{port}", connect::user_of(r), r.host)
    };
    let sftp_cfg = russh_sftp::client::Config {
        max_packet_len: 4 << 20,
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Default::default()
    };
    let (raw, version) = first_session(&ssh, &host, &sftp_cfg).await?;
    let ext = |n: &str| version.extensions.contains_key(n);
    let (read_len, write_len) = io_lengths(&raw, ext(ext::LIMITS)).await;
    let root = synced_folder(&raw, &host, r, ext(ext::INDEX_REFRESH)).await?;
    let mut sessions = vec![Arc::new(raw)];
    sessions.extend(more_sessions(&ssh, &host, &sftp_cfg, CHANNELS - 1).await);
    let s = Sftp {
        sessions,
        ssh: Arc::new(ssh),
        next: std::sync::atomic::AtomicUsize::new(0),
        host,
        root,
        posix_rename: ext(ext::POSIX_RENAME),
        hardlink: ext(ext::HARDLINK),
        fsync: ext(ext::FSYNC),
        index_refresh: ext(ext::INDEX_REFRESH),
        batch: ext(ext::WRITE_FILES_WITH_MODE) && ext(ext::INSTALL_FILES) && ext(ext::READ_FILES),
        read_len,
        write_len,
        made: made::Made::default(),
    };
    tracing::debug!(
        root = %s.root, read_len, write_len, posix_rename = s.posix_rename,
        index_refresh = s.index_refresh, channels = s.sessions.len(), "SFTP session open"
    );
    Ok(SftpStore {
        s: Arc::new(s),
        describe: r.describe(),
        lock_stale_secs: cfg.lock_stale_secs,
        st: Box::new(State {
            loaded: Mutex::new(None),
            staged: Mutex::new(None),
            locked: std::sync::atomic::AtomicBool::new(false),
            links: Mutex::new(Default::default()),
        }),
    })
}

/// The first SFTP channel, started: the server's version and extensions.
async fn first_session(
    ssh: &connect::Handle,
    host: &str,
    cfg: &russh_sftp::client::Config,
) -> Result<(RawSftpSession, russh_sftp::protocol::Version), StoreError> {
    let fail = |what: &str, e: russh::Error| StoreError::Ssh {
        what: format!("{what} on {host}"),
        source: Box::new(e),
    };
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| fail("cannot open an SSH session", e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| fail("the SFTP subsystem is not available", e))?;
    let raw = RawSftpSession::new_with_config(channel.into_stream(), cfg.clone());
    let version = raw.init().await.map_err(|e| StoreError::Io {
        what: format!("the SFTP server on {host} did not start"),
        source: to_io(e),
    })?;
    Ok((raw, version))
}

/// The READ and WRITE lengths to use: what the server's `limits@openssh.com` allows (within
/// bounds), else 64 KiB, which every server accepts in practice.
async fn io_lengths(raw: &RawSftpSession, has_limits: bool) -> (u32, u32) {
    if !has_limits {
        return (64 * 1024, 64 * 1024);
    }
    let (mut read_len, mut write_len) = (32 * 1024u32, 32 * 1024u32);
    if let Ok(l) = raw.limits().await {
        let cap = |v: u64| -> u32 { v.clamp(32 * 1024, 256 * 1024) as u32 };
        if l.max_read_len > 0 {
            read_len = cap(l.max_read_len);
        }
        if l.max_write_len > 0 {
            write_len = cap(l.max_write_len);
        }
    }
    (read_len, write_len)
}

/// The absolute path of the synced folder, checked to be one. A plain server's `/` is its
/// whole file system, and an empty path its login folder: a slip of the target (`host:` for
/// `host:Sync`) that would index and fill either. Taken only when a replica is already there
/// (the login folder also when its path is given). Our server's `/` is its synced root.
async fn synced_folder(
    raw: &RawSftpSession,
    host: &str,
    r: &Remote,
    ours: bool,
) -> Result<String, StoreError> {
    let wanted = if r.path.is_empty() { "." } else { &r.path };
    let resolved = raw.realpath(wanted).await.map_err(|e| {
        StoreError::io(
            format!("cannot open the synced folder {host}:{wanted}"),
            to_io(e),
        )
    })?;
    let root = resolved
        .files
        .into_iter()
        .next()
        .map(|f| f.filename)
        .ok_or_else(|| StoreError::Unresolved {
            host: host.to_string(),
            path: wanted.to_string(),
        })?;
    let root = if root.len() > 1 {
        root.trim_end_matches('/').to_string()
    } else {
        root
    };
    match raw.stat(root.as_str()).await {
        Ok(a) if a.attrs.file_type().is_dir() => {}
        Ok(_) => {
            return Err(StoreError::NotAFolder {
                place: format!("{host}:{root}"),
                remote: true,
            });
        }
        Err(e) => {
            return Err(StoreError::io(
                format!("cannot open the synced folder {host}:{root} (create it first)"),
                to_io(e),
            ));
        }
    }
    let implicit = r.path.is_empty() || root == "/";
    if implicit && !ours {
        let index = format!("{}/{INDEX_FILE}", if root == "/" { "" } else { &root });
        if !matches!(raw.lstat(index.as_str()).await, Ok(a) if a.attrs.file_type().is_file()) {
            let host = host.to_string();
            return Err(if root == "/" {
                StoreError::WholeFileSystem { host }
            } else {
                StoreError::LoginFolder { host, root }
            });
        }
    }
    Ok(root)
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

/// Up to `n` more SFTP channels on the connection; a server that allows fewer gets fewer.
async fn more_sessions(
    ssh: &connect::Handle,
    host: &str,
    cfg: &russh_sftp::client::Config,
    n: usize,
) -> Vec<Arc<RawSftpSession>> {
    let one = || async {
        let channel = ssh.channel_open_session().await.ok()?;
        channel.request_subsystem(true, "sftp").await.ok()?;
        let raw = RawSftpSession::new_with_config(channel.into_stream(), cfg.clone());
        raw.init().await.ok()?;
        Some(Arc::new(raw))
    };
    let got: Vec<_> = futures::future::join_all((0..n).map(|_| one()))
        .await
        .into_iter()
        .flatten()
        .collect();
    if got.len() < n {
        tracing::debug!(
            host,
            opened = got.len(),
            wanted = n,
            "fewer extra SFTP channels"
        );
    }
    got
}

/// What an upload of the index would change: its entries (by digest) and everything else
/// with the peer records' counters zeroed. Equal fingerprints mean the upload is needless.
#[derive(PartialEq)]
struct Fingerprint {
    entries: ContentHash,
    rest: Vec<u8>,
}

impl Fingerprint {
    fn of(index: &Index, entries: ContentHash) -> Fingerprint {
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
    fn index_path(&self) -> String {
        self.s.join(INDEX_FILE)
    }

    async fn lock_async(&self, info: &LockInfo) -> Result<(), StoreError> {
        let s = &self.s;
        let path = s.join(LOCK_FILE);
        let place = s.lock_place();
        let body = serde_json::to_vec(info).unwrap_or_default();
        // A few rounds: a lock released between our create and our look (a daemon's index
        // update takes moments) is simply tried again.
        let mut last = None;
        for _ in 0..5 {
            let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
            let raw = s.raw();
            match raw
                .open(path.as_str(), flags, FileAttributes::empty())
                .await
            {
                Ok(h) => {
                    let res = raw.write(h.handle.as_str(), 0, body.clone()).await;
                    let _ = raw.close(h.handle).await;
                    self.st
                        .locked
                        .store(res.is_ok(), std::sync::atomic::Ordering::Relaxed);
                    if res.is_ok() {
                        lock::note_held(&place, true);
                    }
                    return res.map(|_| ()).map_err(|e| s.err("cannot write", &path, e));
                }
                Err(e) => {
                    // Nothing there: released meanwhile, or a real error (a folder we may not
                    // write to); the next round tells which.
                    let Some(attrs) = s.lstat(&path).await.ok().flatten() else {
                        last = Some(e);
                        continue;
                    };
                    let bytes = match s.read_all(&path).await {
                        Ok(None) => {
                            last = Some(e);
                            continue;
                        }
                        Ok(Some(b)) => Some(b),
                        Err(_) => None,
                    };
                    let age = crate::time::now_secs() - i64::from(attrs.mtime.unwrap_or(0));
                    lock::judge(
                        bytes.as_deref(),
                        attrs.size.unwrap_or(1),
                        std::time::Duration::from_secs(age.max(0) as u64),
                        self.lock_stale_secs,
                        &place,
                    )
                    .map_err(|holder| StoreError::Locked {
                        place: place.clone(),
                        holder,
                        stale_secs: self.lock_stale_secs,
                    })?;
                    tracing::warn!(lock = %path, host = %s.host, "breaking a stale lock");
                    let _ = s.raw().remove(path.as_str()).await;
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => s.err("cannot create", &path, e),
            None => StoreError::Locked {
                place,
                holder: lock::Holder::Unknown,
                stale_secs: self.lock_stale_secs,
            },
        })
    }

    /// The remote `.sync` and its entries digest; `None` when there is none.
    async fn load_digested(&self) -> Result<Option<(Index, ContentHash)>, StoreError> {
        let path = self.index_path();
        let Some(bytes) = self.s.read_all(&path).await? else {
            return Ok(None);
        };
        // Parsing a big index takes milliseconds: off the runtime, beside the other side's.
        let parsed = tokio::task::spawn_blocking(move || {
            let idx = from_json_slice(&bytes)?;
            let digest = idx.entries_digest();
            Ok::<_, crate::index::FormatError>((idx, digest))
        })
        .await
        .map_err(|e| StoreError::io("the index parse task failed", io::Error::other(e)))?;
        let (idx, digest) = parsed.map_err(|e| {
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
        Ok(Some((idx, digest)))
    }

    async fn stage_index_async(&self, index: &Index) -> Result<Option<StagedIndex>, StoreError> {
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
        self.s.write_temp(&tmp, to_json_vec(index)).await?;
        if let Ok(mut st) = self.st.staged.lock() {
            *st = Some(norm);
        }
        Ok(Some(StagedIndex { tmp: tmp.into() }))
    }

    async fn commit_index_async(&self, staged: StagedIndex) -> Result<(), StoreError> {
        let tmp = staged.tmp.to_string_lossy();
        let path = self.index_path();
        if let Err(e) = self.s.rename_over(&tmp, &path).await {
            let _ = self.s.raw().remove(tmp.as_ref()).await;
            return Err(self.s.err("cannot put in place", &path, e));
        }
        self.s.made.done(&tmp);
        self.s.make_rename_durable(&path).await;
        let staged = self.st.staged.lock().ok().and_then(|mut s| s.take());
        if let Ok(mut l) = self.st.loaded.lock() {
            *l = staged;
        }
        Ok(())
    }

    fn through_link(&self, link: &RelPath) -> StoreError {
        StoreError::ThroughLink {
            link: link.clone(),
            place: self.s.place(),
        }
    }

    /// Refuses `p`, and anything a replaced or deleted file would go through on its way to
    /// the trash, when a link is in the way (see `not_through_link`).
    async fn not_through_link_or_trash(&self, p: &RelPath) -> Result<(), StoreError> {
        if let Ok(trash) = RelPath::parse(TRASH_DIR)
            && self.st.links.lock().is_ok_and(|l| l.links.contains(&trash))
        {
            return Err(self.through_link(&trash));
        }
        self.not_through_link(p).await
    }

    /// Refuses `p` when it, or a folder above it, is a symlink on the remote: the server would
    /// follow it (OpenSSH's does, wherever it points), and the walk never does. The walk's
    /// links answer for what it listed; below a folder it did not list (ignored on that side,
    /// say) each folder on the way is looked at once.
    async fn not_through_link(&self, p: &RelPath) -> Result<(), StoreError> {
        let poisoned = || {
            StoreError::io(
                "the store's record of remote links",
                io::Error::other("poisoned by a panic"),
            )
        };
        let unknown: Vec<RelPath> = {
            let l = self.st.links.lock().map_err(|_| poisoned())?;
            if let Some(link) = std::iter::once(p.clone())
                .chain(p.ancestors())
                .find(|a| l.links.contains(a))
            {
                return Err(self.through_link(&link));
            }
            if l.unwalked.is_empty() {
                return Ok(());
            }
            // Folders above `p`, outermost first; those below the outermost unlisted one.
            let mut above: Vec<RelPath> = p.ancestors().collect();
            above.reverse();
            match above.iter().position(|a| l.unwalked.contains(a)) {
                None => return Ok(()),
                Some(i) => above
                    .split_off(i + 1)
                    .into_iter()
                    .filter(|a| !l.checked.contains(a))
                    .collect(),
            }
        };
        for a in unknown {
            let path = self.s.path(&a);
            match self.s.lstat(&path).await {
                Ok(Some(attrs)) if attrs.file_type().is_symlink() => {
                    if let Ok(mut l) = self.st.links.lock() {
                        l.links.insert(a.clone());
                    }
                    return Err(self.through_link(&a));
                }
                Ok(Some(attrs)) if attrs.file_type().is_dir() => {
                    self.st
                        .links
                        .lock()
                        .map_err(|_| poisoned())?
                        .checked
                        .insert(a);
                }
                // Missing (made by this sync) or not a folder (the operation fails on its own).
                Ok(_) => break,
                Err(e) => return Err(self.s.err("cannot stat", &path, e)),
            }
        }
        Ok(())
    }

    async fn current_async(&self) -> Result<Current, StoreError> {
        // Why our server could not refresh its index: when its `.sync` is damaged, the
        // server's words name the folder it serves, which the path we see (`/`) does not.
        let mut hub_said = None;
        if self.s.index_refresh {
            let t0 = std::time::Instant::now();
            match self.server_refresh().await {
                Ok(stats) => {
                    let refreshed = t0.elapsed().as_millis() as u64;
                    let loaded = self.load_digested().await?;
                    tracing::debug!(
                        refreshed,
                        loaded = t0.elapsed().as_millis() as u64,
                        "remote index current (ms)"
                    );
                    if let Some((index, loaded)) = loaded {
                        return Ok(Current {
                            index,
                            loaded,
                            stats,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!("the server could not refresh its index ({e}); scanning");
                    hub_said = std::error::Error::source(&e).map(|c| c.to_string());
                }
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
        let (mut index, loaded) = match loaded? {
            Some(x) => x,
            None => {
                let i = Index::new(ReplicaId::random());
                let d = i.entries_digest();
                (i, d)
            }
        };
        let locked = self.st.locked.load(std::sync::atomic::Ordering::Relaxed);
        let stats = walk::refresh(&self.s, &mut index, found, locked).await?;
        Ok(Current {
            index,
            loaded,
            stats,
        })
    }

    /// Asks our own server to bring its `.sync` up to date; returns what it left as it was:
    /// the paths its scan could not read, the files its clients are still writing (also
    /// "moving": left for the next sync) and what it leaves out by nature.
    async fn server_refresh(&self) -> Result<ScanStats, StoreError> {
        let s = &self.s;
        let raw = s.raw();
        raw.set_timeout(3600);
        let res = raw.extended(ext::INDEX_REFRESH, Vec::new()).await;
        raw.set_timeout(REQUEST_TIMEOUT_SECS);
        let reply = res.map_err(|e| s.err("index refresh", &s.root, e))?;
        let Packet::ExtendedReply(r) = reply else {
            return status_ok(reply)
                .map(|()| Default::default())
                .map_err(|e| s.err("index refresh", &s.root, e));
        };
        let left =
            crate::proto::left_out::decode_reply(&bytes::Bytes::from(r.data)).map_err(|_| {
                StoreError::io(
                    format!("the reply to {} from {}", ext::INDEX_REFRESH, s.host),
                    io::Error::new(io::ErrorKind::InvalidData, "malformed"),
                )
            })?;
        Ok(ScanStats {
            unreadable: left.unreadable,
            moving: left.writing.clone(),
            writing: left.writing,
            skipped: left.skipped,
            skipped_more: left.skipped_more,
            ..ScanStats::default()
        })
    }

    async fn write_async(
        &self,
        p: &RelPath,
        data: Reader,
        put: Put,
    ) -> Result<Observed, StoreError> {
        let Put {
            mtime,
            expect,
            fresh,
            size,
            mode,
        } = put;
        let s = &self.s;
        let tmp = s.temp_for(p);
        let res = async {
            let handle = match xfer::create(s, &tmp, mode).await {
                Err(e) if is_status(&e, StatusCode::NoSuchFile) && p.parent().is_some() => {
                    // The folder is missing (a first upload into it): make it, then retry once.
                    s.mkdir_p(&p.parent().unwrap_or_else(RelPath::root), None)
                        .await?;
                    xfer::create(s, &tmp, mode).await
                }
                r => r,
            }
            .map_err(|e| s.err("cannot create a temp file", &tmp, e))?;
            let (size, shown) = xfer::upload(
                s,
                &tmp,
                handle,
                data,
                Some(mtime),
                expect.map(|h| (h, p)),
                Some(size),
            )
            .await?;
            self.install(&tmp, p, fresh).await?;
            s.made.done(&tmp);
            Ok(Observed {
                kind: Kind::File,
                size,
                mtime: MTime::new(i64::from(sftp_time(mtime)), 0),
                mode: shown.or(mode),
            })
        }
        .await;
        if res.is_err() {
            let _ = s.raw().remove(tmp.as_str()).await;
        }
        res
    }

    /// Puts the finished temp file at `p`, keeping whatever was there in the trash.
    async fn install(&self, tmp: &str, p: &RelPath, fresh: bool) -> Result<(), StoreError> {
        let s = &self.s;
        let path = s.path(p);
        if fresh {
            // SFTP's plain rename never replaces (OpenSSH links, then unlinks; ours uses
            // RENAME_NOREPLACE), so a file that arrived since the scan is left alone.
            return match s.raw().rename(tmp, path.as_str()).await {
                Ok(_) => Ok(()),
                Err(e) => match s.lstat(&path).await {
                    Ok(Some(_)) => Err(StoreError::Appeared {
                        path: p.clone(),
                        place: s.place(),
                    }),
                    _ => Err(s.err("cannot put in place", &path, e)),
                },
            };
        }
        // Usually the trash folder exists and the slot is free: keep the old version with one
        // hard link (which never replaces anything), then rename over it.
        if s.hardlink {
            let (dir, base) = trash_name(p, crate::time::now_secs());
            let slot = format!("{}/{base}", s.path(&dir));
            if s.hardlink(&path, &slot).await.is_ok() {
                return s
                    .rename_over(tmp, &path)
                    .await
                    .map_err(|e| s.err("cannot put in place", &path, e));
            }
        }
        match s.lstat(&path).await {
            Ok(Some(a)) if a.file_type().is_file() => {
                let slot = s.trash_slot(p).await?;
                // A hard link keeps the old version while the rename replaces it atomically.
                let linked = s.hardlink && s.hardlink(&path, &slot).await.is_ok();
                if !linked {
                    s.raw()
                        .rename(path.as_str(), slot.as_str())
                        .await
                        .map_err(|e| s.err("cannot move to the trash", &path, e))?;
                }
            }
            Ok(Some(_)) => s.trash(p).await?,
            Ok(None) => {}
            Err(e) => return Err(s.err("cannot stat", &path, e)),
        }
        s.rename_over(tmp, &path)
            .await
            .map_err(|e| s.err("cannot put in place", &path, e))
    }

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

    fn batches(&self) -> bool {
        self.s.batch
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
        // Not our server: one write per file, a few at a time, as the engine would.
        let each = files.into_iter().map(|f| async move {
            self.not_through_link_or_trash(&f.path).await?;
            let data: Reader = Box::pin(io::Cursor::new(f.bytes));
            self.write_async(&f.path, data, f.put).await
        });
        let all = futures::StreamExt::collect(futures::StreamExt::buffered(
            futures::stream::iter(each),
            8,
        ));
        self.guard_all(n, all).await
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
}

impl SftpStore {
    async fn unlock_async(&self) -> Result<(), StoreError> {
        /// Less than the CLI's bound on a stopped sync's cleanup, which ends with the lock.
        const MADE_TEMPS_LIMIT: std::time::Duration = std::time::Duration::from_secs(8);
        let path = self.s.join(LOCK_FILE);
        // Only a lock this store took is released; someone else's stays.
        if !self
            .st
            .locked
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        // Under the lock still, so no other sync is writing temps there; bounded, so the lock
        // itself is given back (temps left go at the next sync's scan).
        let _ = tokio::time::timeout(MADE_TEMPS_LIMIT, self.s.remove_made_temps()).await;
        // Given up even if the remove fails (a lost connection): what is left there is
        // then a leftover of this process, which the next attempt may break.
        lock::note_held(&self.s.lock_place(), false);
        match self.s.raw().remove(path.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
            Err(e) => Err(self.s.err("cannot remove", &path, e)),
        }
    }

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

/// What to do about our server's damaged index, from what it said: its own advice (which
/// names the folder it serves), else its words as they are.
fn hub_fix(said: &str) -> String {
    match said.find("Run `") {
        Some(i) => format!("On the hub, r{}", &said[i + 1..]),
        None => format!("The hub says: {said}"),
    }
}

/// Whether a temp file met on a walk is a leftover of an interrupted sync.
pub(crate) fn stale_temp(mtime: Option<MTime>) -> bool {
    let age = crate::time::now_secs() - mtime.map_or(0, |t| t.secs);
    age > STALE_TEMP_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_keep_the_case_of_what_they_name() {
        let s = |m: &str| sentence_case(m.to_string());
        assert_eq!(s("No such file"), "no such file");
        assert_eq!(s("EOF"), "EOF");
        assert_eq!(
            s("cannot open /tmp/MyRoot/.sync: No such file"),
            "cannot open /tmp/MyRoot/.sync: No such file"
        );
        assert_eq!(
            s("Run `filesync index --root /A/B`"),
            "run `filesync index --root /A/B`"
        );
        assert_eq!(s(""), "");
    }
}
