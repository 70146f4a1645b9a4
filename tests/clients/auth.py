"""paramiko: logins that must be refused, and channel requests that must be refused.
usage: auth.py PORT KEY ROOT OTHER_KEY [PASSWORD_TO_ACCEPT]"""
import socket, sys
import paramiko

port, key, root, other = sys.argv[1:5]
accept_pw = sys.argv[5] if len(sys.argv) > 5 else None
failures = []


def transport():
    t = paramiko.Transport(("127.0.0.1", int(port)))
    t.start_client(timeout=20)
    return t


def refused(what, fn):
    t = transport()
    try:
        fn(t)
        if t.is_authenticated():
            failures.append(what)
    except paramiko.AuthenticationException:
        pass
    except paramiko.SSHException:
        pass
    finally:
        t.close()


refused("wrong key", lambda t: t.auth_publickey("tester", paramiko.Ed25519Key.from_private_key_file(other)))
refused("unknown user, wrong key", lambda t: t.auth_publickey("nobody-here", paramiko.Ed25519Key.from_private_key_file(other)))
refused("password attempt", lambda t: t.auth_password("tester", "hunter2-wrong"))
refused("none auth", lambda t: t.auth_none("tester"))

if accept_pw is not None:
    t = transport()
    t.auth_password("tester", accept_pw)
    assert t.is_authenticated(), "right password refused"
    t.close()

# Logged in with the right key: only the sftp subsystem is granted.
t = transport()
t.auth_publickey("anyone", paramiko.Ed25519Key.from_private_key_file(key))
assert t.is_authenticated()
ch = t.open_session()
try:
    ch.exec_command("id")
    failures.append("exec granted")
except paramiko.SSHException:
    pass
ch = t.open_session()
try:
    ch.invoke_shell()
    failures.append("shell granted")
except paramiko.SSHException:
    pass
ch = t.open_session()
try:
    ch.invoke_subsystem("not-sftp")
    failures.append("other subsystem granted")
except paramiko.SSHException:
    pass
try:
    t.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 1234))
    failures.append("port forwarding granted")
except paramiko.ChannelException:
    pass
except paramiko.SSHException:
    pass
try:
    if t.request_port_forward("127.0.0.1", 0):
        failures.append("remote forwarding granted")
except paramiko.SSHException:
    pass
sftp = paramiko.SFTPClient.from_transport(t)
assert sftp.normalize(".") == "/"
print("host_key", t.get_remote_server_key().get_base64())
t.close()

if failures:
    print("NOT REFUSED:", failures)
    sys.exit(1)
print("ok")
