//! Bad input and interruptions: corrupt index, missing root, unreadable files, full disk,
//! a held lock, and SIGKILL at random points. Each must end in a clear error or a correct
//! result, and never lose or tear a file.

use crate::harness::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

#[test]
fn corrupt_index_fails_clearly_and_index_rebuilds_it() {
    let s = Pair::local();
    s.a.write("precious.txt", "data");
    s.sync_and_settle();
    s.a.write(".sync", "{\"this is\": not json");
    let before = s.a.tree();
    let out = s.sb.filesync().args(["sync", s.a.s(), s.b.s()]).fails();
    out.one_line_error(&["corrupt", "filesync index"]);
    assert_eq!(s.a.tree(), before, "a failed sync changed files");
    assert_eq!(s.b.read("precious.txt"), b"data");

    s.sb.filesync().args(["index", "--root", s.a.s()]).ok();
    let kept: Vec<_> = std::fs::read_dir(&s.a.path)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".sync.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the bad index was not kept aside");
    s.a.write("after.txt", "new");
    s.sync_and_settle();
    assert_eq!(s.b.read("after.txt"), b"new");
    assert_eq!(s.a.read("precious.txt"), b"data");
}

#[test]
fn missing_root_and_bad_config_are_one_line_errors() {
    let s = Pair::local();
    let missing = s.sb.path().join("nope");
    let out =
        s.sb.filesync()
            .args(["sync", missing.to_str().unwrap(), s.b.s()])
            .fails();
    out.one_line_error(&["nope"]);
    assert!(!missing.exists(), "a missing root was created");

    let cfg = s.sb.file("bad.toml", "trash_days = \"many\"\n");
    let out =
        s.sb.filesync_with(&cfg)
            .args(["status", "--root", s.a.s()])
            .fails();
    out.one_line_error(&["bad.toml", "trash_days"]);
}

#[test]
fn held_lock_refuses_and_stale_lock_is_broken() {
    let s = Pair::local();
    s.a.write("x", "1");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // Held by a live process on this host (this test).
    let live = format!(
        r#"{{"host":"{}","pid":{},"time":{},"what":"test"}}"#,
        host.trim(),
        std::process::id(),
        now_secs()
    );
    s.b.write(".sync.lock", &live);
    let out = s.sb.filesync().args(["sync", s.a.s(), s.b.s()]).fails();
    assert!(out.stderr.contains("locked"), "{out}");
    assert!(
        !s.a.p(".sync.lock").exists(),
        "the first lock was not released"
    );
    // A dead process's lock is stale.
    s.b.write(
        ".sync.lock",
        live.replace(
            &format!("\"pid\":{}", std::process::id()),
            "\"pid\":999999999",
        ),
    );
    s.sync();
    assert_eq!(s.b.read("x"), b"1");
}

/// Runs filesync as an unprivileged user when we are root (root reads everything), after
/// giving that user the test tree; `keep_root` stays root's.
fn run_unprivileged(s: &Pair, args: &[&str], keep_root: &std::path::Path) -> Ran {
    give_to_nobody(s.sb.path());
    if is_root() {
        let ok = Command::new("chown")
            .arg("0:0")
            .arg(keep_root)
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "chown failed");
    }
    s.sb.filesync().args(args).unprivileged().output()
}

#[test]
fn unreadable_file_is_reported_and_nothing_else_is_held_back() {
    use std::os::unix::fs::PermissionsExt;
    let s = Pair::local();
    s.a.write("secret.txt", "s").write("open.txt", "o");
    std::fs::set_permissions(s.a.p("secret.txt"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run_unprivileged(&s, &["sync", s.a.s(), s.b.s()], &s.a.p("secret.txt"));
    let err = &out.stderr;
    assert_eq!(s.b.read("open.txt"), b"o", "{err}");
    assert!(!s.b.exists("secret.txt"));
    // Not everything was synced: the exit code says so.
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("secret.txt"),
        "unreadable file not named: {err}"
    );
    // Still there, untouched, on its own side.
    assert!(s.a.exists("secret.txt"));
}

#[test]
fn full_disk_fails_cleanly_and_the_next_sync_finishes() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let s = Pair::local();
    let small = s.sb.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let small_s = small.to_str().unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", small_s])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let b = Folder::at(small.clone());
    b.write("existing.txt", "keep me");
    s.a.write("big.bin", vec![42u8; 3 << 20])
        .write("small.txt", "fits");
    let out = s.sb.filesync().args(["sync", s.a.s(), small_s]).output();
    assert!(!out.status.success(), "a sync onto a full disk succeeded");
    let err = &out.stderr;
    // What filled, where, and what to do: one sentence, no internal step names.
    assert!(
        err.contains(&format!(
            "no space left on {small_s} writing big.bin: free space there and sync again"
        )),
        "{err}"
    );
    assert!(!err.contains("fetch big.bin"), "{err}");
    assert_eq!(b.read("existing.txt"), b"keep me");
    assert!(!b.exists("big.bin"), "a torn big.bin is in place");
    assert!(
        b.temp_files().is_empty(),
        "temp files left: {:?}",
        b.temp_files()
    );
    assert_eq!(s.a.read("existing.txt"), b"keep me");

    Command::new("mount")
        .args(["-o", "remount,size=16m", small_s])
        .status()
        .unwrap();
    s.sb.filesync().args(["sync", s.a.s(), small_s]).ok();
    assert_eq!(b.read("big.bin"), vec![42u8; 3 << 20]);
}

