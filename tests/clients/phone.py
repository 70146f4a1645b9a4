"""paramiko as a phone's photo app: uploads photos as NAME.part, then renames each into place
(plain rename for a new photo, posix-rename over an old one), slowly, as over Wi-Fi. Keeps a
copy of each photo as uploaded in KEEP, as the phone keeps its own.
usage: phone.py PORT KEY ROOT KEEP COUNT REPLACE"""
import os, random, sys, time
from common import connect

port, key, root, keep = sys.argv[1:5]
count, replace = int(sys.argv[5]), int(sys.argv[6])
rng = random.Random(16)
t, sftp = connect(port, key)
try:
    sftp.mkdir("DCIM")
except IOError:
    pass
os.makedirs(os.path.join(keep, "DCIM"), exist_ok=True)


def upload(name, data, over):
    part = name + ".part"
    with sftp.open(part, "wb") as f:
        for at in range(0, len(data), 32 * 1024):
            f.write(data[at:at + 32 * 1024])
            time.sleep(0.002)
    if over:
        sftp.posix_rename(part, name)
    else:
        sftp.rename(part, name)
    with open(os.path.join(keep, name), "wb") as f:
        f.write(data)


names = [f"DCIM/IMG_{i:04d}.jpg" for i in range(count)]
for name in names:
    upload(name, rng.randbytes(rng.randint(20_000, 400_000)), over=False)
for name in rng.sample(names, replace):
    upload(name, rng.randbytes(rng.randint(20_000, 400_000)), over=True)
sftp.close()
t.close()
print("uploaded", count, "replaced", replace)
