//! Type clashes: a path one side holds as something never synced (a symlink, a FIFO) where
//! the other holds a file or a folder. Neither is synced, nor anything below it, until a
//! person renames or removes one of them; each clash is an error naming both sides. Pure.

use crate::index::{Index, Kind};
use crate::plan::{Op, Plan, Side};
use crate::relpath::RelPath;
use crate::scan::{Skip, Skipped};

/// One path held as different kinds of thing on the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub path: RelPath,
    /// What each side holds there: `a file`, `a symbolic link`.
    pub left: String,
    pub right: String,
}

/// The clashes between what each side's scan left out and what the other side's index
/// holds live.
pub fn find(
    left: &Index,
    right: &Index,
    left_out: &[Skipped],
    right_out: &[Skipped],
) -> Vec<Clash> {
    let mut out = Vec::new();
    for (skipped, other, side) in [
        (left_out, right, Side::Left),
        (right_out, left, Side::Right),
    ] {
        for s in skipped
            .iter()
            .filter(|s| matches!(s.why, Skip::Link | Skip::Special))
        {
            let Some(p) = s.rel() else { continue };
            let Some(e) = other.get(&p).filter(|e| e.is_live()) else {
                continue;
            };
            let held = if e.kind == Kind::Dir {
                "a folder"
            } else {
                "a file"
            }
            .to_string();
            let (l, r) = match side {
                Side::Left => (s.why.what(), held),
                Side::Right => (held, s.why.what()),
            };
            out.push(Clash {
                path: p,
                left: l,
                right: r,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    out
}

/// The plan without any step or conflict at or below a clashing path.
pub fn hold_back(plan: &mut Plan, clashes: &[Clash]) {
    if clashes.is_empty() {
        return;
    }
    let held = |p: &RelPath| clashes.iter().any(|c| p.starts_with(&c.path));
    plan.steps.retain(|s| {
        let from = match &s.op {
            Op::Fetch { from, .. } | Op::Move { from, .. } => Some(from),
            _ => None,
        };
        !held(&s.path) && !from.is_some_and(held)
    });
    plan.conflicts.retain(|c| !held(&c.path) && !held(&c.copy));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Entry, MTime, ReplicaId, VersionVector};

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn index(files: &[&str], dirs: &[&str]) -> Index {
        let mut i = Index::new(ReplicaId::random());
        let me = i.replica;
        let vv = VersionVector::new().bumped(me);
        for f in files {
            i.entries
                .insert(p(f), Entry::file(1, MTime::new(1, 0), None, vv.clone()));
        }
        for d in dirs {
            i.entries
                .insert(p(d), Entry::dir(MTime::new(1, 0), vv.clone()));
        }
        i
    }

    fn skipped(path: &[u8], why: Skip) -> Skipped {
        Skipped {
            path: path.to_vec(),
            why,
        }
    }

    #[test]
    fn a_link_where_the_other_side_has_a_file_or_folder_clashes() {
        let left = index(&["x", "d/f"], &["d"]);
        let right = index(&[], &[]);
        let right_out = [
            skipped(b"x", Skip::Link),
            skipped(b"d", Skip::Special),
            skipped(b"lonely", Skip::Link),
        ];
        let c = find(&left, &right, &[], &right_out);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0].path.as_str(), c[0].left.as_str()), ("d", "a folder"));
        assert_eq!(c[0].right, "a FIFO, socket or device");
        assert_eq!((c[1].path.as_str(), c[1].left.as_str()), ("x", "a file"));
        assert_eq!(c[1].right, "a symbolic link");
        // The same from the other side names the sides the other way round.
        let c = find(&right, &left, &right_out, &[]);
        assert_eq!(
            (c[1].left.as_str(), c[1].right.as_str()),
            ("a symbolic link", "a file")
        );
    }

    #[test]
    fn names_that_cannot_clash_and_tombstones_do_not() {
        let mut left = index(&["gone"], &[]);
        if let Some(e) = left.entries.get_mut(&p("gone")) {
            *e = Entry::tombstone(MTime::new(2, 0), e.vv.clone());
        }
        let right_out = [
            skipped(b"gone", Skip::Link),
            skipped(b"caf\xe9", Skip::NotUtf8),
            skipped(b"deep", Skip::TooDeep),
        ];
        assert!(find(&left, &index(&[], &[]), &[], &right_out).is_empty());
    }

    #[test]
    fn held_back_drops_every_step_at_or_below_a_clash() {
        let left = index(&["x", "d/f", "ok"], &["d"]);
        let right = index(&[], &[]);
        let mut plan = crate::plan::plan(&left, &right);
        let touched = |pl: &Plan, s: &str| pl.steps.iter().any(|st| st.path.as_str() == s);
        assert!(touched(&plan, "x") && touched(&plan, "d/f") && touched(&plan, "ok"));
        let clashes = find(
            &left,
            &right,
            &[],
            &[skipped(b"x", Skip::Link), skipped(b"d", Skip::Link)],
        );
        hold_back(&mut plan, &clashes);
        assert!(!touched(&plan, "x") && !touched(&plan, "d") && !touched(&plan, "d/f"));
        assert!(touched(&plan, "ok"), "an unrelated path was held back");
    }
}
