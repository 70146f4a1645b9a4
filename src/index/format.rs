//! The `.sync` JSON format: the seed's nested objects plus our dot-keys.
//!
//! ```json
//! {".": {".st": 1637981552, ".sd": 0,
//!        "file1": {".st": 1637981552, ".sn": 5, ".sd": 1, ".ss": 3, ".sh": "…", ".sv": {"…": 1},
//!                  ".sm": 644, ".sc": {"…": 1}}},
//!  ".replica": "0123456789abcdef", ".format": 1}
//! ```
//! `.sm` is the permission bits, its octal digits written as a number (absent: unknown);
//! `.sc` the content's own history where it is shorter than `.sv` (a chmod came after); `.so`
//! the mode this replica's disk shows where it cannot hold `.sm` (a FAT file system).
//! Inside an entry, keys of the form `.s<letter>` are metadata (unknown ones are kept); every
//! other key is a child. A child whose name looks like metadata (or starts with `\`) is written
//! with a leading `\`. Parsing streams into a flat map, so a million entries never exist as a
//! `serde_json::Value` tree.

use super::{ContentHash, Entry, Index, Kind, MTime, PeerRecord, ReplicaId, VersionVector, mode};
use crate::relpath::RelPath;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

pub const FORMAT_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Bad(String),
    /// Not damage: written by a later version, which this one must not overwrite or set aside.
    #[error("written by a newer filesync (index format {0}; this one reads {FORMAT_VERSION})")]
    TooNew(u64),
}

fn is_meta_key(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() == 3 && b[0] == b'.' && b[1] == b's' && b[2].is_ascii_lowercase()
}

fn escape_name(name: &str) -> std::borrow::Cow<'_, str> {
    if is_meta_key(name) || name.starts_with('\\') {
        format!("\\{name}").into()
    } else {
        name.into()
    }
}

fn unescape_name(key: &str) -> &str {
    key.strip_prefix('\\').unwrap_or(key)
}

/// Parses a `.sync` file. A missing replica id (an index from the original tool) gets a new one.
pub fn from_json_slice(bytes: &[u8]) -> Result<Index, FormatError> {
    let (idx, flat) = parse(bytes)?;
    Ok(with_entries(idx, flat))
}

/// `from_json_slice` of bytes it may drop once parsed, before the entry map is built: a big
/// index's text and its map never take memory at the same time.
pub fn from_json_vec(bytes: Vec<u8>) -> Result<Index, FormatError> {
    let (idx, flat) = parse(&bytes)?;
    drop(bytes);
    Ok(with_entries(idx, flat))
}

/// `from_json_slice` of a document read from `r` as it is parsed (`len` bytes long, about):
/// a big index's text is never held whole.
pub fn from_json_reader(r: impl std::io::Read, len: u64) -> Result<Index, FormatError> {
    let mut de = serde_json::Deserializer::from_reader(r);
    let hint = usize::try_from(len).unwrap_or(usize::MAX);
    let (idx, flat) = parse_from(&mut de, hint)?;
    Ok(with_entries(idx, flat))
}

/// The top level of a `.sync` (its entries still empty) and every entry in document order.
fn parse(bytes: &[u8]) -> Result<(Index, Vec<(RelPath, Entry)>), FormatError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    parse_from(&mut de, bytes.len())
}

fn parse_from<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    len: usize,
) -> Result<(Index, Vec<(RelPath, Entry)>), FormatError> {
    let newer = std::cell::Cell::new(None);
    let parsed = TopSeed {
        newer: &newer,
        // An entry takes about this many bytes of JSON: room for all of them at once.
        hint: len / 160,
    }
    .deserialize(&mut *de)
    .map_err(|e| match newer.get() {
        Some(v) => FormatError::TooNew(v),
        None => FormatError::Bad(e.to_string()),
    })?;
    de.end().map_err(|e| FormatError::Bad(e.to_string()))?;
    Ok(parsed)
}

/// The entries in document order become the index's own vector: in component order already
/// when the document's names are (as this writer leaves them), sorted once otherwise.
fn with_entries(mut idx: Index, flat: Vec<(RelPath, Entry)>) -> Index {
    idx.entries = flat.into_iter().collect();
    idx
}

/// Renders an index as `.sync` JSON.
pub fn to_json_vec(index: &Index) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + index.entries.len() * 160);
    // Writing into a Vec cannot fail, and every key is a string.
    if let Err(e) = write_json(index, &mut out) {
        unreachable!("serializing an index to memory failed: {e}");
    }
    out
}

