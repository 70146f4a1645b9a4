//! A pair of replicas a sync left settled: the state of each side's index files when nothing
//! was left to do, kept on this machine. The next sync that finds both sides in those states,
//! vouched current by the programs that keep them, stops before it loads either index: equal
//! states are equal indexes, and the plan of a settled pair is empty.

use crate::index::journal::Token;
use crate::scan::ScanStats;
use std::path::Path;

/// How long a settled pair is trusted: a full sync at least this often refreshes each side's
/// record of the other (which `filesync status` shows) and sweeps the trash when due.
pub const TRUSTED_FOR_SECS: i64 = 3600;

/// Both sides' states (`side`) and when the pair was settled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settled {
    pub left: String,
    pub right: String,
    pub at: i64,
}

/// One side's state as a settled pair names it: its index files, and what its scan leaves
/// out by nature (a link that appears beside a file of its name is a clash only a full sync
/// reports).
pub fn side(token: Token, stats: &ScanStats) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&token.0.0);
    for s in &stats.skipped {
        h.update(&(s.path.len() as u64).to_le_bytes());
        h.update(&s.path);
        h.update(s.why.keyword().as_bytes());
    }
    for (why, n) in &stats.skipped_more {
        h.update(why.keyword().as_bytes());
        h.update(&n.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Whether a side's refresh left something as it was (unreadable, still being written):
/// the next sync must look at it again.
pub fn left_something(stats: &ScanStats) -> bool {
    !stats.unreadable.is_empty() || !stats.moving.is_empty() || !stats.writing.is_empty()
}

/// Whether the pair was settled less than `TRUSTED_FOR_SECS` before `now`.
pub fn recent(kept: &Settled, now: i64) -> bool {
    (0..TRUSTED_FOR_SECS).contains(&(now - kept.at))
}

/// Whether one side, in state `token` and having left out `stats`, is as `kept` (that side of
/// a settled pair) names it, with nothing left as it was.
pub fn side_holds(kept: &str, token: Token, stats: &ScanStats) -> bool {
    !left_something(stats) && kept == side(token, stats)
}

/// The settled pair kept at `path`; `None` when there is none or it cannot be read (a full
/// sync then runs, and writes it anew).
pub fn load(path: &Path) -> Option<Settled> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Keeps `s` at `path` (a temp renamed over it: a reader sees the old pair or the new one).
/// Losing it only costs the next sync its early stop, so a failure is only logged.
pub fn save(path: &Path, s: &Settled) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
        std::fs::write(&tmp, serde_json::to_vec(s).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    };
    if let Err(e) = write() {
        tracing::debug!("cannot keep the settled pair at {}: {e}", path.display());
    }
}

/// Forgets the pair at `path`: the sync that ran did not settle it.
pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ContentHash;
    use crate::relpath::RelPath;
    use crate::scan::{Skip, Skipped};
    use crate::store::Vouched;

    fn vouched(t: &[u8]) -> Vouched {
        Vouched {
            token: Token(ContentHash::of(t)),
            stats: ScanStats::default(),
        }
    }

    fn settled(l: &Vouched, r: &Vouched, at: i64) -> Settled {
        Settled {
            left: side(l.token, &l.stats),
            right: side(r.token, &r.stats),
            at,
        }
    }

    /// How `current::start` judges a pair: recent, and each side as kept.
    fn holds(k: &Settled, l: &Vouched, r: &Vouched, now: i64) -> bool {
        recent(k, now)
            && side_holds(&k.left, l.token, &l.stats)
            && side_holds(&k.right, r.token, &r.stats)
    }

    #[test]
    fn only_the_same_pair_vouched_clean_and_recent_holds() {
        let (l, r) = (vouched(b"l"), vouched(b"r"));
        let k = settled(&l, &r, 1000);
        assert!(holds(&k, &l, &r, 1000));
        assert!(holds(&k, &l, &r, 1000 + TRUSTED_FOR_SECS - 1));
        // Too old, a clock that went back.
        assert!(!holds(&k, &l, &r, 1000 + TRUSTED_FOR_SECS));
        assert!(!holds(&k, &l, &r, 999));
        // Either side in another state, or the sides swapped.
        assert!(!holds(&k, &vouched(b"l2"), &r, 1000));
        assert!(!holds(&k, &l, &vouched(b"r2"), 1000));
        assert!(!holds(&k, &r, &l, 1000));
    }

    #[test]
    fn anything_left_as_it_was_or_newly_left_out_does_not_hold() {
        let p = RelPath::parse("a").unwrap();
        let (l, r) = (vouched(b"l"), vouched(b"r"));
        let k = settled(&l, &r, 0);
        let with = |f: &dyn Fn(&mut ScanStats)| {
            let mut v = l.clone();
            f(&mut v.stats);
            v
        };
        let cases: [&dyn Fn(&mut ScanStats); 5] = [
            &|s| s.unreadable.push((p.clone(), "denied".into())),
            &|s| s.moving.push(p.clone()),
            &|s| s.writing.push(p.clone()),
            &|s| {
                s.skipped.push(Skipped {
                    path: b"a".to_vec(),
                    why: Skip::Link,
                })
            },
            &|s| s.skipped_more.push((Skip::Special, 3)),
        ];
        for (i, f) in cases.iter().enumerate() {
            assert!(!holds(&k, &with(*f), &r, 0), "case {i}");
        }
        // A pair settled with a link left out holds while the link is still all there is.
        let linked = with(cases[3]);
        assert!(holds(&settled(&linked, &r, 0), &linked, &r, 0));
    }

    #[test]
    fn a_kept_pair_reads_back_and_a_damaged_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/pair.json");
        let k = settled(&vouched(b"l"), &vouched(b"r"), 42);
        save(&path, &k);
        assert_eq!(load(&path), Some(k));
        std::fs::write(&path, b"{\"left\":").unwrap();
        assert_eq!(load(&path), None);
        forget(&path);
        assert_eq!(load(&path), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );
    }
}
