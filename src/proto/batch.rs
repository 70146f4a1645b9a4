//! Our batch extensions' payloads (`write-files@filesync`, `write-files-with-mode@filesync`,
//! `install-files@filesync`, `read-files@filesync` and their replies): what the client builds
//! and the server decodes, and back.

use super::{FX_OK, FXP_EXTENDED_REPLY, Malformed, Reader, Reply};
use bytes::{Buf, Bytes};

/// One file of a `write-files@filesync` request: a new temp file, its mtime and its bytes.
#[derive(Debug, PartialEq)]
pub struct PutFile {
    pub path: Bytes,
    pub mtime: u64,
    /// Its permission bits (`write-files-with-mode@filesync` only).
    pub mode: Option<u32>,
    pub data: Bytes,
}

/// The mode field of a `write-files-with-mode@filesync` file that has none.
pub const NO_MODE: u32 = u32::MAX;

/// One file of an `install-files@filesync` request: the temp to put at `path`; `fresh`
/// means nothing may be there, else what is there goes to the trash.
#[derive(Debug, PartialEq)]
pub struct InstallFile {
    pub tmp: Bytes,
    pub path: Bytes,
    pub fresh: bool,
}

/// Reads a batch request's `u32 count` and that many items; nothing may follow them.
fn batch<T>(
    data: &Bytes,
    item: impl Fn(&mut Reader) -> Result<T, Malformed>,
) -> Result<Vec<T>, Malformed> {
    let mut r = Reader(data.clone());
    let n = r.u32()? as usize;
    // Every item takes at least 8 bytes: a count past that is a lie, not an allocation.
    if n > r.0.remaining() / 8 {
        return Err(Malformed);
    }
    let items = (0..n)
        .map(|_| item(&mut r))
        .collect::<Result<Vec<_>, _>>()?;
    if r.0.has_remaining() {
        return Err(Malformed);
    }
    Ok(items)
}

/// `u32 count`, then per file: string path, u64 mtime (Unix seconds), string data.
pub fn decode_write_files(data: &Bytes) -> Result<Vec<PutFile>, Malformed> {
    batch(data, |r| {
        Ok(PutFile {
            path: r.string()?,
            mtime: r.u64()?,
            mode: None,
            data: r.string()?,
        })
    })
}

/// `u32 count`, then per file: string path, u64 mtime, u32 mode (`NO_MODE`: none), string
/// data.
pub fn decode_write_files_with_mode(data: &Bytes) -> Result<Vec<PutFile>, Malformed> {
    batch(data, |r| {
        Ok(PutFile {
            path: r.string()?,
            mtime: r.u64()?,
            mode: Some(r.u32()?).filter(|m| *m != NO_MODE),
            data: r.string()?,
        })
    })
}

/// `u32 count`, then per file: string temp, string path, u32 flags (bit 0: fresh).
pub fn decode_install_files(data: &Bytes) -> Result<Vec<InstallFile>, Malformed> {
    batch(data, |r| {
        Ok(InstallFile {
            tmp: r.string()?,
            path: r.string()?,
            fresh: r.u32()? & 1 != 0,
        })
    })
}

/// One file of a `read-files@filesync` request: read at most `max` bytes of `path`.
#[derive(Debug, PartialEq)]
pub struct ReadFile {
    pub path: Bytes,
    pub max: u64,
}

/// `u32 count`, then per file: string path, u64 max bytes.
pub fn decode_read_files(data: &Bytes) -> Result<Vec<ReadFile>, Malformed> {
    batch(data, |r| {
        Ok(ReadFile {
            path: r.string()?,
            max: r.u64()?,
        })
    })
}

/// What a batch request did to one file: an SFTP status code, a message, and for a read the
/// bytes.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub code: u32,
    pub msg: String,
    pub data: Bytes,
}

impl Outcome {
    pub fn ok(data: Bytes) -> Outcome {
        Outcome {
            code: FX_OK,
            msg: String::new(),
            data,
        }
    }
    pub fn err(code: u32, msg: String) -> Outcome {
        Outcome {
            code,
            msg,
            data: Bytes::new(),
        }
    }
}

/// The reply to a batch request: `u32 count`, then per file a status code, a message and
/// the data (empty but for reads).
pub fn batch_reply(id: u32, outcomes: &[Outcome]) -> Bytes {
    let len: usize = outcomes
        .iter()
        .map(|o| 12 + o.msg.len() + o.data.len())
        .sum();
    let mut r = Reply::with_capacity(FXP_EXTENDED_REPLY, id, len + 4).u32(outcomes.len() as u32);
    for o in outcomes {
        r = r.u32(o.code).string(o.msg.as_bytes()).string(&o.data);
    }
    r.finish()
}

/// Builds the payload of a batch request (the client's side of the two decoders above).
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder {
            buf: vec![0; 4],
            count: 0,
        }
    }
}

