"""Shared bits of the paramiko drivers: connect to the test server with a key."""
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
