"""paramiko: after a real login, SFTP channels fed random packets (random bodies, truncated
ones, lying lengths), then a normal session that must still work.
usage: garbage_sftp.py PORT KEY ROOT CHANNELS PACKETS"""
import os, random, struct, sys, time
import paramiko
from common import connect

port, key, root, channels, packets = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(7)
t, sftp = connect(port, key)
sent = 0
for c in range(channels):
    ch = t.open_session()
    ch.invoke_subsystem("sftp")
    ch.sendall(struct.pack(">IBI", 5, 1, 3))  # INIT, version 3
    for i in range(packets):
        kind = rng.choice([rng.randrange(1, 21), 200, rng.randrange(256)])
        body = bytes([kind]) + os.urandom(rng.randrange(0, 64))
        length = len(body) if rng.random() < 0.9 else rng.choice([0, 1 << 31, len(body) + 7])
        try:
            ch.sendall(struct.pack(">I", length) + body)
            sent += 1
        except (OSError, EOFError, paramiko.SSHException):
            break
    time.sleep(0.05)
    while ch.recv_ready():
        ch.recv(65536)
    ch.close()
# The connection and the server are still fine.
sftp.mkdir("still-fine")
assert "still-fine" in sftp.listdir(".")
sftp.rmdir("still-fine")
sftp.close()
t.close()
t, sftp = connect(port, key)
sftp.listdir(".")
t.close()
print("ok", sent)
