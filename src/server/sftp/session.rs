//! One SFTP session's requests, each run to its reply: the open handles, every path through
//! the root (`fs`), and files opened for writing recorded in the root's `Writers` so scans
//! leave them out until they are closed and quiet. A request that fails is logged once here,
//! naming the client, the request and the path: at debug when it is a client looking around
//! (`fs::is_probe`), as a warning otherwise.

use super::super::batch;
use super::super::fs::{self, ClientOps, FsError, FsResult, Root};
use super::handles::{handle_key, handle_name};
use super::{Client, MAX_HANDLES, READDIR_BATCH, Shared};
use crate::proto::{self as wire, Request, ext};
use crate::relpath::RelPath;
use crate::replica::writers::Writers;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub(super) enum Handle {
    File {
        file: File,
        path: RelPath,
        append: bool,
        /// Set when the file was opened for writing.
        writing: Option<Writing>,
    },
    Dir(Mutex<DirState>),
}

pub(super) struct DirState {
    path: RelPath,
    fd: rustix::fd::OwnedFd,
    dir: rustix::fs::Dir,
}

/// A file open for writing, as the root's record of writers knows it until the handle goes
/// (closed, or dropped with its session).
pub(super) struct Writing {
    writers: Arc<Writers>,
    path: RelPath,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.writers.closed(&self.path);
    }
}

pub(super) struct Session {
    shared: Arc<Shared>,
    client: Client,
    handles: Mutex<HashMap<u32, Arc<Handle>>>,
    next_handle: AtomicU32,
}

/// A request's reply, or the error that becomes its status reply once it is logged.
type Answer = Result<Bytes, FsError>;

fn status_of(id: u32, e: &FsError) -> Bytes {
    let (code, msg) = fs::status_code(e, false);
    wire::status(id, code, &msg)
}

fn ok(id: u32) -> Bytes {
    wire::status(id, wire::FX_OK, "OK")
}

fn done(id: u32, r: FsResult<()>) -> Answer {
    r.map(|()| ok(id))
}

/// What a request named, for the line logged when it fails.
enum Subject {
    Nothing,
    Path(Bytes),
    Handle(Bytes),
    Two(Bytes, Bytes),
}

/// The request's name as logs show it (an extension's own name), and what it named.
fn asked(req: &Request) -> (&'static str, Subject) {
    use Subject::*;
    match req {
        Request::Init { .. } => ("init", Nothing),
        Request::Open { path, .. } => ("open", Path(path.clone())),
        Request::Close { handle } => ("close", Handle(handle.clone())),
        Request::Read { handle, .. } => ("read", Handle(handle.clone())),
        Request::Write { handle, .. } => ("write", Handle(handle.clone())),
        Request::Lstat { path } => ("lstat", Path(path.clone())),
        Request::Stat { path } => ("stat", Path(path.clone())),
        Request::Fstat { handle } => ("fstat", Handle(handle.clone())),
        Request::SetStat { path, .. } => ("setstat", Path(path.clone())),
        Request::FSetStat { handle, .. } => ("fsetstat", Handle(handle.clone())),
        Request::OpenDir { path } => ("opendir", Path(path.clone())),
        Request::ReadDir { handle } => ("readdir", Handle(handle.clone())),
        Request::Remove { path } => ("remove", Path(path.clone())),
        Request::MkDir { path, .. } => ("mkdir", Path(path.clone())),
        Request::RmDir { path } => ("rmdir", Path(path.clone())),
        Request::RealPath { path } => ("realpath", Path(path.clone())),
        Request::Rename { from, to } => ("rename", Two(from.clone(), to.clone())),
        Request::ReadLink { path } => ("readlink", Path(path.clone())),
        Request::Symlink { target, link } => ("symlink", Two(link.clone(), target.clone())),
        Request::Extended { name, data } => {
            let name = ext::OFFERED
                .iter()
                .map(|(n, _)| *n)
                .find(|n| n.as_bytes() == &name[..])
                .unwrap_or("extended");
            let strings = |n| wire::ext_strings(data, n).unwrap_or_default();
            let subject = match name {
                ext::POSIX_RENAME | ext::HARDLINK => match &strings(2)[..] {
                    [a, b] => Two(a.clone(), b.clone()),
                    _ => Nothing,
                },
                ext::STATVFS => strings(1).pop().map_or(Nothing, Path),
                ext::FSTATVFS | ext::FSYNC => strings(1).pop().map_or(Nothing, Handle),
                _ => Nothing,
            };
            (name, subject)
        }
        Request::Unknown { .. } => ("unknown", Nothing),
    }
}

fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn denied_read_only(id: u32) -> Bytes {
    wire::status(id, wire::FX_PERMISSION_DENIED, "the server is read-only")
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

fn malformed(id: u32) -> Bytes {
    wire::status(id, wire::FX_BAD_MESSAGE, "malformed request")
}

fn attrs_reply(id: u32, st: FsResult<rustix::fs::Stat>) -> Answer {
    st.map(|st| {
        wire::Reply::new(wire::FXP_ATTRS, id)
            .attrs(&fs::attrs_of(&st))
            .finish()
    })
}

/// `pread` straight into the reply buffer; never more than the client asked for. The buffer
/// starts small: clients ask for up to 255 KiB even of a 2 KiB file, and allocating and
/// zeroing that much per request dominated downloads of many small files.
fn read_reply(id: u32, file: &File, offset: u64, len: u32) -> Answer {
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
            Err(e) => return Err(e.into()),
        }
    }
    if filled == 0 && len > 0 {
        return Ok(wire::status(id, wire::FX_EOF, "end of file"));
    }
    b.truncate(at + filled);
    b[at - 4..at].copy_from_slice(&(filled as u32).to_be_bytes());
    Ok(r.finish())
}

fn readdir_reply(id: u32, d: &mut DirState) -> Answer {
    let now = crate::time::now_secs();
    let mut names = BytesMut::new();
    let mut count = 0u32;
    while (count as usize) < READDIR_BATCH {
        let entry = match d.dir.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(e.into()),
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
        return Ok(wire::status(id, wire::FX_EOF, "end of folder"));
    }
    let mut r = wire::Reply::with_capacity(wire::FXP_NAME, id, names.len() + 4).u32(count);
    r.buf().extend_from_slice(&names);
    Ok(r.finish())
}

impl Session {
    pub(super) fn new(shared: Arc<Shared>, client: Client) -> Session {
        Session {
            shared,
            client,
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU32::new(1),
        }
    }

    fn get(&self, h: &[u8]) -> Option<Arc<Handle>> {
        let key = handle_key(h)?;
        self.handles.lock().ok()?.get(&key).cloned()
    }

