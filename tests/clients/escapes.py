"""paramiko: escape attempts, each must fail. usage: escapes.py PORT KEY ROOT OUTSIDE"""
import os, sys, threading, time
from common import connect, extended

port, key, root, outside = sys.argv[1:5]
t, sftp = connect(port, key)
failures = []


def refused(what, fn):
    try:
        fn()
    except (IOError, OSError):
        return
    failures.append(what)


def extended_ok(reply):
    pass  # an error status already raised IOError in paramiko


rel_out = os.path.relpath(outside, root)  # ../outside
refused("read ../outside/secret", lambda: sftp.open("../outside/secret").read())
refused("read absolute host path", lambda: sftp.open(outside + "/secret").read())
refused("stat ../outside/secret", lambda: sftp.stat(rel_out + "/secret"))
refused("write ../outside/new", lambda: sftp.open("../outside/new", "w").write(b"x"))
refused("write nul", lambda: sftp.open(b"a\x00b", "w").write(b"x"))
refused("write non-utf8", lambda: sftp.open(b"bad\xff\xfe", "w").write(b"x"))
refused("stat non-utf8", lambda: sftp.stat(b"\xff"))
refused("mkdir through link", lambda: sftp.mkdir("link_out/x"))
refused("read through link", lambda: sftp.open("link_out/secret").read())
refused("symlink pointing out", lambda: sftp.symlink("../outside/secret", "esc"))
refused("symlink deep out", lambda: sftp.symlink("a/../../outside", "esc2"))
refused("rename into outside", lambda: sftp.rename("inside.txt", "../outside/moved"))
refused("hardlink of outside", lambda: extended_ok(extended(sftp, "hardlink@openssh.com", "../outside/secret", "hl")))
refused("remove root", lambda: sftp.rmdir("/"))
refused("remove via ..", lambda: sftp.remove("../outside/secret"))
refused("setstat outside", lambda: sftp.chmod("link_out/secret", 0o777))
refused("empty path write", lambda: sftp.open("", "w").write(b"x"))


# A symlink swapped in during requests: a thread flips `flip` between a real folder and a
# link to the outside while the client keeps writing `flip/f`.
real = os.path.join(root, "flip")
stop = threading.Event()


def flipper():
    while not stop.is_set():
        try:
            os.rename(real, real + ".d")
            os.symlink(outside, real)
            time.sleep(0.0005)
            os.unlink(real)
            os.rename(real + ".d", real)
        except OSError:
            pass


os.makedirs(real, exist_ok=True)
th = threading.Thread(target=flipper)
th.start()
for i in range(300):
    try:
        with sftp.open(f"flip/f{i}", "w") as f:
            f.write(b"x")
    except IOError:
        pass
    try:
        sftp.stat("flip/secret")
        failures.append("stat through swapped link saw the outside")
    except IOError:
        pass
stop.set()
th.join()
leaked = [n for n in os.listdir(outside) if n.startswith("f")]
if leaked:
    failures.append(f"files written outside: {leaked[:5]}")

sftp.close()
t.close()
if failures:
    print("NOT REFUSED:", failures)
    sys.exit(1)
print("ok")
