//! Unix (Linux, macOS): every path is resolved from the root's descriptor (by the kernel's
//! `openat2` on Linux, by the component walk below elsewhere), and every change is an `*at`
//! call on the descriptor of the resolved parent, so no string path, and no symlink swapped in
//! mid-call, reaches outside the root. Where `openat2` is missing (Linux before 5.6, some
//! emulators and seccomp filters) the same rules are applied one component at a time, never
//! letting the kernel follow a link.

use super::{DirEntry, FileKind, Follow, Meta, NameRules, RootError, RootResult, os, time_of};
use crate::relpath::RelPath;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A folder held open: what `*at` calls start from.
pub type Folder = OwnedFd;

/// An exclusive `flock` on a folder, held until dropped.
#[must_use]
pub struct FolderLock(#[allow(dead_code)] OwnedFd);

/// Opens a handle that names a file or folder (`O_PATH` where it exists).
pub const PATH: OFlags = os::PATH;

/// Permission bits as the OS's `mode_t` (16 bits on macOS, 32 on Linux).
pub fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as rustix::fs::RawMode)
}

/// The mode bits (type and permissions) of a stat, whatever width the OS gives them.
#[allow(clippy::unnecessary_cast)]
pub fn st_mode(st: &rustix::fs::Stat) -> u32 {
    st.st_mode as u32
}

/// An OS error number as POSIX names it: here it is one already.
pub(super) fn os_errno(e: i32) -> i32 {
    e
}

impl From<Errno> for RootError {
    fn from(e: Errno) -> Self {
        RootError::Io(e.into())
    }
}

impl Meta {
    #[allow(clippy::unnecessary_cast)] // field widths differ by OS and architecture
    pub fn from_stat(st: &rustix::fs::Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Link,
            _ => FileKind::Other,
        };
        Meta {
            kind,
            size: st.st_size as u64,
            mtime: time_of(st.st_mtime as i64, st.st_mtime_nsec as i64),
            changed: time_of(st.st_ctime as i64, st.st_ctime_nsec as i64),
            mode: Some(crate::index::mode::perm_bits(st_mode(st))),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            raw: *st,
        }
    }
}

/// The root folder, held open so later renames of its path do not move the jail.
pub struct Root {
    pub(super) fd: OwnedFd,
    path: PathBuf,
    pub(super) follow: Follow,
    /// No openat2 here: resolve component by component.
    walk: bool,
    /// How its file system compares names, probed once (`probe_names`).
    pub(super) names: std::sync::OnceLock<NameRules>,
}

/// Symlinks followed while resolving one path before giving up, as the kernel's limit.
const MAX_LINKS: u32 = 40;

pub(super) fn is_link(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Symlink
}

impl Root {
    /// Opens the folder at `path` (it may itself be a symlink the user chose; nothing below
    /// it is followed except as `follow` allows).
    pub fn open(path: &Path, follow: Follow) -> std::io::Result<Root> {
        Self::open_with(path, follow, false)
    }

