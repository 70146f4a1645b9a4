//! The index of one replica: what is in the folder, with each entry's version vector.
//!
//! Pure data; reading and writing the `.sync` JSON lives in `format`, disk walking in `scan`.

mod entries;
mod format;
pub mod journal;
pub mod mode;
mod vv;

pub use entries::Entries;
pub use format::{
    FormatError, from_json_reader, from_json_slice, from_json_vec, to_json_vec, write_json,
};
pub use vv::{Causality, ReplicaId, VersionVector};

use crate::relpath::RelPath;
use std::collections::BTreeMap;
use std::fmt;

/// A BLAKE3 digest of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        blake3::Hash::from_hex(s)
            .ok()
            .map(|h| ContentHash(*h.as_bytes()))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

/// What a path holds: the seed's `".sd"` (1 file, 0 folder, null deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Deleted,
}

impl Kind {
    pub fn is_live(self) -> bool {
        self != Kind::Deleted
    }
}

/// Modification time as seconds and nanoseconds since the Unix epoch. Packed to 12 bytes:
/// every index entry holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C, packed(4))]
pub struct MTime {
    pub secs: i64,
    pub nanos: u32,
}

impl MTime {
    pub fn new(secs: i64, nanos: u32) -> Self {
        MTime { secs, nanos }
    }

    pub fn from_system(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => MTime::new(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    MTime::new(-(d.as_secs() as i64), 0)
                } else {
                    MTime::new(-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        }
    }

    pub fn to_system(self) -> std::time::SystemTime {
        let base = if self.secs >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.secs as u64)
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(self.secs.unsigned_abs())
        };
        base + std::time::Duration::from_nanos(u64::from(self.nanos))
    }
}

/// One path's record in an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: Kind,
    pub mtime: MTime,
    /// File size in bytes (0 for folders and tombstones).
    pub size: u64,
    /// Content digest; `None` until hashed (or for folders and tombstones).
    pub hash: Option<ContentHash>,
    pub vv: VersionVector,
    /// Permission bits (`mode::PERM_BITS`); `None` where they are unknown (an index written
    /// before modes were kept, a server that does not report them).
    pub mode: Option<u32>,
    /// The history of the content alone, where it is shorter than `vv` (the later changes
    /// were to the mode only): how a chmod on one side merges with an edit on the other.
    pub content_vv: Option<Box<VersionVector>>,
    /// What this replica's disk shows where it cannot hold `mode` (a FAT file system): the
    /// scan compares with it, so the disk's own mode is never taken for a chmod. Never synced.
    pub disk_mode: Option<u32>,
    /// Dot-keys we do not know, kept so a newer version's data survives us.
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Entry {
    pub fn file(size: u64, mtime: MTime, hash: Option<ContentHash>, vv: VersionVector) -> Self {
        Entry {
            kind: Kind::File,
            mtime,
            size,
            hash,
            vv,
            mode: None,
            content_vv: None,
            disk_mode: None,
            extra: None,
        }
    }

    pub fn dir(mtime: MTime, vv: VersionVector) -> Self {
        Entry {
            kind: Kind::Dir,
            mtime,
            size: 0,
            hash: None,
            vv,
            mode: None,
            content_vv: None,
            disk_mode: None,
            extra: None,
        }
    }

    pub fn tombstone(mtime: MTime, vv: VersionVector) -> Self {
        Entry {
            kind: Kind::Deleted,
            mtime,
            size: 0,
            hash: None,
            vv,
            mode: None,
            content_vv: None,
            disk_mode: None,
            extra: None,
        }
    }

    pub fn is_live(&self) -> bool {
        self.kind.is_live()
    }

    /// The history of the content: `vv` unless the latest changes were to the mode only.
    pub fn content_history(&self) -> &VersionVector {
        self.content_vv.as_deref().unwrap_or(&self.vv)
    }

    /// Sets the content history, kept only where it differs from `vv`.
    pub fn set_content_history(&mut self, c: VersionVector) {
        self.content_vv = (c != self.vv).then(|| Box::new(c));
    }

    /// The mode the disk is expected to show: `mode`, or what it showed when it could not hold it.
    pub fn shown_mode(&self) -> Option<u32> {
        self.disk_mode.or(self.mode)
    }

    /// Notes what the disk shows after this entry was written there with its mode (`None`:
    /// the store cannot tell); a disk that could not hold the mode keeps it in the index only.
    pub fn landed_mode(&mut self, shown: Option<u32>) {
        self.disk_mode = shown.filter(|m| self.mode.is_some_and(|want| want != *m));
    }

    /// The same entry with `mode`.
    pub fn with_mode(mut self, mode: Option<u32>) -> Self {
        self.mode = mode;
        self
    }

    /// A chmod seen by replica `me`: a change of its own (the vector moves on), while the
    /// content keeps its history.
    pub fn chmodded(&self, mode: u32, me: ReplicaId) -> Entry {
        let mut n = self.clone();
        let content = self.content_history().clone();
        n.vv.bump(me);
        n.mode = Some(mode);
        n.disk_mode = None;
        n.set_content_history(content);
        n
    }

    /// Same thing on disk: kind, and content for files. Metadata like mtime may differ.
    pub fn same_content(&self, other: &Entry) -> bool {
        match (self.kind, other.kind) {
            (Kind::File, Kind::File) => {
                self.size == other.size && self.hash.is_some() && self.hash == other.hash
            }
            (a, b) => a == b,
        }
    }
}

