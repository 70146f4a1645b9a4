//! What a sync did: counts, conflicts, the steps that failed and the files that were
//! changing, and the one-line summary people and logs read.

use crate::plan::{Conflict, Plan};
use crate::relpath::RelPath;
use crate::scan::ScanStats;

#[derive(Debug, Default)]
pub struct SyncReport {
    /// Files and bytes copied to the right side.
    pub sent: (u64, u64),
    /// Files and bytes copied to the left side.
    pub received: (u64, u64),
    /// Files and folders deleted (moved to the trash) on either side.
    pub deleted: u64,
    /// Replaced files kept in the trash.
    pub trashed: u64,
    /// Renames applied as moves instead of copies.
    pub moved: u64,
    pub conflicts: Vec<Conflict>,
    /// Steps that failed for a reason a person must look at; retried by the next sync.
    pub errors: Vec<String>,
    /// Paths that moved under the sync (written, renamed or removed by someone else since
    /// the scan): nothing is wrong, the next sync picks them up.
    pub changing: Vec<RelPath>,
    pub scan_left: ScanStats,
    pub scan_right: ScanStats,
    /// The plan (kept for `--dry-run` output and tests).
    pub plan: Plan,
}

impl SyncReport {
    /// Changing paths, each once, however many steps and scans met them; files still being
    /// written on the hub are counted apart (`writing_count`).
    pub fn changing_count(&self) -> usize {
        let writing = self.writing();
        let mut all: Vec<&RelPath> = self
            .changing
            .iter()
            .chain(&self.scan_left.moving)
            .chain(&self.scan_right.moving)
            .filter(|p| !writing.contains(p))
            .collect();
        all.sort();
        all.dedup();
        all.len()
    }

    /// Files a client of the hub's SFTP server was still writing, each once.
    pub fn writing_count(&self) -> usize {
        self.writing().len()
    }

    fn writing(&self) -> Vec<&RelPath> {
        let mut all: Vec<&RelPath> = self
            .scan_left
            .writing
            .iter()
            .chain(&self.scan_right.writing)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "sent {} files ({}), received {} files ({}), moved {}, deleted {}, conflicts {}, trashed {}",
            self.sent.0,
            human_bytes(self.sent.1),
            self.received.0,
            human_bytes(self.received.1),
            self.moved,
            self.deleted,
            self.conflicts.len(),
            self.trashed,
        );
        if !self.errors.is_empty() {
            s.push_str(&format!(", {} errors", self.errors.len()));
        }
        s
    }

    /// `2 files were changing and are left for the next sync`, and `1 file was still being
    /// written on the hub and is left for the next sync`, when any were (one line).
    pub fn changing_note(&self) -> Option<String> {
        let changing = match self.changing_count() {
            0 => None,
            1 => Some("1 file was changing and is left for the next sync".to_string()),
            n => Some(format!(
                "{n} files were changing and are left for the next sync"
            )),
        };
        let writing = match self.writing_count() {
            0 => None,
            1 => Some(
                "1 file was still being written on the hub and is left for the next sync"
                    .to_string(),
            ),
            n => Some(format!(
                "{n} files were still being written on the hub and are left for the next sync"
            )),
        };
        match (changing, writing) {
            (Some(c), Some(w)) => Some(format!("{c}; {w}")),
            (c, w) => c.or(w),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn files_being_written_are_counted_apart_from_changing_ones() {
        let mut r = SyncReport::default();
        assert_eq!(r.changing_note(), None);
        r.scan_right.moving = vec![p("a"), p("b")];
        r.scan_right.writing = vec![p("b")];
        r.changing.push(p("a"));
        assert_eq!((r.changing_count(), r.writing_count()), (1, 1));
        assert_eq!(
            r.changing_note().as_deref(),
            Some(
                "1 file was changing and is left for the next sync; \
                 1 file was still being written on the hub and is left for the next sync"
            )
        );
        r.changing.clear();
        r.scan_right.moving = vec![p("b"), p("c")];
        r.scan_right.writing = vec![p("b"), p("c")];
        assert_eq!(
            r.changing_note().as_deref(),
            Some("2 files were still being written on the hub and are left for the next sync")
        );
    }
}
