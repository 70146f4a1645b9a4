//! The link guard: nothing is written through a symlink on the remote, which the server would
//! follow wherever it points.

use super::SftpStore;
use crate::relpath::RelPath;
use crate::replica::layout::TRASH_DIR;
use crate::store::StoreError;
use std::collections::HashSet;
use std::io;

/// Links on the remote (the server follows them, wherever they point; filesync never does).
#[derive(Default)]
pub(super) struct Links {
    /// Symlinks the walk met.
    pub(super) links: HashSet<RelPath>,
    /// Folders it did not list (ignored, too deep, unreadable).
    pub(super) unwalked: HashSet<RelPath>,
    /// Folders below those that a write has since found to be real folders.
    pub(super) checked: HashSet<RelPath>,
}

impl SftpStore {
    pub(super) fn through_link(&self, link: &RelPath) -> StoreError {
        StoreError::ThroughLink {
            link: link.clone(),
            place: self.s.place(),
        }
    }

    /// Refuses `p`, and anything a replaced or deleted file would go through on its way to
    /// the trash, when a link is in the way (see `not_through_link`).
    pub(super) async fn not_through_link_or_trash(&self, p: &RelPath) -> Result<(), StoreError> {
        if let Ok(trash) = RelPath::parse(TRASH_DIR)
            && self.st.links.lock().is_ok_and(|l| l.links.contains(&trash))
        {
            return Err(self.through_link(&trash));
        }
        self.not_through_link(p).await
    }

    /// Refuses `p` when it, or a folder above it, is a symlink on the remote: the server would
    /// follow it (OpenSSH's does, wherever it points), and the walk never does. The walk's
    /// links answer for what it listed; below a folder it did not list (ignored on that side,
    /// say) each folder on the way is looked at once.
    pub(super) async fn not_through_link(&self, p: &RelPath) -> Result<(), StoreError> {
        let poisoned = || {
            StoreError::io(
                "the store's record of remote links",
                io::Error::other("poisoned by a panic"),
            )
        };
        let unknown: Vec<RelPath> = {
            let l = self.st.links.lock().map_err(|_| poisoned())?;
            if let Some(link) = std::iter::once(p.clone())
                .chain(p.ancestors())
                .find(|a| l.links.contains(a))
            {
                return Err(self.through_link(&link));
            }
            if l.unwalked.is_empty() {
                return Ok(());
            }
            // Folders above `p`, outermost first; those below the outermost unlisted one.
            let mut above: Vec<RelPath> = p.ancestors().collect();
            above.reverse();
            match above.iter().position(|a| l.unwalked.contains(a)) {
                None => return Ok(()),
                Some(i) => above
                    .split_off(i + 1)
                    .into_iter()
                    .filter(|a| !l.checked.contains(a))
                    .collect(),
            }
        };
        for a in unknown {
            let path = self.s.path(&a);
            match self.s.lstat(&path).await {
                Ok(Some(attrs)) if attrs.file_type().is_symlink() => {
                    if let Ok(mut l) = self.st.links.lock() {
                        l.links.insert(a.clone());
                    }
                    return Err(self.through_link(&a));
                }
                Ok(Some(attrs)) if attrs.file_type().is_dir() => {
                    self.st
                        .links
                        .lock()
                        .map_err(|_| poisoned())?
                        .checked
                        .insert(a);
                }
                // Missing (made by this sync) or not a folder (the operation fails on its own).
                Ok(_) => break,
                Err(e) => return Err(self.s.err("cannot stat", &path, e)),
            }
        }
        Ok(())
    }
}
