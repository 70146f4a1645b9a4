//! The one walker: how a folder's listing is judged, wherever it came from. A lister (the
//! local one through folder descriptors, the SFTP one through READDIR) lists a folder, asks
//! `rules_for` which rules hold inside it, and hands the listing to `judge`, which sorts
//! every entry (ours, a temp, a link, ignored, too deep, kept) and names the folders to
//! list next. Both listers therefore agree by construction.

use super::rules::{IgnoreFile, Rules};
use super::{MAX_DEPTH, Observed};
use crate::index::{Kind, MTime};
use crate::relpath::RelPath;
use crate::replica::layout::{IGNORE_FILE, is_internal, is_temp_name};

/// What a listing says an entry is, before any `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    File,
    Dir,
    Link,
    /// A socket, a device, a FIFO: never synced, never opened.
    Other,
    /// The listing did not say (some file systems): a `stat` tells.
    Unknown,
}

/// One entry of a folder's listing.
#[derive(Debug)]
pub struct Listed {
    pub name: String,
    pub what: What,
    /// Its size and mtime when the listing carries them (SFTP does; getdents does not).
    pub seen: Option<Observed>,
    /// Its mtime as listed, for a temp file's age.
    pub mtime: Option<MTime>,
}

/// What a `stat` of a listed name found.
#[derive(Debug)]
pub enum Stat {
    Seen(Observed),
    /// Gone since it was listed, or turned into something unsyncable.
    Gone,
    Failed(String),
}

