//! The index on a local disk: `.sync` (the snapshot) and `.sync.journal` (changes since),
//! read together, a batch of changes appended durably, a new snapshot written by temp, fsync
//! and rename with the journal reset after it. The format and replay are `index::journal`.

use super::Place;
use crate::index::journal::{self, Change, Replay, SnapshotId, Token};
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
/// can be appended to without reading them again, and what tells that another writer has
/// been there since.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OnDisk {
    snap: SnapshotId,
    snap_file: FileId,
    /// The journal file as last seen, whatever it held; `None`: there was none.
    journal_file: Option<FileId>,
    /// Where the next batch goes; `None`: no journal follows this snapshot yet (one that is
    /// there names an older snapshot, and a new one replaces it).
    append_at: Option<u64>,
    /// The state of both files together as loaded, for a sync to record; `None` after
    /// damage. Only a load's is read (a writer asks `token`).
    pub(super) token: Option<Token>,
}

/// Held while a process checks and writes a folder's index files: another writer (the
/// daemon's loop, a refresh a client asked for, a sync) waits, so none writes between
/// another's check that the files are as it left them and its write.
#[must_use]
pub(super) struct WriteLock(#[allow(dead_code)] crate::replica::root::FolderLock);

/// Takes the folder's `WriteLock` (an exclusive `flock` on the folder itself), waiting for it.
pub(super) fn write_lock(root: &Root) -> Result<WriteLock, StoreError> {
    let what = || format!("cannot lock the index in {}", root.path().display());
    root.lock_folder(&RelPath::root())
        .map(WriteLock)
        .map_err(|e| Place(root).err(what(), e))
}

/// Whether the index files are still as `disk` says this process left them.
fn unchanged(root: &Root, disk: &OnDisk) -> bool {
    file_id(root, &index_name()) == Some(disk.snap_file)
        && file_id(root, &journal_name()) == disk.journal_file
}

/// `IndexMoved` for this folder's index.
fn moved(root: &Root) -> StoreError {
    StoreError::IndexMoved {
        path: root.path().join(INDEX_FILE).display().to_string(),
    }
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
    // Ids taken before the reads: a write between the two shows as a change at the next
    // write, which then reads again rather than trust what this read.
    let on_disk = OnDisk {
        snap,
        snap_file: snap_file.unwrap_or_default(),
        journal_file: if unreadable { None } else { journal_file },
        append_at: replay.append_at(),
        token: (!unreadable)
            .then(|| Token::of(snap, &journal_bytes, &replay))
            .flatten(),
    };
    Ok(Some((index, on_disk, damaged)))
}

/// The token of the index files on disk now (see `journal::Token`): what a sync compares
/// with the pair it last settled before it loads anything. `None` with no `.sync`, or a
/// damaged journal. The journal is read first: a compaction between the two reads then
/// shows as a newer snapshot that holds the journal, never as a snapshot without it.
pub fn token(root: &Root) -> Result<Option<Token>, StoreError> {
    let journal = read_opt(root, &journal_name())?.unwrap_or_default();
    let Some(snap) = snapshot_id(root)? else {
        return Ok(None);
    };
    Ok(Token::of(snap, &journal, &journal::survey(snap, &journal)))
}

/// A version of a file: device, inode, size, mtime and ctime (any write changes the ctime).
type Version = (u64, u64, u64, (i64, u32), (i64, u32));

/// A file changed less than this long ago may change again within its time stamp's
/// granularity (two seconds on FAT): its identity is not kept.
const RACY_SECS: i64 = 2;

/// The identity of `.sync` now. Hashing a big snapshot takes a while, so the last identity
/// per folder is kept with the file version it was taken of, and hashed again only after
/// `.sync` is written.
fn snapshot_id(root: &Root) -> Result<Option<SnapshotId>, StoreError> {
    static KNOWN: Mutex<
        Option<std::collections::HashMap<std::path::PathBuf, (Version, SnapshotId)>>,
    > = Mutex::new(None);
    let shown = || root.path().join(INDEX_FILE).display().to_string();
    let version = |m: &crate::replica::root::Meta| -> Version {
        let t = |t: crate::index::MTime| (t.secs, t.nanos);
        (m.dev, m.ino, m.size, t(m.mtime), t(m.changed))
    };
    let before = match root.lstat(&index_name()) {
        Ok(m) => version(&m),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(Place(root).err(format!("cannot read {}", shown()), e)),
    };
    let known = |k: &mut Option<std::collections::HashMap<_, _>>| {
        k.get_or_insert_default().get(root.path()).copied()
    };
    if let Some((v, id)) = known(&mut KNOWN.lock().unwrap_or_else(|e| e.into_inner()))
        && v == before
    {
        return Ok(Some(id));
    }
    let f = match root.open_regular(&index_name()) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(Place(root).err(format!("cannot read {}", shown()), e)),
    };
    let mut h = blake3::Hasher::new();
    let len = std::io::copy(&mut &f, &mut HashInto(&mut h))
        .map_err(|e| StoreError::io(format!("cannot read {}", shown()), e))?;
    let id = SnapshotId {
        len,
        hash: ContentHash(*h.finalize().as_bytes()),
    };
    // Kept only when nothing wrote the file meanwhile, and its times are old enough that a
    // later write must change them (file systems with coarse times; git's racy-entry rule).
    let old_enough = crate::time::now_secs() - before.4.0 > RACY_SECS;
    if old_enough
        && root
            .lstat(&index_name())
            .is_ok_and(|m| version(&m) == before)
    {
        KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_default()
            .insert(root.path().to_path_buf(), (before, id));
    }
    Ok(Some(id))
}

