//! Linux: the kernel resolves paths for us (`openat2`), `O_PATH` handles reach files and
//! folders without read permission, and `syncfs` makes one file system durable at once.

use super::{Follow, Root, RootResult, is_link};
use crate::relpath::RelPath;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

fn rel_str(p: &RelPath) -> &str {
    if p.is_root() { "." } else { p.as_str() }
}

/// A handle that names a file or folder without reading it (no read permission needed).
pub const PATH: OFlags = OFlags::PATH;

/// `openat2` may exist here (probed when a root is opened).
pub const KERNEL_RESOLVES: bool = true;

pub fn openat2(root: &Root, p: &RelPath, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    let how = match root.follow {
        // IN_ROOT: `/` and `..` in the path or in any symlink stop at the root.
        Follow::InRoot => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        Follow::Never => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    };
    rustix::fs::openat2(&root.fd, rel_str(p), flags | OFlags::CLOEXEC, mode, how)
}

/// Sets the permission bits of `p` itself; a link is never followed.
pub fn set_mode(root: &Root, p: &RelPath, bits: Mode) -> RootResult<()> {
    let fd = root.resolve(p, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
    if is_link(&rustix::fs::fstat(&fd)?) {
        return Err(super::RootError::ThroughLink(p.clone()));
    }
    // fchmod refuses an O_PATH descriptor (a file or folder without read permission can
    // only be opened so); its /proc name acts on the same inode without a path lookup.
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    match rustix::fs::chmod(proc.as_str(), bits) {
        Err(e) if super::cannot_hold_modes(e) => Ok(()),
        r => Ok(r?),
    }
}

/// Makes the file system holding `fd` durable (`whole_fs`), or `fd` itself.
pub fn sync_fd(fd: &OwnedFd, whole_fs: bool) -> Result<(), Errno> {
    if whole_fs {
        rustix::fs::syncfs(fd)
    } else {
        rustix::fs::fsync(fd)
    }
}

/// Whether one `sync_fd(.., true)` per file system covers every path on it.
pub const SYNC_WHOLE_FS: bool = true;
