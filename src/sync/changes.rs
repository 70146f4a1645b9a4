//! The changes log lines of one sync for one side: what arrived or left there, from which
//! replica, whether what was there went to the trash, each conflict with the replica whose
//! version kept the name, and what failed.

use super::SyncReport;
use crate::history::log::{Change, What};
use crate::plan::{Op, Side};
use crate::relpath::RelPath;

/// When a sync ran, as its log lines say: started, finished, and its random tag.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub t: i64,
    pub done: i64,
    pub id: u64,
}

/// The lines for `side`; `names` are how each side is called (left, right).
pub fn lines(report: &SyncReport, side: Side, names: (&str, &str), run: Run) -> Vec<Change> {
    let name = |s: Side| match s {
        Side::Left => names.0,
        Side::Right => names.1,
    };
    let failed = |p: &RelPath| {
        report.changing.contains(p) || report.errors.iter().any(|e| e.side == side && &e.path == p)
    };
    let line = |what, path: &RelPath, other: Option<&RelPath>, trashed, source: &str| Change {
        t: run.t,
        done: run.done,
        run: run.id,
        what,
        path: path.clone(),
        other: other.cloned(),
        source: source.to_string(),
        trashed,
        error: None,
    };
    let from = name(side.other());
    let mut out = Vec::new();
    for s in report
        .plan
        .steps
        .iter()
        .filter(|s| s.side == side && !failed(&s.path))
    {
        let (what, other, trashed) = match &s.op {
            Op::MoveAside { .. } | Op::Record => continue,
            Op::MkDir { replace } => (What::Folder, None, replace.is_some()),
            Op::Fetch { replace, .. } => match replace.as_ref().filter(|r| r.is_live()) {
                Some(_) => (What::Modified, None, true),
                None => (What::Added, None, false),
            },
            Op::Move { from, .. } => (What::Renamed, Some(from), false),
            Op::Trash { .. } => (What::Deleted, None, true),
            Op::RmDir => (What::Unfolder, None, false),
            Op::Chmod { .. } => (What::Mode, None, false),
        };
        out.push(line(what, &s.path, other, trashed, from));
    }
    for c in &report.conflicts {
        out.push(line(
            What::Conflict,
            &c.path,
            Some(&c.copy),
            false,
            name(c.winner),
        ));
    }
    for e in report.errors.iter().filter(|e| e.side == side) {
        let mut l = line(What::Error, &e.path, None, false, from);
        l.error = Some(e.error.to_string());
        out.push(l);
    }
    out
}