impl BatchBuilder {
    fn string(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(s);
    }
    /// Adds a file to a `write-files@filesync` payload.
    pub fn put_file(&mut self, path: &str, mtime: u64, data: &[u8]) {
        self.string(path.as_bytes());
        self.buf.extend_from_slice(&mtime.to_be_bytes());
        self.string(data);
        self.count += 1;
    }
    /// Adds a file to a `write-files-with-mode@filesync` payload.
    pub fn put_file_with_mode(&mut self, path: &str, mtime: u64, mode: Option<u32>, data: &[u8]) {
        self.string(path.as_bytes());
        self.buf.extend_from_slice(&mtime.to_be_bytes());
        self.buf
            .extend_from_slice(&mode.unwrap_or(NO_MODE).to_be_bytes());
        self.string(data);
        self.count += 1;
    }
    /// Adds a file to a `read-files@filesync` payload.
    pub fn read_file(&mut self, path: &str, max: u64) {
        self.string(path.as_bytes());
        self.buf.extend_from_slice(&max.to_be_bytes());
        self.count += 1;
    }
    /// Adds a file to an `install-files@filesync` payload.
    pub fn install(&mut self, tmp: &str, path: &str, fresh: bool) {
        self.string(tmp.as_bytes());
        self.string(path.as_bytes());
        self.buf.extend_from_slice(&u32::from(fresh).to_be_bytes());
        self.count += 1;
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[..4].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

/// What `put_file` adds for a file: the payload size a request must leave room for.
pub fn put_file_len(path: &str, data_len: usize) -> usize {
    4 + path.len() + 8 + 4 + data_len
}

/// What `put_file_with_mode` adds for a file.
pub fn put_file_with_mode_len(path: &str, data_len: usize) -> usize {
    put_file_len(path, data_len) + 4
}

/// The outcomes of a batch reply's payload (after the request id), one per file.
pub fn decode_batch_reply(data: &Bytes) -> Result<Vec<Outcome>, Malformed> {
    batch(data, |r| {
        let code = r.u32()?;
        let msg = r.string()?;
        Ok(Outcome {
            code,
            msg: String::from_utf8_lossy(&msg).into_owned(),
            data: r.string()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FX_FAILURE;

    #[test]
    fn batch_requests_round_trip() {
        let mut w = BatchBuilder::default();
        w.put_file("/a/.x.sync-tmp.1", 1_700_000_000, b"hello");
        w.put_file("/b", 0, b"");
        let data = Bytes::from(w.finish());
        assert_eq!(
            decode_write_files(&data).unwrap(),
            vec![
                PutFile {
                    path: Bytes::from_static(b"/a/.x.sync-tmp.1"),
                    mtime: 1_700_000_000,
                    mode: None,
                    data: Bytes::from_static(b"hello"),
                },
                PutFile {
                    path: Bytes::from_static(b"/b"),
                    mtime: 0,
                    mode: None,
                    data: Bytes::new(),
                },
            ]
        );
        let mut m = BatchBuilder::default();
        m.put_file_with_mode("/p", 7, Some(0o600), b"x");
        m.put_file_with_mode("/q", 8, None, b"");
        let moded = Bytes::from(m.finish());
        let got = decode_write_files_with_mode(&moded).unwrap();
        assert_eq!(got[0].mode, Some(0o600));
        assert_eq!(got[1].mode, None);
        assert_eq!(got[0].data, Bytes::from_static(b"x"));
        assert_eq!(
            put_file_with_mode_len("/p", 1) + put_file_with_mode_len("/q", 0) + 4,
            moded.len()
        );
        assert_eq!(
            put_file_len("/b", 0) + put_file_len("/a/.x.sync-tmp.1", 5) + 4,
            data.len()
        );
        let mut i = BatchBuilder::default();
        i.install("t1", "p1", true);
        i.install("t2", "p2", false);
        let data = Bytes::from(i.finish());
        let got = decode_install_files(&data).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].fresh && !got[1].fresh);
        assert_eq!(&got[1].path[..], b"p2");
        let mut r = BatchBuilder::default();
        r.read_file("/x", 17);
        assert_eq!(
            decode_read_files(&Bytes::from(r.finish())).unwrap(),
            vec![ReadFile {
                path: Bytes::from_static(b"/x"),
                max: 17
            }]
        );
        // The reply: count, then code, message and data per file (after type and id).
        let outcomes = vec![
            Outcome::ok(Bytes::from_static(b"bytes")),
            Outcome::err(FX_FAILURE, "no".into()),
        ];
        let reply = batch_reply(9, &outcomes);
        assert_eq!(decode_batch_reply(&reply.slice(9..)).unwrap(), outcomes);
    }

    #[test]
    fn batch_requests_refuse_lies_and_leftovers() {
        let mut w = BatchBuilder::default();
        w.put_file("p", 1, b"abc");
        let good = w.finish();
        // A count larger than the payload could hold.
        let mut lie = good.clone();
        lie[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_write_files(&Bytes::from(lie)), Err(Malformed));
        // Trailing bytes after the last file.
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(decode_write_files(&Bytes::from(extra)), Err(Malformed));
        // Cut short.
        let short = Bytes::from(good[..good.len() - 1].to_vec());
        assert_eq!(decode_write_files(&short), Err(Malformed));
        assert_eq!(decode_install_files(&Bytes::new()), Err(Malformed));
        assert_eq!(
            decode_install_files(&Bytes::from_static(&[0, 0, 0, 0])),
            Ok(vec![])
        );
    }
}
