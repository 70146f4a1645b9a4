//! Two-way sync between a local folder and a folder behind OpenSSH's sshd (started by the test
//! on 127.0.0.1), driving the real binary.

mod common;

use common::remote::*;
use std::path::Path;

struct Pair {
    sshd: Sshd,
    home: tempfile::TempDir,
    local: tempfile::TempDir,
    remote: tempfile::TempDir,
}

impl Pair {
    fn new() -> Option<Pair> {
        if !sshd_available() {
            return None;
        }
        let sshd = Sshd::start();
        let home = sshd.home(true);
        Some(Pair {
            sshd,
            home,
            local: tempfile::tempdir().expect("tempdir"),
            remote: tempfile::tempdir().expect("tempdir"),
        })
    }
    fn l(&self) -> &Path {
        self.local.path()
    }
    fn r(&self) -> &Path {
        self.remote.path()
    }
    fn url(&self) -> String {
        self.sshd.url(self.r())
    }
    fn sync(&self) -> String {
        sync_ok(self.home.path(), &self.url(), self.l())
    }
    fn assert_same(&self) {
        let (a, b) = (tree(self.l()), tree(self.r()));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "trees differ"
        );
        assert!(a == b, "file contents differ");
        assert!(temps(self.l()).is_empty(), "{:?}", temps(self.l()));
        assert!(temps(self.r()).is_empty(), "{:?}", temps(self.r()));
    }
}

#[test]
fn propagation_both_ways_and_noop() {
    let Some(t) = Pair::new() else { return };
    write(t.l(), "a.txt", b"local a");
    write(t.l(), "dir/b.txt", b"local b");
    write(t.l(), "big.bin", &bytes(1, 3 << 20));
    write(t.r(), "r.txt", b"remote r");
    write(t.r(), "rdir/deep/c.txt", b"remote c");
    std::fs::create_dir_all(t.r().join("empty")).expect("mkdir");
    t.sync();
    t.assert_same();
    assert_eq!(tree(t.l())["rdir/deep/c.txt"], b"remote c");
    assert_eq!(tree(t.r())["big.bin"], bytes(1, 3 << 20));
    assert!(t.r().join(".sync").is_file(), "the remote index is written");

    // Nothing changed: nothing moves and the remote index is not rewritten.
    let before = std::fs::metadata(t.r().join(".sync"))
        .and_then(|m| m.modified())
        .expect("stat .sync");
    let out = t.sync();
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );
    let after = std::fs::metadata(t.r().join(".sync"))
        .and_then(|m| m.modified())
        .expect("stat .sync");
    assert_eq!(before, after, "a no-op sync rewrote the remote index");

    // Edits, deletions, renames and new folders on both sides.
    write(t.r(), "a.txt", b"remote edit of a, longer");
    std::fs::remove_file(t.l().join("r.txt")).expect("rm");
    std::fs::create_dir_all(t.r().join("dir2")).expect("mkdir");
    std::fs::rename(t.r().join("dir/b.txt"), t.r().join("dir2/b.txt")).expect("mv");
    std::fs::rename(t.l().join("rdir"), t.l().join("rdir-renamed")).expect("mv dir");
    std::fs::remove_dir(t.l().join("empty")).expect("rmdir");
    write(t.l(), "new/x.txt", b"new x");
    t.sync();
    t.assert_same();
    let r = tree(t.r());
    assert_eq!(r["a.txt"], b"remote edit of a, longer");
    assert!(!r.contains_key("r.txt"));
    assert!(r.contains_key("dir2/b.txt") && !r.contains_key("dir/b.txt"));
    assert!(r.contains_key("rdir-renamed/deep/c.txt") && !r.contains_key("rdir/"));
    assert!(!r.contains_key("empty/"));
    // Replaced and deleted files are kept in the remote trash.
    assert!(t.r().join(".sync-trash").is_dir());

    let out = t.sync();
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );
}

