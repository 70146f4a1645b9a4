//! `Store`: one replica's folder as the sync engine sees it, wherever it lives.
//!
//! Implementations: `local` (a folder on this machine). Everything here is the contract the
//! engine relies on: atomic writes, replaced and deleted files kept in the trash, one lock.

pub mod local;
pub mod sftp;

use crate::index::{ContentHash, Index, MTime};
use crate::relpath::RelPath;
use crate::scan::{Observed, ScanStats};
use std::future::Future;
use std::pin::Pin;
use tokio::io::AsyncRead;

pub use local::LocalStore;
pub use sftp::SftpStore;

/// A byte stream from a store.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The io error is part of the message, not a `source`: anyhow's `{:#}` would print it twice.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error(
        "{path} is locked by {holder}; another sync is running (if not, remove {path} or wait {stale_secs}s for it to go stale)"
    )]
    Locked {
        path: String,
        holder: String,
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
    #[error("{path} changed while it was being copied; it will be synced next time")]
    SourceChanged { path: String },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// A symlink in the way of a write (`link`, in `place`: "in /root", "on host"): refused,
    /// saying what to do. An internal name (`.sync-trash`) cannot be ignored, only replaced.
    pub(crate) fn through_link(link: &RelPath, place: &str) -> Self {
        let or_ignore = if crate::index::is_internal(link) {
            ""
        } else {
            ", or add it to .syncignore"
        };
        StoreError::Other(format!(
            "{link} {place} is a symbolic link; filesync never writes through links: make it a real folder{or_ignore}"
        ))
    }

    /// The error for an index that does not parse: damage (with `fix`), or a later version's.
    pub fn bad_index(path: String, e: crate::index::FormatError, fix: String) -> Self {
        match e {
            crate::index::FormatError::TooNew(_) => StoreError::NewerIndex {
                path,
                reason: e.to_string(),
            },
            crate::index::FormatError::Bad(reason) => {
                StoreError::CorruptIndex { path, reason, fix }
            }
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            what: what.into(),
            err: source,
        }
    }

    /// The connection to a remote store is gone: every further step would fail the same way.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, StoreError::Io { err, .. } if matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound)
    }
}

/// How a file is written: its mtime, the hash its bytes must have, and whether the path
/// must still be empty (the index saw nothing there).
#[derive(Debug, Clone, Copy)]
pub struct Put {
    pub mtime: MTime,
    pub expect: Option<ContentHash>,
    pub fresh: bool,
    /// The size the index expects: small files are written in one go from memory.
    pub size: u64,
}

/// Files up to this size move through memory in one piece (one thread hop, one buffer)
/// instead of being streamed.
pub const SMALL_FILE: u64 = 1 << 20;

/// Where `p` goes in the trash: the folder `.sync-trash/<parent of p>` and the base name
/// `<name>~YYYYMMDD-HHMMSS` (a `-N` suffix is added while that is taken).
pub(crate) fn trash_name(
    p: &RelPath,
    now: i64,
) -> Result<(RelPath, String), crate::relpath::RelPathError> {
    let dir = match p.parent().filter(|d| !d.is_root()) {
        Some(parent) => RelPath::parse(&format!("{}/{parent}", crate::index::TRASH_DIR)),
        None => RelPath::parse(crate::index::TRASH_DIR),
    }?;
    // `~YYYYMMDD-HHMMSS` and a `-N` suffix must still fit in a file name.
    let base = format!(
        "{}~{}",
        crate::index::fit_name(p.name(), 24),
        crate::time::stamp(now)
    );
    Ok((dir, base))
}

/// Files up to this size are moved in batches (`Store::write_batch`) where the store can.
pub const BATCH_FILE: u64 = 128 * 1024;
/// A batch holds at most this many bytes and files: big enough that its one durability barrier
/// is shared by hundreds of files, small enough that several batches keep both ends busy.
pub const BATCH_BYTES: u64 = 2 << 20;
pub const BATCH_FILES: usize = 512;

/// One file of a batch write: its bytes, already in memory, and how to put it.
#[derive(Debug)]
pub struct BatchFile {
    pub path: RelPath,
    pub bytes: Vec<u8>,
    pub put: Put,
}

/// The holder named for a lock file that cannot be read (yet): one being written just now.
pub const UNKNOWN_HOLDER: &str = "an unknown process";

/// Who holds a lock: written into `.sync.lock` so a person (or a later run) can judge it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// Unix seconds when taken.
    pub time: i64,
    pub what: String,
}

impl LockInfo {
    pub fn here(what: &str) -> Self {
        LockInfo {
            host: crate::sys::hostname(),
            pid: std::process::id(),
            time: crate::time::now_secs(),
            what: what.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.what, self.pid, self.host, self.time
        )
    }

