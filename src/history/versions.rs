//! Kept versions: what a trash entry's name says (which path, replaced or deleted when), and
//! which versions a restore puts back. Pure: the listing comes from a store, the steps go to
//! one.

use crate::index::MTime;
use crate::relpath::RelPath;
use crate::replica::layout::TRASH_DIR;
use std::collections::BTreeMap;

/// One file kept in the trash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Where it is, below the replica root (`.sync-trash/...`).
    pub slot: RelPath,
    /// The path it was replaced or deleted at.
    pub path: RelPath,
    /// When it went to the trash (Unix seconds, from its name).
    pub trashed: i64,
    /// The `-N` of its name: which of several kept in the same second came later.
    pub n: u32,
    pub size: u64,
    pub mtime: MTime,
    pub mode: Option<u32>,
}

/// A trash file as a store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashFile {
    pub slot: RelPath,
    pub size: u64,
    pub mtime: MTime,
    pub mode: Option<u32>,
}

/// `name~YYYYMMDD-HHMMSS[-N]` split into the name, the time and `N`.
fn split_stamped(component: &str) -> Option<(&str, i64, u32)> {
    let (name, tail) = component.rsplit_once('~')?;
    let stamp = tail.get(..15)?;
    let n = match &tail[15..] {
        "" => 0,
        rest => rest.strip_prefix('-')?.parse().ok().filter(|&n| n > 0)?,
    };
    let t = crate::time::parse_stamp(stamp)?;
    (!name.is_empty()).then_some((name, t, n))
}

impl Kept {
    /// What a trash file holds: the first stamped component of its path names the entry that
    /// went to the trash (a file, or a whole folder with this file inside). `None` for what
    /// is not below the trash or has no stamp.
    pub fn of(f: TrashFile) -> Option<Kept> {
        let mut parts = f.slot.components();
        if parts.next() != Some(TRASH_DIR) {
            return None;
        }
        let mut path = RelPath::root();
        let mut when = None;
        for c in parts {
            let name = match (when, split_stamped(c)) {
                (None, Some((name, t, n))) => {
                    when = Some((t, n));
                    name
                }
                _ => c,
            };
            path = path.join(name).ok()?;
        }
        let (trashed, n) = when?;
        Some(Kept {
            slot: f.slot,
            path,
            trashed,
            n,
            size: f.size,
            mtime: f.mtime,
            mode: f.mode,
        })
    }

    fn order(&self) -> (i64, u32) {
        (self.trashed, self.n)
    }
}

/// Every path's kept versions, newest first (version 1 is the newest).
pub type Versions = BTreeMap<RelPath, Vec<Kept>>;

pub fn group(files: impl IntoIterator<Item = TrashFile>) -> Versions {
    let mut out = Versions::new();
    for k in files.into_iter().filter_map(Kept::of) {
        out.entry(k.path.clone()).or_default().push(k);
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| b.order().cmp(&a.order()).then(b.slot.cmp(&a.slot)));
    }
    out
}

/// A live file as a restore needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub mtime: MTime,
    pub size: u64,
}

/// What a path held at a moment, from what this replica kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The kept version at this index (newest first).
    Kept(usize),
    /// The file there now.
    Current,
    /// Nothing, as far as this replica knows.
    Absent,
}

/// The version of a path as things stood when second `t` began: the first one replaced or
/// deleted at `t` or later was the one there, if it had been written before; with none, the
/// current file, if it had been written before.
pub fn version_at(kept: &[Kept], current: Option<Live>, t: i64) -> At {
    let first_after = kept
        .iter()
        .enumerate()
        .filter(|(_, k)| k.trashed >= t)
        .min_by_key(|(_, k)| k.order());
    match (first_after, current) {
        (Some((i, k)), _) if k.mtime.secs < t => At::Kept(i),
        (Some(_), _) => At::Absent,
        (None, Some(c)) if c.mtime.secs < t => At::Current,
        (None, _) => At::Absent,
    }
}

