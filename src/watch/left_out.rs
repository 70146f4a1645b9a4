//! What the watcher's scans left out of the index (paths never synced, paths that could not
//! be read), kept per path so that an index refresh the watcher answers without rescanning
//! still reports them to the client. Each scan replaces what was known inside its scopes.

use crate::relpath::RelPath;
use crate::scan::{ScanStats, Skipped};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct LeftOut {
    skipped: BTreeSet<Skipped>,
    unreadable: BTreeMap<RelPath, String>,
}

/// Whether the path `p` (as bytes) is `scope` or below it.
fn under(p: &[u8], scope: &RelPath) -> bool {
    let s = scope.as_str().as_bytes();
    scope.is_root() || p == s || (p.starts_with(s) && p.get(s.len()) == Some(&b'/'))
}

impl LeftOut {
    /// Takes in a scan of `scopes` (`None`: the whole folder): what it found there replaces
    /// what was known there.
    pub fn update(&mut self, scopes: Option<&[RelPath]>, st: &ScanStats) {
        let inside = |p: &[u8]| scopes.is_none_or(|s| s.iter().any(|s| under(p, s)));
        self.skipped.retain(|k| !inside(&k.path));
        self.unreadable
            .retain(|p, _| !inside(p.as_str().as_bytes()));
        self.skipped.extend(st.skipped.iter().cloned());
        self.unreadable.extend(st.unreadable.iter().cloned());
    }

    /// `st` with what is known to be left out in place of what its own scan saw.
    pub fn in_place_of(&self, mut st: ScanStats) -> ScanStats {
        st.skipped = self.skipped.iter().cloned().collect();
        st.unreadable = self
            .unreadable
            .iter()
            .map(|(p, m)| (p.clone(), m.clone()))
            .collect();
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Skip;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn stats(skipped: &[&str], unreadable: &[&str]) -> ScanStats {
        ScanStats {
            skipped: skipped
                .iter()
                .map(|s| Skipped {
                    path: s.as_bytes().to_vec(),
                    why: Skip::Link,
                })
                .collect(),
            unreadable: unreadable.iter().map(|u| (p(u), "no".into())).collect(),
            ..ScanStats::default()
        }
    }

    fn known(l: &LeftOut) -> (Vec<String>, Vec<String>) {
        let st = l.in_place_of(ScanStats::default());
        (
            st.skipped.iter().map(|s| s.to_string()).collect(),
            st.unreadable.iter().map(|(p, _)| p.to_string()).collect(),
        )
    }

    #[test]
    fn a_scan_replaces_what_was_known_inside_its_scopes_only() {
        let mut l = LeftOut::default();
        l.update(None, &stats(&["a/l", "ab/l", "c"], &["d", "a/x"]));
        // A rescan of `a` found nothing left out there; `ab` is not inside `a`.
        l.update(Some(&[p("a")]), &stats(&[], &[]));
        assert_eq!(
            known(&l),
            (vec!["ab/l".into(), "c".into()], vec!["d".into()])
        );
        // A rescan of `d` that can read it now, and finds a link.
        l.update(Some(&[p("d")]), &stats(&["d/l"], &[]));
        assert_eq!(known(&l).1, Vec::<String>::new());
        assert!(known(&l).0.contains(&"d/l".to_string()));
        // A full scan replaces everything.
        l.update(None, &stats(&["z"], &[]));
        assert_eq!(known(&l), (vec!["z".into()], vec![]));
    }
}
