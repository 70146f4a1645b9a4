//! The SFTP request loop of one channel: a reader task decodes packets into a bounded queue,
//! READ/WRITE requests run concurrently when the client pipelines them (bounded per session;
//! inline when nothing is queued behind them), every other request waits for
//! those in flight and runs alone, so clients see the effects in the order they asked.
//! Replies leave in request order (paramiko needs that), small ones coalesced into one SSH
//! packet.

use super::batch;
use super::fs::{self, ClientOps, FsError, FsResult, Root};
use crate::proto::{self as wire, Request, ext};
use crate::relpath::RelPath;
use crate::replica::layout::INDEX_FILE;
use crate::store::LocalStore;
use crate::watch::{Freshness, FreshnessProbe};
use bytes::{Bytes, BytesMut};
use russh::ChannelMsg;
use russh::server::Msg;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// READ/WRITE requests of one session running at once (OpenSSH's client keeps 64 outstanding).
const MAX_IN_FLIGHT: u32 = 64;
/// Writes up to this size run on the connection's thread (see the dispatcher).
const SMALL_WRITE: usize = 64 * 1024;
const MAX_HANDLES: usize = 1024;
const READDIR_BATCH: usize = 128;
/// Replies smaller than this are gathered into one channel write.
const COALESCE: usize = 64 * 1024;

/// What every session of the server shares.
pub struct Shared {
    pub root: Root,
    pub read_only: bool,
    /// The daemon's watcher, when it keeps `.sync` current: index refreshes ask it first.
    pub freshness: Option<FreshnessProbe>,
}

enum Handle {
    File { file: File, append: bool },
    Dir(Mutex<DirState>),
}

struct DirState {
    fd: rustix::fd::OwnedFd,
    dir: rustix::fs::Dir,
}

struct Session {
    shared: Arc<Shared>,
    handles: Mutex<HashMap<u32, Arc<Handle>>>,
    next_handle: AtomicU32,
}

/// What one connection's SFTP sessions may hold in memory, over all its channels: replies
/// made and not yet sent (the dispatcher waits for room), and requests received and not
/// yet taken up (past the limit the session is closed).
///
/// The reader never waits: russh hands channel data over on the one loop that also reads
/// the client's window adjustments, so a reader held back by replies that wait for the
/// client's window would hold back the very adjustment they wait for (a pipelining client
/// such as paramiko's prefetch then stalls for good). Only a client that sends requests
/// and does not read the answers fills the request limit.
pub struct Budget {
    replies: Arc<Semaphore>,
    queued: std::sync::atomic::AtomicUsize,
}

/// Replies made and not yet sent, in KiB.
const REPLY_BUDGET_KIB: usize = 8 * 1024;
/// Requests received and not yet taken up, in bytes (as held in memory).
const QUEUE_LIMIT: usize = 16 << 20;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            replies: Arc::new(Semaphore::new(REPLY_BUDGET_KIB)),
            queued: Default::default(),
        }
    }
}

/// A reply's room in the budget, given back when it has gone out.
type Share = tokio::sync::OwnedSemaphorePermit;

/// A decoded request and the bytes it holds while it waits.
struct Job {
    id: u32,
    req: Request,
    size: usize,
}

/// A reply, its place in the order of requests, and the room it gives back once sent.
type Out = (u64, Bytes, Share);

/// Serves SFTP on `channel` until the client closes it; `budget` is the connection's.
pub async fn serve(
    channel: russh::Channel<Msg>,
    shared: Arc<Shared>,
    peer: String,
    budget: Arc<Budget>,
) {
    let (rx, tx) = channel.split();
    let (req_tx, req_rx) = mpsc::unbounded_channel::<Job>();
    // Replies carry their request's sequence number: the writer sends them in request
    // order, because paramiko's pipelined writes lose track of out-of-order replies.
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Out>();
    let (abort_tx, abort) = tokio::sync::watch::channel(false);
    let outbox = Outbox {
        tx,
        pending: BytesMut::new(),
        held: Vec::new(),
        abort: abort.clone(),
    };
    let reader = async {
        if !read_requests(rx, req_tx, &budget, &peer).await {
            let _ = abort_tx.send(true);
        }
    };
    // The reader, the dispatcher and the writer are three futures of this one task, not three
    // tasks: each request passes through all three, and a wake-up between tasks can mean a
    // hop between threads, which dominated the time of a chain of small requests. The
    // reader ends at the client's EOF, which ends the dispatcher's queue, whose end closes
    // the writer's.
    tokio::join!(
        reader,
        dispatch(req_rx, out_tx, shared, &budget, abort, &peer),
        write_replies(outbox, out_rx),
    );
    tracing::debug!(peer = %peer, "SFTP session ended");
}

