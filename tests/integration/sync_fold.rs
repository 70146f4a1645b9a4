//! Receivers whose file system folds names, made real on Linux: a FAT image mounted with
//! fusefat (case-insensitive, Windows' character rules) and `foldfs/foldfs.py`, a FUSE file
//! system that compares names as APFS does (case- and normalization-insensitive, preserving).
//! Each test first shows that its receiver really folds, so none can pass on one that does not.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NFC: &str = "caf\u{e9}.txt";
const NFD: &str = "cafe\u{301}.txt";

/// A FUSE mount in the sandbox, unmounted when dropped.
struct Mount {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Mount {
    /// A fresh FAT16 image, mounted read-write with fusefat.
    fn fat(sb: &Sandbox) -> Mount {
        require_root("it mounts a FAT image through FUSE");
        for tool in ["mkfs.vfat", "fusefat", "fusermount"] {
            require(tool);
        }
        let img = sb.path().join("stick.img");
        let f = std::fs::File::create(&img).expect("image");
        f.set_len(32 << 20).expect("size the image");
        run(Command::new("mkfs.vfat").arg(&img));
        let dir = sb.path().join("stick");
        std::fs::create_dir_all(&dir).expect("mount point");
        run(Command::new("fusefat")
            .args(["-o", "rw+"])
            .arg(&img)
            .arg(&dir));
        Mount::up(dir, None)
    }

    /// `foldfs.py` over a folder of the sandbox.
    fn apfs_like(sb: &Sandbox) -> Mount {
        require_root("it mounts a FUSE file system");
        require("fusermount");
        require_python("fuse");
        let backing = sb.path().join("backing");
        let dir = sb.path().join("mac");
        for d in [&backing, &dir] {
            std::fs::create_dir_all(d).expect("folders");
        }
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/foldfs/foldfs.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(&backing)
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start foldfs.py");
        Mount::up(dir, Some(child))
    }

