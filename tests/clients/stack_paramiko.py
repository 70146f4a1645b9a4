"""paramiko: one login and the stack check's file work (see tests/integration/server_stacks.rs).
usage: stack_paramiko.py HOST PORT USER key:PATH|password:PW LOCAL REMOTE [WINDOW PACKET]
WINDOW and PACKET set the channel window and maximum packet the client advertises."""
import os, sys
import paramiko

host, port, user, auth, local, remote = sys.argv[1:7]
kw = {}
if len(sys.argv) > 8:
    kw = dict(default_window_size=int(sys.argv[7]), default_max_packet_size=int(sys.argv[8]))
t = paramiko.Transport((host, int(port)), **kw)
t.start_client(timeout=30)
kind, secret = auth.split(":", 1)
if kind == "key":
    t.auth_publickey(user, paramiko.PKey.from_path(secret))
else:
    t.auth_password(user, secret)
sftp = paramiko.SFTPClient.from_transport(t, window_size=kw.get("default_window_size"),
                                          max_packet_size=kw.get("default_max_packet_size"))
sftp.mkdir(remote)
sftp.put(os.path.join(local, "up.bin"), remote + "/up.bin")
for name in sftp.listdir(remote):
    print("ls:", name)
sftp.rename(remote + "/up.bin", remote + "/moved.bin")
sftp.get(remote + "/moved.bin", os.path.join(local, "back.bin"))
sftp.mkdir(remote + "/sub")
sftp.rmdir(remote + "/sub")
sftp.put(os.path.join(local, "small.txt"), remote + "/small.txt")
sftp.remove(remote + "/small.txt")
sftp.close()
t.close()
print("ok", paramiko.__version__)
