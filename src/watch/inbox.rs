//! What the notify thread hands the indexing loop: dirty paths, a full-rescan flag, the
//! fence cookies freshness checks wait for. `on_event` only records where to look; it never
//! touches the disk.

use crate::relpath::RelPath;
use crate::replica::layout::{IGNORE_FILE, INDEX_FILE, JOURNAL_FILE, LOCK_FILE, is_internal};
use notify::EventKind;
use notify::event::{AccessKind, AccessMode};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// More dirty paths than this and the batch becomes a full rescan (bounded memory for bursts).
const MAX_DIRTY: usize = 20_000;
/// Names of the fence files `FreshnessProbe` creates (and removes at once) in the root.
pub(super) use crate::replica::layout::FENCE_MARK as COOKIE_PREFIX;

/// What the watcher has seen and not yet applied. Filled by the notify thread.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) dirty: BTreeSet<RelPath>,
    pub(super) full: bool,
    pub(super) first_event: Option<Instant>,
    pub(super) last_event: Option<Instant>,
    /// Someone else may have rewritten `.sync` (a sync did): reload before the next use.
    pub(super) index_touched: bool,
    /// The event queue overflowed or the watcher failed; not yet logged.
    pub(super) trouble: Option<String>,
    /// The watch limit was reached: events no longer cover the whole tree.
    pub(super) degraded: bool,
    /// The indexing loop has taken a batch out and not yet written (or requeued) it.
    pub(super) applying: bool,
    /// Fence cookies seen, waited for by `FreshnessProbe::check`.
    pub(super) cookies: BTreeSet<u64>,
    pub(super) stop: bool,
}

impl Inbox {
    pub(super) fn has_work(&self) -> bool {
        self.full || !self.dirty.is_empty()
    }

    pub(super) fn mark(&mut self, p: RelPath, now: Instant) {
        if !self.full {
            self.dirty.insert(p);
            if self.dirty.len() > MAX_DIRTY {
                self.dirty.clear();
                self.full = true;
            }
        }
        self.touch(now);
    }

    pub(super) fn mark_full(&mut self, now: Instant) {
        self.full = true;
        self.dirty.clear();
        self.touch(now);
    }

    fn touch(&mut self, now: Instant) {
        self.first_event.get_or_insert(now);
        self.last_event = Some(now);
    }
}

pub(super) struct Shared {
    pub(super) inbox: Mutex<Inbox>,
    pub(super) wake: Condvar,
    /// In this watcher's fence file names, so no other watcher's (another daemon's on the same
    /// folder, perhaps with the same pid in another namespace) passes for one of ours.
    pub(super) cookie_tag: u64,
    pub(super) next_cookie: AtomicU64,
    /// What the scans left out, for refreshes answered without one.
    pub(super) left_out: Mutex<super::left_out::LeftOut>,
}

impl Shared {
    pub(super) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn left_out(&self) -> MutexGuard<'_, super::left_out::LeftOut> {
        self.left_out.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The number in one of this watcher's fence file names.
fn cookie_number(tag: u64, rel: &str) -> Option<u64> {
    let rest = rel.strip_prefix(COOKIE_PREFIX)?;
    let (t, n) = rest.split_once('.')?;
    if u64::from_str_radix(t, 16).ok()? != tag {
        return None;
    }
    n.parse().ok()
}

pub(super) fn limit_message() -> String {
    "the kernel's inotify watch limit is reached (raise fs.inotify.max_user_watches)".into()
}

/// Runs in notify's thread: only records where to look, never touches the disk.
pub(super) fn on_event(shared: &Shared, root: &Path, res: notify::Result<notify::Event>) {
    let now = Instant::now();
    let mut inbox = shared.inbox();
    match res {
        Ok(ev) => {
            if ev.need_rescan() {
                inbox.mark_full(now);
                inbox
                    .trouble
                    .get_or_insert_with(|| "the file event queue overflowed".into());
            } else {
                match ev.kind {
                    // Opens and reads (ours included, when hashing) change nothing.
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
                    EventKind::Access(_) => return,
                    _ => {}
                }
                let mut any = false;
                for path in &ev.paths {
                    let Ok(rel) = RelPath::from_fs(root, path) else {
                        continue;
                    };
                    if rel.is_root() {
                        continue;
                    }
                    if rel.as_str() == INDEX_FILE || rel.as_str() == JOURNAL_FILE {
                        inbox.index_touched = true;
                        any = true;
                        continue;
                    }
                    if let Some(n) = cookie_number(shared.cookie_tag, rel.as_str()) {
                        // Its creation is the fence; its close and removal that follow would
                        // only put back a number the check already took.
                        if matches!(ev.kind, EventKind::Create(_)) {
                            inbox.cookies.insert(n);
                            any = true;
                        }
                        continue;
                    }
                    if rel.as_str() == LOCK_FILE {
                        // Released or taken: worth a look if a batch waits for it.
                        any = true;
                        continue;
                    }
                    // Our own index writes, the trash and temp files: no feedback loop.
                    if is_internal(&rel) {
                        continue;
                    }
                    // An ignore file decides what is synced in its whole folder.
                    if rel.name() == IGNORE_FILE {
                        match rel.parent().filter(|d| !d.is_root()) {
                            Some(dir) => inbox.mark(dir, now),
                            None => inbox.mark_full(now),
                        }
                        any = true;
                        continue;
                    }
                    inbox.mark(rel, now);
                    any = true;
                }
                if !any {
                    return;
                }
            }
        }
        Err(e) => {
            if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                inbox.degraded = true;
                inbox.trouble.get_or_insert_with(limit_message);
            } else {
                inbox
                    .trouble
                    .get_or_insert_with(|| format!("the file watcher reported an error: {e}"));
            }
            inbox.mark_full(now);
        }
    }
    shared.wake.notify_all();
}
