//! `Root`: a replica folder held open, and every path below it reached without leaving it.
//!
//! Two policies: `Follow::Never` (the sync: a link in the way is an error naming it, never a
//! path somewhere else) and `Follow::InRoot` (the SFTP server: links are followed as clients
//! expect, but never out of the root). The OS split lives here and only here: `unix` resolves
//! through descriptors (the kernel's `openat2` on Linux, an `O_NOFOLLOW` component walk
//! elsewhere, with what differs in `linux` and `macos`), `windows` through handles held on
//! every folder on the way, each opened as itself (never through a reparse point). What this
//! file defines (`Meta`, `FileKind`, `DirEntry`, `RootError`) is the neutral API the rest of
//! the crate uses; nothing above `Root` knows the OS.

use crate::index::MTime;
use crate::relpath::RelPath;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

mod names;
pub use names::{NameRules, windows_refuses};

/// What a path below the root may pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// No symlink at all, anywhere on the way (the sync never writes through a link).
    Never,
    /// Symlinks that stay inside the root (`/` and `..` in them stop at the root).
    InRoot,
}

/// What stands at a path, as the sync sorts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    /// A symlink (on Windows also a junction or another name-surrogate reparse point).
    Link,
    /// A device, FIFO, socket: never synced.
    Other,
    /// A listing that did not say (some file systems): looked up by name when it matters.
    Unknown,
}

/// What one look at a path (never following a link there) tells.
#[derive(Clone, Copy)]
pub struct Meta {
    pub kind: FileKind,
    pub size: u64,
    pub mtime: MTime,
    /// The last change of the entry itself (ctime; on Windows its change time).
    pub changed: MTime,
    /// Permission bits (`rwxrwxrwx`); `None` where the OS keeps none (Windows).
    pub mode: Option<u32>,
    /// The file system and the file on it: equal pairs are the same file.
    pub dev: u64,
    pub ino: u64,
    /// Everything the OS said, for the SFTP server's attributes.
    #[cfg(unix)]
    pub raw: rustix::fs::Stat,
}

/// One name in a folder listing, with the type the listing gives.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The name's bytes (on Windows WTF-8: not UTF-8 only for unpaired surrogates).
    pub name: Vec<u8>,
    pub kind: FileKind,
}

/// Why a path below the root could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// A symlink stands where a folder (or, for `Follow::Never`, anything) should be.
    #[error("{0} is a symbolic link")]
    ThroughLink(RelPath),
    /// A file stands where a folder should be.
    #[error("{0} is not a folder")]
    NotAFolder(RelPath),
    #[error("permission denied: {0}")]
    Denied(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl RootError {
    /// The error as a POSIX error number (`ENOENT`, `EEXIST`, …; on Windows the Win32 code
    /// translated), if it has one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RootError::Io(e) => e.raw_os_error().map(os_errno),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    /// Another program holds the file open without letting others in (a Windows sharing or
    /// lock violation): it is changing, and the next sync tries again.
    pub fn is_busy(&self) -> bool {
        cfg!(windows) && self.errno() == Some(libc::EBUSY)
    }

    /// As an `io::Error`, for callers that speak only that.
    pub fn into_io(self) -> std::io::Error {
        match self {
            RootError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::PermissionDenied, other.to_string()),
        }
    }
}

pub type RootResult<T> = Result<T, RootError>;

/// A `mtime`-like pair from seconds and nanoseconds as an OS gives them.
fn time_of(secs: i64, nanos: i64) -> MTime {
    MTime::new(secs, (nanos.clamp(0, 999_999_999)) as u32)
}
