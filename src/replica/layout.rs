//! The layout of a replica: the names that are ours at its root (`.sync`, `.sync.lock`,
//! `.sync-trash/`), our temp files anywhere, where a replaced file goes in the trash. Pure
//! names; every end (local store, SFTP store, server, scan, watcher) reads them from here.

use crate::relpath::{RelPath, fit_name};

/// The file name of the index at a replica root.
pub const INDEX_FILE: &str = ".sync";
/// The lock that makes one writer per replica.
pub const LOCK_FILE: &str = ".sync.lock";
/// Where overwritten and deleted files go.
pub const TRASH_DIR: &str = ".sync-trash";
/// Marks our temp files (`.<name>.sync-tmp.<random>`), so scans skip them and cleanups find them.
pub const TMP_MARK: &str = ".sync-tmp.";
/// The user's ignore file.
pub const IGNORE_FILE: &str = ".syncignore";
/// A damaged index set aside by `filesync index`: `.sync.corrupt-<stamp>`.
pub const SET_ASIDE_MARK: &str = ".sync.corrupt-";

/// True for the root-level names that are ours and never synced.
pub fn is_reserved_root_name(name: &str) -> bool {
    name == INDEX_FILE
        || name == LOCK_FILE
        || name == TRASH_DIR
        || name.starts_with(".sync.")
        || name.starts_with(".sync-")
}

/// True for our temp files anywhere in the tree.
pub fn is_temp_name(name: &str) -> bool {
    name.contains(TMP_MARK)
}

/// Whether a path is ours rather than the user's.
pub fn is_internal(path: &RelPath) -> bool {
    match path.components().next() {
        None => false,
        Some(first) => is_reserved_root_name(first) || is_temp_name(path.name()),
    }
}

/// A new temp name for writing `name` (`.<name>.sync-tmp.<8 hex>`), in the same folder.
pub fn temp_name(name: &str) -> String {
    format!(
        ".{}{TMP_MARK}{:08x}",
        fit_name(name, 1 + TMP_MARK.len() + 8),
        rand::random::<u32>()
    )
}

/// Where `p` goes in the trash: the folder `.sync-trash/<parent of p>` and the base name
/// `<name>~YYYYMMDD-HHMMSS` (see `trash_slot_name` for when that is taken).
pub fn trash_name(p: &RelPath, now: i64) -> (RelPath, String) {
    let trash = RelPath::root().join_unchecked(TRASH_DIR);
    let dir = match p.parent().filter(|d| !d.is_root()) {
        Some(parent) => parent.components().fold(trash, |d, c| d.join_unchecked(c)),
        None => trash,
    };
    // `~YYYYMMDD-HHMMSS` and a `-N` suffix must still fit in a file name.
    let base = format!("{}~{}", fit_name(p.name(), 24), crate::time::stamp(now));
    (dir, base)
}

/// The `n`th name tried for a trash entry of base name `base`: `base`, `base-1`, `base-2`, …
pub fn trash_slot_name(base: &str, n: u32) -> String {
    if n == 0 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

/// How many names `trash_slot_name` offers before a trash folder counts as full.
pub const TRASH_SLOTS: u32 = 1000;

/// The name stamp of a trash entry (`name~YYYYMMDD-HHMMSS[-N]`), if it has one.
pub fn trash_stamp(name: &str) -> Option<&str> {
    let (_, stamp) = name.rsplit_once('~')?;
    Some(stamp.get(..15).unwrap_or(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_and_the_users() {
        for ours in [
            ".sync",
            ".sync.lock",
            ".sync-trash/a",
            ".sync.corrupt-1",
            "a/.b.sync-tmp.0",
        ] {
            assert!(is_internal(&RelPath::parse(ours).unwrap()), "{ours}");
        }
        for theirs in [".syncignore", "a/.sync", "sync", "a/.sync-trash"] {
            assert!(!is_internal(&RelPath::parse(theirs).unwrap()), "{theirs}");
        }
        let t = temp_name(&"n".repeat(300));
        assert!(
            is_temp_name(&t) && t.len() <= crate::relpath::NAME_MAX,
            "{t}"
        );
        let (dir, base) = trash_name(&RelPath::parse("a/b/c.txt").unwrap(), 0);
        assert_eq!(dir.as_str(), ".sync-trash/a/b");
        assert_eq!(base, "c.txt~19700101-000000");
        assert_eq!(trash_slot_name(&base, 2), "c.txt~19700101-000000-2");
        assert_eq!(
            trash_stamp("c.txt~19700101-000000-2"),
            Some("19700101-000000")
        );
        assert_eq!(trash_stamp("plain"), None);
    }
}