    /// `force_walk` resolves without openat2 even where it exists (tests of the fallback).
    pub fn open_with(path: &Path, follow: Follow, force_walk: bool) -> std::io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut root = Root {
            fd,
            path: path.to_path_buf(),
            follow,
            walk: force_walk || !os::KERNEL_RESOLVES,
            names: std::sync::OnceLock::new(),
        };
        // Find out now, not on the first call, whether the kernel resolves for us.
        if !root.walk {
            match root.openat2(&RelPath::root(), PATH | OFlags::DIRECTORY, Mode::empty()) {
                Err(Errno::NOSYS) | Err(Errno::PERM) => {
                    tracing::warn!(
                        "openat2 is unavailable (Linux before 5.6, an emulator, or a seccomp \
                         filter such as systemd's RestrictSUIDSGID=yes): paths are confined one \
                         component at a time instead, which a local user who can move folders \
                         out of the root while a call runs could race"
                    );
                    root.walk = true;
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        Ok(root)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn follow(&self) -> Follow {
        self.follow
    }

    fn openat2(&self, p: &RelPath, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        os::openat2(self, p, flags, mode)
    }

    /// Opens `p` with `flags` (and `mode`, when it creates) under this root's policy.
    pub fn resolve(&self, p: &RelPath, flags: OFlags, mode: Mode) -> RootResult<OwnedFd> {
        let r = if self.walk {
            self.resolve_walk(p, flags, mode)
        } else {
            self.openat2(p, flags, mode)
        };
        r.map_err(|e| self.explain(p, e))
    }

    /// For `Follow::Never`, says which folder on the way was a link or a file, where the
    /// kernel only says ELOOP or ENOTDIR.
    fn explain(&self, p: &RelPath, e: Errno) -> RootError {
        if self.follow == Follow::InRoot || !matches!(e, Errno::LOOP | Errno::NOTDIR) {
            return e.into();
        }
        let mut at = RelPath::root();
        let mut dir = match self.dup() {
            Ok(d) => d,
            Err(_) => return e.into(),
        };
        for c in p.components() {
            at = at.join_unchecked(c);
            let Ok(st) = rustix::fs::statat(&dir, c, AtFlags::SYMLINK_NOFOLLOW) else {
                break;
            };
            if is_link(&st) {
                return RootError::ThroughLink(at);
            }
            if at != *p && FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return RootError::NotAFolder(at);
            }
            match rustix::fs::openat(&dir, c, dir_flags(), Mode::empty()) {
                Ok(next) => dir = next,
                Err(_) => break,
            }
        }
        e.into()
    }

    /// A second descriptor of the root folder itself.
    pub(crate) fn dup(&self) -> Result<OwnedFd, Errno> {
        rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())
    }

    /// `openat2` by hand: every component is opened with `O_NOFOLLOW` from the folder before
    /// it. Under `Follow::InRoot` a symlink is read and its target resolved the same way (an
    /// absolute target from the root, `..` never above the root); under `Follow::Never` it is
    /// an error. The kernel never follows a link and never walks `..` itself.
    fn resolve_walk(&self, p: &RelPath, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        // Folders entered below the root; the last one is where the next name is looked up.
        let mut dirs: Vec<OwnedFd> = Vec::new();
        let mut todo: std::collections::VecDeque<String> =
            p.components().map(str::to_string).collect();
        let mut links = 0u32;
        let follow_last = !flags.contains(OFlags::NOFOLLOW);
        while let Some(name) = todo.pop_front() {
            match name.as_str() {
                "" | "." => continue,
                ".." => {
                    dirs.pop();
                    continue;
                }
                _ => {}
            }
            let here = dirs.last().unwrap_or(&self.fd);
            let last = todo.is_empty();
            let opened = if last {
                rustix::fs::openat(
                    here,
                    name.as_str(),
                    flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    mode,
                )
            } else {
                let through = PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                rustix::fs::openat(here, name.as_str(), through, Mode::empty())
            };
            // A symlink shows up as ELOOP/ENOTDIR, or (O_PATH|O_NOFOLLOW) as the link itself.
            let link = match &opened {
                Ok(fd) => flags.contains(PATH) && last && is_link(&rustix::fs::fstat(fd)?),
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    rustix::fs::statat(here, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| is_link(&st))
                }
                Err(_) => false,
            };
            if !link || (last && !follow_last) {
                let fd = opened?;
                if last {
                    return Ok(fd);
                }
                dirs.push(fd);
                continue;
            }
            links += 1;
            if self.follow == Follow::Never || links > MAX_LINKS {
                return Err(Errno::LOOP);
            }
            let target = rustix::fs::readlinkat(here, name.as_str(), Vec::new())?;
            let target = target.to_str().map_err(|_| Errno::NOENT)?;
            if target.starts_with('/') {
                dirs.clear();
            }
            for part in target.split('/').rev() {
                todo.push_front(part.to_string());
            }
        }
        // The path ended at a folder already entered (or the root).
        let here = dirs.last().unwrap_or(&self.fd);
        rustix::fs::openat(here, ".", flags | OFlags::CLOEXEC, mode)
    }

