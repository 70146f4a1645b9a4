//! Batches of small files over SFTP: against our own server, many files per request
//! (`read-files@filesync`; `write-files@filesync`, then one `install-files@filesync` with one
//! durability barrier); from any other server, several files at once (writes to one: see
//! `SftpStore::write_batch`).

use super::{Sftp, SftpStore, sftp_time, to_io};
use crate::index::Kind;
use crate::proto::{self as wire, BatchBuilder, ext};
use crate::relpath::RelPath;
use crate::scan::Observed;
use crate::store::{BatchFile, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{Packet, Status, StatusCode};
use std::io;

/// Payload of one batch request: inside the server's 256 KiB packet limit with room to spare.
const REQUEST_BYTES: usize = 240 * 1024;
/// Files of one `read_batch` read at once from a server without our extensions (each holds
/// a handle there). 16 (128 with the engine's 8 batches) made OpenSSH 9.2 answer some reads
/// with a bare "failure" in a 10,000-file download, in every run; 4 never did (see
/// `ChunkStream::wait_for_close`).
const READS_AT_ONCE: usize = 4;

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

/// Splits `items` into requests: consecutive groups whose sizes (`len` of each) add up to at
/// most `REQUEST_BYTES` (an item bigger than that goes alone).
fn pack<T>(items: impl IntoIterator<Item = T>, len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut size = 0;
    for item in items {
        let n = len(&item);
        match groups.last_mut() {
            Some(g) if size + n <= REQUEST_BYTES => {
                g.push(item);
                size += n;
            }
            _ => {
                groups.push(vec![item]);
                size = n;
            }
        }
    }
    groups
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
        let groups = pack(temps, |t| {
            wire::put_file_with_mode_len(&t.1, files[t.0].bytes.len())
        });
        let sent = groups.into_iter().map(|g| async move {
            let mut b = BatchBuilder::default();
            for (i, tmp) in &g {
                let f = &files[*i];
                let mtime = u64::from(sftp_time(f.put.mtime));
                b.put_file_with_mode(tmp, mtime, f.put.mode, &f.bytes);
            }
            let r = self
                .batch_request(ext::WRITE_FILES_WITH_MODE, b.finish(), g.len())
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
        let groups = pack(0..files.len(), |&i| reply_len(files[i].1));
        let s = &self.s;
        let replies = futures::future::join_all(groups.into_iter().map(|g| async move {
            let mut b = BatchBuilder::default();
            for &i in &g {
                b.read_file(&s.path(&files[i].0), files[i].1.saturating_add(1));
            }
            let r = s.batch_request(ext::READ_FILES, b.finish(), g.len()).await;
            (g, r)
        }))
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
                    Err(StoreError::io(
                        "a batch read",
                        std::io::Error::other("no result for a file"),
                    ))
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
        r.wait_for_close();
        let mut v = Vec::with_capacity(size as usize);
        while let Some(c) = r.next_chunk().await {
            v.extend_from_slice(&c.map_err(fail)?);
        }
        Ok(v)
    }

    /// Against our server: all temps in a few requests, then one install.
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
                    path: f.path.clone(),
                }));
            } else {
                temps.push((i, s.temp_for(&f.path)));
            }
        }
        let written = self.write_all_temps(&files, &temps).await;
        let mut staged: Vec<(usize, &String)> = Vec::new();
        for (i, r) in written {
            match r {
                Ok(()) => {
                    if let Some(t) = temp_of(&temps, i) {
                        staged.push((i, t));
                    }
                }
                Err(e) => {
                    let what = format!("cannot write {}:{}", s.host, s.path(&files[i].path));
                    out[i] = Some(Err(StoreError::io(what, e)));
                }
            }
        }
        staged.sort_unstable_by_key(|(i, _)| *i);
        self.install_all(&files, staged, &mut out).await;
        out.into_iter()
            .zip(&files)
            .map(|(r, f)| {
                r.unwrap_or_else(|| {
                    Err(StoreError::io(
                        format!("writing {}", f.path),
                        std::io::Error::other("no result from its batch"),
                    ))
                })
            })
            .collect()
    }

    /// Every temp written; a folder that is not there yet (made by another batch's sync, or
    /// gone) is made, and those files sent again.
    async fn write_all_temps(
        &self,
        files: &[BatchFile],
        temps: &[(usize, String)],
    ) -> Vec<(usize, io::Result<()>)> {
        let s = &self.s;
        let mut written = s.write_temps(files, temps).await;
        let missing: Vec<(usize, String)> = written
            .iter()
            .filter(|(_, r)| {
                r.as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            })
            .filter_map(|(i, _)| temp_of(temps, *i).map(|t| (*i, t.clone())))
            .collect();
        if missing.is_empty() {
            return written;
        }
        for (i, _) in &missing {
            if let Some(parent) = files[*i].path.parent()
                && let Err(e) = s.mkdir_p(&parent, None).await
            {
                tracing::debug!("cannot make the folder of {}: {e}", files[*i].path);
            }
        }
        let again = s.write_temps(files, &missing).await;
        written.retain(|(i, _)| !missing.iter().any(|m| m.0 == *i));
        written.extend(again);
        written
    }

    /// The staged temps put in place: one install request for all (split only if the names
    /// alone overflow a request), each outcome into `out`.
    async fn install_all(
        &self,
        files: &[BatchFile],
        staged: Vec<(usize, &String)>,
        out: &mut [Option<Result<Observed, StoreError>>],
    ) {
        let s = &self.s;
        let groups = pack(staged, |(i, tmp)| {
            12 + tmp.len() + s.path(&files[*i].path).len()
        });
        for g in groups {
            let mut b = BatchBuilder::default();
            for (i, tmp) in &g {
                b.install(tmp, &s.path(&files[*i].path), files[*i].put.fresh);
            }
            let res = s
                .batch_request(ext::INSTALL_FILES, b.finish(), g.len())
                .await;
            match res {
                Ok(st) => {
                    for ((i, tmp), o) in g.iter().zip(st) {
                        let r = self.installed(&files[*i], o);
                        if r.is_ok() {
                            s.made.done(tmp);
                        }
                        out[*i] = Some(r);
                    }
                }
                Err(e) => {
                    // Temps left by a lost connection are removed by a later scan.
                    for (i, _) in &g {
                        let what =
                            format!("cannot put in place {}:{}", s.host, s.path(&files[*i].path));
                        out[*i] = Some(Err(StoreError::io(what, share(&e))));
                    }
                }
            }
        }
    }

    /// What one file's install outcome means.
    fn installed(&self, f: &BatchFile, o: wire::Outcome) -> Result<Observed, StoreError> {
        let s = &self.s;
        match o.code {
            wire::FX_OK => Ok(Observed {
                kind: Kind::File,
                size: f.bytes.len() as u64,
                mtime: crate::index::MTime::new(i64::from(sftp_time(f.put.mtime)), 0),
                mode: f.put.mode,
            }),
            wire::FX_FILE_ALREADY_EXISTS if f.put.fresh => Err(StoreError::Appeared {
                path: f.path.clone(),
                place: s.place(),
            }),
            _ => Err(s.err(
                "cannot put in place",
                &s.path(&f.path),
                status_err(o.code, o.msg),
            )),
        }
    }
}

/// The temp of file `i` (`temps` is in file order).
fn temp_of(temps: &[(usize, String)], i: usize) -> Option<&String> {
    temps
        .binary_search_by_key(&i, |t| t.0)
        .ok()
        .map(|k| &temps[k].1)
}

#[cfg(test)]
mod tests {
    use super::{REQUEST_BYTES, pack};

    #[test]
    fn requests_stay_within_their_budget_and_keep_the_order() {
        let sizes = [100, REQUEST_BYTES - 100, 1, REQUEST_BYTES + 5, 7, 8];
        let groups = pack(sizes.iter().copied().enumerate(), |&(_, n)| n);
        let ids: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2], vec![3], vec![4, 5]]);
        assert!(pack(Vec::<usize>::new(), |&n| n).is_empty());
    }
}
