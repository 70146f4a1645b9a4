//! Pipelined file transfers: many SFTP READ/WRITE requests in flight per file, as OpenSSH's
//! sftp does, instead of one request per round trip.

use super::session::WriteSlot;
use super::{Sftp, SftpError, sftp_time, to_io};
use crate::delta::{ChunkList, Chunker};
use crate::index::{ContentHash, MTime};
use crate::relpath::RelPath;
use crate::store::{Reader, StoreError};
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Requests in flight per file.
const READ_DEPTH: usize = 32;
const WRITE_DEPTH: usize = 32;

type ReadFut = Pin<Box<dyn Future<Output = (u64, u32, Result<Vec<u8>, SftpError>)> + Send>>;

/// An open remote file read front to back with up to `READ_DEPTH` requests outstanding.
pub(crate) struct ChunkStream {
    raw: Arc<RawSftpSession>,
    handle: Option<String>,
    size: u64,
    chunk: u32,
    /// Next offset to request.
    next: u64,
    /// Next offset to hand out (all bytes before it were returned).
    pos: u64,
    inflight: FuturesOrdered<ReadFut>,
    /// The connection, to stop waiting on replies that will never come once it is gone.
    ssh: Arc<super::connect::Handle>,
    /// Wait for the server to confirm the close (see `wait_for_close`).
    wait_close: bool,
}

/// Opens `path` for reading. With `known_size` (from the index) the reads go out right after
/// the open and stop there; without, the server is asked for the size first.
pub(crate) async fn open_read(
    s: &Sftp,
    path: &str,
    known_size: Option<u64>,
) -> Result<ChunkStream, SftpError> {
    let raw = s.raw().clone();
    let h = raw
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await?
        .handle;
    let size = match known_size {
        Some(n) => n,
        None => match raw.fstat(h.as_str()).await {
            Ok(a) => a.attrs.size.unwrap_or(u64::MAX),
            Err(e) => {
                let _ = raw.close(h).await;
                return Err(e);
            }
        },
    };
    Ok(ChunkStream {
        raw,
        handle: Some(h),
        size,
        chunk: s.read_len,
        next: 0,
        pos: 0,
        inflight: FuturesOrdered::new(),
        ssh: s.ssh.clone(),
        wait_close: false,
    })
}

impl ChunkStream {
    fn top_up(&mut self) {
        let Some(h) = &self.handle else { return };
        while self.inflight.len() < READ_DEPTH && self.next < self.size {
            let (raw, h, off) = (self.raw.clone(), h.clone(), self.next);
            let len = self.chunk;
            self.inflight.push_back(Box::pin(async move {
                let r = raw.read(h, off, len).await.map(|d| d.data);
                (off, len, r)
            }));
            self.next += u64::from(len);
        }
    }

    /// Makes the end of the stream wait for the server to close the handle. Many files read
    /// at once otherwise run ahead of their closes, and the server's open handles pile up:
    /// past 128 on one channel an OpenSSH server's binary handle ids get a byte over 0x7f,
    /// which russh-sftp mangles (it keeps handles as UTF-8 strings) — reads then fail.
    pub(crate) fn wait_for_close(&mut self) {
        self.wait_close = true;
    }

    async fn finish(&mut self) {
        self.inflight = FuturesOrdered::new();
        if self.wait_close
            && let Some(h) = self.handle.take()
        {
            let _ = self.raw.close(h).await;
            return;
        }
        if let Some(h) = self.handle.take() {
            // Nothing waits on a read handle's close: the reply would only cost a round trip.
            let raw = self.raw.clone();
            drop(tokio::spawn(async move {
                let _ = raw.close(h).await;
            }));
        }
    }

    /// The next piece of the file, in order; `None` at the end.
    pub(crate) async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, SftpError>> {
        self.handle.as_ref()?;
        self.top_up();
        let next = tokio::select! {
            n = self.inflight.next() => n,
            _ = super::closed(&self.ssh) => {
                self.inflight = FuturesOrdered::new();
                self.handle = None;
                return Some(Err(SftpError::UnexpectedBehavior("session closed".into())));
            }
        };
        let Some((off, len, res)) = next else {
            self.finish().await;
            return None;
        };
        match res {
            Ok(data) if data.is_empty() => {
                self.finish().await;
                None
            }
            Ok(data) => {
                let n = data.len() as u64;
                self.pos = off + n;
                if n < u64::from(len) && self.pos < self.size {
                    // A short read: everything requested after it starts at the wrong
                    // offset. Drop those and go on from where this one ended.
                    self.inflight = FuturesOrdered::new();
                    self.next = self.pos;
                }
                Some(Ok(data))
            }
            Err(e) if super::is_status(&e, StatusCode::Eof) => {
                self.finish().await;
                None
            }
            Err(e) => {
                self.finish().await;
                Some(Err(e))
            }
        }
    }
}

