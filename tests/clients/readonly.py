"""paramiko: a read-only server lets clients read and refuses every change.
usage: readonly.py PORT KEY ROOT"""
import io, sys
from common import connect, extended

port, key, root = sys.argv[1:4]
t, sftp = connect(port, key)
assert sftp.open("present.txt").read() == b"here"
assert sftp.listdir("/") == ["present.txt"]
failures = []
for what, fn in [
    ("upload", lambda: sftp.putfo(io.BytesIO(b"x"), "new.txt")),
    ("remove", lambda: sftp.remove("present.txt")),
    ("mkdir", lambda: sftp.mkdir("d")),
    ("rename", lambda: sftp.rename("present.txt", "moved.txt")),
    ("chmod", lambda: sftp.chmod("present.txt", 0o777)),
    ("symlink", lambda: sftp.symlink("present.txt", "l")),
    ("index refresh", lambda: extended(sftp, "index-refresh@filesync")),
]:
    try:
        fn()
        failures.append(what)
    except PermissionError:
        pass
    except IOError as e:
        failures.append(f"{what}: wrong error {e!r}")
if failures:
    print("NOT REFUSED:", failures)
    sys.exit(1)
print("ok")
