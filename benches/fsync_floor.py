#!/usr/bin/env python3
"""What one durability barrier per file costs on a disk, with no network and no SSH.

usage: fsync_floor.py DIR [FILES] [WRITERS]
Writes FILES files of 8 KiB into DIR from WRITERS processes at once, each to a temp name then
renamed (as a sync writes them): without fsync, then with an fsync before each rename, twice
over, and prints the best time of each. The files are left in DIR (floor-*): deleting them
would slow whatever the disk creates next. Over plain SFTP the only barrier is per file
(fsync@openssh.com on one handle), so the difference is the least a durable sync of that
many files adds to the time of rsync, which makes no fsync at all.
"""
import multiprocessing as mp
import os
import sys
import time


def write_some(args):
    folder, first, count, durable = args
    data = os.urandom(8192)
    for i in range(first, first + count):
        path = os.path.join(folder, f"f{i}")
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path + ".tmp", path)


def timed(base, files, writers, durable, turn):
    folder = os.path.join(base, f"floor-{turn}-{int(durable)}")
    os.makedirs(folder)
    os.sync()
    each = files // writers
    with mp.Pool(writers) as pool:
        start = time.monotonic()
        pool.map(write_some, [(folder, k * each, each, durable) for k in range(writers)])
        return time.monotonic() - start


def main():
    base = sys.argv[1]
    files = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    writers = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    plain, durable = float("inf"), float("inf")
    for turn in range(2):
        plain = min(plain, timed(base, files, writers, False, turn))
        durable = min(durable, timed(base, files, writers, True, turn))
    print(f"{files} files of 8 KiB by {writers} writers: {plain:.2f} s, "
          f"with an fsync each {durable:.2f} s ({durable - plain:+.2f} s)")


if __name__ == "__main__":
    main()
