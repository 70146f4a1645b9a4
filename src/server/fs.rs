//! File system operations confined to the SFTP root: every path is resolved by the kernel
//! with `openat2(RESOLVE_IN_ROOT)` on a descriptor of the root, and every change is an
//! `*at` call on a descriptor of the parent, so no string path (and no symlink swapped in
//! mid-request) can reach outside the root. Where openat2 is missing (Linux before 5.6, some
//! emulators and seccomp filters) the same rules are applied one component at a time, never
//! letting the kernel follow a symlink. Nothing here knows about the SFTP wire format.

use crate::proto::Attrs;
use crate::relpath::RelPath;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why an operation did not happen, already sorted the way SFTP status codes need it.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("permission denied: {0}")]
    Denied(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<Errno> for FsError {
    fn from(e: Errno) -> Self {
        FsError::Io(e.into())
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Turns the bytes a client sent into a path inside the root, lexically (`..` stops at the
/// root). NUL and non-UTF-8 bytes are refused: such a name cannot be one the index can hold.
pub fn client_path(raw: &[u8]) -> FsResult<RelPath> {
    let s = std::str::from_utf8(raw).map_err(|_| FsError::Denied("path is not UTF-8"))?;
    if s.contains('\0') {
        return Err(FsError::Denied("path contains NUL"));
    }
    RelPath::normalize_client(s).map_err(|_| FsError::Denied("path not allowed"))
}

/// Permission bits a client may set. Set-user-ID, set-group-ID and sticky bits are
/// dropped: files on the hub are the service user's, and a client must not make them
/// executable as that user by anyone who runs them.
const MODE_BITS: u32 = 0o777;

/// The root folder, held open so later renames of its path do not move the jail.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// No openat2 here: resolve component by component (`resolve_walk`).
    walk: bool,
}

/// Symlinks followed while resolving one path before giving up, as the kernel's limit.
const MAX_LINKS: u32 = 40;

fn resolve_flags() -> ResolveFlags {
    // IN_ROOT: `/` and `..` in the path or in any symlink stop at the root.
    // NO_MAGICLINKS: /proc/self/fd-style links could otherwise jump anywhere.
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn rel_str(p: &RelPath) -> &str {
    if p.is_root() { "." } else { p.as_str() }
}

/// `/proc/self/fd/N` names the inode behind an `O_PATH` descriptor; chmod/utimes/chown on it
/// act on that inode without another path lookup (fchmod does not accept `O_PATH`).
fn proc_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl Root {
    pub fn open(path: &Path) -> std::io::Result<Root> {
        Self::open_with(path, false)
    }

    /// `force_walk` resolves without openat2 even where it exists (tests of the fallback).
    pub fn open_with(path: &Path, force_walk: bool) -> std::io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Find out now, not on the first request, whether the kernel resolves for us.
        let walk = force_walk
            || match rustix::fs::openat2(
                &fd,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                Err(Errno::NOSYS) | Err(Errno::PERM) => {
                    tracing::warn!(
                        "openat2 is unavailable (Linux before 5.6, an emulator, or a seccomp \
                         filter such as systemd's RestrictSUIDSGID=yes): client paths are \
                         confined one component at a time instead, which a local user who can \
                         move folders out of the root while a request runs could race"
                    );
                    true
                }
                Err(e) => return Err(e.into()),
                Ok(_) => false,
            };
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            walk,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn resolve(&self, p: &RelPath, flags: OFlags, mode: Mode) -> FsResult<OwnedFd> {
        if self.walk {
            return Ok(self.resolve_walk(p, flags, mode)?);
        }
        Ok(rustix::fs::openat2(
            &self.fd,
            rel_str(p),
            flags | OFlags::CLOEXEC,
            mode,
            resolve_flags(),
        )?)
    }

    /// `openat2(RESOLVE_IN_ROOT)` by hand: every component is opened with `O_NOFOLLOW` from
    /// the folder before it; a symlink is read and its target resolved the same way (an
    /// absolute target from the root, `..` never above the root), so the kernel never follows
    /// a link and never walks `..` itself.
    fn resolve_walk(&self, p: &RelPath, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        // Folders entered below the root; the last one is where the next name is looked up.
        let mut dirs: Vec<OwnedFd> = Vec::new();
        let mut todo: std::collections::VecDeque<String> = if p.is_root() {
            Default::default()
        } else {
            p.as_str().split('/').map(str::to_string).collect()
        };
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
                rustix::fs::openat(
                    here,
                    name.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            // A symlink shows up as ELOOP/ENOTDIR, or (O_PATH|O_NOFOLLOW) as the link itself.
            let is_link = match &opened {
                Ok(fd) => {
                    flags.contains(OFlags::PATH)
                        && last
                        && rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode)
                            == rustix::fs::FileType::Symlink
                }
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    rustix::fs::statat(here, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode)
                                == rustix::fs::FileType::Symlink
                        })
                        .unwrap_or(false)
                }
                Err(_) => false,
            };
            if !is_link || (last && !follow_last) {
                let fd = opened?;
                if last {
                    return Ok(fd);
                }
                dirs.push(fd);
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
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

    /// The parent folder (resolved in the root) and the final name, for `*at` calls that must
    /// act on the entry itself, never on what a symlink there points to.
    fn parent(&self, p: &RelPath) -> FsResult<(OwnedFd, String)> {
        let parent = p.parent().ok_or(FsError::Denied(
            "the root itself cannot be changed this way",
        ))?;
        let fd = self.resolve(&parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, p.name().to_string()))
    }

    pub fn stat(&self, p: &RelPath) -> FsResult<rustix::fs::Stat> {
        let fd = self.resolve(p, OFlags::PATH, Mode::empty())?;
        Ok(rustix::fs::fstat(&fd)?)
    }

    pub fn lstat(&self, p: &RelPath) -> FsResult<rustix::fs::Stat> {
        if p.is_root() {
            return Ok(rustix::fs::fstat(&self.fd)?);
        }
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::statat(
            &dir,
            name.as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Opens a file with SFTP `pflags`; `mode` applies when it is created.
    pub fn open_file(&self, p: &RelPath, pflags: u32, mode: Option<u32>) -> FsResult<File> {
        use crate::proto::*;
        let mut flags = match (pflags & PF_READ != 0, pflags & PF_WRITE != 0) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        if pflags & PF_APPEND != 0 {
            flags |= OFlags::APPEND;
        }
        if pflags & PF_CREAT != 0 {
            flags |= OFlags::CREATE;
        }
        if pflags & PF_TRUNC != 0 {
            flags |= OFlags::TRUNC;
        }
        if pflags & PF_EXCL != 0 {
            flags |= OFlags::EXCL;
        }
        // A FIFO someone left in the root must not hang the session on open; regular files
        // ignore the flag.
        flags |= OFlags::NONBLOCK;
        if p.is_root() && flags.intersects(OFlags::WRONLY | OFlags::RDWR) {
            return Err(FsError::Denied("the root is a folder"));
        }
        // openat2 insists on a zero mode unless it may create the file.
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(mode.map_or(0o666, |m| m & MODE_BITS))
        } else {
            Mode::empty()
        };
        let fd = self.resolve(p, flags, mode)?;
        Ok(File::from(fd))
    }

    /// A regular file opened for reading; a symlink at `p` is not followed, nor a FIFO waited on.
    pub fn open_regular(&self, p: &RelPath) -> FsResult<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let file = File::from(self.resolve(p, flags, Mode::empty())?);
        if !file.metadata()?.is_file() {
            return Err(FsError::Denied("not a regular file"));
        }
        Ok(file)
    }

    pub fn open_dir(&self, p: &RelPath) -> FsResult<(OwnedFd, rustix::fs::Dir)> {
        let fd = self.resolve(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let dir = rustix::fs::Dir::read_from(&fd)?;
        Ok((fd, dir))
    }

    pub fn mkdir(&self, p: &RelPath, mode: Option<u32>) -> FsResult<()> {
        let (dir, name) = self.parent(p)?;
        let mode = Mode::from_raw_mode(mode.map_or(0o777, |m| m & MODE_BITS));
        Ok(rustix::fs::mkdirat(&dir, name.as_str(), mode)?)
    }

    pub fn rmdir(&self, p: &RelPath) -> FsResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::unlinkat(
            &dir,
            name.as_str(),
            AtFlags::REMOVEDIR,
        )?)
    }

    pub fn remove(&self, p: &RelPath) -> FsResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty())?)
    }

    /// SFTP v3 rename refuses to replace; `posix-rename@openssh.com` replaces atomically.
    pub fn rename(&self, from: &RelPath, to: &RelPath, replace: bool) -> FsResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match rustix::fs::renameat_with(&fdir, fname.as_str(), &tdir, tname.as_str(), flags) {
            // Some file systems (FAT on a USB stick, FUSE) lack RENAME_NOREPLACE: check, then
            // rename; the window between the two is the price of supporting them.
            Err(Errno::INVAL) | Err(Errno::NOSYS) if !replace => {
                match rustix::fs::statat(&tdir, tname.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(_) => Err(FsError::Io(std::io::Error::from_raw_os_error(libc::EEXIST))),
                    Err(Errno::NOENT) => Ok(rustix::fs::renameat(
                        &fdir,
                        fname.as_str(),
                        &tdir,
                        tname.as_str(),
                    )?),
                    Err(e) => Err(e.into()),
                }
            }
            r => Ok(r?),
        }
    }

    pub fn hardlink(&self, from: &RelPath, to: &RelPath) -> FsResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        Ok(rustix::fs::linkat(
            &fdir,
            fname.as_str(),
            &tdir,
            tname.as_str(),
            AtFlags::empty(),
        )?)
    }

    pub fn readlink(&self, p: &RelPath) -> FsResult<Vec<u8>> {
        let (dir, name) = self.parent(p)?;
        Ok(rustix::fs::readlinkat(&dir, name.as_str(), Vec::new())?.into_bytes())
    }

    /// Creates `link` pointing at `target` only if the target, resolved from the link's
    /// folder, stays inside the root. An absolute target is taken as root-relative and
    /// stored as a relative path, so the link also works for local programs.
    pub fn symlink(&self, target: &[u8], link: &RelPath) -> FsResult<()> {
        let target =
            std::str::from_utf8(target).map_err(|_| FsError::Denied("target is not UTF-8"))?;
        if target.is_empty() || target.contains('\0') {
            return Err(FsError::Denied("symlink target not allowed"));
        }
        let parts: Vec<&str> = link.components().collect();
        let link_dir = &parts[..parts.len().saturating_sub(1)];
        let stored = confined_link_target(link_dir, target)
            .ok_or(FsError::Denied("symlink target points outside the root"))?;
        let (dir, name) = self.parent(link)?;
        Ok(rustix::fs::symlinkat(stored.as_str(), &dir, name.as_str())?)
    }

    /// `syncfs` of the file system holding `p` (`whole_fs`), or `fsync` of `p` itself.
    pub fn sync(&self, p: &RelPath, whole_fs: bool) -> FsResult<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = self.resolve(p, flags, Mode::empty())?;
        if whole_fs {
            Ok(rustix::fs::syncfs(&fd)?)
        } else {
            Ok(rustix::fs::fsync(&fd)?)
        }
    }

    pub fn statvfs(&self, p: &RelPath) -> FsResult<rustix::fs::StatVfs> {
        let fd = self.resolve(p, OFlags::PATH, Mode::empty())?;
        Ok(rustix::fs::fstatvfs(&fd)?)
    }

    /// SETSTAT on a path (following symlinks inside the root, like OpenSSH).
    pub fn setstat(&self, p: &RelPath, a: &Attrs) -> FsResult<()> {
        if let Some(size) = a.size {
            let f = self.resolve(p, OFlags::WRONLY, Mode::empty())?;
            rustix::fs::ftruncate(&f, size)?;
        }
        if a.permissions.is_none() && a.atime_mtime.is_none() && a.uid_gid.is_none() {
            return Ok(());
        }
        let fd = self.resolve(p, OFlags::PATH, Mode::empty())?;
        let proc = proc_path(&fd);
        if let Some((uid, gid)) = a.uid_gid {
            std::os::unix::fs::chown(&proc, Some(uid), Some(gid))?;
        }
        if let Some(perm) = a.permissions {
            rustix::fs::chmod(&proc, Mode::from_raw_mode(perm & MODE_BITS))?;
        }
        if let Some((atime, mtime)) = a.atime_mtime {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &proc,
                &timestamps(atime, mtime),
                AtFlags::empty(),
            )?;
        }
        Ok(())
    }
}