/// Writes an index as `.sync` JSON to `w` as it is rendered: a big index never exists whole
/// in memory as text.
pub fn write_json(index: &Index, mut w: impl std::io::Write) -> std::io::Result<()> {
    let mut ser = serde_json::Serializer::new(&mut w);
    TopSer(index)
        .serialize(&mut ser)
        .map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}

/// One entry alone (no children) as the JSON object `.sync` holds it: how the journal
/// records an entry, so both keep exactly the same fields.
pub(super) fn entry_to_json(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let ser = EntrySer {
        entry,
        desc: &[],
        depth: 0,
    };
    if let Err(e) = ser.serialize(&mut serde_json::Serializer::new(&mut out)) {
        unreachable!("serializing an entry to memory failed: {e}");
    }
    out
}

/// Parses what `entry_to_json` wrote for `path`; an object with children is refused.
pub(super) fn entry_from_json(path: &RelPath, bytes: &[u8]) -> Result<Entry, FormatError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut children = Vec::new();
    let entry = EntrySeed {
        path: path.clone(),
        out: &mut children,
    }
    .deserialize(&mut de)
    .map_err(|e| FormatError::Bad(e.to_string()))?;
    de.end().map_err(|e| FormatError::Bad(e.to_string()))?;
    if !children.is_empty() {
        return Err(FormatError::Bad(format!(
            "a journal entry for {path} has children"
        )));
    }
    Ok(entry)
}

struct TopSeed<'a> {
    /// Set when `.format` names a later version than ours.
    newer: &'a std::cell::Cell<Option<u64>>,
    /// About how many entries there are.
    hint: usize,
}

type Parsed = (Index, Vec<(RelPath, Entry)>);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Parsed;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a .sync index object with a \".\" entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut flat: Vec<(RelPath, Entry)> = Vec::with_capacity(self.hint);
        let mut root = None;
        let mut replica = None;
        let mut name = None;
        let mut peers = BTreeMap::new();
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "." => {
                    root = Some(map.next_value_seed(EntrySeed {
                        path: RelPath::root(),
                        out: &mut flat,
                    })?)
                }
                ".replica" => {
                    let s: String = map.next_value()?;
                    replica = Some(s.parse::<ReplicaId>().map_err(de::Error::custom)?);
                }
                ".name" => name = map.next_value::<Option<String>>()?,
                ".format" => {
                    let v: u64 = map.next_value()?;
                    if v > FORMAT_VERSION {
                        self.newer.set(Some(v));
                        return Err(de::Error::custom(format!(
                            "index format {v} is newer than this filesync understands ({FORMAT_VERSION}); upgrade filesync"
                        )));
                    }
                }
                ".peers" => peers = parse_peers(map.next_value()?),
                _ => {
                    extra.insert(key, map.next_value()?);
                }
            }
        }
        let root = root.ok_or_else(|| de::Error::missing_field("."))?;
        if root.kind != Kind::Dir {
            return Err(de::Error::custom("the root entry \".\" is not a folder"));
        }
        let idx = Index {
            replica: replica.unwrap_or_else(ReplicaId::random),
            name,
            root,
            entries: super::Entries::new(),
            peers,
            extra,
        };
        Ok((idx, flat))
    }
}

fn parse_peers(v: Value) -> BTreeMap<ReplicaId, PeerRecord> {
    // Peer records are informational: a malformed one is dropped rather than failing the load.
    let mut out = BTreeMap::new();
    if let Value::Object(m) = v {
        for (k, v) in m {
            let Ok(id) = k.parse::<ReplicaId>() else {
                continue;
            };
            let get_u = |f: &str| v.get(f).and_then(Value::as_u64).unwrap_or(0);
            out.insert(
                id,
                PeerRecord {
                    name: v
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    last_sync: v.get("last_sync").and_then(Value::as_i64).unwrap_or(0),
                    transferred: get_u("transferred"),
                    conflicts: get_u("conflicts"),
                },
            );
        }
    }
    out
}

