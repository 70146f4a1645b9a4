"""paramiko: a client idle for longer than the server's keepalive bound (it answers the
keepalives, as every SSH client does) is still connected and served.
usage: idle.py PORT KEY ROOT SECONDS"""
import sys, time
from common import connect

port, key, root, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
t, sftp = connect(port, key)
sftp.listdir("/")
time.sleep(secs)
sftp.listdir("/")
print("ok")