fn timestamps(atime: u32, mtime: u32) -> Timestamps {
    let ts = |s: u32| rustix::fs::Timespec {
        tv_sec: s as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}

/// FSETSTAT on an open file.
pub fn fsetstat(f: &File, a: &Attrs) -> FsResult<()> {
    let fd = f.as_fd();
    if let Some(size) = a.size {
        rustix::fs::ftruncate(fd, size)?;
    }
    if let Some((uid, gid)) = a.uid_gid {
        std::os::unix::fs::fchown(fd, Some(uid), Some(gid))?;
    }
    if let Some(perm) = a.permissions {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(perm & MODE_BITS))?;
    }
    if let Some((atime, mtime)) = a.atime_mtime {
        rustix::fs::futimens(fd, &timestamps(atime, mtime))?;
    }
    Ok(())
}

/// The relative text to store for a symlink in folder `link_dir` (components from the root)
/// pointing at `target`, or `None` if the target climbs out of the root.
pub fn confined_link_target(link_dir: &[&str], target: &str) -> Option<String> {
    let absolute = target.starts_with('/');
    let mut resolved: Vec<&str> = if absolute {
        Vec::new()
    } else {
        link_dir.to_vec()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                resolved.pop()?;
            }
            c => resolved.push(c),
        }
    }
    if !absolute {
        return Some(target.to_string());
    }
    // Express the root-relative target relative to the link's folder.
    let common = link_dir
        .iter()
        .zip(&resolved)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<&str> = vec![".."; link_dir.len() - common];
    parts.extend(&resolved[common..]);
    if parts.is_empty() {
        return Some(".".to_string());
    }
    Some(parts.join("/"))
}

