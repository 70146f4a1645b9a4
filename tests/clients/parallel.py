"""paramiko: N clients at once, each uploading and moving M files.
usage: parallel.py PORT KEY ROOT N M"""
import io, os, sys
from common import connect, in_parallel

port, key, root, n, m = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
errors = []


def client(i):
    t, sftp = connect(port, key)
    sftp.mkdir(f"c{i}")
    sftp.mkdir(f"c{i}/moved")
    for j in range(m):
        sftp.putfo(io.BytesIO(f"client {i} file {j}\n".encode()), f"c{i}/f{j}")
    for j in range(m):
        sftp.posix_rename(f"c{i}/f{j}", f"c{i}/moved/f{j}")
    got = sorted(sftp.listdir(f"c{i}/moved"))
    if len(got) != m or sftp.listdir(f"c{i}") != ["moved"]:
        errors.append(f"client {i}: {len(got)} moved files")
    sftp.close()
    t.close()


in_parallel(n, client, errors)
for i in range(n):
    for j in range(m):
        p = os.path.join(root, f"c{i}", "moved", f"f{j}")
        if open(p).read() != f"client {i} file {j}\n":
            errors.append(f"bad content {p}")
if errors:
    print("\n".join(errors[:20]))
    sys.exit(1)
print("ok")
