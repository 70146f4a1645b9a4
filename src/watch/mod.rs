//! The watcher: file events become debounced, coalesced rescans of the smallest enclosing
//! subtrees, so `.sync` stays current between syncs.
//!
//! Every index update goes through `scan::scan`/`scan::reconcile`, so a file changed by an
//! editor, a sync or the SFTP server is judged by exactly the scan's rules. Events only say
//! *where* to look; what changed is always read from the disk. `inbox` is what the notify
//! thread records, `apply` turns a batch into index updates, `freshness` answers a client's
//! index refresh.

mod apply;
mod freshness;
mod inbox;
mod left_out;

pub use apply::{Batch, apply_changed, coalesce, initial_scan, rescan_path};
pub use freshness::{Freshness, FreshnessProbe, refresh_for_client};

use crate::index::Index;
use crate::scan::{ScanError, ScanStats};
use crate::store::{LocalStore, StoreError};
use apply::{Applied, IndexId, apply_locked, index_file_id};
use inbox::{Inbox, Shared, limit_message, on_event};
use notify::{RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a held `.sync.lock` is tried again (its removal also wakes us).
const LOCK_RETRY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot watch {path}: {message}")]
    Watch { path: PathBuf, message: String },
}

/// Timings of the watcher; the defaults suit a person's edits and an editor's saves.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// Quiet time after the last event before a batch is applied.
    pub debounce: Duration,
    /// A continuous stream of events is still applied at least this often.
    pub max_delay: Duration,
    /// Full rescan as a safety net for anything the events missed.
    pub rescan_every: Duration,
    /// Full rescan period when the kernel cannot watch everything (watch limit reached).
    pub poll_every: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            debounce: Duration::from_millis(300),
            max_delay: Duration::from_secs(2),
            rescan_every: Duration::from_secs(3600),
            poll_every: Duration::from_secs(60),
        }
    }
}

/// What the watcher knows, for `STATUS=` lines and `filesync status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IndexState {
    pub replica: String,
    pub files: usize,
    pub dirs: usize,
    pub deletions: usize,
    pub bytes: u64,
    /// Paths (or subtrees) seen changing and not yet in the index.
    pub pending: usize,
    /// Files clients of the hub's SFTP server are writing (left out of syncs until closed).
    #[serde(default)]
    pub writing: usize,
    pub full_rescan_pending: bool,
    /// True when the kernel watch limit was hit and the folder is polled instead.
    pub degraded: bool,
    /// Unix seconds of the last index update or check.
    pub last_update: i64,
    pub last_error: Option<String>,
}

/// Sends `WATCHDOG=1` from the indexing loop, but only while the async side is alive too.
#[derive(Clone)]
pub struct Watchdog {
    /// Half of `WATCHDOG_USEC`, or `None` outside systemd's watchdog.
    pub every: Option<Duration>,
    /// Milliseconds since `epoch` of the async loop's last tick.
    pub async_beat: Arc<AtomicU64>,
    pub epoch: Instant,
}

