//! Two-way sync scenarios between a local folder and a remote one, run against any SFTP
//! server backend: OpenSSH's sshd (`Sshd`) or our own `filesync serve`.

use super::remote::*;
use super::server::{Fixture, Server};
use std::path::{Path, PathBuf};

pub enum Backend {
    Sshd(Sshd),
    Serve { fx: Fixture, server: Option<Server> },
}

pub struct Pair {
    pub backend: Backend,
    pub home: tempfile::TempDir,
    pub local: tempfile::TempDir,
    remote: PathBuf,
    _remote_dir: Option<tempfile::TempDir>,
    url: String,
}

impl Pair {
    /// A local folder and a folder served by OpenSSH's sshd; `None` when sshd is missing.
    pub fn sshd() -> Option<Pair> {
        if !sshd_available() {
            return None;
        }
        let sshd = Sshd::start();
        let home = sshd.home(true);
        let remote = tempfile::tempdir().expect("tempdir");
        let url = sshd.url(remote.path());
        Some(Pair {
            home,
            local: tempfile::tempdir().expect("tempdir"),
            remote: remote.path().to_path_buf(),
            _remote_dir: Some(remote),
            url,
            backend: Backend::Sshd(sshd),
        })
    }

    /// A local folder and the root of a `filesync serve` on 127.0.0.1.
    pub fn serve() -> Pair {
        let fx = Fixture::new();
        let home = tempfile::tempdir().expect("tempdir");
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir .ssh");
        std::fs::copy(&fx.key, ssh.join("id_ed25519")).expect("copy key");
        let mut t = Pair {
            home,
            local: tempfile::tempdir().expect("tempdir"),
            remote: fx.root.clone(),
            _remote_dir: None,
            url: String::new(),
            backend: Backend::Serve { fx, server: None },
        };
        t.restart_server();
        t
    }

    pub fn sshd_ref(&self) -> &Sshd {
        match &self.backend {
            Backend::Sshd(s) => s,
            Backend::Serve { .. } => panic!("not an sshd pair"),
        }
    }

    pub fn l(&self) -> &Path {
        self.local.path()
    }
    pub fn r(&self) -> &Path {
        &self.remote
    }
    pub fn url(&self) -> String {
        self.url.clone()
    }
    pub fn sync(&self) -> String {
        sync_ok(self.home.path(), &self.url(), self.l())
    }
    pub fn assert_same(&self) {
        let (a, b) = (tree(self.l()), tree(self.r()));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "trees differ"
        );
        assert!(a == b, "file contents differ");
        assert!(temps(self.l()).is_empty(), "{:?}", temps(self.l()));
        // Over OpenSSH our own scan removes leftovers of an interrupted upload at once; our
        // server's index refresh leaves them to its 15-minute rule (they are hidden and ignored).
        if matches!(self.backend, Backend::Sshd(_)) {
            assert!(temps(self.r()).is_empty(), "{:?}", temps(self.r()));
        }
    }

    /// Kills the server and every session it serves: connections drop at once.
    pub fn kill_server(&mut self) {
        match &mut self.backend {
            Backend::Sshd(s) => s.kill(),
            Backend::Serve { server, .. } => {
                if let Some(mut s) = server.take() {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                }
            }
        }
    }

    /// Starts the server again (our server picks a new port: known_hosts follows).
    pub fn restart_server(&mut self) {
        match &mut self.backend {
            Backend::Sshd(s) => s.restart(),
            Backend::Serve { fx, server } => {
                drop(server.take());
                let s = fx.start();
                let pubkey = std::process::Command::new("ssh-keygen")
                    .arg("-y")
                    .arg("-f")
                    .arg(&fx.host_key)
                    .output()
                    .expect("ssh-keygen -y");
                let pubkey = String::from_utf8_lossy(&pubkey.stdout).trim().to_string();
                std::fs::write(
                    self.home.path().join(".ssh/known_hosts"),
                    format!("[127.0.0.1]:{} {pubkey}\n", s.port),
                )
                .expect("write known_hosts");
                self.url = format!("sftp://tester@127.0.0.1:{}/", s.port);
                *server = Some(s);
            }
        }
    }
}

