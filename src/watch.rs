//! The watcher: file events become debounced, coalesced rescans of the smallest enclosing
//! subtrees, so `.sync` stays current between syncs.
//!
//! Every index update goes through `scan::scan`/`scan::reconcile`, so a file changed by an
//! editor, a sync or the SFTP server is judged by exactly the scan's rules. Events only say
//! *where* to look; what changed is always read from the disk.

use crate::index::{Index, MTime};
use crate::relpath::RelPath;
use crate::replica::layout::{IGNORE_FILE, INDEX_FILE, LOCK_FILE, is_internal};
use crate::replica::lock::{INDEX_UPDATE, LockInfo};
use crate::scan::{self, IgnoreRules, ScanError, ScanStats};
use crate::store::{LocalStore, StoreError};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// More dirty paths than this and the batch becomes a full rescan (bounded memory for bursts).
const MAX_DIRTY: usize = 20_000;
/// A folder with more dirty children than this is rescanned whole, in one walk.
const COARSEN_CHILDREN: usize = 32;
/// More scopes than this after coalescing: one full walk is cheaper than many small ones.
const MAX_SCOPES: usize = 2_000;
/// How often a held `.sync.lock` is tried again (its removal also wakes us).
const LOCK_RETRY: Duration = Duration::from_millis(250);
/// Names of the fence files `FreshnessProbe` creates (and removes at once) in the root.
const COOKIE_PREFIX: &str = ".sync-cookie.";

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

/// What the watcher has seen and not yet applied. Filled by the notify thread.
#[derive(Debug, Default)]
struct Inbox {
    dirty: BTreeSet<RelPath>,
    full: bool,
    first_event: Option<Instant>,
    last_event: Option<Instant>,
    /// Someone else may have rewritten `.sync` (a sync did): reload before the next use.
    index_touched: bool,
    /// The event queue overflowed or the watcher failed; not yet logged.
    trouble: Option<String>,
    /// The watch limit was reached: events no longer cover the whole tree.
    degraded: bool,
    /// The indexing loop has taken a batch out and not yet written (or requeued) it.
    applying: bool,
    /// Fence cookies seen, waited for by `FreshnessProbe::check`.
    cookies: BTreeSet<u64>,
    stop: bool,
}

impl Inbox {
    fn has_work(&self) -> bool {
        self.full || !self.dirty.is_empty()
    }

    fn mark(&mut self, p: RelPath, now: Instant) {
        if !self.full {
            self.dirty.insert(p);
            if self.dirty.len() > MAX_DIRTY {
                self.dirty.clear();
                self.full = true;
            }
        }
        self.touch(now);
    }

    fn mark_full(&mut self, now: Instant) {
        self.full = true;
        self.dirty.clear();
        self.touch(now);
    }

    fn touch(&mut self, now: Instant) {
        self.first_event.get_or_insert(now);
        self.last_event = Some(now);
    }
}

