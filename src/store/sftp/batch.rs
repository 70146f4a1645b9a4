//! Batches of small files over SFTP: against our own server, many files per request
//! (`read-files@filesync`; `write-files@filesync`, then one `install-files@filesync` with one
//! durability barrier); from any other server, several files at once.

use super::{Sftp, SftpStore, sftp_time, to_io};
use crate::index::Kind;
use crate::relpath::RelPath;
use crate::scan::Observed;
use crate::server::wire::{self, BatchBuilder};
use crate::store::{BatchFile, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{Packet, Status, StatusCode};
use std::io;

pub const WRITE_FILES_EXT: &str = "write-files@filesync";
pub const INSTALL_FILES_EXT: &str = "install-files@filesync";
pub const READ_FILES_EXT: &str = "read-files@filesync";

/// Payload of one batch request: inside the server's 256 KiB packet limit with room to spare.
const REQUEST_BYTES: usize = 240 * 1024;
/// Files of one `read_batch` read at once (each holds a handle on the server).
const READS_AT_ONCE: usize = 16;

/// An SFTP status as the client library reports it, so one mapping makes every message.
fn status_err(code: u32, msg: String) -> SftpError {
    let status_code = match code {
        wire::FX_EOF => StatusCode::Eof,
        wire::FX_NO_SUCH_FILE => StatusCode::NoSuchFile,
        wire::FX_PERMISSION_DENIED => StatusCode::PermissionDenied,
        wire::FX_BAD_MESSAGE => StatusCode::BadMessage,
        wire::FX_OP_UNSUPPORTED => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    SftpError::Status(Status {
        id: 0,
        status_code,
        error_message: msg,
        language_tag: "en".into(),
    })
}

/// A copy of an error for each file it hit (a failed request fails all its files).
fn share(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl Sftp {
    /// Sends one batch request; its per-file statuses, or why the whole request failed.
    async fn batch_request(
        &self,
        ext: &str,
        payload: Vec<u8>,
        count: usize,
    ) -> Result<Vec<wire::Outcome>, io::Error> {
        let raw = self.raw();
        // An install waits on barriers of a slow card: give it the index refresh's patience.
        raw.set_timeout(600);
        let res = raw.extended(ext, payload).await;
        raw.set_timeout(super::REQUEST_TIMEOUT_SECS);
        let statuses = match res.map_err(to_io)? {
            Packet::ExtendedReply(r) => wire::decode_batch_reply(&Bytes::from(r.data))
                .map_err(|_| io::Error::other(format!("malformed reply to {ext}")))?,
            Packet::Status(s) => return Err(to_io(SftpError::Status(s))),
            _ => return Err(io::Error::other(format!("unexpected reply to {ext}"))),
        };
        if statuses.len() != count {
            return Err(io::Error::other(format!(
                "{ext} answered for {} files of {count}",
                statuses.len()
            )));
        }
        Ok(statuses)
    }

    /// Writes each `(index, temp)` of `files` in as few requests as fit; a status per file.
    async fn write_temps(
        &self,
        files: &[BatchFile],
        temps: &[(usize, String)],
    ) -> Vec<(usize, Result<(), io::Error>)> {
        let mut groups: Vec<Vec<&(usize, String)>> = vec![Vec::new()];
        let mut size = 4;
        for t in temps {
            let len = wire::put_file_len(&t.1, files[t.0].bytes.len());
            if size + len > REQUEST_BYTES && groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
                size = 4;
            }
            size += len;
            if let Some(g) = groups.last_mut() {
                g.push(t);
            }
        }
        let sent = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(|g| async move {
                let mut b = BatchBuilder::default();
                for (i, tmp) in &g {
                    let f = &files[*i];
                    b.put_file(tmp, u64::from(sftp_time(f.put.mtime)), &f.bytes);
                }
                let r = self
                    .batch_request(WRITE_FILES_EXT, b.finish(), g.len())
                    .await;
                match r {
                    Ok(st) => g
                        .iter()
                        .zip(st)
                        .map(|((i, _), o)| {
                            let r = if o.code == wire::FX_OK {
                                Ok(())
                            } else {
                                Err(to_io(status_err(o.code, o.msg)))
                            };
                            (*i, r)
                        })
                        .collect::<Vec<_>>(),
                    Err(e) => g.iter().map(|(i, _)| (*i, Err(share(&e)))).collect(),
                }
            });
        futures::future::join_all(sent)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

impl SftpStore {
    /// Reads small files whole: from our server many per request, elsewhere several at once
    /// through the usual pipelined reads.
    pub(super) async fn read_batch_async(
        &self,
        files: &[(RelPath, u64)],
    ) -> Vec<Result<Vec<u8>, StoreError>> {
        // What a file takes of a reply: its bytes, one more to see that it grew, and framing.
        let reply_len = |n: u64| (n as usize).saturating_add(1 + 16);
        if !self.s.batch || files.iter().any(|(_, n)| reply_len(*n) > REQUEST_BYTES) {
            // By index: a closure over `&(RelPath, u64)` trips the compiler's Send inference.
            return futures::stream::iter(0..files.len())
                .map(|i| self.read_whole(&files[i].0, files[i].1))
                .buffered(READS_AT_ONCE)
                .collect()
                .await;
        }
        let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
        let mut size = 0;
        for (i, (_, n)) in files.iter().enumerate() {
            let len = reply_len(*n);
            if size + len > REQUEST_BYTES && groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
                size = 0;
            }
            size += len;
            if let Some(g) = groups.last_mut() {
                g.push(i);
            }
        }
        let s = &self.s;
        let replies = futures::future::join_all(groups.into_iter().filter(|g| !g.is_empty()).map(
            |g| async move {
                let mut b = BatchBuilder::default();
                for &i in &g {
                    b.read_file(&s.path(&files[i].0), files[i].1.saturating_add(1));
                }
                let r = s.batch_request(READ_FILES_EXT, b.finish(), g.len()).await;
                (g, r)
            },
        ))
        .await;
        let mut out: Vec<Option<Result<Vec<u8>, StoreError>>> =
            files.iter().map(|_| None).collect();
        for (g, r) in replies {
            match r {
                Ok(outcomes) => {
                    for (i, o) in g.into_iter().zip(outcomes) {
                        out[i] = Some(if o.code == wire::FX_OK {
                            Ok(o.data.to_vec())
                        } else {
                            let path = s.path(&files[i].0);
                            Err(s.err("cannot read", &path, status_err(o.code, o.msg)))
                        });
                    }
                }
                Err(e) => {
                    for i in g {
                        let what = format!("cannot read {}:{}", s.host, s.path(&files[i].0));
                        out[i] = Some(Err(StoreError::io(what, share(&e))));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Other("batch read lost track of a file".into()))
                })
            })
            .collect()
    }

    async fn read_whole(&self, p: &RelPath, size: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.s.path(p);
        let fail = |e| self.s.err("cannot read", &path, e);
        let mut r = super::xfer::open_read(&self.s, &path, Some(size))
            .await
            .map_err(fail)?;
        let mut v = Vec::with_capacity(size as usize);
        while let Some(c) = r.next_chunk().await {
            v.extend_from_slice(&c.map_err(fail)?);
        }
        Ok(v)
    }

    /// Against our server: all temps in a few requests, then one install. Elsewhere: `write`
    /// per file (the engine only batches where `batches()` says so).
    pub(super) async fn write_batch_async(
        &self,
        files: Vec<BatchFile>,
    ) -> Vec<Result<Observed, StoreError>> {
        let s = &self.s;
        let mut out: Vec<Option<Result<Observed, StoreError>>> =
            files.iter().map(|_| None).collect();
        let mut temps: Vec<(usize, String)> = Vec::new();
        for (i, f) in files.iter().enumerate() {
            // A source that changed since its scan is not sent at all.
            if f.put
                .expect
                .is_some_and(|h| h.0 != *blake3::hash(&f.bytes).as_bytes())
            {
                out[i] = Some(Err(StoreError::SourceChanged {
                    path: f.path.to_string(),
                }));
            } else {
                temps.push((i, s.temp_for(&f.path)));
            }
        }
        let mut written = s.write_temps(&files, &temps).await;
        // A folder that is not there yet (made by another batch's sync, or gone): make it,
        // then send those files again.
        let missing: Vec<(usize, String)> = written
            .iter()
            .filter(|(_, r)| {
                r.as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            })
            .filter_map(|(i, _)| temps.iter().find(|t| t.0 == *i).cloned())
            .collect();
        if !missing.is_empty() {
            for (i, _) in &missing {
                if let Some(parent) = files[*i].path.parent()
                    && let Err(e) = s.mkdir_p(&parent).await
                {
                    tracing::debug!("cannot make the folder of {}: {e}", files[*i].path);
                }
            }
            let again = s.write_temps(&files, &missing).await;
            written.retain(|(i, _)| !missing.iter().any(|m| m.0 == *i));
            written.extend(again);
        }
        let mut staged: Vec<(usize, &String)> = Vec::new();
        for (i, r) in written {
            match r {
                Ok(()) => {
                    if let Some(t) = temps.iter().find(|t| t.0 == i) {
                        staged.push((i, &t.1));
                    }
                }
                Err(e) => {
                    let tmp = temps.iter().find(|t| t.0 == i).map_or("", |t| t.1.as_str());
                    out[i] = Some(Err(StoreError::io(
                        format!("cannot write {}:{tmp}", s.host),
                        e,
                    )));
                }
            }
        }
        staged.sort_unstable_by_key(|(i, _)| *i);
        // One install for all (split only if the names alone overflow a request).
        let mut groups: Vec<Vec<(usize, &String)>> = vec![Vec::new()];
        let mut size = 4;
        for (i, tmp) in staged {
            let path = s.path(&files[i].path);
            let len = 12 + tmp.len() + path.len();
            if size + len > REQUEST_BYTES && groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
                size = 4;
            }
            size += len;
            if let Some(g) = groups.last_mut() {
                g.push((i, tmp));
            }
        }
        for g in groups.into_iter().filter(|g| !g.is_empty()) {
            let mut b = BatchBuilder::default();
            for (i, tmp) in &g {
                b.install(tmp, &s.path(&files[*i].path), files[*i].put.fresh);
            }
            match s
                .batch_request(INSTALL_FILES_EXT, b.finish(), g.len())
                .await
            {
                Ok(st) => {
                    for ((i, _), o) in g.iter().zip(st) {
                        let f = &files[*i];
                        out[*i] = Some(match o.code {
                            wire::FX_OK => Ok(Observed {
                                kind: Kind::File,
                                size: f.bytes.len() as u64,
                                mtime: crate::index::MTime::new(
                                    i64::from(sftp_time(f.put.mtime)),
                                    0,
                                ),
                            }),
                            wire::FX_FILE_ALREADY_EXISTS if f.put.fresh => {
                                Err(StoreError::Other(format!(
                                    "{} appeared on {} since it was scanned; it will be synced next time",
                                    f.path, s.host
                                )))
                            }
                            _ => Err(s.err(
                                "cannot put in place",
                                &s.path(&f.path),
                                status_err(o.code, o.msg),
                            )),
                        });
                    }
                }
                Err(e) => {
                    // Temps left by a lost connection are removed by a later scan.
                    for (i, _) in &g {
                        out[*i] = Some(Err(StoreError::io(
                            format!("cannot put in place {}:{}", s.host, s.path(&files[*i].path)),
                            share(&e),
                        )));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("batch file lost track of".into()))))
            .collect()
    }
}
