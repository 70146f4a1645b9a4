//! What an SFTP client may do below the root, on top of the replica's folder handle
//! (`replica::Root`, opened with `Follow::InRoot`: links are followed as clients expect, never
//! out of the root): client paths, SFTP open flags and attributes, symlinks that stay inside,
//! and the `ls -l` lines phone apps parse. Nothing here knows about the wire format.

use crate::proto::Attrs;
use crate::relpath::RelPath;
use crate::replica::root;
pub use crate::replica::{Root, RootError as FsError, RootResult as FsResult};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, Timestamps};
use std::fs::File;

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

/// The SFTP status code and message for an error. `batch`: the reply is one of our batch
/// replies, where SFTP version 6's "file already exists" is understood; plain version 3 has
/// no such code.
pub fn status_code(e: &FsError, batch: bool) -> (u32, String) {
    use crate::proto::*;
    let code = match e {
        FsError::Denied(_) | FsError::ThroughLink(_) | FsError::NotAFolder(_) => {
            FX_PERMISSION_DENIED
        }
        FsError::Io(io) => match io.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => FX_NO_SUCH_FILE,
            Some(libc::EEXIST) if batch => FX_FILE_ALREADY_EXISTS,
            Some(libc::EACCES | libc::EPERM | libc::EXDEV | libc::ELOOP | libc::EROFS) => {
                FX_PERMISSION_DENIED
            }
            _ => FX_FAILURE,
        },
    };
    (code, e.to_string())
}

/// Whether a failure is an answer a client expects while it looks around (there is no such
/// file, the folder is there already, this is not a link) rather than something a person
/// on the hub should see. `op` names the request as `Session` logs it.
pub fn is_probe(op: &str, e: &FsError) -> bool {
    use crate::proto::ext;
    let FsError::Io(io) = e else {
        return false;
    };
    match io.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => true,
        Some(libc::EEXIST) => matches!(
            op,
            "mkdir"
                | "open"
                | "rename"
                | "symlink"
                | ext::HARDLINK
                | ext::WRITE_FILES
                | ext::WRITE_FILES_WITH_MODE
        ),
        Some(libc::EINVAL) => op == "readlink",
        _ => false,
    }
}

/// `/proc/self/fd/N` names the inode behind an `O_PATH` descriptor; chmod/utimes/chown on it
/// act on that inode without another path lookup (fchmod does not accept `O_PATH`).
#[cfg(target_os = "linux")]
fn proc_path(fd: &OwnedFd) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The SFTP client's operations on a root (see the module).
pub trait ClientOps {
    fn open_file(&self, p: &RelPath, pflags: u32, mode: Option<u32>) -> FsResult<File>;
    fn make_dir(&self, p: &RelPath, mode: Option<u32>) -> FsResult<()>;
    fn symlink(&self, target: &[u8], link: &RelPath) -> FsResult<()>;
    fn setstat(&self, p: &RelPath, a: &Attrs) -> FsResult<()>;
}

impl ClientOps for Root {
    /// Opens a file with SFTP `pflags`; `mode` applies when it is created.
    fn open_file(&self, p: &RelPath, pflags: u32, mode: Option<u32>) -> FsResult<File> {
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
            root::mode(mode.map_or(0o666, |m| m & MODE_BITS))
        } else {
            Mode::empty()
        };
        let fd = self.resolve(p, flags, mode)?;
        Ok(File::from(fd))
    }

    fn make_dir(&self, p: &RelPath, mode: Option<u32>) -> FsResult<()> {
        let (dir, name) = self.parent(p)?;
        let mode = root::mode(mode.map_or(0o777, |m| m & MODE_BITS));
        Ok(rustix::fs::mkdirat(&dir, name, mode)?)
    }

    /// Creates `link` pointing at `target` only if the target, resolved from the link's
    /// folder, stays inside the root. An absolute target is taken as root-relative and
    /// stored as a relative path, so the link also works for local programs.
    fn symlink(&self, target: &[u8], link: &RelPath) -> FsResult<()> {
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
        Ok(rustix::fs::symlinkat(stored.as_str(), &dir, name)?)
    }

    /// SETSTAT on a path (following symlinks inside the root, like OpenSSH).
    fn setstat(&self, p: &RelPath, a: &Attrs) -> FsResult<()> {
        if let Some(size) = a.size {
            let f = self.resolve(p, OFlags::WRONLY, Mode::empty())?;
            rustix::fs::ftruncate(&f, size)?;
        }
        if a.permissions.is_none() && a.atime_mtime.is_none() && a.uid_gid.is_none() {
            return Ok(());
        }
        let fd = self.resolve(p, root::PATH, Mode::empty())?;
        setstat_handle(fd, a)
    }
}

/// Applies owner, mode and times to a handle from `root::PATH`.
#[cfg(target_os = "linux")]
fn setstat_handle(fd: OwnedFd, a: &Attrs) -> FsResult<()> {
    let proc = proc_path(&fd);
    if let Some((uid, gid)) = a.uid_gid {
        std::os::unix::fs::chown(&proc, Some(uid), Some(gid))?;
    }
    if let Some(perm) = a.permissions {
        rustix::fs::chmod(&proc, root::mode(perm & MODE_BITS))?;
    }
    if let Some((atime, mtime)) = a.atime_mtime {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &proc,
            &timestamps(atime, mtime),
            rustix::fs::AtFlags::empty(),
        )?;
    }
    Ok(())
}

/// Without `O_PATH` (macOS) the handle is an open descriptor: act on it directly.
#[cfg(not(target_os = "linux"))]
fn setstat_handle(fd: OwnedFd, a: &Attrs) -> FsResult<()> {
    fsetstat(
        &File::from(fd),
        &Attrs {
            size: None,
            ..a.clone()
        },
    )
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
        rustix::fs::fchmod(fd, root::mode(perm & MODE_BITS))?;
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
        permissions: Some(root::st_mode(st)),
        atime_mtime: Some((st.st_atime as u32, st.st_mtime as u32)),
    }
}

/// An `ls -l` line, which phone apps parse to show type, size and date.
pub fn long_name(name: &str, st: &rustix::fs::Stat, now: i64) -> String {
    let mode = root::st_mode(st);
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
