//! What a sync did: counts, conflicts, the steps that failed and the files that were
//! changing, and the one-line summary people and logs read.

use crate::plan::{Conflict, Plan, Side};
use crate::relpath::RelPath;
use crate::scan::{ScanStats, Skip, Skipped};
use crate::store::{Chain, StoreError};

#[derive(Debug, Default)]
pub struct SyncReport {
    /// Files and bytes copied to the right side.
    pub sent: (u64, u64),
    /// Files and bytes copied to the left side.
    pub received: (u64, u64),
    /// Files and folders deleted (moved to the trash) on either side.
    pub deleted: u64,
    /// Files replaced by the other side's version (the old one kept in the trash).
    pub trashed: u64,
    /// Renames applied as moves instead of copies.
    pub moved: u64,
    /// Files and folders whose permission bits were set (a chmod synced, or modes merged).
    pub chmodded: u64,
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
            "sent {} files ({}), received {} files ({}), moved {}, deleted {}, conflicts {}, replaced {}",
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
        if self.deleted + self.trashed > 0 {
            s.push_str(" (what was deleted or replaced is kept in .sync-trash)");
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

impl SyncReport {
    /// What either side's scan left out, each with the side it is on (`true`: left).
    pub fn skipped(&self) -> impl Iterator<Item = (bool, &Skipped)> {
        let left = self.scan_left.skipped.iter().map(|s| (true, s));
        left.chain(self.scan_right.skipped.iter().map(|s| (false, s)))
    }

    /// How many paths left out for `why` the far sides counted without naming them.
    pub fn more(&self, why: Skip) -> usize {
        let more = self.scan_left.skipped_more.iter();
        more.chain(&self.scan_right.skipped_more)
            .filter(|(k, _)| *k == why)
            .map(|(_, n)| *n as usize)
            .sum()
    }

    /// `3 symlinks and 1 name that is not UTF-8 were not synced; `-v` lists them`, when any
    /// path was left out.
    pub fn skipped_note(&self) -> Option<String> {
        let counts: Vec<(Skip, usize)> = Skip::ALL
            .into_iter()
            .map(|k| {
                (
                    k,
                    self.skipped().filter(|(_, s)| s.why == k).count() + self.more(k),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = counts.iter().map(|(k, n)| k.counted(*n)).collect();
        let listed = match parts.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        let verb = if total == 1 { "was" } else { "were" };
        Some(format!("{listed} {verb} not synced; `-v` lists them"))
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
    /// The two sides hold kinds that cannot be synced into each other (a file and a symbolic
    /// link): `here` on this step's side, `there` on `other_place`.
    #[error("{here} here and {there} on {other_place}")]
    Clash {
        here: String,
        there: String,
        other_place: String,
    },
    /// This step's side cannot hold the name (the reason): left as it is on the other side.
    #[error("{0}")]
    CannotHold(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (op, path, place) = (self.op, &self.path, &self.place);
        match &self.error {
            StepFailure::Store(StoreError::NoSpace { .. }) => write!(
                f,
                "no space left on {place} writing {path}: free space there and sync again"
            ),
            StepFailure::Store(e) => write!(f, "{op} {path} on {place}: {}", Chain(e)),
            StepFailure::FolderFailed => write!(f, "{path}: skipped, its folder failed"),
            StepFailure::Unreadable(why) if path.is_root() => {
                write!(f, "cannot read the folder {place} ({why}); left as it was")
            }
            StepFailure::Unreadable(why) => {
                write!(f, "cannot read {path} on {place} ({why}); left as it was")
            }
            StepFailure::Clash {
                here,
                there,
                other_place,
            } => write!(
                f,
                "{path} is {here} on {place} and {there} on {other_place}; neither is synced \
                 until one of them is renamed or removed"
            ),
            StepFailure::CannotHold(why) => write!(
                f,
                "{path} is not synced to {place}: {why}; it is left as it is until renamed"
            ),
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

    fn skipped(path: &str, why: Skip) -> Skipped {
        Skipped {
            path: path.as_bytes().to_vec(),
            why,
        }
    }

    #[test]
    fn the_skipped_note_counts_each_reason_once_per_sync() {
        let mut r = SyncReport::default();
        assert_eq!(r.skipped_note(), None);
        r.scan_left.skipped = vec![skipped("a", Skip::Link), skipped("b", Skip::NotUtf8)];
        r.scan_right.skipped = vec![skipped("c", Skip::Link), skipped("d", Skip::Link)];
        assert_eq!(
            r.skipped_note().as_deref(),
            Some("3 symlinks and 1 name that is not UTF-8 were not synced; `-v` lists them")
        );
        r.scan_left.skipped = vec![skipped("f", Skip::Special)];
        r.scan_right.skipped.clear();
        assert_eq!(
            r.skipped_note().as_deref(),
            Some("1 FIFO, socket or device was not synced; `-v` lists them")
        );
        r.scan_right.skipped = vec![skipped("x", Skip::Link), skipped("y", Skip::TooDeep)];
        assert_eq!(
            r.skipped_note().as_deref(),
            Some(
                "1 symlink, 1 FIFO, socket or device and 1 path deeper than 120 levels were not \
                 synced; `-v` lists them"
            )
        );
        assert_eq!(r.skipped().filter(|(left, _)| *left).count(), 1);
        // A far side that names only some counts the rest.
        r.scan_right.skipped_more = vec![(Skip::Link, 1500)];
        assert_eq!(
            r.skipped_note().as_deref(),
            Some(
                "1501 symlinks, 1 FIFO, socket or device and 1 path deeper than 120 levels were \
                 not synced; `-v` lists them"
            )
        );
    }

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
