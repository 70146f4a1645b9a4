"""paramiko: several clients move big files at once, byte-exact.
usage: bigmulti.py PORT KEY ROOT CLIENTS MIB"""
import hashlib, os, sys
from common import connect, in_parallel

port, key, root, n, mib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
errors = []


def client(i):
    data = hashlib.shake_256(f"client {i}".encode()).digest(mib << 20)
    t, sftp = connect(port, key)
    with sftp.open(f"big{i}.bin", "wb") as f:
        f.set_pipelined(True)
        for off in range(0, len(data), 1 << 20):
            f.write(data[off:off + (1 << 20)])
    with sftp.open(f"big{i}.bin", "rb") as f:
        f.prefetch()
        back = f.read()
    if back != data:
        errors.append(f"client {i}: download differs")
    if open(os.path.join(root, f"big{i}.bin"), "rb").read() != data:
        errors.append(f"client {i}: upload differs")
    sftp.close()
    t.close()


in_parallel(n, client, errors)
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("ok")
