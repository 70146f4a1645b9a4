//! Delta transfer of big files, the pure part: content-defined chunk lists (FastCDC cut
//! points, BLAKE3 per chunk) made while a file is hashed anyway, their encoding in a replica's
//! `.sync-chunks/`, and the plan that assembles a new version from chunks of the old one plus
//! the bytes that are new. The engine (`sync::delta`) and the stores run it.

use crate::index::ContentHash;

/// Files at least this big get a chunk list and move by delta.
pub const DELTA_MIN: u64 = 1 << 20;

/// FastCDC bounds: an insertion moves only the chunks around it; chunks big enough that a
/// list stays small (a 256 MiB file has about 2,000).
const MIN_CHUNK: u32 = 32 * 1024;
const AVG_CHUNK: u32 = 128 * 1024;
const MAX_CHUNK: u32 = 512 * 1024;

/// Bytes held back before cutting: a cut is final once `MAX_CHUNK` bytes follow its start.
const WINDOW: usize = 4 << 20;

/// What a list's encoding starts with.
const MAGIC: &[u8; 4] = b"FSC1";
const HEAD: usize = 4 + 8 + 4;
const ENTRY: usize = 4 + 32;
/// The biggest file a list is kept of (its list is some 75 MB), and so the longest list:
/// anything longer is damaged.
const MOST_FILE: u64 = 64 << 30;
/// The most bytes a sound list takes (of a `MOST_FILE`-byte file).
pub const MOST_LIST_BYTES: u64 = HEAD as u64 + most_chunks(MOST_FILE) * ENTRY as u64;
// Loads read up to this much into memory.
const _: () = assert!(MOST_LIST_BYTES < 100 << 20);

/// The most chunks a file of `size` bytes is cut into: all but the last are `MIN_CHUNK` or
/// longer.
const fn most_chunks(size: u64) -> u64 {
    size / MIN_CHUNK as u64 + 1
}

/// One chunk of a file: where it starts, how long it is, its BLAKE3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub len: u32,
    pub hash: [u8; 32],
}

/// A file's chunks, front to back, covering it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkList {
    pub chunks: Vec<Chunk>,
}

impl ChunkList {
    /// The size of the file it covers.
    pub fn size(&self) -> u64 {
        self.chunks
            .last()
            .map_or(0, |c| c.offset + u64::from(c.len))
    }

    /// `FSC1`, u64 size, u32 count, then per chunk u32 length and 32 bytes of hash.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.chunks.len() * ENTRY);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.size().to_be_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for c in &self.chunks {
            b.extend_from_slice(&c.len.to_be_bytes());
            b.extend_from_slice(&c.hash);
        }
        b
    }

    /// The list `encode` wrote; `None` for anything else (damaged, cut short, another kind).
    pub fn decode(b: &[u8]) -> Option<ChunkList> {
        let rest = b.strip_prefix(MAGIC)?;
        let size = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let count = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let body = rest.get(12..)?;
        if size > MOST_FILE
            || count as u64 > most_chunks(size)
            || body.len() != count.checked_mul(ENTRY)?
        {
            return None;
        }
        let mut offset = 0u64;
        let chunks = body
            .chunks_exact(ENTRY)
            .map(|e| {
                let len = u32::from_be_bytes(e[..4].try_into().unwrap_or_default());
                let hash = e[4..].try_into().unwrap_or_default();
                let c = Chunk { offset, len, hash };
                offset += u64::from(len);
                c
            })
            .collect();
        let list = ChunkList { chunks };
        let lens_ok = list.chunks.iter().all(|c| (1..=MAX_CHUNK).contains(&c.len));
        (lens_ok && list.size() == size).then_some(list)
    }
}

/// The name of the list of content `h` in `.sync-chunks/`: its hash in hex.
pub fn list_name(h: &ContentHash) -> String {
    h.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a file fed front to back, and cuts it into chunks while at it: one read gives the
/// content hash and (for a file of `DELTA_MIN` or more) the chunk list.
pub struct Chunker {
    whole: blake3::Hasher,
    /// Bytes not yet cut, starting at `at`.
    held: Vec<u8>,
    at: u64,
    chunks: Vec<Chunk>,
    /// Whether to cut at all (else it only hashes).
    cutting: bool,
    total: u64,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker {
            whole: blake3::Hasher::new(),
            held: Vec::new(),
            at: 0,
            chunks: Vec::new(),
            cutting: true,
            total: 0,
        }
    }
}

