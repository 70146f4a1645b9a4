//! The changes log `.sync-log` at a replica's root: one JSON line per change a sync (or a
//! restore) made there: what arrived or left, from which replica, when, and whether what was
//! there went to the trash. Bounded: the oldest lines go once it passes `LOG_MAX`. A plain
//! file any SFTP server holds, apart from the index and its journal. Pure: bytes in, bytes out.

use crate::relpath::RelPath;
use serde::{Deserialize, Serialize};

pub use crate::replica::layout::CHANGES_LOG as LOG_FILE;
/// Bytes the log keeps: a few thousand changes.
pub const LOG_MAX: usize = 512 * 1024;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum What {
    Added,
    Modified,
    Deleted,
    Renamed,
    Conflict,
    Folder,
    Unfolder,
    Mode,
    Restored,
    Resolved,
    Error,
}

impl What {
    pub fn verb(self) -> &'static str {
        match self {
            What::Added => "added",
            What::Modified => "modified",
            What::Deleted => "deleted",
            What::Renamed => "renamed",
            What::Conflict => "conflict",
            What::Folder => "folder added",
            What::Unfolder => "folder removed",
            What::Mode => "permissions",
            What::Restored => "restored",
            What::Resolved => "resolved",
            What::Error => "error",
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When the sync (or restore) that made it started, Unix seconds.
    pub t: i64,
    /// When it finished: a trash entry stamped between `t` and `done` is this change's.
    pub done: i64,
    /// Which sync or command wrote it (random, one per run).
    #[serde(default)]
    pub run: u64,
    pub what: What,
    #[serde(with = "as_text")]
    pub path: RelPath,
    /// A rename's old path; a conflict's copy.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_text")]
    pub other: Option<RelPath>,
    /// The replica it came from (a sync's other side), or the command that made it.
    pub source: String,
    /// What was there went to the trash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trashed: bool,
    /// For `Error`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A path as its text; one that is not a valid path does not parse (the line is passed over).
mod as_text {
    use crate::relpath::RelPath;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &RelPath, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RelPath, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_text {
    use crate::relpath::RelPath;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<RelPath>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(p.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RelPath>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| RelPath::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `old` with `new` appended, the oldest whole lines dropped to stay within `max` bytes.
/// A torn or unreadable line (a write cut short) is dropped too.
pub fn append(old: &[u8], new: &[Change], max: usize) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = old
        .split(|&b| b == b'\n')
        .filter(|l| serde_json::from_slice::<Change>(l).is_ok())
        .map(<[u8]>::to_vec)
        .collect();
    lines.extend(new.iter().filter_map(|c| serde_json::to_vec(c).ok()));
    let mut total: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut skip = 0;
    while total > max && skip < lines.len() {
        total -= lines[skip].len() + 1;
        skip += 1;
    }
    let mut out = Vec::with_capacity(total);
    for l in &lines[skip..] {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Whether `bytes` are a log we wrote: every whole line one change (a torn last line after
/// them is a write cut short). Anything else at the log's name is a file of the user's
/// (named so before the name was ours), never to be rewritten.
pub fn is_log(bytes: &[u8]) -> bool {
    let parses = |l: &[u8]| serde_json::from_slice::<Change>(l).is_ok();
    let cut = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (whole, torn) = bytes.split_at(cut);
    let mut lines = whole.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut any = false;
    let all = lines.all(|l| {
        any = true;
        parses(l)
    });
    all && (torn.is_empty() || any || parses(torn))
}

/// The changes in a log, oldest first; lines that do not parse are passed over.
pub fn read(bytes: &[u8]) -> Vec<Change> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// The changes of the newest sync in `log` (the run of lines it wrote).
pub fn last_sync(log: &[Change]) -> &[Change] {
    let Some(end) = log.iter().rposition(Change::source_is_sync) else {
        return &[];
    };
    let run = log[end].run;
    let start = log[..end]
        .iter()
        .rposition(|c| c.run != run || !c.source_is_sync())
        .map_or(0, |i| i + 1);
    &log[start..=end]
}

/// The `source` of changes made by a command on this replica rather than by a sync.
pub const BY_RESTORE: &str = "filesync restore";
pub const BY_RESOLVE: &str = "filesync resolve";

impl Change {
    fn source_is_sync(&self) -> bool {
        self.source != BY_RESTORE && self.source != BY_RESOLVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(t: i64, what: What, path: &str) -> Change {
        Change {
            t,
            done: t + 1,
            run: t as u64,
            what,
            path: RelPath::parse(path).unwrap(),
            other: None,
            source: "pi".into(),
            trashed: what == What::Deleted,
            error: None,
        }
    }

    #[test]
    fn appends_and_stays_bounded_dropping_the_oldest() {
        let mut log = Vec::new();
        for t in 0..200 {
            log = append(&log, &[change(t, What::Added, &format!("f{t}"))], 2000);
            assert!(log.len() <= 2000);
        }
        let read_back = read(&log);
        assert_eq!(read_back.last().unwrap().path.as_str(), "f199");
        assert!(read_back.len() > 10 && read_back[0].t > 100);
        // A torn last line (a write cut short) is dropped, the rest kept.
        let mut torn = log.clone();
        torn.extend_from_slice(b"{\"t\":5,\"do");
        let again = append(&torn, &[change(500, What::Deleted, "x")], 2000);
        let after = read(&again);
        assert_eq!(after.last().unwrap().t, 500);
        assert!(
            after[..after.len() - 1]
                .iter()
                .all(|c| read_back.contains(c))
        );
    }

    #[test]
    fn only_our_lines_are_a_log() {
        let log = append(&[], &[change(1, What::Added, "a")], 2000);
        assert!(is_log(&log) && is_log(b"") && is_log(b"\n"));
        let mut torn = log.clone();
        torn.extend_from_slice(b"{\"t\":5,\"do");
        assert!(is_log(&torn));
        for users in [&b"my notes"[..], b"shopping\nlist\n", b"{\"t\": 1}\n"] {
            assert!(!is_log(users), "{}", String::from_utf8_lossy(users));
        }
        let mut mixed = log.clone();
        mixed.extend_from_slice(b"a line of mine\n");
        assert!(!is_log(&mixed));
    }

    #[test]
    fn the_last_sync_is_its_run_of_lines() {
        let mut log = vec![change(1, What::Added, "a"), change(5, What::Added, "b")];
        log.push(change(5, What::Error, "c"));
        let mut r = change(9, What::Restored, "d");
        r.source = BY_RESTORE.into();
        log.push(r);
        let last = last_sync(&log);
        assert_eq!(last.len(), 2, "{last:?}");
        assert!(last.iter().all(|c| c.t == 5));
        assert!(last_sync(&[]).is_empty());
    }
}
