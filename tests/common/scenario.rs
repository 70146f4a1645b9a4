//! A `Scenario`: two replica folders and the real `filesync` binary, so a test reads as
//! "edit here, edit there, sync, expect these trees".

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_filesync");

/// A folder on disk with helpers to edit it like a person would.
pub struct Folder {
    pub path: PathBuf,
}

impl Folder {
    pub fn at(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).expect("create folder");
        Folder { path }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let f = self.p(rel);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&f, bytes).expect("write file");
        self
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.p(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.p(rel)).is_ok()
    }

    pub fn remove(&self, rel: &str) -> &Self {
        let f = self.p(rel);
        if f.is_dir() {
            std::fs::remove_dir_all(f).expect("remove dir");
        } else {
            std::fs::remove_file(f).expect("remove file");
        }
        self
    }

    pub fn mkdir(&self, rel: &str) -> &Self {
        std::fs::create_dir_all(self.p(rel)).expect("mkdir");
        self
    }

    pub fn rename(&self, from: &str, to: &str) -> &Self {
        std::fs::rename(self.p(from), self.p(to)).expect("rename");
        self
    }

    /// Sets a file's mtime relative to now (negative = in the past).
    pub fn set_mtime_offset(&self, rel: &str, secs: i64) -> &Self {
        let now = SystemTime::now();
        let t = if secs < 0 {
            now - Duration::from_secs(secs.unsigned_abs())
        } else {
            now + Duration::from_secs(secs as u64)
        };
        let f = std::fs::File::options()
            .write(true)
            .open(self.p(rel))
            .expect("open for mtime");
        f.set_modified(t).expect("set mtime");
        self
    }

    /// The user's tree: relative path → `Some(bytes)` for files, `None` for folders.
    /// Our own files (index, lock, trash, temp files) are left out.
    pub fn tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        walk(&self.path, &self.path, &mut out, false);
        out
    }

    /// Every file in the trash, by content.
    pub fn trash_contents(&self) -> Vec<Vec<u8>> {
        let mut out = BTreeMap::new();
        let t = self.path.join(".sync-trash");
        if t.is_dir() {
            walk(&t, &t, &mut out, true);
        }
        out.into_values().flatten().collect()
    }

    /// Leftover temp files anywhere (outside the trash).
    pub fn temp_files(&self) -> Vec<String> {
        let mut out = BTreeMap::new();
        walk(&self.path, &self.path, &mut out, true);
        out.into_keys()
            .filter(|k| k.contains(".sync-tmp."))
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>, all: bool) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .expect("below root")
            .to_string_lossy()
            .into_owned();
        let name = e.file_name().to_string_lossy().into_owned();
        if !all
            && (rel == ".sync"
                || rel == ".sync.lock"
                || rel.starts_with(".sync-trash")
                || rel.starts_with(".sync.")
                || name.contains(".sync-tmp."))
        {
            continue;
        }
        let ft = e.file_type().expect("file type");
        if ft.is_dir() {
            out.insert(rel, None);
            walk(root, &path, out, all);
        } else if ft.is_file() {
            out.insert(rel, Some(std::fs::read(&path).unwrap_or_default()));
        }
    }
}

/// Two replicas and a private HOME, so no user or system config leaks into the run.
pub struct Scenario {
    pub tmp: tempfile::TempDir,
    pub a: Folder,
    pub b: Folder,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = Folder::at(tmp.path().join("a"));
        let b = Folder::at(tmp.path().join("b"));
        std::fs::create_dir_all(tmp.path().join("home")).expect("home");
        Scenario { tmp, a, b }
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("RUST_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run filesync")
    }

    /// `filesync sync A B`, which must succeed; returns stdout.
    pub fn sync(&self) -> String {
        let out = self.run(&["sync", path_str(&self.a.path), path_str(&self.b.path)]);
        assert_ok(&out, "sync");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Syncs, then checks both trees are equal, and that a second sync moves nothing.
    pub fn sync_and_settle(&self) -> String {
        let first = self.sync();
        assert_eq!(self.a.tree(), self.b.tree(), "trees differ after sync");
        let stamp = |f: &Folder| {
            std::fs::metadata(f.p(".sync"))
                .and_then(|m| m.modified())
                .ok()
        };
        let before = (stamp(&self.a), stamp(&self.b));
        let second = self.sync();
        assert_eq!(
            before,
            (stamp(&self.a), stamp(&self.b)),
            "a no-op sync rewrote an index"
        );
        assert!(
            second.contains(
                "sent 0 files (0 B), received 0 files (0 B), moved 0, deleted 0, conflicts 0"
            ),
            "second sync was not a no-op: {second}"
        );
        first
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