/// When this replica last synced with another, kept for `filesync status`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRecord {
    pub name: String,
    /// Unix seconds of the last completed sync.
    pub last_sync: i64,
    /// Files moved in that sync (both directions).
    pub transferred: u64,
    pub conflicts: u64,
}

/// A replica's index: every path (but the root) with its entry, in component order.
#[derive(Debug, Clone)]
pub struct Index {
    pub replica: ReplicaId,
    /// A human name for the replica (the configured `name`), for status and logs.
    pub name: Option<String>,
    /// The root folder's own entry (`"."`).
    pub root: Entry,
    pub entries: Entries,
    pub peers: BTreeMap<ReplicaId, PeerRecord>,
    /// Top-level keys we do not know, kept on save.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Index {
    pub fn new(replica: ReplicaId) -> Self {
        Index {
            replica,
            name: None,
            root: Entry::dir(MTime::default(), VersionVector::new()),
            entries: Entries::new(),
            peers: BTreeMap::new(),
            extra: serde_json::Map::new(),
        }
    }

    pub fn get(&self, p: &RelPath) -> Option<&Entry> {
        self.entries.get(p)
    }

    /// Live files and folders.
    pub fn live(&self) -> impl Iterator<Item = (&RelPath, &Entry)> {
        self.entries.iter().filter(|(_, e)| e.is_live())
    }

    /// Counts of (files, folders, tombstones).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in self.entries.values() {
            match e.kind {
                Kind::File => c.0 += 1,
                Kind::Dir => c.1 += 1,
                Kind::Deleted => c.2 += 1,
            }
        }
        c
    }

    /// Total bytes in live files.
    pub fn live_bytes(&self) -> u64 {
        self.entries
            .values()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum()
    }

    /// A digest of the entries (not peers): equal digests mean nothing to sync changed.
    pub fn entries_digest(&self) -> ContentHash {
        self.entries_digest_where(|_| true)
    }

    /// `entries_digest` of the entries whose path passes `keep`.
    pub fn entries_digest_where(&self, keep: impl Fn(&RelPath) -> bool) -> ContentHash {
        // Fed in large slices: blake3 pays per `update`, and an entry is only ~60 bytes.
        let mut h = blake3::Hasher::new();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        for (p, e) in self.entries.iter().filter(|(p, _)| keep(p)) {
            buf.extend_from_slice(p.as_str().as_bytes());
            buf.extend_from_slice(&[0, e.kind as u8]);
            buf.extend_from_slice(&e.mtime.secs.to_le_bytes());
            buf.extend_from_slice(&e.mtime.nanos.to_le_bytes());
            buf.extend_from_slice(&e.size.to_le_bytes());
            if let Some(x) = e.hash {
                buf.extend_from_slice(&x.0);
            }
            if let Some(m) = e.mode {
                buf.push(b'm');
                buf.extend_from_slice(&m.to_le_bytes());
            }
            if let Some(m) = e.disk_mode {
                buf.push(b'o');
                buf.extend_from_slice(&m.to_le_bytes());
            }
            if let Some(c) = &e.content_vv {
                buf.push(b'c');
                for (r, n) in c.iter() {
                    buf.extend_from_slice(&r.0.to_le_bytes());
                    buf.extend_from_slice(&n.to_le_bytes());
                }
            }
            for (r, n) in e.vv.iter() {
                buf.extend_from_slice(&r.0.to_le_bytes());
                buf.extend_from_slice(&n.to_le_bytes());
            }
            if buf.len() >= 60 * 1024 {
                h.update(&buf);
                buf.clear();
            }
        }
        h.update(&buf);
        ContentHash(*h.finalize().as_bytes())
    }
}

/// How many cases the fuzz tests try: `FUZZ_CASES`, else a few dozen (`just fuzz` sets
/// thousands).
#[cfg(test)]
pub(crate) fn fuzz_config() -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    proptest::prelude::ProptestConfig {
        cases,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
