//! `.sync-chunks/`: the chunk lists of a replica's big files, by content hash (`delta`), on
//! this machine. A cache: a list that is missing or damaged only means a whole-file transfer,
//! so lists are written without fsync and read without complaint.

use super::layout::{CHUNKS_DIR, is_temp_name, temp_name};
use super::root::Root;
use crate::delta::{ChunkList, MOST_LIST_BYTES, list_name};
use crate::index::ContentHash;
use crate::relpath::RelPath;
use std::collections::HashSet;
use std::io::{Read, Write};

fn dir() -> RelPath {
    RelPath::root().join_unchecked(CHUNKS_DIR)
}

/// The list kept for content `h`, if there is a sound one.
pub fn load(root: &Root, h: &ContentHash) -> Option<ChunkList> {
    let f = root
        .open_regular(&dir().join_unchecked(&list_name(h)))
        .ok()?;
    let mut b = Vec::new();
    // One byte past the most a list can hold, to see a bigger one and refuse it.
    f.take(MOST_LIST_BYTES + 1).read_to_end(&mut b).ok()?;
    ChunkList::decode(&b)
}

/// Keeps `list` for content `h` (a temp renamed into place, so a reader never sees half of
/// one). Best effort.
pub fn keep(root: &Root, h: &ContentHash, list: &ChunkList) {
    let name = list_name(h);
    let res = (|| {
        let fd = root.dir(&dir(), true)?;
        let tmp = temp_name(&name);
        let mut f = Root::create_in(&fd, &tmp)?;
        let res = f
            .write_all(&list.encode())
            .map_err(Into::into)
            .and_then(|()| super::rename_at(&fd, &tmp, &fd, &name, true));
        if res.is_err() {
            let _ = super::root::remove_at(&fd, &tmp);
        }
        res
    })();
    if let Err(e) = res {
        tracing::debug!("cannot keep the chunk list of {name}: {e}");
    }
}

/// Removes from `.sync-chunks/` what `stale` names. Best effort.
pub fn prune(root: &Root, keep: &HashSet<ContentHash>) {
    let Ok((fd, entries)) = root.list(&dir()) else {
        return;
    };
    for e in entries {
        if let Ok(name) = std::str::from_utf8(&e.name)
            && stale(name, keep)
        {
            let _ = super::root::remove_at(&fd, name);
        }
    }
}

/// Whether the entry `name` of `.sync-chunks/` goes: a temp (its writer was killed, or is a
/// scan's best effort that only loses a list), or the list of content not in `keep` (no
/// index holds it, so no delta builds on it or sends it).
pub fn stale(name: &str, keep: &HashSet<ContentHash>) -> bool {
    is_temp_name(name) || ContentHash::from_hex(name).is_some_and(|h| !keep.contains(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names_are_temps_and_lists_of_content_not_kept() {
        let (kept, other) = (ContentHash([1; 32]), ContentHash([2; 32]));
        let keep = HashSet::from([kept]);
        assert!(!stale(&list_name(&kept), &keep));
        assert!(stale(&list_name(&other), &keep));
        assert!(stale(&temp_name(&list_name(&kept)), &keep));
        // Anything else there is not ours to judge.
        assert!(!stale("notes.txt", &keep));
    }
}