    /// A lock at `place` is stale when its process is gone (same host), when it names this
    /// very process but this process does not hold it (left behind when a connection dropped
    /// before the lock could be removed), or when it is older than `stale_secs`.
    pub fn is_stale(&self, stale_secs: u64, place: &str) -> bool {
        if self.host == crate::sys::hostname() {
            if !crate::sys::pid_alive(self.pid) {
                return true;
            }
            if self.pid == std::process::id() && !holding(place) {
                return true;
            }
        }
        crate::time::now_secs().saturating_sub(self.time) > stale_secs as i64
    }
}

/// Judges a `.sync.lock` someone else made, found at `place` (`shown` in messages): `Ok` when
/// it may be broken, else the `Locked` error naming its holder. It may be broken when its
/// holder is gone (`LockInfo::is_stale`), or when it does not parse (`bytes` unreadable or
/// half-written) and is old: an empty one after 3 s (its creator died between creating and
/// writing it), anything else after 60 s.
pub(crate) fn judge_lock(
    bytes: Option<&[u8]>,
    len: u64,
    age: std::time::Duration,
    stale_secs: u64,
    place: &str,
    shown: String,
) -> Result<(), StoreError> {
    let holder: Option<LockInfo> = bytes.and_then(|b| serde_json::from_slice(b).ok());
    let stale = match &holder {
        Some(h) => h.is_stale(stale_secs, place),
        None => {
            let limit = if len == 0 { 3 } else { 60 };
            age > std::time::Duration::from_secs(stale_secs.min(limit))
        }
    };
    if stale {
        return Ok(());
    }
    Err(StoreError::Locked {
        path: shown,
        holder: holder
            .map(|h| h.describe())
            .unwrap_or_else(|| UNKNOWN_HOLDER.into()),
        stale_secs,
    })
}

/// Locks this process holds now, by place (`/root/.sync.lock`, `user@host:port:/p/.sync.lock`).
static HELD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn holding(place: &str) -> bool {
    HELD.lock()
        .map(|h| h.iter().any(|p| p == place))
        .unwrap_or(true)
}

/// Records that this process took (`true`) or gave up (`false`) the lock at `place`.
pub(crate) fn note_held(place: &str, held: bool) {
    if let Ok(mut h) = HELD.lock() {
        if held {
            h.push(place.to_string());
        } else if let Some(i) = h.iter().position(|p| p == place) {
            h.swap_remove(i);
        }
    }
}

/// A replica's index as the sync starts: loaded, then brought up to date with its folder.
#[derive(Debug)]
pub struct Current {
    pub index: Index,
    /// `entries_digest` of the index as it was on disk (of the new one when there was none):
    /// a sync that leaves the digest alone need not rewrite it.
    pub loaded: ContentHash,
    pub stats: ScanStats,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An index written under a temp name (a local path or a remote one), not yet in place.
#[derive(Debug)]
pub struct StagedIndex {
    pub(crate) tmp: std::ffi::OsString,
}

/// A replica's folder. All paths are `RelPath`s below the replica root.
pub trait Store: Send + Sync {
    /// A human-readable location, for messages (`/home/a/docs`, `sftp://pi/srv/filesync`).
    fn describe(&self) -> String;