/// The room a request's reply takes until it is sent, in KiB (at least one; at most all).
fn reply_kib(req: &Request) -> u32 {
    let reply = match req {
        Request::Read { len, .. } => (*len).min(wire::MAX_IO) as usize,
        Request::ReadDir { .. } | Request::Extended { .. } => wire::MAX_IO as usize,
        _ => 0,
    };
    (reply + 64).div_ceil(1024).clamp(1, REPLY_BUDGET_KIB) as u32
}

/// Decodes the client's packets into jobs as they come; never waits on the rest. `true` at
/// the client's end of the channel, `false` when the session must be given up (a bad packet,
/// a client that does not read its answers).
async fn read_requests(
    mut rx: russh::ChannelReadHalf,
    req_tx: mpsc::UnboundedSender<Job>,
    budget: &Budget,
    peer: &str,
) -> bool {
    let mut buf = BytesMut::with_capacity(512 * 1024);
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => buf.extend_from_slice(&data),
            ChannelMsg::Eof | ChannelMsg::Close => return true,
            _ => continue,
        }
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if len == 0 || len > wire::MAX_PACKET + 1024 {
                tracing::warn!(%peer, len, "SFTP packet too large or empty; closing the session");
                return false;
            }
            if buf.len() < 4 + len as usize {
                break;
            }
            let _ = buf.split_to(4);
            let body = buf.split_to(len as usize);
            // A small request is copied out: a slice would keep the whole read buffer alive as
            // long as the request waits. A write's data stays where it arrived.
            let body = if body.len() < 4096 {
                Bytes::copy_from_slice(&body)
            } else {
                body.freeze()
            };
            let (id, req) = match wire::decode(body) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%peer, "{e}; closing the session");
                    return false;
                }
            };
            let size = len as usize + std::mem::size_of::<Job>();
            let queued = budget.queued.fetch_add(size, Ordering::Relaxed) + size;
            if queued > QUEUE_LIMIT {
                tracing::warn!(
                    %peer,
                    "the client sent {} MiB of requests without reading the answers; closing the session",
                    queued >> 20
                );
                budget.queued.fetch_sub(size, Ordering::Relaxed);
                return false;
            }
            if req_tx.send(Job { id, req, size }).is_err() {
                return false;
            }
        }
    }
    true
}

/// The sending end of a session's channel: replies gathered into SSH packets, each send
/// given up when the session is aborted (a send may wait on the client's window forever).
struct Outbox {
    tx: russh::ChannelWriteHalf<Msg>,
    pending: BytesMut,
    /// The room of replies gathered in `pending`, given back once it has gone out.
    held: Vec<Share>,
    abort: tokio::sync::watch::Receiver<bool>,
}

impl Outbox {
    /// Adds a reply; `false` once the channel is gone or the session aborted.
    async fn push(&mut self, b: Bytes, share: Share) -> bool {
        if b.len() >= COALESCE {
            let sent = self.flush().await && self.send(b).await;
            drop(share);
            return sent;
        }
        self.pending.extend_from_slice(&b);
        self.held.push(share);
        self.pending.len() < COALESCE || self.flush().await
    }

    async fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let b = self.pending.split().freeze();
        let sent = self.send(b).await;
        self.held.clear();
        sent
    }

    async fn send(&mut self, b: Bytes) -> bool {
        let (tx, abort) = (&self.tx, &mut self.abort);
        tokio::select! {
            r = tx.data_bytes(b) => r.is_ok(),
            _ = abort.wait_for(|a| *a) => false,
        }
    }
}

