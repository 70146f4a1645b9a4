//! `LocalStore`: a replica folder on this machine.
//!
//! Writes go to a temp file beside the target, are fsynced (a batch of small files: one
//! syncfs for all), get their mtime, and are renamed into place; what they replace is
//! hard-linked (or moved) into `.sync-trash/` first.

use super::{
    BatchFile, BoxFuture, Current, LockInfo, Put, Reader, SMALL_FILE, StagedIndex, Store,
    StoreError,
};
use crate::index::{
    ContentHash, INDEX_FILE, Index, LOCK_FILE, MTime, ReplicaId, TMP_MARK, TRASH_DIR, fit_name,
    from_json_slice, to_json_vec,
};
use crate::relpath::RelPath;
use crate::scan::Observed;
use crate::time::stamp;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn appeared(p: &RelPath, root: &Path) -> StoreError {
    StoreError::Other(format!(
        "{p} appeared in {} since it was scanned; it will be synced next time",
        root.display()
    ))
}

pub struct LocalStore {
    root: PathBuf,
    lock_stale_secs: u64,
    held: Mutex<Option<HeldLock>>,
}

impl Drop for LocalStore {
    /// A store dropped with its lock still taken (a sync abandoned half-way) releases it.
    fn drop(&mut self) {
        let _ = self.unlock_blocking();
    }
}

/// `.sync.lock` as this store took it: the folder it was made in and what was written.
struct HeldLock {
    dir: OwnedFd,
    body: Vec<u8>,
}

fn held_lock(m: &Mutex<Option<HeldLock>>) -> std::sync::MutexGuard<'_, Option<HeldLock>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_at(dir: &OwnedFd, name: &str) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut buf)?;
    Ok(buf)
}

