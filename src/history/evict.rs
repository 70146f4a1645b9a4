//! Which trash entries go: those older than `trash_days`, then, while the trash is over
//! `trash_max`, the oldest, but never a deleted file's last kept version (the only copy of it
//! this replica has). Pure: the listing comes from a store, the removals go to one.

use super::versions::{Kept, Versions};
use crate::relpath::RelPath;
use std::collections::BTreeSet;

/// `trash_max` as written: a share of the disk or a size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    Percent(f64),
    Bytes(u64),
}

impl Cap {
    /// `"10%"`, `"20 GiB"`, `"500MB"`, `"1000000"` (bytes).
    pub fn parse(s: &str) -> Result<Cap, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 100.0 => Ok(Cap::Percent(v)),
                _ => Err(format!(
                    "{s:?} is not a share of the disk; use e.g. \"10%\""
                )),
            };
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "kib" => 1 << 10,
            "mb" | "m" => 1_000_000,
            "mib" => 1 << 20,
            "gb" | "g" => 1_000_000_000,
            "gib" => 1 << 30,
            "tb" | "t" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return Err(format!("{s:?}: unknown unit {unit:?}; use e.g. \"20 GiB\"")),
        };
        match num.parse::<f64>() {
            // A cap below one byte would empty the trash after every sync.
            Ok(v) if v.is_finite() && v * mult as f64 >= 1.0 => {
                Ok(Cap::Bytes((v * mult as f64) as u64))
            }
            Ok(v) if v.is_finite() && v > 0.0 => Err(format!(
                "{s:?} is less than one byte; use e.g. \"20 GiB\" or \"10%\""
            )),
            _ => Err(format!(
                "{s:?} is not a size; use e.g. \"20 GiB\" or \"10%\""
            )),
        }
    }

    /// The cap in bytes on a disk of `disk` bytes (`None`: the disk's size is unknown).
    pub fn bytes(self, disk: Option<u64>) -> Option<u64> {
        match self {
            Cap::Bytes(b) => Some(b),
            Cap::Percent(p) => disk.map(|d| (d as f64 * p / 100.0) as u64),
        }
    }
}

/// What a sweep removes, and what it could not bring under the cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub remove: Vec<RelPath>,
    /// Bytes the trash holds after the sweep.
    pub left: u64,
    /// Bytes over the cap that are last copies and stay.
    pub over: u64,
}

/// The sweep of `kept` at `now`: `max_age` seconds (`None`: no expiry), `cap` bytes (`None`:
/// no cap). `live` holds the paths that have a file now.
pub fn sweep(
    kept: &Versions,
    live: &BTreeSet<RelPath>,
    now: i64,
    max_age: Option<i64>,
    cap: Option<u64>,
) -> Sweep {
    let mut all: Vec<(&Kept, bool)> = Vec::new();
    for (path, versions) in kept {
        // Newest first: the first of a path with no file now is its last copy.
        for (i, k) in versions.iter().enumerate() {
            all.push((k, i == 0 && !live.contains(path)));
        }
    }
    all.sort_by_key(|(k, _)| (k.trashed, k.n));
    let mut out = Sweep::default();
    let mut keep: Vec<(&Kept, bool)> = Vec::new();
    for (k, last) in all {
        match max_age {
            Some(age) if now - k.trashed > age => out.remove.push(k.slot.clone()),
            _ => keep.push((k, last)),
        }
    }
    let mut total: u64 = keep.iter().map(|(k, _)| k.size).sum();
    if let Some(cap) = cap {
        for (k, last) in &keep {
            if total <= cap {
                break;
            }
            if !last {
                out.remove.push(k.slot.clone());
                total -= k.size;
            }
        }
        out.over = total.saturating_sub(cap);
    }
    out.left = total;
    out
}

#[cfg(test)]
mod tests {
    use super::super::versions::{TrashFile, group};
    use super::*;
    use crate::index::MTime;
    use proptest::prelude::*;

    fn kept(entries: &[(&str, i64, u64)]) -> Versions {
        group(entries.iter().enumerate().map(|(i, (p, t, size))| {
            TrashFile {
                slot: RelPath::parse(&format!(
                    ".sync-trash/{p}~{}-{}",
                    crate::time::stamp(*t),
                    i + 1
                ))
                .unwrap(),
                size: *size,
                mtime: MTime::new(*t - 10, 0),
                mode: None,
            }
        }))
    }