#[test]
fn concurrent_edits_keep_both() {
    let Some(t) = Pair::new() else { return };
    write(t.l(), "doc.txt", b"base");
    t.sync();
    write(t.l(), "doc.txt", b"local version");
    write(t.r(), "doc.txt", b"remote version!");
    t.sync();
    t.assert_same();
    let l = tree(t.l());
    let versions: Vec<&Vec<u8>> = l
        .iter()
        .filter(|(k, _)| k.starts_with("doc"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(versions.len(), 2, "{:?}", l.keys());
    assert!(versions.contains(&&b"local version".to_vec()));
    assert!(versions.contains(&&b"remote version!".to_vec()));
    assert!(l.keys().any(|k| k.contains(".sync-conflict-")));
    t.sync();
    t.assert_same();
}

#[test]
fn delete_vs_edit_keeps_the_edit() {
    let Some(t) = Pair::new() else { return };
    write(t.l(), "x.txt", b"v1");
    write(t.l(), "y.txt", b"v1");
    t.sync();
    std::fs::remove_file(t.l().join("x.txt")).expect("rm");
    write(t.r(), "x.txt", b"edited remotely");
    std::fs::remove_file(t.r().join("y.txt")).expect("rm");
    write(t.l(), "y.txt", b"edited locally");
    t.sync();
    t.assert_same();
    assert_eq!(tree(t.l())["x.txt"], b"edited remotely");
    assert_eq!(tree(t.r())["y.txt"], b"edited locally");
}

#[test]
fn clock_skew_later_edit_wins() {
    let Some(t) = Pair::new() else { return };
    write(t.l(), "a.txt", b"one");
    write(t.l(), "b.txt", b"one");
    t.sync();
    // Edits stamped an hour in the past (a machine whose clock is behind) still win: the
    // version vector says they came after what the other side has.
    write(t.l(), "a.txt", b"local edit");
    set_mtime(&t.l().join("a.txt"), -3600);
    write(t.r(), "b.txt", b"remote edit");
    set_mtime(&t.r().join("b.txt"), -3600);
    t.sync();
    t.assert_same();
    assert_eq!(tree(t.r())["a.txt"], b"local edit");
    assert_eq!(tree(t.l())["b.txt"], b"remote edit");
}

#[test]
fn remote_lock_held_is_refused_then_next_sync_works() {
    let Some(t) = Pair::new() else { return };
    write(t.l(), "a.txt", b"a");
    let info = format!(
        r#"{{"host":"elsewhere","pid":1,"time":{},"what":"filesync sync"}}"#,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    write(t.r(), ".sync.lock", info.as_bytes());
    let out = sync(t.home.path(), &t.url(), t.l(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked") && err.contains(".sync.lock"),
        "{err}"
    );
    assert!(
        !t.l().join(".sync.lock").exists(),
        "the local lock is released"
    );
    std::fs::remove_file(t.r().join(".sync.lock")).expect("rm lock");
    t.sync();
    t.assert_same();
}

#[test]
fn permission_denied_is_reported_and_retried() {
    let Some(t) = Pair::new() else { return };
    write(t.l(), "a.txt", b"a");
    write(t.r(), "r.txt", b"r");
    // A read-only SFTP server refuses every write with "permission denied", even for root.
    t.sshd.restart_sftp_flags("-R");
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
    t.sshd.restart_sftp_flags("");
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
    let Some(t) = Pair::new() else { return };
    let mut expect_files = std::collections::BTreeMap::new();
    let mut history: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for i in 0..120 {
        let len = if i % 30 == 0 { 2 << 20 } else { 16 << 10 };
        let rel = format!("d{}/f{i:03}.bin", i % 7);
        let b = bytes(i, len);
        write(t.l(), &rel, &b);
        history.entry(rel.clone()).or_default().push(b.clone());
        expect_files.insert(rel, b);
    }
    for round in 0..3u64 {
        // Change some files each round so every round has work to interrupt.
        for i in (round..120).step_by(5) {
            let rel = format!("d{}/f{i:03}.bin", i % 7);
            let b = bytes(1000 * (round + 1) + i, 20 << 10);
            write(t.l(), &rel, &b);
            history.entry(rel.clone()).or_default().push(b.clone());
            expect_files.insert(rel, b);
        }
        let child = command(t.home.path(), &t.url(), t.l(), &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn filesync");
        let delay = 150 + (round * 277) % 500;
        std::thread::sleep(std::time::Duration::from_millis(delay));
        t.sshd.kill();
        let out = child.wait_with_output().expect("wait filesync");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "round {round}: killed after {delay} ms: {:?}: {err}",
            out.status
        );
        if !out.status.success() {
            assert!(!err.is_empty(), "a failed sync says why");
        }
        // Whatever made it across is whole: every remote file is some version we wrote.
        for (rel, content) in tree(t.r()) {
            if rel.ends_with('/') {
                continue;
            }
            let known = history.get(&rel).is_some_and(|v| v.contains(&content));
            assert!(known, "torn or stray file {rel} after round {round}");
        }
        t.sshd.restart();
        t.sync();
        t.assert_same();
        let l = tree(t.l());
        for (rel, content) in &expect_files {
            assert_eq!(l.get(rel), Some(content), "{rel} lost");
        }
    }
}

/// A small tmpfs as the remote folder (needs root and mount rights; skipped otherwise).
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: &Path, size: &str) -> Option<SmallFs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipping: cannot mount a tmpfs here");
            return None;
        }
        Some(SmallFs(dir.to_path_buf()))
    }
    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(st.success());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn remote_disk_full_fails_cleanly_then_completes() {
    let Some(t) = Pair::new() else { return };
    let Some(fs) = SmallFs::mount(t.r(), "3m") else {
        return;
    };
    for i in 0..6 {
        write(t.l(), &format!("big{i}.bin"), &bytes(i, 1 << 20));
    }
    write(t.l(), "small.txt", b"small");
    let out = sync(t.home.path(), &t.url(), t.l(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disk full"), "{err}");
    // Nothing torn: whatever arrived is whole.
    let l = tree(t.l());
    for (rel, content) in tree(t.r()) {
        assert_eq!(l.get(&rel), Some(&content), "torn {rel}");
    }
    fs.resize("32m");
    t.sync();
    t.assert_same();
}

#[test]
fn remote_syncignore_is_honoured() {
    let Some(t) = Pair::new() else { return };
    write(t.r(), ".syncignore", b"*.log\nbuild/\n");
    write(t.r(), "keep.txt", b"keep");
    write(t.r(), "noise.log", b"ignored");
    write(t.r(), "sub/deeper.log", b"ignored too");
    write(t.r(), "build/out.bin", b"ignored folder");
    t.sync();
    let l = tree(t.l());
    assert!(
        l.contains_key("keep.txt") && l.contains_key(".syncignore"),
        "{:?}",
        l.keys()
    );
    assert!(!l.contains_key("noise.log") && !l.contains_key("sub/deeper.log"));
    assert!(!l.contains_key("build/out.bin"));
    // Ignored remote files are left alone, never deleted.
    t.sync();
    assert!(t.r().join("noise.log").exists() && t.r().join("build/out.bin").exists());
}