impl LocalStore {
    /// Opens an existing folder. A missing root is an error, never an empty replica.
    pub fn open(root: &Path, lock_stale_secs: u64) -> Result<Self, StoreError> {
        let meta = std::fs::metadata(root).map_err(|e| {
            StoreError::io(
                format!("cannot open the synced folder {}", root.display()),
                e,
            )
        })?;
        if !meta.is_dir() {
            return Err(StoreError::Other(format!(
                "{} is not a folder; point `root` (or the sync target) at a folder",
                root.display()
            )));
        }
        let root = std::fs::canonicalize(root)
            .map_err(|e| StoreError::io(format!("cannot resolve {}", root.display()), e))?;
        Ok(LocalStore {
            root,
            lock_stale_secs,
            held: Mutex::new(None),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This store's `.sync.lock`, as the process-wide record of held locks names it.
    fn lock_place(&self) -> String {
        self.root.join(LOCK_FILE).to_string_lossy().into_owned()
    }

    fn full(&self, p: &RelPath) -> PathBuf {
        p.to_path(&self.root)
    }

    /// The folder `d` below the root, once every folder from the root down to it is known to
    /// be a real folder, not a symlink (missing ones are made when `create`; without it, a
    /// missing one ends the look and the caller's own call meets the absence). The scan never
    /// follows a link, so neither does a write: a link in the way is an error naming it, never
    /// a write somewhere else.
    fn real_dir(&self, d: &RelPath, create: bool) -> Result<PathBuf, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let io_err = |what: &str, at: &RelPath, e: Errno| {
            StoreError::io(format!("{what} {at} in {}", self.root.display()), e.into())
        };
        let mut fd = rustix::fs::open(&self.root, flags, Mode::empty())
            .map_err(|e| io_err("cannot open", &RelPath::root(), e))?;
        let mut at = RelPath::root();
        for c in d.components() {
            at = at
                .join(c)
                .map_err(|e| StoreError::Other(format!("{d}: {e}")))?;
            let mut opened = rustix::fs::openat(&fd, c, flags, Mode::empty());
            if matches!(opened, Err(Errno::NOENT)) && create {
                match rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("cannot create folder", &at, e)),
                }
                opened = rustix::fs::openat(&fd, c, flags, Mode::empty());
            }
            fd = match opened {
                Ok(next) => next,
                Err(Errno::NOENT) if !create => break,
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    let link =
                        rustix::fs::statat(&fd, c, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink()
                        });
                    let place = format!("in {}", self.root.display());
                    return Err(if link {
                        StoreError::through_link(&at, &place)
                    } else {
                        StoreError::Other(format!(
                            "cannot use folder {at} {place}: a file is in the way"
                        ))
                    });
                }
                Err(e) => return Err(io_err("cannot open folder", &at, e)),
            };
        }
        Ok(self.full(d))
    }

    /// `real_dir` of the folder holding `p`.
    fn real_parent(&self, p: &RelPath, create: bool) -> Result<(), StoreError> {
        match p.parent() {
            Some(parent) => self.real_dir(&parent, create).map(drop),
            None => Ok(()),
        }
    }

    /// `real_parent` for the many files of a batch, each folder looked at once.
    fn parent_checker(&self, create: bool) -> impl FnMut(&RelPath) -> Result<(), StoreError> {
        let mut seen: std::collections::HashMap<Option<RelPath>, Result<(), String>> =
            std::collections::HashMap::new();
        move |p| {
            seen.entry(p.parent())
                .or_insert_with(|| self.real_parent(p, create).map_err(|e| e.to_string()))
                .clone()
                .map_err(StoreError::Other)
        }
    }

    /// Loads the index without the async machinery (for `index` and `status`).
    pub fn load_index_blocking(&self) -> Result<Option<Index>, StoreError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(format!("cannot read {}", path.display()), e)),
        };
        from_json_slice(&bytes).map(Some).map_err(|e| {
            StoreError::bad_index(
                path.display().to_string(),
                e,
                format!(
                    "Run `filesync index --root {}` to set it aside and rebuild it",
                    self.root.display()
                ),
            )
        })
    }

    pub fn save_index_blocking(&self, index: &Index) -> Result<(), StoreError> {
        let bytes = to_json_vec(index);
        atomic_write(&self.root.join(INDEX_FILE), &bytes).map_err(|e| {
            StoreError::io(
                format!("cannot write {}/{INDEX_FILE}", self.root.display()),
                e,
            )
        })
    }

    /// Moves a corrupt index aside as `.sync.corrupt-<stamp>`; returns where it went.
    pub fn set_aside_index(&self) -> Result<PathBuf, StoreError> {
        let from = self.root.join(INDEX_FILE);
        let to = self.root.join(format!(
            "{INDEX_FILE}.corrupt-{}",
            stamp(crate::time::now_secs())
        ));
        std::fs::rename(&from, &to)
            .map_err(|e| StoreError::io(format!("cannot move {} aside", from.display()), e))?;
        Ok(to)
    }

    /// Takes `.sync.lock` by exclusive create. The lock is made through a handle on the
    /// folder itself and released through the same handle, so a folder renamed while we
    /// hold it does not keep an orphaned lock that names a live process (ours).
    pub fn lock_blocking(&self, info: &LockInfo) -> Result<(), StoreError> {
        let path = self.root.join(LOCK_FILE);
        let body = serde_json::to_vec(info).unwrap_or_default();
        let dir = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            StoreError::io(
                format!("cannot open the synced folder {}", self.root.display()),
                e.into(),
            )
        })?;
        // A few rounds: a lock released between our create and our look is tried again.
        for _ in 0..5 {
            match rustix::fs::openat(
                &dir,
                LOCK_FILE,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    let mut f = std::fs::File::from(fd);
                    if let Err(e) = f.write_all(&body).and_then(|_| f.sync_all()) {
                        let _ = rustix::fs::unlinkat(&dir, LOCK_FILE, AtFlags::empty());
                        return Err(StoreError::io(
                            format!("cannot write {}", path.display()),
                            e,
                        ));
                    }
                    *held_lock(&self.held) = Some(HeldLock { dir, body });
                    super::note_held(&self.lock_place(), true);
                    return Ok(());
                }
                Err(Errno::EXIST) => {
                    let bytes = match read_at(&dir, LOCK_FILE) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        r => r.ok(),
                    };
                    // Size and age only matter for a lock that does not parse; one we cannot
                    // stat is judged young.
                    let (len, age) = std::fs::metadata(&path)
                        .and_then(|m| Ok((m.len(), m.modified()?.elapsed().unwrap_or_default())))
                        .unwrap_or((1, Duration::ZERO));
                    super::judge_lock(
                        bytes.as_deref(),
                        len,
                        age,
                        self.lock_stale_secs,
                        &self.lock_place(),
                        path.display().to_string(),
                    )?;
                    tracing::warn!(lock = %path.display(), "breaking a stale lock");
                    let _ = rustix::fs::unlinkat(&dir, LOCK_FILE, AtFlags::empty());
                }
                Err(e) => {
                    return Err(StoreError::io(
                        format!("cannot create {}", path.display()),
                        e.into(),
                    ));
                }
            }
        }
        Err(StoreError::Other(format!("cannot take {}", path.display())))
    }

    /// Releases the lock this store took. A lock file that is no longer ours (broken as
    /// stale and retaken by someone else) is left alone.
    pub fn unlock_blocking(&self) -> Result<(), StoreError> {
        let Some(held) = held_lock(&self.held).take() else {
            return Ok(());
        };
        super::note_held(&self.lock_place(), false);
        match read_at(&held.dir, LOCK_FILE) {
            Ok(b) if b == held.body => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        match rustix::fs::unlinkat(&held.dir, LOCK_FILE, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(StoreError::io(
                format!("cannot remove {}", self.root.join(LOCK_FILE).display()),
                e.into(),
            )),
        }
    }

    /// Where `p` goes in the trash: `.sync-trash/<p>~<stamp>`, never clobbering.
    fn trash_slot(&self, p: &RelPath) -> io::Result<PathBuf> {
        let (dir, base) =
            super::trash_name(p, crate::time::now_secs()).map_err(io::Error::other)?;
        let dir = self
            .real_dir(&dir, true)
            .map_err(|e| io::Error::other(e.to_string()))?;
        for n in 0u32.. {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let slot = dir.join(name);
            if std::fs::symlink_metadata(&slot).is_err() {
                return Ok(slot);
            }
        }
        unreachable!("u32 trash suffixes exhausted")
    }

    fn trash_blocking(&self, p: &RelPath) -> Result<(), StoreError> {
        self.real_parent(p, false)?;
        let full = self.full(p);
        if std::fs::symlink_metadata(&full).is_err() {
            return Ok(());
        }
        let slot = self
            .trash_slot(p)
            .map_err(|e| StoreError::io(format!("cannot make room in the trash for {p}"), e))?;
        match std::fs::rename(&full, &slot) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(format!("cannot move {p} to the trash"), e)),
        }
    }

    fn temp_for(&self, p: &RelPath) -> PathBuf {
        let name = format!(
            ".{}{}{:08x}",
            fit_name(p.name(), 1 + TMP_MARK.len() + 8),
            TMP_MARK,
            rand::random::<u32>()
        );
        match p.parent() {
            Some(parent) => parent.to_path(&self.root).join(name),
            None => self.root.join(name),
        }
    }

    /// Puts a finished temp file at `p`, keeping whatever was there in the trash. With
    /// `sync_parent` the rename is made durable here; else the caller's barrier does it.
    fn install(
        &self,
        tmp: &Path,
        p: &RelPath,
        fresh: bool,
        sync_parent: bool,
    ) -> Result<Observed, StoreError> {
        let full = self.full(p);
        match std::fs::symlink_metadata(&full) {
            Ok(_) if fresh => return Err(appeared(p, &self.root)),
            Ok(m) if m.is_file() => {
                let slot = self.trash_slot(p).map_err(|e| {
                    StoreError::io(format!("cannot make room in the trash for {p}"), e)
                })?;
                // A hard link keeps the old version while the rename replaces it atomically;
                // where links are unsupported, moving it first leaves a moment with no file.
                if std::fs::hard_link(&full, &slot).is_err() {
                    std::fs::rename(&full, &slot)
                        .map_err(|e| StoreError::io(format!("cannot move {p} to the trash"), e))?;
                }
            }
            Ok(_) => self.trash_blocking(p)?,
            Err(_) => {}
        }
        let placed = if fresh {
            // No replacing what may have arrived since the look above.
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                tmp,
                rustix::fs::CWD,
                &full,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Err(Errno::EXIST) => return Err(appeared(p, &self.root)),
                // A file system without RENAME_NOREPLACE: the look above has to do.
                Err(Errno::INVAL) | Err(Errno::NOSYS) => std::fs::rename(tmp, &full),
                r => r.map_err(io::Error::from),
            }
        } else {
            std::fs::rename(tmp, &full)
        };
        placed.map_err(|e| StoreError::io(format!("cannot put {p} in place"), e))?;
        if sync_parent && let Some(parent) = full.parent() {
            sync_dir(parent);
        }
        let m = std::fs::symlink_metadata(&full)
            .map_err(|e| StoreError::io(format!("cannot stat {p}"), e))?;
        Observed::from_metadata(&m)
            .ok_or_else(|| StoreError::Other(format!("{p} is not a regular file after writing")))
    }

    fn cleanup_blocking(&self, trash_days: u64) -> Result<(), StoreError> {
        let trash = self.root.join(TRASH_DIR);
        // Not through a link: expiry deletes, and only the trash's own files are old versions.
        let real = std::fs::symlink_metadata(&trash).is_ok_and(|m| m.is_dir());
        if trash_days > 0 && real {
            let max_age = Duration::from_secs(trash_days * 86_400);
            for d in walk_all(&trash).into_iter().rev() {
                let Ok(m) = std::fs::symlink_metadata(&d) else {
                    continue;
                };
                if m.is_dir() {
                    let _ = std::fs::remove_dir(&d);
                } else if age_of_change(&m) > max_age {
                    let _ = std::fs::remove_file(&d);
                }
            }
        }
        Ok(())
    }
}