    pub(super) fn is_append(&self, h: &[u8]) -> bool {
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

    /// `f` when the server may change things; the read-only refusal otherwise.
    fn changing(&self, id: u32, f: impl FnOnce() -> FsResult<()>) -> Answer {
        if self.shared.read_only {
            return Ok(denied_read_only(id));
        }
        done(id, f())
    }

    /// Runs one request to completion (blocking I/O; called on the blocking pool); a failure
    /// is logged once and becomes its status reply.
    pub(super) fn handle(&self, id: u32, req: Request) -> Bytes {
        let (op, subject) = asked(&req);
        match self.answer(id, req) {
            Ok(reply) => reply,
            Err(e) => {
                self.log_failure(op, &subject, &e);
                status_of(id, &e)
            }
        }
    }

    /// One line for a failed request: who, which request, which path, and why.
    fn log_failure(&self, op: &str, subject: &Subject, e: &FsError) {
        let path = match subject {
            Subject::Nothing => String::new(),
            Subject::Path(p) => shown(p),
            Subject::Two(a, b) => format!("{} -> {}", shown(a), shown(b)),
            Subject::Handle(h) => match self.get(h).as_deref() {
                Some(Handle::File { path, .. }) => format!("/{path}"),
                Some(Handle::Dir(d)) => {
                    d.lock().map(|d| format!("/{}", d.path)).unwrap_or_default()
                }
                None => String::new(),
            },
        };
        let (peer, user) = (&self.client.peer, &self.client.user);
        if fs::is_probe(op, e) {
            tracing::debug!(%peer, %user, request = op, %path, "SFTP request failed: {e}");
        } else {
            tracing::warn!(%peer, %user, request = op, %path, "SFTP request failed: {e}");
        }
    }

    /// A batch request, its failed files logged in one line (those that are a client
    /// looking around at debug, each).
    fn batch(&self, op: &str, run: impl FnOnce(batch::Failed) -> Bytes) -> Bytes {
        let mut failed = 0usize;
        let mut first: Option<(String, String)> = None;
        let reply = run(&mut |path: &[u8], e: &FsError| {
            if fs::is_probe(op, e) {
                self.log_failure(op, &Subject::Path(Bytes::copy_from_slice(path)), e);
                return;
            }
            failed += 1;
            first.get_or_insert_with(|| (shown(path), e.to_string()));
        });
        if let Some((path, e)) = first {
            let (peer, user) = (&self.client.peer, &self.client.user);
            tracing::warn!(%peer, %user, request = op, %path, failed,
                "SFTP request failed for {failed} files, this one first: {e}");
        }
        reply
    }

    /// One arm per request type: the table of what the server does.
    fn answer(&self, id: u32, req: Request) -> Answer {
        let root = self.root();
        let at = |p: &[u8]| fs::client_path(p);
        match req {
            Request::Init { version } => {
                tracing::debug!(version, "client speaks SFTP version");
                Ok(version_reply())
            }
            Request::Open {
                path,
                pflags,
                attrs,
            } => self.open(id, &path, pflags, attrs.permissions),
            Request::Close { handle } => self.close(id, &handle),
            Request::Read {
                handle,
                offset,
                len,
            } => self.read(id, &handle, offset, len),
            Request::Write {
                handle,
                offset,
                data,
            } => self.write(id, &handle, offset, &data),
            Request::Lstat { path } => {
                attrs_reply(id, at(&path).and_then(|p| root.lstat(&p)).map(|m| m.raw))
            }
            Request::Stat { path } => {
                attrs_reply(id, at(&path).and_then(|p| root.stat(&p)).map(|m| m.raw))
            }
            Request::Fstat { handle } => self.fstat(id, &handle),
            Request::SetStat { path, attrs } => {
                self.changing(id, || at(&path).and_then(|p| root.setstat(&p, &attrs)))
            }
            Request::FSetStat { handle, attrs } => self.fsetstat(id, &handle, &attrs),
            Request::OpenDir { path } => {
                let path = at(&path)?;
                let (fd, dir) = root.open_dir(&path)?;
                Ok(self.insert(id, Handle::Dir(Mutex::new(DirState { path, fd, dir }))))
            }
            Request::ReadDir { handle } => self.readdir(id, &handle),
            Request::Remove { path } => {
                self.changing(id, || at(&path).and_then(|p| root.remove(&p)))
            }
            Request::MkDir { path, attrs } => self.changing(id, || {
                at(&path).and_then(|p| root.make_dir(&p, attrs.permissions))
            }),
            Request::RmDir { path } => self.changing(id, || at(&path).and_then(|p| root.rmdir(&p))),
            Request::RealPath { path } => Ok(name_reply(
                id,
                format!("/{}", at(&path)?.as_str()).as_bytes(),
            )),
            Request::Rename { from, to } => self.changing(id, || {
                self.two_paths(&from, &to, |a, b| {
                    self.renamed(a, b, root.rename(a, b, false))
                })
            }),
            Request::ReadLink { path } => Ok(name_reply(id, &root.readlink(&at(&path)?)?)),
            Request::Symlink { target, link } => {
                self.changing(id, || at(&link).and_then(|l| root.symlink(&target, &l)))
            }
            Request::Extended { name, data } => self.extended(id, &name, &data),
            Request::Unknown { kind } => Ok(wire::status(
                id,
                wire::FX_OP_UNSUPPORTED,
                &format!("request type {kind} is not supported"),
            )),
        }
    }

    fn open(&self, id: u32, path: &[u8], pflags: u32, perms: Option<u32>) -> Answer {
        use wire::{PF_APPEND, PF_CREAT, PF_TRUNC, PF_WRITE};
        let writes = pflags & (PF_WRITE | PF_APPEND | PF_CREAT | PF_TRUNC) != 0;
        if writes && self.shared.read_only {
            return Ok(denied_read_only(id));
        }
        let p = fs::client_path(path)?;
        let file = self.root().open_file(&p, pflags, perms)?;
        let writing = writes.then(|| {
            self.shared.writers.opened(&p);
            Writing {
                writers: self.shared.writers.clone(),
                path: p.clone(),
            }
        });
        let append = pflags & PF_APPEND != 0;
        Ok(self.insert(
            id,
            Handle::File {
                file,
                path: p,
                append,
                writing,
            },
        ))
    }

    fn close(&self, id: u32, handle: &[u8]) -> Answer {
        let key = handle_key(handle);
        let removed = match (key, self.handles.lock()) {
            (Some(k), Ok(mut hs)) => hs.remove(&k),
            _ => None,
        };
        Ok(match removed {
            Some(_) => ok(id),
            None => bad_handle(id),
        })
    }

    fn read(&self, id: u32, handle: &[u8], offset: u64, len: u32) -> Answer {
        match self.get(handle).as_deref() {
            Some(Handle::File { file, .. }) => read_reply(id, file, offset, len.min(wire::MAX_IO)),
            _ => Ok(bad_handle(id)),
        }
    }

    fn write(&self, id: u32, handle: &[u8], offset: u64, data: &[u8]) -> Answer {
        let Some(h) = self.get(handle) else {
            return Ok(bad_handle(id));
        };
        let Handle::File {
            file,
            append,
            writing,
            ..
        } = &*h
        else {
            return Ok(bad_handle(id));
        };
        if let Some(w) = writing {
            w.writers.wrote(&w.path);
        }
        let r = if *append {
            (&*file).write_all(data)
        } else {
            file.write_all_at(data, offset)
        };
        done(id, r.map_err(FsError::from))
    }

    fn fstat(&self, id: u32, handle: &[u8]) -> Answer {
        let Some(h) = self.get(handle) else {
            return Ok(bad_handle(id));
        };
        let st = match &*h {
            Handle::File { file, .. } => rustix::fs::fstat(file),
            Handle::Dir(d) => match d.lock() {
                Ok(d) => rustix::fs::fstat(&d.fd),
                Err(_) => return Ok(bad_handle(id)),
            },
        };
        attrs_reply(id, st.map_err(FsError::from))
    }

    fn fsetstat(&self, id: u32, handle: &[u8], attrs: &wire::Attrs) -> Answer {
        if self.shared.read_only {
            return Ok(denied_read_only(id));
        }
        match self.get(handle).as_deref() {
            Some(Handle::File { file, .. }) => done(id, fs::fsetstat(file, attrs)),
            Some(Handle::Dir(_)) => Ok(wire::status(
                id,
                wire::FX_OP_UNSUPPORTED,
                "not on a folder handle",
            )),
            None => Ok(bad_handle(id)),
        }
    }

    fn readdir(&self, id: u32, handle: &[u8]) -> Answer {
        let Some(h) = self.get(handle) else {
            return Ok(bad_handle(id));
        };
        let Handle::Dir(d) = &*h else {
            return Ok(bad_handle(id));
        };
        let Ok(mut d) = d.lock() else {
            return Ok(bad_handle(id));
        };
        readdir_reply(id, &mut d)
    }

    /// A rename that happened, told to the record of writers: a file still being written
    /// keeps counting under its new name.
    fn renamed(&self, from: &RelPath, to: &RelPath, r: FsResult<()>) -> FsResult<()> {
        if r.is_ok() {
            self.shared.writers.renamed(from, to);
        }
        r
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

    fn extended(&self, id: u32, name: &[u8], data: &Bytes) -> Answer {
        let name = std::str::from_utf8(name).unwrap_or("");
        let changes = matches!(
            name,
            ext::POSIX_RENAME
                | ext::HARDLINK
                | ext::WRITE_FILES
                | ext::WRITE_FILES_WITH_MODE
                | ext::INSTALL_FILES
                | ext::INDEX_REFRESH
                | ext::COPY_DATA
        );
        if changes && self.shared.read_only {
            return Ok(denied_read_only(id));
        }
        let root = self.root();
        Ok(match name {
            ext::POSIX_RENAME | ext::HARDLINK => return self.rename_or_link(id, name, data),
            ext::STATVFS => match wire::ext_strings(data, 1) {
                Ok(s) => statvfs_reply(id, &root.statvfs(&fs::client_path(&s[0])?)?),
                Err(_) => malformed(id),
            },
            ext::FSTATVFS | ext::FSYNC => return self.on_handle(id, name, data),
            ext::LIMITS => wire::Reply::new(wire::FXP_EXTENDED_REPLY, id)
                .u64(u64::from(wire::MAX_PACKET))
                .u64(u64::from(wire::MAX_IO))
                .u64(u64::from(wire::MAX_IO))
                .u64(MAX_HANDLES as u64)
                .finish(),
            ext::WRITE_FILES => self.batch(name, |f| batch::write_files(root, id, data, f)),
            ext::WRITE_FILES_WITH_MODE => {
                self.batch(name, |f| batch::write_files_with_mode(root, id, data, f))
            }
            ext::READ_FILES => self.batch(name, |f| batch::read_files(root, id, data, f)),
            ext::INSTALL_FILES => self.batch(name, |f| {
                batch::install_files(root, id, data, crate::time::now_secs(), f)
            }),
            ext::INDEX_REFRESH => self.index_refresh(id, data),
            ext::COPY_DATA => return self.copy_data(id, data),
            ext::BLAKE3 => return self.blake3(id, data),
            other => wire::status(
                id,
                wire::FX_OP_UNSUPPORTED,
                &format!("extension {other:?} is not supported"),
            ),
        })
    }

    /// `copy-data`, as OpenSSH's server does it: a range of one open file into another open
    /// for writing (a length of 0: to the end). A read that ends early is EOF; two handles
    /// on one file are refused.
    fn copy_data(&self, id: u32, data: &Bytes) -> Answer {
        let Ok(c) = wire::decode_copy_data(data) else {
            return Ok(malformed(id));
        };
        let (Some(r), Some(w)) = (self.get(&c.read), self.get(&c.write)) else {
            return Ok(bad_handle(id));
        };
        let (
            Handle::File {
                file: from,
                path: from_path,
                ..
            },
            Handle::File {
                file: to,
                path: to_path,
                writing: Some(writing),
                append: false,
            },
        ) = (&*r, &*w)
        else {
            return Ok(wire::status(
                id,
                wire::FX_FAILURE,
                "not a file open for writing",
            ));
        };
        if c.read == c.write || from_path == to_path {
            return Ok(wire::status(id, wire::FX_FAILURE, "the same file"));
        }
        writing.writers.wrote(&writing.path);
        let mut buf = vec![0u8; 256 * 1024];
        let (until_end, mut left) = (c.len == 0, c.len);
        let mut done_bytes = 0u64;
        while until_end || left > 0 {
            let want = if until_end {
                buf.len()
            } else {
                left.min(buf.len() as u64) as usize
            };
            let n = from.read_at(&mut buf[..want], c.read_off + done_bytes)?;
            if n == 0 {
                if until_end {
                    break;
                }
                return Ok(wire::status(id, wire::FX_EOF, "the file ended early"));
            }
            to.write_all_at(&buf[..n], c.write_off + done_bytes)?;
            done_bytes += n as u64;
            left = left.saturating_sub(n as u64);
        }
        Ok(ok(id))
    }

    /// `blake3@filesync`: the BLAKE3 of the content of the file open as the handle named.
    fn blake3(&self, id: u32, data: &Bytes) -> Answer {
        let Ok(s) = wire::ext_strings(data, 1) else {
            return Ok(malformed(id));
        };
        let Some(h) = self.get(&s[0]) else {
            return Ok(bad_handle(id));
        };
        let Handle::File { file, .. } = &*h else {
            return Ok(bad_handle(id));
        };
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0u64;
        loop {
            let n = file.read_at(&mut buf, at)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(wire::Reply::new(wire::FXP_EXTENDED_REPLY, id)
            .string(hasher.finalize().as_bytes())
            .finish())
    }

    /// `posix-rename@openssh.com` (replaces) and `hardlink@openssh.com`.
    fn rename_or_link(&self, id: u32, name: &str, data: &Bytes) -> Answer {
        let Ok(s) = wire::ext_strings(data, 2) else {
            return Ok(malformed(id));
        };
        done(
            id,
            self.two_paths(&s[0], &s[1], |a, b| {
                if name == ext::POSIX_RENAME {
                    self.renamed(a, b, self.root().rename(a, b, true))
                } else {
                    self.root().hardlink(a, b)
                }
            }),
        )
    }

    /// `fsync@openssh.com` and `fstatvfs@openssh.com` on an open handle. A folder handle
    /// works too: its fsync makes renames into it durable (a client puts its `.sync` in place
    /// and needs that before it goes on).
    fn on_handle(&self, id: u32, name: &str, data: &Bytes) -> Answer {
        let Ok(s) = wire::ext_strings(data, 1) else {
            return Ok(malformed(id));
        };
        let Some(h) = self.get(&s[0]) else {
            return Ok(wire::status(id, wire::FX_FAILURE, "invalid handle"));
        };
        let with_fd = |fd: rustix::fd::BorrowedFd<'_>| {
            if name == ext::FSYNC {
                done(id, rustix::fs::fsync(fd).map_err(FsError::from))
            } else {
                Ok(statvfs_reply(id, &rustix::fs::fstatvfs(fd)?))
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

    /// `index-refresh@filesync`: OK, or what the refresh left as it was (files it could not
    /// read, files still being written, what the scan leaves out by nature), for the client
    /// to report. A client that does not say it reads the journal gets `.sync` whole.
    fn index_refresh(&self, id: u32, data: &Bytes) -> Bytes {
        let root = self.root().path();
        let with_token = data.as_ref() == ext::REFRESH_WITH_TOKEN;
        let reads_journal = with_token || data.as_ref() == ext::REFRESH_READS_JOURNAL;
        let probe = self.shared.freshness.as_ref();
        match crate::watch::refresh_for_client(root, probe, reads_journal, with_token) {
            Ok((st, token)) => wire::left_out::reply(
                id,
                wire::left_out::Report {
                    unreadable: st.unreadable,
                    writing: st.writing,
                    skipped: st.skipped,
                    skipped_more: Vec::new(),
                    token: token.map(|t| t.0.0),
                },
            ),
            Err(e) => {
                let e = crate::store::Chain(&e).to_string();
                let (peer, user) = (&self.client.peer, &self.client.user);
                tracing::warn!(%peer, %user, request = ext::INDEX_REFRESH, path = %root.display(),
                    "SFTP request failed: {e}");
                wire::status(id, wire::FX_FAILURE, &e)
            }
        }
    }
}

fn bad_handle(id: u32) -> Bytes {
    wire::status(id, wire::FX_FAILURE, "invalid handle")
}

/// A NAME reply with one entry (REALPATH, READLINK).
fn name_reply(id: u32, name: &[u8]) -> Bytes {
    wire::Reply::new(wire::FXP_NAME, id)
        .u32(1)
        .string(name)
        .string(name)
        .attrs(&wire::Attrs::default())
        .finish()
}