/// Why a path a walk met is not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    Link,
    /// A FIFO, a socket or a device.
    Special,
    /// A name that is not UTF-8: left as it is, never renamed.
    NotUtf8,
    /// A name no replica may hold (too long, or a byte our paths refuse).
    BadName,
    /// Deeper than `MAX_DEPTH` levels.
    TooDeep,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Skip::Link,
        Skip::Special,
        Skip::NotUtf8,
        Skip::BadName,
        Skip::TooDeep,
    ];

    /// The word that names it on the wire (the hub's refresh reply).
    pub fn keyword(self) -> &'static str {
        match self {
            Skip::Link => "symlink",
            Skip::Special => "special",
            Skip::NotUtf8 => "not-utf8",
            Skip::BadName => "bad-name",
            Skip::TooDeep => "too-deep",
        }
    }

    pub fn from_keyword(k: &str) -> Option<Skip> {
        Skip::ALL.into_iter().find(|s| s.keyword() == k)
    }

    /// How a summary counts `n` of them: `3 symlinks`.
    pub fn counted(self, n: usize) -> String {
        let (one, many) = match self {
            Skip::Link => ("symlink", "symlinks"),
            Skip::Special => ("FIFO, socket or device", "FIFOs, sockets or devices"),
            Skip::NotUtf8 => ("name that is not UTF-8", "names that are not UTF-8"),
            Skip::BadName => ("name no replica can hold", "names no replica can hold"),
            Skip::TooDeep => ("path", "paths"),
        };
        let deep = if self == Skip::TooDeep {
            format!(" deeper than {MAX_DEPTH} levels")
        } else {
            String::new()
        };
        format!("{n} {}{deep}", if n == 1 { one } else { many })
    }

    /// What one of them is, for a listing: `a symbolic link`.
    pub fn what(self) -> String {
        match self {
            Skip::Link => "a symbolic link".into(),
            Skip::Special => "a FIFO, socket or device".into(),
            Skip::NotUtf8 => "a name that is not UTF-8".into(),
            Skip::BadName => "a name no replica can hold".into(),
            Skip::TooDeep => format!("deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// A path the walk met and left out, with its name's bytes as they are on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Skipped {
    /// Relative to the replica's root, `/`-separated; not always UTF-8.
    pub path: Vec<u8>,
    pub why: Skip,
}

impl Skipped {
    pub fn new(dir: &RelPath, name: &[u8], why: Skip) -> Skipped {
        let mut path = dir.as_str().as_bytes().to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        Skipped { path, why }
    }

    /// The path, when it is one a replica can name (a link or a FIFO can clash with a file).
    pub fn rel(&self) -> Option<RelPath> {
        RelPath::parse(std::str::from_utf8(&self.path).ok()?).ok()
    }
}

impl std::fmt::Display for Skipped {
    /// The path with every byte that is not UTF-8 shown as `\xNN`, so nothing is mangled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.path.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// What a walk (or any part of it) found; parts are appended, then sorted once.
#[derive(Debug, Default)]
pub struct Found {
    pub observed: Vec<(RelPath, Observed)>,
    /// What could not be read: its subtree is not judged.
    pub unreadable: Vec<(RelPath, String)>,
    /// Our temp files, with their listed mtime where the listing had one.
    pub temps: Vec<(RelPath, Option<MTime>)>,
    /// Symlinks met (never followed, never written through).
    pub links: Vec<RelPath>,
    /// Folders met but not listed (ignored, too deep, unreadable): what is below them is
    /// unknown to this walk.
    pub unwalked: Vec<RelPath>,
    /// Every `.syncignore` the walk applied.
    pub ignore_files: Vec<IgnoreFile>,
    /// What was left out and must be accounted for (links included).
    pub skipped: Vec<Skipped>,
    /// Paths refused for being deeper than `MAX_DEPTH`: the folders on the way to them hold
    /// nothing else are not synced either (see `Walked::new`).
    pub too_deep: Vec<RelPath>,
    /// Folders found (and observed) but left for a walk of their own: a walk that holds the
    /// whole of a big tree at once costs more memory than the index of it.
    pub deferred: Vec<RelPath>,
}

impl Found {
    pub fn append(&mut self, mut other: Found) {
        self.observed.append(&mut other.observed);
        self.unreadable.append(&mut other.unreadable);
        self.temps.append(&mut other.temps);
        self.links.append(&mut other.links);
        self.unwalked.append(&mut other.unwalked);
        self.ignore_files.append(&mut other.ignore_files);
        self.skipped.append(&mut other.skipped);
        self.too_deep.append(&mut other.too_deep);
        self.deferred.append(&mut other.deferred);
    }

    pub fn failed(dir: &RelPath, why: impl ToString) -> Found {
        Found {
            unreadable: vec![(dir.clone(), why.to_string())],
            unwalked: vec![dir.clone()],
            ..Found::default()
        }
    }
}

/// The rules in force inside `dir`: `above`, plus the folder's own `.syncignore` when its
/// listing holds one (`read` fetches its bytes; a file that cannot be read adds nothing),
/// which is noted in `found`.
pub fn rules_for(
    dir: &RelPath,
    listing: &[Listed],
    above: &Rules,
    found: &mut Found,
    read: impl FnOnce() -> Option<Vec<u8>>,
) -> Rules {
    let has_file = listing
        .iter()
        .any(|e| e.name == IGNORE_FILE && matches!(e.what, What::File | What::Unknown));
    match has_file.then(read).flatten() {
        Some(bytes) => {
            let file = IgnoreFile::parse(dir, &bytes);
            found.ignore_files.push(file.clone());
            above.with_files([file])
        }
        None => above.clone(),
    }
}

/// Judges the listing of folder `dir` under `rules` into `found`; returns the subfolders to
/// list next. `stat` is asked only about entries kept whose listing did not say enough.
pub fn judge(
    dir: &RelPath,
    listing: Vec<Listed>,
    rules: &Rules,
    found: &mut Found,
    stat: &mut dyn FnMut(&str) -> Stat,
) -> Vec<RelPath> {
    let mut subdirs = Vec::new();
    for e in listing {
        if e.name == "." || e.name == ".." {
            continue;
        }
        let rel = match dir.join(&e.name) {
            Ok(r) => r,
            Err(err) => {
                tracing::debug!("skipping unsyncable name {dir}/{}: {err}", e.name);
                found
                    .skipped
                    .push(Skipped::new(dir, e.name.as_bytes(), Skip::BadName));
                continue;
            }
        };
        // We only ever write temp files: a folder or link of that shape is the user's.
        if is_temp_name(&e.name) && matches!(e.what, What::File | What::Unknown) {
            found.temps.push((rel, e.mtime));
            continue;
        }
        // Links before our own names: a `.sync-trash` that is a link would take the trash
        // elsewhere, and the stores must know.
        if e.what == What::Link {
            if !is_internal(&rel) && !rules.excludes(&rel, false) {
                found
                    .skipped
                    .push(Skipped::new(dir, e.name.as_bytes(), Skip::Link));
            }
            found.links.push(rel);
            continue;
        }
        if is_internal(&rel) {
            continue;
        }
        if e.what == What::Other {
            if !rules.excludes(&rel, false) {
                found
                    .skipped
                    .push(Skipped::new(dir, e.name.as_bytes(), Skip::Special));
            }
            continue;
        }
        let Some(o) = judge_entry(&rel, &e, rules, found, stat) else {
            continue;
        };
        if o.kind == Kind::Dir {
            subdirs.push(rel.clone());
        }
        found.observed.push((rel, o));
    }
    subdirs
}

/// One entry of a listing that is neither ours nor a link: what it is, when it is kept.
fn judge_entry(
    rel: &RelPath,
    e: &Listed,
    rules: &Rules,
    found: &mut Found,
    stat: &mut dyn FnMut(&str) -> Stat,
) -> Option<Observed> {
    let mut seen = e.seen;
    // The kind decides folder-only patterns (`build/`): a listing that did not say is asked.
    let mut is_dir = e.what == What::Dir;
    if e.what == What::Unknown && seen.is_none() {
        match stat(&e.name) {
            Stat::Seen(o) => seen = Some(o),
            Stat::Gone => return None,
            Stat::Failed(why) => {
                found.unreadable.push((rel.clone(), why));
                return None;
            }
        }
    }
    if let Some(o) = seen {
        is_dir = o.kind == Kind::Dir;
    }
    if rel.depth() > MAX_DEPTH {
        tracing::debug!(path = %rel, "skipping: deeper than {MAX_DEPTH} levels");
        found.skipped.push(Skipped {
            path: rel.as_str().as_bytes().to_vec(),
            why: Skip::TooDeep,
        });
        found.too_deep.push(rel.clone());
        if is_dir {
            found.unwalked.push(rel.clone());
        }
        return None;
    }
    if rules.excludes(rel, is_dir) {
        if is_dir {
            found.unwalked.push(rel.clone());
        }
        return None;
    }
    match seen {
        Some(o) => Some(o),
        None => match stat(&e.name) {
            Stat::Seen(o) => Some(o),
            Stat::Gone => None,
            Stat::Failed(why) => {
                found.unreadable.push((rel.clone(), why));
                None
            }
        },
    }
}