/// When the inode last changed (a move into the trash counts), as an age.
fn age_of_change(m: &std::fs::Metadata) -> Duration {
    use std::os::unix::fs::MetadataExt;
    let changed = MTime::new(m.ctime(), m.ctime_nsec().clamp(0, 999_999_999) as u32).to_system();
    SystemTime::now()
        .duration_since(changed)
        .unwrap_or_default()
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Removes our temp files a scan met. Only for a scan under `.sync.lock` (every caller's):
/// whoever writes temps in a folder holds its lock, so while we hold it, any temp there was
/// left by a sync that died (killed, or its connection lost) and none is being written.
pub fn remove_leftover_temps(root: &Path, temps: &[PathBuf]) {
    if !temps.is_empty() {
        tracing::info!(
            root = %root.display(),
            "removing {} temp files left by an interrupted sync",
            temps.len()
        );
    }
    for t in temps {
        if t.starts_with(root) {
            let _ = std::fs::remove_file(t);
        }
    }
}

/// Writes a whole file atomically: temp beside it, fsync, rename, fsync the folder.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = stage_file(path, bytes)?;
    commit_file(&tmp, path)
}

/// The first half of `atomic_write`: `bytes` in a new temp beside `path`, fsynced.
fn stage_file(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = fit_name(&name, 1 + TMP_MARK.len() + 8);
    let tmp = dir.join(format!(".{name}{TMP_MARK}{:08x}", rand::random::<u32>()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The second half: the staged temp renamed over `path`, and the rename made durable.
fn commit_file(tmp: &Path, path: &Path) -> io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; some file systems refuse to fsync folders, which is harmless.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("a file system task failed: {e}")))?
}

impl LocalStore {
    fn clone_handle(&self) -> LocalStore {
        LocalStore {
            root: self.root.clone(),
            lock_stale_secs: self.lock_stale_secs,
            held: Mutex::new(None),
        }
    }

    async fn write_async(
        &self,
        p: &RelPath,
        mut data: Reader,
        put: Put,
    ) -> Result<Observed, StoreError> {
        let Put {
            mtime,
            expect,
            fresh,
            size,
        } = put;
        if size <= SMALL_FILE {
            // All of it in memory, then one trip to a blocking thread for the file system.
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut data)
                .take(SMALL_FILE + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| StoreError::io(format!("reading the source of {p}"), e))?;
            if bytes.len() as u64 > SMALL_FILE {
                // Much bigger than when it was scanned: it changed.
                return Err(StoreError::SourceChanged {
                    path: p.to_string(),
                });
            }
            let this = self.clone_handle();
            let p = p.clone();
            return blocking(move || this.write_small(&p, &bytes, mtime, expect, fresh)).await;
        }
        let this = self.clone_handle();
        let q = p.clone();
        blocking(move || this.real_parent(&q, true)).await?;
        let tmp = self.temp_for(p);
        let res = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await
                .map_err(|e| StoreError::io(format!("cannot create a temp file for {p}"), e))?;
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
            if expect.is_some_and(|h| h != got) {
                return Err(StoreError::SourceChanged {
                    path: p.to_string(),
                });
            }
            let f = f.into_std().await;
            let tmp2 = tmp.clone();
            let p2 = p.clone();
            blocking(move || {
                f.set_modified(mtime.to_system())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| StoreError::io(format!("finishing {p2} ({})", tmp2.display()), e))
            })
            .await?;
            let this = self.clone_handle();
            let (tmp3, p3) = (tmp.clone(), p.clone());
            blocking(move || this.install(&tmp3, &p3, fresh, true)).await
        }
        .await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        res
    }
}

