//! `StoreError`: why a store step did not happen, with a variant for each thing a caller acts
//! on (a lock to wait for, a path that moved since the scan, a link in the way, a lost
//! connection, a bad index, a full disk) and the I/O cause kept as the source.

use crate::index::FormatError;
use crate::relpath::RelPath;
use crate::replica::lock::Holder;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system or SFTP step failed; `what` says which, on what.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The disk on that side is full.
    #[error("{what}")]
    NoSpace {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection to a remote store is gone: every further step would fail the same way.
    #[error("{host}: connection lost")]
    ConnectionLost { host: String },
    #[error(
        "{place} is locked by {holder}; another sync is running (if not, remove {place} or wait {stale_secs}s for it to go stale)"
    )]
    Locked {
        place: String,
        holder: Holder,
        stale_secs: u64,
    },
    /// `fix` says what to run, and where: a remote index cannot be rebuilt from here.
    #[error("the index {path} is corrupt ({reason}); nothing was changed. {fix}")]
    CorruptIndex {
        path: String,
        reason: String,
        fix: String,
    },
    #[error("the index {path} was {reason}; nothing was changed. Upgrade filesync on this machine")]
    NewerIndex { path: String, reason: String },
    /// The source's bytes are not what the index said (it is being written, or it grew).
    #[error("{path} changed while it was being copied; it will be synced next time")]
    SourceChanged { path: RelPath },
    /// Something stands at a path the scan saw empty (never replaced).
    #[error("{path} appeared {place} since it was scanned; it will be synced next time")]
    Appeared { path: RelPath, place: String },
    /// What stands at a path is not what the scan saw.
    #[error("{path} changed {place} since it was scanned; it will be synced next time")]
    Changed { path: RelPath, place: String },
    /// What the scan saw at a path is gone (removed or renamed since).
    #[error("{path} is gone {place} since it was scanned; it will be synced next time")]
    Vanished { path: RelPath, place: String },
    /// A symlink in the way of a write: refused, never written through.
    #[error(
        "{link} {place} is a symbolic link; filesync never writes through links: make it a real folder{}",
        if crate::replica::layout::is_internal(link) { "" } else { ", or add it to .syncignore" }
    )]
    ThroughLink { link: RelPath, place: String },
    /// A file where a folder should be.
    #[error("cannot use folder {path} {place}: a file is in the way")]
    InTheWay { path: RelPath, place: String },
    /// The store cannot be used at all; the message says what to do.
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// An I/O failure, sorted: a full disk and a lost connection are their own variants.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let what = what.into();
        match source.kind() {
            K::StorageFull => StoreError::NoSpace { what, source },
            K::ConnectionAborted | K::ConnectionReset | K::BrokenPipe => {
                StoreError::ConnectionLost { host: what }
            }
            _ => StoreError::Io { what, source },
        }
    }

    /// The error for an index that does not parse: damage (with `fix`), or a later version's.
    pub fn bad_index(path: String, e: FormatError, fix: String) -> Self {
        match e {
            FormatError::TooNew(_) => StoreError::NewerIndex {
                path,
                reason: e.to_string(),
            },
            FormatError::Bad(reason) => StoreError::CorruptIndex { path, reason, fix },
        }
    }

    /// Someone else changed the path under the sync (written, renamed, removed): nothing to
    /// act on, the next sync picks it up.
    pub fn is_motion(&self) -> bool {
        matches!(
            self,
            StoreError::SourceChanged { .. }
                | StoreError::Appeared { .. }
                | StoreError::Changed { .. }
                | StoreError::Vanished { .. }
        )
    }

    pub fn is_connection_lost(&self) -> bool {
        matches!(self, StoreError::ConnectionLost { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An error and its causes on one line (`cannot read a: permission denied`), each once.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            cause = c.source();
        }
        Ok(())
    }
}
