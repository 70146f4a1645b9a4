"""Shared bits of the paramiko drivers: connect to the test server with a key, run clients."""
import threading

import paramiko


def connect(port, key, user="tester", **kw):
    t = paramiko.Transport(("127.0.0.1", int(port)))
    t.set_keepalive(0)
    t.start_client(timeout=20)
    t.auth_publickey(user, paramiko.Ed25519Key.from_private_key_file(key))
    return t, paramiko.SFTPClient.from_transport(t)


def extended(sftp, name, *strings):
    """Sends an SSH_FXP_EXTENDED request; returns (type, message) of the reply."""
    from paramiko.sftp import CMD_EXTENDED
    # An error status raises IOError inside paramiko; an OK status comes back as type 101.
    num = sftp._async_request(type(None), CMD_EXTENDED, name, *strings)
    return sftp._read_response(num)


def in_parallel(n, client, errors):
    """Runs client(i) for i in 0..n on threads at once; an exception in one becomes an entry
    in `errors` (every client's failure is reported, not just the first)."""
    def guarded(i):
        try:
            client(i)
        except Exception as e:
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
