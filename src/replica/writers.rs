//! Files this process's SFTP clients are writing, per replica root. A scan leaves them as they
//! are in the index until they are closed and quiet, so the hub never offers (and a sync never
//! fetches) a half-written upload. Kept per process, by root, so every scan of a folder here
//! (the watcher, a client's index refresh, a scheduled sync) sees the same record without
//! being handed it.

use crate::relpath::RelPath;
use crate::replica::layout::{is_internal, is_temp_name};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long after its last write or close a file still counts as being written: an app that
/// closes and reopens, or renames a finished `.part` into place, is not caught half-way.
pub const QUIET: Duration = Duration::from_secs(2);

/// Records past this many, those of quiet files are dropped when the next file is opened.
const PRUNE_AT: usize = 4096;

#[derive(Debug)]
struct Writing {
    /// Handles open for writing on it.
    open: u32,
    last: Instant,
}

/// The files being written below one root.
#[derive(Debug, Default)]
pub struct Writers {
    files: Mutex<HashMap<RelPath, Writing>>,
}

static ROOTS: Mutex<Vec<(PathBuf, Arc<Writers>)>> = Mutex::new(Vec::new());

/// The record for the folder at `root` (one per folder, however it is named).
pub fn of(root: &Path) -> Arc<Writers> {
    let key = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, w)) = roots.iter().find(|(p, _)| *p == key) {
        return w.clone();
    }
    let w = Arc::new(Writers::default());
    roots.push((key, w.clone()));
    w
}

impl Writers {
    fn files(&self) -> MutexGuard<'_, HashMap<RelPath, Writing>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle was opened for writing on `p`.
    pub fn opened(&self, p: &RelPath) {
        let mut f = self.files();
        // Nobody may ask for a long while (no scan runs): the record stays small anyway.
        if f.len() >= PRUNE_AT {
            let now = Instant::now();
            f.retain(|_, w| w.open > 0 || now.duration_since(w.last) < QUIET);
        }
        let w = f.entry(p.clone()).or_insert(Writing {
            open: 0,
            last: Instant::now(),
        });
        w.open += 1;
        w.last = Instant::now();
    }

    /// Bytes were written to `p` (through a handle, or by a whole-file request).
    pub fn wrote(&self, p: &RelPath) {
        let mut f = self.files();
        match f.get_mut(p) {
            Some(w) => w.last = Instant::now(),
            None => {
                f.insert(
                    p.clone(),
                    Writing {
                        open: 0,
                        last: Instant::now(),
                    },
                );
            }
        }
    }

    /// A handle opened for writing on `p` was closed.
    pub fn closed(&self, p: &RelPath) {
        if let Some(w) = self.files().get_mut(p) {
            w.open = w.open.saturating_sub(1);
            w.last = Instant::now();
        }
    }

    /// `from` was renamed to `to`: a file still being written keeps counting under its new
    /// name (a finished `.part` renamed into place is quiet only `QUIET` later). A closed temp
    /// of ours renamed into place is a sync's install, made under the index lock and named by
    /// the index that sync commits: it is finished, and counting it would only make the next
    /// index refresh rescan it.
    pub fn renamed(&self, from: &RelPath, to: &RelPath) {
        let mut f = self.files();
        let moved: Vec<RelPath> = f
            .keys()
            .filter(|k| *k == from || k.starts_with(from))
            .cloned()
            .collect();
        for k in moved {
            let installed = f.get(&k).is_some_and(|w| w.open == 0) && is_temp_name(k.name());
            if installed {
                f.remove(&k);
                continue;
            }
            if let Some(mut w) = f.remove(&k) {
                w.last = Instant::now();
                let rest = &k.as_str()[from.as_str().len()..];
                let new = RelPath::parse(&format!("{to}{rest}")).unwrap_or_else(|_| to.clone());
                f.insert(new, w);
            }
        }
    }

