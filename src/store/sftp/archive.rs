//! `Archive` over SFTP: the remote trash listed and pruned, our own small files at the remote
//! root read and replaced whole, the remote disk's size (`statvfs@openssh.com`). Plain SFTP
//! requests, so any server (ours, OpenSSH) holds them.

use super::{SftpStore, is_status, observed_of, put_str, walk, xfer};
use crate::history::versions::TrashFile;
use crate::index::Kind;
use crate::proto::ext;
use crate::relpath::RelPath;
use crate::replica::layout::{TRASH_DIR, temp_name};
use crate::store::StoreError;
use crate::store::archive::Archive;
use russh_sftp::protocol::{Packet, StatusCode};

impl SftpStore {
    async fn list_trash_async(&self) -> Result<Vec<TrashFile>, StoreError> {
        let s = &self.s;
        let top = RelPath::root().join_unchecked(TRASH_DIR);
        // Not through a link: only the trash's own files are kept versions.
        match s.lstat(&s.path(&top)).await {
            Ok(Some(a)) if a.file_type().is_dir() => {}
            Ok(_) => return Ok(Vec::new()),
            Err(e) => return Err(s.err("cannot stat", &s.path(&top), e)),
        }
        let mut out = Vec::new();
        let mut folders = vec![top];
        while let Some(d) = folders.pop() {
            let path = s.path(&d);
            let files = walk::list(s, &path)
                .await
                .map_err(|e| s.err("cannot list", &path, e))?;
            for f in files {
                if f.filename == "." || f.filename == ".." {
                    continue;
                }
                let Ok(p) = d.join(&f.filename) else { continue };
                if f.attrs.file_type().is_symlink() {
                    continue;
                }
                match observed_of(&f.attrs) {
                    Some(o) if o.kind == Kind::Dir => folders.push(p),
                    Some(o) => out.push(TrashFile {
                        slot: p,
                        size: o.size,
                        mtime: o.mtime,
                        mode: o.mode,
                    }),
                    None => {}
                }
            }
        }
        Ok(out)
    }

    async fn remove_kept_async(&self, slots: Vec<RelPath>) -> Result<(), StoreError> {
        let s = &self.s;
        let top = RelPath::root().join_unchecked(TRASH_DIR);
        let mut folders = std::collections::BTreeSet::new();
        for slot in slots.iter().filter(|p| p.starts_with(&top) && **p != top) {
            let path = s.path(slot);
            match s.raw().remove(path.as_str()).await {
                Ok(_) => {}
                Err(e) if is_status(&e, StatusCode::NoSuchFile) => {}
                Err(e) => return Err(s.err("cannot remove", &path, e)),
            }
            folders.extend(
                slot.ancestors()
                    .filter(|a| a.starts_with(&top) && *a != top),
            );
        }
        // Deepest first; a folder that still holds something stays.
        for d in folders.iter().rev() {
            let _ = s.raw().rmdir(s.path(d).as_str()).await;
        }
        Ok(())
    }

    /// At most `limit` bytes: the reads stop there, so a huge file at our name costs no more.
    async fn read_own_async(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let s = &self.s;
        let path = s.join(name);
        let mut r = match xfer::open_read(s, &path, Some(limit as u64)).await {
            Ok(r) => r,
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(s.err("cannot read", &path, e)),
        };
        let mut out = Vec::new();
        while let Some(chunk) = r.next_chunk().await {
            out.extend_from_slice(&chunk.map_err(|e| s.err("cannot read", &path, e))?);
        }
        out.truncate(limit);
        Ok(Some(out))
    }

    async fn replace_own_async(&self, name: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let s = &self.s;
        let path = s.join(name);
        let tmp = s.join(&temp_name(name));
        s.write_temp(&tmp, bytes).await?;
        if let Err(e) = s.rename_over(&tmp, &path).await {
            let _ = s.raw().remove(tmp.as_str()).await;
            return Err(s.err("cannot replace", &path, e));
        }
        Ok(())
    }

    /// `statvfs@openssh.com` of the root: blocks times fragment size.
    async fn disk_size_async(&self) -> Option<u64> {
        let mut data = Vec::new();
        put_str(&mut data, &self.s.root);
        let Ok(Packet::ExtendedReply(r)) = self.s.raw().extended(ext::STATVFS, data).await else {
            return None;
        };
        let word = |i: usize| -> Option<u64> {
            let b = r.data.get(i * 8..i * 8 + 8)?;
            Some(u64::from_be_bytes(b.try_into().ok()?))
        };
        // f_bsize, f_frsize, f_blocks, …
        Some(word(2)?.saturating_mul(word(1)?))
    }
}

impl Archive for SftpStore {
    async fn list_trash(&self) -> Result<Vec<TrashFile>, StoreError> {
        self.guard(self.list_trash_async()).await
    }

    async fn remove_kept(&self, slots: Vec<RelPath>) -> Result<(), StoreError> {
        self.guard(self.remove_kept_async(slots)).await
    }

    async fn read_own(
        &self,
        name: &'static str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(self.read_own_async(name, limit)).await
    }

    async fn replace_own(&self, name: &'static str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.guard(self.replace_own_async(name, bytes)).await
    }

    async fn disk_size(&self) -> Option<u64> {
        self.guard(async { Ok(self.disk_size_async().await) })
            .await
            .ok()
            .flatten()
    }
}
