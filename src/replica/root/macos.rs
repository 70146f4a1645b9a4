//! macOS: no `openat2` and no `O_PATH`, so every path is resolved one component at a time
//! with `O_NOFOLLOW` (the walk in `Root`), handles are plain read-only descriptors, and
//! durability is `F_FULLFSYNC` (a plain `fsync` there leaves the data in the drive's cache).

use super::{Root, RootResult};
use crate::relpath::RelPath;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// A handle on a file or folder; without `O_PATH` it needs read permission.
pub const PATH: OFlags = OFlags::RDONLY;

/// Paths are always resolved by the component walk.
pub const KERNEL_RESOLVES: bool = false;

pub fn openat2(_: &Root, _: &RelPath, _: OFlags, _: Mode) -> Result<OwnedFd, Errno> {
    Err(Errno::NOSYS)
}

/// Sets the permission bits of `p` itself: `fchmodat` with `AT_SYMLINK_NOFOLLOW` acts on a
/// link as a link, which macOS (unlike Linux) supports, so no link is ever followed.
pub fn set_mode(root: &Root, p: &RelPath, bits: Mode) -> RootResult<()> {
    let r = if p.is_root() {
        rustix::fs::fchmod(&root.fd, bits)
    } else {
        let (dir, name) = root.parent(p)?;
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if super::is_link(&st) {
            return Err(super::RootError::ThroughLink(p.clone()));
        }
        rustix::fs::chmodat(&dir, name, bits, AtFlags::SYMLINK_NOFOLLOW)
    };
    match r {
        Err(e) if super::cannot_hold_modes(e) => Ok(()),
        r => Ok(r?),
    }
}

/// `F_FULLFSYNC` of `fd` (data and the drive's cache); a file system that refuses it (SMB,
/// some FUSE) gets a plain `fsync`.
pub fn sync_fd(fd: &OwnedFd, _whole_fs: bool) -> Result<(), Errno> {
    match rustix::fs::fcntl_fullfsync(fd) {
        Err(Errno::NOTSUP) | Err(Errno::INVAL) => rustix::fs::fsync(fd),
        r => r,
    }
}

/// Each path is made durable by itself: there is no `syncfs`.
pub const SYNC_WHOLE_FS: bool = false;
