//! Windows: there are no `*at` calls, so a folder is reached by opening every folder on the
//! way as itself (`FILE_FLAG_OPEN_REPARSE_POINT`: a symlink or junction is seen, never
//! entered) and holding it open without `FILE_SHARE_DELETE` while it is used, so no folder on
//! the way can be renamed or swapped for a junction mid-call; the names below a held folder are
//! then used by path. Writes are a new file (`CREATE_NEW` never opens what is there), flushed
//! (`FlushFileBuffers`), and moved over the old name (`MoveFileExW` with
//! `MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH`). Every name is checked against
//! Windows' rules first, so no `\`, `:`, device name or trailing dot ever reaches a path.
//! The server resolves with `Follow::InRoot`; it is not built here, and both policies refuse
//! every link.

use super::{DirEntry, FileKind, Follow, Meta, NameRules, RootError, RootResult, time_of};
use crate::relpath::RelPath;
use std::fs::{File, OpenOptions};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use windows_sys::Win32::Foundation as w32;
use windows_sys::Win32::Storage::FileSystem as fs;

/// A folder held open (and every folder above it, up to the root), with its full path.
#[derive(Clone)]
pub struct Folder {
    path: PathBuf,
    _held: Arc<Held>,
}

/// A folder's handle and its parent's: dropped (closed) together when the last user goes.
struct Held {
    _handle: File,
    _up: Option<Arc<Held>>,
}

/// A folder held while its index files are written (see `Root::lock_folder`).
#[must_use]
pub struct FolderLock(#[allow(dead_code)] Folder);

/// The root folder, held open so it cannot be renamed or replaced while it is in use.
pub struct Root {
    top: Folder,
    path: PathBuf,
    follow: Follow,
    /// How its file system compares names, probed once (`probe_names`).
    pub(super) names: std::sync::OnceLock<NameRules>,
}

/// Permission bits as `mkdir` takes them; Windows keeps none, so they are only carried.
pub fn mode(bits: u32) -> u32 {
    bits
}

/// Windows error codes that mean what a POSIX number says; others are kept apart above them.
pub(super) fn os_errno(code: i32) -> i32 {
    match code as u32 {
        w32::ERROR_FILE_NOT_FOUND | w32::ERROR_PATH_NOT_FOUND | w32::ERROR_INVALID_DRIVE => {
            libc::ENOENT
        }
        w32::ERROR_FILE_EXISTS | w32::ERROR_ALREADY_EXISTS => libc::EEXIST,
        w32::ERROR_ACCESS_DENIED => libc::EACCES,
        w32::ERROR_SHARING_VIOLATION | w32::ERROR_LOCK_VIOLATION | w32::ERROR_USER_MAPPED_FILE => {
            libc::EBUSY
        }
        w32::ERROR_DIR_NOT_EMPTY => libc::ENOTEMPTY,
        w32::ERROR_DIRECTORY => libc::ENOTDIR,
        w32::ERROR_NOT_SAME_DEVICE => libc::EXDEV,
        w32::ERROR_DISK_FULL | w32::ERROR_HANDLE_DISK_FULL => libc::ENOSPC,
        w32::ERROR_WRITE_PROTECT => libc::EROFS,
        w32::ERROR_INVALID_NAME | w32::ERROR_BAD_PATHNAME | w32::ERROR_INVALID_PARAMETER => {
            libc::EINVAL
        }
        w32::ERROR_CANT_RESOLVE_FILENAME => libc::ELOOP,
        w32::ERROR_NOT_SUPPORTED => libc::ENOTSUP,
        w32::ERROR_CALL_NOT_IMPLEMENTED => libc::ENOSYS,
        // Above every POSIX number, so no Windows code is taken for one.
        other => 0x1_0000 + other as i32,
    }
}

fn win_err(code: u32) -> RootError {
    RootError::Io(std::io::Error::from_raw_os_error(code as i32))
}

/// The full path of `name` in `dir`, if Windows can hold the name as it is: a name it would
/// read otherwise (`a\b`, `c:x`, `CON`, `x.`) is refused, never mangled.
fn at(dir: &Folder, name: &str) -> RootResult<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || super::windows_refuses(name).is_some() {
        return Err(win_err(w32::ERROR_INVALID_NAME));
    }
    Ok(dir.path.join(name))
}