    /// The folder holding `p` (resolved in the root) and `p`'s own name, for `*at` calls that
    /// must act on the entry itself, never on what a symlink there points to.
    pub fn parent<'p>(&self, p: &'p RelPath) -> RootResult<(OwnedFd, &'p str)> {
        self.parent_dir(p, false)
    }

    /// The folder `d` (its descriptor), every folder on the way made when `create`.
    pub fn dir(&self, d: &RelPath, create: bool) -> RootResult<OwnedFd> {
        let flags = PATH | OFlags::DIRECTORY;
        match self.resolve(d, flags, Mode::empty()) {
            Err(e) if create && e.is_not_found() => {}
            r => return r,
        }
        let mut fd = self.dup()?;
        let mut at = RelPath::root();
        for c in d.components() {
            at = at.join_unchecked(c);
            match rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            fd = self.resolve(&at, flags, Mode::empty())?;
        }
        Ok(fd)
    }

    /// The folder holding `p`, made (with every folder on the way) when `create`.
    pub fn parent_dir<'p>(&self, p: &'p RelPath, create: bool) -> RootResult<(OwnedFd, &'p str)> {
        let parent = p.parent().ok_or(RootError::Denied(
            "the root itself cannot be changed this way",
        ))?;
        Ok((self.dir(&parent, create)?, p.name()))
    }

    pub fn stat(&self, p: &RelPath) -> RootResult<Meta> {
        let fd = self.resolve(p, PATH, Mode::empty())?;
        Ok(Meta::from_stat(&rustix::fs::fstat(&fd)?))
    }

    /// What stands at `p` itself (a link as a link).
    pub fn lstat(&self, p: &RelPath) -> RootResult<Meta> {
        if p.is_root() {
            return Ok(Meta::from_stat(&rustix::fs::fstat(&self.fd)?));
        }
        let (dir, name) = self.parent(p)?;
        stat_at(&dir, name)
    }

    /// `lstat`, with "nothing there" (or a folder on the way gone) as `None`.
    pub fn lstat_opt(&self, p: &RelPath) -> RootResult<Option<Meta>> {
        match self.lstat(p) {
            Ok(st) => Ok(Some(st)),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A regular file opened for reading; a symlink at `p` is not followed, nor a FIFO waited on.
    pub fn open_regular(&self, p: &RelPath) -> RootResult<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let file = File::from(self.resolve(p, flags, Mode::empty())?);
        if !file.metadata()?.is_file() {
            return Err(RootError::Denied("not a regular file"));
        }
        Ok(file)
    }

    /// A new file `name` in the folder `dir` (never one that is there), for writing.
    pub fn create_in(dir: &OwnedFd, name: &str) -> RootResult<File> {
        Self::create_in_with(dir, name, None)
    }

    /// `create_in` with exactly the permission bits `mode` (`None`: the umask's default). The
    /// file is born with `mode` as the umask narrows it and set to `mode` before anything is
    /// written: it is never readable by more than `mode` allows.
    pub fn create_in_with(dir: &OwnedFd, name: &str, mode: Option<u32>) -> RootResult<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let bits = mode.map_or(0o666, crate::index::mode::perm_bits);
        let f = File::from(rustix::fs::openat(dir, name, flags, self::mode(bits))?);
        if mode.is_some() {
            match rustix::fs::fchmod(&f, self::mode(bits)) {
                // A file system without modes (FAT): the file shows its own, which the
                // caller reads back.
                Err(e) if cannot_hold_modes(e) => {}
                r => r?,
            }
        }
        Ok(f)
    }

    /// Sets the permission bits of what stands at `p` itself; a link is never followed.
    pub fn set_mode(&self, p: &RelPath, mode: u32) -> RootResult<()> {
        os::set_mode(self, p, self::mode(crate::index::mode::perm_bits(mode)))
    }

    /// The folder `p`, opened for listing.
    pub fn open_dir(&self, p: &RelPath) -> RootResult<(OwnedFd, rustix::fs::Dir)> {
        let fd = self.resolve(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let dir = rustix::fs::Dir::read_from(&fd)?;
        Ok((fd, dir))
    }

    pub fn mkdir(&self, p: &RelPath, mode: Mode) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::mkdirat(&dir, name, mode)?)
    }

    pub fn rmdir(&self, p: &RelPath) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?)
    }

    pub fn remove(&self, p: &RelPath) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?)
    }

    /// Renames `from` to `to`, replacing what is there only when `replace`.
    pub fn rename(&self, from: &RelPath, to: &RelPath, replace: bool) -> RootResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        match rename_at(&fdir, fname, &tdir, tname, replace) {
            // On a disk that folds names, `to` spelled otherwise is `from` itself (two files
            // cannot fold alike in one folder): a rename that only changes the spelling,
            // which the kernel may refuse as taken. It goes through a temp name.
            Err(e) if e.errno() == Some(libc::EEXIST) && self.spells_alike(from, to) => {
                let tmp = crate::replica::layout::temp_name(tname);
                rename_at(&fdir, fname, &tdir, &tmp, false)?;
                rename_at(&tdir, &tmp, &tdir, tname, false).inspect_err(|_| {
                    let _ = rename_at(&tdir, &tmp, &fdir, fname, false);
                })
            }
            r => r,
        }
    }

    pub fn hardlink(&self, from: &RelPath, to: &RelPath) -> RootResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        Ok(rustix::fs::linkat(
            &fdir,
            fname,
            &tdir,
            tname,
            AtFlags::empty(),
        )?)
    }

    pub fn readlink(&self, p: &RelPath) -> RootResult<Vec<u8>> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::readlinkat(&dir, name, Vec::new())?.into_bytes())
    }

    /// `syncfs` of the file system holding `p` (`whole_fs`), or `fsync` of `p` itself (on
    /// macOS `F_FULLFSYNC` of `p` either way).
    pub fn sync(&self, p: &RelPath, whole_fs: bool) -> RootResult<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = self.resolve(p, flags, Mode::empty())?;
        Ok(os::sync_fd(&fd, whole_fs)?)
    }

    pub fn statvfs(&self, p: &RelPath) -> RootResult<rustix::fs::StatVfs> {
        let fd = self.resolve(p, PATH, Mode::empty())?;
        Ok(rustix::fs::fstatvfs(&fd)?)
    }

    /// The size in bytes of the file system holding the root.
    pub fn disk_size(&self) -> RootResult<u64> {
        let v = rustix::fs::fstatvfs(&self.fd)?;
        #[allow(clippy::unnecessary_cast)] // field widths differ by OS
        Ok((v.f_blocks as u64).saturating_mul(v.f_frsize as u64))
    }

    /// The root folder's file system and file numbers (where it is on this machine).
    pub fn identity(&self) -> RootResult<(u64, u64)> {
        let m = Meta::from_stat(&rustix::fs::fstat(&self.fd)?);
        Ok((m.dev, m.ino))
    }

    /// Waits for an exclusive lock on folder `p` (`flock`, which a path-only handle cannot
    /// take, so the folder is opened for reading).
    pub fn lock_folder(&self, p: &RelPath) -> RootResult<FolderLock> {
        let dir = self.dir(p, false)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, ".", flags, Mode::empty())?;
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(FolderLock(fd))
    }

    /// The folder `p` opened for listing (`read_dir`) and for looking up names in it.
    pub fn open_folder(&self, p: &RelPath) -> RootResult<Folder> {
        self.resolve(p, dir_flags(), Mode::empty())
    }

    /// The folder `p`, held, and its entries.
    pub fn list(&self, p: &RelPath) -> RootResult<(Folder, Vec<DirEntry>)> {
        let fd = self.open_folder(p)?;
        let (entries, _) = read_dir(&fd)?;
        Ok((fd, entries))
    }

    /// Makes what was written at `paths` durable: one `syncfs` per file system they are on
    /// instead of one fsync each; where syncfs is refused (a seccomp filter), one fsync each.
    pub fn barrier(&self, paths: &[RelPath]) -> RootResult<()> {
        if !os::SYNC_WHOLE_FS {
            return paths.iter().try_for_each(|q| self.sync(q, false));
        }
        let mut devs = Vec::new();
        for p in paths {
            let dev = self.lstat(p)?.dev;
            if devs.contains(&dev) {
                continue;
            }
            devs.push(dev);
            match self.sync(p, true) {
                Err(e) if matches!(e.errno(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
                    return paths.iter().try_for_each(|q| self.sync(q, false));
                }
                r => r?,
            }
        }
        Ok(())
    }
}

