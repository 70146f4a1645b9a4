//! The SFTP protocol as both our ends speak it: version 3's packets (decoding requests,
//! encoding replies), our batch payloads, every extension's name (`ext`), and the SSH
//! cipher order both ends prefer (`ciphers`). No I/O here; used by the client store and the
//! server alike.
//!
//! Paths stay raw bytes until the server checks them, so a non-UTF-8 or NUL-bearing name is
//! refused there instead of being mangled here.

mod batch;
pub mod ciphers;
pub mod ext;
pub mod left_out;

pub use batch::*;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;
pub const FX_BAD_MESSAGE: u32 = 5;
pub const FX_OP_UNSUPPORTED: u32 = 8;
/// SFTP version 6's code, used only in our batch replies: a fresh install found a file there.
pub const FX_FILE_ALREADY_EXISTS: u32 = 11;

pub const ATTR_SIZE: u32 = 0x1;
pub const ATTR_UIDGID: u32 = 0x2;
pub const ATTR_PERMISSIONS: u32 = 0x4;
pub const ATTR_ACMODTIME: u32 = 0x8;
pub const ATTR_EXTENDED: u32 = 0x8000_0000;

pub const PF_READ: u32 = 0x1;
pub const PF_WRITE: u32 = 0x2;
pub const PF_APPEND: u32 = 0x4;
pub const PF_CREAT: u32 = 0x8;
pub const PF_TRUNC: u32 = 0x10;
pub const PF_EXCL: u32 = 0x20;

/// Largest SFTP packet we accept or send (what `limits@openssh.com` reports).
pub const MAX_PACKET: u32 = 256 * 1024;
/// Largest READ/WRITE payload: a full packet minus room for the headers.
pub const MAX_IO: u32 = MAX_PACKET - 1024;

/// File attributes as SFTP v3 carries them; `None` means the flag is absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    pub atime_mtime: Option<(u32, u32)>,
}

/// A request the client sent; strings and data are zero-copy slices of the packet.
#[derive(Debug)]
pub enum Request {
    Init {
        version: u32,
    },
    Open {
        path: Bytes,
        pflags: u32,
        attrs: Attrs,
    },
    Close {
        handle: Bytes,
    },
    Read {
        handle: Bytes,
        offset: u64,
        len: u32,
    },
    Write {
        handle: Bytes,
        offset: u64,
        data: Bytes,
    },
    Lstat {
        path: Bytes,
    },
    Fstat {
        handle: Bytes,
    },
    SetStat {
        path: Bytes,
        attrs: Attrs,
    },
    FSetStat {
        handle: Bytes,
        attrs: Attrs,
    },
    OpenDir {
        path: Bytes,
    },
    ReadDir {
        handle: Bytes,
    },
    Remove {
        path: Bytes,
    },
    MkDir {
        path: Bytes,
        attrs: Attrs,
    },
    RmDir {
        path: Bytes,
    },
    RealPath {
        path: Bytes,
    },
    Stat {
        path: Bytes,
    },
    Rename {
        from: Bytes,
        to: Bytes,
    },
    ReadLink {
        path: Bytes,
    },
    /// OpenSSH order (and paramiko's): the link's target first, then the link's own path.
    Symlink {
        target: Bytes,
        link: Bytes,
    },
    Extended {
        name: Bytes,
        data: Bytes,
    },
    Unknown {
        kind: u8,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("malformed SFTP packet")]
pub struct Malformed;

struct Reader(Bytes);

impl Reader {
    fn u8(&mut self) -> Result<u8, Malformed> {
        if self.0.remaining() < 1 {
            return Err(Malformed);
        }
        Ok(self.0.get_u8())
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        if self.0.remaining() < 4 {
            return Err(Malformed);
        }
        Ok(self.0.get_u32())
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        if self.0.remaining() < 8 {
            return Err(Malformed);
        }
        Ok(self.0.get_u64())
    }
    fn string(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u32()? as usize;
        if self.0.remaining() < n {
            return Err(Malformed);
        }
        Ok(self.0.split_to(n))
    }
    fn attrs(&mut self) -> Result<Attrs, Malformed> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.atime_mtime = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            // Extended attributes carry nothing we act on; skip them.
            let n = self.u32()?;
            for _ in 0..n {
                self.string()?;
                self.string()?;
            }
        }
        Ok(a)
    }
}

/// Decodes one packet body (after its length prefix) into its request id and request.
/// INIT has no id; it is reported as id 0.
pub fn decode(body: Bytes) -> Result<(u32, Request), Malformed> {
    let mut r = Reader(body);
    let kind = r.u8()?;
    if kind == FXP_INIT {
        return Ok((0, Request::Init { version: r.u32()? }));
    }
    let id = r.u32()?;
    let req = match kind {
        FXP_OPEN => Request::Open {
            path: r.string()?,
            pflags: r.u32()?,
            attrs: r.attrs()?,
        },
        FXP_CLOSE => Request::Close {
            handle: r.string()?,
        },
        FXP_READ => Request::Read {
            handle: r.string()?,
            offset: r.u64()?,
            len: r.u32()?,
        },
        FXP_WRITE => Request::Write {
            handle: r.string()?,
            offset: r.u64()?,
            data: r.string()?,
        },
        FXP_LSTAT => Request::Lstat { path: r.string()? },
        FXP_FSTAT => Request::Fstat {
            handle: r.string()?,
        },
        FXP_SETSTAT => Request::SetStat {
            path: r.string()?,
            attrs: r.attrs()?,
        },
        FXP_FSETSTAT => Request::FSetStat {
            handle: r.string()?,
            attrs: r.attrs()?,
        },
        FXP_OPENDIR => Request::OpenDir { path: r.string()? },
        FXP_READDIR => Request::ReadDir {
            handle: r.string()?,
        },
        FXP_REMOVE => Request::Remove { path: r.string()? },
        FXP_MKDIR => Request::MkDir {
            path: r.string()?,
            attrs: r.attrs()?,
        },
        FXP_RMDIR => Request::RmDir { path: r.string()? },
        FXP_REALPATH => Request::RealPath { path: r.string()? },
        FXP_STAT => Request::Stat { path: r.string()? },
        FXP_RENAME => Request::Rename {
            from: r.string()?,
            to: r.string()?,
        },
        FXP_READLINK => Request::ReadLink { path: r.string()? },
        FXP_SYMLINK => Request::Symlink {
            target: r.string()?,
            link: r.string()?,
        },
        FXP_EXTENDED => Request::Extended {
            name: r.string()?,
            data: r.0,
        },
        kind => Request::Unknown { kind },
    };
    Ok((id, req))
}

