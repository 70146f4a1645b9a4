"""asyncssh: one login and the stack check's file work (see tests/integration/server_stacks.rs).
usage: stack_asyncssh.py HOST PORT USER key:PATH|password:PW LOCAL REMOTE"""
import asyncio, os, sys
import asyncssh

host, port, user, auth, local, remote = sys.argv[1:7]


async def main():
    kind, secret = auth.split(":", 1)
    opts = dict(username=user, known_hosts=None)
    if kind == "key":
        opts.update(client_keys=[secret], password=None)
    else:
        opts.update(client_keys=None, password=secret)
    async with asyncssh.connect(host, int(port), **opts) as conn:
        async with conn.start_sftp_client() as sftp:
            await sftp.mkdir(remote)
            await sftp.put(os.path.join(local, "up.bin"), remote + "/up.bin")
            for name in await sftp.listdir(remote):
                print("ls:", name)
            await sftp.rename(remote + "/up.bin", remote + "/moved.bin")
            await sftp.get(remote + "/moved.bin", os.path.join(local, "back.bin"))
            await sftp.mkdir(remote + "/sub")
            await sftp.rmdir(remote + "/sub")
            await sftp.put(os.path.join(local, "small.txt"), remote + "/small.txt")
            await sftp.remove(remote + "/small.txt")
    print("ok", asyncssh.__version__)


asyncio.run(main())