    #[test]
    fn caps_parse() {
        assert_eq!(Cap::parse("10%"), Ok(Cap::Percent(10.0)));
        assert_eq!(Cap::parse("20 GiB"), Ok(Cap::Bytes(20 << 30)));
        assert_eq!(Cap::parse("1.5MB"), Ok(Cap::Bytes(1_500_000)));
        assert_eq!(Cap::parse("4096"), Ok(Cap::Bytes(4096)));
        for bad in ["0%", "101%", "lots", "20 GiBs", "-1 GB", "", "%"] {
            assert!(Cap::parse(bad).is_err(), "{bad}");
        }
        for tiny in ["0.5", "0.9 B", "0.0000001 KB"] {
            let e = Cap::parse(tiny).unwrap_err();
            assert!(e.contains("less than one byte") && !e.contains('\n'), "{e}");
        }
        assert_eq!(Cap::parse("0.5 KB"), Ok(Cap::Bytes(500)));
        assert_eq!(Cap::Percent(10.0).bytes(Some(1000)), Some(100));
        assert_eq!(Cap::Percent(10.0).bytes(None), None);
    }

    #[test]
    fn oldest_first_and_never_a_last_copy() {
        let k = kept(&[
            ("a", 100, 10),
            ("a", 200, 10),
            ("gone", 50, 10),
            ("b", 300, 10),
        ]);
        let live: BTreeSet<RelPath> = [RelPath::parse("a").unwrap(), RelPath::parse("b").unwrap()]
            .into_iter()
            .collect();
        let s = sweep(&k, &live, 1000, None, Some(25));
        // "gone" is the oldest but its only copy; a@100 and a@200 go, oldest first.
        let names: Vec<&str> = s.remove.iter().map(RelPath::as_str).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with(".sync-trash/a~") && names[0].contains("000140"));
        assert_eq!((s.left, s.over), (20, 0));
        // Nothing else can go: what is left over the cap is a last copy.
        let s = sweep(&k, &live, 1000, None, Some(5));
        assert_eq!((s.remove.len(), s.left, s.over), (3, 10, 5));
        // Expiry by age takes everything older, last copies too.
        let s = sweep(&k, &live, 1000, Some(850), None);
        assert_eq!(s.remove.len(), 2);
        assert_eq!(s.left, 20);
    }

    proptest! {
        #![proptest_config(crate::index::fuzz_config())]
        /// For any trash and cap: under the cap or only last copies left; every removal
        /// older than every kept non-last copy; no last copy removed by the cap.
        #[test]
        fn sweep_holds_its_rules(
            entries in prop::collection::vec((0usize..5, 1i64..1000, 0u64..100), 0..30),
            live_mask in 0u8..32,
            cap in 0u64..2000,
        ) {
            let names = ["a", "b", "c/d", "c/e", "f"];
            let e: Vec<(&str, i64, u64)> =
                entries.iter().map(|(p, t, s)| (names[*p], 1_700_000_000 + *t, *s)).collect();
            let k = kept(&e);
            let live: BTreeSet<RelPath> = names.iter().enumerate()
                .filter(|(i, _)| live_mask & (1 << i) != 0)
                .map(|(_, n)| RelPath::parse(n).unwrap()).collect();
            let s = sweep(&k, &live, 1_700_001_000, None, Some(cap));
            let removed: BTreeSet<&RelPath> = s.remove.iter().collect();
            let mut stays = Vec::new();
            for (p, v) in &k {
                for (i, x) in v.iter().enumerate() {
                    let last = i == 0 && !live.contains(p);
                    prop_assert!(!(last && removed.contains(&x.slot)));
                    if !removed.contains(&x.slot) { stays.push((x, last)); }
                }
            }
            let left: u64 = stays.iter().map(|(x, _)| x.size).sum();
            prop_assert_eq!(left, s.left);
            prop_assert!(left <= cap || stays.iter().all(|(_, l)| *l));
            for (x, last) in &stays {
                if *last { continue; }
                for r in &s.remove {
                    let gone = k.values().flatten().find(|y| &y.slot == r).unwrap();
                    prop_assert!((gone.trashed, gone.n) <= (x.trashed, x.n));
                }
            }
        }
    }
}
