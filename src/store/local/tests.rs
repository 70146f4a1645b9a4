//! The local store's own rules: its lock, what a read opens, and a batch written as single
//! writes would be.

use super::*;
use crate::index::MTime;
use crate::replica::layout::{TMP_MARK, TRASH_DIR};
#[cfg(unix)]
use rustix::fs::Mode;

fn lock_file(dir: &Path) -> PathBuf {
    dir.join(LOCK_FILE)
}

#[cfg(unix)] // Windows refuses to rename a folder a replica holds open
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
#[cfg(unix)] // needs a FIFO or a symlink, which Windows makes only with privileges
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

/// A file that grew since the scan is read one byte past the size the index knows, enough
/// for its hash check to fail, and no further: an appender faster than the network is not
/// chased.
#[tokio::test]
async fn a_read_stops_just_past_the_size_the_index_knows() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path(), 3600).unwrap();
    let known = SMALL_FILE + 10;
    std::fs::write(tmp.path().join("grow.log"), vec![7u8; known as usize * 3]).unwrap();
    let p = RelPath::parse("grow.log").unwrap();
    let mut out = Vec::new();
    let mut r = store.read(&p, Some(known)).await.unwrap();
    r.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, known + 1);
    out.clear();
    let mut r = store.read(&p, None).await.unwrap();
    r.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, known * 3);
}

/// A batch goes in as single writes would: a fresh file never replaces one that appeared,
/// bytes that do not match their hash are not written, a replaced file goes to the trash,
/// and a batch read refuses what is not a regular file.
#[cfg(unix)] // needs a FIFO or a symlink, which Windows makes only with privileges
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
            mode: None,
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
    assert!(matches!(&got[1], Err(StoreError::Appeared { .. })));
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
    let names = every_name(tmp.path());
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

/// Every name below `dir`, at any depth.
fn every_name(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}