// A `ChunkStream` dropped half-way keeps its handle open until the session ends; that only
// happens when a transfer failed, and the session ends with the sync.

type NextFut =
    Pin<Box<dyn Future<Output = (ChunkStream, Option<Result<Vec<u8>, SftpError>>)> + Send>>;

/// `AsyncRead` over a `ChunkStream`, for the engine's copy loop.
pub(crate) struct ChunkReader {
    stream: Option<ChunkStream>,
    pending: Option<NextFut>,
    buf: Vec<u8>,
    at: usize,
    host: String,
    path: String,
}

impl ChunkReader {
    pub(crate) fn new(stream: ChunkStream, host: String, path: String) -> Self {
        ChunkReader {
            stream: Some(stream),
            pending: None,
            buf: Vec::new(),
            at: 0,
            host,
            path,
        }
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.at < self.buf.len() {
                let n = out.remaining().min(self.buf.len() - self.at);
                let at = self.at;
                out.put_slice(&self.buf[at..at + n]);
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            if self.pending.is_none() {
                let Some(mut s) = self.stream.take() else {
                    return Poll::Ready(Ok(()));
                };
                self.pending = Some(Box::pin(async move {
                    let r = s.next_chunk().await;
                    (s, r)
                }));
            }
            let Some(fut) = self.pending.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let (s, r) = match fut.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(x) => x,
            };
            self.pending = None;
            match r {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    self.stream = Some(s);
                    self.buf = data;
                    self.at = 0;
                }
                Some(Err(e)) => {
                    let e = to_io(e);
                    return Poll::Ready(Err(io::Error::new(
                        e.kind(),
                        format!("reading {}:{}: {e}", self.host, self.path),
                    )));
                }
            }
        }
    }
}

/// A file created for writing: its handle and the session it belongs to, holding a place in
/// that session's window of files open for writing until it is dropped.
pub(crate) struct Created {
    raw: Arc<RawSftpSession>,
    handle: String,
    /// The permission bits it was created with, set exactly again when it is finished (the
    /// server's umask may have narrowed them).
    mode: Option<u32>,
    _slot: WriteSlot,
}

/// With `mode`, the file is created with those permission bits (as the server's umask
/// narrows them), never wider. Waits for room in the window of files open for writing.
pub(crate) async fn create(s: &Sftp, path: &str, mode: Option<u32>) -> Result<Created, SftpError> {
    create_in(s.write_slot().await, path, mode).await
}

/// `create` on session `raw` (a file worked on together with another handle there).
pub(crate) async fn create_on(
    s: &Sftp,
    raw: &Arc<RawSftpSession>,
    path: &str,
    mode: Option<u32>,
) -> Result<Created, SftpError> {
    create_in(s.write_slot_on(raw).await, path, mode).await
}

async fn create_in(slot: WriteSlot, path: &str, mode: Option<u32>) -> Result<Created, SftpError> {
    let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE | OpenFlags::TRUNCATE;
    let attrs = FileAttributes {
        permissions: mode.map(crate::index::mode::perm_bits),
        ..FileAttributes::empty()
    };
    let raw = slot.raw.clone();
    let handle = raw.open(path, flags, attrs).await?.handle;
    Ok(Created {
        raw,
        handle,
        mode,
        _slot: slot,
    })
}

/// Streams `data` into the open remote file `handle` (at `path`), then fsyncs it, sets its
/// mtime and closes it. Checks the content against `expect` (the hash, and the file it is
/// of, for the error). Returns the bytes written, and the mode the file shows when it was
/// created with one.
pub(crate) async fn upload(
    s: &Sftp,
    path: &str,
    created: Created,
    mut data: Reader,
    mtime: Option<MTime>,
    expect: Option<(ContentHash, &RelPath)>,
    size_hint: Option<u64>,
) -> Result<(u64, Option<u32>), StoreError> {
    let closed_ok = std::sync::atomic::AtomicBool::new(false);
    let res = async {
        let mut inflight = FuturesUnordered::new();
        let (got, off) = send_all(s, path, &created, &mut data, size_hint, &mut inflight).await?;
        if let Some((want, of)) = expect
            && want != got
        {
            return Err(StoreError::SourceChanged { path: of.clone() });
        }
        let finished = finish(s, path, &created, mtime, inflight).await;
        closed_ok.store(true, std::sync::atomic::Ordering::Relaxed);
        finished.map(|shown| (off, shown))
    }
    .await;
    if !closed_ok.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = created.raw.close(created.handle.as_str()).await;
    }
    res
}

