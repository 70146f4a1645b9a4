//! `Store`: one replica's folder as the sync engine sees it, wherever it lives: `local` (a
//! folder on this machine, on the replica core) or `sftp` (behind SFTP, ours or any server).
//! Everything here is the contract the engine relies on: atomic writes, replaced and deleted
//! files kept in the trash, one lock, and errors that say what happened (`StoreError`).

pub mod archive;
mod error;
pub mod local;
pub mod sftp;

pub use archive::Archive;
pub use error::{Chain, HostKeyChange, StoreError, UnknownHost};
pub use local::LocalStore;
pub use sftp::SftpStore;

use crate::delta::{ChunkList, Plan};
use crate::index::journal::Token;
use crate::index::{ContentHash, Index, MTime};
use crate::relpath::RelPath;
use crate::replica::lock::LockInfo;
use crate::scan::{Observed, ScanStats};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;

/// A byte stream from a store.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// How a file is written: its mtime, the hash its bytes must have, and whether the path
/// must still be empty (the index saw nothing there).
#[derive(Debug, Clone, Copy)]
pub struct Put {
    pub mtime: MTime,
    pub expect: Option<ContentHash>,
    pub fresh: bool,
    /// The size the index expects: small files are written in one go from memory.
    pub size: u64,
    /// The permission bits the file is created with (never wider first); `None`: the
    /// store's default.
    pub mode: Option<u32>,
}

/// Files up to this size move through memory in one piece (one thread hop, one buffer)
/// instead of being streamed.
pub const SMALL_FILE: u64 = 1 << 20;

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

/// A replica's index as the sync starts: loaded, then brought up to date with its folder.
#[derive(Debug)]
pub struct Current {
    pub index: Index,
    /// `entries_digest` of the index as it was on disk (of the new one when there was none):
    /// a sync that leaves the digest alone need not rewrite it.
    pub loaded: ContentHash,
    pub stats: ScanStats,
    /// The state of the index files as loaded (`journal::Token`); `None` when there were
    /// none, or their journal was damaged.
    pub token: Option<Token>,
}

/// A replica's index vouched current by the program that keeps it (our daemon, our hub):
/// its state on disk and what the refresh left as it was. Nothing is loaded yet.
#[derive(Debug, Clone)]
pub struct Vouched {
    pub token: Token,
    pub stats: ScanStats,
}

/// An index written under a temp name (a local path or a remote one), not yet in place.
#[derive(Debug)]
pub struct StagedIndex {
    pub(crate) tmp: std::ffi::OsString,
    /// The state the index files are in once it is committed.
    pub(crate) token: Token,
}

/// A replica's folder. All paths are `RelPath`s below the replica root. Every future is
/// `Send`, so a sync runs as a task like any other.
pub trait Store: Send + Sync {
    /// A human-readable location, for messages (`/home/a/docs`, `sftp://pi/srv/filesync`).
    fn describe(&self) -> String;