/// What chmod answers on a file system that has no modes of its own (FAT refuses it, others
/// may not support it, a FUSE one may not implement it): the mode stays what the disk shows,
/// and the index keeps the wanted one.
pub(super) fn cannot_hold_modes(e: Errno) -> bool {
    matches!(e, Errno::PERM | Errno::NOTSUP | Errno::NOSYS)
}

/// How a folder is opened to be listed: never through a symlink.
pub fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// `renameat`, without replacing unless `replace`. Some file systems (FAT on a USB stick,
/// FUSE) lack RENAME_NOREPLACE: there it is a look, then a rename; the window between the two
/// is the price of supporting them.
pub fn rename_at(
    fdir: &OwnedFd,
    fname: &str,
    tdir: &OwnedFd,
    tname: &str,
    replace: bool,
) -> RootResult<()> {
    let flags = if replace {
        RenameFlags::empty()
    } else {
        RenameFlags::NOREPLACE
    };
    match rustix::fs::renameat_with(fdir, fname, tdir, tname, flags) {
        Err(Errno::INVAL) | Err(Errno::NOSYS) if !replace => {
            match rustix::fs::statat(tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => Err(Errno::EXIST.into()),
                Err(Errno::NOENT) => Ok(rustix::fs::renameat(fdir, fname, tdir, tname)?),
                Err(e) => Err(e.into()),
            }
        }
        r => Ok(r?),
    }
}