pub fn attrs_of(st: &rustix::fs::Stat) -> Attrs {
    Attrs {
        size: Some(st.st_size as u64),
        uid_gid: Some((st.st_uid, st.st_gid)),
        permissions: Some(st.st_mode),
        atime_mtime: Some((st.st_atime as u32, st.st_mtime as u32)),
    }
}

/// An `ls -l` line, which phone apps parse to show type, size and date.
pub fn long_name(name: &str, st: &rustix::fs::Stat, now: i64) -> String {
    let mode = st.st_mode;
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let mut perms = String::with_capacity(10);
    perms.push(kind);
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        perms.push(match (mode & special != 0, x) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    #[allow(clippy::unnecessary_cast)] // `st_mtime` is narrower on 32-bit targets
    let mtime = st.st_mtime as i64;
    let (y, m, d, hh, mm, _) = crate::time::civil(mtime);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[(m as usize).saturating_sub(1).min(11)];
    // Like ls: recent files show the time, older (or future) ones the year.
    let when = if mtime <= now && now - mtime < 180 * 86400 {
        format!("{month} {d:>2} {hh:02}:{mm:02}")
    } else {
        format!("{month} {d:>2}  {y}")
    };
    format!(
        "{perms} {:>4} {:<8} {:<8} {:>8} {when} {name}",
        st.st_nlink, st.st_uid, st.st_gid, st.st_size
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_paths_fold_inside_root() {
        for (raw, want) in [
            (&b"/"[..], ""),
            (b"", ""),
            (b".", ""),
            (b"../../etc/passwd", "etc/passwd"),
            (b"//a//b/", "a/b"),
            (b"/a/../../b", "b"),
        ] {
            assert_eq!(client_path(raw).unwrap().as_str(), want, "{raw:?}");
        }
        assert!(client_path(b"a\0b").is_err());
        assert!(client_path(b"a\xffb").is_err());
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        assert_eq!(
            confined_link_target(&["a"], "../b").as_deref(),
            Some("../b")
        );
        assert_eq!(confined_link_target(&["a"], "../../b"), None);
        assert_eq!(confined_link_target(&[], "../x"), None);
        assert_eq!(
            confined_link_target(&["a", "b"], "/a/c").as_deref(),
            Some("../c")
        );
        assert_eq!(confined_link_target(&[], "/x/y").as_deref(), Some("x/y"));
        assert_eq!(confined_link_target(&["a"], "/..").as_deref(), None);
    }

    #[test]
    fn escapes_through_symlinks_stay_in_root() {
        let outer = tempfile::tempdir().unwrap();
        let root_dir = outer.path().join("root");
        std::fs::create_dir(&root_dir).unwrap();
        std::fs::write(outer.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink("../secret", root_dir.join("up")).unwrap();
        std::os::unix::fs::symlink(outer.path(), root_dir.join("abs")).unwrap();
        // Both resolvers: the kernel's openat2 and the component walk used without it.
        for walk in [false, true] {
            let root = Root::open_with(&root_dir, walk).unwrap();
            assert!(root.stat(&client_path(b"up").unwrap()).is_err());
            assert!(root.stat(&client_path(b"abs/secret").unwrap()).is_err());
            let f = root.open_file(&client_path(b"abs/new").unwrap(), 0x2 | 0x8, None);
            assert!(
                f.is_err(),
                "creating through a symlink to outside must fail"
            );
            assert!(!outer.path().join("new").exists());
            assert!(root.lstat(&client_path(b"up").unwrap()).is_ok());
        }
    }

    /// The component-by-component resolver agrees with the kernel's openat2(RESOLVE_IN_ROOT)
    /// on every path and flag combination of a tree full of awkward symlinks.
    #[test]
    fn walking_resolver_matches_openat2() {
        let outer = tempfile::tempdir().unwrap();
        let r = outer.path().join("root");
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(outer.path().join("secret"), b"x").unwrap();
        std::fs::write(r.join("a/b/f"), b"f").unwrap();
        std::fs::write(r.join("top"), b"t").unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, r.join(at)).unwrap();
        link("../secret", "up");
        link(outer.path().to_str().unwrap(), "abs");
        link("/a/b", "rootabs");
        link("b/f", "a/rel");
        link("../../../../top", "a/b/climb");
        link("loop2", "loop1");
        link("loop1", "loop2");
        link("a/b/nothing", "dangling");
        link("/", "slash");
        link("a", "chain1");
        link("chain1/b", "chain2");
        link("/top", "a/b/abstop");
        link("/a/b", "a/toab");
        let kernel = Root::open(&r).unwrap();
        if kernel.walk {
            eprintln!("no openat2 here: nothing to compare against");
            return;
        }
        let walker = Root::open_with(&r, true).unwrap();
        let paths = [
            "",
            "top",
            "a",
            "a/b",
            "a/b/f",
            "up",
            "abs",
            "abs/secret",
            "rootabs",
            "rootabs/f",
            "a/rel",
            "a/b/climb",
            "loop1",
            "loop1/x",
            "dangling",
            "slash",
            "slash/top",
            "slash/a/b/f",
            "chain2/f",
            "chain2",
            "a/b/f/x",
            "missing",
            "missing/x",
            "top/x",
            "a/../top",
            "a/b/../../top",
            "../../top",
            "a/b/abstop",
            "a/toab/f",
            "a/toab",
        ];
        let flag_sets = [
            OFlags::PATH,
            OFlags::PATH | OFlags::NOFOLLOW,
            OFlags::PATH | OFlags::DIRECTORY,
            OFlags::RDONLY,
            OFlags::RDONLY | OFlags::DIRECTORY,
            OFlags::RDONLY | OFlags::NOFOLLOW,
        ];
        let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|s| (s.st_dev, s.st_ino)).ok();
        for raw in paths {
            let p = client_path(raw.as_bytes()).unwrap();
            for flags in flag_sets {
                let a = kernel.resolve(&p, flags, Mode::empty());
                let b = walker.resolve_walk(&p, flags, Mode::empty());
                match (&a, &b) {
                    (Ok(x), Ok(y)) => assert_eq!(ino(x), ino(y), "{raw:?} {flags:?}"),
                    (Err(FsError::Io(x)), Err(y)) => {
                        assert_eq!(
                            x.raw_os_error(),
                            Some(y.raw_os_error()),
                            "{raw:?} {flags:?}"
                        )
                    }
                    _ => panic!("{raw:?} {flags:?}: kernel {a:?}, walker {b:?}"),
                }
            }
        }
        // Creating through links lands inside the root, as with openat2, or not at all.
        for raw in ["dangling", "abs/new", "up/../new2", "rootabs/new3"] {
            let p = client_path(raw.as_bytes()).unwrap();
            let flags = OFlags::WRONLY | OFlags::CREATE;
            let b = walker.resolve_walk(&p, flags, Mode::from_raw_mode(0o600));
            let a = kernel.resolve(&p, flags | OFlags::EXCL, Mode::from_raw_mode(0o600));
            // The walker made it first; the kernel resolving the same path must find it there.
            match (&a, &b) {
                (Err(FsError::Io(x)), Ok(_)) => {
                    assert_eq!(x.raw_os_error(), Some(Errno::EXIST.raw_os_error()), "{raw}")
                }
                (Err(FsError::Io(x)), Err(y)) => {
                    assert_eq!(x.raw_os_error(), Some(y.raw_os_error()), "{raw}")
                }
                _ => panic!("{raw}: kernel {a:?}, walker {b:?}"),
            }
        }
        assert!(r.join("a/b/nothing").exists());
        assert!(r.join("a/b/new3").exists());
        assert!(!outer.path().join("new").exists() && !outer.path().join("new2").exists());
    }

    #[test]
    fn long_name_looks_like_ls() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        let st = rustix::fs::stat(&f).unwrap();
        let l = long_name("f", &st, st.st_mtime + 10);
        assert!(l.starts_with("-rw"), "{l}");
        assert!(l.ends_with(" f") && l.contains(" 5 "), "{l}");
    }
}
