//! Writing files into the replica's folder: a temp beside the target, made durable, given
//! its mtime, and put in place with the old version kept in the trash; small files and
//! batches in one trip.

use super::super::{BatchFile, Put, StoreError};
use super::Place;
use crate::index::MTime;
use crate::relpath::RelPath;
use crate::replica::layout::temp_name;
use crate::replica::{InstallError, Root};
use crate::scan::Observed;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};

/// A temp beside `p` (its folder made), written with `bytes` and `mtime`, fsynced when
/// `durable`, after checking the bytes against `expect`. Nothing is left on failure.
pub(super) fn stage(
    root: &Root,
    p: &RelPath,
    bytes: &[u8],
    put: &Put,
    durable: bool,
) -> Result<RelPath, StoreError> {
    if put
        .expect
        .is_some_and(|h| h.0 != *blake3::hash(bytes).as_bytes())
    {
        return Err(StoreError::SourceChanged { path: p.clone() });
    }
    let (dir, tmp) = new_temp(root, p)?;
    let res = Root::create_in_with(&dir, tmp.name(), put.mode)
        .map_err(|e| Place(root).err(format!("cannot create a temp file for {p}"), e))
        .and_then(|f| finish(&f, bytes, put.mtime, durable, p));
    if res.is_err() {
        let _ = root.remove(&tmp);
    }
    res.map(|()| tmp)
}

/// The folder of `p` (made) and a new temp name in it.
pub(super) fn new_temp(
    root: &Root,
    p: &RelPath,
) -> Result<(crate::replica::root::Folder, RelPath), StoreError> {
    let (dir, name) = root
        .parent_dir(p, true)
        .map_err(|e| Place(root).err(format!("cannot create the folder of {p}"), e))?;
    let parent = p.parent().unwrap_or_default();
    Ok((dir, parent.join_unchecked(&temp_name(name))))
}

/// Writes `bytes` into `f` and gives it `mtime`; fsyncs when `durable`.
pub(super) fn finish(
    f: &File,
    bytes: &[u8],
    mtime: MTime,
    durable: bool,
    p: &RelPath,
) -> Result<(), StoreError> {
    let mut w = f;
    w.write_all(bytes)
        .and_then(|()| f.set_modified(mtime.to_system()))
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .map_err(|e| StoreError::io(format!("writing {p}"), e))
}

/// Puts temp `tmp` at `p` (see `Root::install`); with `sync_parent` the rename is made
/// durable here, else the caller's barrier does it. The new file's stat.
pub(super) fn install(
    root: &Root,
    tmp: &RelPath,
    p: &RelPath,
    fresh: bool,
    sync_parent: bool,
    made: &mut HashSet<RelPath>,
) -> Result<Observed, StoreError> {
    let place = Place(root);
    root.install(tmp, p, fresh, crate::time::now_secs(), made)
        .map_err(|e| match e {
            InstallError::Appeared => StoreError::Appeared {
                path: p.clone(),
                place: place.name(),
            },
            InstallError::Trash(e) => place.err(format!("cannot move {p} to the trash"), e),
            InstallError::Root(e) => place.err(format!("cannot put {p} in place"), e),
        })?;
    if sync_parent {
        let _ = root.sync(&p.parent().unwrap_or_default(), false);
    }
    observe(root, p)
}

pub(super) fn observe(root: &Root, p: &RelPath) -> Result<Observed, StoreError> {
    let st = root
        .lstat(p)
        .map_err(|e| Place(root).err(format!("cannot stat {p}"), e))?;
    Observed::from_meta(&st).ok_or_else(|| StoreError::Changed {
        path: p.clone(),
        place: Place(root).name(),
    })
}

/// A whole small file: up to `limit` bytes, only from a regular file at `p`.
pub(super) fn read_whole(root: &Root, p: &RelPath, limit: u64) -> Result<Vec<u8>, StoreError> {
    let f = root
        .open_regular(p)
        .map_err(|e| Place(root).err(format!("cannot read {p}"), e))?;
    let mut v = Vec::new();
    f.take(limit)
        .read_to_end(&mut v)
        .map_err(|e| StoreError::io(format!("cannot read {p}"), e))?;
    Ok(v)
}

/// `write` of a file held in memory: temp, fsync, mtime, install, all on this thread.
pub(super) fn write_small(
    root: &Root,
    p: &RelPath,
    bytes: &[u8],
    put: &Put,
) -> Result<Observed, StoreError> {
    let tmp = stage(root, p, bytes, put, true)?;
    let res = install(root, &tmp, p, put.fresh, true, &mut HashSet::new());
    if res.is_err() {
        let _ = root.remove(&tmp);
    }
    res
}

/// `write_batch` on this thread: every temp written, one barrier, every rename, one more.
pub(super) fn write_batch_blocking(
    root: &Root,
    files: Vec<BatchFile>,
) -> Vec<Result<Observed, StoreError>> {
    let staged: Vec<Result<RelPath, StoreError>> = files
        .iter()
        .map(|f| stage(root, &f.path, &f.bytes, &f.put, false))
        .collect();
    let temps: Vec<RelPath> = staged.iter().flatten().cloned().collect();
    if let Err(e) = root.barrier(&temps) {
        for t in &temps {
            let _ = root.remove(t);
        }
        let e = e.to_string();
        return files
            .iter()
            .map(|f| {
                Err(StoreError::io(
                    format!("cannot make {} durable", f.path),
                    io::Error::other(e.clone()),
                ))
            })
            .collect();
    }
    let mut made = HashSet::new();
    let mut dirs: Vec<RelPath> = Vec::new();
    let mut out: Vec<Result<Observed, StoreError>> = files
        .iter()
        .zip(staged)
        .map(|(f, t)| {
            let tmp = t?;
            let r = install(root, &tmp, &f.path, f.put.fresh, false, &mut made);
            let dir = f.path.parent().unwrap_or_default();
            match &r {
                Err(_) => {
                    let _ = root.remove(&tmp);
                }
                Ok(_) if !dirs.contains(&dir) => dirs.push(dir),
                Ok(_) => {}
            }
            r
        })
        .collect();
    // The renames, durable before the index names them: one more syncfs (an fsync per
    // folder would be hundreds of journal commits for a batch spread over many folders).
    if let Err(e) = root.barrier(&dirs) {
        for (r, f) in out.iter_mut().zip(&files) {
            if r.is_ok() {
                *r = Err(StoreError::io(
                    format!("{} was put in place but may not be durable", f.path),
                    io::Error::other(e.to_string()),
                ));
            }
        }
    }
    out
}
