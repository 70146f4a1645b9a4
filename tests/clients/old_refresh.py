"""paramiko: an index refresh in the form an older filesync sends (no data), as a client that
reads `.sync` alone. usage: old_refresh.py PORT KEY ROOT"""
import sys
from common import connect, extended

port, key, root = sys.argv[1:4]
t, sftp = connect(port, key)
kind, msg = extended(sftp, "index-refresh@filesync")
assert kind == 101, kind
sftp.close()
t.close()
print("ok")
