//! The index journal: `.sync` stays the whole snapshot, and what changed since is appended to
//! `.sync.journal` beside it, so an edit writes bytes in proportion to itself. Pure: encoding,
//! replay, the diff that makes records and the rule for when to compact; stores do the I/O.
//!
//! Layout: a header naming the snapshot the journal follows (its length and BLAKE3), then
//! batches. A batch is one record per changed entry and an end record that counts them. Each
//! record is `len: u32 LE | check: 8 bytes (BLAKE3 of the body) | body`, the body a kind byte
//! and its data; an entry is the same JSON object `.sync` holds for it.
//!
//! A journal whose header names another snapshot is stale: that snapshot was written since
//! (by a compaction, which folds the journal in, or by any other program that rewrote `.sync`)
//! and already says everything. Replay stops at the first record that is cut short or does not
//! check, and a batch counts only with its end record: a write cut off by a crash is ignored
//! whole, never read as a deletion.

use super::format::{entry_from_json, entry_to_json};
use super::{ContentHash, Entry, FormatError, Index, from_json_reader, from_json_vec};
use crate::relpath::RelPath;
use std::collections::BTreeMap;

/// The journal's first bytes.
pub const MAGIC: &[u8; 8] = b"FSJRNL1\n";
/// Magic, snapshot length, snapshot hash, and a check of those.
pub const HEADER_LEN: usize = 8 + 8 + 32 + 8;
/// Length and check in front of every record body.
const FRAME: usize = 4 + 8;
/// A record body longer than this is damage: no entry comes near it.
const MAX_BODY: usize = 16 << 20;
/// The journal is folded into a new snapshot once it passes this fraction of the snapshot.
const COMPACT_DIVISOR: u64 = 4;

const SET: u8 = 1;
const REMOVE: u8 = 2;
const ROOT: u8 = 3;
const END: u8 = 4;

/// One change to an index, as a journal record holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(RelPath, Entry),
    Remove(RelPath),
    Root(Entry),
}

impl Change {
    fn apply(self, index: &mut Index) {
        match self {
            Change::Set(p, e) => {
                index.entries.insert(p, e);
            }
            Change::Remove(p) => {
                index.entries.remove(&p);
            }
            Change::Root(e) => index.root = e,
        }
    }
}

/// The snapshot a journal follows: its length and content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotId {
    pub len: u64,
    pub hash: ContentHash,
}

impl SnapshotId {
    pub fn of(snapshot: &[u8]) -> Self {
        SnapshotId {
            len: snapshot.len() as u64,
            hash: ContentHash::of(snapshot),
        }
    }
}

/// One state of a folder's index files: the snapshot's identity and the journal batches
/// that apply to it. Equal tokens, equal indexes: two syncs that see the same pair of tokens
/// would plan the same, so a pair recorded as settled lets a sync stop before loading either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub ContentHash);

impl Token {
    /// The token of `snap` with `journal` replayed as `replay` found it; `None` when the
    /// journal was damaged (its state is known only to a rescan). A stale journal adds
    /// nothing, as a load ignores it.
    pub fn of(snap: SnapshotId, journal: &[u8], replay: &Replay) -> Option<Token> {
        let applied = match replay {
            Replay::Absent | Replay::Stale => &[][..],
            Replay::Applied { valid, ignored, .. } if *ignored == 0 => {
                journal.get(..usize::try_from(*valid).ok()?)?
            }
            Replay::Applied { .. } | Replay::BadHeader => return None,
        };
        Some(Token::hash(snap, applied))
    }

    /// The token of a snapshot with no journal after it.
    pub fn of_snapshot(snap: SnapshotId) -> Token {
        Token::hash(snap, &[])
    }

    fn hash(snap: SnapshotId, applied: &[u8]) -> Token {
        let mut h = blake3::Hasher::new();
        h.update(b"filesync index token 1\0");
        h.update(&snap.len.to_le_bytes());
        h.update(&snap.hash.0);
        h.update(applied);
        Token(ContentHash(*h.finalize().as_bytes()))
    }
}

/// What `journal` holds for the snapshot `snap`, found by replaying it into a scratch index
/// (a journal is a fraction of its snapshot): for a token of index files read from disk.
pub fn survey(snap: SnapshotId, journal: &[u8]) -> Replay {
    replay(&mut Index::new(super::ReplicaId(0)), snap, journal)
}

fn check(bytes: &[u8]) -> [u8; 8] {
    let h = blake3::hash(bytes);
    let mut c = [0u8; 8];
    c.copy_from_slice(&h.as_bytes()[..8]);
    c
}