impl Created {
    pub(crate) fn handle(&self) -> &str {
        &self.handle
    }
}

/// WRITE requests sent and not yet answered.
pub(crate) type Writes<'a> =
    FuturesUnordered<Started<'a, Result<russh_sftp::protocol::Status, SftpError>>>;

/// Sends all of `data` as WRITE requests, `WRITE_DEPTH` in flight; returns its hash and
/// length. The last requests are left in `inflight` for `finish` to await.
async fn send_all<'a>(
    s: &Sftp,
    path: &str,
    created: &Created,
    data: &mut Reader,
    size_hint: Option<u64>,
    inflight: &mut Writes<'a>,
) -> Result<(ContentHash, u64), StoreError> {
    let mut hasher = blake3::Hasher::new();
    let mut off = 0u64;
    let chunk = s.write_len as usize;
    let mut eof = false;
    while !eof {
        // Sized to what is left of the expected size (plus one byte, to see the end), and
        // never zero-filled: a small file costs a small buffer.
        let want = size_hint
            .map_or(chunk, |n| {
                (n.saturating_sub(off) as usize).saturating_add(1)
            })
            .clamp(1, chunk);
        let mut buf = Vec::with_capacity(want);
        while buf.len() < want {
            let got = data
                .read_buf(&mut buf)
                .await
                .map_err(|e| StoreError::io(format!("reading the source of {path}"), e))?;
            if got == 0 {
                eof = true;
                break;
            }
        }
        let n = buf.len();
        if n == 0 {
            break;
        }
        hasher.update(&buf);
        let (raw, h, at) = (created.raw.clone(), created.handle.clone(), off);
        // Started first, then pushed: `inflight` is not `Sync`, so no borrow of it may be
        // held across the await.
        let w = started(async move { raw.write(h, at, buf).await }).await;
        inflight.push(w);
        off += n as u64;
        if inflight.len() >= WRITE_DEPTH
            && let Some(r) = inflight.next().await
        {
            r.map_err(|e| write_err(s, path, e))?;
        }
    }
    Ok((ContentHash(*hasher.finalize().as_bytes()), off))
}

/// The tail of an upload: the last writes, the times and mode in one request, a look at
/// what the file shows, the fsync, the close. The server handles a session's requests in
/// order, so all but the last two go out together; the fsync comes after the attributes, so
/// they are durable with the data, and waits only for the answer that says whether the
/// times must be set again (a disk that refuses the mode may skip them).
pub(crate) async fn finish(
    s: &Sftp,
    path: &str,
    created: &Created,
    mtime: Option<MTime>,
    mut inflight: Writes<'_>,
) -> Result<Option<u32>, StoreError> {
    let Created {
        raw, handle, mode, ..
    } = created;
    let drain = async {
        while let Some(r) = inflight.next().await {
            r.map_err(|e| write_err(s, path, e))?;
        }
        Ok::<(), StoreError>(())
    };
    let times = mtime.map(|t| (sftp_time(t), sftp_time(t)));
    let attrs = FileAttributes {
        permissions: mode.map(crate::index::mode::perm_bits),
        atime: times.map(|t| t.0),
        mtime: times.map(|t| t.1),
        ..FileAttributes::empty()
    };
    let set = async {
        if attrs.permissions.is_none() && attrs.mtime.is_none() {
            return Ok(());
        }
        raw.fsetstat(handle.as_str(), attrs).await.map(|_| ())
    };
    // What the file shows after the set: a disk that cannot hold modes refuses the mode,
    // which is no error (see `Store::set_mode`).
    let shown = async {
        (*mode)?;
        raw.fstat(handle.as_str()).await.ok().map(|a| a.attrs)
    };
    let (set, shown) = (started(set).await, started(shown).await);
    let (d, set, shown) = futures::join!(drain, set, shown);
    let ready = match (d, set, times) {
        (Err(e), _, _) => Err(e),
        (Ok(()), Err(e), Some(t)) if shown.as_ref().and_then(|a| a.mtime) != Some(t.1) => {
            times_again(raw, handle, t)
                .await
                .map_err(|_| s.err("cannot set the time of", path, e))
        }
        _ => Ok(()),
    };
    if let Err(e) = ready {
        // Closed here, once: a second close could hit a handle id the server gave out again.
        let _ = raw.close(handle.as_str()).await;
        return Err(e);
    }
    let fsync = async {
        if !s.fsync {
            return Ok(());
        }
        let mut d = Vec::new();
        super::put_str(&mut d, handle);
        let r = raw.extended(crate::proto::ext::FSYNC, d).await;
        r.and_then(super::status_ok)
            .map_err(|e| s.err("cannot fsync", path, e))
    };
    let close = async {
        raw.close(handle.as_str())
            .await
            .map(|_| ())
            .map_err(|e| s.err("cannot finish writing", path, e))
    };
    let (fsync, close) = (started(fsync).await, started(close).await);
    let (f, c) = futures::join!(fsync, close);
    f.and(c).map(|()| {
        shown
            .and_then(|a| a.permissions)
            .map(crate::index::mode::perm_bits)
    })
}

