//! `.sync-chunks/`: the chunk lists of a replica's big files, by content hash (`delta`), on
//! this machine. A cache: a list that is missing or damaged only means a whole-file transfer,
//! so lists are written without fsync and read without complaint.

use super::layout::{CHUNKS_DIR, temp_name};
use super::root::Root;
use crate::delta::{ChunkList, list_name};
use crate::index::ContentHash;
use crate::relpath::RelPath;
use std::io::{Read, Write};

fn dir() -> RelPath {
    RelPath::root().join_unchecked(CHUNKS_DIR)
}

/// The list kept for content `h`, if there is a sound one.
pub fn load(root: &Root, h: &ContentHash) -> Option<ChunkList> {
    let mut f = root
        .open_regular(&dir().join_unchecked(&list_name(h)))
        .ok()?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).ok()?;
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
        if let Err(e) = f.write_all(&list.encode()) {
            let _ = rustix::fs::unlinkat(&fd, tmp.as_str(), rustix::fs::AtFlags::empty());
            return Err(e.into());
        }
        super::rename_at(&fd, &tmp, &fd, &name, true)
    })();
    if let Err(e) = res {
        tracing::debug!("cannot keep the chunk list of {name}: {e}");
    }
}
