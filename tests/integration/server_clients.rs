//! Big files through our server with SFTP clients built on other SSH stacks than OpenSSH's and
//! paramiko's: curl (libssh2) and rclone (Go's x/crypto/ssh with pkg/sftp). Window and packet
//! handling differ between stacks, and some GUI clients tripped over russh's with big files.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: usize = 48;

/// A file of `MIB` MiB with a pattern that differs in every MiB.
fn big_source(sb: &Sandbox) -> PathBuf {
    use std::io::Write;
    let src = sb.path().join("src.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("create src"));
    for i in 0..MIB {
        f.write_all(&pattern(1 << 20, i as u64 + 7))
            .expect("write src");
    }
    f.flush().expect("flush src");
    src
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).expect("read a") == std::fs::read(b).expect("read b")
}

/// Uploads a big file to `up/big.bin` with `upload(local source)`, downloads it back with
/// `download(local target)`, and checks both copies byte for byte.
fn round_trip(
    client: &str,
    sb: &Sandbox,
    hub: &Hub,
    upload: impl FnOnce(&str) -> Output,
    download: impl FnOnce(&str) -> Output,
) {
    let src = big_source(sb);
    let o = upload(src.to_str().expect("utf-8 path"));
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), hub.log_text());
    assert!(
        same_bytes(&src, &hub.root.p("up/big.bin")),
        "{client} upload differs"
    );
    let back = sb.path().join("back.bin");
    let o = download(back.to_str().expect("utf-8 path"));
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), hub.log_text());
    assert!(same_bytes(&src, &back), "{client} download differs");
}

/// curl (libssh2) with the hub's client key; `path` is below the served root.
fn curl(hub: &Hub, args: &[&str], path: &str) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--insecure"])
        .arg("--key")
        .arg(&hub.key)
        .arg("--pubkey")
        .arg(hub.key.with_extension("pub"))
        .args(["--user", "tester:"])
        .args(args)
        .arg(format!("sftp://127.0.0.1:{}/{path}", hub.port))
        .output()
        .expect("run curl")
}

#[test]
fn curl_libssh2_big_file_round_trip() {
    require("curl");
    let v = Command::new("curl").arg("-V").output().expect("curl -V");
    assert!(
        String::from_utf8_lossy(&v.stdout).contains(" sftp"),
        "this curl has no SFTP support (it needs libssh2 or libssh)"
    );
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    round_trip(
        "curl",
        &sb,
        &hub,
        // --ftp-create-dirs makes the missing folder (curl applies it to SFTP too).
        |src| {
            curl(
                &hub,
                &["--ftp-create-dirs", "--upload-file", src],
                "up/big.bin",
            )
        },
        |back| curl(&hub, &["--output", back], "up/big.bin"),
    );
}

#[test]
fn rclone_go_sftp_big_file_round_trip() {
    require("rclone");
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    // An on-the-fly remote: no shell commands (our server grants none) and no config file.
    let remote = format!(
        ":sftp,host=127.0.0.1,port={},user=tester,key_file={},shell_type=none,disable_hashcheck=true:",
        hub.port,
        hub.key.display()
    );
    let rclone = |args: &[&str]| {
        Command::new("rclone")
            .args(args)
            .args([
                "--config",
                "/dev/null",
                "--retries",
                "1",
                "--low-level-retries",
                "1",
            ])
            .output()
            .expect("run rclone")
    };
    let big = format!("{remote}up/big.bin");
    round_trip(
        "rclone",
        &sb,
        &hub,
        |src| rclone(&["copyto", src, &big]),
        |back| rclone(&["copyto", &big, back]),
    );
    // Its listing parses our attributes: the size it reports is the file's.
    let o = rclone(&["size", "--json", &format!("{remote}up")]);
    assert!(o.status.success(), "{}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("\"bytes\":{}", MIB << 20)),
        "rclone size: {text}"
    );
}
