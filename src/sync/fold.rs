//! Names a receiver cannot hold apart or cannot hold at all, settled in the plan before it
//! runs. Pure: each side's `NameRules` come from probing its disk.
//!
//! On a side that folds case or normalization (APFS, NTFS, FAT), a file arriving under a
//! name that folds to one already there (or arriving in the same sync) would overwrite it:
//! it is kept instead under a conflict copy's name, renamed so on the sending side too, so
//! both sides hold both files. A folder in that position, and a name the receiver refuses
//! (Windows' rules), is held back: left as it is on the sender and reported.

use crate::index::{Index, Kind};
use crate::plan::{Conflict, Op, Plan, Side, Step, conflict_name};
use crate::relpath::RelPath;
use crate::replica::NameRules;
use std::collections::{BTreeMap, BTreeSet};

/// A path held back from one side, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldName {
    pub path: RelPath,
    /// The side that could not take it.
    pub side: Side,
    pub why: String,
}

/// Adjusts `plan` to what each side's file system can hold; returns what was held back.
pub fn settle(
    plan: &mut Plan,
    left: &Index,
    right: &Index,
    rules: [NameRules; 2],
) -> Vec<HeldName> {
    let mut held = Vec::new();
    for (side, r) in [(Side::Left, rules[0]), (Side::Right, rules[1])] {
        if r.windows_names {
            held.extend(refused(plan, side, r));
        }
        if !r.is_exact() {
            held.extend(twins(plan, left, right, side, r));
        }
    }
    held.sort_by(|a, b| (&a.path, a.side).cmp(&(&b.path, b.side)));
    held.dedup_by(|a, b| a.path == b.path && a.side == b.side);
    drop_below(plan, &held);
    held
}

/// Whether a step puts a new name on its side (a file or a folder that was not there).
fn creates(s: &Step) -> bool {
    match &s.op {
        Op::Fetch { replace, .. } => replace.is_none(),
        Op::MkDir { replace } => replace.is_none(),
        Op::Move { .. } => true,
        _ => false,
    }
}

/// Names `side` would be given that its file system refuses: held back, topmost only.
fn refused(plan: &Plan, side: Side, r: NameRules) -> Vec<HeldName> {
    let mut out = Vec::new();
    for s in plan.steps.iter().filter(|s| s.side == side && creates(s)) {
        let mut at = RelPath::root();
        for c in s.path.components() {
            at = at.join_unchecked(c);
            if let Some(why) = r.refuses(c) {
                out.push(HeldName {
                    path: at,
                    side,
                    why: format!("its name has {why}"),
                });
                break;
            }
        }
    }
    out
}

/// Names new to `side` that fold to a name it holds (or is given in this plan).
fn twins(plan: &mut Plan, left: &Index, right: &Index, side: Side, r: NameRules) -> Vec<HeldName> {
    let (here, there) = match side {
        Side::Left => (left, right),
        Side::Right => (right, left),
    };
    let mut keys = staying(plan, here, side, r);
    let mut taken: BTreeSet<RelPath> = left
        .entries
        .keys()
        .chain(right.entries.keys())
        .cloned()
        .collect();
    taken.extend(plan.conflicts.iter().map(|c| c.copy.clone()));
    let mut held = Vec::new();
    let mut added = Vec::new();
    for s in plan
        .steps
        .iter_mut()
        .filter(|s| s.side == side && creates(s))
    {
        let key = r.key(&s.path);
        let Some(twin) = keys.get(&key).filter(|t| **t != s.path).cloned() else {
            keys.insert(key, s.path.clone());
            continue;
        };
        let source = there.entries.get(&s.path).filter(|e| e.kind == Kind::File);
        let fetch = matches!(s.op, Op::Fetch { .. });
        match source {
            Some(src) if fetch => {
                let copy = conflict_name(&s.path, src.mtime, there.replica, &mut taken);
                added.push(Step {
                    side: side.other(),
                    path: s.path.clone(),
                    op: Op::MoveAside { to: copy.clone() },
                    result: src.clone(),
                });
                plan.conflicts.push(Conflict {
                    path: s.path.clone(),
                    copy: copy.clone(),
                    winner: side,
                });
                if let Op::Fetch { from, .. } = &mut s.op {
                    *from = copy.clone();
                }
                s.path = copy.clone();
                keys.insert(r.key(&copy), copy);
            }
            _ => held.push(HeldName {
                path: s.path.clone(),
                side,
                why: format!("it differs from {twin} only in case or accents, which one folder there cannot hold apart"),
            }),
        }
    }
    plan.steps.extend(added);
    plan.steps.sort_by_key(|s| s.op.phase());
    held
}

/// The names `here` keeps through the plan, by their folded key. What leaves in the plan does
/// not count: its name is free once it is gone (a rename that only changes case is a move
/// whose source is its own twin).
fn staying(plan: &Plan, here: &Index, side: Side, r: NameRules) -> BTreeMap<String, RelPath> {
    let leaving: BTreeSet<&RelPath> = plan
        .steps
        .iter()
        .filter(|s| s.side == side)
        .filter_map(|s| match &s.op {
            Op::Trash { .. } | Op::RmDir | Op::MoveAside { .. } => Some(&s.path),
            Op::Move { from, .. } => Some(from),
            _ => None,
        })
        .collect();
    here.entries
        .iter()
        .filter(|(p, e)| e.is_live() && !leaving.contains(p))
        .map(|(p, _)| (r.key(p), p.clone()))
        .collect()
}

/// The plan without steps at or below a held path on the side that holds it back (the
/// sender keeps the path as it is).
fn drop_below(plan: &mut Plan, held: &[HeldName]) {
    if held.is_empty() {
        return;
    }
    let is_held = |side: Side, p: &RelPath| {
        held.iter()
            .any(|h| h.side == side && p.starts_with(&h.path))
    };
    plan.steps.retain(|s| !is_held(s.side, &s.path));
}

#[cfg(test)]
mod tests;
