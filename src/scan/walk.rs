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
    /// Paths refused for being deeper than `MAX_DEPTH`: the folders on the way to them hold
    /// nothing else are not synced either (see `Walked::new`).
    pub too_deep: Vec<RelPath>,
}

impl Found {
    pub fn append(&mut self, mut other: Found) {
        self.observed.append(&mut other.observed);
        self.unreadable.append(&mut other.unreadable);
        self.temps.append(&mut other.temps);
        self.links.append(&mut other.links);
        self.unwalked.append(&mut other.unwalked);
        self.ignore_files.append(&mut other.ignore_files);
        self.too_deep.append(&mut other.too_deep);
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
                tracing::warn!("skipping unsyncable name {dir}/{}: {err}", e.name);
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
            found.links.push(rel);
            continue;
        }
        if is_internal(&rel) || e.what == What::Other {
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
        tracing::warn!(path = %rel, "skipping: deeper than {MAX_DEPTH} levels");
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
