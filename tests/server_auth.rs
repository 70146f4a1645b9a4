//! Who gets in, what they may open, and how the server starts and stops.

mod common;

use common::server::{Fixture, show};
use std::time::Duration;

#[test]
fn bad_logins_and_non_sftp_channels_are_refused() {
    let fx = Fixture::new();
    let srv = fx.start();
    let other = fx.other_key.to_str().unwrap();
    let o = srv.paramiko("auth.py", &fx.key, &[other]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
    // OpenSSH with a key that is not authorized, as an unknown user.
    let o = srv.sftp_as("nobody-here", &fx.other_key, "pwd\n");
    assert!(!o.status.success(), "wrong key accepted: {}", show(&o));
    let log = srv.log_text();
    assert!(
        log.contains("login refused") && log.contains("127.0.0.1"),
        "{log}"
    );
}

#[test]
fn password_login_only_with_an_argon2_hash() {
    let hash = hash_password("correct horse");
    let fx = Fixture::with_config(&format!("password_hash = {hash:?}\n"));
    let srv = fx.start();
    let other = fx.other_key.to_str().unwrap();
    let o = srv.paramiko("auth.py", &fx.key, &[other, "correct horse"]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
}

fn hash_password(pw: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password_with_salt(pw.as_bytes(), b"filesynctestsalt")
        .unwrap()
        .to_string()
}

#[test]
fn host_key_is_created_private_and_stable_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let first = {
        let srv = fx.start();
        let o = srv.paramiko("auth.py", &fx.key, &[fx.other_key.to_str().unwrap()]);
        assert!(o.status.success(), "{}", show(&o));
        host_key_line(&o)
    };
    let mode = std::fs::metadata(&fx.host_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let srv = fx.start();
    let o = srv.paramiko("auth.py", &fx.key, &[fx.other_key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(host_key_line(&o), first);
    assert!(srv.log_text().contains("SHA256:"), "fingerprint not logged");
}

fn host_key_line(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("host_key "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn missing_authorized_keys_is_a_clear_error() {
    let fx = Fixture::new();
    std::fs::remove_file(&fx.authorized_keys).unwrap();
    let o = fx.serve_command().output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("authorized_keys")
            && err.contains(fx.authorized_keys.to_str().unwrap())
            && err.contains("create it"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_server_with_clients_connected() {
    let fx = Fixture::new();
    let mut srv = fx.start();
    // A client that stays connected (sftp waiting on its stdin).
    let mut client = std::process::Command::new("sftp")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-P",
        ])
        .arg(srv.port.to_string())
        .arg("-i")
        .arg(&fx.key)
        .arg("t@127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        srv.terminate(Duration::from_secs(8)),
        "server did not stop on SIGTERM"
    );
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn idle_clients_are_disconnected() {
    let fx = Fixture::with_config("idle_timeout_secs = 1\n");
    let srv = fx.start();
    let o = srv.paramiko("idle.py", &fx.key, &["3"]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
}
