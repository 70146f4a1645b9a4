"""paramiko: an idle client is disconnected. usage: idle.py PORT KEY ROOT SECONDS"""
import sys, time
from common import connect

port, key, root, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
t, sftp = connect(port, key)
sftp.listdir("/")
time.sleep(secs)
try:
    sftp.listdir("/")
except Exception:
    print("ok")
    sys.exit(0)
print("still connected after", secs, "seconds idle")
sys.exit(1)
