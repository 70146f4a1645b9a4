//! Conflict copies as their names tell them (`name.sync-conflict-YYYYMMDD-HHMMSS-<replica>.ext`,
//! the planner's `conflict_name`), paired with the file they split from, and what resolving
//! one does. Pure.

use crate::plan::CONFLICT_MARK;
use crate::relpath::RelPath;
use std::collections::BTreeSet;

/// One conflict copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub copy: RelPath,
    /// The path the other version keeps.
    pub original: RelPath,
    /// The time in its name (the kept version's mtime), Unix seconds.
    pub when: i64,
    /// The first 8 hex digits of the replica whose version the copy holds.
    pub replica: String,
}

impl Copy {
    /// What `p`'s name says, if it is a conflict copy's.
    pub fn of(p: &RelPath) -> Option<Copy> {
        let name = p.name();
        let i = name.find(CONFLICT_MARK)?;
        let (stem, rest) = (&name[..i], &name[i + CONFLICT_MARK.len()..]);
        let when = crate::time::parse_stamp(rest.get(..15)?)?;
        let rest = rest[15..].strip_prefix('-')?;
        let replica = rest.get(..8)?;
        if !replica.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let mut ext = &rest[8..];
        if let Some(after) = ext.strip_prefix('-') {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            ext = &after[digits..];
        }
        if !(ext.is_empty() || ext.starts_with('.')) || stem.is_empty() {
            return None;
        }
        let parent = p.parent().unwrap_or_default();
        let original = parent.join(&format!("{stem}{ext}")).ok()?;
        Some(Copy {
            copy: p.clone(),
            original,
            when,
            replica: replica.to_string(),
        })
    }
}

/// Every conflict copy among `live`, by copy path.
pub fn find<'a>(live: impl IntoIterator<Item = &'a RelPath>) -> Vec<Copy> {
    live.into_iter().filter_map(Copy::of).collect()
}

/// The copies a `resolve PATH` is about: PATH itself when it is a copy, else every copy of
/// PATH.
pub fn about<'a>(path: &RelPath, copies: &'a [Copy]) -> Vec<&'a Copy> {
    match copies.iter().find(|c| &c.copy == path) {
        Some(c) => vec![c],
        None => copies.iter().filter(|c| &c.original == path).collect(),
    }
}

/// Which version a resolve keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keep {
    /// The version at the file's own name.
    This,
    /// The conflict copy's version, put at the file's name.
    Other,
    /// Both: the copy becomes an ordinary file beside it.
    Both,
}

/// A name for the copy kept beside the original with `--keep both`:
/// `stem (from <replica>).ext`, then `stem (from <replica> 2).ext`, … avoiding `taken`.
pub fn both_name(c: &Copy, from: &str, taken: &BTreeSet<RelPath>) -> RelPath {
    let name = c.original.name();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let parent = c.original.parent().unwrap_or_default();
    let from: String = from
        .chars()
        .map(|ch| if ch == '/' { '_' } else { ch })
        .collect();
    (1u32..)
        .map(|n| {
            let tag = if n == 1 {
                from.clone()
            } else {
                format!("{from} {n}")
            };
            let stem = crate::relpath::fit_name(stem, tag.len() + 8 + ext.len());
            parent.join_unchecked(&format!("{stem} (from {tag}){ext}"))
        })
        .find(|p| !taken.contains(p))
        .unwrap_or_else(|| c.copy.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{MTime, ReplicaId};

    fn rp(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn names_the_planner_makes_parse_back() {
        let mut taken = BTreeSet::new();
        let r = ReplicaId(0x0e6d_6fbe_1234_5678);
        for (p, ext) in [
            ("notes.md", ".md"),
            ("a/b/report", ""),
            ("a/.hidden", ""),
            ("x.tar.gz", ".gz"),
        ] {
            for _ in 0..3 {
                let copy =
                    crate::plan::conflict_name(&rp(p), MTime::new(1_764_011_090, 0), r, &mut taken);
                let c = Copy::of(&copy).unwrap_or_else(|| panic!("{copy}"));
                assert_eq!(c.original, rp(p), "{copy}");
                assert_eq!(c.when, 1_764_011_090);
                assert_eq!(c.replica, "0e6d6fbe");
                assert!(copy.name().ends_with(ext));
            }
        }
        for not in [
            "notes.md",
            "notes.sync-conflict-.md",
            "notes.sync-conflict-20251124-190450-0e6d6fbx.md",
            "notes.sync-conflict-20251124-190450-0e6d6fbe-.md",
            "notes.sync-conflict-20251124-190450-0e6d6fbejunk",
            ".sync-conflict-20251124-190450-0e6d6fbe.md",
        ] {
            assert_eq!(Copy::of(&rp(not)), None, "{not}");
        }
    }

    #[test]
    fn resolve_finds_its_copies_and_names_both() {
        let live = [
            rp("n.md"),
            rp("n.sync-conflict-20251124-190450-0e6d6fbe.md"),
            rp("n.sync-conflict-20251124-190451-11111111.md"),
            rp("m.md"),
        ];
        let copies = find(&live);
        assert_eq!(copies.len(), 2);
        assert_eq!(about(&rp("n.md"), &copies).len(), 2);
        assert_eq!(about(&live[1], &copies).len(), 1);
        assert!(about(&rp("m.md"), &copies).is_empty());
        let mut taken = BTreeSet::new();
        let first = both_name(&copies[0], "laptop", &taken);
        assert_eq!(first, rp("n (from laptop).md"));
        taken.insert(first);
        assert_eq!(
            both_name(&copies[0], "laptop", &taken),
            rp("n (from laptop 2).md")
        );
        assert_eq!(
            both_name(&copies[0], "a/b", &BTreeSet::new()),
            rp("n (from a_b).md")
        );
    }
}
