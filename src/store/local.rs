//! `LocalStore`: a replica folder on this machine, on the replica core: every path goes
//! through the root's descriptor (`Root` with `Follow::Never`: no link is ever passed, a link
//! in the way is an error naming it), writes go to a temp beside the target, are made
//! durable (fsync, or one syncfs for a batch), get their mtime and are put in place with the
//! old version kept in the trash (`Root::install`).

use super::{
    BatchFile, Current, Put, Reader, SMALL_FILE, Seen, StagedIndex, Store, StoreError, Vouched,
};
use crate::delta::{ChunkList, Plan};
use crate::index::journal::{Change, SnapshotId, Token};
use crate::index::{ContentHash, Index, ReplicaId, to_json_vec};
use crate::relpath::RelPath;
use crate::replica::home::{self, Home, Placement};
use crate::replica::layout::{INDEX_FILE, LOCK_FILE, SET_ASIDE_MARK};
use crate::replica::lock::{self, LockInfo};
use crate::replica::protocol::is_leftover_temp;
use crate::replica::writers::Writers;
use crate::replica::{Follow, Root, RootError};
use crate::scan::{Observed, ScanStats};
use index_file::{OnDisk, index_name};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod current;
mod index_file;
pub mod vouch;
mod write;
pub use index_file::{FileId, files_id as index_files_id};
use write::{install, new_temp, observe, read_whole, write_batch_blocking, write_small};

pub struct LocalStore {
    root: Arc<Root>,
    lock_stale_secs: u64,
    held: Mutex<Option<lock::Held>>,
    writers: Arc<Writers>,
    /// Where the folder is (`None`: its device and inode cannot be read; never rehomed).
    home: Option<Home>,
    /// The id this store took for a copied folder, so every load until the next save agrees.
    rehomed: Arc<Mutex<Option<ReplicaId>>>,
    /// Temps of streamed writes not yet put in place nor removed: a sync stopped half-way
    /// removes them before it releases the lock.
    made: Arc<Mutex<HashSet<RelPath>>>,
    /// The index files as this store last read or wrote them, for journal appends.
    disk: Arc<Mutex<Option<OnDisk>>>,
    /// A load found the journal damaged and set it aside: what it held after the damage is
    /// known only to a full rescan.
    rescan_due: Arc<std::sync::atomic::AtomicBool>,
    /// What the daemon's refresh left as it was, when it vouched for the index: the next
    /// `current_index` loads it without walking the folder.
    vouched: Arc<Mutex<Option<ScanStats>>>,
}

impl Drop for LocalStore {
    /// A store dropped with its lock still taken (a sync abandoned half-way) releases it.
    fn drop(&mut self) {
        let _ = self.unlock_blocking();
    }
}

/// Runs file system work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::io("a file system task failed", io::Error::other(e)))?
}

/// How the store names its place in messages, and turns the core's errors into its own.
struct Place<'a>(&'a Root);

impl Place<'_> {
    fn name(&self) -> String {
        format!("in {}", self.0.path().display())
    }

    fn err(&self, what: impl Into<String>, e: RootError) -> StoreError {
        match e {
            RootError::ThroughLink(link) => StoreError::ThroughLink {
                link,
                place: self.name(),
            },
            RootError::NotAFolder(path) => StoreError::InTheWay {
                path,
                place: self.name(),
            },
            e if e.is_busy() => StoreError::Busy { what: what.into() },
            e => StoreError::io(what, e.into_io()),
        }
    }
}

impl LocalStore {
    /// Opens an existing folder. A missing root is an error, never an empty replica.
    pub fn open(root: &Path, lock_stale_secs: u64) -> Result<Self, StoreError> {
        let shown = root.display();
        let meta = std::fs::metadata(root)
            .map_err(|e| StoreError::io(format!("cannot open the synced folder {shown}"), e))?;
        if !meta.is_dir() {
            return Err(StoreError::NotAFolder {
                place: shown.to_string(),
                remote: false,
            });
        }
        let canonical = std::fs::canonicalize(root)
            .map_err(|e| StoreError::io(format!("cannot resolve {shown}"), e))?;
        let handle = Root::open(&canonical, Follow::Never)
            .map_err(|e| StoreError::io(format!("cannot open the synced folder {shown}"), e))?;
        let home = Home::of(&handle)
            .inspect_err(|e| tracing::debug!("cannot stat {shown}: {e}"))
            .ok();
        Ok(LocalStore {
            writers: crate::replica::writers::of(&canonical),
            root: Arc::new(handle),
            lock_stale_secs,
            held: Mutex::new(None),
            home,
            rehomed: Arc::default(),
            made: Arc::default(),
            disk: Arc::default(),
            rescan_due: Arc::default(),
            vouched: Arc::default(),
        })
    }

