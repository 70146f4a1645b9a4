//! The layout of a replica: the names that are ours (a short, exact list at its root, and
//! our temp files anywhere), where a replaced file goes in the trash. Pure names; every end
//! (local store, SFTP store, server, scan, watcher) reads them from here.
//!
//! Every name here has an exact shape a person does not type by chance (a fixed word and,
//! where we make many, a random 64-bit tag), so any other name, `.sync-notes.txt` or
//! `report.sync-tmp.docx`, is the user's and is synced like any file.

use crate::relpath::{RelPath, fit_name};

/// The file name of the index at a replica root.
pub const INDEX_FILE: &str = ".sync";
/// Changes to the index since `.sync` was written, appended (see `index::journal`).
pub const JOURNAL_FILE: &str = ".sync.journal";
/// The lock that makes one writer per replica.
pub const LOCK_FILE: &str = ".sync.lock";
/// The changes log: a line for each change a sync or a restore made here (`history::log`).
pub const CHANGES_LOG: &str = ".sync-log";
/// Where overwritten and deleted files go.
pub const TRASH_DIR: &str = ".sync-trash";
/// Chunk lists of big files, by content hash (`delta`).
pub const CHUNKS_DIR: &str = ".sync-chunks";
/// Marks our temp files: `.<name>.sync-tmp.<16 lowercase hex>`.
pub const TMP_MARK: &str = ".sync-tmp.";
/// The user's ignore file.
pub const IGNORE_FILE: &str = ".syncignore";
/// A damaged index set aside by `filesync index`: `.sync.corrupt-YYYYMMDD-HHMMSS`.
pub const SET_ASIDE_MARK: &str = ".sync.corrupt-";
/// A damaged journal set aside when it was read: `.sync.journal.corrupt-YYYYMMDD-HHMMSS`.
pub const JOURNAL_ASIDE_MARK: &str = ".sync.journal.corrupt-";
/// The watcher's fence files at the root: `.sync-cookie.<16 hex>.<n>`, made and removed
/// at once.
pub const FENCE_MARK: &str = ".sync-cookie.";

/// Hex digits in a temp file's random tag.
const TAG_HEX: usize = 16;

/// The root-level names that are ours and never synced, as the README lists them.
pub fn is_reserved_root_name(name: &str) -> bool {
    name == INDEX_FILE
        || name == JOURNAL_FILE
        || name == LOCK_FILE
        || name == TRASH_DIR
        || name == CHUNKS_DIR
        || name == CHANGES_LOG
        || name.strip_prefix(SET_ASIDE_MARK).is_some_and(is_stamp)
        || name.strip_prefix(JOURNAL_ASIDE_MARK).is_some_and(is_stamp)
        || name.strip_prefix(FENCE_MARK).is_some_and(is_fence_tail)
}

/// `YYYYMMDD-HHMMSS`, as `time::stamp` writes it.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && b.iter().enumerate().all(|(i, c)| {
            if i == 8 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn is_tag(s: &str) -> bool {
    s.len() == TAG_HEX && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// `<16 hex>.<n>` after the fence mark.
fn is_fence_tail(s: &str) -> bool {
    s.split_once('.').is_some_and(|(tag, n)| {
        is_tag(tag) && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())
    })
}

/// True for a name with the exact shape of our temp files (`.<name>.sync-tmp.<16 hex>`).
/// Whether such a file is a leftover is for the scan to judge: one the index names is the
/// user's.
pub fn is_temp_name(name: &str) -> bool {
    let Some(target) = name.strip_prefix('.') else {
        return false;
    };
    match target.len().checked_sub(TMP_MARK.len() + TAG_HEX) {
        Some(n) if n > 0 => {
            target.is_char_boundary(n)
                && target[n..].starts_with(TMP_MARK)
                && is_tag(&target[n + TMP_MARK.len()..])
        }
        _ => false,
    }
}

/// Whether a path is ours rather than the user's.
pub fn is_internal(path: &RelPath) -> bool {
    match path.components().next() {
        None => false,
        Some(first) => is_reserved_root_name(first) || is_temp_name(path.name()),
    }
}

/// A new temp name for writing `name` (`.<name>.sync-tmp.<16 hex>`), in the same folder.
pub fn temp_name(name: &str) -> String {
    format!(
        ".{}{TMP_MARK}{:016x}",
        fit_name(name, 1 + TMP_MARK.len() + TAG_HEX),
        rand::random::<u64>()
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
            ".sync.journal",
            ".sync-trash/a",
            ".sync-chunks/00ff",
            ".sync-log",
            ".sync.corrupt-20261206-143000",
            ".sync-cookie.00000000deadbeef.7",
            "a/.b.sync-tmp.0123456789abcdef",
            "..sync.sync-tmp.fedcba9876543210",
        ] {
            assert!(is_internal(&RelPath::parse(ours).unwrap()), "{ours}");
        }
        for theirs in [
            ".syncignore",
            "a/.sync",
            "sync",
            "a/.sync-trash",
            "a/.sync-chunks",
            ".sync-notes.txt",
            ".sync.bak",
            ".sync-log.txt",
            "a/.sync-log",
            ".sync.journal.old",
            "a/.sync.journal",
            ".sync-x",
            ".sync.corrupt-1",
            ".sync-cookie.jar",
            "report.sync-tmp.docx",
            "a.sync-tmp.b",
            ".x.sync-tmp.0123",
            ".x.sync-tmp.0123456789ABCDEF",
            "x.sync-tmp.0123456789abcdef",
            "..sync-tmp.0123456789abcdef",
            ".x.sync-tmp.0123456789abcdef0",
            "a/.sync-cookie.00000000deadbeef.7",
        ] {
            assert!(!is_internal(&RelPath::parse(theirs).unwrap()), "{theirs}");
        }
        assert!(is_temp_name(&temp_name("é")));
        assert!(!is_temp_name(".é.sync-tmp.é123456789abcdef"));
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
