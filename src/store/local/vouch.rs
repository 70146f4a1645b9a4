//! This machine's daemon vouching for a folder's index: the control socket's `refresh`
//! request (the daemon brings `.sync` up to date from what its watcher saw, as it does for a
//! client of its SFTP server) and the answer, as both ends see it.

use crate::index::ContentHash;
use crate::index::journal::Token;
use crate::relpath::RelPath;
use crate::scan::{ScanStats, Skip, Skipped};
use crate::store::Vouched;
use std::path::Path;

/// The request's body: the control requests' `refresh`.
pub const REQUEST: &[u8] = b"\"refresh\"";

/// The daemon's answer to `refresh`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Refreshed(Answer),
    Error(String),
}

/// What the refresh left as it was, and the state of the index files after it (hex).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub token: Option<String>,
    pub unreadable: Vec<(String, String)>,
    pub moving: Vec<String>,
    pub writing: Vec<String>,
    /// Left out by nature: the path's bytes and the reason's keyword.
    pub skipped: Vec<(Vec<u8>, String)>,
}

impl Answer {
    pub fn of(stats: &ScanStats, token: Option<Token>) -> Answer {
        let paths = |v: &[RelPath]| v.iter().map(|p| p.as_str().to_owned()).collect();
        Answer {
            token: token.map(|t| t.0.to_hex()),
            unreadable: (stats.unreadable.iter())
                .map(|(p, why)| (p.as_str().to_owned(), why.clone()))
                .collect(),
            moving: paths(&stats.moving),
            writing: paths(&stats.writing),
            skipped: (stats.skipped.iter())
                .map(|s| (s.path.clone(), s.why.keyword().to_owned()))
                .collect(),
        }
    }

    /// The answer as a store's `Vouched`; `None` without a token or with a path that is not
    /// one (nothing to trust then: the caller loads and scans as usual).
    // Windows has no daemon to ask (see `ask`).
    #[cfg_attr(windows, allow(dead_code))]
    fn vouched(self) -> Option<Vouched> {
        let token = Token(ContentHash::from_hex(self.token.as_deref()?)?);
        let paths = |v: Vec<String>| -> Option<Vec<RelPath>> {
            v.iter().map(|p| RelPath::parse(p).ok()).collect()
        };
        let unreadable = (self.unreadable.into_iter())
            .map(|(p, why)| Some((RelPath::parse(&p).ok()?, why)))
            .collect::<Option<Vec<_>>>()?;
        let skipped = (self.skipped.into_iter())
            .filter_map(|(path, k)| {
                Some(Skipped {
                    path,
                    why: Skip::from_keyword(&k)?,
                })
            })
            .collect();
        let stats = ScanStats {
            unreadable,
            moving: paths(self.moving)?,
            writing: paths(self.writing)?,
            skipped,
            ..ScanStats::default()
        };
        Some(Vouched { token, stats })
    }
}

/// Asks the daemon that keeps `root` to vouch for its index. `None` when none runs (or it
/// cannot: its answer says why, at debug level), and the sync loads and scans as usual.
#[cfg(unix)]
pub fn ask(root: &Path) -> Option<Vouched> {
    use crate::sys::socket::ControlError;
    // Long enough for a rescan of what the watcher saw change; a daemon that takes longer
    // is doing a whole rescan, and the sync's own scan is as quick.
    let wait = std::time::Duration::from_secs(60);
    let out = match crate::sys::socket::ask(root, REQUEST, wait) {
        Ok((out, _)) => out,
        Err(e @ ControlError::NotRunning(_)) => {
            tracing::debug!("no daemon vouches for {}: {e}", root.display());
            return None;
        }
        Err(e) => {
            let e = crate::store::Chain(&e);
            tracing::warn!(
                "the daemon of {} did not vouch ({e}); scanning here",
                root.display()
            );
            return None;
        }
    };
    match serde_json::from_slice(&out) {
        Ok(Reply::Refreshed(a)) => a.vouched(),
        Ok(Reply::Error(e)) => {
            tracing::debug!("the daemon of {} cannot vouch: {e}", root.display());
            None
        }
        Err(e) => {
            tracing::debug!(
                "unreadable answer from the daemon of {}: {e}",
                root.display()
            );
            None
        }
    }
}

/// No daemon answers on Windows (no control socket there).
#[cfg(windows)]
pub fn ask(_root: &Path) -> Option<Vouched> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_comes_back_as_the_stats_it_was_made_of() {
        let p = |s: &str| RelPath::parse(s).unwrap();
        let stats = ScanStats {
            unreadable: vec![(p("a/b"), "permission denied".into())],
            moving: vec![p("c"), p("d e")],
            writing: vec![p("d e")],
            skipped: vec![Skipped {
                path: b"l\xffnk".to_vec(),
                why: Skip::Link,
            }],
            ..ScanStats::default()
        };
        let token = Token(ContentHash::of(b"state"));
        let wire = serde_json::to_vec(&Reply::Refreshed(Answer::of(&stats, Some(token)))).unwrap();
        let Reply::Refreshed(a) = serde_json::from_slice(&wire).unwrap() else {
            panic!("not an answer");
        };
        let v = a.vouched().unwrap();
        assert_eq!(v.token, token);
        assert_eq!(v.stats.unreadable, stats.unreadable);
        assert_eq!(v.stats.moving, stats.moving);
        assert_eq!(v.stats.writing, stats.writing);
        assert_eq!(v.stats.skipped, stats.skipped);
        // No token: nothing is vouched for.
        assert!(Answer::of(&stats, None).vouched().is_none());
    }
}
