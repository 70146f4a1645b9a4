"""paramiko: every basic operation against the server. usage: basic.py PORT KEY ROOT"""
import hashlib, os, stat, sys, time
from common import connect, extended

port, key, root = sys.argv[1:4]
t, sftp = connect(port, key)

data = os.urandom(3 * 1024 * 1024 + 17)
with sftp.open("/up.bin", "wb") as f:
    f.set_pipelined(True)
    f.write(data)
assert open(os.path.join(root, "up.bin"), "rb").read() == data, "upload differs"
with sftp.open("up.bin", "rb") as f:
    f.prefetch()
    got = f.read()
assert got == data, "download differs"

sftp.mkdir("d")
assert stat.S_ISDIR(sftp.stat("d").st_mode)
sftp.rmdir("d")
sftp.mkdir("d")
sftp.putfo(__import__("io").BytesIO(b"one"), "d/a.txt")
sftp.putfo(__import__("io").BytesIO(b"two"), "d/b.txt")
names = sorted(sftp.listdir("d"))
assert names == ["a.txt", "b.txt"], names
attrs = sftp.listdir_attr("d")
assert all(a.longname.startswith("-rw") for a in attrs), [a.longname for a in attrs]
st = sftp.stat("d/a.txt")
assert st.st_size == 3
sftp.chmod("d/a.txt", 0o600)
assert sftp.stat("d/a.txt").st_mode & 0o777 == 0o600
sftp.utime("d/a.txt", (1_400_000_000, 1_400_000_000))
assert sftp.stat("d/a.txt").st_mtime == 1_400_000_000
assert int(os.stat(os.path.join(root, "d/a.txt")).st_mtime) == 1_400_000_000

# Plain v3 rename refuses to replace; posix-rename replaces.
try:
    sftp.rename("d/a.txt", "d/b.txt")
    raise SystemExit("rename over an existing file should fail in v3")
except IOError:
    pass
sftp.posix_rename("d/a.txt", "d/b.txt")
assert sftp.open("d/b.txt").read() == b"one"
assert sorted(sftp.listdir("d")) == ["b.txt"]

sftp.symlink("b.txt", "d/l")
assert sftp.readlink("d/l") == "b.txt"
assert stat.S_ISLNK(sftp.lstat("d/l").st_mode)
assert sftp.stat("d/l").st_size == 3
sftp.remove("d/l")
sftp.remove("d/b.txt")
sftp.rmdir("d")
assert sftp.normalize(".") == "/"
assert sftp.normalize("../..") == "/"

# statvfs@openssh.com
kind, msg = extended(sftp, "statvfs@openssh.com", "/")
assert kind == 201, kind
bsize = msg.get_int64()
assert bsize > 0

# append mode
with sftp.open("app.txt", "w") as f:
    f.write(b"a")
with sftp.open("app.txt", "a") as f:
    f.write(b"b")
    f.write(b"c")
assert sftp.open("app.txt").read() == b"abc"
# exclusive create
try:
    sftp.open("app.txt", "x")
    raise SystemExit("O_EXCL on an existing file should fail")
except IOError:
    pass

# missing file → no such file
try:
    sftp.stat("nope")
    raise SystemExit("stat of a missing file succeeded")
except FileNotFoundError:
    pass

# The index refresh extension writes <root>/.sync, visible as a normal file.
kind, msg = extended(sftp, "index-refresh@filesync")
assert kind == 101, kind
assert ".sync" in sftp.listdir("/")
assert os.path.exists(os.path.join(root, ".sync"))

sftp.close()
t.close()
print("ok")