    /// Takes `.sync.lock` (exclusive create), breaking it only when stale.
    fn lock(&self, info: &LockInfo) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn unlock(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `.sync` brought up to date with the folder (rescan: stat, hash what changed); a new
    /// index when there is no `.sync` yet. One call, so a store can overlap the two halves.
    /// After a `vouch`, only loaded: the refresh it asked for made it current.
    fn current_index(&self) -> impl Future<Output = Result<Current, StoreError>> + Send;
    /// Asks the program that keeps this replica's index (our daemon on this machine, our
    /// server at the other end) to bring it up to date, and for its state, without loading
    /// it; `None` where no such program answers. Called before `current_index`.
    fn vouch(&self) -> impl Future<Output = Option<Vouched>> + Send {
        async { None }
    }
    /// Writes `index` durably under a temp name, to be put in place by `commit_index`; `None`
    /// when the stored `.sync` already says the same. Two replicas stage at once while their
    /// commits keep a fixed order.
    fn stage_index(
        &self,
        index: &Index,
    ) -> impl Future<Output = Result<Option<StagedIndex>, StoreError>> + Send;
    /// Renames a staged index over `.sync`, durably.
    fn commit_index(
        &self,
        staged: StagedIndex,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes a staged index that will not be committed.
    fn discard_index(&self, staged: StagedIndex) -> impl Future<Output = ()> + Send;

    /// `lstat` of a path; `None` when nothing (or something unsyncable) is there.
    fn stat(
        &self,
        p: &RelPath,
    ) -> impl Future<Output = Result<Option<Observed>, StoreError>> + Send;
    /// Opens a file for reading. `size` is what the index says it holds (saves asking the
    /// server); a reader may stop there, so a file that grew fails its hash check.
    fn read(
        &self,
        p: &RelPath,
        size: Option<u64>,
    ) -> impl Future<Output = Result<Reader, StoreError>> + Send;
    /// Writes a file atomically (temp, fsync, rename) with `put.mtime`. Whatever is at `p`
    /// goes to the trash first, or, with `put.fresh`, the write fails (`Appeared`) if anything
    /// is there. When `put.expect` is given and the bytes do not hash to it, nothing is
    /// written and the error is `SourceChanged`. Returns the new file's stat.
    fn write(
        &self,
        p: &RelPath,
        data: Reader,
        put: Put,
    ) -> impl Future<Output = Result<Observed, StoreError>> + Send;
    /// Whether `write_batch` is cheaper here than one `write` per file.
    fn batches(&self) -> bool;
    /// How this replica's file system compares and accepts names (`replica::NameRules`,
    /// found by probing the disk); a store that cannot probe takes names as exact.
    fn name_rules(&self) -> impl Future<Output = crate::replica::NameRules> + Send {
        async { crate::replica::NameRules::EXACT }
    }
    /// Reads small files whole, each expected to hold `size` bytes (more are read only to
    /// see that it grew, which its hash check then catches). One result per file, in order.
    fn read_batch(
        &self,
        files: &[(RelPath, u64)],
    ) -> impl Future<Output = Vec<Result<Vec<u8>, StoreError>>> + Send;
    /// `write` for many small files at once, with one durability barrier for all of them
    /// instead of one per file. One result per file, in order, each as `write` would give it.
    fn write_batch(
        &self,
        files: Vec<BatchFile>,
    ) -> impl Future<Output = Vec<Result<Observed, StoreError>>> + Send;
    /// Creates a folder (and missing parents); fine if it exists. A new folder gets `mode`
    /// with the owner's `rwx` added (`mode::while_filling`), so the sync can fill it. Returns
    /// the mode the new folder shows, where the store learns it.
    fn mkdir(
        &self,
        p: &RelPath,
        mode: Option<u32>,
    ) -> impl Future<Output = Result<Option<u32>, StoreError>> + Send;
    /// Sets the permission bits of the file or folder at `p` (never through a link). Returns
    /// the mode it shows after: a disk that cannot hold modes (FAT) shows its own, and that is
    /// no error (the index keeps the wanted one).
    fn set_mode(
        &self,
        p: &RelPath,
        mode: u32,
    ) -> impl Future<Output = Result<Option<u32>, StoreError>> + Send;
    /// Moves a file or folder into `.sync-trash/`. Fine if it is already gone.
    fn trash(&self, p: &RelPath) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes an empty folder; one that still holds something goes to the trash whole.
    fn rmdir(&self, p: &RelPath) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Renames without replacing anything.
    fn rename(
        &self,
        from: &RelPath,
        to: &RelPath,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes trash older than `trash_days` (0: nothing).
    fn cleanup(&self, trash_days: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The chunk list kept for content `hash` (`.sync-chunks/`), if any.
    fn chunks(&self, hash: &ContentHash) -> impl Future<Output = Option<ChunkList>> + Send;
    /// Keeps `list` as the chunk list of content `hash`. Best effort.
    fn keep_chunks(&self, hash: &ContentHash, list: &ChunkList) -> impl Future<Output = ()> + Send;
    /// Removes the chunk lists of content not in `keep`, and temps left among them. Best
    /// effort.
    fn prune_chunks(
        &self,
        keep: &std::collections::HashSet<ContentHash>,
    ) -> impl Future<Output = ()> + Send;
    /// The bytes of `ranges` (offset, length) of the file at `p`, one range after another:
    /// what a delta transfer sends (`delta::Plan::sent_ranges`), small next to the file.
    fn read_ranges(
        &self,
        p: &RelPath,
        ranges: &[(u64, u64)],
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;
    /// `write`, with the new version assembled by `plan`: its copied chunks from the version
    /// at `p` now (which must still be `old`), its sent bytes from `sent`. Kept durable and
    /// put in place as `write` does. `NoDelta`: nothing was written (the old version changed,
    /// or the store cannot copy ranges); the caller sends the whole file.
    fn write_delta(
        &self,
        p: &RelPath,
        plan: &Plan,
        old: Seen,
        sent: Vec<u8>,
        put: Put,
    ) -> impl Future<Output = Result<Observed, StoreError>> + Send;
}

/// What the index says of a file a delta builds on: the bytes it must still hold.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub size: u64,
    pub mtime: MTime,
}

/// Either kind of store, so commands can pick one at run time without `dyn`.
pub enum AnyStore {
    Local(LocalStore),
    // Boxed: an SFTP session is much larger than a local path.
    Sftp(Box<SftpStore>),
}

/// Runs `$e` on whichever store `$self` is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Local($s) => $e,
            AnyStore::Sftp($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn describe(&self) -> String {
        each!(self, s => s.describe())
    }
    fn batches(&self) -> bool {
        each!(self, s => s.batches())
    }
    async fn name_rules(&self) -> crate::replica::NameRules {
        each!(self, s => s.name_rules().await)
    }
    async fn lock(&self, info: &LockInfo) -> Result<(), StoreError> {
        each!(self, s => s.lock(info).await)
    }
    async fn unlock(&self) -> Result<(), StoreError> {
        each!(self, s => s.unlock().await)
    }
    async fn vouch(&self) -> Option<Vouched> {
        each!(self, s => s.vouch().await)
    }

    async fn current_index(&self) -> Result<Current, StoreError> {
        each!(self, s => s.current_index().await)
    }
    async fn stage_index(&self, index: &Index) -> Result<Option<StagedIndex>, StoreError> {
        each!(self, s => s.stage_index(index).await)
    }
    async fn commit_index(&self, staged: StagedIndex) -> Result<(), StoreError> {
        each!(self, s => s.commit_index(staged).await)
    }
    async fn discard_index(&self, staged: StagedIndex) {
        each!(self, s => s.discard_index(staged).await)
    }
    async fn stat(&self, p: &RelPath) -> Result<Option<Observed>, StoreError> {
        each!(self, s => s.stat(p).await)
    }
    async fn read(&self, p: &RelPath, size: Option<u64>) -> Result<Reader, StoreError> {
        each!(self, s => s.read(p, size).await)
    }
    async fn write(&self, p: &RelPath, data: Reader, put: Put) -> Result<Observed, StoreError> {
        each!(self, s => s.write(p, data, put).await)
    }
    async fn read_batch(&self, files: &[(RelPath, u64)]) -> Vec<Result<Vec<u8>, StoreError>> {
        each!(self, s => s.read_batch(files).await)
    }
    async fn write_batch(&self, files: Vec<BatchFile>) -> Vec<Result<Observed, StoreError>> {
        each!(self, s => s.write_batch(files).await)
    }
    async fn mkdir(&self, p: &RelPath, mode: Option<u32>) -> Result<Option<u32>, StoreError> {
        each!(self, s => s.mkdir(p, mode).await)
    }
    async fn set_mode(&self, p: &RelPath, mode: u32) -> Result<Option<u32>, StoreError> {
        each!(self, s => s.set_mode(p, mode).await)
    }
    async fn trash(&self, p: &RelPath) -> Result<(), StoreError> {
        each!(self, s => s.trash(p).await)
    }
    async fn rmdir(&self, p: &RelPath) -> Result<(), StoreError> {
        each!(self, s => s.rmdir(p).await)
    }
    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), StoreError> {
        each!(self, s => s.rename(from, to).await)
    }
    async fn cleanup(&self, trash_days: u64) -> Result<(), StoreError> {
        each!(self, s => s.cleanup(trash_days).await)
    }
    async fn chunks(&self, hash: &ContentHash) -> Option<ChunkList> {
        each!(self, s => s.chunks(hash).await)
    }
    async fn keep_chunks(&self, hash: &ContentHash, list: &ChunkList) {
        each!(self, s => s.keep_chunks(hash, list).await)
    }
    async fn prune_chunks(&self, keep: &std::collections::HashSet<ContentHash>) {
        each!(self, s => s.prune_chunks(keep).await)
    }
    async fn read_ranges(&self, p: &RelPath, ranges: &[(u64, u64)]) -> Result<Vec<u8>, StoreError> {
        each!(self, s => s.read_ranges(p, ranges).await)
    }
    async fn write_delta(
        &self,
        p: &RelPath,
        plan: &Plan,
        old: Seen,
        sent: Vec<u8>,
        put: Put,
    ) -> Result<Observed, StoreError> {
        each!(self, s => s.write_delta(p, plan, old, sent, put).await)
    }
}

/// Runs `attempt` (taking locks) until it succeeds. A lock held briefly (a daemon saving
/// what its watcher saw, or one still being written) is waited for, up to half a minute;
/// any other holder is an error at once.
pub async fn while_brief<F, Fut>(mut attempt: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(100);
    let mut said = false;
    loop {
        match attempt().await {
            Err(StoreError::Locked { ref holder, .. })
                if holder.is_brief() && Instant::now() < deadline =>
            {
                if !said {
                    tracing::info!("waiting for an index update to finish ({holder})");
                    said = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
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