/// A `copy-data` request: from the file open as `read` (at `read_off`, `len` bytes; 0 means
/// to its end) into the one open as `write` (at `write_off`).
#[derive(Debug, PartialEq)]
pub struct CopyData {
    pub read: Bytes,
    pub read_off: u64,
    pub len: u64,
    pub write: Bytes,
    pub write_off: u64,
}

/// string read handle, u64 read offset, u64 length, string write handle, u64 write offset.
pub fn decode_copy_data(data: &Bytes) -> Result<CopyData, Malformed> {
    let mut r = Reader(data.clone());
    Ok(CopyData {
        read: r.string()?,
        read_off: r.u64()?,
        len: r.u64()?,
        write: r.string()?,
        write_off: r.u64()?,
    })
}

/// Splits request-specific payload of an EXTENDED request into its strings.
pub fn ext_strings(data: &Bytes, n: usize) -> Result<Vec<Bytes>, Malformed> {
    let mut r = Reader(data.clone());
    (0..n).map(|_| r.string()).collect()
}

/// Builds one reply packet, length prefix included.
pub struct Reply(BytesMut);

impl Reply {
    pub fn new(kind: u8, id: u32) -> Reply {
        let mut b = BytesMut::with_capacity(64);
        b.put_u32(0);
        b.put_u8(kind);
        if kind != FXP_VERSION {
            b.put_u32(id);
        }
        Reply(b)
    }
    pub fn with_capacity(kind: u8, id: u32, cap: usize) -> Reply {
        let mut r = Reply::new(kind, id);
        r.0.reserve(cap);
        r
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.put_u32(v);
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.put_u64(v);
        self
    }
    pub fn string(mut self, s: &[u8]) -> Self {
        self.0.put_u32(s.len() as u32);
        self.0.put_slice(s);
        self
    }
    pub fn attrs(mut self, a: &Attrs) -> Self {
        put_attrs(&mut self.0, a);
        self
    }
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.0
    }
    pub fn finish(mut self) -> Bytes {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0.freeze()
    }
}

pub fn put_attrs(b: &mut BytesMut, a: &Attrs) {
    let mut flags = 0;
    if a.size.is_some() {
        flags |= ATTR_SIZE;
    }
    if a.uid_gid.is_some() {
        flags |= ATTR_UIDGID;
    }
    if a.permissions.is_some() {
        flags |= ATTR_PERMISSIONS;
    }
    if a.atime_mtime.is_some() {
        flags |= ATTR_ACMODTIME;
    }
    b.put_u32(flags);
    if let Some(s) = a.size {
        b.put_u64(s);
    }
    if let Some((u, g)) = a.uid_gid {
        b.put_u32(u);
        b.put_u32(g);
    }
    if let Some(p) = a.permissions {
        b.put_u32(p);
    }
    if let Some((at, mt)) = a.atime_mtime {
        b.put_u32(at);
        b.put_u32(mt);
    }
}

pub fn status(id: u32, code: u32, msg: &str) -> Bytes {
    Reply::new(FXP_STATUS, id)
        .u32(code)
        .string(msg.as_bytes())
        .string(b"en")
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_request_round_trips_without_copy() {
        let mut b = BytesMut::new();
        b.put_u8(FXP_WRITE);
        b.put_u32(7);
        b.put_u32(2);
        b.put_slice(b"h1");
        b.put_u64(4096);
        b.put_u32(3);
        b.put_slice(b"abc");
        let (id, req) = decode(b.freeze()).unwrap();
        assert_eq!(id, 7);
        match req {
            Request::Write {
                handle,
                offset,
                data,
            } => {
                assert_eq!(
                    (&handle[..], offset, &data[..]),
                    (&b"h1"[..], 4096, &b"abc"[..])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_packets_are_malformed() {
        assert_eq!(
            decode(Bytes::from_static(&[FXP_OPEN, 0, 0])).unwrap_err(),
            Malformed
        );
        assert_eq!(
            decode(Bytes::from_static(&[
                FXP_STAT, 0, 0, 0, 1, 0, 0, 0, 9, b'a'
            ]))
            .unwrap_err(),
            Malformed
        );
    }

    #[test]
    fn attrs_round_trip() {
        let a = Attrs {
            size: Some(5),
            uid_gid: None,
            permissions: Some(0o100644),
            atime_mtime: Some((1, 2)),
        };
        let mut b = BytesMut::new();
        put_attrs(&mut b, &a);
        assert_eq!(Reader(b.freeze()).attrs().unwrap(), a);
    }
}
