// node ssh2 (Electron and React Native apps): one login and the stack check's file work (see
// tests/integration/server_stacks.rs).
// usage: node stack_ssh2.js HOST PORT USER key:PATH|password:PW LOCAL REMOTE
const fs = require("fs");
const path = require("path");
const { Client } = require("ssh2");

const [host, port, user, auth, local, remote] = process.argv.slice(2);
const [kind, ...rest] = auth.split(":");
const secret = rest.join(":");
const opts = { host, port: Number(port), username: user, readyTimeout: 30000 };
if (kind === "key") opts.privateKey = fs.readFileSync(secret);
else opts.password = secret;

const step = (fn) => new Promise((ok, fail) => fn((err, v) => (err ? fail(err) : ok(v))));
const conn = new Client();
conn.on("ready", () => {
  conn.sftp(async (err, sftp) => {
    try {
      if (err) throw err;
      await step((cb) => sftp.mkdir(remote, cb));
      await step((cb) => sftp.fastPut(path.join(local, "up.bin"), `${remote}/up.bin`, cb));
      const names = await step((cb) => sftp.readdir(remote, cb));
      for (const e of names) console.log("ls:", e.filename);
      await step((cb) => sftp.rename(`${remote}/up.bin`, `${remote}/moved.bin`, cb));
      await step((cb) => sftp.fastGet(`${remote}/moved.bin`, path.join(local, "back.bin"), cb));
      await step((cb) => sftp.mkdir(`${remote}/sub`, cb));
      await step((cb) => sftp.rmdir(`${remote}/sub`, cb));
      await step((cb) => sftp.fastPut(path.join(local, "small.txt"), `${remote}/small.txt`, cb));
      await step((cb) => sftp.unlink(`${remote}/small.txt`, cb));
      console.log("ok", require("ssh2/package.json").version);
      conn.end();
    } catch (e) {
      console.error("failed:", e.message);
      process.exit(1);
    }
  });
});
conn.on("error", (e) => {
  console.error("connection failed:", e.message);
  process.exit(1);
});
conn.connect(opts);