/// A writer that only hashes.
struct HashInto<'a>(&'a mut blake3::Hasher);

impl Write for HashInto<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a test may have the process die (`TEST_FILESYNC_CRASH_AT=<point>#<n>`: SIGKILL the
/// n-th time it passes `point`), to see what each step of a write leaves behind. Unset, as
/// in every real run, it does nothing.
fn crash_point(point: &str) {
    static AT: std::sync::OnceLock<Option<(String, usize)>> = std::sync::OnceLock::new();
    static PASSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let at = AT.get_or_init(|| {
        let v = std::env::var("TEST_FILESYNC_CRASH_AT").ok()?;
        let (p, n) = v.rsplit_once('#')?;
        Some((p.to_string(), n.parse().ok()?))
    });
    if let Some((p, n)) = at
        && p == point
        && PASSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *n
    {
        #[cfg(unix)]
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

/// `batch` written at `at` in two halves, with a crash point between: a torn batch.
fn write_torn(f: &std::fs::File, batch: &[u8], at: u64) -> std::io::Result<()> {
    let (first, rest) = batch.split_at(batch.len() / 2);
    write_all_at(f, first, at)?;
    crash_point("append: half written");
    write_all_at(f, rest, at + first.len() as u64)
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
pub(super) fn commit(root: &Root, _lock: &WriteLock, tmp: &RelPath) -> Result<(), StoreError> {
    if !put_in_place(root, tmp, INDEX_FILE)? {
        tracing::debug!("the rename of {INDEX_FILE} is not known durable; {JOURNAL_FILE} kept");
        return Ok(());
    }
    crash_point("compact: in place");
    match root.remove(&journal_name()) {
        Err(e) if !e.is_not_found() => tracing::debug!("cannot remove {JOURNAL_FILE}: {e}"),
        _ => {}
    }
    crash_point("compact: journal removed");
    Ok(())
}

/// Writes `index` whole as the new snapshot (a compaction); what is on disk after. With
/// `was`, only over the files as it says this process left them (else `IndexMoved`).
pub(super) fn save(
    root: &Root,
    lock: &WriteLock,
    was: Option<&OnDisk>,
    index: &Index,
) -> Result<OnDisk, StoreError> {
    if was.is_some_and(|d| !unchanged(root, d)) {
        return Err(moved(root));
    }
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
    crash_point("compact: staged");
    commit(root, lock, &tmp)?;
    let Some(snap) = snap else {
        unreachable!("a staged snapshot was rendered");
    };
    Ok(OnDisk {
        snap,
        snap_file: file_id(root, &index_name()).unwrap_or_default(),
        // Kept when the rename is not known durable: it names the old snapshot.
        journal_file: file_id(root, &journal_name()),
        append_at: None,
        token: Some(Token::of_snapshot(snap)),
    })
}

/// Appends `changes` as one durable journal batch after what `disk` says is there. `None`
/// when a new snapshot is due instead (the journal would pass its share of the snapshot);
/// `IndexMoved` when the files are not as this process left them.
pub(super) fn append(
    root: &Root,
    _lock: &WriteLock,
    disk: &OnDisk,
    changes: &[Change],
) -> Result<Option<OnDisk>, StoreError> {
    if !unchanged(root, disk) {
        return Err(moved(root));
    }
    let batch = journal::encode_batch(changes);
    let at = disk.append_at.unwrap_or(0);
    let after = at.max(journal::HEADER_LEN as u64) + batch.len() as u64;
    if journal::should_compact(disk.snap.len, after) {
        return Ok(None);
    }
    let what = || format!("cannot write {}", root.path().join(JOURNAL_FILE).display());
    match disk.append_at {
        Some(at) => {
            let dir = root
                .dir(&RelPath::root(), false)
                .map_err(|e| Place(root).err(what(), e))?;
            let f = crate::replica::root::open_write_at(&dir, JOURNAL_FILE)
                .map_err(|e| StoreError::io(what(), e.into_io()))?;
            crash_point("append: opened");
            // A tail that did not check is cut off first, so the batch follows sound ones.
            f.set_len(at).map_err(|e| StoreError::io(what(), e))?;
            crash_point("append: tail cut");
            write_torn(&f, &batch, at).map_err(|e| StoreError::io(what(), e))?;
            f.sync_data().map_err(|e| StoreError::io(what(), e))?;
            crash_point("append: synced");
        }
        None => {
            let mut bytes = journal::header(disk.snap);
            bytes.extend_from_slice(&batch);
            let tmp = stage(root, JOURNAL_FILE, &bytes)?;
            crash_point("append: new journal staged");
            put_in_place(root, &tmp, JOURNAL_FILE)?;
            crash_point("append: new journal in place");
        }
    }
    Ok(Some(OnDisk {
        journal_file: file_id(root, &journal_name()),
        append_at: Some(after),
        // Known again at the next load or `token`; an append is the daemon's, which never
        // asks.
        token: None,
        ..*disk
    }))
}