impl Watchdog {
    pub fn disabled() -> Self {
        Watchdog {
            every: None,
            async_beat: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Records that the async loop is alive.
    pub fn beat(&self) {
        self.async_beat
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn async_alive(&self, every: Duration) -> bool {
        let last = Duration::from_millis(self.async_beat.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) < every * 2
    }
}

/// A running watcher: the notify backend plus the indexing thread's handle on the inbox.
pub struct IndexWatcher {
    shared: Arc<Shared>,
    state: Arc<Mutex<IndexState>>,
    root: PathBuf,
    // Dropping the backend stops its thread; kept until the indexer has finished.
    backend: Option<notify::RecommendedWatcher>,
}

impl IndexWatcher {
    /// Starts watching `root` recursively. A watch-limit error is not fatal: the folder is then
    /// polled with full rescans, and that is logged once.
    pub fn start(root: &Path) -> Result<Self, WatchError> {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            wake: Condvar::new(),
            cookie_tag: rand::random(),
            next_cookie: AtomicU64::new(0),
            left_out: Mutex::new(left_out::LeftOut::default()),
        });
        let handler_shared = shared.clone();
        let handler_root = root.to_path_buf();
        let mut backend = notify::RecommendedWatcher::new(
            move |res| on_event(&handler_shared, &handler_root, res),
            notify::Config::default().with_follow_symlinks(false),
        )
        .map_err(|e| WatchError::Watch {
            path: root.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Err(e) = backend.watch(root, RecursiveMode::Recursive) {
            match e.kind {
                notify::ErrorKind::MaxFilesWatch => {
                    let mut inbox = shared.inbox();
                    inbox.degraded = true;
                    inbox.trouble = Some(limit_message());
                }
                _ => {
                    return Err(WatchError::Watch {
                        path: root.to_path_buf(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(IndexWatcher {
            shared,
            state: Arc::new(Mutex::new(IndexState::default())),
            root: root.to_path_buf(),
            backend: Some(backend),
        })
    }

    /// A handle to ask the indexing loop to stop, usable from async code.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    pub fn state(&self) -> Arc<Mutex<IndexState>> {
        self.state.clone()
    }

    /// A live view of what is waiting, for status (the published state lags a batch).
    pub fn pending_probe(&self) -> PendingProbe {
        PendingProbe(self.shared.clone(), crate::replica::writers::of(&self.root))
    }

    /// Takes in what a full scan made outside the loop (the daemon's first) left out.
    pub fn note_full_scan(&self, stats: &ScanStats) {
        self.shared.left_out().update(None, stats);
    }

    /// A handle that tells an index refresh whether `.sync` on disk is already current.
    pub fn freshness_probe(&self) -> FreshnessProbe {
        FreshnessProbe {
            shared: self.shared.clone(),
            root: self.root.clone(),
        }
    }

    /// Asks for a full rescan (on start, after a reload).
    pub fn request_full(&self) {
        let mut inbox = self.shared.inbox();
        inbox.mark_full(Instant::now());
        self.shared.wake.notify_all();
    }

    /// The indexing loop: runs on a blocking thread until `Stopper::stop`, then applies what
    /// is pending (if the lock allows) so the index is flushed.
    pub fn run(
        mut self,
        store: LocalStore,
        index: Index,
        settings: WatchSettings,
        watchdog: Watchdog,
    ) -> Index {
        let now = Instant::now();
        let mut l = Loop {
            disk_id: index_file_id(store.handle()),
            store,
            index,
            next_safety: now + settings.rescan_every,
            next_poll: now + settings.poll_every,
            next_ping: now,
            retry_at: None,
            logged_trouble: false,
            last_error: None,
            settings,
            watchdog,
            shared: self.shared.clone(),
            state: self.state.clone(),
        };
        l.publish();
        loop {
            l.ping();
            match l.next() {
                Next::Wait => continue,
                Next::Stop => break,
                Next::Apply(batch, stopping) => {
                    if l.apply(&batch, stopping) == Flow::Stop {
                        break;
                    }
                }
            }
        }
        // Stop the backend thread before handing the index back.
        self.backend.take();
        l.index
    }
}

/// The indexing loop's state between batches.
struct Loop {
    store: LocalStore,
    index: Index,
    disk_id: IndexId,
    settings: WatchSettings,
    watchdog: Watchdog,
    shared: Arc<Shared>,
    state: Arc<Mutex<IndexState>>,
    next_safety: Instant,
    next_poll: Instant,
    next_ping: Instant,
    /// No batch before this (a lock held by a sync, a failed update, files being written).
    retry_at: Option<Instant>,
    logged_trouble: bool,
    last_error: Option<String>,
}

enum Next {
    Apply(Batch, bool),
    Wait,
    Stop,
}

#[derive(PartialEq)]
enum Flow {
    Go,
    Stop,
}

impl Loop {
    /// `WATCHDOG=1`, when due and the async side is alive too.
    fn ping(&mut self) {
        let now = Instant::now();
        if let Some(every) = self.watchdog.every
            && now >= self.next_ping
        {
            if self.watchdog.async_alive(every) {
                use crate::sys::sd_notify;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            self.next_ping = now + every;
        }
    }

    /// Takes the next batch out of the inbox when one is due; otherwise sleeps until something
    /// could make one due.
    fn next(&mut self) -> Next {
        let now = Instant::now();
        let shared = self.shared.clone();
        let mut inbox = shared.inbox();
        self.note_timers(&mut inbox, now);
        let stopping = inbox.stop;
        let quiet = inbox
            .last_event
            .is_none_or(|t| now.duration_since(t) >= self.settings.debounce);
        let overdue = inbox
            .first_event
            .is_some_and(|t| now.duration_since(t) >= self.settings.max_delay);
        let due = inbox.has_work()
            && self.retry_at.is_none_or(|t| now >= t)
            && (stopping || quiet || overdue);
        if due {
            let b = Batch {
                dirty: std::mem::take(&mut inbox.dirty),
                full: std::mem::take(&mut inbox.full),
            };
            inbox.first_event = None;
            inbox.last_event = None;
            inbox.applying = true;
            return Next::Apply(b, stopping);
        }
        if stopping {
            return Next::Stop;
        }
        let wait = self
            .wake_at(&inbox)
            .saturating_duration_since(now)
            .max(Duration::from_millis(5));
        let _ = shared.wake.wait_timeout(inbox, wait);
        Next::Wait
    }

    /// Trouble to log once, safety and poll rescans when due, and a sync's rewrite of `.sync`
    /// taken in (so memory and status follow it).
    fn note_timers(&mut self, inbox: &mut Inbox, now: Instant) {
        if let Some(t) = inbox.trouble.take()
            && !self.logged_trouble
        {
            let root = self.store.root().display();
            tracing::warn!(root = %root, "{t}; falling back to full rescans");
            self.logged_trouble = true;
        }
        if now >= self.next_safety {
            inbox.mark_full(now);
            self.next_safety = now + self.settings.rescan_every;
        }
        if inbox.degraded && now >= self.next_poll {
            inbox.mark_full(now);
            self.next_poll = now + self.settings.poll_every;
        }
        if inbox.index_touched && !inbox.has_work() {
            inbox.index_touched = false;
            if index_file_id(self.store.handle()) != self.disk_id
                && let Ok(Some(i)) = self.store.load_index_blocking()
            {
                self.index = i;
                crate::sys::release_free_memory();
                self.disk_id = index_file_id(self.store.handle());
                if self.store.rescan_due() {
                    inbox.mark_full(now);
                }
                publish(&self.state, &self.index, inbox, &self.last_error);
            }
        }
    }

    /// The next moment something could make work due.
    fn wake_at(&self, inbox: &Inbox) -> Instant {
        let mut until = self.next_safety;
        if inbox.degraded {
            until = until.min(self.next_poll);
        }
        if self.watchdog.every.is_some() {
            until = until.min(self.next_ping);
        }
        if inbox.has_work() {
            let s = &self.settings;
            let times = [
                inbox.last_event.map(|t| t + s.debounce),
                inbox.first_event.map(|t| t + s.max_delay),
                self.retry_at,
            ];
            until = times.into_iter().flatten().fold(until, Instant::min);
        }
        until
    }

    /// Applies one batch and puts back what was not written.
    fn apply(&mut self, batch: &Batch, stopping: bool) -> Flow {
        let outcome = apply_locked(&self.store, &mut self.index, batch, &mut self.disk_id);
        crate::sys::release_free_memory();
        if let Ok(Applied::Done { stats, .. }) = &outcome {
            let scopes = apply::scopes_of(batch);
            self.shared.left_out().update(scopes.as_deref(), stats);
        }
        self.requeue(batch, &outcome);
        let flow = match outcome {
            Ok(Applied::Done { changed, stats }) => {
                self.done(changed, &stats);
                Flow::Go
            }
            Ok(Applied::Locked) => {
                // A sync holds the lock: the batch waits in the inbox, to be applied after,
                // against the index the sync wrote.
                self.retry_at = Some(Instant::now() + LOCK_RETRY);
                if stopping {
                    tracing::info!(
                        "index is locked by a sync at shutdown; pending changes are left to the next scan"
                    );
                    return Flow::Stop;
                }
                return Flow::Go;
            }
            Err(e) => {
                self.failed(&e);
                if stopping { Flow::Stop } else { Flow::Go }
            }
        };
        self.publish();
        flow
    }

    /// Puts back what was not written and clears `applying` under one lock, so a freshness
    /// check never sees an empty inbox with work still unwritten. Files that were being
    /// written are looked at again once they may be quiet: their last event is already used.
    fn requeue(&mut self, batch: &Batch, outcome: &Result<Applied, WatchError>) {
        let now = Instant::now();
        let mut inbox = self.shared.inbox();
        match outcome {
            Ok(Applied::Done { stats, .. }) if !stats.moving.is_empty() => {
                for p in &stats.moving {
                    inbox.mark(p.clone(), now);
                }
                self.retry_at = Some(now + crate::replica::writers::QUIET);
            }
            Ok(Applied::Done { .. }) => {}
            Ok(Applied::Locked) if batch.full => inbox.mark_full(now),
            Ok(Applied::Locked) => {
                for p in &batch.dirty {
                    inbox.mark(p.clone(), now);
                }
            }
            // Retry the whole tree later rather than lose the batch.
            Err(_) => inbox.mark_full(now),
        }
        inbox.applying = false;
        self.shared.wake.notify_all();
    }

    fn done(&mut self, changed: bool, stats: &ScanStats) {
        if stats.moving.is_empty() {
            self.retry_at = None;
        }
        self.last_error = None;
        for (p, m) in &stats.unreadable {
            tracing::warn!(path = %p, "cannot read, left as it was: {m}");
        }
        if changed {
            tracing::debug!(
                added = stats.added,
                modified = stats.modified,
                deleted = stats.deleted,
                hashed = stats.hashed,
                moving = stats.moving.len(),
                "index updated"
            );
        }
    }

    /// Logged when it first happens (or changes), not on every retry.
    fn failed(&mut self, e: &WatchError) {
        let msg = crate::store::Chain(e).to_string();
        if self.last_error.as_deref() != Some(msg.as_str()) {
            let root = self.store.root().display();
            tracing::warn!(root = %root, "cannot update the index: {msg}");
        } else {
            tracing::debug!("index update still failing: {msg}");
        }
        self.last_error = Some(msg);
        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
    }

    fn publish(&self) {
        publish(
            &self.state,
            &self.index,
            &self.shared.inbox(),
            &self.last_error,
        );
    }
}

/// Wakes the indexing loop and tells it to finish.
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    pub fn stop(&self) {
        let mut inbox = self.0.inbox();
        inbox.stop = true;
        self.0.wake.notify_all();
    }
}

/// Reads how many paths wait for the next batch, whether a full rescan is queued, and how
/// many files the server's clients are writing.
#[derive(Clone)]
pub struct PendingProbe(Arc<Shared>, Arc<crate::replica::writers::Writers>);

impl PendingProbe {
    pub fn pending(&self) -> (usize, bool) {
        let inbox = self.0.inbox();
        (inbox.dirty.len(), inbox.full)
    }

    /// Files being written now (open, or closed within the quiet time).
    pub fn writing(&self) -> usize {
        self.1.writing_count()
    }
}

fn publish(state: &Mutex<IndexState>, index: &Index, inbox: &Inbox, last_error: &Option<String>) {
    let (files, dirs, deletions) = index.counts();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    *s = IndexState {
        replica: index.replica.to_string(),
        files,
        dirs,
        deletions,
        bytes: index.live_bytes(),
        pending: inbox.dirty.len(),
        // Filled in live by whoever reports it (`PendingProbe::writing`).
        writing: 0,
        full_rescan_pending: inbox.full,
        degraded: inbox.degraded,
        last_update: crate::time::now_secs(),
        last_error: last_error.clone(),
    };
}