/// Sends every reply that is next in request order, small ones gathered into one SSH packet.
async fn write_replies(mut out: Outbox, mut out_rx: mpsc::UnboundedReceiver<Out>) {
    let mut early: BTreeMap<u64, (Bytes, Share)> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut going = true;
    while going && let Some((seq, b, share)) = out_rx.recv().await {
        early.insert(seq, (b, share));
        while let Ok((seq, b, share)) = out_rx.try_recv() {
            early.insert(seq, (b, share));
        }
        while going && let Some((b, share)) = early.remove(&next_seq) {
            next_seq += 1;
            going = out.push(b, share).await;
        }
        going = going && out.flush().await;
    }
    if going {
        let _ = out.tx.eof().await;
    }
    let _ = out.tx.close().await;
}

/// Runs each job: READ/WRITE concurrently when the client pipelines them (bounded; inline
/// when nothing waits behind them), every other request alone once those in flight are
/// done, so clients see the effects in the order they asked.
async fn dispatch(
    mut req_rx: mpsc::UnboundedReceiver<Job>,
    out_tx: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    budget: &Budget,
    mut abort: tokio::sync::watch::Receiver<bool>,
    peer: &str,
) {
    let session = Arc::new(Session {
        shared,
        handles: Mutex::new(HashMap::new()),
        next_handle: AtomicU32::new(1),
    });
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
    let mut seq = 0u64;
    while let Some(Job { id, req, size }) = req_rx.recv().await {
        budget.queued.fetch_sub(size, Ordering::Relaxed);
        // Room for its reply first: replies the client has not taken yet are held to the
        // budget (requests meanwhile wait in the queue).
        let room = budget.replies.clone().acquire_many_owned(reply_kib(&req));
        let share = tokio::select! {
            r = room => match r {
                Ok(share) => share,
                Err(_) => break,
            },
            _ = abort.wait_for(|a| *a) => break,
        };
        let this = seq;
        seq += 1;
        let concurrent = match &req {
            Request::Read { .. } => true,
            // Appends land at the end in arrival order only if they run one at a time.
            Request::Write { handle, .. } => !session.is_append(handle),
            _ => false,
        };
        // A small write is a copy into the page cache: cheaper here than the two thread
        // wake-ups a hop to the blocking pool costs (a tree of small files is all these).
        let small_write = matches!(&req, Request::Write { data, .. } if data.len() <= SMALL_WRITE);
        if concurrent && (req_rx.is_empty() || small_write) {
            // Nothing queued behind it: the client is waiting on this reply (one small file
            // after another), so a thread hop would only add latency.
            let _ = out_tx.send((this, session.handle(id, req), share));
        } else if concurrent {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let s = session.clone();
            let out = out_tx.clone();
            // Awaited through the semaphore: the loop's end takes every permit back.
            drop(tokio::task::spawn_blocking(move || {
                // Every request must get its reply, or the in-order writer waits forever.
                let reply =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.handle(id, req)))
                        .unwrap_or_else(|_| wire::status(id, wire::FX_FAILURE, "internal error"));
                let _ = out.send((this, reply, share));
                drop(permit);
            }));
        } else {
            let Ok(all) = slots.acquire_many(MAX_IN_FLIGHT).await else {
                break;
            };
            let reply = if is_quick(&req) {
                // Inline: a thread hop would cost more than these few syscalls, and a tree of
                // small files is a long chain of them (open, write, close per file).
                session.handle(id, req)
            } else {
                let s = session.clone();
                match tokio::task::spawn_blocking(move || s.handle(id, req)).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::error!(%peer, "SFTP request {id} failed: {e}");
                        wire::status(id, wire::FX_FAILURE, "internal error")
                    }
                }
            };
            let _ = out_tx.send((this, reply, share));
            drop(all);
        }
    }
    let _ = slots.acquire_many(MAX_IN_FLIGHT).await;
    // What an abort left in the queue no longer counts against the connection.
    req_rx.close();
    while let Ok(job) = req_rx.try_recv() {
        budget.queued.fetch_sub(job.size, Ordering::Relaxed);
    }
}

