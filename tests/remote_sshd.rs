//! Two-way sync between a local folder and a folder behind OpenSSH's sshd (started by the test
//! on 127.0.0.1), driving the real binary.

mod common;

use common::pair::{self, Pair};
use common::remote::*;

#[test]
fn propagation_both_ways_and_noop() {
    if let Some(mut t) = Pair::sshd() {
        pair::propagation_both_ways_and_noop(&mut t);
    }
}

#[test]
fn concurrent_edits_keep_both() {
    if let Some(mut t) = Pair::sshd() {
        pair::concurrent_edits_keep_both(&mut t);
    }
}

#[test]
fn delete_vs_edit_keeps_the_edit() {
    if let Some(mut t) = Pair::sshd() {
        pair::delete_vs_edit_keeps_the_edit(&mut t);
    }
}

#[test]
fn clock_skew_later_edit_wins() {
    if let Some(mut t) = Pair::sshd() {
        pair::clock_skew_later_edit_wins(&mut t);
    }
}

#[test]
fn remote_lock_held_is_refused_then_next_sync_works() {
    if let Some(mut t) = Pair::sshd() {
        pair::remote_lock_held_is_refused_then_next_sync_works(&mut t);
    }
}

#[test]
fn permission_denied_is_reported_and_retried() {
    let Some(t) = Pair::sshd() else { return };
    write(t.l(), "a.txt", b"a");
    write(t.r(), "r.txt", b"r");
    // A read-only SFTP server refuses every write with "permission denied", even for root.
    t.sshd_ref().restart_sftp_flags("-R");
    let out = sync(t.home.path(), &t.url(), t.l(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        err.contains(&t.r().display().to_string()),
        "names the remote path: {err}"
    );
    assert!(
        !t.l().join(".sync.lock").exists(),
        "the local lock is released"
    );
    t.sshd_ref().restart_sftp_flags("");
    t.sync();
    t.assert_same();
}

#[test]
fn host_keys_unknown_accept_new_changed() {
    if !sshd_available() {
        return;
    }
    let sshd = Sshd::start();
    let home = sshd.home(false);
    let local = tempfile::tempdir().expect("tempdir");
    let remote = tempfile::tempdir().expect("tempdir");
    write(local.path(), "a.txt", b"a");
    let url = sshd.url(remote.path());

    // Unknown: refused, with the fingerprint and the flag to trust it; nothing synced.
    let out = sync(home.path(), &url, local.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SHA256:") && err.contains("--accept-new"),
        "{err}"
    );
    assert!(!remote.path().join("a.txt").exists());

    // Accepted with --accept-new and remembered.
    let out = sync(home.path(), &url, local.path(), &["--accept-new"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kh = home.path().join(".ssh/known_hosts");
    let text = std::fs::read_to_string(&kh).expect("known_hosts");
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{text}"
    );
    sync_ok(home.path(), &url, local.path());

    // Hashed known_hosts entries work too.
    let st = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(st.status.success());
    assert!(
        !std::fs::read_to_string(&kh)
            .expect("kh")
            .contains("127.0.0.1")
    );
    sync_ok(home.path(), &url, local.path());

    // Changed: refused loudly, even with --accept-new.
    let other = tempfile::tempdir().expect("tempdir");
    let k = other.path().join("k");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&k)
        .output()
        .expect("ssh-keygen");
    assert!(st.status.success());
    let pubkey = std::fs::read_to_string(k.with_extension("pub")).expect("pub");
    let mut parts = pubkey.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        sshd.port,
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    std::fs::write(&kh, line).expect("write known_hosts");
    write(local.path(), "b.txt", b"b");
    let out = sync(home.path(), &url, local.path(), &["--accept-new"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CHANGED"), "{err}");
    assert!(!remote.path().join("b.txt").exists());
}

#[test]
fn killing_the_server_mid_sync_tears_nothing() {
    if let Some(mut t) = Pair::sshd() {
        pair::killing_the_server_mid_sync_tears_nothing(&mut t);
    }
}

#[test]
fn remote_disk_full_fails_cleanly_then_completes() {
    if let Some(mut t) = Pair::sshd() {
        pair::remote_disk_full_fails_cleanly_then_completes(&mut t);
    }
}

#[test]
fn remote_syncignore_is_honoured() {
    if let Some(mut t) = Pair::sshd() {
        pair::remote_syncignore_is_honoured(&mut t);
    }
}

/// A write the index calls fresh (nothing was at the path when scanned) never replaces a file
/// that appeared there since: through SFTP as on the local disk, the newcomer stays as it is.
#[test]
fn a_fresh_write_never_replaces_a_newcomer() {
    use filesync::index::MTime;
    use filesync::store::{Put, Reader, Store};
    if !sshd_available() {
        return;
    }
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let remote_dir = tmp.path().join("remote");
    let local_dir = tmp.path().join("local");
    std::fs::create_dir_all(&remote_dir).unwrap();
    std::fs::create_dir_all(&local_dir).unwrap();
    let cfg_path = tmp.path().join("config.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "root = {:?}\n[peers.r]\nurl = \"sftp://{}@127.0.0.1:{}{}\"\nidentity = {:?}\nknown_hosts = {:?}\n",
            local_dir,
            sshd.user,
            sshd.port,
            remote_dir.display(),
            sshd.key,
            sshd.known_hosts
        ),
    )
    .unwrap();
    let cfg = filesync::config::Config::load(Some(&cfg_path)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (target, _) = filesync::target::Target::parse("r", &cfg).unwrap();
        let remote = filesync::commands::open_target(&target, &cfg, false)
            .await
            .unwrap();
        let local = filesync::store::LocalStore::open(&local_dir, 3600).unwrap();
        let p = filesync::relpath::RelPath::parse("sub/new.txt").unwrap();
        let put = Put {
            mtime: MTime::new(1_700_000_000, 0),
            expect: None,
            fresh: true,
            size: 13,
        };
        let data = || -> Reader { Box::pin(std::io::Cursor::new(b"from the sync".to_vec())) };
        for (store, dir) in [
            (&remote as &dyn Store, &remote_dir),
            (&local as &dyn Store, &local_dir),
        ] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("sub/new.txt"), "arrived meanwhile").unwrap();
            let err = store.write(&p, data(), put).await.unwrap_err().to_string();
            assert!(err.contains("appeared"), "{err}");
            assert_eq!(
                std::fs::read_to_string(dir.join("sub/new.txt")).unwrap(),
                "arrived meanwhile"
            );
            // Once it is gone, the same fresh write lands.
            std::fs::remove_file(dir.join("sub/new.txt")).unwrap();
            store.write(&p, data(), put).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.join("sub/new.txt")).unwrap(),
                "from the sync"
            );
            // A source longer than the index said is written whole, never cut at the hint.
            let q = filesync::relpath::RelPath::parse("sub/grew.txt").unwrap();
            let long = vec![b'x'; 300_000];
            let short_hint = Put { size: 2, ..put };
            store
                .write(&q, Box::pin(std::io::Cursor::new(long.clone())), short_hint)
                .await
                .unwrap();
            assert_eq!(std::fs::read(dir.join("sub/grew.txt")).unwrap(), long);
            std::fs::remove_file(dir.join("sub/grew.txt")).unwrap();
            let leftovers: Vec<_> = std::fs::read_dir(dir.join("sub"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
        }
    });
}

