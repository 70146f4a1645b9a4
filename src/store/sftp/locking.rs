//! The remote `.sync.lock`, taken and given back with the same rules as a local one
//! (`replica::lock`).

use super::SftpStore;
use super::wire::is_status;
use crate::replica::layout::LOCK_FILE;
use crate::replica::lock::{self, LockInfo};
use crate::replica::lock::{Met, Next};
use crate::store::StoreError;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a round's create met (`Met`, owning what it read).
enum Seen {
    Made,
    Theirs {
        bytes: Option<Vec<u8>>,
        len: u64,
        age: Duration,
    },
    Gone,
}

impl SftpStore {
    /// Takes the remote lock, each round judged as a local one is (`lock::attempt`).
    pub(super) async fn lock_async(&self, info: &LockInfo) -> Result<(), StoreError> {
        let s = &self.s;
        let path = s.join(LOCK_FILE);
        let place = s.lock_place();
        let body = serde_json::to_vec(info).unwrap_or_default();
        let mut last = None;
        for _ in 0..lock::ROUNDS {
            let (seen, failed) = self.meet(&path, &body).await;
            let met = match &seen {
                Seen::Made => Met::Made {
                    written: failed.is_none(),
                },
                Seen::Theirs { bytes, len, age } => Met::Theirs {
                    bytes: bytes.as_deref(),
                    len: *len,
                    age: *age,
                },
                Seen::Gone => Met::Gone,
            };
            match lock::attempt(met, self.lock_stale_secs, &place) {
                Next::Hold => {
                    self.st.locked.store(true, Ordering::Relaxed);
                    lock::note_held(&place, true);
                    return Ok(());
                }
                Next::Undo => {
                    let _ = s.raw().remove(path.as_str()).await;
                    let e = failed.unwrap_or(SftpError::UnexpectedPacket);
                    return Err(s.err("cannot write", &path, e));
                }
                Next::Break => {
                    tracing::warn!(lock = %path, host = %s.host, "breaking a stale lock");
                    let _ = s.raw().remove(path.as_str()).await;
                }
                Next::Retry => {}
                Next::Refuse(holder) => {
                    return Err(StoreError::Locked {
                        place,
                        holder,
                        stale_secs: self.lock_stale_secs,
                    });
                }
            }
            last = failed;
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

    /// One round's create of the lock at `path` with `body`, and what it met; the error of a
    /// failed create or write.
    async fn meet(&self, path: &str, body: &[u8]) -> (Seen, Option<SftpError>) {
        let s = &self.s;
        let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
        let raw = s.raw();
        let e = match raw.open(path, flags, FileAttributes::empty()).await {
            Ok(h) => {
                let res = raw.write(h.handle.as_str(), 0, body.to_vec()).await;
                let _ = raw.close(h.handle).await;
                return (Seen::Made, res.err());
            }
            Err(e) => e,
        };
        // Nothing there: released meanwhile, or a real error (a folder we may not write to).
        let Some(attrs) = s.lstat(path).await.ok().flatten() else {
            return (Seen::Gone, Some(e));
        };
        let bytes = match s.read_all(path).await {
            Ok(None) => return (Seen::Gone, Some(e)),
            Ok(Some(b)) => Some(b),
            Err(_) => None,
        };
        let age = crate::time::now_secs() - i64::from(attrs.mtime.unwrap_or(0));
        let seen = Seen::Theirs {
            bytes,
            len: attrs.size.unwrap_or(1),
            age: Duration::from_secs(age.max(0) as u64),
        };
        (seen, Some(e))
    }

    pub(super) async fn unlock_async(&self) -> Result<(), StoreError> {
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
}