struct EntrySeed<'a> {
    path: RelPath,
    out: &'a mut Vec<(RelPath, Entry)>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = Entry;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = Entry;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an index entry object for {}", self.path)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut secs: Option<f64> = None;
        let mut secs_int: Option<i64> = None;
        let mut nanos: Option<u32> = None;
        let mut sd: Option<Option<u64>> = None;
        let mut size = 0u64;
        let mut hash = None;
        let mut vv = VersionVector::new();
        let mut mode = None;
        let mut content_vv = None;
        let mut disk_mode = None;
        let mut extra: Option<Box<Map<String, Value>>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                ".st" => {
                    let n: serde_json::Number = map.next_value()?;
                    if let Some(i) = n.as_i64() {
                        secs_int = Some(i);
                    } else {
                        secs = n.as_f64();
                    }
                }
                ".sn" => nanos = Some(map.next_value()?),
                ".sd" => sd = Some(map.next_value()?),
                ".ss" => size = map.next_value()?,
                ".sh" => {
                    let s: String = map.next_value()?;
                    hash = Some(ContentHash::from_hex(&s).ok_or_else(|| {
                        de::Error::custom(format!("bad hash {s:?} at {}", self.path))
                    })?);
                }
                ".sv" => vv = parse_vv(map.next_value()?).map_err(de::Error::custom)?,
                ".sm" => mode = Some(mode_of(map.next_value()?, &self.path)?),
                ".sc" => content_vv = Some(parse_vv(map.next_value()?).map_err(de::Error::custom)?),
                ".so" => disk_mode = Some(mode_of(map.next_value()?, &self.path)?),
                k if is_meta_key(k) => {
                    let v: Value = map.next_value()?;
                    extra.get_or_insert_default().insert(key, v);
                }
                k => {
                    let name = unescape_name(k);
                    let child = self.path.join(name).map_err(|e| {
                        de::Error::custom(format!("bad name in {}: {e}", self.path))
                    })?;
                    // The folder's slot comes before its children: document order is then
                    // component order, and the vector needs no sort.
                    let slot = self.out.len();
                    self.out.push((child.clone(), MISSING_PARENT.clone()));
                    let entry = map.next_value_seed(EntrySeed {
                        path: child,
                        out: self.out,
                    })?;
                    self.out[slot].1 = entry;
                }
            }
        }
        let kind = kind_of(sd, &self.path).map_err(de::Error::custom)?;
        let mtime = mtime_of(secs_int, secs, nanos);
        let mut e = Entry {
            kind,
            mtime,
            size: if kind == Kind::File { size } else { 0 },
            hash: if kind == Kind::File { hash } else { None },
            vv,
            mode: if kind.is_live() { mode } else { None },
            content_vv: None,
            disk_mode: if kind.is_live() { disk_mode } else { None },
            extra,
        };
        if let Some(c) = content_vv {
            e.set_content_history(c);
        }
        Ok(e)
    }
}

/// `".sd"` as a kind: 1 file, 0 folder, null deleted.
fn kind_of(sd: Option<Option<u64>>, path: &RelPath) -> Result<Kind, String> {
    match sd {
        Some(Some(1)) => Ok(Kind::File),
        Some(Some(0)) => Ok(Kind::Dir),
        Some(None) => Ok(Kind::Deleted),
        Some(Some(n)) => Err(format!("\".sd\" is {n} at {path}; expected 1, 0 or null")),
        None => Err(format!("\".sd\" missing at {path}")),
    }
}

/// The mtime from `".st"` (whole seconds, or the seed's float) and `".sn"` (nanoseconds).
fn mtime_of(secs_int: Option<i64>, secs: Option<f64>, nanos: Option<u32>) -> MTime {
    match (secs_int, secs) {
        (Some(s), _) => MTime::new(s, nanos.unwrap_or(0).min(999_999_999)),
        (None, Some(f)) if f.is_finite() => {
            let s = f.floor();
            MTime::new(s as i64, ((f - s) * 1e9) as u32)
        }
        _ => MTime::default(),
    }
}

/// A mode written as octal digits (`".sm"`, `".so"`).
fn mode_of<E: de::Error>(n: u64, path: &RelPath) -> Result<u32, E> {
    mode::from_digits(n).ok_or_else(|| E::custom(format!("bad mode {n} at {path}")))
}

fn parse_vv(m: BTreeMap<String, u64>) -> Result<VersionVector, String> {
    let mut pairs = Vec::with_capacity(m.len());
    for (k, n) in m {
        pairs.push((k.parse::<ReplicaId>()?, n));
    }
    Ok(VersionVector::from_pairs(pairs))
}