/// Requests that are a syscall or two on metadata; everything that may take long (reading a
/// folder, fsync, an index refresh) goes to the blocking pool instead.
fn is_quick(req: &Request) -> bool {
    !matches!(
        req,
        Request::ReadDir { .. }
            | Request::Extended { .. }
            | Request::Write { .. }
            | Request::Read { .. }
    )
}

fn status_of(id: u32, e: FsError) -> Bytes {
    let (code, msg) = fs::status_code(&e, false);
    wire::status(id, code, &msg)
}

fn ok(id: u32) -> Bytes {
    wire::status(id, wire::FX_OK, "OK")
}

fn done(id: u32, r: FsResult<()>) -> Bytes {
    match r {
        Ok(()) => ok(id),
        Err(e) => status_of(id, e),
    }
}

fn denied_read_only(id: u32) -> Bytes {
    wire::status(id, wire::FX_PERMISSION_DENIED, "the server is read-only")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn version_reply() -> Bytes {
    let mut r = wire::Reply::new(wire::FXP_VERSION, 0).u32(3);
    for (name, data) in ext::OFFERED {
        r = r.string(name.as_bytes()).string(data.as_bytes());
    }
    r.finish()
}

fn statvfs_reply(id: u32, v: &rustix::fs::StatVfs) -> Bytes {
    wire::Reply::new(wire::FXP_EXTENDED_REPLY, id)
        .u64(v.f_bsize)
        .u64(v.f_frsize)
        .u64(v.f_blocks)
        .u64(v.f_bfree)
        .u64(v.f_bavail)
        .u64(v.f_files)
        .u64(v.f_ffree)
        .u64(v.f_favail)
        .u64(v.f_fsid)
        .u64(v.f_flag.bits())
        .u64(v.f_namemax)
        .finish()
}

/// A handle's name on the wire: hex text, because some clients keep handles as UTF-8 strings
/// (russh-sftp decodes them lossily) and raw bytes past 0x7f came back mangled.
fn handle_name(key: u32) -> String {
    format!("{key:x}")
}

fn handle_key(h: &[u8]) -> Option<u32> {
    if h.is_empty() || h.len() > 8 || !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

impl Session {
    fn get(&self, h: &[u8]) -> Option<Arc<Handle>> {
        let key = handle_key(h)?;
        self.handles.lock().ok()?.get(&key).cloned()
    }

    fn is_append(&self, h: &[u8]) -> bool {
        matches!(
            self.get(h).as_deref(),
            Some(Handle::File { append: true, .. })
        )
    }

    fn insert(&self, id: u32, h: Handle) -> Bytes {
        let Ok(mut handles) = self.handles.lock() else {
            return wire::status(id, wire::FX_FAILURE, "internal error");
        };
        if handles.len() >= MAX_HANDLES {
            return wire::status(id, wire::FX_FAILURE, "too many open handles");
        }
        let key = self.next_handle.fetch_add(1, Ordering::Relaxed);
        handles.insert(key, Arc::new(h));
        wire::Reply::new(wire::FXP_HANDLE, id)
            .string(handle_name(key).as_bytes())
            .finish()
    }

    fn root(&self) -> &Root {
        &self.shared.root
    }

    /// Runs one request to completion (blocking I/O; called on the blocking pool).
    fn handle(&self, id: u32, req: Request) -> Bytes {
        let ro = self.shared.read_only;
        let bad_handle = || wire::status(id, wire::FX_FAILURE, "invalid handle");
        match req {
            Request::Init { version } => {
                tracing::debug!(version, "client speaks SFTP version");
                version_reply()
            }
            Request::Open {
                path,
                pflags,
                attrs,
            } => {
                use wire::{PF_APPEND, PF_CREAT, PF_TRUNC, PF_WRITE};
                if ro && pflags & (PF_WRITE | PF_APPEND | PF_CREAT | PF_TRUNC) != 0 {
                    return denied_read_only(id);
                }
                let r = fs::client_path(&path)
                    .and_then(|p| self.root().open_file(&p, pflags, attrs.permissions));
                match r {
                    Ok(file) => self.insert(
                        id,
                        Handle::File {
                            file,
                            append: pflags & PF_APPEND != 0,
                        },
                    ),
                    Err(e) => status_of(id, e),
                }
            }
            Request::Close { handle } => {
                let key = handle_key(&handle);
                let removed = match (key, self.handles.lock()) {
                    (Some(k), Ok(mut hs)) => hs.remove(&k),
                    _ => None,
                };
                match removed {
                    Some(_) => ok(id),
                    None => bad_handle(),
                }
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                let Some(h) = self.get(&handle) else {
                    return bad_handle();
                };
                let Handle::File { file, .. } = &*h else {
                    return bad_handle();
                };
                read_reply(id, file, offset, len.min(wire::MAX_IO))
            }
            Request::Write {
                handle,
                offset,
                data,
            } => {
                let Some(h) = self.get(&handle) else {
                    return bad_handle();
                };
                let Handle::File { file, append } = &*h else {
                    return bad_handle();
                };
                let r = if *append {
                    (&*file).write_all(&data)
                } else {
                    file.write_all_at(&data, offset)
                };
                done(id, r.map_err(FsError::from))
            }
            Request::Lstat { path } => attrs_reply(
                id,
                fs::client_path(&path).and_then(|p| self.root().lstat(&p)),
            ),
            Request::Stat { path } => attrs_reply(
                id,
                fs::client_path(&path).and_then(|p| self.root().stat(&p)),
            ),
            Request::Fstat { handle } => {
                let Some(h) = self.get(&handle) else {
                    return bad_handle();
                };
                let st = match &*h {
                    Handle::File { file, .. } => rustix::fs::fstat(file),
                    Handle::Dir(d) => match d.lock() {
                        Ok(d) => rustix::fs::fstat(&d.fd),
                        Err(_) => return bad_handle(),
                    },
                };
                attrs_reply(id, st.map_err(FsError::from))
            }
            Request::SetStat { path, attrs } => {
                if ro {
                    return denied_read_only(id);
                }
                done(
                    id,
                    fs::client_path(&path).and_then(|p| self.root().setstat(&p, &attrs)),
                )
            }
            Request::FSetStat { handle, attrs } => {
                if ro {
                    return denied_read_only(id);
                }
                let Some(h) = self.get(&handle) else {
                    return bad_handle();
                };
                match &*h {
                    Handle::File { file, .. } => done(id, fs::fsetstat(file, &attrs)),
                    Handle::Dir(_) => {
                        wire::status(id, wire::FX_OP_UNSUPPORTED, "not on a folder handle")
                    }
                }
            }
            Request::OpenDir { path } => {
                match fs::client_path(&path).and_then(|p| self.root().open_dir(&p)) {
                    Ok((fd, dir)) => self.insert(id, Handle::Dir(Mutex::new(DirState { fd, dir }))),
                    Err(e) => status_of(id, e),
                }
            }
            Request::ReadDir { handle } => {
                let Some(h) = self.get(&handle) else {
                    return bad_handle();
                };
                let Handle::Dir(d) = &*h else {
                    return bad_handle();
                };
                let Ok(mut d) = d.lock() else {
                    return bad_handle();
                };
                readdir_reply(id, &mut d)
            }
            Request::Remove { path } => {
                if ro {
                    return denied_read_only(id);
                }
                done(
                    id,
                    fs::client_path(&path).and_then(|p| self.root().remove(&p)),
                )
            }
            Request::MkDir { path, attrs } => {
                if ro {
                    return denied_read_only(id);
                }
                done(
                    id,
                    fs::client_path(&path)
                        .and_then(|p| self.root().make_dir(&p, attrs.permissions)),
                )
            }
            Request::RmDir { path } => {
                if ro {
                    return denied_read_only(id);
                }
                done(
                    id,
                    fs::client_path(&path).and_then(|p| self.root().rmdir(&p)),
                )
            }
            Request::RealPath { path } => match fs::client_path(&path) {
                Ok(p) => {
                    let shown = format!("/{}", p.as_str());
                    wire::Reply::new(wire::FXP_NAME, id)
                        .u32(1)
                        .string(shown.as_bytes())
                        .string(shown.as_bytes())
                        .attrs(&wire::Attrs::default())
                        .finish()
                }
                Err(e) => status_of(id, e),
            },
            Request::Rename { from, to } => {
                if ro {
                    return denied_read_only(id);
                }
                done(
                    id,
                    self.two_paths(&from, &to, |a, b| self.root().rename(a, b, false)),
                )
            }
            Request::ReadLink { path } => {
                match fs::client_path(&path).and_then(|p| self.root().readlink(&p)) {
                    Ok(target) => wire::Reply::new(wire::FXP_NAME, id)
                        .u32(1)
                        .string(&target)
                        .string(&target)
                        .attrs(&wire::Attrs::default())
                        .finish(),
                    Err(e) => status_of(id, e),
                }
            }
            Request::Symlink { target, link } => {
                if ro {
                    return denied_read_only(id);
                }
                done(
                    id,
                    fs::client_path(&link).and_then(|l| self.root().symlink(&target, &l)),
                )
            }
            Request::Extended { name, data } => self.extended(id, &name, &data),
            Request::Unknown { kind } => wire::status(
                id,
                wire::FX_OP_UNSUPPORTED,
                &format!("request type {kind} is not supported"),
            ),
        }
    }

    fn two_paths(
        &self,
        a: &[u8],
        b: &[u8],
        f: impl FnOnce(&RelPath, &RelPath) -> FsResult<()>,
    ) -> FsResult<()> {
        let a = fs::client_path(a)?;
        let b = fs::client_path(b)?;
        f(&a, &b)
    }

    fn extended(&self, id: u32, name: &[u8], data: &Bytes) -> Bytes {
        let name = std::str::from_utf8(name).unwrap_or("");
        let changes = matches!(
            name,
            ext::POSIX_RENAME
                | ext::HARDLINK
                | ext::WRITE_FILES
                | ext::INSTALL_FILES
                | ext::INDEX_REFRESH
        );
        if changes && self.shared.read_only {
            return denied_read_only(id);
        }
        match name {
            ext::POSIX_RENAME | ext::HARDLINK => self.rename_or_link(id, name, data),
            ext::STATVFS => match wire::ext_strings(data, 1) {
                Ok(s) => match fs::client_path(&s[0]).and_then(|p| self.root().statvfs(&p)) {
                    Ok(v) => statvfs_reply(id, &v),
                    Err(e) => status_of(id, e),
                },
                Err(_) => malformed(id),
            },
            ext::FSTATVFS | ext::FSYNC => self.on_handle(id, name, data),
            ext::LIMITS => wire::Reply::new(wire::FXP_EXTENDED_REPLY, id)
                .u64(u64::from(wire::MAX_PACKET))
                .u64(u64::from(wire::MAX_IO))
                .u64(u64::from(wire::MAX_IO))
                .u64(MAX_HANDLES as u64)
                .finish(),
            ext::WRITE_FILES => batch::write_files(self.root(), id, data),
            ext::READ_FILES => batch::read_files(self.root(), id, data),
            ext::INSTALL_FILES => batch::install_files(self.root(), id, data, now()),
            ext::INDEX_REFRESH => self.index_refresh(id),
            other => wire::status(
                id,
                wire::FX_OP_UNSUPPORTED,
                &format!("extension {other:?} is not supported"),
            ),
        }
    }

    /// `posix-rename@openssh.com` (replaces) and `hardlink@openssh.com`.
    fn rename_or_link(&self, id: u32, name: &str, data: &Bytes) -> Bytes {
        let Ok(s) = wire::ext_strings(data, 2) else {
            return malformed(id);
        };
        done(
            id,
            self.two_paths(&s[0], &s[1], |a, b| {
                if name == ext::POSIX_RENAME {
                    self.root().rename(a, b, true)
                } else {
                    self.root().hardlink(a, b)
                }
            }),
        )
    }

    /// `fsync@openssh.com` and `fstatvfs@openssh.com` on an open handle. A folder handle
    /// works too: its fsync makes renames into it durable (a client puts its `.sync` in place
    /// and needs that before it goes on).
    fn on_handle(&self, id: u32, name: &str, data: &Bytes) -> Bytes {
        let Ok(s) = wire::ext_strings(data, 1) else {
            return malformed(id);
        };
        let Some(h) = self.get(&s[0]) else {
            return wire::status(id, wire::FX_FAILURE, "invalid handle");
        };
        let with_fd = |fd: rustix::fd::BorrowedFd<'_>| {
            if name == ext::FSYNC {
                done(id, rustix::fs::fsync(fd).map_err(FsError::from))
            } else {
                match rustix::fs::fstatvfs(fd) {
                    Ok(v) => statvfs_reply(id, &v),
                    Err(e) => status_of(id, e.into()),
                }
            }
        };
        match &*h {
            Handle::File { file, .. } => with_fd(file.as_fd()),
            Handle::Dir(d) => {
                let d = d.lock().unwrap_or_else(|p| p.into_inner());
                with_fd(d.fd.as_fd())
            }
        }
    }

    /// `index-refresh@filesync`: OK, or what the scan could not read, one outcome each (the
    /// path as the data) for the client to report: those paths were left as they were.
    fn index_refresh(&self, id: u32) -> Bytes {
        match refresh_index(self.root().path(), self.shared.freshness.as_ref()) {
            Ok(unreadable) if unreadable.is_empty() => ok(id),
            Ok(unreadable) => {
                let outcomes: Vec<wire::Outcome> = unreadable
                    .into_iter()
                    .map(|(p, why)| wire::Outcome {
                        code: wire::FX_FAILURE,
                        msg: why,
                        data: Bytes::from(p.as_str().to_owned()),
                    })
                    .collect();
                wire::batch_reply(id, &outcomes)
            }
            Err(e) => wire::status(id, wire::FX_FAILURE, &e),
        }
    }
}

fn malformed(id: u32) -> Bytes {
    wire::status(id, wire::FX_BAD_MESSAGE, "malformed request")
}

/// How long an index refresh waits for the watcher's answer before rescanning everything.
const FRESHNESS_WAIT: Duration = Duration::from_secs(1);

/// Brings the root's `.sync` up to date. No `.sync.lock`: the client asking holds it.
/// Returns the paths the scan could not read (left as they were in the index).
///
/// With the daemon's watcher at hand only what it saw change is rescanned (usually nothing);
/// without it, or when it cannot vouch for the index, the whole folder is.
fn refresh_index(
    root: &std::path::Path,
    watch: Option<&FreshnessProbe>,
) -> Result<Vec<(RelPath, String)>, String> {
    let store = LocalStore::open(root, 0).map_err(|e| e.to_string())?;
    let freshness = watch.map_or(Freshness::Unknown, |w| w.check(FRESHNESS_WAIT));
    // Parsed only when there is something to rescan: a big index takes a while to read.
    let loaded = match &freshness {
        Freshness::Dirty(_) => store.load_index_blocking().map_err(|e| e.to_string())?,
        _ => None,
    };
    let (changed, stats) = match (freshness, loaded) {
        (Freshness::Current, _) if root.join(INDEX_FILE).is_file() => {
            tracing::debug!("index current by the watcher");
            return Ok(Vec::new());
        }
        (Freshness::Dirty(dirty), Some(mut index)) => {
            let batch = crate::watch::Batch { dirty, full: false };
            let (stats, moved) =
                crate::watch::apply_changed(root, &mut index, &batch).map_err(|e| e.to_string())?;
            (moved.then_some(index), stats)
        }
        _ => {
            let (current, existed) = store.current_blocking().map_err(|e| e.to_string())?;
            // Nothing moved: the index on disk is current (and a write would cost an fsync).
            let moved = !existed || current.loaded != current.index.entries_digest();
            (moved.then_some(current.index), current.stats)
        }
    };
    if let Some(index) = changed {
        store
            .save_index_blocking(&index)
            .map_err(|e| e.to_string())?;
        tracing::info!(root = %root.display(), changes = stats.changes(), "index refreshed for a client");
    }
    Ok(stats.unreadable)
}

fn attrs_reply(id: u32, st: FsResult<rustix::fs::Stat>) -> Bytes {
    match st {
        Ok(st) => wire::Reply::new(wire::FXP_ATTRS, id)
            .attrs(&fs::attrs_of(&st))
            .finish(),
        Err(e) => status_of(id, e),
    }
}

/// `pread` straight into the reply buffer; never more than the client asked for. The buffer
/// starts small: clients ask for up to 255 KiB even of a 2 KiB file, and allocating and
/// zeroing that much per request dominated downloads of many small files.
fn read_reply(id: u32, file: &File, offset: u64, len: u32) -> Bytes {
    const FIRST: usize = 64 * 1024;
    let len = len as usize;
    let mut cap = len.min(FIRST);
    let mut r = wire::Reply::with_capacity(wire::FXP_DATA, id, cap + 4);
    let b = r.buf();
    let at = b.len() + 4;
    b.resize(at + cap, 0);
    let mut filled = 0;
    while filled < cap {
        match file.read_at(&mut b[at + filled..at + cap], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == cap && cap < len {
                    cap = len;
                    b.resize(at + cap, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) if filled > 0 => break,
            Err(e) => return status_of(id, e.into()),
        }
    }
    if filled == 0 && len > 0 {
        return wire::status(id, wire::FX_EOF, "end of file");
    }
    b.truncate(at + filled);
    b[at - 4..at].copy_from_slice(&(filled as u32).to_be_bytes());
    r.finish()
}

fn readdir_reply(id: u32, d: &mut DirState) -> Bytes {
    let now = now();
    let mut names = BytesMut::new();
    let mut count = 0u32;
    while (count as usize) < READDIR_BATCH {
        let entry = match d.dir.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return status_of(id, e.into()),
        };
        let name = entry.file_name().to_bytes();
        // `..` of the root would describe a folder outside it; `.` adds nothing.
        if name == b"." || name == b".." {
            continue;
        }
        let Ok(st) = rustix::fs::statat(
            &d.fd,
            entry.file_name(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) else {
            continue; // removed since the listing began
        };
        let shown = String::from_utf8_lossy(name);
        let long = fs::long_name(&shown, &st, now);
        let mut put = |s: &[u8]| {
            names.extend_from_slice(&(s.len() as u32).to_be_bytes());
            names.extend_from_slice(s);
        };
        put(name);
        put(long.as_bytes());
        wire::put_attrs(&mut names, &fs::attrs_of(&st));
        count += 1;
    }
    if count == 0 {
        return wire::status(id, wire::FX_EOF, "end of folder");
    }
    let mut r = wire::Reply::with_capacity(wire::FXP_NAME, id, names.len() + 4).u32(count);
    r.buf().extend_from_slice(&names);
    r.finish()
}

/// Runs packet bodies through a session on `root` as the request loop would, for the fuzz
/// tests: every body that decodes gets the reply `Session::handle` makes.
#[cfg(test)]
pub(super) fn replies_to(root: Root, bodies: Vec<Bytes>) -> Vec<Bytes> {
    let session = Session {
        shared: Arc::new(Shared {
            root,
            read_only: false,
            freshness: None,
        }),
        handles: Mutex::new(HashMap::new()),
        next_handle: AtomicU32::new(1),
    };
    bodies
        .into_iter()
        .filter_map(|b| wire::decode(b).ok())
        .map(|(id, req)| session.handle(id, req))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{handle_key, handle_name};

    #[test]
    fn handle_names_are_ascii_and_round_trip() {
        for key in [1u32, 0x7f, 0x80, 0xff, 0x100, 0x8080, u32::MAX] {
            let name = handle_name(key);
            assert!(name.is_ascii(), "{name:?}");
            assert_eq!(handle_key(name.as_bytes()), Some(key));
        }
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 ",
            b"123456789",
            b"\x00\x00\x00\x80",
            b"zz",
        ] {
            assert_eq!(handle_key(bad), None, "{bad:?}");
        }
    }
}
