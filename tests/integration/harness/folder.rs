//! A folder on disk, edited as a person would, and the one walker that reads it back: the
//! user's tree (our own files left out, by the product's own rule), the trash, the temps,
//! or everything (for "nothing out there changed").

use filesync::replica::layout::{is_reserved_root_name, is_temp_name};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct Folder {
    pub path: PathBuf,
}

/// Which files a walk reports.
#[derive(Clone, Copy, PartialEq)]
enum Walk {
    /// The user's files: not our reserved names at the root, nor our temp files.
    User,
    /// Every entry; symlinks as their target text.
    All,
}

impl Folder {
    /// The folder at `path`, created if missing.
    pub fn at(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).expect("create folder");
        Folder { path }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn s(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let f = self.p(rel);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&f, bytes).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        self
    }

    #[track_caller]
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.p(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The file's bytes, `None` when it is not there.
    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.p(rel)).ok()
    }

    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.p(rel)).is_ok()
    }

    pub fn remove(&self, rel: &str) -> &Self {
        let f = self.p(rel);
        if f.is_dir() && !f.is_symlink() {
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

    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.p(rel)).expect("symlink");
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

    /// A file's mtime in Unix seconds.
    pub fn mtime(&self, rel: &str) -> u64 {
        std::fs::metadata(self.p(rel))
            .and_then(|m| m.modified())
            .expect("stat")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    /// The user's tree: relative path → `Some(bytes)` for files, `None` for folders.
    pub fn tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        walk(&self.path, &self.path, Walk::User, &mut out);
        out
    }

    /// Every entry below the folder, ours included; a symlink as the text it points to.
    pub fn snapshot(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        walk(&self.path, &self.path, Walk::All, &mut out);
        out
    }

    /// Every file in the trash, by content, sorted.
    pub fn trash_contents(&self) -> Vec<Vec<u8>> {
        let t = self.path.join(".sync-trash");
        let mut out = BTreeMap::new();
        walk(&t, &t, Walk::All, &mut out);
        let mut v: Vec<Vec<u8>> = out.into_values().flatten().collect();
        v.sort();
        v
    }

    /// Leftover temp files anywhere (outside the trash).
    pub fn temp_files(&self) -> Vec<String> {
        self.snapshot()
            .into_keys()
            .filter(|k| {
                let name = k.rsplit('/').next().unwrap_or(k);
                is_temp_name(name) && !k.starts_with(".sync-trash")
            })
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, what: Walk, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
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
        if what == Walk::User
            && ((dir == root && is_reserved_root_name(&name)) || is_temp_name(&name))
        {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.insert(rel, None);
            walk(root, &path, what, out);
        } else if ft.is_file() {
            // A file removed while being walked (a daemon's temp) is simply not there.
            if let Ok(b) = std::fs::read(&path) {
                out.insert(rel, Some(b));
            }
        } else if ft.is_symlink() && what == Walk::All {
            let target = std::fs::read_link(&path).unwrap_or_default();
            out.insert(rel, Some(target.into_os_string().into_encoded_bytes()));
        }
    }
}
