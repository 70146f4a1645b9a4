//! Where a replica lives: its root folder's device and inode and the machine, recorded in
//! its index (`".home"`), so a copy of the folder with its `.sync` (`cp -a`, a restore from a
//! backup, another disk) knows it is a new replica. It takes a new id before it records any
//! change, keeping the old id's counters in its vectors as history: edits made on the copy
//! and on the original are then concurrent, and conflict as they must.
//!
//! A folder moved on its own disk keeps its inode and stays the same replica. A false
//! "elsewhere" (a device renumbered) only costs a new id: that is always safe.

use crate::index::{Index, ReplicaId};
use serde_json::{Value, json};

/// The top-level index key holding the home; the original tool ignores it.
pub const HOME_KEY: &str = ".home";

/// Where a replica's root folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub machine: String,
    pub dev: u64,
    pub ino: u64,
}

/// How a loaded index stands to where its folder is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Where it was recorded.
    AtHome,
    /// No home recorded (a new index, or one written before homes were): now recorded.
    Recorded,
    /// Somewhere else: a new replica id was taken.
    Elsewhere { was: Home, old_id: ReplicaId },
}

impl Home {
    /// Where the folder `root` is, on this machine.
    pub fn of(root: &super::Root) -> std::io::Result<Home> {
        let (dev, ino) = root.identity().map_err(super::RootError::into_io)?;
        Ok(Home {
            machine: machine(),
            dev,
            ino,
        })
    }

    fn to_json(&self) -> Value {
        json!({"machine": self.machine, "dev": self.dev, "ino": self.ino})
    }

    fn from_json(v: &Value) -> Option<Home> {
        Some(Home {
            machine: v.get("machine")?.as_str()?.to_string(),
            dev: v.get("dev")?.as_u64()?,
            ino: v.get("ino")?.as_u64()?,
        })
    }

    /// What happened to a folder recorded at `self` and found at `here`, for the log.
    pub fn what_happened(&self, here: &Home) -> &'static str {
        if self.machine != here.machine {
            "was copied or restored from another machine"
        } else if self.dev != here.dev {
            "was copied, restored or moved to another disk"
        } else {
            "was copied or restored from a backup"
        }
    }
}

/// This machine: its systemd machine id, or its host name where there is none.
fn machine() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(crate::sys::hostname)
}

/// The home `index` records, if any (a malformed one counts as none).
pub fn recorded(index: &Index) -> Option<Home> {
    index.extra.get(HOME_KEY).and_then(Home::from_json)
}

/// Brings `index` in line with its folder being at `here`: records the home where none was,
/// and where another was, takes the id `fresh` gives (the history stays in the vectors).
pub fn settle(index: &mut Index, here: &Home, fresh: impl FnOnce() -> ReplicaId) -> Placement {
    let placement = match recorded(index) {
        Some(h) if h == *here => return Placement::AtHome,
        Some(was) => {
            let old_id = index.replica;
            index.replica = fresh();
            Placement::Elsewhere { was, old_id }
        }
        None => Placement::Recorded,
    };
    index.extra.insert(HOME_KEY.into(), here.to_json());
    placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Causality, Entry, MTime, VersionVector};
    use crate::relpath::RelPath;

    fn home(machine: &str, dev: u64, ino: u64) -> Home {
        Home {
            machine: machine.into(),
            dev,
            ino,
        }
    }

    #[test]
    fn a_copy_takes_a_new_id_and_keeps_its_history() {
        let old = ReplicaId(1);
        let mut original = Index::new(old);
        let doc = RelPath::parse("doc").unwrap();
        let vv = VersionVector::new().bumped(old).bumped(old);
        original
            .entries
            .insert(doc.clone(), Entry::file(1, MTime::default(), None, vv));
        let here = home("m", 10, 20);
        assert_eq!(
            settle(&mut original, &here, || ReplicaId(9)),
            Placement::Recorded
        );
        assert_eq!(
            settle(&mut original, &here, || ReplicaId(9)),
            Placement::AtHome
        );
        assert_eq!(original.replica, old);

        // The same index read back in another folder (a copy): a new id, the same vectors.
        let bytes = crate::index::to_json_vec(&original);
        let mut copy = crate::index::from_json_slice(&bytes).unwrap();
        let there = home("m", 10, 21);
        let p = settle(&mut copy, &there, || ReplicaId(2));
        assert_eq!(
            p,
            Placement::Elsewhere {
                was: here.clone(),
                old_id: old
            }
        );
        assert_eq!(copy.replica, ReplicaId(2));
        assert_eq!(recorded(&copy), Some(there.clone()));
        assert_eq!(copy.get(&doc), original.get(&doc));
        assert_eq!(
            settle(&mut copy, &there, || ReplicaId(3)),
            Placement::AtHome
        );

        // An edit on each is concurrent: they conflict.
        let a = original.get(&doc).unwrap().vv.bumped(old);
        let b = copy.get(&doc).unwrap().vv.bumped(copy.replica);
        assert_eq!(a.compare(&b), Causality::Concurrent);
    }

    #[test]
    fn what_happened_names_the_move() {
        let h = home("m", 1, 1);
        assert!(
            h.what_happened(&home("n", 1, 1))
                .contains("another machine")
        );
        assert!(h.what_happened(&home("m", 2, 1)).contains("another disk"));
        assert!(h.what_happened(&home("m", 1, 2)).contains("backup"));
        let mut idx = Index::new(ReplicaId(1));
        idx.extra.insert(HOME_KEY.into(), json!({"machine": 3}));
        assert_eq!(recorded(&idx), None);
    }
}
