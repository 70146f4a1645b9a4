//! What a sync did: counts, conflicts, the steps that failed and the files that were
//! changing, and the one-line summary people and logs read.

use crate::plan::{Conflict, Plan, Side};
use crate::relpath::RelPath;
use crate::scan::ScanStats;
use crate::store::{Chain, StoreError};

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
    pub errors: Vec<StepError>,
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

/// One thing a sync could not do, for a person to look at: a value until the CLI or the
/// daemon's log renders it; the next sync retries it.
#[derive(Debug)]
pub struct StepError {
    /// The plan step's name (`fetch`, `trash`, ...), or `read` for what a scan could not read.
    pub op: &'static str,
    pub path: RelPath,
    pub side: Side,
    /// How that side's store names itself.
    pub place: String,
    pub error: StepFailure,
}

#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// The store failed the step.
    #[error(transparent)]
    Store(StoreError),
    /// Not attempted: the folder it goes in could not be made.
    #[error("its folder failed")]
    FolderFailed,
    /// The scan could not read it (the scan's reason).
    #[error("{0}")]
    Unreadable(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (op, path, place) = (self.op, &self.path, &self.place);
        match &self.error {
            StepFailure::Store(e) => write!(f, "{op} {path} on {place}: {}", Chain(e)),
            StepFailure::FolderFailed => write!(f, "{path}: skipped, its folder failed"),
            StepFailure::Unreadable(why) => {
                write!(f, "cannot read {path} on {place} ({why}); left as it was")
            }
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
