//! The index on a local disk: `.sync` (the snapshot) and `.sync.journal` (changes since),
//! read together, a batch of changes appended durably, a new snapshot written by temp, fsync
//! and rename with the journal reset after it. The format and replay are `index::journal`.

use super::Place;
use crate::index::journal::{self, Change, Replay, SnapshotId};
use crate::index::{ContentHash, Index, write_json};
use crate::relpath::RelPath;
use crate::replica::Root;
use crate::replica::layout::{INDEX_FILE, JOURNAL_ASIDE_MARK, JOURNAL_FILE, temp_name};
use crate::replica::root::write_all_at;
use crate::store::StoreError;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Mutex;

/// Which file and version of it: inode, size, mtime.
pub type FileId = (u64, u64, i64, i64);

/// What this process last read or wrote of a folder's index files: what a journal batch
/// can be appended to without reading them again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OnDisk {
    snap: SnapshotId,
    snap_file: FileId,
    /// Where the next batch goes and the journal file as we left it; `None`: there is no
    /// journal for this snapshot yet.
    journal: Option<(u64, FileId)>,
}

pub(super) fn index_name() -> RelPath {
    RelPath::root().join_unchecked(INDEX_FILE)
}

fn journal_name() -> RelPath {
    RelPath::root().join_unchecked(JOURNAL_FILE)
}

fn file_id(root: &Root, p: &RelPath) -> Option<FileId> {
    let st = root.lstat(p).ok()?;
    Some((st.ino, st.size, st.mtime.secs, i64::from(st.mtime.nanos)))
}

/// The snapshot's and the journal's identities: what changes whenever either is written.
pub fn files_id(root: &Root) -> Option<(FileId, Option<FileId>)> {
    Some((
        file_id(root, &index_name())?,
        file_id(root, &journal_name()),
    ))
}

/// A whole file, `None` when there is none.
fn read_opt(root: &Root, p: &RelPath) -> Result<Option<Vec<u8>>, StoreError> {
    let shown = || root.path().join(p.as_str()).display().to_string();
    let mut bytes = Vec::new();
    match root.open_regular(p) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(format!("cannot read {}", shown()), e))?,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(Place(root).err(format!("cannot read {}", shown()), e)),
    };
    Ok(Some(bytes))
}

/// Says a journal's trouble once per process and folder for each damage seen.
fn say_once(root: &Root, what: &str) {
    static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let line = format!("{}: {what}", root.path().join(JOURNAL_FILE).display());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.get_or_insert_default().insert(line.clone()) {
        tracing::warn!("{line}");
    }
}

/// Moves a damaged or unreadable journal aside as `.sync.journal.corrupt-<stamp>`, so no
/// append cuts off what it holds past the damage and a person can look at it.
fn set_aside_journal(root: &Root, why: &str) {
    let stamp = crate::time::stamp(crate::time::now_secs());
    let aside = RelPath::root().join_unchecked(&format!("{JOURNAL_ASIDE_MARK}{stamp}"));
    match root.rename(&journal_name(), &aside, true) {
        Ok(()) => say_once(
            root,
            &format!(
                "{why}; moved aside as {aside}, the whole folder is rescanned and .sync \
                 written whole"
            ),
        ),
        Err(e) => say_once(root, &format!("{why}; cannot move it aside ({e})")),
    }
}

/// `.sync` with its journal applied, and whether the journal was damaged (then set aside:
/// the caller rescans the whole folder and writes `.sync` whole); `None` when there is no
/// `.sync` (a journal without its snapshot cannot be applied to anything, and the folder is
/// indexed anew).
pub(super) fn load(root: &Root) -> Result<Option<(Index, OnDisk, bool)>, StoreError> {
    let shown = root.path().join(INDEX_FILE).display().to_string();
    let snap_file = file_id(root, &index_name());
    let snapshot = match root.open_regular(&index_name()) {
        Ok(f) => Some(f),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(Place(root).err(format!("cannot read {shown}"), e)),
    };
    let Some(snapshot) = snapshot else {
        // Kept, not replaced by the next write: it may be a user's file of that name from
        // before the name was ours.
        if root.lstat(&journal_name()).is_ok() {
            set_aside_journal(
                root,
                "there is no .sync for it to follow; the folder is indexed anew",
            );
        }
        return Ok(None);
    };
    let journal_file = file_id(root, &journal_name());
    let (journal_bytes, unreadable) = match read_opt(root, &journal_name()) {
        Ok(b) => (b.unwrap_or_default(), false),
        Err(e) => {
            set_aside_journal(root, &format!("it cannot be read ({e})"));
            (Vec::new(), true)
        }
    };
    let len = snapshot.metadata().map_or(0, |m| m.len());
    let loaded = journal::load_read(&snapshot, len, &journal_bytes)
        .map_err(|e| StoreError::io(format!("cannot read {shown}"), e))?;
    let (index, replay, snap) = loaded.map_err(|e| {
        StoreError::bad_index(
            shown,
            e,
            format!(
                "Run `filesync index --root {}` to set it aside and rebuild it",
                root.path().display()
            ),
        )
    })?;
    let damaged = unreadable || replay.trouble().is_some();
    if let Some(t) = replay.trouble() {
        set_aside_journal(root, &t);
    }
    if replay == Replay::Stale {
        tracing::debug!("{JOURNAL_FILE} follows an older .sync; ignored");
    }
    let on_disk = OnDisk {
        snap,
        snap_file: snap_file.unwrap_or_default(),
        // Gone since it was read: the next write is a whole snapshot, never a new journal
        // that would drop the batches just read.
        journal: replay
            .append_at()
            .map(|at| (at, journal_file.unwrap_or_default())),
    };
    Ok(Some((index, on_disk, damaged)))
}