/// What stands at `name` in `dir` itself (a link as a link).
pub fn stat_at(dir: &Folder, name: &str) -> RootResult<Meta> {
    Ok(Meta::from_stat(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// The entry `name` of `dir` opened for reading; a link there is not followed, nor a FIFO
/// waited on.
pub fn open_read_at(dir: &Folder, name: &str) -> RootResult<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// The existing file `name` of `dir` opened for writing in place; never through a link.
pub fn open_write_at(dir: &Folder, name: &str) -> RootResult<File> {
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// The subfolder `name` of `dir`, opened for listing; never through a link.
pub fn open_folder_at(dir: &Folder, name: &str) -> RootResult<Folder> {
    Ok(rustix::fs::openat(dir, name, dir_flags(), Mode::empty())?)
}

/// Removes the file (not a folder) `name` of `dir`.
pub fn remove_at(dir: &Folder, name: &str) -> RootResult<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// The entries of `dir` (opened by `open_folder`), without `.` and `..`. A folder that can
/// be listed but not entered (no `x`: names without attributes) is an error as a whole; a
/// failure part way gives what was read and the error.
pub fn read_dir(dir: &Folder) -> RootResult<(Vec<DirEntry>, Option<RootError>)> {
    rustix::fs::statat(dir, ".", AtFlags::SYMLINK_NOFOLLOW)?;
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = match ent {
            Ok(ent) => ent,
            Err(e) => return Ok((out, Some(e.into()))),
        };
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match ent.file_type() {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Link,
            FileType::Unknown => FileKind::Unknown,
            _ => FileKind::Other,
        };
        out.push(DirEntry {
            name: name.to_vec(),
            kind,
        });
    }
    Ok((out, None))
}

/// Fills `buf` from `f` at offset `at` (the file's position is left alone).
pub fn read_exact_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

/// Writes all of `buf` into `f` at offset `at` (the file's position is left alone).
pub fn write_all_at(f: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, at)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
