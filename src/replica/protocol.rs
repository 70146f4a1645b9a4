//! The replica protocols as pure decisions, run alike by every transport (the local store and
//! our server over `Root`, the SFTP store over requests): how a finished temp takes its path
//! (`install_plan`), which name a trash entry takes (`TrashSlots`), and which temps a scan
//! removes (`is_leftover_temp`). The lock's decisions sit with the lock (`lock::attempt`).

use super::layout::{TRASH_SLOTS, trash_name, trash_slot_name};
use crate::relpath::RelPath;

/// What stands at the path a finished temp is to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum There {
    Nothing,
    File,
    /// A folder, a link, anything but a regular file.
    Other,
}

/// How a finished temp takes its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Rename without replacing: something there arrived since the scan, and stays
    /// (`Appeared`).
    Fresh,
    /// Keep what is there in the trash, then rename over it.
    Replace(Keep),
}

/// How what a temp replaces is kept in the trash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// A hard link in a trash slot, so the rename replaces the file atomically (no moment
    /// without it); where a link cannot be made, a move.
    LinkElseMove,
    /// Moved into a trash slot before the rename.
    Move,
}

/// The install of a temp at a path: `fresh` when the index saw it empty, `there` what stands
/// there now (not looked at for a fresh one), `can_link` whether the transport has hard links.
pub fn install_plan(fresh: bool, there: There, can_link: bool) -> Install {
    if fresh {
        return Install::Fresh;
    }
    Install::Replace(match there {
        There::Nothing => Keep::Nothing,
        There::File if can_link => Keep::LinkElseMove,
        There::File | There::Other => Keep::Move,
    })
}

/// The names a trash entry for a path may take, in the order they are tried: the first one
/// nothing stands at is taken, and a folder where all are taken is full. `dir` is the trash
/// folder they are in.
#[derive(Debug, Clone)]
pub struct TrashSlots {
    pub dir: RelPath,
    base: String,
    n: u32,
}

impl TrashSlots {
    /// The slots for `p` moved to the trash at `now` (Unix seconds).
    pub fn new(p: &RelPath, now: i64) -> Self {
        let (dir, base) = trash_name(p, now);
        TrashSlots { dir, base, n: 0 }
    }
}

impl Iterator for TrashSlots {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.n >= TRASH_SLOTS {
            return None;
        }
        self.n += 1;
        Some(trash_slot_name(&self.base, self.n - 1))
    }
}

/// Whether a temp a scan met is a leftover of an interrupted sync, to be removed: only under
/// `.sync.lock` (whoever writes temps holds it, so then no live writer has any; age says
/// nothing, as an upload's temp carries its file's mtime before its rename), and never one the
/// index names (a file of the user's that has our temp shape).
pub fn is_leftover_temp(under_lock: bool, named_by_index: bool) -> bool {
    under_lock && !named_by_index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_install_keeps_what_it_replaces_and_a_fresh_one_replaces_nothing() {
        for there in [There::Nothing, There::File, There::Other] {
            for can_link in [false, true] {
                assert_eq!(install_plan(true, there, can_link), Install::Fresh);
                let keep = match install_plan(false, there, can_link) {
                    Install::Replace(k) => k,
                    Install::Fresh => panic!("a replacing install planned as fresh"),
                };
                let want = match (there, can_link) {
                    (There::Nothing, _) => Keep::Nothing,
                    (There::File, true) => Keep::LinkElseMove,
                    _ => Keep::Move,
                };
                assert_eq!(keep, want, "{there:?} {can_link}");
            }
        }
    }

    #[test]
    fn trash_slots_are_tried_in_order_and_run_out() {
        let p = RelPath::parse("a/b.txt").unwrap();
        let slots = TrashSlots::new(&p, 0);
        assert_eq!(slots.dir.as_str(), ".sync-trash/a");
        let names: Vec<String> = slots.collect();
        assert_eq!(names.len(), TRASH_SLOTS as usize);
        assert_eq!(names[0], "b.txt~19700101-000000");
        assert_eq!(names[1], "b.txt~19700101-000000-1");
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn temps_go_only_under_the_lock_and_never_one_the_index_names() {
        assert!(is_leftover_temp(true, false));
        assert!(!is_leftover_temp(true, true));
        assert!(!is_leftover_temp(false, false));
        assert!(!is_leftover_temp(false, true));
    }
}