/// `bytes` in a new temp beside `.sync`, fsynced; its name.
pub(super) fn stage(root: &Root, name: &str, bytes: &[u8]) -> Result<RelPath, StoreError> {
    stage_with(root, name, |f| f.write_all(bytes))
}

/// A new temp beside `.sync` filled by `fill`, fsynced; its name. Nothing is left on failure.
fn stage_with(
    root: &Root,
    name: &str,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<RelPath, StoreError> {
    let what = || format!("cannot write {}", root.path().join(name).display());
    let tmp = RelPath::root().join_unchecked(&temp_name(name));
    let dir = root
        .dir(&RelPath::root(), false)
        .map_err(|e| Place(root).err(what(), e))?;
    let res = Root::create_in(&dir, tmp.name())
        .map_err(|e| Place(root).err(what(), e))
        .and_then(|mut f| {
            fill(&mut f)
                .and_then(|()| f.sync_all())
                .map_err(|e| StoreError::io(what(), e))
        });
    if res.is_err() {
        let _ = root.remove(&tmp);
    }
    res.map(|()| tmp)
}

/// Hashes what passes through, for the identity of a snapshot written as it is rendered.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The staged temp renamed over `name`, and the rename made durable; whether it is (some
/// file systems refuse to fsync folders).
fn put_in_place(root: &Root, tmp: &RelPath, name: &str) -> Result<bool, StoreError> {
    let what = format!("cannot write {}", root.path().join(name).display());
    if let Err(e) = root.rename(tmp, &RelPath::root().join_unchecked(name), true) {
        let _ = root.remove(tmp);
        return Err(Place(root).err(what, e));
    }
    Ok(root.sync(&RelPath::root(), false).is_ok())
}

/// A staged snapshot put in place as `.sync`, then the journal it holds removed. A crash
/// between the two leaves a journal that names the old snapshot: stale, so ignored. The
/// journal stays when the rename is not known durable: a power cut could bring back the
/// old `.sync`, which needs it.
pub(super) fn commit(root: &Root, tmp: &RelPath) -> Result<(), StoreError> {
    if !put_in_place(root, tmp, INDEX_FILE)? {
        tracing::debug!("the rename of {INDEX_FILE} is not known durable; {JOURNAL_FILE} kept");
        return Ok(());
    }
    match root.remove(&journal_name()) {
        Err(e) if !e.is_not_found() => tracing::debug!("cannot remove {JOURNAL_FILE}: {e}"),
        _ => {}
    }
    Ok(())
}

/// Writes `index` whole as the new snapshot (a compaction); what is on disk after.
pub(super) fn save(root: &Root, index: &Index) -> Result<OnDisk, StoreError> {
    let mut snap = None;
    let tmp = stage_with(root, INDEX_FILE, |f| {
        let mut w = std::io::BufWriter::with_capacity(
            256 * 1024,
            Hashing {
                inner: f,
                hasher: blake3::Hasher::new(),
                len: 0,
            },
        );
        write_json(index, &mut w)?;
        let h = w.into_inner().map_err(|e| e.into_error())?;
        snap = Some(SnapshotId {
            len: h.len,
            hash: ContentHash(*h.hasher.finalize().as_bytes()),
        });
        Ok(())
    })?;
    commit(root, &tmp)?;
    let Some(snap) = snap else {
        unreachable!("a staged snapshot was rendered");
    };
    Ok(OnDisk {
        snap,
        snap_file: file_id(root, &index_name()).unwrap_or_default(),
        journal: None,
    })
}

/// Appends `changes` as one durable journal batch after what `disk` says is there. `None`
/// when a new snapshot is due instead: the journal would pass its share of the snapshot, or
/// the files are not as this process left them.
pub(super) fn append(
    root: &Root,
    disk: &OnDisk,
    changes: &[Change],
) -> Result<Option<OnDisk>, StoreError> {
    let batch = journal::encode_batch(changes);
    let at = disk.journal.map_or(0, |(at, _)| at);
    let after = at.max(journal::HEADER_LEN as u64) + batch.len() as u64;
    if journal::should_compact(disk.snap.len, after)
        || file_id(root, &index_name()) != Some(disk.snap_file)
    {
        return Ok(None);
    }
    let what = || format!("cannot write {}", root.path().join(JOURNAL_FILE).display());
    match disk.journal {
        Some((at, id)) => {
            if file_id(root, &journal_name()) != Some(id) {
                return Ok(None);
            }
            let dir = root
                .dir(&RelPath::root(), false)
                .map_err(|e| Place(root).err(what(), e))?;
            let f = crate::replica::root::open_write_at(&dir, JOURNAL_FILE)
                .map_err(|e| StoreError::io(what(), e.into_io()))?;
            // A tail that did not check is cut off first, so the batch follows sound ones.
            f.set_len(at)
                .and_then(|()| write_all_at(&f, &batch, at))
                .and_then(|()| f.sync_data())
                .map_err(|e| StoreError::io(what(), e))?;
        }
        None => {
            let mut bytes = journal::header(disk.snap);
            bytes.extend_from_slice(&batch);
            let tmp = stage(root, JOURNAL_FILE, &bytes)?;
            put_in_place(root, &tmp, JOURNAL_FILE)?;
        }
    }
    let id = file_id(root, &journal_name()).unwrap_or_default();
    Ok(Some(OnDisk {
        journal: Some((after, id)),
        ..*disk
    }))
}
