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
    from paramiko.message import Message
    msg = Message()
    msg.add_string(name)
    for s in strings:
        msg.add_string(s)
    num = sftp._async_request(type(None), CMD_EXTENDED, msg)
    return sftp._read_response(num)
