//! The SFTP request loop of one channel: a reader task decodes packets into a bounded queue,
//! READ/WRITE requests run concurrently when the client pipelines them (bounded per session;
//! inline when nothing is queued behind them), every other request waits for
//! those in flight and runs alone, so clients see the effects in the order they asked.
//! Replies leave in request order (paramiko needs that), small ones coalesced into one SSH
//! packet.

mod handles;
mod session;

use super::fs::Root;
use crate::proto::{self as wire, Request};
use crate::replica::writers::Writers;
use crate::watch::FreshnessProbe;
use bytes::{Bytes, BytesMut};
use russh::ChannelMsg;
use russh::server::Msg;
use session::Session;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{Semaphore, mpsc};

/// READ/WRITE requests of one session running at once (OpenSSH's client keeps 64 outstanding).
const MAX_IN_FLIGHT: u32 = 64;
/// Writes up to this size run on the connection's thread (see the dispatcher).
const SMALL_WRITE: usize = 64 * 1024;
const MAX_HANDLES: usize = 1024;
const READDIR_BATCH: usize = 128;
/// Replies smaller than this are gathered into one channel write.
const COALESCE: usize = 64 * 1024;

/// Who a session serves, as its log lines name them.
#[derive(Debug, Clone)]
pub struct Client {
    pub peer: std::net::SocketAddr,
    /// The user name it logged in with (not checked: keys decide).
    pub user: String,
}

/// What every session of the server shares.
pub struct Shared {
    pub root: Root,
    pub read_only: bool,
    /// The daemon's watcher, when it keeps `.sync` current: index refreshes ask it first.
    pub freshness: Option<FreshnessProbe>,
    /// The files our clients are writing below the root (see `replica::writers`).
    pub writers: Arc<Writers>,
}

impl Shared {
    pub fn new(root: Root, read_only: bool) -> Shared {
        Shared {
            writers: crate::replica::writers::of(root.path()),
            root,
            read_only,
            freshness: None,
        }
    }
}

/// What one connection's SFTP sessions may hold in memory, over all its channels: replies
/// made and not yet sent (the dispatcher waits for room), and requests received and not
/// yet taken up.
///
/// Past `QUEUE_SOFT` of waiting requests the reader stops reading (the client is faster than
/// the disk: TCP holds it back) — unless the dispatcher is itself waiting for room for
/// replies. russh hands channel data over on the one loop that also reads the client's
/// window adjustments, so a reader held back while replies wait for the client's window
/// would hold back the very adjustment they wait for (a pipelining client such as paramiko's
/// prefetch would stall for good). Only a client that sends requests and does not read the
/// answers gets past that to `QUEUE_HARD`, where its session is closed.
pub struct Budget {
    replies: Arc<Semaphore>,
    queued: std::sync::atomic::AtomicUsize,
    /// The dispatcher is waiting for room in `replies`.
    room_wanted: std::sync::atomic::AtomicBool,
    /// Told whenever a request is taken up or the dispatcher starts waiting.
    moved: tokio::sync::Notify,
}

/// Replies made and not yet sent, in KiB.
const REPLY_BUDGET_KIB: usize = 8 * 1024;
/// Requests received and not yet taken up, in bytes (as held in memory): where the reader
/// waits, and where the session is given up.
const QUEUE_SOFT: usize = 16 << 20;
const QUEUE_HARD: usize = 32 << 20;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            replies: Arc::new(Semaphore::new(REPLY_BUDGET_KIB)),
            queued: Default::default(),
            room_wanted: Default::default(),
            moved: tokio::sync::Notify::new(),
        }
    }
}

