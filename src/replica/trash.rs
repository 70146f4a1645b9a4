//! The trash and putting files in place: where a replaced or deleted entry goes
//! (`.sync-trash/<path>~<stamp>`, never clobbering one there), how a finished temp takes a
//! path (what was there kept in the trash; a fresh path never replaced), and trash expiry:
//! the decisions of `protocol` run on this machine's file system.

use super::layout::TRASH_DIR;
use super::protocol::{Install, Keep, There, TrashSlots, install_plan};
use super::root::{FileKind, Root, RootError, RootResult, rename_at, stat_at};
use crate::relpath::RelPath;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Why a temp did not go in.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Something arrived at a path the index saw empty: left as it is.
    #[error("something appeared there since the scan")]
    Appeared,
    /// What was there could not be kept in the trash: nothing was replaced.
    #[error("cannot keep the old version in the trash: {0}")]
    Trash(#[source] RootError),
    #[error(transparent)]
    Root(#[from] RootError),
}

impl Root {
    /// A free name for `p` in the trash, its folder made (unless `made` says it was already).
    /// The trash itself is reached like any folder: never through a link.
    pub fn trash_slot(
        &self,
        p: &RelPath,
        now: i64,
        made: &mut HashSet<RelPath>,
    ) -> RootResult<RelPath> {
        let slots = TrashSlots::new(p, now);
        let dir = slots.dir.clone();
        let fd = if made.contains(&dir) {
            self.dir(&dir, false)?
        } else {
            let fd = self.dir(&dir, true)?;
            made.insert(dir.clone());
            fd
        };
        for name in slots {
            match stat_at(&fd, &name) {
                Err(e) if e.is_not_found() => return Ok(dir.join_unchecked(&name)),
                Err(e) => return Err(e),
                Ok(_) => continue,
            }
        }
        Err(std::io::Error::other(format!("no free name in the trash folder {dir}")).into())
    }

    /// Moves whatever is at `p` (a file, a whole folder) into the trash; `false` when nothing
    /// was there.
    pub fn to_trash(&self, p: &RelPath, now: i64) -> RootResult<bool> {
        if self.lstat_opt(p)?.is_none() {
            return Ok(false);
        }
        let slot = self.trash_slot(p, now, &mut HashSet::new())?;
        match self.rename(p, &slot, false) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Puts the finished temp `tmp` at `p` (same folder), keeping whatever was there in the
    /// trash; with `fresh`, only if nothing is there (RENAME_NOREPLACE: what arrived since the
    /// scan is left alone). A file that is replaced keeps its old version through a hard link
    /// while the rename replaces it atomically; where links are not possible, or something
    /// other than a file is in the way, it moves to the trash first.
    pub fn install(
        &self,
        tmp: &RelPath,
        p: &RelPath,
        fresh: bool,
        now: i64,
        made: &mut HashSet<RelPath>,
    ) -> Result<(), InstallError> {
        let (dir, name) = self.parent(p)?;
        let tmp_name = tmp.name();
        // A fresh install does not look: its rename never replaces.
        let there = match if fresh { None } else { self.lstat_opt(p)? } {
            None => There::Nothing,
            Some(st) if st.kind == FileKind::File => There::File,
            Some(_) => There::Other,
        };
        let keep = match install_plan(fresh, there, true) {
            Install::Fresh => {
                return match rename_at(&dir, tmp_name, &dir, name, false) {
                    Err(e) if e.errno() == Some(libc::EEXIST) => Err(InstallError::Appeared),
                    r => r.map_err(InstallError::from),
                };
            }
            Install::Replace(keep) => keep,
        };
        if keep != Keep::Nothing {
            let slot = self.trash_slot(p, now, made).map_err(InstallError::Trash)?;
            if keep == Keep::Move || self.hardlink(p, &slot).is_err() {
                self.rename(p, &slot, false).map_err(InstallError::Trash)?;
            }
        }
        Ok(rename_at(&dir, tmp_name, &dir, name, true)?)
    }

    /// Removes trash entries whose last change (the move into the trash counts) is older
    /// than `max_age`, and the folders that leaves empty. Best effort: what cannot be read or
    /// removed stays. A trash that is a link is not walked: expiry deletes.
    pub fn expire_trash(&self, max_age: Duration) {
        let trash = RelPath::root().join_unchecked(TRASH_DIR);
        let Ok(Some(st)) = self.lstat_opt(&trash) else {
            return;
        };
        if st.kind != FileKind::Dir {
            return;
        }
        let mut folders = vec![trash.clone()];
        let mut seen = Vec::new();
        while let Some(d) = folders.pop() {
            seen.push(d.clone());
            for (name, kind, changed) in self.list_changed(&d) {
                let Ok(p) = d.join(&name) else { continue };
                if kind == FileKind::Dir {
                    folders.push(p);
                } else if changed.elapsed().unwrap_or_default() > max_age {
                    let _ = self.remove(&p);
                }
            }
        }
        // Deepest first; rmdir fails harmlessly on folders that still hold something.
        for d in seen.into_iter().skip(1).rev() {
            let _ = self.rmdir(&d);
        }
    }

    /// The entries of folder `d`: name, type, and when each last changed (ctime).
    fn list_changed(&self, d: &RelPath) -> Vec<(String, FileKind, SystemTime)> {
        let Ok((fd, entries)) = self.list(d) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries {
            let Ok(name) = String::from_utf8(e.name) else {
                continue;
            };
            if let Ok(st) = stat_at(&fd, &name) {
                out.push((name, st.kind, st.changed.to_system()));
            }
        }
        out
    }
}