    /// Waits until every file closed (or written) without a handle open on it has been quiet
    /// for `QUIET`, at most `QUIET` from now: a client's closed file is finished, and a scan
    /// right after its upload then takes it instead of leaving it for the next one. Files
    /// still open are not waited for, nor our own (`.sync.lock`, temps), which no scan
    /// takes. Blocks the calling thread.
    pub fn settle(&self) {
        let limit = Instant::now() + QUIET;
        loop {
            let now = Instant::now();
            let quiet_at = self
                .files()
                .iter()
                .filter(|(p, w)| w.open == 0 && !is_internal(p))
                .map(|(_, w)| w.last + QUIET)
                .max();
            match quiet_at {
                Some(t) if t > now && now < limit => std::thread::sleep(t.min(limit) - now),
                _ => return,
            }
        }
    }

    /// Those of `paths` being written now (see `busy`), in their order.
    pub fn among(&self, paths: &[RelPath]) -> Vec<RelPath> {
        let busy = self.busy();
        paths
            .iter()
            .filter(|p| busy.contains(*p))
            .cloned()
            .collect()
    }

    /// How many of the user's files (not ours: `.sync.lock`, temps) are being written now.
    pub fn writing_count(&self) -> usize {
        self.busy().iter().filter(|p| !is_internal(p)).count()
    }

    /// The files being written now (open, or written within `QUIET`); the record of files
    /// quiet for longer is dropped.
    pub fn busy(&self) -> HashSet<RelPath> {
        let now = Instant::now();
        let mut f = self.files();
        f.retain(|_, w| w.open > 0 || now.duration_since(w.last) < QUIET);
        f.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::layout::temp_name;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn a_file_is_busy_while_open_and_for_a_moment_after() {
        let w = Writers::default();
        w.opened(&p("DCIM/a.jpg.part"));
        w.opened(&p("DCIM/a.jpg.part"));
        w.closed(&p("DCIM/a.jpg.part"));
        assert!(w.busy().contains(&p("DCIM/a.jpg.part")));
        w.closed(&p("DCIM/a.jpg.part"));
        w.renamed(&p("DCIM/a.jpg.part"), &p("DCIM/a.jpg"));
        let busy = w.busy();
        assert!(busy.contains(&p("DCIM/a.jpg")) && !busy.contains(&p("DCIM/a.jpg.part")));
        w.renamed(&p("DCIM"), &p("Photos"));
        assert!(w.busy().contains(&p("Photos/a.jpg")));
        // Quiet for longer than `QUIET`: forgotten.
        w.files()
            .values_mut()
            .for_each(|f| f.last = f.last.checked_sub(QUIET).unwrap());
        assert!(w.busy().is_empty());
        assert!(Arc::ptr_eq(&of(Path::new("/tmp")), &of(Path::new("/tmp/"))));
    }

    #[test]
    fn settling_waits_for_closed_files_only_and_never_past_the_quiet_time() {
        let w = Writers::default();
        w.opened(&p("open.jpg"));
        w.opened(&p("closed.jpg"));
        w.closed(&p("closed.jpg"));
        let t0 = Instant::now();
        w.settle();
        let waited = t0.elapsed();
        assert!(waited >= QUIET - Duration::from_millis(50), "{waited:?}");
        assert!(waited < QUIET + Duration::from_secs(1), "{waited:?}");
        let busy = w.busy();
        assert!(busy.contains(&p("open.jpg")) && !busy.contains(&p("closed.jpg")));
        assert_eq!(
            w.among(&[p("closed.jpg"), p("open.jpg")]),
            vec![p("open.jpg")]
        );
        // Nothing closed lately, or only our own files: no wait at all.
        w.opened(&p(".sync.lock"));
        w.closed(&p(".sync.lock"));
        w.opened(&p(&temp_name("a.jpg")));
        w.closed(&p(&temp_name("a.jpg")));
        assert_eq!(w.writing_count(), 1);
        let t0 = Instant::now();
        w.settle();
        assert!(t0.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn a_sync_installing_its_temp_leaves_nothing_busy() {
        let w = Writers::default();
        let tmp = p(&format!("DCIM/{}", temp_name("a.jpg")));
        w.opened(&tmp);
        w.closed(&tmp);
        w.renamed(&tmp, &p("DCIM/a.jpg"));
        assert!(w.busy().is_empty());
        // Still open under another handle: still being written, under its new name.
        w.opened(&tmp);
        w.renamed(&tmp, &p("DCIM/b.jpg"));
        assert!(w.busy().contains(&p("DCIM/b.jpg")));
    }
}