#[test]
fn remote_trash_expires_now_and_then() {
    if let Some(mut t) = Pair::sshd() {
        pair::remote_trash_expires_now_and_then(&mut t);
    }
}

#[test]
fn an_index_update_lock_is_waited_for() {
    if let Some(mut t) = Pair::sshd() {
        pair::an_index_update_lock_is_waited_for(&mut t);
    }
}

#[test]
fn many_files_in_one_sync() {
    if let Some(mut t) = Pair::sshd() {
        pair::many_files_in_one_sync(&mut t);
    }
}

#[test]
fn replaced_small_files_keep_their_old_versions() {
    if let Some(mut t) = Pair::sshd() {
        pair::replaced_small_files_keep_their_old_versions(&mut t);
    }
}

#[test]
fn a_remote_symlink_is_never_written_through() {
    if let Some(mut t) = Pair::sshd() {
        pair::a_remote_symlink_is_never_written_through(&mut t);
    }
}

/// A damaged remote index is refused with advice that works there (not a local command
/// naming a URL), and an index from a later version is not called damaged at all.
#[test]
fn a_bad_remote_index_says_what_to_do_on_that_machine() {
    let Some(t) = Pair::sshd() else { return };
    write(t.l(), "a.txt", b"a");
    write(t.r(), "r.txt", b"r");
    for (bytes, says) in [
        (
            &b"{\"garbage"[..],
            "On that machine run `filesync index --root ",
        ),
        (br#"{".": {".sd": 0}, ".format": 99}"#, "Upgrade filesync"),
    ] {
        write(t.r(), ".sync", bytes);
        let out = sync(t.home.path(), &t.url(), t.l(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(
            !err.contains("sftp://"),
            "advice names a URL as a folder: {err}"
        );
        assert!(!t.r().join("a.txt").exists() && !t.l().join("r.txt").exists());
        assert_eq!(
            std::fs::read(t.r().join(".sync")).ok().as_deref(),
            Some(bytes)
        );
    }
}

/// `host:` with no folder (the login folder) or `sftp://host/` (the whole file system) of a
/// plain server is refused before anything is read or written there.
#[test]
fn a_target_without_a_folder_is_refused_on_a_plain_server() {
    let Some(t) = Pair::sshd() else { return };
    let s = t.sshd_ref();
    let whole = format!("sftp://{}@127.0.0.1:{}/", s.user, s.port);
    let login = format!("{}@127.0.0.1:{}", s.user, s.port);
    for (url, says) in [(whole, "whole file system"), (login, "login folder")] {
        let out = sync(t.home.path(), &url, t.l(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {err}");
        assert!(err.contains(says), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(
        !std::path::Path::new("/.sync").exists() && !std::path::Path::new("/.sync.lock").exists()
    );
}
