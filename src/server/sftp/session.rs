//! One SFTP session's requests, each run to its reply: the open handles, every path through
//! the root (`fs`), and files opened for writing recorded in the root's `Writers` so scans
//! leave them out until they are closed and quiet.

use super::super::batch;
use super::super::fs::{self, ClientOps, FsError, FsResult, Root};
use super::{MAX_HANDLES, READDIR_BATCH, Shared};
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
        append: bool,
        /// Set when the file was opened for writing.
        writing: Option<Writing>,
    },
    Dir(Mutex<DirState>),
}

pub(super) struct DirState {
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
    handles: Mutex<HashMap<u32, Arc<Handle>>>,
    next_handle: AtomicU32,
}

pub(super) fn status_of(id: u32, e: FsError) -> Bytes {
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

fn malformed(id: u32) -> Bytes {
    wire::status(id, wire::FX_BAD_MESSAGE, "malformed request")
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
    let now = crate::time::now_secs();
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
impl Session {
    pub(super) fn new(shared: Arc<Shared>) -> Session {
        Session {
            shared,
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
    fn changing(&self, id: u32, f: impl FnOnce() -> FsResult<()>) -> Bytes {
        if self.shared.read_only {
            return denied_read_only(id);
        }
        done(id, f())
    }

    /// Runs one request to completion (blocking I/O; called on the blocking pool). One arm
    /// per request type: the table of what the server does.
    pub(super) fn handle(&self, id: u32, req: Request) -> Bytes {
        let root = self.root();
        let at = |p: &[u8]| fs::client_path(p);
        match req {
            Request::Init { version } => {
                tracing::debug!(version, "client speaks SFTP version");
                version_reply()
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
            Request::Lstat { path } => attrs_reply(id, at(&path).and_then(|p| root.lstat(&p))),
            Request::Stat { path } => attrs_reply(id, at(&path).and_then(|p| root.stat(&p))),
            Request::Fstat { handle } => self.fstat(id, &handle),
            Request::SetStat { path, attrs } => {
                self.changing(id, || at(&path).and_then(|p| root.setstat(&p, &attrs)))
            }
            Request::FSetStat { handle, attrs } => self.fsetstat(id, &handle, &attrs),
            Request::OpenDir { path } => match at(&path).and_then(|p| root.open_dir(&p)) {
                Ok((fd, dir)) => self.insert(id, Handle::Dir(Mutex::new(DirState { fd, dir }))),
                Err(e) => status_of(id, e),
            },
            Request::ReadDir { handle } => self.readdir(id, &handle),
            Request::Remove { path } => {
                self.changing(id, || at(&path).and_then(|p| root.remove(&p)))
            }
            Request::MkDir { path, attrs } => self.changing(id, || {
                at(&path).and_then(|p| root.make_dir(&p, attrs.permissions))
            }),
            Request::RmDir { path } => self.changing(id, || at(&path).and_then(|p| root.rmdir(&p))),
            Request::RealPath { path } => match at(&path) {
                Ok(p) => name_reply(id, format!("/{}", p.as_str()).as_bytes()),
                Err(e) => status_of(id, e),
            },
            Request::Rename { from, to } => self.changing(id, || {
                self.two_paths(&from, &to, |a, b| {
                    self.renamed(a, b, root.rename(a, b, false))
                })
            }),
            Request::ReadLink { path } => match at(&path).and_then(|p| root.readlink(&p)) {
                Ok(target) => name_reply(id, &target),
                Err(e) => status_of(id, e),
            },
            Request::Symlink { target, link } => {
                self.changing(id, || at(&link).and_then(|l| root.symlink(&target, &l)))
            }
            Request::Extended { name, data } => self.extended(id, &name, &data),
            Request::Unknown { kind } => wire::status(
                id,
                wire::FX_OP_UNSUPPORTED,
                &format!("request type {kind} is not supported"),
            ),
        }
    }

    fn open(&self, id: u32, path: &[u8], pflags: u32, perms: Option<u32>) -> Bytes {
        use wire::{PF_APPEND, PF_CREAT, PF_TRUNC, PF_WRITE};
        let writes = pflags & (PF_WRITE | PF_APPEND | PF_CREAT | PF_TRUNC) != 0;
        if writes && self.shared.read_only {
            return denied_read_only(id);
        }
        let p = match fs::client_path(path) {
            Ok(p) => p,
            Err(e) => return status_of(id, e),
        };
        match self.root().open_file(&p, pflags, perms) {
            Ok(file) => {
                let writing = writes.then(|| {
                    self.shared.writers.opened(&p);
                    Writing {
                        writers: self.shared.writers.clone(),
                        path: p,
                    }
                });
                let append = pflags & PF_APPEND != 0;
                self.insert(
                    id,
                    Handle::File {
                        file,
                        append,
                        writing,
                    },
                )
            }
            Err(e) => status_of(id, e),
        }
    }

    fn close(&self, id: u32, handle: &[u8]) -> Bytes {
        let key = handle_key(handle);
        let removed = match (key, self.handles.lock()) {
            (Some(k), Ok(mut hs)) => hs.remove(&k),
            _ => None,
        };
        match removed {
            Some(_) => ok(id),
            None => bad_handle(id),
        }
    }

    fn read(&self, id: u32, handle: &[u8], offset: u64, len: u32) -> Bytes {
        match self.get(handle).as_deref() {
            Some(Handle::File { file, .. }) => read_reply(id, file, offset, len.min(wire::MAX_IO)),
            _ => bad_handle(id),
        }
    }

    fn write(&self, id: u32, handle: &[u8], offset: u64, data: &[u8]) -> Bytes {
        let Some(h) = self.get(handle) else {
            return bad_handle(id);
        };
        let Handle::File {
            file,
            append,
            writing,
        } = &*h
        else {
            return bad_handle(id);
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

    fn fstat(&self, id: u32, handle: &[u8]) -> Bytes {
        let Some(h) = self.get(handle) else {
            return bad_handle(id);
        };
        let st = match &*h {
            Handle::File { file, .. } => rustix::fs::fstat(file),
            Handle::Dir(d) => match d.lock() {
                Ok(d) => rustix::fs::fstat(&d.fd),
                Err(_) => return bad_handle(id),
            },
        };
        attrs_reply(id, st.map_err(FsError::from))
    }

    fn fsetstat(&self, id: u32, handle: &[u8], attrs: &wire::Attrs) -> Bytes {
        if self.shared.read_only {
            return denied_read_only(id);
        }
        match self.get(handle).as_deref() {
            Some(Handle::File { file, .. }) => done(id, fs::fsetstat(file, attrs)),
            Some(Handle::Dir(_)) => {
                wire::status(id, wire::FX_OP_UNSUPPORTED, "not on a folder handle")
            }
            None => bad_handle(id),
        }
    }

    fn readdir(&self, id: u32, handle: &[u8]) -> Bytes {
        let Some(h) = self.get(handle) else {
            return bad_handle(id);
        };
        let Handle::Dir(d) = &*h else {
            return bad_handle(id);
        };
        let Ok(mut d) = d.lock() else {
            return bad_handle(id);
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

    fn extended(&self, id: u32, name: &[u8], data: &Bytes) -> Bytes {
        let name = std::str::from_utf8(name).unwrap_or("");
        let changes = matches!(
            name,
            ext::POSIX_RENAME
                | ext::HARDLINK
                | ext::WRITE_FILES
                | ext::WRITE_FILES_WITH_MODE
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
            ext::WRITE_FILES_WITH_MODE => batch::write_files_with_mode(self.root(), id, data),
            ext::READ_FILES => batch::read_files(self.root(), id, data),
            ext::INSTALL_FILES => {
                batch::install_files(self.root(), id, data, crate::time::now_secs())
            }
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
        match crate::watch::refresh_for_client(self.root().path(), self.shared.freshness.as_ref()) {
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
            Err(e) => wire::status(id, wire::FX_FAILURE, &crate::store::Chain(&e).to_string()),
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
