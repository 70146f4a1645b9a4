"""paramiko: a client that asks and asks and never reads an answer: READ requests for a
file, as fast as it can, on a raw SFTP channel. Exits 0 when the server closes the channel,
printing how many requests it got out. usage: greedy.py PORT KEY ROOT MAX_REQUESTS"""
import struct, sys
from common import connect

port, key, root, most = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t, sftp = connect(port, key)
with sftp.open("big.bin", "wb") as f:
    f.write(b"x" * (1 << 20))
sftp.close()
ch = t.open_session()
ch.invoke_subsystem("sftp")


def packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


def string(b):
    return struct.pack(">I", len(b)) + b


ch.sendall(packet(1, struct.pack(">I", 3)))
ch.sendall(packet(3, struct.pack(">I", 1) + string(b"/big.bin") + struct.pack(">II", 1, 0)))


def replies(buf):
    """The complete packets at the start of buf."""
    out = []
    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
        n = struct.unpack(">I", buf[:4])[0]
        out.append(buf[4:4 + n])
        buf = buf[4 + n:]
    return out


# The handle comes back in the second reply; read just that much, then never again.
got = b""
while len(replies(got)) < 2:
    got += ch.recv(65536)
reply = replies(got)[1]
handle = reply[9:9 + struct.unpack(">I", reply[5:9])[0]]
read = lambda i: packet(5, struct.pack(">I", i) + string(handle) + struct.pack(">QI", 0, 255 * 1024))
sent = 0
try:
    batch = b"".join(read(i) for i in range(10, 1010))
    while sent < most and not ch.closed:
        ch.sendall(batch)
        sent += 1000
except (OSError, EOFError) as e:
    pass
print("sent", sent, "closed" if ch.closed or t.is_active() is False else "open")
