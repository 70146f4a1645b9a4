//! `Archive`: what getting things back needs of a replica beyond a sync: its trash listed,
//! kept versions removed for good (expiry, the cap), our own small files at its root (the
//! changes log) read and replaced whole, and the size of its disk. Local here; over SFTP in
//! `sftp::archive`.

use super::{AnyStore, LocalStore, Store, StoreError};
use crate::history::versions::TrashFile;
use crate::relpath::RelPath;
use crate::replica::layout::{TRASH_DIR, temp_name};
use crate::replica::root::{FileKind, remove_at, stat_at};
use crate::replica::{Root, RootError, rename_at};
use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;

/// A replica's trash and own files, wherever it lives.
pub trait Archive: Store {
    /// Every file below `.sync-trash/` (never through a link), with its size and mtime.
    fn list_trash(&self) -> impl Future<Output = Result<Vec<TrashFile>, StoreError>> + Send;
    /// Removes these trash files for good, and the trash folders that leaves empty.
    fn remove_kept(
        &self,
        slots: Vec<RelPath>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The whole of our file `name` at the root (at most `limit` bytes); `None` if missing.
    fn read_own(
        &self,
        name: &'static str,
        limit: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Replaces our file `name` at the root with `bytes` (temp, then rename over it).
    fn replace_own(
        &self,
        name: &'static str,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The size of the disk holding the replica, where it can be learnt.
    fn disk_size(&self) -> impl Future<Output = Option<u64>> + Send;
}

fn trash_root() -> RelPath {
    RelPath::root().join_unchecked(TRASH_DIR)
}

/// Runs `f` on the root on a blocking thread.
async fn on<T: Send + 'static>(
    root: &Arc<Root>,
    f: impl FnOnce(&Root) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let root = root.clone();
    tokio::task::spawn_blocking(move || f(&root))
        .await
        .map_err(|e| StoreError::io("a blocking task", std::io::Error::other(e)))?
}

fn io_err(root: &Root, what: &str, p: &RelPath, e: impl Into<std::io::Error>) -> StoreError {
    StoreError::io(
        format!("{what} {}", p.to_path(root.path()).display()),
        e.into(),
    )
}

/// The files below the trash, folders walked one at a time, links never followed.
fn walk_trash(root: &Root) -> Result<Vec<TrashFile>, StoreError> {
    let top = trash_root();
    match root.lstat_opt(&top) {
        Ok(Some(st)) if st.kind == FileKind::Dir => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root, "cannot stat", &top, e.into_io())),
    }
    let mut out = Vec::new();
    let mut folders = vec![top];
    while let Some(d) = folders.pop() {
        let fd = root
            .open_folder(&d)
            .map_err(|e| io_err(root, "cannot list", &d, e.into_io()))?;
        let (entries, failed) = crate::replica::root::read_dir(&fd)
            .map_err(|e| io_err(root, "cannot list", &d, e.into_io()))?;
        if let Some(e) = failed {
            return Err(io_err(root, "cannot list", &d, e.into_io()));
        }
        for entry in entries {
            let Ok(name) = std::str::from_utf8(&entry.name) else {
                continue;
            };
            let Ok(p) = d.join(name) else { continue };
            let Ok(st) = stat_at(&fd, name) else {
                continue;
            };
            match st.kind {
                FileKind::Dir => folders.push(p),
                FileKind::File => out.push(TrashFile {
                    slot: p,
                    size: st.size,
                    mtime: st.mtime,
                    mode: st.mode,
                }),
                _ => {}
            }
        }
    }
    Ok(out)
}

fn remove_kept(root: &Root, slots: &[RelPath]) -> Result<(), StoreError> {
    let top = trash_root();
    let mut folders = std::collections::BTreeSet::new();
    for s in slots.iter().filter(|s| s.starts_with(&top) && **s != top) {
        match root.remove(s) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(io_err(root, "cannot remove", s, e.into_io())),
        }
        folders.extend(s.ancestors().filter(|a| a.starts_with(&top) && *a != top));
    }
    // Deepest first; a folder that still holds something stays.
    for d in folders.iter().rev() {
        let _ = root.rmdir(d);
    }
    Ok(())
}

fn read_own(root: &Root, name: &str, limit: usize) -> Result<Option<Vec<u8>>, StoreError> {
    let p = RelPath::root().join_unchecked(name);
    let f = match root.open_regular(&p) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(io_err(root, "cannot open", &p, e.into_io())),
    };
    let mut out = Vec::new();
    f.take(limit as u64)
        .read_to_end(&mut out)
        .map_err(|e| io_err(root, "cannot read", &p, e))?;
    Ok(Some(out))
}

fn replace_own(root: &Root, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let p = RelPath::root().join_unchecked(name);
    let (dir, _) = root
        .parent(&p)
        .map_err(|e| io_err(root, "cannot open the folder of", &p, e.into_io()))?;
    let tmp = temp_name(name);
    let res = (|| {
        let mut f = Root::create_in_with(&dir, &tmp, Some(0o644)).map_err(RootError::into_io)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename_at(&dir, &tmp, &dir, name, true).map_err(RootError::into_io)
    })();
    if res.is_err() {
        let _ = remove_at(&dir, &tmp);
    }
    res.map_err(|e| io_err(root, "cannot write", &p, e))
}

impl Archive for LocalStore {
    async fn list_trash(&self) -> Result<Vec<TrashFile>, StoreError> {
        on(self.handle(), walk_trash).await
    }

    async fn remove_kept(&self, slots: Vec<RelPath>) -> Result<(), StoreError> {
        on(self.handle(), move |r| remove_kept(r, &slots)).await
    }

    async fn read_own(
        &self,
        name: &'static str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        on(self.handle(), move |r| read_own(r, name, limit)).await
    }

    async fn replace_own(&self, name: &'static str, bytes: Vec<u8>) -> Result<(), StoreError> {
        on(self.handle(), move |r| replace_own(r, name, &bytes)).await
    }

    async fn disk_size(&self) -> Option<u64> {
        on(self.handle(), |r| {
            r.disk_size()
                .map_err(|e| io_err(r, "cannot statvfs", &RelPath::root(), e.into_io()))
        })
        .await
        .ok()
    }
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

impl Archive for AnyStore {
    async fn list_trash(&self) -> Result<Vec<TrashFile>, StoreError> {
        each!(self, s => s.list_trash().await)
    }
    async fn remove_kept(&self, slots: Vec<RelPath>) -> Result<(), StoreError> {
        each!(self, s => s.remove_kept(slots).await)
    }
    async fn read_own(
        &self,
        name: &'static str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.read_own(name, limit).await)
    }
    async fn replace_own(&self, name: &'static str, bytes: Vec<u8>) -> Result<(), StoreError> {
        each!(self, s => s.replace_own(name, bytes).await)
    }
    async fn disk_size(&self) -> Option<u64> {
        each!(self, s => s.disk_size().await)
    }
}