/// `CreateFileW` on `path` as itself (a reparse point is opened, not followed).
fn open_as_itself(path: &Path, access: u32, share: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .access_mode(access)
        .share_mode(share)
        .custom_flags(fs::FILE_FLAG_OPEN_REPARSE_POINT | fs::FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
}

const SHARE_ALL: u32 = fs::FILE_SHARE_READ | fs::FILE_SHARE_WRITE | fs::FILE_SHARE_DELETE;

/// A FILETIME-like count of 100 ns since 1601 as Unix seconds and nanoseconds.
fn from_filetime(t: i64) -> crate::index::MTime {
    const SINCE_1601: i64 = 11_644_473_600 * 10_000_000;
    let unix = t - SINCE_1601;
    time_of(
        unix.div_euclid(10_000_000),
        unix.rem_euclid(10_000_000) * 100,
    )
}

/// What the handle `f` (opened as itself) is.
fn meta_of(f: &File) -> std::io::Result<Meta> {
    let h = f.as_raw_handle() as w32::HANDLE;
    // SAFETY: `h` is a live handle owned by `f`; each buffer is a zeroed struct of the size
    // passed, which is what the call writes into.
    let (info, basic, tag) = unsafe {
        let mut info: fs::BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
        if fs::GetFileInformationByHandle(h, &mut info) == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut basic = fs::FILE_BASIC_INFO::default();
        if fs::GetFileInformationByHandleEx(
            h,
            fs::FileBasicInfo,
            (&mut basic as *mut fs::FILE_BASIC_INFO).cast(),
            std::mem::size_of::<fs::FILE_BASIC_INFO>() as u32,
        ) == 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let mut tag: fs::FILE_ATTRIBUTE_TAG_INFO = std::mem::zeroed();
        if info.dwFileAttributes & fs::FILE_ATTRIBUTE_REPARSE_POINT != 0
            && fs::GetFileInformationByHandleEx(
                h,
                fs::FileAttributeTagInfo,
                (&mut tag as *mut fs::FILE_ATTRIBUTE_TAG_INFO).cast(),
                std::mem::size_of::<fs::FILE_ATTRIBUTE_TAG_INFO>() as u32,
            ) == 0
        {
            return Err(std::io::Error::last_os_error());
        }
        (info, basic, tag)
    };
    let attrs = info.dwFileAttributes;
    // A name surrogate (symlink, junction, mount point) names another place; other reparse
    // points (cloud placeholders, dedup) are the file itself.
    const NAME_SURROGATE: u32 = 0x2000_0000;
    let kind =
        if attrs & fs::FILE_ATTRIBUTE_REPARSE_POINT != 0 && tag.ReparseTag & NAME_SURROGATE != 0 {
            FileKind::Link
        } else if attrs & fs::FILE_ATTRIBUTE_DIRECTORY != 0 {
            FileKind::Dir
        } else if attrs & fs::FILE_ATTRIBUTE_DEVICE != 0 {
            FileKind::Other
        } else {
            FileKind::File
        };
    let size = (u64::from(info.nFileSizeHigh) << 32) | u64::from(info.nFileSizeLow);
    Ok(Meta {
        kind,
        size: if kind == FileKind::File { size } else { 0 },
        mtime: from_filetime(basic.LastWriteTime),
        changed: from_filetime(basic.ChangeTime),
        mode: None,
        dev: u64::from(info.dwVolumeSerialNumber),
        ino: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    })
}

/// An error for a link (or junction) where none may be.
fn link_err() -> RootError {
    win_err(w32::ERROR_CANT_RESOLVE_FILENAME)
}

fn wide(p: &Path) -> Vec<u16> {
    p.as_os_str().encode_wide().chain(Some(0)).collect()
}

impl Root {
    /// Opens the folder at `path` (it may itself be a link the user chose; nothing below it
    /// is followed).
    pub fn open(path: &Path, follow: Follow) -> std::io::Result<Root> {
        let full = std::fs::canonicalize(path)?;
        let handle = open_as_itself(
            &full,
            fs::FILE_READ_ATTRIBUTES,
            fs::FILE_SHARE_READ | fs::FILE_SHARE_WRITE,
        )?;
        if meta_of(&handle)?.kind != FileKind::Dir {
            return Err(std::io::Error::from_raw_os_error(
                w32::ERROR_DIRECTORY as i32,
            ));
        }
        Ok(Root {
            top: Folder {
                path: full,
                _held: Arc::new(Held {
                    _handle: handle,
                    _up: None,
                }),
            },
            path: path.to_path_buf(),
            follow,
            names: std::sync::OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn follow(&self) -> Follow {
        self.follow
    }

    /// The folder holding `p` and `p`'s own name.
    pub fn parent<'p>(&self, p: &'p RelPath) -> RootResult<(Folder, &'p str)> {
        self.parent_dir(p, false)
    }

    /// The folder `d`, held, every folder on the way made when `create`. A link or a file on
    /// the way is an error naming it.
    pub fn dir(&self, d: &RelPath, create: bool) -> RootResult<Folder> {
        let mut f = self.top.clone();
        let mut here = RelPath::root();
        for c in d.components() {
            here = here.join_unchecked(c);
            let next = match open_folder_at(&f, c) {
                Err(e) if create && e.is_not_found() => {
                    match std::fs::create_dir(at(&f, c)?) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            return Err(e.into());
                        }
                        _ => {}
                    }
                    open_folder_at(&f, c)
                }
                r => r,
            };
            f = match next {
                Err(e) if e.errno() == Some(libc::ELOOP) => {
                    return Err(RootError::ThroughLink(here));
                }
                Err(e) if e.errno() == Some(libc::ENOTDIR) => {
                    return Err(RootError::NotAFolder(here));
                }
                r => r?,
            };
        }
        Ok(f)
    }

    /// The folder holding `p`, made (with every folder on the way) when `create`.
    pub fn parent_dir<'p>(&self, p: &'p RelPath, create: bool) -> RootResult<(Folder, &'p str)> {
        let parent = p.parent().ok_or(RootError::Denied(
            "the root itself cannot be changed this way",
        ))?;
        Ok((self.dir(&parent, create)?, p.name()))
    }

    /// What stands at `p`; a link there is an error naming it (nothing is followed).
    pub fn stat(&self, p: &RelPath) -> RootResult<Meta> {
        let m = self.lstat(p)?;
        if m.kind == FileKind::Link {
            return Err(RootError::ThroughLink(p.clone()));
        }
        Ok(m)
    }

    /// What stands at `p` itself (a link as a link).
    pub fn lstat(&self, p: &RelPath) -> RootResult<Meta> {
        if p.is_root() {
            return Ok(meta_of(&self.top._held._handle)?);
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

    /// A regular file opened for reading; a link at `p` is not followed. Others may go on
    /// writing, renaming or deleting it (the scan checks what it read).
    pub fn open_regular(&self, p: &RelPath) -> RootResult<File> {
        let (dir, name) = self.parent(p)?;
        let f = open_read_at(&dir, name).map_err(|e| match e.errno() {
            Some(libc::ELOOP) => RootError::ThroughLink(p.clone()),
            _ => e,
        })?;
        if meta_of(&f)?.kind != FileKind::File {
            return Err(RootError::Denied("not a regular file"));
        }
        Ok(f)
    }

    /// A new file `name` in the folder `dir` (never one that is there, nor a link), for
    /// writing.
    pub fn create_in(dir: &Folder, name: &str) -> RootResult<File> {
        Self::create_in_with(dir, name, None)
    }

    /// `create_in`; Windows keeps no permission bits, so `mode` is the index's alone.
    pub fn create_in_with(dir: &Folder, name: &str, _mode: Option<u32>) -> RootResult<File> {
        Ok(OpenOptions::new()
            .write(true)
            .create_new(true)
            .share_mode(SHARE_ALL)
            .custom_flags(fs::FILE_FLAG_OPEN_REPARSE_POINT)
            .open(at(dir, name)?)?)
    }

    /// Windows keeps no permission bits: the index keeps the wanted ones. `p` must be there.
    pub fn set_mode(&self, p: &RelPath, _mode: u32) -> RootResult<()> {
        self.lstat(p).map(|_| ())
    }

    pub fn mkdir(&self, p: &RelPath, _mode: u32) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(std::fs::create_dir(at(&dir, name)?)?)
    }

    /// Removes the empty folder `p` (a link or junction there is removed as itself).
    pub fn rmdir(&self, p: &RelPath) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        Ok(std::fs::remove_dir(at(&dir, name)?)?)
    }

    pub fn remove(&self, p: &RelPath) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        remove_at(&dir, name)
    }

    /// Renames `from` to `to`, replacing what is there only when `replace`.
    pub fn rename(&self, from: &RelPath, to: &RelPath, replace: bool) -> RootResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        match rename_at(&fdir, fname, &tdir, tname, replace) {
            // A rename that only changes the spelling on a folding disk goes through a temp
            // name where the OS refuses it as taken.
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
        Ok(std::fs::hard_link(at(&fdir, fname)?, at(&tdir, tname)?)?)
    }

    /// `FlushFileBuffers` of the file `p`. A folder needs none: NTFS journals its entries,
    /// and `MoveFileExW` was asked to write through.
    pub fn sync(&self, p: &RelPath, _whole_fs: bool) -> RootResult<()> {
        let (dir, name) = self.parent(p)?;
        let path = at(&dir, name)?;
        let f = open_as_itself(&path, w32::GENERIC_WRITE, SHARE_ALL)?;
        match meta_of(&f)?.kind {
            FileKind::File => Ok(f.sync_all()?),
            _ => Ok(()),
        }
    }

    /// Makes what was written at `paths` durable, one flush each.
    pub fn barrier(&self, paths: &[RelPath]) -> RootResult<()> {
        paths.iter().try_for_each(|q| match self.lstat(q) {
            Ok(m) if m.kind == FileKind::File => self.sync(q, false),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        })
    }

    /// The size in bytes of the volume holding the root.
    pub fn disk_size(&self) -> RootResult<u64> {
        let mut total = 0u64;
        let path = wide(&self.top.path);
        // SAFETY: `path` is NUL-terminated and outlives the call; null pointers are allowed
        // for the counts not asked for.
        let ok = unsafe {
            fs::GetDiskFreeSpaceExW(
                path.as_ptr(),
                std::ptr::null_mut(),
                &mut total,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(total)
    }

    /// The root folder's volume serial number and file index.
    pub fn identity(&self) -> RootResult<(u64, u64)> {
        let m = meta_of(&self.top._held._handle)?;
        Ok((m.dev, m.ino))
    }

    /// The folder `p`, held. Windows cannot lock a folder; the replica's `.sync.lock`
    /// already keeps a second writer out there, and no hub runs on Windows to refresh its index.
    pub fn lock_folder(&self, p: &RelPath) -> RootResult<FolderLock> {
        Ok(FolderLock(self.dir(p, false)?))
    }

    /// The folder `p`, held, for listing (`read_dir`) and looking up names in it.
    pub fn open_folder(&self, p: &RelPath) -> RootResult<Folder> {
        self.dir(p, false)
    }

    /// The folder `p`, held, and its entries.
    pub fn list(&self, p: &RelPath) -> RootResult<(Folder, Vec<DirEntry>)> {
        let fd = self.open_folder(p)?;
        let (entries, _) = read_dir(&fd)?;
        Ok((fd, entries))
    }
}

/// What stands at `name` in `dir` itself (a link as a link).
pub fn stat_at(dir: &Folder, name: &str) -> RootResult<Meta> {
    let f = open_as_itself(&at(dir, name)?, fs::FILE_READ_ATTRIBUTES, SHARE_ALL)?;
    Ok(meta_of(&f)?)
}

/// The entry `name` of `dir` opened for reading; a link there is an error (`ELOOP`).
pub fn open_read_at(dir: &Folder, name: &str) -> RootResult<File> {
    let f = open_as_itself(&at(dir, name)?, w32::GENERIC_READ, SHARE_ALL)?;
    if meta_of(&f)?.kind == FileKind::Link {
        return Err(link_err());
    }
    Ok(f)
}

/// The existing file `name` of `dir` opened for writing in place; never through a link.
pub fn open_write_at(dir: &Folder, name: &str) -> RootResult<File> {
    let f = open_as_itself(&at(dir, name)?, w32::GENERIC_WRITE, SHARE_ALL)?;
    if meta_of(&f)?.kind != FileKind::File {
        return Err(link_err());
    }
    Ok(f)
}

/// The subfolder `name` of `dir`, held; a link there is `ELOOP`, a file `ENOTDIR`.
pub fn open_folder_at(dir: &Folder, name: &str) -> RootResult<Folder> {
    let path = at(dir, name)?;
    let handle = open_as_itself(
        &path,
        fs::FILE_READ_ATTRIBUTES,
        fs::FILE_SHARE_READ | fs::FILE_SHARE_WRITE,
    )?;
    match meta_of(&handle)?.kind {
        FileKind::Dir => Ok(Folder {
            path,
            _held: Arc::new(Held {
                _handle: handle,
                _up: Some(dir._held.clone()),
            }),
        }),
        FileKind::Link => Err(link_err()),
        _ => Err(win_err(w32::ERROR_DIRECTORY)),
    }
}

/// Removes the file (not a folder) `name` of `dir`; a link is removed as itself.
pub fn remove_at(dir: &Folder, name: &str) -> RootResult<()> {
    Ok(std::fs::remove_file(at(dir, name)?)?)
}

/// The entries of `dir`; a failure part way gives what was read and the error.
pub fn read_dir(dir: &Folder) -> RootResult<(Vec<DirEntry>, Option<RootError>)> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(&dir.path)? {
        let ent = match ent {
            Ok(ent) => ent,
            Err(e) => return Ok((out, Some(e.into()))),
        };
        let kind = match ent.file_type() {
            Ok(t) if t.is_symlink() => FileKind::Link,
            Ok(t) if t.is_dir() => FileKind::Dir,
            Ok(t) if t.is_file() => FileKind::File,
            Ok(_) => FileKind::Other,
            Err(_) => FileKind::Unknown,
        };
        out.push(DirEntry {
            name: ent.file_name().as_encoded_bytes().to_vec(),
            kind,
        });
    }
    Ok((out, None))
}

/// `MoveFileExW`, replacing what is at the new name only when `replace` (a link there is
/// replaced as itself), written through before it returns.
pub fn rename_at(
    fdir: &Folder,
    fname: &str,
    tdir: &Folder,
    tname: &str,
    replace: bool,
) -> RootResult<()> {
    let (from, to) = (wide(&at(fdir, fname)?), wide(&at(tdir, tname)?));
    let mut flags = fs::MOVEFILE_WRITE_THROUGH;
    if replace {
        flags |= fs::MOVEFILE_REPLACE_EXISTING;
    }
    // SAFETY: both names are NUL-terminated and outlive the call.
    if unsafe { fs::MoveFileExW(from.as_ptr(), to.as_ptr(), flags) } == 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Fills `buf` from `f` at offset `at`.
pub fn read_exact_at(f: &File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, at) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` into `f` at offset `at`.
pub fn write_all_at(f: &File, mut buf: &[u8], mut at: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_write(buf, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