    /// The folder's path (canonical).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The folder's handle, for whoever works on it beside the store (scan, watcher).
    pub fn handle(&self) -> &Arc<Root> {
        &self.root
    }

    fn place(&self) -> Place<'_> {
        Place(&self.root)
    }

    /// Loads the index without the async machinery (for `index`, `status` and the daemon),
    /// with its home settled (see `replica::home`).
    pub fn load_index_blocking(&self) -> Result<Option<Index>, StoreError> {
        Ok(self.load_index()?.map(|(idx, _)| idx))
    }

    /// `.sync` and its journal, its home settled, and whether it must be written whole for
    /// that (a journal records entries only).
    fn load_index(&self) -> Result<Option<(Index, bool)>, StoreError> {
        Ok(self
            .load_index_token()?
            .map(|(idx, must_save, _)| (idx, must_save)))
    }

    /// `load_index`, with the state of the files loaded (`None` when it must be written).
    fn load_index_token(&self) -> Result<Option<(Index, bool, Option<Token>)>, StoreError> {
        let loaded = index_file::load(&self.root)?;
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        *disk = None;
        Ok(loaded.map(|(mut idx, on_disk, damaged)| {
            if damaged {
                self.rescan_due
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            // After damage `.sync` is written whole: the journal is gone.
            let must_save = self.settle_home(&mut idx) || damaged;
            let token = (!must_save).then_some(on_disk.token).flatten();
            if !must_save {
                *disk = Some(on_disk);
            }
            (idx, must_save, token)
        }))
    }

    /// Whether a load since the last call set a damaged journal aside: the caller then
    /// rescans the whole folder, since what the journal held past the damage is unknown.
    pub fn take_rescan_due(&self) -> bool {
        self.rescan_due
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// `take_rescan_due` without taking it.
    pub fn rescan_due(&self) -> bool {
        self.rescan_due.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new, empty index for this folder: a new replica, its home recorded.
    pub fn new_index(&self) -> Index {
        let mut idx = Index::new(ReplicaId::random());
        self.settle_home(&mut idx);
        idx
    }

    /// Records where the folder is; a folder found elsewhere than its index says takes a
    /// new replica id (the same one for every load of this store). True when the index
    /// must be written for that to hold.
    fn settle_home(&self, idx: &mut Index) -> bool {
        let Some(here) = &self.home else {
            return false;
        };
        let mut taken = self.rehomed.lock().unwrap_or_else(|e| e.into_inner());
        let first = taken.is_none();
        let placement = home::settle(idx, here, || *taken.get_or_insert_with(ReplicaId::random));
        match placement {
            Placement::AtHome => false,
            Placement::Recorded => true,
            Placement::Elsewhere { was, old_id } => {
                if first {
                    tracing::warn!(
                        "{} {}: it is now replica {}, keeping the history of {old_id}, so edits \
                         made here and in the original conflict instead of overwriting each other",
                        self.root.path().display(),
                        was.what_happened(here),
                        idx.replica,
                    );
                }
                true
            }
        }
    }

    /// Writes `index` whole: a new `.sync`, its journal reset. Refused (`IndexMoved`) when
    /// the files are no longer as this store last read or wrote them: `index` would hide
    /// what another writer put there.
    pub fn save_index_blocking(&self, index: &Index) -> Result<(), StoreError> {
        let lock = index_file::write_lock(&self.root)?;
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        let was = disk.take();
        *disk = Some(index_file::save(&self.root, &lock, was.as_ref(), index)?);
        Ok(())
    }

    /// Records `changes`, which took the index this store last loaded or saved to `index`:
    /// one durable batch appended to `.sync.journal`, or `index` written whole when a new
    /// snapshot is due (see `index::journal::should_compact`). Refused (`IndexMoved`) when
    /// the files changed since this store read them: the caller reads them again.
    pub fn record_index_blocking(
        &self,
        index: &Index,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let lock = index_file::write_lock(&self.root)?;
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        let was = disk.take();
        if let Some(d) = &was
            && let Some(next) = index_file::append(&self.root, &lock, d, changes)?
        {
            *disk = Some(next);
            return Ok(());
        }
        *disk = Some(index_file::save(&self.root, &lock, was.as_ref(), index)?);
        Ok(())
    }

    /// Moves a corrupt index aside as `.sync.corrupt-<stamp>`; returns where it went.
    pub fn set_aside_index(&self) -> Result<PathBuf, StoreError> {
        let stamp = crate::time::stamp(crate::time::now_secs());
        let aside = RelPath::root().join_unchecked(&format!("{SET_ASIDE_MARK}{stamp}"));
        *self.disk.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.root.rename(&index_name(), &aside, true).map_err(|e| {
            self.place()
                .err(format!("cannot move {INDEX_FILE} aside"), e)
        })?;
        Ok(aside.to_path(self.root.path()))
    }

    /// Takes `.sync.lock` by exclusive create. The lock is made through a handle on the
    /// folder itself and released through the same handle, so a folder renamed while we
    /// hold it does not keep an orphaned lock that names a live process (ours).
    pub fn lock_blocking(&self, info: &LockInfo) -> Result<(), StoreError> {
        match lock::take(&self.root, info, self.lock_stale_secs) {
            Ok(held) => {
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
                Ok(())
            }
            Err(lock::LockError::Held(holder)) => Err(StoreError::Locked {
                place: self.root.path().join(LOCK_FILE).display().to_string(),
                holder,
                stale_secs: self.lock_stale_secs,
            }),
            Err(lock::LockError::Io(e)) => Err(StoreError::io(
                format!("cannot take {}", self.root.path().join(LOCK_FILE).display()),
                e,
            )),
        }
    }

    /// Releases the lock this store took (one retaken by someone else is left alone), after
    /// removing the temps of writes stopped half-way.
    pub fn unlock_blocking(&self) -> Result<(), StoreError> {
        let made: Vec<RelPath> = made_set(&self.made).drain().collect();
        let removed = made.iter().filter(|t| self.root.remove(t).is_ok()).count();
        if removed > 0 {
            tracing::info!(
                "removed {removed} temp files this sync had not put in place in {}",
                self.root.path().display()
            );
        }
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        match held {
            Some(h) => h.release().map_err(|e| {
                StoreError::io(
                    format!(
                        "cannot remove {}",
                        self.root.path().join(LOCK_FILE).display()
                    ),
                    e,
                )
            }),
            None => Ok(()),
        }
    }

    /// The state of the index files on disk now (see `index_file::token`).
    pub fn index_token(&self) -> Result<Option<Token>, StoreError> {
        index_file::token(&self.root)
    }

    /// The files one of this process's SFTP clients is writing in this folder now: scans
    /// leave them as they are in the index.
    pub fn busy(&self) -> HashSet<RelPath> {
        self.writers.busy()
    }
}

fn made_set(m: &Mutex<HashSet<RelPath>>) -> std::sync::MutexGuard<'_, HashSet<RelPath>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temps a scan met that `protocol::is_leftover_temp` judges leftovers: none
/// unless the scan ran `under_lock` (the index names none of them: the scan kept those).
pub fn remove_leftover_temps(root: &Root, temps: &[RelPath], under_lock: bool) {
    if temps.is_empty() || !is_leftover_temp(under_lock, false) {
        return;
    }
    tracing::info!(
        root = %root.path().display(),
        "removing {} temp files left by an interrupted sync",
        temps.len()
    );
    for t in temps {
        let _ = root.remove(t);
    }
}

impl LocalStore {
    async fn write_streamed(
        &self,
        p: &RelPath,
        mut data: Reader,
        put: Put,
    ) -> Result<Observed, StoreError> {
        let root = self.root.clone();
        let q = p.clone();
        let made = self.made.clone();
        let (file, tmp) = blocking(move || {
            let (dir, tmp) = new_temp(&root, &q)?;
            made_set(&made).insert(tmp.clone());
            let f = Root::create_in_with(&dir, tmp.name(), put.mode)
                .map_err(|e| Place(&root).err(format!("cannot create a temp file for {q}"), e))?;
            Ok((f, tmp))
        })
        .await?;
        let res = self.fill(file, p, &mut data, put).await;
        let root = self.root.clone();
        let (q, t) = (p.clone(), tmp.clone());
        let res = match res {
            Ok(()) => {
                blocking(move || install(&root, &t, &q, put.fresh, true, &mut HashSet::new())).await
            }
            Err(e) => Err(e),
        };
        if res.is_err() {
            let root = self.root.clone();
            let t = tmp.clone();
            let _ = blocking(move || Ok(root.remove(&t))).await;
        }
        made_set(&self.made).remove(&tmp);
        res
    }

    /// Streams `data` into the temp `file`, checks its hash, gives it `mtime` and fsyncs it.
    async fn fill(
        &self,
        file: File,
        p: &RelPath,
        data: &mut Reader,
        put: Put,
    ) -> Result<(), StoreError> {
        let mut f = tokio::fs::File::from_std(file);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = data
                .read(&mut buf)
                .await
                .map_err(|e| StoreError::io(format!("reading the source of {p}"), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n])
                .await
                .map_err(|e| StoreError::io(format!("writing {p}"), e))?;
        }
        f.flush()
            .await
            .map_err(|e| StoreError::io(format!("writing {p}"), e))?;
        let got = ContentHash(*hasher.finalize().as_bytes());
        if put.expect.is_some_and(|h| h != got) {
            return Err(StoreError::SourceChanged { path: p.clone() });
        }
        let f = f.into_std().await;
        let q = p.clone();
        blocking(move || {
            f.set_modified(put.mtime.to_system())
                .and_then(|_| f.sync_all())
                .map_err(|e| StoreError::io(format!("finishing {q}"), e))
        })
        .await
    }

    /// Runs `f` on the root on the blocking pool.
    async fn on_root<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Root) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let root = self.root.clone();
        blocking(move || f(&root)).await
    }
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.path().display().to_string()
    }

    fn batches(&self) -> bool {
        true
    }

    async fn name_rules(&self) -> crate::replica::NameRules {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || root.probe_names())
            .await
            .unwrap_or_default()
    }

    async fn lock(&self, info: &LockInfo) -> Result<(), StoreError> {
        self.lock_blocking(info)
    }

    async fn unlock(&self) -> Result<(), StoreError> {
        self.unlock_blocking()
    }

    async fn current_index(&self) -> Result<Current, StoreError> {
        let locked = self.held.lock().map(|h| h.is_some()).unwrap_or(false);
        let this = LocalStore {
            root: self.root.clone(),
            lock_stale_secs: self.lock_stale_secs,
            held: Mutex::new(None),
            writers: self.writers.clone(),
            home: self.home.clone(),
            rehomed: self.rehomed.clone(),
            made: self.made.clone(),
            disk: self.disk.clone(),
            rescan_due: self.rescan_due.clone(),
            vouched: Arc::default(),
        };
        let vouched = self.vouched.lock().ok().and_then(|mut v| v.take());
        blocking(move || match vouched {
            Some(stats) => this.vouched_blocking(stats, locked),
            None => this.current_blocking(locked).map(|(c, _)| c),
        })
        .await
    }

    async fn vouch(&self) -> Option<Vouched> {
        let root = self.root.path().to_path_buf();
        let v = tokio::task::spawn_blocking(move || vouch::ask(&root))
            .await
            .ok()
            .flatten()?;
        if let Ok(mut slot) = self.vouched.lock() {
            *slot = Some(v.stats.clone());
        }
        Some(v)
    }

    async fn stage_index(&self, index: &Index) -> Result<Option<StagedIndex>, StoreError> {
        let bytes = to_json_vec(index);
        let token = Token::of_snapshot(SnapshotId::of(&bytes));
        let tmp = self
            .on_root(move |root| index_file::stage(root, INDEX_FILE, &bytes))
            .await?;
        Ok(Some(StagedIndex {
            tmp: tmp.as_str().into(),
            token,
        }))
    }

    async fn commit_index(&self, staged: StagedIndex) -> Result<(), StoreError> {
        let tmp = staged_rel(&staged)?;
        *self.disk.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.on_root(move |root| {
            let lock = index_file::write_lock(root)?;
            index_file::commit(root, &lock, &tmp)
        })
        .await
    }

    async fn discard_index(&self, staged: StagedIndex) {
        if let Ok(tmp) = staged_rel(&staged) {
            let _ = self.on_root(move |root| Ok(root.remove(&tmp))).await;
        }
    }

    async fn stat(&self, p: &RelPath) -> Result<Option<Observed>, StoreError> {
        let q = p.clone();
        self.on_root(move |root| {
            root.lstat_opt(&q)
                .map(|st| st.as_ref().and_then(Observed::from_meta))
                .map_err(|e| Place(root).err(format!("cannot stat {q}"), e))
        })
        .await
    }

    async fn read(&self, p: &RelPath, size: Option<u64>) -> Result<Reader, StoreError> {
        let q = p.clone();
        let small = size.is_some_and(|n| n <= SMALL_FILE);
        // Opened here, not through a path later: only a regular file (no symlink, and no FIFO
        // that would block the open) that stands where the index says.
        let (file, bytes) = self
            .on_root(move |root| {
                if small {
                    // All of it in this one trip to a blocking thread. If it grew past the
                    // limit meanwhile, the reader sees the first part and the hash fails.
                    return Ok((None, read_whole(root, &q, SMALL_FILE + 1)?));
                }
                let f = root
                    .open_regular(&q)
                    .map_err(|e| Place(root).err(format!("cannot read {q}"), e))?;
                Ok((Some(f), Vec::new()))
            })
            .await?;
        let Some(f) = file else {
            return Ok(Box::pin(std::io::Cursor::new(bytes)));
        };
        let f = tokio::io::BufReader::with_capacity(256 * 1024, tokio::fs::File::from_std(f));
        // One byte past the known size shows that it grew (its hash check fails); reading on
        // to the end would chase a file that is appended to faster than it is sent.
        Ok(match size {
            Some(n) => Box::pin(f.take(n.saturating_add(1))),
            None => Box::pin(f),
        })
    }

    async fn write(&self, p: &RelPath, mut data: Reader, put: Put) -> Result<Observed, StoreError> {
        if put.size > SMALL_FILE {
            return self.write_streamed(p, data, put).await;
        }
        // All of it in memory, then one trip to a blocking thread for the file system.
        let mut bytes = Vec::with_capacity(put.size as usize);
        (&mut data)
            .take(SMALL_FILE + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StoreError::io(format!("reading the source of {p}"), e))?;
        if bytes.len() as u64 > SMALL_FILE {
            // Much bigger than when it was scanned: it changed.
            return Err(StoreError::SourceChanged { path: p.clone() });
        }
        let q = p.clone();
        self.on_root(move |root| write_small(root, &q, &bytes, &put))
            .await
    }

    async fn read_batch(&self, files: &[(RelPath, u64)]) -> Vec<Result<Vec<u8>, StoreError>> {
        let files = files.to_vec();
        let n = files.len();
        self.on_root(move |root| {
            Ok(files
                .iter()
                .map(|(p, size)| read_whole(root, p, size.saturating_add(1)))
                .collect())
        })
        .await
        .unwrap_or_else(|e| failed_all(n, &e))
    }

    async fn write_batch(&self, files: Vec<BatchFile>) -> Vec<Result<Observed, StoreError>> {
        let n = files.len();
        self.on_root(move |root| Ok(write_batch_blocking(root, files)))
            .await
            .unwrap_or_else(|e| failed_all(n, &e))
    }

    async fn mkdir(&self, p: &RelPath, mode: Option<u32>) -> Result<Option<u32>, StoreError> {
        let q = p.clone();
        self.on_root(move |root| {
            let err = |e| Place(root).err(format!("cannot create folder {q}"), e);
            let Some(m) = mode.filter(|_| !q.is_root()) else {
                return root.dir(&q, true).map(|_| None).map_err(err);
            };
            root.parent_dir(&q, true).map_err(err)?;
            let filling = crate::index::mode::while_filling(m);
            match root.mkdir(&q, crate::replica::root::mode(filling)) {
                // The umask may have narrowed it: set exactly.
                Ok(()) => root.set_mode(&q, filling).map_err(err)?,
                // Made meanwhile (by someone else): a folder there is fine as it is.
                Err(e) if e.errno() == Some(libc::EEXIST) => {
                    root.dir(&q, false).map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
            Ok(observe(root, &q)?.mode)
        })
        .await
    }

    async fn set_mode(&self, p: &RelPath, mode: u32) -> Result<Option<u32>, StoreError> {
        let q = p.clone();
        self.on_root(move |root| {
            root.set_mode(&q, mode)
                .map_err(|e| Place(root).err(format!("cannot set the permissions of {q}"), e))?;
            Ok(observe(root, &q)?.mode)
        })
        .await
    }

    async fn trash(&self, p: &RelPath) -> Result<(), StoreError> {
        let q = p.clone();
        self.on_root(move |root| to_trash(root, &q)).await
    }

    async fn rmdir(&self, p: &RelPath) -> Result<(), StoreError> {
        let q = p.clone();
        self.on_root(move |root| match root.rmdir(&q) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            // Still holds something (ignored files, or a late arrival): keep it in the trash.
            Err(RootError::Io(_)) => to_trash(root, &q),
            Err(e) => Err(Place(root).err(format!("cannot remove folder {q}"), e)),
        })
        .await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), StoreError> {
        let (from, to) = (from.clone(), to.clone());
        self.on_root(move |root| {
            let place = Place(root);
            let what = || format!("cannot rename {from} to {to}");
            root.parent_dir(&to, true)
                .map_err(|e| place.err(what(), e))?;
            match root.rename(&from, &to, false) {
                Err(e) if e.errno() == Some(libc::EEXIST) => Err(StoreError::Appeared {
                    path: to.clone(),
                    place: place.name(),
                }),
                r => r.map_err(|e| place.err(what(), e)),
            }
        })
        .await
    }

    async fn cleanup(&self, trash_days: u64) -> Result<(), StoreError> {
        if trash_days == 0 {
            return Ok(());
        }
        let max_age = Duration::from_secs(trash_days.saturating_mul(86_400));
        self.on_root(move |root| {
            root.expire_trash(max_age);
            Ok(())
        })
        .await
    }

    async fn chunks(&self, hash: &ContentHash) -> Option<ChunkList> {
        self.chunks_async(hash).await
    }

    async fn keep_chunks(&self, hash: &ContentHash, list: &ChunkList) {
        self.keep_chunks_async(hash, list).await
    }

    async fn prune_chunks(&self, keep: &HashSet<ContentHash>) {
        self.prune_chunks_async(keep).await
    }

    async fn read_ranges(&self, p: &RelPath, ranges: &[(u64, u64)]) -> Result<Vec<u8>, StoreError> {
        self.read_ranges_async(p, ranges).await
    }

    async fn write_delta(
        &self,
        p: &RelPath,
        plan: &Plan,
        old: Seen,
        sent: Vec<u8>,
        put: Put,
    ) -> Result<Observed, StoreError> {
        self.write_delta_async(p, plan, old, sent, put).await
    }
}

fn to_trash(root: &Root, p: &RelPath) -> Result<(), StoreError> {
    root.to_trash(p, crate::time::now_secs())
        .map(drop)
        .map_err(|e| Place(root).err(format!("cannot move {p} to the trash"), e))
}

fn staged_rel(staged: &StagedIndex) -> Result<RelPath, StoreError> {
    RelPath::parse(&staged.tmp.to_string_lossy())
        .map_err(|e| StoreError::io("a staged index", io::Error::other(e)))
}

/// One failure per file of a batch that failed as a whole.
fn failed_all<T>(n: usize, e: &StoreError) -> Vec<Result<T, StoreError>> {
    let text = super::Chain(e).to_string();
    (0..n)
        .map(|_| {
            Err(StoreError::io(
                text.clone(),
                io::Error::other("the whole batch failed"),
            ))
        })
        .collect()
}

mod delta;
#[cfg(test)]
mod tests;
