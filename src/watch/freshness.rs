//! Whether `.sync` on disk is current, answered without walking the folder (the fence file a
//! check makes, and what the inbox holds once its event has arrived), and the index refresh
//! an SFTP client asks for, which starts from that answer.

use super::inbox::{COOKIE_PREFIX, Shared};
use super::{Batch, WatchError};
use crate::index::journal::Token;
use crate::relpath::RelPath;
use crate::replica::layout::{INDEX_FILE, JOURNAL_FILE, is_internal};
use crate::scan::ScanStats;
use crate::store::{LocalStore, StoreError};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the watcher can vouch for about `.sync` on disk, asked by a client's index refresh.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Every change made before the question is in `.sync`.
    Current,
    /// `.sync` may miss changes at or under these paths, and nowhere else.
    Dirty(BTreeSet<RelPath>),
    /// The watcher cannot tell (a full rescan is due, the watch limit was hit, no answer).
    Unknown,
}

/// Tells whether `.sync` on disk is current without walking the folder.
///
/// Events only arrive after the change that caused them, so the check first creates a fence
/// file in the root and waits for its event: inotify reports in order, so by then every
/// change made before the check is in the inbox (or already written by the loop).
#[derive(Clone)]
pub struct FreshnessProbe {
    pub(super) shared: Arc<Shared>,
    pub(super) root: PathBuf,
}

