//! Who gets in, what they may open, and how the server starts and stops.

use crate::harness::*;
use std::time::Duration;

#[test]
fn bad_logins_and_non_sftp_channels_are_refused() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    hub.python_ok("auth.py", &[hub.other_key.to_str().unwrap()]);
    // OpenSSH with a key that is not authorized, as an unknown user.
    let o = hub.sftp_as("nobody-here", &hub.other_key, "pwd\n");
    assert!(!o.status.success(), "wrong key accepted: {o}");
    // One line per connection that did not get in, once it has ended: who, with which
    // client, and what did not match.
    let lines = |want: &dyn Fn(&str) -> bool| {
        wait_until(Duration::from_secs(5), || {
            hub.log_text()
                .lines()
                .any(|l| l.contains("login refused") && want(l))
        })
    };
    assert!(
        lines(&|l| l.contains(" INFO ")
            && l.contains("is not in authorized_keys")
            && l.contains("client=SSH-2.0-paramiko")
            && l.contains("peer=127.0.0.1:")),
        "{}",
        hub.log_text()
    );
    assert!(
        lines(&|l| l.contains("a password, but password login is off")),
        "{}",
        hub.log_text()
    );
    assert!(
        lines(&|l| l.contains("client=SSH-2.0-OpenSSH") && l.contains("nobody-here")),
        "{}",
        hub.log_text()
    );
}

#[test]
fn password_login_only_with_an_argon2_hash() {
    let hash = hash_password("correct horse");
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, &format!("password_hash = {hash:?}\n"));
    hub.python_ok(
        "auth.py",
        &[hub.other_key.to_str().unwrap(), "correct horse"],
    );
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
    let sb = Sandbox::new();
    let mut hub = Hub::started(&sb, HubKind::Serve, "");
    let other = hub.other_key.to_str().unwrap().to_string();
    let first = host_key_line(&hub.python_ok("auth.py", &[&other]));
    let mode = std::fs::metadata(&hub.host_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    hub.start();
    let again = host_key_line(&hub.python_ok("auth.py", &[&other]));
    assert_eq!(again, first);
    assert!(hub.log_text().contains("SHA256:"), "fingerprint not logged");
}

fn host_key_line(o: &Ran) -> String {
    o.stdout
        .lines()
        .find(|l| l.starts_with("host_key "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_hub_without_authorized_keys_starts_for_paired_devices_only() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Serve, "");
    std::fs::remove_file(&hub.authorized_keys).unwrap();
    hub.start();
    assert!(
        hub.log_text().contains("paired devices only"),
        "{}",
        hub.log_text()
    );
    let o = hub.sftp("ls\n");
    assert!(
        !o.status.success(),
        "a key that was never authorized got in: {o}"
    );
}

#[test]
fn unreadable_authorized_keys_is_a_clear_error() {
    let sb = Sandbox::new();
    let hub = Hub::new(&sb, HubKind::Serve, "");
    std::fs::remove_file(&hub.authorized_keys).unwrap();
    std::fs::create_dir(&hub.authorized_keys).unwrap();
    let o = hub.command().output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("authorized_keys")
            && err.contains(hub.authorized_keys.to_str().unwrap())
            && err.contains("create it"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_server_with_clients_connected() {
    let sb = Sandbox::new();
    let mut hub = Hub::started(&sb, HubKind::Serve, "");
    require("sftp");
    // A client that stays connected (sftp waiting on its stdin).
    let mut client = std::process::Command::new("sftp")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-P"])
        .arg(hub.port.to_string())
        .arg("-i")
        .arg(&hub.key)
        .arg("t@127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        hub.terminate(Duration::from_secs(8)),
        "server did not stop on SIGTERM"
    );
    let _ = client.kill();
    let _ = client.wait();
}