/// The times alone, after a set of times and mode together was refused (a server may stop
/// at the mode).
async fn times_again(
    raw: &RawSftpSession,
    handle: &str,
    (atime, mtime): (u32, u32),
) -> Result<(), SftpError> {
    let attrs = FileAttributes {
        atime: Some(atime),
        mtime: Some(mtime),
        ..FileAttributes::empty()
    };
    raw.fsetstat(handle, attrs).await.map(|_| ())
}

/// A request future already polled once, so its request is on the wire.
pub(crate) type Started<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls a request future once, which sends its request (russh-sftp sends on the first
/// poll), and returns the rest of it to await. Requests started one after another go out in
/// that order. Futures merely pushed into a `FuturesUnordered` have no such promise: it stops
/// polling new ones early once two wake themselves (as tokio's budget makes them do), so a
/// close made after them could overtake writes not yet sent — the server then closes the
/// file first and refuses the writes.
pub(crate) async fn started<'a, T: Send + 'a>(
    f: impl Future<Output = T> + Send + 'a,
) -> Started<'a, T> {
    let mut f: Started<'a, T> = Box::pin(f);
    match futures::poll!(f.as_mut()) {
        Poll::Ready(v) => Box::pin(std::future::ready(v)),
        Poll::Pending => f,
    }
}

fn write_err(s: &Sftp, path: &str, e: SftpError) -> StoreError {
    let generic = matches!(&e, SftpError::Status(st) if st.status_code == StatusCode::Failure);
    let mut err = s.err("cannot write", path, e);
    if generic && let StoreError::Io { what, .. } = &mut err {
        // OpenSSH reports ENOSPC and EDQUOT as a bare "failure".
        what.push_str(" (is the remote disk full?)");
    }
    err
}

/// BLAKE3 of a remote file, read pipelined, expected to hold `size` bytes. Returns the
/// digest, the bytes read and, for a big file, its chunk list (from the same read).
pub(crate) async fn hash_remote(
    s: &Sftp,
    path: &str,
    size: u64,
) -> Result<(ContentHash, u64, Option<ChunkList>), SftpError> {
    let mut r = open_read(s, path, None).await?;
    let mut h = Chunker::for_size(size);
    while let Some(c) = r.next_chunk().await {
        h.update(&c?);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Wakes its task from inside its first poll, as a tokio resource does once the task's
    /// budget is spent; that is what makes a `FuturesUnordered` stop polling early.
    struct WakesItself(bool);

    impl Future for WakesItself {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A stand-in request: notes that it went out (its first poll), then awaits its reply.
    fn request(i: usize, sent: &Arc<Mutex<Vec<usize>>>) -> impl Future<Output = usize> + Send {
        let sent = sent.clone();
        async move {
            sent.lock().unwrap().push(i);
            WakesItself(false).await;
            i
        }
    }

    #[tokio::test]
    async fn started_requests_go_out_in_the_order_they_were_made() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut writes = FuturesUnordered::new();
        for i in 0..8 {
            let w = started(request(i, &sent)).await;
            writes.push(w);
        }
        let close = started(request(8, &sent)).await;
        let drain = async {
            let mut n = 0;
            while writes.next().await.is_some() {
                n += 1;
            }
            n
        };
        let (n, _) = futures::join!(drain, close);
        assert_eq!(n, 8);
        assert_eq!(*sent.lock().unwrap(), (0..=8).collect::<Vec<_>>());
    }
}