/// Which versions to put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The newest kept version (of each file below a folder: those not there now).
    Newest,
    /// The `N`th newest (1 = newest) of one file.
    Version(usize),
    /// As it was at this time (Unix seconds): every file below a folder too, and what did
    /// not exist then goes to the trash.
    At(i64),
}

/// One change a restore makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Copies the kept version to `to` (what is there goes to the trash first).
    Put { kept: Kept, to: RelPath },
    /// Moves the file at this path to the trash (it did not exist at the time asked).
    Trash(RelPath),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("no version of {0} is kept in the trash; `filesync trash` lists what is kept")]
    NothingKept(RelPath),
    #[error(
        "version {asked} of {path} is no longer kept ({kept} kept; older ones expired); \
         `filesync trash {path}` lists them"
    )]
    Expired {
        path: RelPath,
        asked: usize,
        kept: usize,
    },
    #[error(
        "no version of {path} from {at} is kept (the oldest kept was written {oldest}; \
         older ones expired)"
    )]
    ExpiredAt {
        path: RelPath,
        at: String,
        oldest: String,
    },
    #[error("--version picks one file's version; {0} is a folder: use --at TIME")]
    VersionOfFolder(RelPath),
    #[error("--as puts back one file; {0} is a folder: restore it in place, without --as")]
    AsOfFolder(RelPath),
    #[error(
        "{path} was at {at} as it is now, so nothing kept goes to {to}: copy {path} instead, \
         or leave out --as"
    )]
    AsOfCurrent {
        path: RelPath,
        at: String,
        to: RelPath,
    },
    #[error(
        "{path} was changed at {edited}, after this replica's last sync ({synced}); a restore \
         would put that edit in the trash: sync first, or pass --force"
    )]
    NewerEdit {
        path: RelPath,
        edited: String,
        synced: String,
    },
}

/// What a restore of `target` (a file or a folder) does; `to` is where it lands (`--as`),
/// `live` the files there now, `last_sync` when this replica last synced (an edit after it
/// is one the user has not seen elsewhere, and is refused unless `force`).
pub fn plan_restore(
    target: &RelPath,
    to: &RelPath,
    pick: Pick,
    kept: &Versions,
    live: &BTreeMap<RelPath, Live>,
    last_sync: Option<i64>,
    force: bool,
) -> Result<Vec<Step>, RestoreError> {
    let mut steps = match kept.get(target) {
        Some(versions) => one_file(target, to, pick, versions, live)?,
        None => folder(target, to, pick, kept, live)?,
    };
    steps.retain(|s| !unchanged(s, live));
    if !force {
        for s in &steps {
            let path = match s {
                Step::Put { to, .. } | Step::Trash(to) => to,
            };
            newer_than_seen(path, live, last_sync)?;
        }
    }
    Ok(steps)
}

/// A step that would put back what is already there (same size and mtime; a side that
/// shows whole seconds only, as SFTP does, is compared to the second).
fn unchanged(s: &Step, live: &BTreeMap<RelPath, Live>) -> bool {
    let same = |a: MTime, b: MTime| {
        a.secs == b.secs && (a.nanos == b.nanos || a.nanos == 0 || b.nanos == 0)
    };
    match s {
        Step::Put { kept, to } => live
            .get(to)
            .is_some_and(|l| l.size == kept.size && same(l.mtime, kept.mtime)),
        Step::Trash(_) => false,
    }
}

fn newer_than_seen(
    p: &RelPath,
    live: &BTreeMap<RelPath, Live>,
    last_sync: Option<i64>,
) -> Result<(), RestoreError> {
    match (live.get(p), last_sync) {
        (Some(l), Some(synced)) if l.mtime.secs > synced => Err(RestoreError::NewerEdit {
            path: p.clone(),
            edited: crate::time::readable(l.mtime.secs),
            synced: crate::time::readable(synced),
        }),
        _ => Ok(()),
    }
}