pub fn propagation_both_ways_and_noop(t: &mut Pair) {
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
    // (Our own server refreshes and saves its index itself; only the upload is ours to skip.)
    if matches!(t.backend, Backend::Sshd(_)) {
        assert_eq!(before, after, "a no-op sync rewrote the remote index");
    }

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

pub fn concurrent_edits_keep_both(t: &mut Pair) {
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

pub fn delete_vs_edit_keeps_the_edit(t: &mut Pair) {
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

pub fn clock_skew_later_edit_wins(t: &mut Pair) {
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

pub fn remote_lock_held_is_refused_then_next_sync_works(t: &mut Pair) {
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

pub fn killing_the_server_mid_sync_tears_nothing(t: &mut Pair) {
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
        t.kill_server();
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
        t.restart_server();
        t.sync();
        t.assert_same();
        let l = tree(t.l());
        for (rel, content) in &expect_files {
            assert_eq!(l.get(rel), Some(content), "{rel} lost");
        }
        // The interrupted uploads' temps are cleared up by the next sync, whatever their age.
        assert_eq!(temps(t.r()), Vec::<String>::new(), "round {round}");
        assert_eq!(temps(t.l()), Vec::<String>::new(), "round {round}");
    }
}

/// A symlink on the remote (here to a folder outside the synced one) is never written
/// through: the files meant for a folder of that name stay where they are, with an error
/// naming it, and nothing is deleted on either side by the next sync.
pub fn a_remote_symlink_is_never_written_through(t: &mut Pair) {
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), t.r().join("evil")).expect("symlink");
    write(t.l(), "evil/new.txt", b"mine");
    write(t.l(), "plain.txt", b"fine");
    // A link inside a folder only the remote ignores (its ignore file ignores itself, so it
    // stays there): the remote's walk never lists it, and the local side still sends into it.
    write(t.r(), ".syncignore", b"build/\n/.syncignore\n");
    std::fs::create_dir_all(t.r().join("build")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), t.r().join("build/out")).expect("symlink");
    write(t.l(), "build/out/f.txt", b"mine too");
    for round in 0..2 {
        let out = sync(t.home.path(), &t.url(), t.l(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "round {round}: sync passed\n{err}");
        assert!(
            err.contains("evil") && err.contains("build/out"),
            "round {round}: {err}"
        );
        let written: Vec<_> = std::fs::read_dir(outside.path()).expect("ls").collect();
        assert!(
            written.is_empty(),
            "round {round}: written outside: {written:?}"
        );
        assert_eq!(
            std::fs::read(t.l().join("evil/new.txt")).ok(),
            Some(b"mine".to_vec())
        );
        assert_eq!(
            std::fs::read(t.r().join("plain.txt")).ok(),
            Some(b"fine".to_vec())
        );
    }
}

pub fn remote_syncignore_is_honoured(t: &mut Pair) {
    write(t.r(), ".syncignore", b"*.log\nbuild/\n");
    write(t.r(), "keep.txt", b"keep");
    write(t.r(), "noise.log", b"ignored");
    write(t.r(), "sub/deeper.log", b"ignored too");
    write(t.r(), "build/out.bin", b"ignored folder");
    // A deeper ignore file re-includes what the root's excludes (gitignore precedence).
    write(t.r(), "a/b/.syncignore", b"!keep.log\n");
    write(t.r(), "a/b/keep.log", b"re-included");
    write(t.r(), "a/b/other.log", b"still ignored");
    t.sync();
    let l = tree(t.l());
    assert!(
        l.contains_key("keep.txt") && l.contains_key(".syncignore"),
        "{:?}",
        l.keys()
    );
    assert!(!l.contains_key("noise.log") && !l.contains_key("sub/deeper.log"));
    assert!(!l.contains_key("build/out.bin"));
    assert_eq!(
        l.get("a/b/keep.log").map(Vec::as_slice),
        Some(&b"re-included"[..]),
        "{:?}",
        l.keys()
    );
    assert!(!l.contains_key("a/b/other.log"));
    // Ignored remote files are left alone, never deleted.
    t.sync();
    assert!(t.r().join("noise.log").exists() && t.r().join("build/out.bin").exists());
    // The re-included file's deletion reaches the other side like any other.
    std::fs::remove_file(t.r().join("a/b/keep.log")).expect("rm keep.log");
    t.sync();
    assert!(!t.l().join("a/b/keep.log").exists());
    assert!(t.r().join("a/b/other.log").exists());
    // So does its folder's, even though the ignore file that re-included it went too.
    write(t.r(), "a/b/keep.log", b"back");
    t.sync();
    assert!(t.l().join("a/b/keep.log").exists());
    std::fs::remove_dir_all(t.r().join("a")).expect("rm a");
    t.sync();
    assert!(
        !t.l().join("a/b/keep.log").exists(),
        "{:?}",
        tree(t.l()).keys()
    );
    // The remote index agrees with its disk: made again here, the file reaches the remote.
    write(t.l(), "a/b/.syncignore", b"!keep.log\n");
    write(t.l(), "a/b/keep.log", b"again");
    t.sync();
    assert_eq!(
        std::fs::read(t.r().join("a/b/keep.log")).ok().as_deref(),
        Some(&b"again"[..])
    );
}

/// The remote trash is expired by age (the stamp in each name), at most every few hours: an
/// old entry goes at the first sync, a recent one stays, and a sync soon after does not walk
/// the trash again.
pub fn remote_trash_expires_now_and_then(t: &mut Pair) {
    write(t.r(), "keep.txt", b"k");
    write(t.r(), ".sync-trash/old.txt~20200101-000000", b"old");
    write(t.r(), ".sync-trash/sub/older.txt~20190101-000000", b"older");
    let recent = format!(
        "recent.txt~{}",
        filesync::store::stamp(filesync::store::now_secs())
    );
    write(t.r(), &format!(".sync-trash/{recent}"), b"recent");
    t.sync();
    let trash = t.r().join(".sync-trash");
    assert!(!trash.join("old.txt~20200101-000000").exists());
    assert!(!trash.join("sub").exists(), "emptied trash folders go too");
    assert!(trash.join(&recent).exists());
    // Swept a moment ago: the next sync leaves even an old entry for the next sweep.
    write(t.r(), ".sync-trash/late.txt~20200101-000000", b"late");
    t.sync();
    assert!(trash.join("late.txt~20200101-000000").exists());
}

/// A remote lock held for a daemon's index update (seconds at most) is waited for, not an
/// error: the sync goes through once it is released.
pub fn an_index_update_lock_is_waited_for(t: &mut Pair) {
    write(t.l(), "a.txt", b"a");
    let info = format!(
        r#"{{"host":"elsewhere","pid":1,"time":{},"what":"filesync daemon (index update)"}}"#,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    write(t.r(), ".sync.lock", info.as_bytes());
    let lock = t.r().join(".sync.lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        std::fs::remove_file(lock).expect("rm lock");
    });
    let out = sync(t.home.path(), &t.url(), t.l(), &[]);
    release.join().expect("release thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.assert_same();
}

/// More files in one sync than any server keeps handles open at once (ours allows 1,024 per
/// session), both ways: every handle a transfer opens must be usable and closed. Found by
/// syncing a 10,000-file tree with our server: handles past 0x7f came back mangled.
pub fn many_files_in_one_sync(t: &mut Pair) {
    for i in 0..1300 {
        write(
            t.l(),
            &format!("up{}/f{i}.txt", i % 7),
            format!("up {i}").as_bytes(),
        );
    }
    // Downloads enough to keep all of the engine's batch slots busy at once.
    for i in 0..5000 {
        write(
            t.r(),
            &format!("down{}/f{i}.txt", i % 11),
            format!("down {i}").as_bytes(),
        );
    }
    let out = t.sync();
    assert!(
        out.contains("sent 1300 files") && out.contains("received 5000 files"),
        "{out}"
    );
    t.assert_same();
    let out = t.sync();
    assert!(
        out.contains("sent 0 files") && out.contains("received 0 files"),
        "{out}"
    );
}

/// Small files travel in batches (several hundred per durability barrier, on our server one
/// request for many): replacing them on either side still keeps every old version in that
/// side's trash, sets the source's mtime, and leaves no temp file behind.
pub fn replaced_small_files_keep_their_old_versions(t: &mut Pair) {
    let name = |i: usize| format!("s{}/f{i:04}.txt", i % 5);
    let v1 = |i: usize| {
        format!("first version of {i} ")
            .repeat(1 + i % 40)
            .into_bytes()
    };
    for i in 0..700 {
        write(t.l(), &name(i), &v1(i));
    }
    let out = t.sync();
    assert!(out.contains("sent 700 files"), "{out}");
    t.assert_same();
    // Local edits of 400 files (more than one batch), remote edits of 100 others. Each edit
    // changes the size: a remote edit within the second of the last sync is seen by size only
    // through plain SFTP (its times are whole seconds).
    let v2 = |i: usize| format!("second version of {i}, edited").into_bytes();
    for i in 0..400 {
        write(t.l(), &name(i), &v2(i));
        set_mtime(&t.l().join(name(i)), -3600 - i as i64);
    }
    for i in 500..600 {
        write(t.r(), &name(i), &v2(i));
    }
    let out = t.sync();
    assert!(
        out.contains("sent 400 files") && out.contains("received 100 files"),
        "{out}"
    );
    t.assert_same();
    let (l, r) = (tree(t.l()), tree(t.r()));
    for i in (0..400).chain(500..600) {
        assert_eq!(r[&name(i)], v2(i), "{}", name(i));
        assert_eq!(l[&name(i)], v2(i), "{}", name(i));
    }
    let mtime = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("stat")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };
    for i in [0, 123, 399] {
        assert_eq!(mtime(&t.r().join(name(i))), mtime(&t.l().join(name(i))));
    }
    let trashed = |root: &Path| {
        let mut v: Vec<Vec<u8>> = Vec::new();
        let mut stack = vec![root.join(".sync-trash")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                } else {
                    v.push(std::fs::read(e.path()).expect("read trash"));
                }
            }
        }
        v.sort();
        v
    };
    let mut want_r: Vec<Vec<u8>> = (0..400).map(v1).collect();
    want_r.sort();
    assert_eq!(
        trashed(t.r()),
        want_r,
        "every replaced remote file is in its trash"
    );
    let mut want_l: Vec<Vec<u8>> = (500..600).map(v1).collect();
    want_l.sort();
    assert_eq!(
        trashed(t.l()),
        want_l,
        "every replaced local file is in its trash"
    );
    assert_eq!(temps(t.r()), Vec::<String>::new());
    assert_eq!(temps(t.l()), Vec::<String>::new());
}