impl Chunker {
    /// For a file expected to hold `size` bytes: cuts only one big enough to keep a list of.
    pub fn for_size(size: u64) -> Self {
        Chunker {
            cutting: (DELTA_MIN..=MOST_FILE).contains(&size),
            ..Chunker::default()
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.whole.update(data);
        self.total += data.len() as u64;
        if !self.cutting {
            return;
        }
        self.held.extend_from_slice(data);
        if self.held.len() >= WINDOW + MAX_CHUNK as usize {
            self.cut(false);
        }
    }

    /// Cuts the held bytes: all of them at the end, else those whose cut is final.
    fn cut(&mut self, end: bool) {
        let n = self.held.len();
        let mut used = 0usize;
        for c in fastcdc::v2020::FastCDC::new(&self.held, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
            if !end && n - c.offset < MAX_CHUNK as usize {
                break;
            }
            let bytes = &self.held[c.offset..c.offset + c.length];
            self.chunks.push(Chunk {
                offset: self.at + c.offset as u64,
                len: c.length as u32,
                hash: *blake3::hash(bytes).as_bytes(),
            });
            used = c.offset + c.length;
        }
        self.held.drain(..used);
        self.at += used as u64;
    }

    /// The content hash, the length and the chunk list: `None` for a file too small to
    /// keep one of (or one it was told not to cut).
    pub fn finish(mut self) -> (ContentHash, u64, Option<ChunkList>) {
        if self.cutting {
            self.cut(true);
        }
        let hash = ContentHash(*self.whole.finalize().as_bytes());
        let list = ChunkList {
            chunks: self.chunks,
        };
        let keep = self.cutting && (DELTA_MIN..=MOST_FILE).contains(&self.total);
        (hash, self.total, keep.then_some(list))
    }

    /// `finish` for a file of any size (tests, and lists made on the way).
    pub fn finish_all(mut self) -> (ContentHash, ChunkList) {
        self.cut(true);
        let hash = ContentHash(*self.whole.finalize().as_bytes());
        (
            hash,
            ChunkList {
                chunks: self.chunks,
            },
        )
    }
}

impl std::io::Write for Chunker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One piece of a new version, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// A chunk the old version has at `from`, with its hash (checked where it is read).
    Copy { from: u64, len: u32, hash: [u8; 32] },
    /// New bytes: `len` of them, from `at` in the new version.
    Send { at: u64, len: u64 },
}

/// How to build a new version: its pieces in order (adjacent sent ones merged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub pieces: Vec<Piece>,
}

impl Plan {
    /// The bytes the sender sends.
    pub fn sent(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Send { len, .. } => *len,
                Piece::Copy { .. } => 0,
            })
            .sum()
    }

    /// The ranges of the new version that are sent, in order.
    pub fn sent_ranges(&self) -> Vec<(u64, u64)> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Send { at, len } => Some((*at, *len)),
                Piece::Copy { .. } => None,
            })
            .collect()
    }
}

/// The plan that builds `new` from `old`: each chunk of `new` the old version has (same
/// hash and length) is copied from there, the rest is sent.
pub fn plan(old: &ChunkList, new: &ChunkList) -> Plan {
    let have: std::collections::HashMap<([u8; 32], u32), u64> = old
        .chunks
        .iter()
        .map(|c| ((c.hash, c.len), c.offset))
        .collect();
    let mut pieces: Vec<Piece> = Vec::new();
    for c in &new.chunks {
        match have.get(&(c.hash, c.len)) {
            Some(&from) => pieces.push(Piece::Copy {
                from,
                len: c.len,
                hash: c.hash,
            }),
            None => match pieces.last_mut() {
                Some(Piece::Send { at, len }) if *at + *len == c.offset => *len += u64::from(c.len),
                _ => pieces.push(Piece::Send {
                    at: c.offset,
                    len: u64::from(c.len),
                }),
            },
        }
    }
    Plan { pieces }
}

/// Whether `sent` (the bytes of `plan`'s sent ranges, in order) is what the chunks of `new`
/// there hash to: the sender's source did not change since its list was made.
pub fn sent_ok(plan: &Plan, new: &ChunkList, sent: &[u8]) -> bool {
    let mut chunks = new.chunks.iter();
    let mut pos = 0usize;
    for p in &plan.pieces {
        match *p {
            Piece::Copy { .. } => {
                if chunks.next().is_none() {
                    return false;
                }
            }
            Piece::Send { len, .. } => {
                let end = pos + len as usize;
                while pos < end {
                    let Some(c) = chunks.next() else { return false };
                    let Some(b) = sent.get(pos..pos + c.len as usize) else {
                        return false;
                    };
                    if *blake3::hash(b).as_bytes() != c.hash {
                        return false;
                    }
                    pos += c.len as usize;
                }
            }
        }
    }
    pos == sent.len() && chunks.next().is_none()
}

/// Why an assembly stopped.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError<E> {
    /// A chunk read from the old version is not what its list says: the old version changed.
    #[error("the old version changed")]
    OldChanged,
    #[error(transparent)]
    Io(E),
}

/// Builds a new version by `plan`: copied chunks from `old` (`old(from, len)` gives those
/// bytes; each is checked against its hash), sent bytes from `sent` in order
/// (`sent(len)` gives the next `len` of them), all handed to `out` in order.
pub fn assemble<E>(
    plan: &Plan,
    mut old: impl FnMut(u64, u32) -> Result<Vec<u8>, E>,
    mut sent: impl FnMut(u64) -> Result<Vec<u8>, E>,
    mut out: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), AssembleError<E>> {
    /// Sent bytes are asked for in parts of at most this many.
    const PART: u64 = 1 << 20;
    for p in &plan.pieces {
        match *p {
            Piece::Copy { from, len, hash } => {
                let b = old(from, len).map_err(AssembleError::Io)?;
                if b.len() != len as usize || *blake3::hash(&b).as_bytes() != hash {
                    return Err(AssembleError::OldChanged);
                }
                out(&b).map_err(AssembleError::Io)?;
            }
            Piece::Send { len, .. } => {
                let mut left = len;
                while left > 0 {
                    let part = left.min(PART);
                    out(&sent(part).map_err(AssembleError::Io)?).map_err(AssembleError::Io)?;
                    left -= part;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