    /// Takes `.sync.lock` (exclusive create), breaking it only when stale.
    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StoreError>>;
    fn unlock(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// `.sync` brought up to date with the folder (rescan: stat, hash what changed); a new
    /// index when there is no `.sync` yet. One call, so a store can overlap the two halves.
    fn current_index(&self) -> BoxFuture<'_, Result<Current, StoreError>>;
    /// Writes `index` durably under a temp name, to be put in place by `commit_index`; `None`
    /// when the stored `.sync` already says the same. Two replicas stage at once while their
    /// commits keep a fixed order.
    fn stage_index<'a>(
        &'a self,
        index: &'a Index,
    ) -> BoxFuture<'a, Result<Option<StagedIndex>, StoreError>>;
    /// Renames a staged index over `.sync`, durably.
    fn commit_index(&self, staged: StagedIndex) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Removes a staged index that will not be committed.
    fn discard_index(&self, staged: StagedIndex) -> BoxFuture<'_, ()>;
    /// Writes `.sync` atomically.
    fn save_index<'a>(&'a self, index: &'a Index) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match self.stage_index(index).await? {
                Some(s) => self.commit_index(s).await,
                None => Ok(()),
            }
        })
    }

    /// `lstat` of a path; `None` when nothing (or something unsyncable) is there.
    fn stat<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<Option<Observed>, StoreError>>;
    /// Opens a file for reading. `size` is what the index says it holds (saves asking the
    /// server); a reader may stop there, so a file that grew fails its hash check.
    fn read<'a>(
        &'a self,
        p: &'a RelPath,
        size: Option<u64>,
    ) -> BoxFuture<'a, Result<Reader, StoreError>>;
    /// Writes a file atomically (temp, fsync, rename) with `put.mtime`. Whatever is at `p`
    /// goes to the trash first, or, with `put.fresh`, the write fails if anything is there.
    /// When `put.expect` is given and the bytes do not hash to it, nothing is written and the
    /// error is `SourceChanged`. Returns the new file's stat.
    fn write<'a>(
        &'a self,
        p: &'a RelPath,
        data: Reader,
        put: Put,
    ) -> BoxFuture<'a, Result<Observed, StoreError>>;
    /// Whether `write_batch` is cheaper here than one `write` per file.
    fn batches(&self) -> bool;
    /// Reads small files whole, each expected to hold `size` bytes (more are read only to
    /// see that it grew, which its hash check then catches). One result per file, in order.
    fn read_batch<'a>(
        &'a self,
        files: &'a [(RelPath, u64)],
    ) -> BoxFuture<'a, Vec<Result<Vec<u8>, StoreError>>>;
    /// `write` for many small files at once, with one durability barrier for all of them
    /// instead of one per file. One result per file, in order, each as `write` would give it.
    fn write_batch(
        &self,
        files: Vec<BatchFile>,
    ) -> BoxFuture<'_, Vec<Result<Observed, StoreError>>>;
    /// Creates a folder (and missing parents); fine if it exists.
    fn mkdir<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Moves a file or folder into `.sync-trash/`. Fine if it is already gone.
    fn trash<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes an empty folder; one that still holds something goes to the trash whole.
    fn rmdir<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Renames without replacing anything.
    fn rename<'a>(
        &'a self,
        from: &'a RelPath,
        to: &'a RelPath,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes leftovers of interrupted syncs and trash older than `trash_days`.
    fn cleanup(&self, trash_days: u64) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Either kind of store, so commands can pick one at run time without `dyn`.
pub enum AnyStore {
    Local(LocalStore),
    // Boxed: an SFTP session is much larger than a local path.
    Sftp(Box<SftpStore>),
}

/// Opens a remote replica over SFTP.
pub async fn open_remote(
    r: &crate::endpoint::Remote,
    cfg: &crate::config::Config,
    accept_new: bool,
) -> Result<AnyStore, StoreError> {
    Ok(AnyStore::Sftp(Box::new(
        sftp::open(r, cfg, accept_new).await?,
    )))
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Local($s) => $e,
            AnyStore::Sftp($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn describe(&self) -> String {
        delegate!(self, s => s.describe())
    }
    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.lock(info))
    }
    fn unlock(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(self, s => s.unlock())
    }
    fn current_index(&self) -> BoxFuture<'_, Result<Current, StoreError>> {
        delegate!(self, s => s.current_index())
    }
    fn stage_index<'a>(
        &'a self,
        index: &'a Index,
    ) -> BoxFuture<'a, Result<Option<StagedIndex>, StoreError>> {
        delegate!(self, s => s.stage_index(index))
    }
    fn commit_index(&self, staged: StagedIndex) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(self, s => s.commit_index(staged))
    }
    fn discard_index(&self, staged: StagedIndex) -> BoxFuture<'_, ()> {
        delegate!(self, s => s.discard_index(staged))
    }
    fn stat<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<Option<Observed>, StoreError>> {
        delegate!(self, s => s.stat(p))
    }
    fn read<'a>(
        &'a self,
        p: &'a RelPath,
        size: Option<u64>,
    ) -> BoxFuture<'a, Result<Reader, StoreError>> {
        delegate!(self, s => s.read(p, size))
    }
    fn write<'a>(
        &'a self,
        p: &'a RelPath,
        data: Reader,
        put: Put,
    ) -> BoxFuture<'a, Result<Observed, StoreError>> {
        delegate!(self, s => s.write(p, data, put))
    }
    fn batches(&self) -> bool {
        delegate!(self, s => s.batches())
    }
    fn read_batch<'a>(
        &'a self,
        files: &'a [(RelPath, u64)],
    ) -> BoxFuture<'a, Vec<Result<Vec<u8>, StoreError>>> {
        delegate!(self, s => s.read_batch(files))
    }
    fn write_batch(
        &self,
        files: Vec<BatchFile>,
    ) -> BoxFuture<'_, Vec<Result<Observed, StoreError>>> {
        delegate!(self, s => s.write_batch(files))
    }
    fn mkdir<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.mkdir(p))
    }
    fn trash<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.trash(p))
    }
    fn rmdir<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.rmdir(p))
    }
    fn rename<'a>(
        &'a self,
        from: &'a RelPath,
        to: &'a RelPath,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.rename(from, to))
    }
    fn cleanup(&self, trash_days: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(self, s => s.cleanup(trash_days))
    }
}