impl Budget {
    /// Waits while too many requests wait to be taken up and the dispatcher is not waiting
    /// for reply room itself.
    async fn hold_back(&self) {
        while self.queued.load(Ordering::Relaxed) > QUEUE_SOFT
            && !self.room_wanted.load(Ordering::Relaxed)
        {
            // A timeout as well: a wake-up between the check and the wait is not lost for long.
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(20), self.moved.notified())
                    .await;
        }
    }

    fn taken(&self, size: usize) {
        self.queued.fetch_sub(size, Ordering::Relaxed);
        self.moved.notify_waiters();
    }

    fn wanting_room(&self, wanted: bool) {
        self.room_wanted.store(wanted, Ordering::Relaxed);
        self.moved.notify_waiters();
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

/// Serves SFTP on `channel` until the client closes it, then ends the channel as OpenSSH's
/// sftp-server does (exit status 0, EOF, close); `budget` is the connection's.
pub async fn serve(
    channel: russh::Channel<Msg>,
    shared: Arc<Shared>,
    client: Client,
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
        if !read_requests(rx, req_tx, &budget, &client).await {
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
        dispatch(req_rx, out_tx, shared, &budget, abort, &client),
        write_replies(outbox, out_rx),
    );
    tracing::debug!(peer = %client.peer, user = %client.user, "SFTP session ended");
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

/// Decodes the client's packets into jobs as they come (holding back as `Budget` says).
/// `true` at the client's end of the channel, `false` when the session must be given up (a
/// bad packet, a client that does not read its answers).
async fn read_requests(
    mut rx: russh::ChannelReadHalf,
    req_tx: mpsc::UnboundedSender<Job>,
    budget: &Budget,
    client: &Client,
) -> bool {
    let (peer, user) = (&client.peer, &client.user);
    let mut buf = BytesMut::with_capacity(512 * 1024);
    loop {
        budget.hold_back().await;
        let Some(msg) = rx.wait().await else {
            break;
        };
        match msg {
            ChannelMsg::Data { data } => buf.extend_from_slice(&data),
            ChannelMsg::Eof | ChannelMsg::Close => return true,
            _ => continue,
        }
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if len == 0 || len > wire::MAX_PACKET + 1024 {
                tracing::warn!(%peer, %user, len, "SFTP packet too large or empty; closing the session");
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
                    tracing::warn!(%peer, %user, "{e}; closing the session");
                    return false;
                }
            };
            let size = len as usize + std::mem::size_of::<Job>();
            let queued = budget.queued.fetch_add(size, Ordering::Relaxed) + size;
            if queued > QUEUE_HARD {
                tracing::warn!(
                    %peer,
                    %user,
                    "the client sent {} MiB of requests without reading the answers; closing the session",
                    queued >> 20
                );
                budget.taken(size);
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
    // The client ended the session (its EOF ended the queue): what OpenSSH's server sends
    // when sftp-server exits, which `ssh -s sftp`, scp and restic take as success.
    if going && !*out.abort.borrow() {
        let _ = out.tx.exit_status(0).await;
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
    client: &Client,
) {
    let d = Dispatcher {
        session: Arc::new(Session::new(shared, client.clone())),
        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize)),
        out_tx,
        client,
    };
    let mut seq = 0u64;
    while let Some(Job { id, req, size }) = req_rx.recv().await {
        budget.taken(size);
        // Room for its reply first: replies the client has not taken yet are held to the
        // budget (requests meanwhile wait in the queue).
        let kib = reply_kib(&req);
        let share = match budget.replies.clone().try_acquire_many_owned(kib) {
            Ok(share) => share,
            Err(_) => {
                budget.wanting_room(true);
                let room = budget.replies.clone().acquire_many_owned(kib);
                let got = tokio::select! {
                    r = room => r.ok(),
                    _ = abort.wait_for(|a| *a) => None,
                };
                budget.wanting_room(false);
                match got {
                    Some(share) => share,
                    None => break,
                }
            }
        };
        let this = seq;
        seq += 1;
        if d.run(this, id, req, share, !req_rx.is_empty())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = d.slots.acquire_many(MAX_IN_FLIGHT).await;
    // What an abort left in the queue no longer counts against the connection.
    req_rx.close();
    while let Ok(job) = req_rx.try_recv() {
        budget.taken(job.size);
    }
}

/// What the dispatcher runs requests with.
struct Dispatcher<'a> {
    session: Arc<Session>,
    /// One permit per READ/WRITE in flight; all of them for a request that runs alone.
    slots: Arc<Semaphore>,
    out_tx: mpsc::UnboundedSender<Out>,
    client: &'a Client,
}

/// The semaphore is gone: the session is ending.
struct Closed;

impl Dispatcher<'_> {
    /// Runs request `this` (`id`, `req`), its reply sent with `share`; `queued` tells whether
    /// more requests wait behind it.
    async fn run(
        &self,
        this: u64,
        id: u32,
        req: Request,
        share: Share,
        queued: bool,
    ) -> Result<(), Closed> {
        let concurrent = match &req {
            Request::Read { .. } => true,
            // Appends land at the end in arrival order only if they run one at a time.
            Request::Write { handle, .. } => !self.session.is_append(handle),
            _ => false,
        };
        // A small write is a copy into the page cache: cheaper here than the two thread
        // wake-ups a hop to the blocking pool costs (a tree of small files is all these).
        let small_write = matches!(&req, Request::Write { data, .. } if data.len() <= SMALL_WRITE);
        if concurrent && (!queued || small_write) {
            // Nothing queued behind it: the client is waiting on this reply (one small file
            // after another), so a thread hop would only add latency.
            let _ = self
                .out_tx
                .send((this, self.session.handle(id, req), share));
        } else if concurrent {
            let permit = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Closed)?;
            let (s, out) = (self.session.clone(), self.out_tx.clone());
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
            let all = self
                .slots
                .acquire_many(MAX_IN_FLIGHT)
                .await
                .map_err(|_| Closed)?;
            let reply = self.alone(id, req).await;
            let _ = self.out_tx.send((this, reply, share));
            drop(all);
        }
        Ok(())
    }

    /// A request that runs with nothing else in flight.
    async fn alone(&self, id: u32, req: Request) -> Bytes {
        if is_quick(&req) {
            // Inline: a thread hop would cost more than these few syscalls, and a tree of
            // small files is a long chain of them (open, write, close per file).
            return self.session.handle(id, req);
        }
        let s = self.session.clone();
        match tokio::task::spawn_blocking(move || s.handle(id, req)).await {
            Ok(reply) => reply,
            Err(e) => {
                let c = self.client;
                tracing::error!(peer = %c.peer, user = %c.user, "SFTP request {id} failed: {e}");
                wire::status(id, wire::FX_FAILURE, "internal error")
            }
        }
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

/// Runs packet bodies through a session on `root` as the request loop would, for the fuzz
/// tests: every body that decodes gets the reply `Session::handle` makes.
#[cfg(test)]
pub(super) fn replies_to(root: Root, bodies: Vec<Bytes>) -> Vec<Bytes> {
    let client = Client {
        peer: ([127, 0, 0, 1], 0).into(),
        user: "fuzz".into(),
    };
    let session = Session::new(Arc::new(Shared::new(root, false)), client);
    bodies
        .into_iter()
        .filter_map(|b| wire::decode(b).ok())
        .map(|(id, req)| session.handle(id, req))
        .collect()
}