struct Shared {
    inbox: Mutex<Inbox>,
    wake: Condvar,
    /// In this watcher's fence file names, so no other watcher's (another daemon's on the same
    /// folder, perhaps with the same pid in another namespace) passes for one of ours.
    cookie_tag: u64,
    next_cookie: AtomicU64,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
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
        PendingProbe(self.shared.clone())
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
        mut index: Index,
        settings: WatchSettings,
        watchdog: Watchdog,
    ) -> Index {
        let root = store.root().to_path_buf();
        let mut disk_id = index_file_id(&root);
        let mut next_safety = Instant::now() + settings.rescan_every;
        let mut next_poll = Instant::now() + settings.poll_every;
        let mut next_ping = Instant::now();
        let mut lock_retry_at: Option<Instant> = None;
        let mut logged_trouble = false;
        let mut last_error: Option<String> = None;
        publish(&self.state, &index, &self.shared.inbox(), &last_error);

        loop {
            let now = Instant::now();
            if let Some(every) = watchdog.every
                && now >= next_ping
            {
                if watchdog.async_alive(every) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                next_ping = now + every;
            }

            let (batch, stopping) = {
                let mut inbox = self.shared.inbox();
                if let Some(t) = inbox.trouble.take()
                    && !logged_trouble
                {
                    tracing::warn!(root = %root.display(), "{t}; falling back to full rescans");
                    logged_trouble = true;
                }
                if now >= next_safety {
                    inbox.mark_full(now);
                    next_safety = now + settings.rescan_every;
                }
                if inbox.degraded && now >= next_poll {
                    inbox.mark_full(now);
                    next_poll = now + settings.poll_every;
                }
                if inbox.index_touched && !inbox.has_work() {
                    // Keep the in-memory copy (and status) in line with a sync's rewrite.
                    inbox.index_touched = false;
                    if index_file_id(&root) != disk_id
                        && let Ok(Some(i)) = store.load_index_blocking()
                    {
                        index = i;
                        disk_id = index_file_id(&root);
                        publish(&self.state, &index, &inbox, &last_error);
                    }
                }
                let stopping = inbox.stop;
                let due = inbox.has_work()
                    && lock_retry_at.is_none_or(|t| now >= t)
                    && (stopping
                        || inbox
                            .last_event
                            .is_none_or(|t| now.duration_since(t) >= settings.debounce)
                        || inbox
                            .first_event
                            .is_some_and(|t| now.duration_since(t) >= settings.max_delay));
                if due {
                    let b = Batch {
                        dirty: std::mem::take(&mut inbox.dirty),
                        full: std::mem::take(&mut inbox.full),
                    };
                    inbox.first_event = None;
                    inbox.last_event = None;
                    inbox.applying = true;
                    (Some(b), stopping)
                } else if stopping {
                    (None, true)
                } else {
                    // Sleep until the next thing that could make work due.
                    let mut until = next_safety;
                    if inbox.degraded {
                        until = until.min(next_poll);
                    }
                    if watchdog.every.is_some() {
                        until = until.min(next_ping);
                    }
                    if inbox.has_work() {
                        if let Some(t) = inbox.last_event {
                            until = until.min(t + settings.debounce);
                        }
                        if let Some(t) = inbox.first_event {
                            until = until.min(t + settings.max_delay);
                        }
                        if let Some(t) = lock_retry_at {
                            until = until.min(t);
                        }
                    }
                    let wait = until
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(5));
                    let _ = self.shared.wake.wait_timeout(inbox, wait);
                    continue;
                }
            };

            if let Some(batch) = batch {
                let outcome = apply_locked(&store, &mut index, &batch, &mut disk_id);
                {
                    // Put back what was not written and clear `applying` under one lock, so a
                    // freshness check never sees an empty inbox with work still unwritten.
                    let mut inbox = self.shared.inbox();
                    match &outcome {
                        Ok(Applied::Done { .. }) => {}
                        Ok(Applied::Locked) if batch.full => inbox.mark_full(Instant::now()),
                        Ok(Applied::Locked) => {
                            for p in &batch.dirty {
                                inbox.mark(p.clone(), Instant::now());
                            }
                        }
                        // Retry the whole tree later rather than lose the batch.
                        Err(_) => inbox.mark_full(Instant::now()),
                    }
                    inbox.applying = false;
                    self.shared.wake.notify_all();
                }
                match outcome {
                    Ok(Applied::Done { changed, stats }) => {
                        lock_retry_at = None;
                        last_error = None;
                        for (p, m) in &stats.unreadable {
                            tracing::warn!(path = %p, "cannot read, left as it was: {m}");
                        }
                        if changed {
                            tracing::debug!(
                                added = stats.added,
                                modified = stats.modified,
                                deleted = stats.deleted,
                                hashed = stats.hashed,
                                "index updated"
                            );
                        }
                    }
                    Ok(Applied::Locked) => {
                        // A sync holds the lock: the batch waits in the inbox, to be applied
                        // after, against the index the sync wrote.
                        lock_retry_at = Some(Instant::now() + LOCK_RETRY);
                        if stopping {
                            tracing::info!(
                                "index is locked by a sync at shutdown; pending changes are left to the next scan"
                            );
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        // Logged when it first happens (or changes), not on every retry.
                        let msg = e.to_string();
                        if last_error.as_deref() != Some(msg.as_str()) {
                            tracing::warn!(root = %root.display(), "cannot update the index: {msg}");
                        } else {
                            tracing::debug!("index update still failing: {msg}");
                        }
                        last_error = Some(msg);
                        lock_retry_at = Some(Instant::now() + Duration::from_secs(5));
                        if stopping {
                            break;
                        }
                    }
                }
                publish(&self.state, &index, &self.shared.inbox(), &last_error);
                continue;
            }
            if stopping {
                break;
            }
        }
        // Stop the backend thread before handing the index back.
        self.backend.take();
        index
    }
}

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
    shared: Arc<Shared>,
    root: PathBuf,
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

/// The number in one of this watcher's fence file names.
fn cookie_number(tag: u64, rel: &str) -> Option<u64> {
    let rest = rel.strip_prefix(COOKIE_PREFIX)?;
    let (t, n) = rest.split_once('.')?;
    if u64::from_str_radix(t, 16).ok()? != tag {
        return None;
    }
    n.parse().ok()
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

/// Reads how many paths wait for the next batch, and whether a full rescan is queued.
#[derive(Clone)]
pub struct PendingProbe(Arc<Shared>);

impl PendingProbe {
    pub fn pending(&self) -> (usize, bool) {
        let inbox = self.0.inbox();
        (inbox.dirty.len(), inbox.full)
    }
}

fn limit_message() -> String {
    "the kernel's inotify watch limit is reached (raise fs.inotify.max_user_watches)".into()
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
        full_rescan_pending: inbox.full,
        degraded: inbox.degraded,
        last_update: crate::time::now_secs(),
        last_error: last_error.clone(),
    };
}