impl FreshnessProbe {
    pub fn check(&self, wait: Duration) -> Freshness {
        let n = self.shared.next_cookie.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join(format!(
            "{COOKIE_PREFIX}{:016x}.{n}",
            self.shared.cookie_tag
        ));
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            tracing::debug!(path = %path.display(), "no fence for the freshness check: {e}");
            return Freshness::Unknown;
        }
        let _ = std::fs::remove_file(&path);
        let deadline = Instant::now() + wait;
        let mut inbox = self.shared.inbox();
        let mut seen = false;
        loop {
            seen = seen || inbox.cookies.remove(&n);
            if seen && !inbox.applying {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || inbox.stop {
                // A late cookie would stay in the set; keep it from growing without bound.
                if inbox.cookies.len() > 64 {
                    inbox.cookies.clear();
                }
                return Freshness::Unknown;
            }
            inbox = match self.shared.wake.wait_timeout(inbox, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        if inbox.full || inbox.degraded {
            Freshness::Unknown
        } else if inbox.dirty.is_empty() {
            Freshness::Current
        } else {
            Freshness::Dirty(inbox.dirty.clone())
        }
    }
}

impl Freshness {
    /// Adds the files being written: a rescan of them sets them aside (they keep their old
    /// entries) and names them, so the client can say they were left for the next sync. Our
    /// own files (the client's `.sync.lock`, temps) are no scan's business.
    fn including(self, busy: &HashSet<RelPath>) -> Freshness {
        let mut users = busy.iter().filter(|p| !is_internal(p)).cloned().peekable();
        match self {
            Freshness::Current if users.peek().is_none() => Freshness::Current,
            Freshness::Current => Freshness::Dirty(users.collect()),
            Freshness::Dirty(mut dirty) => {
                dirty.extend(users);
                Freshness::Dirty(dirty)
            }
            Freshness::Unknown => Freshness::Unknown,
        }
    }
}

/// How long an index refresh waits for the watcher's answer before rescanning everything.
const FRESHNESS_WAIT: Duration = Duration::from_secs(1);

/// Brings the root's `.sync` up to date for a client of our SFTP server (or a sync on this
/// machine asking the daemon). No `.sync.lock`: the client asking holds it. Returns what the
/// scan met, for the client to report: the paths it could not read and the files still being
/// written (left as they were), and those it left out (`skipped`); and the state of the index
/// files after it when `with_token`.
///
/// Files our clients closed a moment ago are finished: the refresh first waits out what is
/// left of their quiet time (`Writers::settle`), so an upload closed just before is offered.
/// With the daemon's watcher at hand only what it saw change is rescanned (usually nothing);
/// without it, or when it cannot vouch for the index, the whole folder is. Files still open
/// keep their old entries either way. Unless the client `reads_journal`, `.sync` is left
/// whole (the journal folded in), as a client that reads `.sync` alone needs it.
///
/// No lock of its own: every write of the index files checks, under the folder's write
/// lock, that they are as this refresh read them, so a daemon (or a client that asks
/// without its `.sync.lock`) writing meanwhile is never overwritten; the refresh then reads
/// them again and starts over.
pub fn refresh_for_client(
    root: &Path,
    watch: Option<&FreshnessProbe>,
    reads_journal: bool,
    with_token: bool,
) -> Result<(ScanStats, Option<Token>), WatchError> {
    let mut tries = 1;
    let stats = loop {
        match refresh_once(root, watch, reads_journal) {
            Err(WatchError::Store(StoreError::IndexMoved { .. })) if tries < REFRESH_TRIES => {
                tries += 1;
                tracing::debug!("the index changed under the refresh; starting over");
            }
            r => break r?,
        }
    };
    if !with_token {
        return Ok((stats, None));
    }
    // The state the client compares with the one it last settled (`journal::Token`); without
    // it the client loads the index, as it would from an older server.
    let token = LocalStore::open(root, 0)
        .and_then(|s| s.index_token())
        .inspect_err(|e| tracing::debug!("no index token: {}", crate::store::Chain(e)))
        .ok()
        .flatten();
    Ok((stats, token))
}

/// How often a refresh overtaken by another writer starts over before it fails.
const REFRESH_TRIES: usize = 3;

fn refresh_once(
    root: &Path,
    watch: Option<&FreshnessProbe>,
    reads_journal: bool,
) -> Result<ScanStats, WatchError> {
    let store = LocalStore::open(root, 0)?;
    let writers = crate::replica::writers::of(store.root());
    writers.settle();
    let freshness = watch.map_or(Freshness::Unknown, |w| w.check(FRESHNESS_WAIT));
    // Taken after the check, which may wait: a client may have started a file meanwhile.
    let busy = store.busy();
    let freshness = freshness.including(&busy);
    // Parsed only when there is something to rescan: a big index takes a while to read.
    let loaded = match &freshness {
        Freshness::Dirty(_) => store.load_index_blocking()?,
        _ => None,
    };
    let has_index = || {
        let index = RelPath::root().join_unchecked(INDEX_FILE);
        store.handle().lstat(&index).is_ok()
    };
    // What the watcher's scans left out, kept up to date by this refresh's own.
    let remembered = |scopes: Option<&[RelPath]>, st: ScanStats| match watch {
        Some(w) => {
            let mut known = w.shared.left_out();
            known.update(scopes, &st);
            known.in_place_of(st)
        }
        None => st,
    };
    let (changed, stats) = match (freshness, loaded) {
        (Freshness::Current, _) if has_index() => {
            tracing::debug!("index current by the watcher");
            if !reads_journal {
                fold_journal(&store)?;
            }
            return Ok(remembered(Some(&[]), ScanStats::default()));
        }
        (Freshness::Dirty(dirty), Some(mut index)) => {
            let (stats, scopes) = rescan_dirty(&store, &mut index, dirty, &busy)?;
            (None, remembered(scopes.as_deref(), stats))
        }
        _ => {
            tracing::debug!("rescanning the whole folder: the watcher cannot vouch for it");
            // Asked by a client under its `.sync.lock` (ours ask only then): its leftover
            // temps may go.
            let (current, existed) = store.current_blocking(true)?;
            // Nothing moved: the index on disk is current (and a write would cost an fsync).
            let moved = !existed || current.loaded != current.index.entries_digest();
            (
                moved.then_some(current.index),
                remembered(None, current.stats),
            )
        }
    };
    if let Some(index) = changed {
        store.save_index_blocking(&index)?;
        let root = root.display();
        tracing::info!(root = %root, changes = stats.changes(), "index refreshed for a client");
    } else if !reads_journal {
        fold_journal(&store)?;
    }
    crate::sys::release_free_memory();
    let mut stats = stats;
    stats.writing = writers.among(&stats.moving);
    Ok(stats)
}

/// Rescans what the watcher saw change (all of it when a damaged journal was set aside),
/// written as it is applied: a journal batch. Returns what the scan met and its scopes.
fn rescan_dirty(
    store: &LocalStore,
    index: &mut crate::index::Index,
    dirty: BTreeSet<RelPath>,
    busy: &HashSet<RelPath>,
) -> Result<(ScanStats, Option<Vec<RelPath>>), WatchError> {
    tracing::debug!(
        paths = dirty.len(),
        "rescanning what the watcher saw change"
    );
    // A damaged journal was set aside: only a full rescan finds what it held.
    let full = store.take_rescan_due();
    let batch = Batch { dirty, full };
    let (stats, moved) =
        super::apply::apply_recorded_fresh(store, index, &batch, &|p| busy.contains(p), full)?;
    if moved {
        let root = store.root().display();
        tracing::info!(root = %root, changes = stats.changes(), "index refreshed for a client");
    }
    Ok((stats, super::apply::scopes_of(&batch)))
}

/// Writes `.sync` whole when a journal is beside it, for a reader of `.sync` alone.
fn fold_journal(store: &LocalStore) -> Result<(), WatchError> {
    let journal = RelPath::root().join_unchecked(JOURNAL_FILE);
    if store.handle().lstat(&journal).is_err() {
        return Ok(());
    }
    if let Some(index) = store.load_index_blocking()? {
        store.save_index_blocking(&index)?;
        tracing::info!(root = %store.handle().path().display(), "journal folded into .sync for a client that reads .sync alone");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::IndexWatcher;
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn files_being_written_are_looked_at_to_be_named() {
        let busy: HashSet<RelPath> = [p("DCIM/a.jpg"), p(".sync.lock")].into();
        let dirty = |names: &[&str]| Freshness::Dirty(names.iter().map(|n| p(n)).collect());
        assert_eq!(Freshness::Current.including(&busy), dirty(&["DCIM/a.jpg"]));
        let ours: HashSet<RelPath> = [p(".sync.lock")].into();
        assert_eq!(Freshness::Current.including(&ours), Freshness::Current);
        assert_eq!(
            dirty(&["notes.txt"]).including(&busy),
            dirty(&["DCIM/a.jpg", "notes.txt"])
        );
        assert_eq!(Freshness::Unknown.including(&busy), Freshness::Unknown);
    }

    #[test]
    #[cfg_attr(
        windows,
        ignore = "wine's ReadDirectoryChangesW drops events; to be run on a real Windows"
    )]
    fn freshness_sees_every_change_made_before_it_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        let w = IndexWatcher::start(&root).unwrap();
        let probe = w.freshness_probe();
        let wait = Duration::from_secs(5);
        assert_eq!(probe.check(wait), Freshness::Current);
        // No pause between the change and the question: the fence makes the event count.
        for i in 0..20 {
            let name = format!("d/f{i}");
            std::fs::write(root.join(&name), b"x").unwrap();
            match probe.check(wait) {
                Freshness::Dirty(d) => assert!(d.contains(&p(&name)), "{name} not in {d:?}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // The fence files are gone, and never marked anything.
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("d")]);
        assert!(
            w.shared
                .inbox()
                .dirty
                .iter()
                .all(|q| q.as_str().starts_with("d/"))
        );
        // Each check took its own cookie and left none behind (a daemon answers many).
        assert!(w.shared.inbox().cookies.is_empty());

        // An ignore file decides for its whole folder: editing it dirties the folder.
        std::fs::write(root.join("d/.syncignore"), b"*.log\n").unwrap();
        match probe.check(wait) {
            Freshness::Dirty(d) => assert!(d.contains(&p("d")), "d not in {d:?}"),
            other => panic!(".syncignore: {other:?}"),
        }

        // A full rescan due, or a batch taken out and not yet written: nothing is vouched for.
        w.shared.inbox().applying = true;
        assert_eq!(probe.check(Duration::from_millis(300)), Freshness::Unknown);
        w.shared.inbox().applying = false;
        w.request_full();
        assert_eq!(probe.check(wait), Freshness::Unknown);
    }
}