impl LocalStore {
    /// `write` of a file held in memory: temp, fsync, mtime, install, all on this thread.
    fn write_small(
        &self,
        p: &RelPath,
        bytes: &[u8],
        mtime: MTime,
        expect: Option<ContentHash>,
        fresh: bool,
    ) -> Result<Observed, StoreError> {
        self.real_parent(p, true)?;
        let tmp = self.stage(p, bytes, mtime, expect, true)?;
        let res = self.install(&tmp, p, fresh, true);
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Writes `bytes` to a new temp file beside `p` with `mtime` (fsynced if `durable`),
    /// after checking them against `expect`. Returns the temp's path. `p`'s folder has been
    /// made (`real_parent`).
    fn stage(
        &self,
        p: &RelPath,
        bytes: &[u8],
        mtime: MTime,
        expect: Option<ContentHash>,
        durable: bool,
    ) -> Result<PathBuf, StoreError> {
        if expect.is_some_and(|h| h.0 != *blake3::hash(bytes).as_bytes()) {
            return Err(StoreError::SourceChanged {
                path: p.to_string(),
            });
        }
        let tmp = self.temp_for(p);
        let res = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| StoreError::io(format!("cannot create a temp file for {p}"), e))?;
            f.write_all(bytes)
                .and_then(|_| f.set_modified(mtime.to_system()))
                .and_then(|_| if durable { f.sync_all() } else { Ok(()) })
                .map_err(|e| StoreError::io(format!("writing {p} ({})", tmp.display()), e))
        })();
        match res {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// `current_index` on this thread, and whether `.sync` was there (a new one is not yet
    /// on disk, even for an empty folder).
    pub fn current_blocking(&self) -> Result<(Current, bool), StoreError> {
        // Parsing `.sync` and walking the folder do not depend on each other.
        let root = RelPath::root();
        let (loaded, walked) = rayon::join(
            || self.load_index_blocking(),
            || crate::scan::walk(&self.root, &root),
        );
        let loaded = loaded?;
        let existed = loaded.is_some();
        let mut index = loaded.unwrap_or_else(|| Index::new(ReplicaId::random()));
        let digest = index.entries_digest();
        let stats = walked
            .and_then(|w| crate::scan::scan_walked(&self.root, &mut index, &root, w))
            .map_err(|e| StoreError::Other(e.to_string()))?;
        remove_leftover_temps(&self.root, &stats.temps);
        let current = Current {
            index,
            loaded: digest,
            stats,
        };
        Ok((current, existed))
    }

    /// `write_batch` on this thread: every temp written, one barrier, every rename, one more.
    fn write_batch_blocking(&self, files: Vec<BatchFile>) -> Vec<Result<Observed, StoreError>> {
        let mut made = self.parent_checker(true);
        let staged: Vec<Result<PathBuf, StoreError>> = files
            .iter()
            .map(|f| {
                made(&f.path)?;
                self.stage(&f.path, &f.bytes, f.put.mtime, f.put.expect, false)
            })
            .collect();
        let temps: Vec<PathBuf> = staged.iter().flatten().cloned().collect();
        if let Err(e) = barrier(&temps) {
            for t in &temps {
                let _ = std::fs::remove_file(t);
            }
            return files
                .iter()
                .map(|f| {
                    Err(StoreError::Other(format!(
                        "cannot make {} durable: {e}",
                        f.path
                    )))
                })
                .collect();
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut out: Vec<Result<Observed, StoreError>> = files
            .iter()
            .zip(staged)
            .map(|(f, t)| {
                let tmp = t?;
                let r = self.install(&tmp, &f.path, f.put.fresh, false);
                match &r {
                    Err(_) => {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    Ok(_) => {
                        if let Some(d) = tmp.parent().filter(|d| !dirs.iter().any(|x| x == d)) {
                            dirs.push(d.to_path_buf());
                        }
                    }
                }
                r
            })
            .collect();
        // The renames, durable before the index names them: one more syncfs (an fsync per
        // folder would be hundreds of journal commits for a batch spread over many folders).
        if let Err(e) = barrier(&dirs) {
            for (r, f) in out.iter_mut().zip(&files) {
                if r.is_ok() {
                    *r = Err(StoreError::Other(format!(
                        "{} was put in place but may not be durable: {e}",
                        f.path
                    )));
                }
            }
        }
        out
    }

    /// A regular file at `p` opened for reading: no symlink followed, no FIFO waited on.
    fn open_regular(full: &Path) -> Result<std::fs::File, StoreError> {
        let what = |e| StoreError::io(format!("cannot read {}", full.display()), e);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(full)
            .map_err(what)?;
        if !f.metadata().map_err(what)?.is_file() {
            return Err(StoreError::Other(format!(
                "{} is no longer a regular file",
                full.display()
            )));
        }
        Ok(f)
    }

    /// A whole small file: up to `limit` bytes.
    fn read_whole(full: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
        let f = Self::open_regular(full)?;
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, limit), &mut v)
            .map_err(|e| StoreError::io(format!("cannot read {}", full.display()), e))?;
        Ok(v)
    }
}

