//! The daemon: watch the folder, keep `.sync` current, serve SFTP, sync peers on a schedule,
//! and speak systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING, STOPPING).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) the notify messages are no-ops.

#[cfg(unix)] // a unix socket: the hub's pairing and devices, and vouching for the index
pub mod control;
pub mod install;
mod schedule;
pub mod status;

use crate::config::Config;
use crate::index::Index;
#[cfg(unix)]
use crate::server::ServerError;
use crate::shutdown::{Shutdown, Signal, Signals};
use crate::store::{Chain, LocalStore, StoreError};
use crate::sys::sd_notify::{self, NotifyState};
use crate::watch::{IndexState, IndexWatcher, WatchSettings, Watchdog};
use schedule::{PeerStates, Schedule};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a scheduled sync in flight may run on after SIGTERM (or SIGHUP's restart of the
/// schedule) before it is abandoned; one still connecting is abandoned at once. With the
/// schedule's unlock limit and the server's drain this bounds a stop to a few seconds, well
/// inside the units' `TimeoutStopSec`.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the daemon did not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
    /// The folder or its index cannot be used (the message says how to fix it).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error("the first scan failed")]
    FirstScan(#[source] tokio::task::JoinError),
    #[error("cannot start the SFTP server")]
    Bind(#[source] ServerError),
    /// Another daemon serves this folder.
    #[error(transparent)]
    Status(#[from] status::StatusError),
    #[error("the indexing thread stopped unexpectedly")]
    IndexerStopped,
    #[error("the indexing thread failed")]
    IndexerFailed(#[source] tokio::task::JoinError),
    #[error("the SFTP server stopped unexpectedly")]
    ServerStopped,
    #[error("the SFTP server failed")]
    ServerFailed(#[source] ServerError),
    #[error("the SFTP server task failed")]
    ServerTask(#[source] tokio::task::JoinError),
}

type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// Windows builds no SFTP server (it serves through Unix descriptors): a `[server]` section
/// is refused with this, and the hub pulls from a Windows laptop over OpenSSH instead.
#[cfg(windows)]
#[derive(Debug, thiserror::Error)]
#[error(
    "the SFTP server runs only on Linux and macOS: remove [server] from the config on Windows \
     (a hub can reach this folder through Windows' OpenSSH server)"
)]
pub struct ServerError;

/// Runs until SIGTERM/SIGINT. `config_file` is what `--config` named, re-read on SIGHUP.
pub async fn run(cfg: &Config, root: &Path, config_file: Option<&Path>) -> Result<()> {
    // First, so a signal sent right after READY (or during start-up) is ours, not fatal.
    let mut signals = Signals::listen().map_err(DaemonError::Signals)?;
    let store = LocalStore::open(root, cfg.lock_stale_secs)?;
    // A corrupt index stops the daemon with the store's explanation (how to rebuild it).
    let mut index = store
        .load_index_blocking()?
        .unwrap_or_else(|| store.new_index());
    index.name = Some(cfg.replica_name());
    let watcher = IndexWatcher::start(store.root())?;
    let (store, index) = first_scan(store, index, &watcher).await?;
    let mut d = Daemon::start(cfg, store, index, watcher).await?;
    notify(&[NotifyState::Ready, NotifyState::Status(&d.last_status)]);
    let failure = d.serve(&mut signals, config_file).await;
    if let Some(e) = &failure {
        tracing::error!("{}", Chain(e));
    }
    d.stop(failure).await
}

/// The start-up full rescan, on a blocking thread; a scan that cannot run now (a sync holds
/// the lock, or it failed) is left to the watcher.
async fn first_scan(
    store: LocalStore,
    index: Index,
    watcher: &IndexWatcher,
) -> Result<(LocalStore, Index)> {
    let started = Instant::now();
    let (store, index, done) = tokio::task::spawn_blocking(move || {
        let mut index = index;
        let done = crate::watch::initial_scan(&store, &mut index);
        crate::sys::release_free_memory();
        (store, index, done)
    })
    .await
    .map_err(DaemonError::FirstScan)?;
    match done {
        Ok(Some(stats)) => watcher.note_full_scan(&stats),
        Ok(None) => {
            tracing::info!("the index is locked by a sync; the first scan runs after it");
            watcher.request_full();
        }
        Err(e) => {
            tracing::warn!("first scan failed, retrying from the watcher: {e}");
            watcher.request_full();
        }
    }
    let folders = index.counts().1 as u64;
    if let Some(hint) = crate::sys::inotify_watch_limit()
        .and_then(|limit| crate::sys::watch_limit_hint(folders, limit))
    {
        tracing::warn!("{hint}");
    }
    tracing::info!(
        root = %store.root().display(),
        files = index.counts().0,
        ms = started.elapsed().as_millis() as u64,
        "index loaded and checked"
    );
    Ok((store, index))
}

type Task<T> = tokio::task::JoinHandle<T>;

/// The running parts: the indexing thread, the SFTP server, the schedule, the status socket.
struct Daemon {
    cfg: Arc<Config>,
    root: PathBuf,
    shutdown: Shutdown,
    stopper: crate::watch::Stopper,
    indexer: Task<Index>,
    server: Option<Task<Result<(), ServerError>>>,
    status: Option<Task<()>>,
    /// The server's pairing and devices, and the socket that reaches them.
    #[cfg(unix)]
    control: Option<Arc<crate::server::Control>>,
    control_task: Option<Task<()>>,
    sched: Schedule,
    peers: PeerStates,
    last_error: Arc<Mutex<Option<String>>>,
    snapshot: Arc<dyn Fn() -> status::Report + Send + Sync>,
    watchdog: Watchdog,
    last_status: String,
}

impl Daemon {
    async fn start(
        cfg: &Config,
        store: LocalStore,
        index: Index,
        watcher: IndexWatcher,
    ) -> Result<Daemon> {
        let root = store.root().to_path_buf();
        let mut watchdog = Watchdog::disabled();
        watchdog.every = sd_notify::watchdog_enabled().map(|d| d / 2);
        watchdog.beat();
        let (index_state, pending) = (watcher.state(), watcher.pending_probe());
        let (stopper, freshness) = (watcher.stopper(), watcher.freshness_probe());
        let (settings, wd) = (watch_settings(cfg), watchdog.clone());
        let indexer = tokio::task::spawn_blocking(move || watcher.run(store, index, settings, wd));
        let peers: PeerStates = Arc::default();
        let last_error: Arc<Mutex<Option<String>>> = Arc::default();
        let snapshot: Arc<dyn Fn() -> status::Report + Send + Sync> = {
            let (peers, last_error, root) = (peers.clone(), last_error.clone(), root.clone());
            Arc::new(move || {
                status::Report::build(&root, &index_state, &pending, &peers, &last_error)
            })
        };
        let cfg = Arc::new(cfg.clone());
        let mut d = Daemon {
            sched: Schedule::start(cfg.clone(), root.clone(), peers.clone()),
            cfg,
            root,
            shutdown: Shutdown::default(),
            stopper,
            indexer,
            server: None,
            status: None,
            #[cfg(unix)]
            control: None,
            control_task: None,
            peers,
            last_error,
            snapshot,
            watchdog,
            last_status: String::new(),
        };
        if let Err(e) = d.start_serving(freshness).await {
            d.wind_down(true).await;
            return Err(e);
        }
        #[cfg(unix)]
        if d.control.as_ref().is_some_and(|c| !c.pulls().is_empty()) {
            d.restart_schedule().await;
        }
        d.last_status = status_line(&(d.snapshot)());
        Ok(d)
    }

    /// The SFTP server (when configured), the status socket and the control socket. Two
    /// daemons on one folder would double every scheduled sync: the second one refuses to
    /// start (before it binds the control socket, which it would take from the first).
    async fn start_serving(&mut self, freshness: crate::watch::FreshnessProbe) -> Result<()> {
        #[cfg(windows)]
        if self.cfg.server.is_some() {
            let _ = freshness;
            return Err(DaemonError::Bind(ServerError));
        }
        #[cfg(unix)]
        if let Some(sc) = &self.cfg.server {
            let bound = crate::server::bind(sc, &self.root)
                .await
                .map_err(DaemonError::Bind)?
                .with_freshness(freshness.clone())
                .named(&self.cfg.replica_name());
            self.control = Some(bound.control());
            tracing::info!(addr = %bound.local_addr(), "serving SFTP");
            self.server = Some(tokio::spawn(bound.run(self.shutdown.listener())));
        }
        let snapshot = self.snapshot.clone();
        match status::serve(&self.root, move || snapshot(), self.shutdown.listener()) {
            Ok(t) => self.status = Some(t),
            Err(e @ status::StatusError::Running(_)) => return Err(e.into()),
            Err(e) => tracing::warn!("`filesync status` cannot reach this daemon: {e}"),
        }
        #[cfg(unix)]
        self.serve_control(freshness);
        Ok(())
    }

    /// The control socket: a sync here asks it to vouch for the index, and on a hub
    /// `filesync pair --new` and `filesync devices` reach the server through it.
    #[cfg(unix)]
    fn serve_control(&mut self, freshness: crate::watch::FreshnessProbe) {
        let answering = control::Answering {
            root: self.root.clone(),
            freshness: Some(freshness),
            control: self.control.clone(),
        };
        self.control_task = control::serve(&self.root, answering, self.shutdown.listener());
        if self.control_task.is_none() {
            tracing::warn!(
                "no usable runtime folder for the control socket: syncs here scan the folder themselves, and `filesync pair --new` and `filesync devices` cannot reach this daemon"
            );
        }
    }

    /// Until a signal asks to stop, or a part fails (the failure is returned).
    async fn serve(
        &mut self,
        signals: &mut Signals,
        config_file: Option<&Path>,
    ) -> Option<DaemonError> {
        let tick_every = self
            .watchdog
            .every
            .map(|d| (d / 4).max(Duration::from_millis(50)))
            .unwrap_or(Duration::from_secs(2))
            .min(Duration::from_secs(2));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                sig = signals.next() => match sig {
                    Signal::Hangup => self.reload(config_file).await,
                    other => {
                        tracing::info!("{other:?}: stopping");
                        return None;
                    }
                },
                _ = tick.tick() => self.tick(),
                () = self.pulls_changed() => {
                    tracing::info!("the laptops to pull from changed; restarting the schedule");
                    self.restart_schedule().await;
                }
                res = &mut self.indexer => {
                    // Only a panic ends the indexer early; exit so systemd restarts us.
                    return Some(match res {
                        Ok(_) => DaemonError::IndexerStopped,
                        Err(e) => DaemonError::IndexerFailed(e),
                    });
                }
                res = async {
                    match self.server.as_mut() {
                        Some(t) => t.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.server = None;
                    return Some(match res {
                        Ok(Ok(())) => DaemonError::ServerStopped,
                        Ok(Err(e)) => DaemonError::ServerFailed(e),
                        Err(e) => DaemonError::ServerTask(e),
                    });
                }
            }
        }
    }

    fn tick(&mut self) {
        self.watchdog.beat();
        let line = status_line(&(self.snapshot)());
        if line != self.last_status {
            notify(&[NotifyState::Status(&line)]);
            self.last_status = line;
        }
    }

    /// SIGHUP: the configuration read again; the schedule restarts with it. A bad file keeps
    /// the old configuration (and says so in the status).
    async fn reload(&mut self, config_file: Option<&Path>) {
        let mut msg = vec![NotifyState::Reloading];
        if let Ok(m) = NotifyState::monotonic_usec_now() {
            msg.push(m);
        }
        notify(&msg);
        match Config::load(config_file) {
            Ok(new) => {
                if new.server != self.cfg.server {
                    tracing::warn!("[server] settings changed; they take effect after a restart");
                }
                if new.root.is_some() && new.root != self.cfg.root {
                    tracing::warn!("`root` changed; it takes effect after a restart");
                }
                self.cfg = Arc::new(new);
                self.restart_schedule().await;
                tracing::info!(peers = self.cfg.peers.len(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!("configuration not reloaded, keeping the old one: {e}");
                *lock(&self.last_error) = Some(format!("reload failed: {e}"));
            }
        }
        self.last_status = status_line(&(self.snapshot)());
        notify(&[NotifyState::Ready, NotifyState::Status(&self.last_status)]);
    }

    /// The schedule started again with the config's peers and the laptops paired to be
    /// pulled from.
    async fn restart_schedule(&mut self) {
        self.sched.stop(STOP_GRACE).await;
        #[cfg(unix)]
        let cfg = match &self.control {
            Some(c) => Arc::new(with_pulls(&self.cfg, c)),
            None => self.cfg.clone(),
        };
        #[cfg(windows)]
        let cfg = self.cfg.clone();
        self.sched = Schedule::start(cfg, self.root.clone(), self.peers.clone());
    }

    /// Resolves when the laptops to pull from change (never without a server).
    fn pulls_changed(&self) -> impl std::future::Future<Output = ()> + use<> {
        #[cfg(unix)]
        let control = self.control.clone();
        async move {
            #[cfg(unix)]
            if let Some(c) = control {
                return c.pulls_changed.notified().await;
            }
            std::future::pending().await
        }
    }

    /// Stops every part (see `wind_down`); `failure` is what ended the run, if anything did.
    async fn stop(self, failure: Option<DaemonError>) -> Result<()> {
        self.wind_down(failure.is_some()).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops every part, in order: the flag raised, the schedule drained, the indexer
    /// flushed (it applies what is pending, lock permitting, and saves), the server and the
    /// status socket awaited.
    async fn wind_down(mut self, failed: bool) {
        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        self.shutdown.raise();
        self.sched.stop(STOP_GRACE).await;
        self.stopper.stop();
        let index = if self.indexer.is_finished() && failed {
            None
        } else {
            self.indexer.await.ok()
        };
        if let Some(t) = self.server {
            match t.await {
                Ok(Err(e)) => tracing::warn!("the SFTP server stopped with an error: {e}"),
                Err(e) => tracing::warn!("the SFTP server task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(t) = self.status {
            let _ = t.await;
        }
        if let Some(t) = self.control_task {
            let _ = t.await;
        }
        if let Some(index) = index {
            tracing::info!(files = index.counts().0, "stopped");
        }
    }
}

/// `cfg` with a peer for each laptop paired with `--serve` (a peer of the same name in the
/// config wins): the hub logs in with its own client key and checks the host keys it learnt
/// at pairing.
#[cfg(unix)]
fn with_pulls(cfg: &Config, control: &crate::server::Control) -> Config {
    let mut cfg = cfg.clone();
    for (name, pull) in control.pulls() {
        cfg.peers
            .entry(name)
            .or_insert_with(|| crate::config::PeerConfig {
                url: pull.url,
                identity: Some(control.state_dir.join("client_key")),
                known_hosts: Some(control.state_dir.join("known_hosts")),
                every: Some(pull.every),
            });
    }
    cfg
}

fn watch_settings(cfg: &Config) -> WatchSettings {
    let mut s = WatchSettings::default();
    if let Ok(d) = humantime::parse_duration(&cfg.daemon.rescan_every) {
        s.rescan_every = d.max(Duration::from_secs(1));
    }
    s.debounce = Duration::from_millis(cfg.daemon.debounce_ms);
    s.max_delay = s.max_delay.max(s.debounce * 4);
    s
}

/// Sends notify messages; without `NOTIFY_SOCKET` this does nothing.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One line for `systemctl status`: what is indexed, each peer, the last error.
fn status_line(r: &status::Report) -> String {
    let i: &IndexState = &r.index;
    let mut s = format!(
        "{} files indexed ({})",
        i.files,
        crate::sync::human_bytes(i.bytes)
    );
    if i.pending > 0 || i.full_rescan_pending {
        s.push_str(", changes pending");
    }
    if i.degraded {
        s.push_str(", polling (watch limit)");
    }
    for p in &r.peers {
        let state = match (p.online, p.last_sync) {
            (Some(false), _) => "offline".to_string(),
            // A clock time, not "ago": the line then changes only when something happens.
            (_, Some(t)) => format!("synced {}", rfc3339(t)),
            _ => "not synced yet".to_string(),
        };
        s.push_str(&format!("; {}: {state}", p.name));
    }
    if let Some(e) = r.last_error.as_ref().or(i.last_error.as_ref()) {
        s.push_str("; last error: ");
        s.push_str(e);
    }
    s
}

fn rfc3339(t: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn ago(now: i64, t: i64) -> String {
    crate::time::ago(now, t)
}

/// Where a root's daemon listens: the first usable runtime folder.
#[cfg(unix)]
pub use crate::sys::socket::dirs as socket_dirs;