fn one_file(
    target: &RelPath,
    to: &RelPath,
    pick: Pick,
    versions: &[Kept],
    live: &BTreeMap<RelPath, Live>,
) -> Result<Vec<Step>, RestoreError> {
    let put = |k: &Kept| {
        vec![Step::Put {
            kept: k.clone(),
            to: to.clone(),
        }]
    };
    match pick {
        Pick::Newest => Ok(versions.first().map(put).unwrap_or_default()),
        Pick::Version(n) => match n.checked_sub(1).and_then(|i| versions.get(i)) {
            Some(k) => Ok(put(k)),
            None => Err(RestoreError::Expired {
                path: target.clone(),
                asked: n,
                kept: versions.len(),
            }),
        },
        Pick::At(t) => match version_at(versions, live.get(target).copied(), t) {
            At::Kept(i) => Ok(put(&versions[i])),
            At::Current if to != target => Err(RestoreError::AsOfCurrent {
                path: target.clone(),
                at: crate::time::readable(t),
                to: to.clone(),
            }),
            At::Current => Ok(Vec::new()),
            At::Absent => {
                expired_at(target, t, versions)?;
                let there = to == target && live.contains_key(to);
                Ok(if there {
                    vec![Step::Trash(to.clone())]
                } else {
                    Vec::new()
                })
            }
        },
    }
}

/// `Absent` at `t` while versions written later are kept: older ones may have expired.
fn expired_at(target: &RelPath, t: i64, versions: &[Kept]) -> Result<(), RestoreError> {
    let oldest = versions.iter().map(|k| k.mtime.secs).min();
    match oldest {
        Some(o) if o >= t && versions.iter().all(|k| k.trashed >= t) => {
            Err(RestoreError::ExpiredAt {
                path: target.clone(),
                at: crate::time::readable(t),
                oldest: crate::time::readable(o),
            })
        }
        _ => Ok(()),
    }
}

/// Every file below a folder: the newest version of each one not there now, or each as it
/// was at a time.
fn folder(
    target: &RelPath,
    to: &RelPath,
    pick: Pick,
    kept: &Versions,
    live: &BTreeMap<RelPath, Live>,
) -> Result<Vec<Step>, RestoreError> {
    if let Pick::Version(_) = pick {
        return match kept.keys().any(|p| p.starts_with(target) && p != target) {
            true => Err(RestoreError::VersionOfFolder(target.clone())),
            false => Err(RestoreError::NothingKept(target.clone())),
        };
    }
    let below = |p: &RelPath| p.starts_with(target) && p != target;
    let mut paths: Vec<&RelPath> = kept.keys().filter(|p| below(p)).collect();
    if paths.is_empty() {
        return Err(RestoreError::NothingKept(target.clone()));
    }
    // Below a folder `--as` would need the files unchanged since (or live now) copied too.
    if to != target {
        return Err(RestoreError::AsOfFolder(target.clone()));
    }
    if let Pick::At(_) = pick {
        paths.extend(live.keys().filter(|p| below(p) && !kept.contains_key(*p)));
        paths.sort();
    }
    let mut steps = Vec::new();
    for p in paths {
        let versions = kept.get(p).map(Vec::as_slice).unwrap_or_default();
        let dest = p.clone();
        let here = live.get(p).copied();
        match pick {
            Pick::At(t) => match version_at(versions, here, t) {
                At::Kept(i) => steps.push(Step::Put {
                    kept: versions[i].clone(),
                    to: dest,
                }),
                At::Current => {}
                At::Absent if here.is_some() => steps.push(Step::Trash(dest)),
                At::Absent => {}
            },
            _ if live.contains_key(&dest) => {}
            _ => steps.extend(versions.first().map(|k| Step::Put {
                kept: k.clone(),
                to: dest,
            })),
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
