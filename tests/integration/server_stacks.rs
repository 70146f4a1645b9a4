//! Every SSH stack that phone and desktop apps embed, against `filesync serve` and against the
//! hub daemon: a key login and a password login, each putting and getting a 20 MiB file
//! byte for byte, listing, renaming, making and removing a folder, removing a file. Drivers
//! for the library stacks are in `tests/clients/` (`stack_*`).

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PASSWORD: &str = "correct horse battery staple";
const MIB: usize = 20;

/// A started hub that takes key and password logins, and a local folder with the files to
/// move.
struct Stage {
    sb: Sandbox,
    hub: Hub,
    local: Folder,
    /// Client keys, all authorized: OpenSSH format, and PEM for the Java and Ruby stacks.
    ed25519: PathBuf,
    ecdsa_pem: PathBuf,
    rsa_pem: PathBuf,
}

enum Login {
    Key(PathBuf),
    Password,
}

impl Login {
    /// The drivers' `key:PATH` / `password:PW` argument.
    fn arg(&self) -> String {
        match self {
            Login::Key(k) => format!("key:{}", k.display()),
            Login::Password => format!("password:{PASSWORD}"),
        }
    }
}

/// `legacy`: the hub also offers SHA-1 key exchange and MACs (`legacy_algorithms`).
fn stage(kind: HubKind, legacy: bool) -> Stage {
    let sb = Sandbox::new();
    let hash = {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password_with_salt(PASSWORD.as_bytes(), b"filesynctestsalt")
            .expect("hash")
            .to_string()
    };
    let mut hub = Hub::new(
        &sb,
        kind,
        &format!("password_hash = {hash:?}\nlegacy_algorithms = {legacy}\n"),
    );
    let ecdsa_pem = sb.path().join("ecdsa_pem");
    let rsa_pem = sb.path().join("rsa_pem");
    // PEM: what JSch 0.1.55, Trilead and net-ssh read.
    keygen_pem(&ecdsa_pem, "ecdsa");
    keygen_pem(&rsa_pem, "rsa");
    let mut ak = std::fs::read_to_string(&hub.authorized_keys).expect("authorized_keys");
    for k in [&ecdsa_pem, &rsa_pem] {
        ak.push_str(&std::fs::read_to_string(k.with_extension("pub")).expect("pub"));
    }
    std::fs::write(&hub.authorized_keys, ak).expect("authorized_keys");
    let local = sb.folder("local");
    let mut big = Vec::with_capacity(MIB << 20);
    for i in 0..MIB {
        big.extend_from_slice(&pattern(1 << 20, i as u64 + 11));
    }
    local.write("up.bin", big);
    local.write("small.txt", "a small file\n");
    hub.start();
    Stage {
        ed25519: hub.key.clone(),
        sb,
        hub,
        local,
        ecdsa_pem,
        rsa_pem,
    }
}

/// Whether a listing of the folder showed `up.bin` (a driver's `ls: up.bin`, or a line of an
/// SFTP program's own listing; not the echo of a command or a transfer).
fn listed(out: &str) -> bool {
    out.lines().map(str::trim).any(|l| {
        !l.starts_with("sftp>")
            && !l.contains("=>")
            && (l == "ls: up.bin" || l.ends_with("/up.bin") || l.ends_with(" up.bin"))
    })
}

/// Runs `stack` once per login (its key, then the password) and checks what it did.
#[track_caller]
fn check(st: &Stage, name: &str, key: &Path, stack: impl Fn(&Stage, &Login, &str) -> Ran) {
    for (login, dir) in [
        (Login::Key(key.to_path_buf()), "key-login"),
        (Login::Password, "password-login"),
    ] {
        let _ = std::fs::remove_file(st.local.p("back.bin"));
        let r = stack(st, &login, dir);
        let how = login.arg();
        assert!(
            r.status.success(),
            "{name} ({how}): {r}\nhub log:\n{}",
            st.hub.log_text()
        );
        assert!(
            listed(&r.stdout),
            "{name} ({how}): no listing of up.bin: {r}"
        );
        let sent = st.local.read("up.bin");
        assert!(
            st.local.get("back.bin") == Some(sent.clone()),
            "{name} ({how}): download differs"
        );
        let moved = st.hub.root.get(&format!("{dir}/moved.bin"));
        assert!(moved == Some(sent), "{name} ({how}): upload differs");
        for gone in ["up.bin", "sub", "small.txt"] {
            assert!(
                !st.hub.root.exists(&format!("{dir}/{gone}")),
                "{name} ({how}): {dir}/{gone} is still there"
            );
        }
        std::fs::remove_dir_all(st.hub.root.p(dir)).expect("clean up");
    }
}