/// A small tmpfs over the remote folder (needs root and mount rights; skipped otherwise).
struct SmallFs(PathBuf);

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
        // Lazily: a server may still hold the folder open until its test ends.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The remote disk fills up mid-sync, with big files (one at a time) and small ones (in
/// batches) under way: the sync fails saying so, nothing torn or half-written is left, and
/// once there is room the next sync completes.
pub fn remote_disk_full_fails_cleanly_then_completes(t: &mut Pair) {
    let Some(fs) = SmallFs::mount(t.r(), "3m") else {
        return;
    };
    if matches!(t.backend, Backend::Serve { .. }) {
        // Our server holds the folder it serves open: serve the tmpfs, not what it covers.
        t.restart_server();
    }
    for i in 0..6 {
        write(t.l(), &format!("big{i}.bin"), &bytes(i, 1 << 20));
    }
    for i in 0..300 {
        write(
            t.l(),
            &format!("small/f{i:03}.txt"),
            &bytes(100 + i, 8 << 10),
        );
    }
    let out = sync(t.home.path(), &t.url(), t.l(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    eprintln!("the full disk, as reported: {err}");
    assert!(
        err.contains("disk full") || err.contains("no space left"),
        "{err}"
    );
    // Nothing torn, no temp file left: whatever arrived is whole.
    let l = tree(t.l());
    for (rel, content) in tree(t.r()) {
        assert_eq!(l.get(&rel), Some(&content), "torn {rel}");
    }
    assert_eq!(temps(t.r()), Vec::<String>::new());
    fs.resize("32m");
    t.sync();
    t.assert_same();
}
