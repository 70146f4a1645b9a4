#!/usr/bin/env python3
"""A FUSE file system that compares names as APFS does: case- and normalization-insensitive,
case- and normalization-preserving. Files live in BACKING under the spelling they were
created with; a lookup finds an entry whose folded name matches. Used by the integration
tests to give a Linux machine a receiver that folds names (no CONFIG_UNICODE needed).

    foldfs.py BACKING MOUNTPOINT      # stays in the foreground; unmount with fusermount -u
"""
import errno
import os
import sys
import unicodedata

from fuse import FUSE, FuseOSError, Operations


def fold(name):
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).lower())


class FoldFS(Operations):
    def __init__(self, backing):
        self.backing = backing

    def _real(self, path, create_last=True):
        """The backing path for `path`, each component matched by its folded name."""
        real = self.backing
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            try:
                names = os.listdir(real)
            except NotADirectoryError:
                raise FuseOSError(errno.ENOTDIR)
            except FileNotFoundError:
                raise FuseOSError(errno.ENOENT)
            match = part if part in names else next((n for n in names if fold(n) == fold(part)), None)
            if match is None:
                if i < len(parts) - 1:
                    raise FuseOSError(errno.ENOENT)
                match = part
            real = os.path.join(real, match)
        return real

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path))
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino",
                "st_atime", "st_mtime", "st_ctime")
        out = {k: getattr(st, k) for k in keys}
        out["st_atime"], out["st_mtime"], out["st_ctime"] = st.st_atime_ns / 1e9, st.st_mtime_ns / 1e9, st.st_ctime_ns / 1e9
        return out

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def readlink(self, path):
        return os.readlink(self._real(path))

    def access(self, path, mode):
        if not os.access(self._real(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._real(path), times)

    def mkdir(self, path, mode):
        os.mkdir(self._exclusive(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        os.unlink(self._real(path))

    def symlink(self, target, source):
        os.symlink(source, self._exclusive(target))

    def link(self, target, source):
        os.link(self._real(source), self._exclusive(target))

    def _exclusive(self, path):
        real = self._real(path)
        if os.path.lexists(real):
            raise FuseOSError(errno.EEXIST)
        return real

    def rename(self, old, new):
        src = self._real(old)
        dst = self._real(new)
        if os.path.lexists(dst) and os.path.samefile(src, dst) and os.path.basename(src) != os.path.basename(dst):
            # A rename that only changes the spelling: the entry takes the new one.
            dst = os.path.join(os.path.dirname(dst), os.path.basename(new))
        os.rename(src, dst)

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def open(self, path, flags):
        return os.open(self._real(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def opendir(self, path):
        self._real(path)
        return 0


if __name__ == "__main__":
    FUSE(FoldFS(sys.argv[1]), sys.argv[2], foreground=True, nothreads=True, allow_other=True)