/// Every version of every file the test ever wrote, to tell a whole file from a torn one.
fn record(versions: &mut BTreeMap<String, BTreeSet<Vec<u8>>>, f: &Folder) {
    for (k, v) in f.tree() {
        if let Some(v) = v {
            versions.entry(k).or_default().insert(v);
        }
    }
}

#[test]
fn sigkill_at_random_points_never_tears_or_loses_a_file() {
    let s = Pair::local();
    let mut versions: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % n
    };
    for round in 0..20u32 {
        // Fresh edits on both sides each round, large enough that copies take a while.
        for i in 0..6 {
            let len = 64 * 1024 + rnd(6 << 20) as usize;
            s.a.write(&format!("a{i}.bin"), vec![(round * 7 + i) as u8; len]);
            s.b.write(
                &format!("b{i}.bin"),
                vec![(round * 11 + i + 100) as u8; len / 2],
            );
        }
        s.b.write("shared.txt", format!("b round {round}"));
        if round % 3 == 0 {
            s.a.write("shared.txt", format!("a round {round}"));
        }
        record(&mut versions, &s.a);
        record(&mut versions, &s.b);
        let before: BTreeSet<Vec<u8>> =
            s.a.tree()
                .into_values()
                .chain(s.b.tree().into_values())
                .flatten()
                .collect();

        let mut child =
            s.sb.filesync()
                .args(["sync", s.a.s(), s.b.s()])
                .command()
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
        std::thread::sleep(Duration::from_millis(rnd(150)));
        // Every other round a polite stop (SIGTERM): the sync ends on its own and lets go of
        // both locks; otherwise SIGKILL, and the next sync has to clear up after it.
        let polite = round % 2 == 1;
        if polite {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        } else {
            let _ = child.kill();
        }
        let _ = child.wait();
        if polite {
            for f in [&s.a, &s.b] {
                assert!(
                    !f.p(".sync.lock").exists(),
                    "round {round}: a lock outlived SIGTERM"
                );
            }
        }

        // No torn file at a real path: each is a version some side really had.
        for f in [&s.a, &s.b] {
            for (k, v) in f.tree() {
                let Some(v) = v else { continue };
                let known = versions.get(&k).is_some_and(|set| set.contains(&v))
                    || k.contains(".sync-conflict-");
                assert!(known, "round {round}: {k} holds bytes no one wrote (torn?)");
            }
        }
        // The next sync completes, and every version that existed is still somewhere.
        let out = s.sb.filesync().args(["sync", s.a.s(), s.b.s()]).output();
        assert!(
            out.status.success(),
            "sync after kill in round {round}: {out}"
        );
        assert_eq!(s.a.tree(), s.b.tree(), "round {round}: trees differ");
        // What the killed sync was writing is cleared up by the next one, whatever its age.
        for f in [&s.a, &s.b] {
            assert_eq!(
                f.temp_files(),
                Vec::<String>::new(),
                "round {round}: temps left"
            );
        }
        let mut after: BTreeSet<Vec<u8>> = s.a.tree().into_values().flatten().collect();
        after.extend(s.a.trash_contents());
        after.extend(s.b.trash_contents());
        for v in &before {
            assert!(after.contains(v), "round {round}: a version was lost");
        }
        record(&mut versions, &s.a);
    }
}

#[test]
fn a_bare_word_that_is_no_peer_and_no_folder_is_named() {
    let s = Pair::local();
    let out = s.sb.filesync().args(["sync", "pi", s.b.s()]).fails();
    out.one_line_error(&["\"pi\" is neither a configured peer nor a folder"]);
}
