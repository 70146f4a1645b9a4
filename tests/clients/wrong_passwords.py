"""paramiko: N logins with a wrong password from source address SRC, then one more connection;
prints "admitted" if it got as far as the SSH handshake, "refused" if it was turned away.
usage: wrong_passwords.py PORT SRC N"""
import socket, sys
import paramiko

port, src, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def transport():
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    t = paramiko.Transport(s)
    t.start_client(timeout=20)
    return t


for i in range(n):
    t = transport()
    try:
        t.auth_password("tester", f"wrong guess {i}")
        raise SystemExit(f"wrong password {i} accepted")
    except paramiko.AuthenticationException:
        pass
    finally:
        t.close()
try:
    transport().close()
    print("admitted")
except (paramiko.SSHException, EOFError, ConnectionError, OSError):
    print("refused")