fn ran(o: std::process::Output) -> Ran {
    Ran {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Several commands as one: stops at the first that fails.
fn in_turn(cmds: Vec<Command>) -> Ran {
    let mut all = Ran {
        status: std::process::ExitStatus::default(),
        stdout: String::new(),
        stderr: String::new(),
    };
    for mut c in cmds {
        let r = ran(c.output().expect("run client"));
        all.stdout.push_str(&r.stdout);
        all.stderr.push_str(&r.stderr);
        all.status = r.status;
        if !r.status.success() {
            break;
        }
    }
    all
}

/// The stack check's file work as an `sftp`/`psftp` batch (paths relative to the login folder).
fn batch(local: &Path, dir: &str, mv: &str, ls: &str) -> String {
    let l = local.display();
    format!(
        "mkdir {dir}\nput {l}/up.bin {dir}/up.bin\n{ls} {dir}\n{mv} {dir}/up.bin {dir}/moved.bin\n\
         get {dir}/moved.bin {l}/back.bin\nmkdir {dir}/sub\nrmdir {dir}/sub\n\
         put {l}/small.txt {dir}/small.txt\nrm {dir}/small.txt\n"
    )
}

fn with_stdin(mut c: Command, input: &str) -> Ran {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    ran(child.wait_with_output().expect("wait"))
}

fn openssh(st: &Stage, login: &Login, dir: &str) -> Ran {
    require("sftp");
    let mut c = Command::new("sftp");
    c.args(["-b", "-", "-P", &st.hub.port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR"]);
    match login {
        Login::Key(k) => {
            c.arg("-i").arg(k).args(["-o", "IdentitiesOnly=yes"]);
        }
        Login::Password => {
            // `sftp -b` makes ssh refuse to ask for passwords (BatchMode, first on its command
            // line); a wrapper leaves that out, and askpass answers.
            let askpass = st
                .sb
                .file("askpass", &format!("#!/bin/sh\necho '{PASSWORD}'\n"));
            let wrapper = st.sb.file(
                "ssh-no-batchmode",
                "#!/bin/sh\nfor a do shift; [ \"$a\" = \"-obatchmode yes\" ] || set -- \"$@\" \"$a\"; done\nexec ssh \"$@\"\n",
            );
            for f in [&askpass, &wrapper] {
                make_executable(f);
            }
            c.arg("-S")
                .arg(&wrapper)
                .args([
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ])
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force");
        }
    }
    c.arg("tester@127.0.0.1");
    with_stdin(c, &batch(&st.local.path, dir, "rename", "ls -1"))
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A driver script in `tests/clients/` run with `program`: HOST PORT USER LOGIN LOCAL DIR.
fn driver(st: &Stage, program: &[&str], login: &Login, dir: &str, extra: &[&str]) -> Ran {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let (prog, args) = program.split_first().expect("program");
    ran(Command::new(prog)
        .current_dir(&clients)
        .args(args)
        .args([
            "127.0.0.1",
            &st.hub.port.to_string(),
            "tester",
            &login.arg(),
        ])
        .arg(&st.local.path)
        .arg(dir)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}")))
}

fn paramiko(st: &Stage, login: &Login, dir: &str) -> Ran {
    require_python("paramiko");
    driver(st, &["python3", "stack_paramiko.py"], login, dir, &[])
}

fn asyncssh(st: &Stage, login: &Login, dir: &str) -> Ran {
    require_python("asyncssh");
    driver(st, &["python3", "stack_asyncssh.py"], login, dir, &[])
}

fn node_ssh2(st: &Stage, login: &Login, dir: &str) -> Ran {
    require("node");
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules/ssh2");
    assert!(
        module.is_dir(),
        "node's ssh2 is missing: run `npm ci --prefix tests/clients --ignore-scripts` (scripts/install-test-deps.sh does)"
    );
    driver(st, &["node", "stack_ssh2.js"], login, dir, &[])
}

fn libssh(st: &Stage, login: &Login, dir: &str) -> Ran {
    let bin = st.sb.path().join("stack_libssh");
    if !bin.exists() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/stack_libssh.c");
        let o = Command::new("cc")
            .arg("-O1")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .arg("-lssh")
            .output()
            .expect("run cc");
        assert!(
            o.status.success(),
            "cannot build the libssh driver (apt-get install -y libssh-dev gcc): {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    driver(st, &[bin.to_str().expect("utf-8")], login, dir, &[])
}

/// A Java driver run from its source (JDK 11+) with Debian's jar of its library.
fn java(st: &Stage, jar: &str, source: &str, login: &Login, dir: &str) -> Ran {
    require("java");
    let jar = Path::new("/usr/share/java").join(jar);
    assert!(
        jar.exists(),
        "{} is missing: install it with `apt-get install -y libjsch-java libjenkins-trilead-ssh2-java`",
        jar.display()
    );
    driver(
        st,
        &["java", "-cp", jar.to_str().expect("utf-8"), source],
        login,
        dir,
        &[],
    )
}

fn jsch(st: &Stage, login: &Login, dir: &str) -> Ran {
    java(st, "jsch.jar", "StackJsch.java", login, dir)
}

fn trilead(st: &Stage, login: &Login, dir: &str) -> Ran {
    java(
        st,
        "jenkins-trilead-ssh2.jar",
        "StackTrilead.java",
        login,
        dir,
    )
}

fn net_sftp(st: &Stage, login: &Login, dir: &str) -> Ran {
    require("ruby");
    driver(st, &["ruby", "stack_netsftp.rb"], login, dir, &[])
}

fn curl(st: &Stage, login: &Login, dir: &str) -> Ran {
    require("curl");
    let url = |p: &str| format!("sftp://127.0.0.1:{}/{p}", st.hub.port);
    let l = &st.local.path;
    let base = || {
        let mut c = Command::new("curl");
        c.args(["--silent", "--show-error", "--fail", "--insecure"]);
        match login {
            Login::Key(k) => {
                c.arg("--key")
                    .arg(k)
                    .arg("--pubkey")
                    .arg(k.with_extension("pub"));
                c.args(["--user", "tester:"]);
            }
            Login::Password => {
                c.args(["--user", &format!("tester:{PASSWORD}")]);
            }
        }
        c
    };
    let with = |args: &[&str], target: String| {
        let mut c = base();
        c.args(args).arg(target);
        c
    };
    let up = format!("{}/up.bin", l.display());
    let back = format!("{}/back.bin", l.display());
    let small = format!("{}/small.txt", l.display());
    let q = |cmd: String| {
        [
            "--quote".to_string(),
            cmd,
            "--output".into(),
            "/dev/null".into(),
        ]
    };
    in_turn(vec![
        with(
            &["--ftp-create-dirs", "--upload-file", &up],
            url(&format!("{dir}/up.bin")),
        ),
        with(&[], url(&format!("{dir}/"))),
        with(
            &q(format!("rename /{dir}/up.bin /{dir}/moved.bin"))
                .each_ref()
                .map(String::as_str),
            url(""),
        ),
        with(&["--output", &back], url(&format!("{dir}/moved.bin"))),
        with(
            &q(format!("mkdir /{dir}/sub"))
                .each_ref()
                .map(String::as_str),
            url(""),
        ),
        with(
            &q(format!("rmdir /{dir}/sub"))
                .each_ref()
                .map(String::as_str),
            url(""),
        ),
        with(&["--upload-file", &small], url(&format!("{dir}/small.txt"))),
        with(
            &q(format!("rm /{dir}/small.txt"))
                .each_ref()
                .map(String::as_str),
            url(""),
        ),
    ])
}

fn rclone(st: &Stage, login: &Login, dir: &str) -> Ran {
    require("rclone");
    let auth = match login {
        Login::Key(k) => format!("key_file={}", k.display()),
        Login::Password => {
            let o = Command::new("rclone")
                .args(["obscure", PASSWORD])
                .output()
                .expect("rclone obscure");
            format!("pass={}", String::from_utf8_lossy(&o.stdout).trim())
        }
    };
    let remote = format!(
        ":sftp,host=127.0.0.1,port={},user=tester,{auth},shell_type=none,disable_hashcheck=true:",
        st.hub.port
    );
    let at = |p: &str| format!("{remote}{dir}{p}");
    let l = &st.local.path;
    let rc = |args: Vec<String>| {
        let mut c = Command::new("rclone");
        c.args(args).args([
            "--config",
            "/dev/null",
            "--retries",
            "1",
            "--low-level-retries",
            "1",
        ]);
        c
    };
    let mut r = in_turn(vec![
        rc(vec!["mkdir".into(), at("")]),
        rc(vec![
            "copyto".into(),
            format!("{}/up.bin", l.display()),
            at("/up.bin"),
        ]),
        rc(vec!["lsf".into(), at("")]),
        rc(vec!["moveto".into(), at("/up.bin"), at("/moved.bin")]),
        rc(vec![
            "copyto".into(),
            at("/moved.bin"),
            format!("{}/back.bin", l.display()),
        ]),
        rc(vec!["mkdir".into(), at("/sub")]),
        rc(vec!["rmdir".into(), at("/sub")]),
        rc(vec![
            "copyto".into(),
            format!("{}/small.txt", l.display()),
            at("/small.txt"),
        ]),
        rc(vec!["deletefile".into(), at("/small.txt")]),
    ]);
    r.stdout = r.stdout.lines().map(|n| format!("ls: {n}\n")).collect();
    r
}

/// PuTTY's psftp, pinned to the hub's ed25519 host key, with its own key format (puttygen).
fn psftp(st: &Stage, login: &Login, dir: &str) -> Ran {
    require("psftp");
    require("puttygen");
    let script = st
        .sb
        .file("psftp.batch", &batch(&st.local.path, dir, "mv", "ls"));
    let mut c = Command::new("psftp");
    c.args(["-batch", "-P", &st.hub.port.to_string()])
        .args(["-hostkey", &host_fingerprint(&st.hub)])
        .arg("-b")
        .arg(&script);
    match login {
        Login::Key(k) => {
            let ppk = k.with_extension("ppk");
            if !ppk.exists() {
                let o = Command::new("puttygen")
                    .arg(k)
                    .args(["-O", "private", "-o"])
                    .arg(&ppk)
                    .output()
                    .expect("puttygen");
                assert!(
                    o.status.success(),
                    "puttygen: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            c.arg("-i").arg(ppk);
        }
        Login::Password => {
            c.args(["-pw", PASSWORD]);
        }
    }
    c.arg("tester@127.0.0.1");
    ran(c.output().expect("run psftp"))
}

/// `SHA256:…` of the hub's ed25519 host key.
fn host_fingerprint(hub: &Hub) -> String {
    let o = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&hub.host_key)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

/// One test per stack and server: `server_stacks::serve::jsch`, `server_stacks::daemon::jsch`.
/// `legacy`: the stack needs `legacy_algorithms` (it knows only SHA-1 key exchange).
macro_rules! stacks {
    ($($name:ident: $key:ident, $legacy:literal;)*) => {
        mod serve {
            use crate::harness::HubKind;
            $( #[test] fn $name() {
                let st = super::stage(HubKind::Serve, $legacy);
                super::check(&st, stringify!($name), &st.$key, super::$name);
            } )*
        }
        mod daemon {
            use crate::harness::HubKind;
            $( #[test] fn $name() {
                let st = super::stage(HubKind::Daemon, $legacy);
                super::check(&st, stringify!($name), &st.$key, super::$name);
            } )*
        }
    };
}

stacks!(
    openssh: ed25519, false;
    paramiko: ed25519, false;
    asyncssh: ed25519, false;
    curl: ed25519, false;
    rclone: ed25519, false;
    psftp: ed25519, false;
    node_ssh2: ed25519, false;
    libssh: ed25519, false;
    jsch: ecdsa_pem, false;
    net_sftp: ecdsa_pem, false;
    trilead: rsa_pem, true;
);

/// Without `legacy_algorithms` a stack that knows only SHA-1 key exchange cannot connect, and
/// the hub says in one line who it was and what did not match.
#[test]
fn a_stack_that_knows_only_sha1_is_told_apart_in_the_log() {
    let st = stage(HubKind::Serve, false);
    let r = trilead(&st, &Login::Key(st.rsa_pem.clone()), "x");
    assert!(!r.status.success(), "{r}");
    // Logged once the server has closed the connection, so perhaps after the client gave up.
    wait_until(std::time::Duration::from_secs(5), || {
        st.hub.log_text().contains("could not connect")
    });
    let log = st.hub.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("could not connect"))
        .unwrap_or_else(|| panic!("no line for the failed negotiation:\n{log}"));
    assert!(
        line.contains(" INFO ")
            && line.contains(
                "no common key exchange algorithm: client offers diffie-hellman-group-exchange-sha1"
            )
            && line.contains("client=SSH-2.0-TrileadSSH2Java")
            && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
}

/// A client that advertises a small window and a 16 KiB maximum packet (as PuTTY and some
/// GUI clients do) moves a big file both ways without stalling (russh issue #549: GUI clients
/// stuck on files over ~4 MB).
#[test]
fn a_small_window_and_packet_do_not_stall_big_files() {
    require_python("paramiko");
    for kind in [HubKind::Serve, HubKind::Daemon] {
        let st = stage(kind, false);
        check(
            &st,
            "paramiko, 32 KiB window, 16 KiB packets",
            &st.ed25519,
            |st, login, dir| {
                driver(
                    st,
                    &["python3", "stack_paramiko.py"],
                    login,
                    dir,
                    &["32768", "16384"],
                )
            },
        );
    }
}

/// OpenSSH's client restricted to one algorithm at a time: each one the hub lists is usable
/// on its own; SHA-1 only with `legacy_algorithms`, and a refusal is one line naming it.
#[test]
fn each_listed_algorithm_works_alone() {
    require("sftp");
    let usable = [
        ("HostKeyAlgorithms", "ssh-ed25519"),
        ("HostKeyAlgorithms", "ecdsa-sha2-nistp256"),
        ("HostKeyAlgorithms", "rsa-sha2-512"),
        ("HostKeyAlgorithms", "rsa-sha2-256"),
        ("HostKeyAlgorithms", "ssh-rsa"),
        ("KexAlgorithms", "curve25519-sha256"),
        ("KexAlgorithms", "ecdh-sha2-nistp256"),
        ("KexAlgorithms", "ecdh-sha2-nistp384"),
        ("KexAlgorithms", "diffie-hellman-group14-sha256"),
        ("KexAlgorithms", "diffie-hellman-group16-sha512"),
        ("KexAlgorithms", "diffie-hellman-group-exchange-sha256"),
        ("Ciphers", "aes128-ctr"),
        ("Ciphers", "aes256-ctr"),
        ("Ciphers", "aes256-gcm@openssh.com"),
        ("Ciphers", "chacha20-poly1305@openssh.com"),
        ("MACs", "hmac-sha2-256"),
        ("MACs", "hmac-sha2-512-etm@openssh.com"),
    ];
    let legacy_only = [
        (
            "KexAlgorithms",
            "diffie-hellman-group14-sha1",
            "no common key exchange algorithm",
        ),
        ("MACs", "hmac-sha1", "no common MAC"),
    ];
    let st = stage(HubKind::Serve, false);
    let try_with = |st: &Stage, option: &str, value: &str| {
        let mut c = Command::new("sftp");
        c.args(["-b", "-", "-P", &st.hub.port.to_string(), "-i"])
            .arg(&st.ed25519)
            .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", &format!("{option}={value}")]);
        // A MAC is only negotiated with a cipher that needs one.
        if option == "MACs" {
            c.args(["-o", "Ciphers=aes128-ctr"]);
        }
        c.arg("tester@127.0.0.1");
        with_stdin(c, "pwd\n")
    };
    for (option, value) in usable {
        let r = try_with(&st, option, value);
        assert!(
            r.status.success(),
            "{option}={value}: {r}\nhub log:\n{}",
            st.hub.log_text()
        );
    }
    for (option, value, says) in legacy_only {
        let r = try_with(&st, option, value);
        assert!(
            !r.status.success(),
            "{option}={value} without legacy_algorithms: {r}"
        );
        let named = wait_until(std::time::Duration::from_secs(5), || {
            st.hub.log_text().lines().any(|l| {
                l.contains(" INFO ")
                    && l.contains(&format!("could not connect: {says}: client offers {value}"))
                    && l.contains("client=SSH-2.0-OpenSSH")
            })
        });
        assert!(
            named,
            "{option}={value}: no line naming it:\n{}",
            st.hub.log_text()
        );
    }
    let legacy = stage(HubKind::Serve, true);
    for (option, value, _) in legacy_only {
        let r = try_with(&legacy, option, value);
        assert!(
            r.status.success(),
            "{option}={value} with legacy_algorithms: {r}"
        );
    }
    // What no setting offers is refused in one line too.
    let r = try_with(&st, "HostKeyAlgorithms", "ssh-dss");
    assert!(!r.status.success(), "{r}");
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        st.hub
            .log_text()
            .contains("could not connect: no common host key algorithm: client offers ssh-dss")
    }));
}

/// Client keys of each kind a phone app makes (ed25519, ecdsa, RSA) log in.
#[test]
fn every_kind_of_client_key_logs_in() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Serve, "");
    let keys: Vec<PathBuf> = ["ed25519", "ecdsa", "rsa"]
        .iter()
        .map(|k| sb.keygen(&format!("client_{k}"), k))
        .collect();
    let ak: String = keys
        .iter()
        .map(|k| std::fs::read_to_string(k.with_extension("pub")).expect("pub"))
        .collect();
    std::fs::write(&hub.authorized_keys, ak).expect("authorized_keys");
    hub.start();
    for k in &keys {
        let r = hub.sftp_as("tester", k, "pwd\n");
        assert!(
            r.status.success(),
            "{}: {r}\nhub log:\n{}",
            k.display(),
            hub.log_text()
        );
    }
}

/// A hub made before it kept three host keys has only the ed25519 one: it starts, keeps that
/// key, makes the others beside it, and a laptop that knew only the old key syncs without a
/// word about host keys (OpenSSH's client too).
#[test]
fn an_existing_hubs_host_key_stays_valid() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Daemon, "");
    std::fs::create_dir_all(hub.host_key.parent().expect("state dir")).expect("mkdir");
    keygen_at(&hub.host_key, "ed25519");
    let old = std::fs::read(&hub.host_key).expect("old key");
    hub.start();
    assert_eq!(
        std::fs::read(&hub.host_key).expect("key"),
        old,
        "the old key was replaced"
    );
    assert_eq!(hub.host_keys().len(), 3, "{:?}", hub.host_keys());
    let pubkey = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&hub.host_key)
        .output()
        .expect("ssh-keygen -y");
    let only_old = format!(
        "[127.0.0.1]:{} {}",
        hub.port,
        String::from_utf8_lossy(&pubkey.stdout)
    );
    std::fs::write(sb.home().join(".ssh/known_hosts"), &only_old).expect("known_hosts");
    std::fs::copy(&hub.key, sb.home().join(".ssh/id_ed25519")).expect("key");
    let laptop = sb.folder("laptop");
    laptop.write("from-laptop.txt", "hello");
    let r = sb
        .filesync()
        .args(["sync", "--no-progress", &hub.url()])
        .arg(&laptop.path)
        .ok();
    assert!(
        !r.stderr.to_lowercase().contains("host key") && !r.stderr.contains("WARNING"),
        "{r}"
    );
    assert!(hub.root.exists("from-laptop.txt"));
    require("sftp");
    let kh = sb.file("known_hosts_only_old", &only_old);
    let mut c = Command::new("sftp");
    c.args(["-b", "-", "-P", &hub.port.to_string(), "-i"])
        .arg(&hub.key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("tester@127.0.0.1");
    let r = with_stdin(c, "pwd\n");
    assert!(r.status.success() && !r.stderr.contains("WARNING"), "{r}");
}

/// PuTTY asks for `simple@putty.projects.tartarus.org` on every session: refused quietly, not
/// a warning in the hub's log.
#[test]
fn putty_s_harmless_channel_request_is_no_warning() {
    let st = stage(HubKind::Serve, false);
    let r = psftp(&st, &Login::Password, "putty");
    assert!(r.status.success(), "{r}");
    let log = st.hub.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("simple@putty")),
        "{log}"
    );
}