/// The header of a new journal following `snap`.
pub fn header(snap: SnapshotId) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&snap.len.to_le_bytes());
    h.extend_from_slice(&snap.hash.0);
    let c = check(&h);
    h.extend_from_slice(&c);
    h
}

fn parse_header(bytes: &[u8]) -> Option<SnapshotId> {
    let h = bytes.get(..HEADER_LEN)?;
    if &h[..8] != MAGIC || check(&h[..HEADER_LEN - 8]) != h[HEADER_LEN - 8..] {
        return None;
    }
    let len = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let hash = ContentHash(h[16..48].try_into().ok()?);
    Some(SnapshotId { len, hash })
}

fn push_record(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&check(body));
    out.extend_from_slice(body);
}

fn path_body(kind: u8, p: &RelPath) -> Vec<u8> {
    let s = p.as_str().as_bytes();
    let mut b = Vec::with_capacity(5 + s.len() + 160);
    b.push(kind);
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s);
    b
}

/// One batch: a record per change and the end record. Empty for no changes.
pub fn encode_batch(changes: &[Change]) -> Vec<u8> {
    if changes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(changes.len() * 200);
    for c in changes {
        let body = match c {
            Change::Set(p, e) => {
                let mut b = path_body(SET, p);
                b.extend_from_slice(&entry_to_json(e));
                b
            }
            Change::Remove(p) => path_body(REMOVE, p),
            Change::Root(e) => {
                let mut b = vec![ROOT];
                b.extend_from_slice(&entry_to_json(e));
                b
            }
        };
        push_record(&mut out, &body);
    }
    let mut end = vec![END];
    end.extend_from_slice(&(changes.len() as u64).to_le_bytes());
    push_record(&mut out, &end);
    out
}

/// What one record is: a change, or the end of a batch of `n`.
enum Record {
    Change(Change),
    End(u64),
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let with_path = |rest: &[u8]| -> Option<(RelPath, usize)> {
        let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(rest.get(4..4 + n)?).ok()?;
        let p = RelPath::parse(s).ok().filter(|p| !p.is_root())?;
        Some((p, 4 + n))
    };
    Some(match kind {
        SET => {
            let (p, used) = with_path(rest)?;
            let e = entry_from_json(&p, &rest[used..]).ok()?;
            Record::Change(Change::Set(p, e))
        }
        REMOVE => {
            let (p, used) = with_path(rest)?;
            if used != rest.len() {
                return None;
            }
            Record::Change(Change::Remove(p))
        }
        ROOT => Record::Change(Change::Root(entry_from_json(&RelPath::root(), rest).ok()?)),
        END => Record::End(u64::from_le_bytes(rest.try_into().ok()?)),
        _ => return None,
    })
}

/// What loading a journal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// No journal (or an empty file).
    Absent,
    /// It follows another snapshot, which already holds it: ignored.
    Stale,
    /// Its header is damaged: ignored (the snapshot alone is the index).
    BadHeader,
    /// `batches` batches of `changes` in all applied; the first `valid` bytes are sound and
    /// `ignored` bytes after them (a batch cut short, or damage) were not used.
    Applied {
        batches: usize,
        changes: usize,
        valid: u64,
        ignored: u64,
    },
}

impl Replay {
    /// Where the next batch goes; `None`: a new journal must be started (with a header).
    pub fn append_at(&self) -> Option<u64> {
        match self {
            Replay::Applied { valid, .. } => Some(*valid),
            _ => None,
        }
    }

    /// A line to say once when something was left out; `None` when all was well.
    pub fn trouble(&self) -> Option<String> {
        match self {
            Replay::BadHeader => Some(
                "its header is damaged; it was ignored and the snapshot alone is the index".into(),
            ),
            Replay::Applied {
                ignored, batches, ..
            } if *ignored > 0 => Some(format!(
                "its last {ignored} bytes are cut short or damaged \
                 ({batches} complete batches used)"
            )),
            _ => None,
        }
    }
}

/// The index a snapshot and its journal (empty: none) hold together, what the journal
/// added, and the snapshot's identity (what a new journal must name).
pub fn load(snapshot: Vec<u8>, journal: &[u8]) -> Result<(Index, Replay, SnapshotId), FormatError> {
    let snap = SnapshotId::of(&snapshot);
    let mut index = from_json_vec(snapshot)?;
    let r = replay(&mut index, snap, journal);
    Ok((index, r, snap))
}

