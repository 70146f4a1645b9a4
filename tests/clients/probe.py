"""paramiko: what clients do while they look around, each answered with an error they
expect: READLINK on a plain file, STAT of a missing path, MKDIR of a folder that is there.
usage: probe.py PORT KEY ROOT FILE FOLDER"""
import sys
from common import connect

port, key, root, file, folder = sys.argv[1:6]
t, sftp = connect(port, key)
for probe in (lambda: sftp.readlink(file), lambda: sftp.stat("missing"), lambda: sftp.mkdir(folder)):
    try:
        probe()
    except IOError:
        continue
    print("no error from a probe")
    sys.exit(1)
print("ok")