/// Runs in notify's thread: only records where to look, never touches the disk.
fn on_event(shared: &Shared, root: &Path, res: notify::Result<notify::Event>) {
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
                    if rel.as_str() == INDEX_FILE {
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

/// One batch of work taken from the inbox.
#[derive(Debug, Default)]
pub struct Batch {
    pub dirty: BTreeSet<RelPath>,
    pub full: bool,
}

enum Applied {
    Done { changed: bool, stats: ScanStats },
    Locked,
}

/// Identity of the `.sync` file on disk: a rename-into-place gives a new inode.
fn index_file_id(root: &Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root.join(INDEX_FILE)).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

fn apply_locked(
    store: &LocalStore,
    index: &mut Index,
    batch: &Batch,
    disk_id: &mut Option<(u64, i64, i64, u64)>,
) -> Result<Applied, WatchError> {
    match store.lock_blocking(&LockInfo::here(INDEX_UPDATE)) {
        Ok(()) => {}
        Err(StoreError::Locked { .. }) => return Ok(Applied::Locked),
        Err(e) => return Err(e.into()),
    }
    let res = (|| -> Result<Applied, WatchError> {
        let root = store.root();
        // A sync (or `filesync index`) may have rewritten `.sync` since we last saw it.
        let now_id = index_file_id(root);
        if now_id != *disk_id
            && let Some(fresh) = store.load_index_blocking()?
        {
            *index = fresh;
        }
        let (stats, changed) = apply_changed(root, index, batch)?;
        let changed = changed || now_id.is_none();
        if changed {
            // Until the save lands, memory is ahead of `.sync`: if it fails, the retry must
            // reload and rescan rather than find nothing new and vouch for the old file.
            *disk_id = None;
            store.save_index_blocking(index)?;
        }
        *disk_id = index_file_id(root);
        Ok(Applied::Done { changed, stats })
    })();
    let unlocked = store.unlock_blocking();
    let applied = res?;
    unlocked?;
    Ok(applied)
}

/// The start-up full rescan, under the lock; `Ok(false)` when a sync holds the lock.
pub fn initial_scan(store: &LocalStore, index: &mut Index) -> Result<bool, WatchError> {
    let mut id = index_file_id(store.root());
    let batch = Batch {
        dirty: BTreeSet::new(),
        full: true,
    };
    Ok(matches!(
        apply_locked(store, index, &batch, &mut id)?,
        Applied::Done { .. }
    ))
}

/// Applies a batch to `index`: a full rescan, or a rescan of each coalesced scope.
pub fn apply(root: &Path, index: &mut Index, batch: &Batch) -> Result<ScanStats, ScanError> {
    let scopes = if batch.full {
        None
    } else {
        coalesce(&batch.dirty)
    };
    let Some(scopes) = scopes else {
        let st = scan::scan(root, index, &RelPath::root())?;
        if let Ok(r) = crate::replica::Root::open(root, crate::replica::Follow::Never) {
            crate::store::local::remove_leftover_temps(&r, &st.temps);
        }
        return Ok(st);
    };
    let mut total = ScanStats::default();
    for s in &scopes {
        let st = rescan_path(root, index, s)?;
        total.added += st.added;
        total.modified += st.modified;
        total.deleted += st.deleted;
        total.hashed += st.hashed;
        total.hashed_bytes += st.hashed_bytes;
        total.unreadable.extend(st.unreadable);
    }
    Ok(total)
}

/// `apply`, and whether the entries moved (a touched file's new mtime counts: it is saved).
pub fn apply_changed(
    root: &Path,
    index: &mut Index,
    batch: &Batch,
) -> Result<(ScanStats, bool), ScanError> {
    let before = index.entries_digest();
    let stats = apply(root, index, batch)?;
    Ok((stats, index.entries_digest() != before))
}

/// The scopes to rescan for a set of dirty paths: busy folders whole, descendants of another
/// scope dropped. `None` means "rescan everything".
pub fn coalesce(dirty: &BTreeSet<RelPath>) -> Option<Vec<RelPath>> {
    let mut per_parent: HashMap<RelPath, usize> = HashMap::new();
    for p in dirty {
        *per_parent
            .entry(p.parent().unwrap_or_else(RelPath::root))
            .or_default() += 1;
    }
    let mut set: BTreeSet<RelPath> = BTreeSet::new();
    for p in dirty {
        let parent = p.parent().unwrap_or_else(RelPath::root);
        if per_parent.get(&parent).copied().unwrap_or(0) > COARSEN_CHILDREN {
            if parent.is_root() {
                return None;
            }
            set.insert(parent);
        } else {
            set.insert(p.clone());
        }
    }
    // Ancestors sort before their descendants in component order.
    let mut out: Vec<RelPath> = Vec::new();
    for p in set {
        if out.last().is_some_and(|last| p.starts_with(last)) {
            continue;
        }
        out.push(p);
        if out.len() > MAX_SCOPES {
            return None;
        }
    }
    Some(out)
}

/// Rescans one path as a full scan would judge it: its subtree if it is there, tombstones for
/// its subtree if it is gone, nothing if it is ignored.
pub fn rescan_path(root: &Path, index: &mut Index, p: &RelPath) -> Result<ScanStats, ScanError> {
    // A path below something that is no longer a real folder is judged from that ancestor.
    let mut scope = p.clone();
    let mut ancestors: Vec<RelPath> = p.ancestors().collect();
    ancestors.reverse();
    for a in ancestors {
        match std::fs::symlink_metadata(a.to_path(root)) {
            Ok(m) if m.is_dir() => {}
            _ => {
                scope = a;
                break;
            }
        }
    }
    let rules = IgnoreRules::above(root, &scope);
    if rules.is_ignored(root, &scope) {
        return Ok(ScanStats::default());
    }
    match std::fs::symlink_metadata(scope.to_path(root)) {
        Ok(m) if m.is_dir() || m.is_file() => scan::scan(root, index, &scope),
        Ok(_) => Ok(vanish(root, index, &scope, &rules)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(vanish(root, index, &scope, &rules))
        }
        Err(e) => {
            tracing::warn!(path = %scope, "cannot read, left as it was: {e}");
            Ok(ScanStats {
                unreadable: vec![(scope, e.to_string())],
                ..Default::default()
            })
        }
    }
}

/// Gone from disk (or not syncable any more): tombstones for the subtree, by `reconcile`.
fn vanish(root: &Path, index: &mut Index, scope: &RelPath, rules: &IgnoreRules) -> ScanStats {
    scan::reconcile(
        index,
        scope,
        &BTreeMap::new(),
        &HashMap::new(),
        |q| !rules.is_ignored(root, q),
        MTime::from_system(std::time::SystemTime::now()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ReplicaId;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
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

    #[test]
    fn coalesce_drops_descendants_and_coarsens_busy_folders() {
        let dirty: BTreeSet<RelPath> = ["a", "a/b", "a/b/c", "x/y", "x/z"]
            .into_iter()
            .map(p)
            .collect();
        assert_eq!(coalesce(&dirty), Some(vec![p("a"), p("x/y"), p("x/z")]));

        let busy: BTreeSet<RelPath> = (0..100).map(|i| p(&format!("d/f{i}"))).collect();
        assert_eq!(coalesce(&busy), Some(vec![p("d")]));

        let top: BTreeSet<RelPath> = (0..100).map(|i| p(&format!("f{i}"))).collect();
        assert_eq!(coalesce(&top), None);
    }

    #[test]
    fn rescan_path_matches_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/e/f"), b"1").unwrap();
        std::fs::write(root.join("g"), b"2").unwrap();
        std::fs::write(root.join(".syncignore"), b"*.log\n").unwrap();
        let mut idx = Index::new(ReplicaId(7));
        scan::scan(&root, &mut idx, &RelPath::root()).unwrap();

        // Edit, create, delete a tree, an ignored file: only the touched paths are rescanned.
        std::fs::write(root.join("g"), b"22").unwrap();
        std::fs::write(root.join("h"), b"3").unwrap();
        std::fs::write(root.join("x.log"), b"ignored").unwrap();
        std::fs::remove_dir_all(root.join("d")).unwrap();
        for s in ["g", "h", "x.log", "d/e/f", "d"] {
            rescan_path(&root, &mut idx, &p(s)).unwrap();
        }
        let mut full = Index::new(ReplicaId(7));
        scan::scan(&root, &mut full, &RelPath::root()).unwrap();
        let live = |i: &Index| {
            i.live()
                .map(|(p, e)| (p.clone(), e.kind, e.size, e.hash))
                .collect::<Vec<_>>()
        };
        assert_eq!(live(&idx), live(&full));
        assert!(!idx.entries[&p("d/e/f")].is_live());
        assert_eq!(idx.entries[&p("g")].vv.get(ReplicaId(7)), 2);
        assert!(idx.get(&p("x.log")).is_none());
    }
}
