"""paramiko: writes NAME in place (no temp name), stopping half-way with the file open until
its stdin closes, as an app on a slow link does. usage: hold.py PORT KEY ROOT NAME SIZE"""
import random, sys
from common import connect

port, key, root, name, size = sys.argv[1:6]
data = random.Random(7).randbytes(int(size))
t, sftp = connect(port, key)
with sftp.open(name, "wb") as f:
    f.write(data[: len(data) // 2])
    f.flush()
    print("half written", flush=True)
    sys.stdin.read()
    f.write(data[len(data) // 2 :])
sftp.close()
t.close()
print("done", flush=True)
