//! The index as tests read it: the live entries of a `.sync`, version counters, and whether a
//! daemon's index has caught up with what `filesync index` makes of the folder from scratch.

use super::Sandbox;
use filesync::index::{Index, Kind};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a live entry records, as the scan would see it: folders by kind only (their mtime is
/// the one first seen), files by size, hash and mtime.
pub type Live = BTreeMap<String, (Kind, u64, Option<String>, Option<(i64, u32)>)>;

/// The index of the folder `root` as filesync loads it: `.sync` and its journal.
pub fn load_index(root: &Path) -> Option<Index> {
    let snapshot = std::fs::read(root.join(".sync")).ok()?;
    let journal = std::fs::read(root.join(".sync.journal")).unwrap_or_default();
    filesync::index::journal::load(snapshot, &journal)
        .ok()
        .map(|(idx, _, _)| idx)
}

pub fn live_entries(root: &Path) -> Option<Live> {
    let idx = load_index(root)?;
    Some(
        idx.live()
            .map(|(p, e)| {
                let file = e.kind == Kind::File;
                (
                    p.to_string(),
                    (
                        e.kind,
                        e.size,
                        e.hash.map(|h| h.to_hex()),
                        file.then_some((e.mtime.secs, e.mtime.nanos)),
                    ),
                )
            })
            .collect(),
    )
}

/// The version counters of every entry, by path.
pub fn counters(root: &Path) -> BTreeMap<String, u64> {
    let idx = load_index(root).expect("read and parse .sync");
    idx.entries
        .iter()
        .map(|(p, e)| (p.to_string(), e.vv.iter().map(|(_, n)| n).sum()))
        .collect()
}

/// What `filesync index` makes of a copy of `root` (mtimes kept) from scratch.
fn fresh_index(sb: &Sandbox, root: &Path) -> Live {
    let copy = sb.path().join(format!(
        "fresh-{}-{}",
        root.file_name().unwrap().to_string_lossy(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    copy_tree(root, &copy);
    sb.filesync().arg("index").arg("--root").arg(&copy).ok();
    let live = live_entries(&copy).expect("fresh index");
    let _ = std::fs::remove_dir_all(&copy);
    live
}

/// Waits until the daemon's `.sync` under `root` equals a from-scratch index of the folder.
pub fn wait_index_matches(sb: &Sandbox, root: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        // Quiet first: a copy taken mid-update would compare against a moving target.
        let fresh = fresh_index(sb, root);
        let got = live_entries(root);
        if got.as_ref() == Some(&fresh) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let got = got.unwrap_or_default();
            let missing: Vec<_> = fresh
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !fresh.contains_key(*k))
                .take(5)
                .collect();
            let differ: Vec<_> = fresh
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .take(5)
                .collect();
            return Err(format!(
                "index differs from a fresh scan: {} vs {} entries; missing {missing:?}, extra {extra:?}, differ {differ:?}",
                got.len(),
                fresh.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Copies a folder with file mtimes, skipping our internal files; things vanishing mid-copy
/// (the daemon's temp files) are skipped.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    let Ok(rd) = std::fs::read_dir(from) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".sync"
            || name.starts_with(".sync.")
            || name.starts_with(".sync-")
            || name.contains(".sync-tmp.")
        {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        let dst = to.join(&name);
        if ft.is_dir() {
            copy_tree(&e.path(), &dst);
        } else if ft.is_file() {
            let Ok(meta) = e.metadata() else { continue };
            if std::fs::copy(e.path(), &dst).is_ok()
                && let (Ok(f), Ok(m)) = (
                    std::fs::File::options().write(true).open(&dst),
                    meta.modified(),
                )
            {
                let _ = f.set_modified(m);
            }
        }
    }
}