/// One failure per file of a batch that failed as a whole.
fn failed_all<T>(n: usize, e: &StoreError) -> Vec<Result<T, StoreError>> {
    (0..n)
        .map(|_| Err(StoreError::Other(e.to_string())))
        .collect()
}

/// Makes what was written at `paths` durable: one `syncfs` per file system they are on
/// (`dev` tells which) instead of one fsync each; where syncfs is refused (a seccomp filter),
/// one fsync each. `sync(p, true)` is a syncfs of `p`'s file system, `sync(p, false)` an
/// fsync of `p`. Shared with the server, which reaches its paths through its confined root.
pub(crate) fn barrier_by<P>(
    paths: &[P],
    dev: impl Fn(&P) -> io::Result<u64>,
    sync: impl Fn(&P, bool) -> io::Result<()>,
) -> io::Result<()> {
    let mut devs: Vec<u64> = Vec::new();
    for p in paths {
        let d = dev(p)?;
        if devs.contains(&d) {
            continue;
        }
        devs.push(d);
        match sync(p, true) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
                return paths.iter().try_for_each(|q| sync(q, false));
            }
            r => r?,
        }
    }
    Ok(())
}

/// `barrier_by` for paths on this machine.
fn barrier(paths: &[PathBuf]) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    barrier_by(
        paths,
        |p| Ok(std::fs::symlink_metadata(p)?.dev()),
        |p, whole_fs| {
            let f = std::fs::File::open(p)?;
            if whole_fs {
                Ok(rustix::fs::syncfs(&f)?)
            } else {
                f.sync_all()
            }
        },
    )
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.lock_blocking(info) })
    }

    fn unlock(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.unlock_blocking() })
    }

    fn current_index(&self) -> BoxFuture<'_, Result<Current, StoreError>> {
        let this = self.clone_handle();
        Box::pin(blocking(move || this.current_blocking().map(|(c, _)| c)))
    }

    fn stage_index<'a>(
        &'a self,
        index: &'a Index,
    ) -> BoxFuture<'a, Result<Option<StagedIndex>, StoreError>> {
        Box::pin(async move {
            let bytes = to_json_vec(index);
            let path = self.root.join(INDEX_FILE);
            blocking(move || {
                stage_file(&path, &bytes)
                    .map(|tmp| Some(StagedIndex { tmp: tmp.into() }))
                    .map_err(|e| StoreError::io(format!("cannot write {}", path.display()), e))
            })
            .await
        })
    }

    fn commit_index(&self, staged: StagedIndex) -> BoxFuture<'_, Result<(), StoreError>> {
        let path = self.root.join(INDEX_FILE);
        Box::pin(blocking(move || {
            commit_file(Path::new(&staged.tmp), &path)
                .map_err(|e| StoreError::io(format!("cannot write {}", path.display()), e))
        }))
    }

    fn discard_index(&self, staged: StagedIndex) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = tokio::fs::remove_file(&staged.tmp).await;
        })
    }

    fn stat<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<Option<Observed>, StoreError>> {
        Box::pin(async move {
            match tokio::fs::symlink_metadata(self.full(p)).await {
                Ok(m) => Ok(Observed::from_metadata(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(format!("cannot stat {p}"), e)),
            }
        })
    }

    fn read<'a>(
        &'a self,
        p: &'a RelPath,
        size: Option<u64>,
    ) -> BoxFuture<'a, Result<Reader, StoreError>> {
        let this = self.clone_handle();
        let p = p.clone();
        Box::pin(async move {
            let full = self.full(&p);
            let small = size.is_some_and(|n| n <= SMALL_FILE);
            // Opened here, not through a path later: only a regular file (no symlink, and no
            // FIFO that would block the open) that stands where the index says.
            let (f, bytes) = blocking(move || {
                this.real_parent(&p, false)?;
                if !small {
                    return Ok((Some(Self::open_regular(&full)?), Vec::new()));
                }
                // A small file: all of it in this one trip to a blocking thread. If it grew
                // past the limit meanwhile, the reader sees the first part and the hash fails.
                Ok((None, Self::read_whole(&full, SMALL_FILE + 1)?))
            })
            .await?;
            match f {
                Some(f) => Ok(Box::pin(tokio::io::BufReader::with_capacity(
                    256 * 1024,
                    tokio::fs::File::from_std(f),
                )) as Reader),
                None => Ok(Box::pin(std::io::Cursor::new(bytes)) as Reader),
            }
        })
    }

    fn write<'a>(
        &'a self,
        p: &'a RelPath,
        data: Reader,
        put: Put,
    ) -> BoxFuture<'a, Result<Observed, StoreError>> {
        Box::pin(self.write_async(p, data, put))
    }

    fn batches(&self) -> bool {
        true
    }

    fn read_batch<'a>(
        &'a self,
        files: &'a [(RelPath, u64)],
    ) -> BoxFuture<'a, Vec<Result<Vec<u8>, StoreError>>> {
        let files = files.to_vec();
        let this = self.clone_handle();
        Box::pin(async move {
            let n = files.len();
            blocking(move || {
                let mut real = this.parent_checker(false);
                Ok(files
                    .iter()
                    .map(|(p, size)| {
                        real(p)?;
                        Self::read_whole(&this.full(p), size.saturating_add(1))
                    })
                    .collect())
            })
            .await
            .unwrap_or_else(|e| failed_all(n, &e))
        })
    }

    fn write_batch(
        &self,
        files: Vec<BatchFile>,
    ) -> BoxFuture<'_, Vec<Result<Observed, StoreError>>> {
        let this = self.clone_handle();
        Box::pin(async move {
            let n = files.len();
            blocking(move || Ok(this.write_batch_blocking(files)))
                .await
                .unwrap_or_else(|e| failed_all(n, &e))
        })
    }

    fn mkdir<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>> {
        let this = self.clone_handle();
        let p = p.clone();
        Box::pin(blocking(move || this.real_dir(&p, true).map(drop)))
    }

    fn trash<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>> {
        let this = self.clone_handle();
        let p = p.clone();
        Box::pin(blocking(move || this.trash_blocking(&p)))
    }

    fn rmdir<'a>(&'a self, p: &'a RelPath) -> BoxFuture<'a, Result<(), StoreError>> {
        let this = self.clone_handle();
        let p = p.clone();
        Box::pin(blocking(move || {
            this.real_parent(&p, false)?;
            match std::fs::remove_dir(this.full(&p)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                // Still holds something (ignored files, or a late arrival): keep it in the
                // trash.
                Err(_) => this.trash_blocking(&p),
            }
        }))
    }

    fn rename<'a>(
        &'a self,
        from: &'a RelPath,
        to: &'a RelPath,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let this = self.clone_handle();
        let (from, to) = (from.clone(), to.clone());
        Box::pin(blocking(move || {
            this.real_parent(&from, false)?;
            this.real_parent(&to, true)?;
            let dst = this.full(&to);
            if std::fs::symlink_metadata(&dst).is_ok() {
                return Err(StoreError::Other(format!(
                    "cannot rename {from} to {to}: {to} already exists"
                )));
            }
            std::fs::rename(this.full(&from), &dst)
                .map_err(|e| StoreError::io(format!("cannot rename {from} to {to}"), e))
        }))
    }

    fn cleanup(&self, trash_days: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let this = self.clone_handle();
        Box::pin(blocking(move || this.cleanup_blocking(trash_days)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_file(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE)
    }

    #[test]
    fn a_lock_is_released_even_when_the_folder_was_renamed_meanwhile() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let store = LocalStore::open(&a, 3600).unwrap();
        store.lock_blocking(&LockInfo::here("test")).unwrap();
        let moved = tmp.path().join("moved");
        std::fs::rename(&a, &moved).unwrap();
        store.unlock_blocking().unwrap();
        assert!(!lock_file(&moved).exists(), "orphaned lock left behind");
    }

    #[test]
    fn unlock_leaves_a_lock_it_did_not_take() {
        let tmp = tempfile::tempdir().unwrap();
        let first = LocalStore::open(tmp.path(), 3600).unwrap();
        let second = LocalStore::open(tmp.path(), 3600).unwrap();
        first.lock_blocking(&LockInfo::here("first")).unwrap();
        assert!(matches!(
            second.lock_blocking(&LockInfo::here("second")),
            Err(StoreError::Locked { .. })
        ));
        second.unlock_blocking().unwrap();
        assert!(lock_file(tmp.path()).exists());
        first.unlock_blocking().unwrap();
        assert!(!lock_file(tmp.path()).exists());
    }

    #[test]
    fn a_leftover_lock_of_this_process_is_broken_but_a_held_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::open(tmp.path(), 3600).unwrap();
        // As a sync of this process leaves it when its connection drops before the unlock.
        let leftover = serde_json::to_vec(&LockInfo::here("filesync sync")).unwrap();
        std::fs::write(lock_file(tmp.path()), leftover).unwrap();
        store.lock_blocking(&LockInfo::here("next sync")).unwrap();
        // Held now: another store of this same process must wait.
        let other = LocalStore::open(tmp.path(), 3600).unwrap();
        assert!(matches!(
            other.lock_blocking(&LockInfo::here("index update")),
            Err(StoreError::Locked { .. })
        ));
        store.unlock_blocking().unwrap();
        other
            .lock_blocking(&LockInfo::here("index update"))
            .unwrap();
        other.unlock_blocking().unwrap();
    }

    /// What stands at a path now is checked on open: a FIFO must not hang the sync, and a
    /// symlink is not followed, whatever size the index expects.
    #[tokio::test]
    async fn read_opens_only_a_regular_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::open(tmp.path(), 3600).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tmp.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(tmp.path().join("real"), b"data").unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        for size in [Some(4), None] {
            for name in ["fifo", "link"] {
                let p = RelPath::parse(name).unwrap();
                let r = tokio::time::timeout(Duration::from_secs(5), store.read(&p, size)).await;
                assert!(matches!(r, Ok(Err(_))), "{name} {size:?}");
            }
            let mut out = Vec::new();
            let mut r = store
                .read(&RelPath::parse("real").unwrap(), size)
                .await
                .unwrap();
            r.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, b"data");
        }
    }

    /// A batch goes in as single writes would: a fresh file never replaces one that appeared,
    /// bytes that do not match their hash are not written, a replaced file goes to the trash,
    /// and a batch read refuses what is not a regular file.
    #[tokio::test]
    async fn a_batch_writes_each_file_as_a_single_write_would() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::open(tmp.path(), 3600).unwrap();
        std::fs::write(tmp.path().join("appeared"), b"theirs").unwrap();
        std::fs::write(tmp.path().join("old"), b"old").unwrap();
        std::os::unix::fs::symlink("old", tmp.path().join("link")).unwrap();
        let mtime = MTime::new(1_600_000_000, 0);
        let file = |name: &str, bytes: &[u8], fresh: bool, hash: Option<&[u8]>| BatchFile {
            path: RelPath::parse(name).unwrap(),
            bytes: bytes.to_vec(),
            put: Put {
                mtime,
                expect: hash.map(|h| ContentHash(*blake3::hash(h).as_bytes())),
                fresh,
                size: bytes.len() as u64,
            },
        };
        let got = store
            .write_batch(vec![
                file("new/a", b"a", true, Some(b"a")),
                file("appeared", b"ours", true, None),
                file("changed", b"now", true, Some(b"then")),
                file("old", b"new", false, Some(b"new")),
            ])
            .await;
        assert!(
            got[0]
                .as_ref()
                .is_ok_and(|o| o.size == 1 && o.mtime.secs == mtime.secs)
        );
        assert!(matches!(&got[1], Err(StoreError::Other(m)) if m.contains("appeared")));
        assert!(matches!(&got[2], Err(StoreError::SourceChanged { .. })));
        assert!(got[3].is_ok());
        assert_eq!(std::fs::read(tmp.path().join("new/a")).unwrap(), b"a");
        assert_eq!(
            std::fs::read(tmp.path().join("appeared")).unwrap(),
            b"theirs"
        );
        assert!(!tmp.path().join("changed").exists());
        assert_eq!(std::fs::read(tmp.path().join("old")).unwrap(), b"new");
        let trash: Vec<_> = std::fs::read_dir(tmp.path().join(TRASH_DIR))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
        assert_eq!(trash, vec![b"old".to_vec()]);
        let names: Vec<String> = walk_all(tmp.path())
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(TMP_MARK)), "{names:?}");

        let read = store
            .read_batch(&[
                (RelPath::parse("new/a").unwrap(), 1),
                (RelPath::parse("link").unwrap(), 3),
                (RelPath::parse("missing").unwrap(), 3),
            ])
            .await;
        assert_eq!(read[0].as_ref().unwrap(), b"a");
        assert!(read[1].is_err() && read[2].is_err());
    }

    #[test]
    fn unlock_leaves_a_lock_retaken_by_someone_else() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::open(tmp.path(), 3600).unwrap();
        store.lock_blocking(&LockInfo::here("mine")).unwrap();
        // Someone judged ours stale, broke it and took their own.
        std::fs::write(lock_file(tmp.path()), b"{\"theirs\":1}").unwrap();
        store.unlock_blocking().unwrap();
        assert!(lock_file(tmp.path()).exists());
    }
}
