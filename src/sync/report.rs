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
    /// Files and folders whose permission bits were set (a chmod synced, or modes merged).
    pub chmodded: u64,
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
    /// Changing paths, each once, however many steps and scans met them.
    pub fn changing_count(&self) -> usize {
        let mut all: Vec<&RelPath> = self
            .changing
            .iter()
            .chain(&self.scan_left.moving)
            .chain(&self.scan_right.moving)
            .collect();
        all.sort();
        all.dedup();
        all.len()
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
        if self.chmodded > 0 {
            s.push_str(&format!(", permissions set {}", self.chmodded));
        }
        if !self.errors.is_empty() {
            s.push_str(&format!(", {} errors", self.errors.len()));
        }
        s
    }

    /// `2 files were changing and are left for the next sync`, when any were.
    pub fn changing_note(&self) -> Option<String> {
        match self.changing_count() {
            0 => None,
            1 => Some("1 file was changing and is left for the next sync".into()),
            n => Some(format!(
                "{n} files were changing and are left for the next sync"
            )),
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