    fn up(dir: PathBuf, daemon: Option<Child>) -> Mount {
        let m = Mount { dir, daemon };
        let mounted = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string("/proc/self/mounts")
                .is_ok_and(|t| t.lines().any(|l| l.split(' ').nth(1) == m.dir.to_str()))
        });
        assert!(mounted, "{} was not mounted", m.dir.display());
        m
    }

    /// The replica folder on the mount, after checking that `a` and `b` name one file there.
    fn folder_folding(&self, a: &str, b: &str) -> Folder {
        let f = Folder::at(self.dir.join("Sync"));
        f.write(a, "probe");
        assert_eq!(
            f.get(b).as_deref(),
            Some(&b"probe"[..]),
            "{} does not fold {a:?} and {b:?}",
            self.dir.display()
        );
        f.remove(a);
        f
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.dir).status();
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(c: &mut Command) {
    let out = c.output().expect("run a tool");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Syncs `a` into `b` (both ways); the run's output.
fn sync(sb: &Sandbox, a: &Folder, b: &Folder) -> Ran {
    sb.filesync().args(["sync", a.s(), b.s()]).output()
}

/// The user's names in `f` (not ours), with their contents.
fn names(f: &Folder) -> Vec<(String, Vec<u8>)> {
    f.tree()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Both spellings kept, one under a conflict copy's name (named after `other`, in either
/// Unicode spelling), the same contents on both sides; and the next sync changes nothing.
fn assert_both_kept(sb: &Sandbox, a: &Folder, b: &Folder, keeper: &str, other: &str) {
    let decomposed = |s: &str| s.replace('\u{e9}', "e\u{301}");
    let stem = decomposed(other.split('.').next().unwrap_or(other));
    for side in [a, b] {
        let n = names(side);
        assert_eq!(n.len(), 2, "{}: {n:?}", side.s());
        let copy = &n
            .iter()
            .find(|(k, _)| k != keeper)
            .expect("a second file")
            .0;
        assert!(
            copy.contains(".sync-conflict-") && decomposed(copy).starts_with(&stem),
            "{}: no conflict copy named after {other:?}: {n:?}",
            side.s()
        );
    }
    let contents = |f: &Folder| {
        let mut v: Vec<Vec<u8>> = names(f).into_iter().map(|x| x.1).collect();
        v.sort();
        v
    };
    assert_eq!(contents(a), contents(b));
    let before = (names(a), names(b));
    let again = sync(sb, a, b);
    assert!(again.status.success(), "{}", again.stderr);
    assert_eq!(
        (names(a), names(b)),
        before,
        "the second sync changed something"
    );
}

#[test]
fn readme_and_readme_both_kept_on_a_fat_stick() {
    let sb = Sandbox::new();
    let stick = Mount::fat(&sb);
    let b = stick.folder_folding("README", "readme");
    let a = sb.folder("laptop");
    a.write("README", "upper").write("readme", "lower");
    let out = sync(&sb, &a, &b);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert_eq!(b.read("README"), b"upper", "README was overwritten");
    assert_both_kept(&sb, &a, &b, "README", "readme");

    // A new spelling of a name the stick already holds never lands on it.
    a.write("Notes.txt", "kept");
    assert!(sync(&sb, &a, &b).status.success());
    a.write("NOTES.txt", "newcomer");
    let out = sync(&sb, &a, &b);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert_eq!(b.read("Notes.txt"), b"kept");
    let copies: Vec<_> = names(&b)
        .into_iter()
        .filter(|(_, v)| v == b"newcomer")
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", names(&b));
    assert!(
        copies[0].0.starts_with("NOTES.sync-conflict-"),
        "{copies:?}"
    );
}

#[test]
fn nfc_and_nfd_both_kept_on_an_apfs_like_receiver() {
    let sb = Sandbox::new();
    let mac = Mount::apfs_like(&sb);
    let b = mac.folder_folding(NFC, NFD);
    mac.folder_folding("README", "readme");
    let a = sb.folder("linux");
    a.write(NFC, "composed").write(NFD, "decomposed");
    let out = sync(&sb, &a, &b);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let on_b = names(&b);
    assert_eq!(on_b.len(), 2, "{on_b:?}");
    let mut contents: Vec<_> = on_b.iter().map(|x| x.1.clone()).collect();
    contents.sort();
    assert_eq!(contents, [b"composed".to_vec(), b"decomposed".to_vec()]);
    let keeper = &on_b
        .iter()
        .find(|(k, _)| !k.contains(".sync-conflict-"))
        .expect("the name")
        .0;
    assert_both_kept(&sb, &a, &b, keeper, NFD);
}

#[test]
fn names_windows_refuses_are_reported_once_and_left_alone() {
    let sb = Sandbox::new();
    let stick = Mount::fat(&sb);
    let b = stick.folder_folding("README", "readme");
    let a = sb.folder("laptop");
    let refused = ["a:b", "what?", "CON", "aux.txt", "dot.", "space "];
    for n in refused {
        a.write(n, format!("{n}\n"));
    }
    a.write("LPT1/inner.txt", "below a device name")
        .write("ok.txt", "fine");
    for _ in 0..2 {
        let out = sync(&sb, &a, &b);
        assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
        let text = format!("{}{}", out.stdout, out.stderr);
        for n in refused.iter().chain(&["LPT1"]) {
            let said = text
                .lines()
                .filter(|l| l.contains(&format!("{n} is not synced to")))
                .count();
            assert_eq!(said, 1, "{n:?} reported {said} times:\n{text}");
        }
        assert!(!text.contains("LPT1/inner.txt"), "{text}");
        assert_eq!(names(&b), [("ok.txt".to_string(), b"fine".to_vec())]);
        for n in refused {
            assert_eq!(
                a.read(n),
                format!("{n}\n").into_bytes(),
                "{n:?} changed on the sender"
            );
        }
        assert_eq!(a.read("LPT1/inner.txt"), b"below a device name");
    }
}

#[test]
fn a_rename_that_only_changes_case_arrives_on_a_fat_stick() {
    let sb = Sandbox::new();
    let stick = Mount::fat(&sb);
    let b = stick.folder_folding("README", "readme");
    let a = sb.folder("laptop");
    a.write("Report.txt", "the report");
    assert!(sync(&sb, &a, &b).status.success());
    a.rename("Report.txt", "report.txt");
    let out = sync(&sb, &a, &b);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let outs = out.stdout;
    let want = [("report.txt".to_string(), b"the report".to_vec())];
    assert_eq!(names(&a), want, "{outs}");
    assert_eq!(names(&b), want, "{outs}");
    let last = sync(&sb, &a, &b);
    assert!(last.status.success(), "{}{}", last.stdout, last.stderr);
}

/// The laptop is the Mac: its own disk folds names, the hub's does not. Both spellings the
/// hub holds reach the Mac, one as a conflict copy renamed so on the hub too, over SFTP.
#[test]
fn a_mac_laptop_gets_both_spellings_from_the_hub() {
    let mut t = Pair::hub(HubKind::Serve);
    let mac = Mount::apfs_like(&t.sb);
    t.a = mac.folder_folding("README", "readme");
    t.b.write("README", "upper").write(NFC, "composed");
    t.b.write("readme", "lower").write(NFD, "decomposed");
    t.sync_and_settle();
    let contents = |f: &Folder| {
        let mut v: Vec<Vec<u8>> = names(f).into_iter().map(|x| x.1).collect();
        v.sort();
        v
    };
    let want: Vec<Vec<u8>> = ["composed", "decomposed", "lower", "upper"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    assert_eq!(contents(&t.a), want, "{:?}", names(&t.a));
    assert_eq!(contents(&t.b), want, "{:?}", names(&t.b));
    let copies = names(&t.a)
        .iter()
        .filter(|(k, _)| k.contains(".sync-conflict-"))
        .count();
    assert_eq!(copies, 2, "{:?}", names(&t.a));
}
