//! Writing one file: a temp beside it, filled and made durable, put in place with what it
//! replaces kept in the remote trash (`replica::protocol` decides how).

use super::wire::{is_status, sftp_time};
use super::{Sftp, SftpStore, xfer};
use crate::index::{Kind, MTime};
use crate::relpath::RelPath;
use crate::replica::layout::temp_name;
use crate::replica::protocol::{Install, Keep, There, TrashSlots, install_plan};
use crate::scan::Observed;
use crate::store::{Put, Reader, StoreError};
use russh_sftp::protocol::StatusCode;
use std::io;

impl Sftp {
    /// A free name for `p` in the trash (`.sync-trash/<p>~<stamp>`), its folder created.
    pub(super) async fn trash_slot(&self, p: &RelPath) -> Result<String, StoreError> {
        let slots = TrashSlots::new(p, crate::time::now_secs());
        let dir = self.path(&slots.dir);
        self.mkdir_p(&slots.dir, None).await?;
        for name in slots {
            let slot = format!("{dir}/{name}");
            match self.lstat(&slot).await {
                Ok(None) => return Ok(slot),
                Ok(Some(_)) => continue,
                Err(e) => return Err(self.err("cannot stat", &slot, e)),
            }
        }
        Err(StoreError::io(
            format!("no free name for {p} in the trash {}", self.place()),
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }

    pub(super) async fn trash(&self, p: &RelPath) -> Result<(), StoreError> {
        let path = self.path(p);
        match self.lstat(&path).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => {}
            Err(e) => return Err(self.err("cannot stat", &path, e)),
        }
        let slot = self.trash_slot(p).await?;
        match self.raw().rename(path.as_str(), slot.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
            Err(e) => Err(self.err("cannot move to the trash", &path, e)),
        }
    }

    /// A new temp beside `p`, remembered until it is put in place (`made`).
    pub(super) fn temp_for(&self, p: &RelPath) -> String {
        let name = temp_name(p.name());
        let tmp = match p.parent() {
            Some(parent) if !parent.is_root() => format!("{}/{name}", self.path(&parent)),
            _ => self.join(&name),
        };
        self.made.add(&tmp);
        tmp
    }
}

impl SftpStore {
    pub(super) async fn write_async(
        &self,
        p: &RelPath,
        data: Reader,
        put: Put,
    ) -> Result<Observed, StoreError> {
        let Put {
            mtime,
            expect,
            fresh,
            size,
            mode,
        } = put;
        let s = &self.s;
        let tmp = s.temp_for(p);
        let res = async {
            let handle = match xfer::create(s, &tmp, mode).await {
                Err(e) if is_status(&e, StatusCode::NoSuchFile) && p.parent().is_some() => {
                    // The folder is missing (a first upload into it): make it, then retry once.
                    s.mkdir_p(&p.parent().unwrap_or_else(RelPath::root), None)
                        .await?;
                    xfer::create(s, &tmp, mode).await
                }
                r => r,
            }
            .map_err(|e| s.err("cannot create a temp file", &tmp, e))?;
            let (size, shown) = xfer::upload(
                s,
                &tmp,
                handle,
                data,
                Some(mtime),
                expect.map(|h| (h, p)),
                Some(size),
            )
            .await?;
            self.install(&tmp, p, fresh).await?;
            s.made.done(&tmp);
            Ok(Observed {
                kind: Kind::File,
                size,
                mtime: MTime::new(i64::from(sftp_time(mtime)), 0),
                mode: shown.or(mode),
            })
        }
        .await;
        if res.is_err() {
            let _ = s.raw().remove(tmp.as_str()).await;
        }
        res
    }

    /// Puts the finished temp file at `p`, keeping whatever was there in the trash (see
    /// `protocol::install_plan`).
    pub(super) async fn install(
        &self,
        tmp: &str,
        p: &RelPath,
        fresh: bool,
    ) -> Result<(), StoreError> {
        let s = &self.s;
        let path = s.path(p);
        // The usual case of a replacing install (a file there, kept by a link) tried before
        // looking, in the first trash slot: one round trip instead of three.
        if !fresh && s.hardlink {
            let mut slots = TrashSlots::new(p, crate::time::now_secs());
            let dir = s.path(&slots.dir);
            if let Some(name) = slots.next()
                && s.hardlink(&path, &format!("{dir}/{name}")).await.is_ok()
            {
                return s
                    .rename_over(tmp, &path)
                    .await
                    .map_err(|e| s.err("cannot put in place", &path, e));
            }
        }
        let there = match if fresh {
            Ok(None)
        } else {
            s.lstat(&path).await
        } {
            Ok(None) => There::Nothing,
            Ok(Some(a)) if a.file_type().is_file() => There::File,
            Ok(Some(_)) => There::Other,
            Err(e) => return Err(s.err("cannot stat", &path, e)),
        };
        let keep = match install_plan(fresh, there, s.hardlink) {
            Install::Fresh => return self.install_fresh(tmp, p).await,
            Install::Replace(keep) => keep,
        };
        if keep != Keep::Nothing {
            let slot = s.trash_slot(p).await?;
            let linked = keep == Keep::LinkElseMove && s.hardlink(&path, &slot).await.is_ok();
            if !linked {
                s.raw()
                    .rename(path.as_str(), slot.as_str())
                    .await
                    .map_err(|e| s.err("cannot move to the trash", &path, e))?;
            }
        }
        s.rename_over(tmp, &path)
            .await
            .map_err(|e| s.err("cannot put in place", &path, e))
    }

    /// A fresh install: SFTP's plain rename never replaces (OpenSSH links, then unlinks; ours
    /// uses RENAME_NOREPLACE), so a file that arrived since the scan is left alone.
    async fn install_fresh(&self, tmp: &str, p: &RelPath) -> Result<(), StoreError> {
        let s = &self.s;
        let path = s.path(p);
        match s.raw().rename(tmp, path.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) => match s.lstat(&path).await {
                Ok(Some(_)) => Err(StoreError::Appeared {
                    path: p.clone(),
                    place: s.place(),
                }),
                _ => Err(s.err("cannot put in place", &path, e)),
            },
        }
    }
}