/// `load` of a snapshot read from `snapshot` (about `len` bytes) as it is parsed, so its text
/// is never held whole. A read error is the outer error, told apart from damage (the inner).
#[allow(clippy::type_complexity)]
pub fn load_read(
    snapshot: impl std::io::Read,
    len: u64,
    journal: &[u8],
) -> std::io::Result<Result<(Index, Replay, SnapshotId), FormatError>> {
    let mut r = std::io::BufReader::with_capacity(1 << 16, SnapshotReader::new(snapshot));
    let parsed = from_json_reader(&mut r, len);
    // The snapshot's identity covers all of it, whatever the parser left unread.
    let drained = std::io::copy(&mut r, &mut std::io::sink());
    let mut sr = r.into_inner();
    if let Some(e) = sr.error.take() {
        return Err(e);
    }
    drained?;
    let snap = sr.id();
    Ok(parsed.map(|mut index| {
        let r = replay(&mut index, snap, journal);
        (index, r, snap)
    }))
}

/// Reads a snapshot while taking its identity, keeping the first read error aside so the
/// parser's "unexpected end" is never taken for damage.
struct SnapshotReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    len: u64,
    error: Option<std::io::Error>,
}

impl<R: std::io::Read> SnapshotReader<R> {
    fn new(inner: R) -> Self {
        SnapshotReader {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
            error: None,
        }
    }

    fn id(&self) -> SnapshotId {
        SnapshotId {
            len: self.len,
            hash: ContentHash(*self.hasher.finalize().as_bytes()),
        }
    }
}

impl<R: std::io::Read> std::io::Read for SnapshotReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.error.get_or_insert(e);
                Err(kind.into())
            }
        }
    }
}

/// Applies the journal `journal` to `index`, parsed from the snapshot `snap`.
pub fn replay(index: &mut Index, snap: SnapshotId, journal: &[u8]) -> Replay {
    if journal.is_empty() {
        return Replay::Absent;
    }
    let Some(follows) = parse_header(journal) else {
        return Replay::BadHeader;
    };
    if follows != snap {
        return Replay::Stale;
    }
    let mut at = HEADER_LEN;
    let mut valid = HEADER_LEN;
    let mut pending: Vec<Change> = Vec::new();
    let (mut batches, mut changes) = (0, 0);
    while let Some(body) = next_body(journal, at) {
        at += FRAME + body.len();
        match decode_body(body) {
            Some(Record::Change(c)) => pending.push(c),
            Some(Record::End(n)) if n == pending.len() as u64 => {
                changes += pending.len();
                batches += 1;
                for c in pending.drain(..) {
                    c.apply(index);
                }
                valid = at;
            }
            _ => break,
        }
    }
    Replay::Applied {
        batches,
        changes,
        valid: valid as u64,
        ignored: (journal.len() - valid) as u64,
    }
}

/// The body of the record at `at`, when it is whole and checks.
fn next_body(journal: &[u8], at: usize) -> Option<&[u8]> {
    let frame = journal.get(at..at + FRAME)?;
    let n = u32::from_le_bytes(frame[..4].try_into().ok()?) as usize;
    if n == 0 || n > MAX_BODY {
        return None;
    }
    let body = journal.get(at + FRAME..at + FRAME + n)?;
    (check(body) == frame[4..]).then_some(body)
}

/// Whether a journal that would be `journal_len` bytes should rather be folded into a new
/// snapshot (of a snapshot now `snapshot_len` bytes).
pub fn should_compact(snapshot_len: u64, journal_len: u64) -> bool {
    journal_len > snapshot_len / COMPACT_DIVISOR
}

/// The entries a rescan of `scopes` may change: each scope's subtree and its ancestors.
pub fn region(index: &Index, scopes: &[RelPath]) -> BTreeMap<RelPath, Entry> {
    let mut out = BTreeMap::new();
    for s in scopes {
        for a in s.ancestors() {
            if let Some(e) = index.entries.get(&a) {
                out.insert(a, e.clone());
            }
        }
        for (p, e) in index.entries.range(s.clone()..) {
            if !p.starts_with(s) {
                break;
            }
            out.insert(p.clone(), e.clone());
        }
    }
    out
}

/// The changes that turn `before` into `after`, both views of the same paths.
pub fn diff(before: &BTreeMap<RelPath, Entry>, after: &BTreeMap<RelPath, Entry>) -> Vec<Change> {
    let mut out = Vec::new();
    for (p, e) in after {
        if before.get(p) != Some(e) {
            out.push(Change::Set(p.clone(), e.clone()));
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) {
            out.push(Change::Remove(p.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