struct TopSer<'a>(&'a Index);

impl Serialize for TopSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let idx = self.0;
        let flat: Vec<(&RelPath, &Entry)> = idx.entries.iter().collect();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(".format", &FORMAT_VERSION)?;
        m.serialize_entry(".replica", &idx.replica.to_string())?;
        if let Some(n) = &idx.name {
            m.serialize_entry(".name", n)?;
        }
        if !idx.peers.is_empty() {
            let mut peers = Map::new();
            for (id, p) in &idx.peers {
                peers.insert(
                    id.to_string(),
                    serde_json::json!({"name": p.name, "last_sync": p.last_sync,
                        "transferred": p.transferred, "conflicts": p.conflicts}),
                );
            }
            m.serialize_entry(".peers", &peers)?;
        }
        for (k, v) in &idx.extra {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry(
            ".",
            &EntrySer {
                entry: &idx.root,
                desc: &flat,
                depth: 0,
            },
        )?;
        m.end()
    }
}

/// An entry and all its descendants (a contiguous run of the component-ordered index).
struct EntrySer<'a> {
    entry: &'a Entry,
    desc: &'a [(&'a RelPath, &'a Entry)],
    depth: usize,
}

/// Stands in for a parent missing from the index, so its children still have a place.
static MISSING_PARENT: Entry = Entry {
    kind: Kind::Deleted,
    mtime: MTime { secs: 0, nanos: 0 },
    size: 0,
    hash: None,
    vv: VersionVector::EMPTY,
    mode: None,
    content_vv: None,
    disk_mode: None,
    extra: None,
};

struct VvSer<'a>(&'a VersionVector);

impl Serialize for VvSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (r, n) in self.0.iter() {
            m.serialize_entry(&IdKey(r), &n)?;
        }
        m.end()
    }
}

/// A replica id as a map key, formatted straight into the output (no `String` per entry).
struct IdKey(ReplicaId);

impl Serialize for IdKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Serialize for EntrySer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.entry;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(".st", &{ e.mtime.secs })?;
        if e.mtime.nanos != 0 {
            m.serialize_entry(".sn", &e.mtime.nanos)?;
        }
        match e.kind {
            Kind::File => m.serialize_entry(".sd", &1)?,
            Kind::Dir => m.serialize_entry(".sd", &0)?,
            Kind::Deleted => m.serialize_entry(".sd", &())?,
        }
        if e.kind == Kind::File {
            m.serialize_entry(".ss", &e.size)?;
            if let Some(h) = &e.hash {
                m.serialize_entry(".sh", blake3::Hash::from_bytes(h.0).to_hex().as_str())?;
            }
        }
        if !e.vv.is_empty() {
            m.serialize_entry(".sv", &VvSer(&e.vv))?;
        }
        if let Some(mode) = e.mode {
            m.serialize_entry(".sm", &mode::to_digits(mode))?;
        }
        if let Some(c) = &e.content_vv {
            m.serialize_entry(".sc", &VvSer(c))?;
        }
        if let Some(d) = e.disk_mode {
            m.serialize_entry(".so", &mode::to_digits(d))?;
        }
        if let Some(x) = &e.extra {
            for (k, v) in x.iter() {
                m.serialize_entry(k, v)?;
            }
        }
        let d = self.depth;
        let mut i = 0;
        while i < self.desc.len() {
            let (p, pe) = self.desc[i];
            let Some(name) = p.components().nth(d) else {
                i += 1;
                continue;
            };
            let (child, start) = if p.depth() == d + 1 {
                (pe, i + 1)
            } else {
                (&MISSING_PARENT, i)
            };
            let mut j = start;
            while j < self.desc.len()
                && self.desc[j].0.depth() > d + 1
                && self.desc[j].0.components().nth(d) == Some(name)
            {
                j += 1;
            }
            m.serialize_entry(
                escape_name(name).as_ref(),
                &EntrySer {
                    entry: child,
                    desc: &self.desc[start..j],
                    depth: d + 1,
                },
            )?;
            i = j;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn loads_the_seed_example() {
        let seed = br#"{".": {".st": 1637981552, ".sd": 0,
            "file1": {".st": 1637981552, ".sd": 1},
            "file2": {".st": 1637981552.5, ".sd": 1},
            "gone": {".st": 1637981552, ".sd": null}}}"#;
        let idx = from_json_slice(seed).unwrap();
        assert_eq!(idx.entries.len(), 3);
        assert_eq!(idx.entries[&p("file1")].kind, Kind::File);
        assert_eq!(
            idx.entries[&p("file2")].mtime,
            MTime::new(1637981552, 500_000_000)
        );
        assert_eq!(idx.entries[&p("gone")].kind, Kind::Deleted);
    }

    #[test]
    fn roundtrip_keeps_everything() {
        let mut idx = Index::new(ReplicaId(0xabc));
        idx.name = Some("laptop".into());
        let r = ReplicaId(7);
        let vv = VersionVector::new().bumped(r);
        idx.entries
            .insert(p("d"), Entry::dir(MTime::new(5, 0), vv.clone()));
        idx.entries.insert(
            p("d/.st"),
            Entry::file(
                3,
                MTime::new(9, 42),
                Some(ContentHash::of(b"abc")),
                vv.clone(),
            ),
        );
        idx.entries.insert(
            p("d/\\x"),
            Entry::file(0, MTime::new(-3, 1), None, vv.clone()),
        );
        idx.entries.insert(
            p("d/sub/deep file\nwith newline ü"),
            Entry::tombstone(MTime::new(1, 0), vv.clone()),
        );
        let chmodded = Entry::file(1, MTime::new(2, 0), Some(ContentHash::of(b"x")), vv.clone())
            .with_mode(Some(0o644))
            .chmodded(0o600, ReplicaId(8));
        idx.entries.insert(p("d/private"), chmodded);
        let mut on_fat = Entry::file(1, MTime::new(2, 0), None, vv.clone()).with_mode(Some(0o600));
        on_fat.landed_mode(Some(0o755));
        assert_eq!(on_fat.shown_mode(), Some(0o755));
        idx.entries.insert(p("d/on-fat"), on_fat);
        idx.entries.get_mut(&p("d")).unwrap().mode = Some(0o750);
        let mut extra = Map::new();
        extra.insert(".sq".into(), serde_json::json!({"future": true}));
        idx.entries.get_mut(&p("d")).unwrap().extra = Some(Box::new(extra));
        idx.extra
            .insert(".future".into(), serde_json::json!([1, 2]));
        idx.peers.insert(
            ReplicaId(9),
            PeerRecord {
                name: "pi".into(),
                last_sync: 77,
                transferred: 3,
                conflicts: 1,
            },
        );

        let json = to_json_vec(&idx);
        let back = from_json_slice(&json).unwrap();
        assert_eq!(back.replica, idx.replica);
        assert_eq!(back.name, idx.name);
        assert_eq!(back.peers, idx.peers);
        assert_eq!(back.extra, idx.extra);
        // "d/sub" was missing: it comes back as a stand-in tombstone, everything else exact.
        let mut want = idx.entries.clone();
        want.insert(p("d/sub"), MISSING_PARENT.clone());
        assert_eq!(back.entries, want);
        assert_eq!(to_json_vec(&back), {
            let mut i2 = idx.clone();
            i2.entries = want;
            to_json_vec(&i2)
        });
    }

    #[test]
    fn modes_are_octal_digits_and_absent_means_unknown() {
        let doc = br#"{".": {".sd": 0, ".sm": 700,
            "old": {".sd": 1, ".st": 1},
            "key": {".sd": 1, ".st": 1, ".sm": 600, ".sv": {"a": 2}, ".sc": {"a": 1}},
            "gone": {".sd": null, ".sm": 644}}}"#;
        let idx = from_json_slice(doc).unwrap();
        assert_eq!(idx.root.mode, Some(0o700));
        assert_eq!(idx.entries[&p("old")].mode, None);
        let key = &idx.entries[&p("key")];
        assert_eq!(key.mode, Some(0o600));
        assert_eq!(key.content_history().get(ReplicaId(0xa)), 1);
        assert_eq!(key.vv.get(ReplicaId(0xa)), 2);
        assert_eq!(idx.entries[&p("gone")].mode, None);
        let back = String::from_utf8(to_json_vec(&idx)).unwrap();
        assert!(back.contains(r#"".sm":600"#), "{back}");
        assert!(!back.contains(r#"".sm":644"#), "{back}");
        for bad in [
            &br#"{".": {".sd": 0, "a": {".sd": 1, ".sm": 8}}}"#[..],
            br#"{".": {".sd": 0, "a": {".sd": 1, ".sm": 1777}}}"#,
            br#"{".": {".sd": 0, "a": {".sd": 1, ".sm": "644"}}}"#,
        ] {
            assert!(matches!(from_json_slice(bad), Err(FormatError::Bad(_))));
        }
    }

    #[test]
    fn rejects_garbage_and_hostile_names() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"x\": 1}",
            br#"{".": {".sd": 0, "..": {".sd": 1}}}"#,
            br#"{".": {".sd": 0, "a/b": {".sd": 1}}}"#,
            br#"{".": {".sd": 0, "a": {".st": 1}}}"#,
            br#"{".": {".sd": 1}}"#,
        ] {
            assert!(
                matches!(from_json_slice(bad), Err(FormatError::Bad(_))),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version's index is not damage.
        assert!(matches!(
            from_json_slice(br#"{".": {".sd": 0}, ".format": 99}"#),
            Err(FormatError::TooNew(99))
        ));
    }

    /// Hostile `.sync` documents are clear errors: nesting past any real tree, numbers out
    /// of range, names that are not UTF-8, and sizes far past what a name can be; none panics
    /// or reads as an index that has lost its entries.
    #[test]
    fn hostile_documents_are_clear_errors() {
        let nested = |depth: usize| {
            let mut d = String::from(r#"{".": {".sd": 0, "#);
            d.push_str(&r#""a": {".sd": 0, "#.repeat(depth));
            d
        };
        let huge_name = format!(
            r#"{{".": {{".sd": 0, "{}": {{".sd": 1, ".st": 1}}}}}}"#,
            "n".repeat(100 << 20)
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("deep nesting", nested(200_000).into_bytes()),
            ("deep arrays", "[".repeat(1_000_000).into_bytes()),
            (
                "a huge exponent",
                br#"{".": {".sd": 0, "a": {".sd": 1, ".st": 1e999999}}}"#.to_vec(),
            ),
            (
                "a size past u64",
                br#"{".": {".sd": 0, "a": {".sd": 1, ".ss": 99999999999999999999999}}}"#.to_vec(),
            ),
            (
                "a name that is not UTF-8",
                b"{\".\": {\".sd\": 0, \"\xff\xfe\": {\".sd\": 1}}}".to_vec(),
            ),
            ("a 100 MB name", huge_name.into_bytes()),
            ("nothing", Vec::new()),
        ];
        for (what, doc) in cases {
            match from_json_slice(&doc) {
                Err(FormatError::Bad(msg)) => {
                    assert!(!msg.is_empty() && msg.len() < 500, "{what}: {msg}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // A name given twice: one entry, whichever came last, never a lost sibling.
        let dup = from_json_slice(
            br#"{".": {".sd": 0, "a": {".sd": 1, ".st": 1}, "b": {".sd": 1}, "a": {".sd": 1, ".st": 2}}}"#,
        )
        .unwrap();
        assert_eq!(dup.entries.len(), 2);
        assert!(dup.entries[&p("b")].is_live());
    }

    proptest::proptest! {
        #![proptest_config(crate::index::fuzz_config())]

        /// Random bytes, and a real index cut short or with a byte changed: a clear error or
        /// an index, never a panic; and an index whose entries are all still there is only
        /// ever the original itself.
        #[test]
        fn fuzz_damaged_indexes_never_panic(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flip in proptest::prelude::any::<(proptest::sample::Index, u8)>(),
        ) {
            let _ = from_json_slice(&noise);
            let mut idx = Index::new(ReplicaId(0xfeed));
            let vv = VersionVector::new().bumped(ReplicaId(3));
            for i in 0..20u64 {
                let path = p(&format!("d{}/f{i}", i % 3));
                if let Some(parent) = path.parent() {
                    idx.entries.insert(parent, Entry::dir(MTime::new(1, 0), vv.clone()));
                }
                idx.entries.insert(path, Entry::file(i, MTime::new(i as i64, 7), Some(ContentHash::of(&[i as u8])), vv.clone()));
            }
            let good = to_json_vec(&idx);
            let at = cut.index(good.len());
            if let Ok(back) = from_json_slice(&good[..at]) {
                proptest::prop_assert!(back.entries.len() <= idx.entries.len());
            }
            let mut bad = good.clone();
            let (i, b) = flip;
            bad[i.index(good.len())] ^= b | 1;
            let _ = from_json_slice(&bad);
        }
    }
}
