//! The daemon: watch the folder, keep `.sync` current, serve SFTP, sync peers on a schedule,
//! and speak systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING, STOPPING).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) the notify messages are no-ops.

mod schedule;
pub mod status;

use crate::config::Config;
use crate::index::{Index, ReplicaId};
use crate::store::LocalStore;
use crate::watch::{IndexState, IndexWatcher, WatchSettings, Watchdog};
use anyhow::{Context, Result};
use schedule::{PeerStates, Schedule};
use sd_notify::NotifyState;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long in-flight peer syncs may run on after SIGTERM before they are abandoned.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs until SIGTERM/SIGINT. `config_file` is what `--config` named, re-read on SIGHUP.
pub async fn run(cfg: &Config, root: &Path, config_file: Option<&Path>) -> Result<()> {
    // First, so a signal sent right after READY (or during start-up) is ours, not fatal.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let store = LocalStore::open(root, cfg.lock_stale_secs)?;
    let root = store.root().to_path_buf();
    // A corrupt index stops the daemon with the store's explanation (how to rebuild it).
    let mut index = store
        .load_index_blocking()?
        .unwrap_or_else(|| Index::new(ReplicaId::random()));
    index.name = Some(cfg.replica_name());

    let watcher = IndexWatcher::start(&root)?;
    let started = Instant::now();
    let (store, index) = tokio::task::spawn_blocking(move || {
        let mut index = index;
        let done = crate::watch::initial_scan(&store, &mut index);
        (store, index, done)
    })
    .await
    .map(|(s, i, done)| {
        match done {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("the index is locked by a sync; the first scan runs after it");
                watcher.request_full();
            }
            Err(e) => {
                tracing::warn!("first scan failed, retrying from the watcher: {e}");
                watcher.request_full();
            }
        }
        (s, i)
    })
    .context("the first scan failed")?;
    tracing::info!(
        root = %root.display(),
        files = index.counts().0,
        ms = started.elapsed().as_millis() as u64,
        "index loaded and checked"
    );

    let mut watchdog = Watchdog::disabled();
    watchdog.every = sd_notify::watchdog_enabled().map(|d| d / 2);
    watchdog.beat();
    let index_state = watcher.state();
    let pending = watcher.pending_probe();
    let stopper = watcher.stopper();
    let freshness = watcher.freshness_probe();
    let settings = watch_settings(cfg);
    let wd = watchdog.clone();
    let mut indexer = tokio::task::spawn_blocking(move || watcher.run(store, index, settings, wd));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut server_task = None;
    if let Some(sc) = &cfg.server {
        match crate::server::bind(sc, &root).await {
            Ok(bound) => {
                let bound = bound.with_freshness(freshness);
                tracing::info!(addr = %bound.local_addr(), "serving SFTP");
                server_task = Some(tokio::spawn(bound.run(shutdown_rx.clone())));
            }
            Err(e) => {
                stopper.stop();
                let _ = indexer.await;
                return Err(anyhow::Error::new(e).context("cannot start the SFTP server"));
            }
        }
    }

    let peers: PeerStates = Arc::default();
    let mut cfg = Arc::new(cfg.clone());
    let mut sched = Schedule::start(cfg.clone(), root.clone(), peers.clone());
    let last_error: Arc<Mutex<Option<String>>> = Arc::default();
    let snapshot = {
        let (index_state, peers, last_error, root) = (
            index_state.clone(),
            peers.clone(),
            last_error.clone(),
            root.clone(),
        );
        move || status::Report::build(&root, &index_state, &pending, &peers, &last_error)
    };
    let status_task = match status::serve(&root, snapshot.clone(), shutdown_rx.clone()) {
        Ok(t) => Some(t),
        Err(e @ status::StatusError::Running(_)) => {
            // Two daemons on one folder would double every scheduled sync: refuse to start.
            let _ = shutdown_tx.send(true);
            sched.stop(STOP_GRACE).await;
            stopper.stop();
            let _ = indexer.await;
            if let Some(t) = server_task {
                let _ = t.await;
            }
            return Err(e.into());
        }
        Err(e) => {
            tracing::warn!("`filesync status` cannot reach this daemon: {e}");
            None
        }
    };

    let mut last_status = status_line(&snapshot());
    notify(&[NotifyState::Ready, NotifyState::Status(&last_status)]);

    let tick_every = watchdog
        .every
        .map(|d| (d / 4).max(Duration::from_millis(50)))
        .unwrap_or(Duration::from_secs(2))
        .min(Duration::from_secs(2));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure: Option<anyhow::Error> = None;

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                let mut msg = vec![NotifyState::Reloading];
                if let Ok(m) = NotifyState::monotonic_usec_now() {
                    msg.push(m);
                }
                notify(&msg);
                match Config::load(config_file) {
                    Ok(new) => {
                        if new.server != cfg.server {
                            tracing::warn!("[server] settings changed; they take effect after a restart");
                        }
                        if new.root.is_some() && new.root != cfg.root {
                            tracing::warn!("`root` changed; it takes effect after a restart");
                        }
                        sched.stop(STOP_GRACE).await;
                        cfg = Arc::new(new);
                        sched = Schedule::start(cfg.clone(), root.clone(), peers.clone());
                        tracing::info!(peers = cfg.peers.len(), "configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!("configuration not reloaded, keeping the old one: {e}");
                        *lock(&last_error) = Some(format!("reload failed: {e}"));
                    }
                }
                last_status = status_line(&snapshot());
                notify(&[NotifyState::Ready, NotifyState::Status(&last_status)]);
            }
            _ = tick.tick() => {
                watchdog.beat();
                let line = status_line(&snapshot());
                if line != last_status {
                    notify(&[NotifyState::Status(&line)]);
                    last_status = line;
                }
            }
            res = &mut indexer => {
                // Only a panic ends the indexer early; exit so systemd restarts us.
                let e = match res {
                    Ok(_) => anyhow::anyhow!("the indexing thread stopped unexpectedly"),
                    Err(e) => anyhow::anyhow!("the indexing thread failed: {e}"),
                };
                tracing::error!("{e:#}");
                let _ = shutdown_tx.send(true);
                sched.stop(STOP_GRACE).await;
                if let Some(t) = server_task {
                    let _ = t.await;
                }
                if let Some(t) = status_task {
                    let _ = t.await;
                }
                return Err(e);
            }
            res = async {
                match server_task.as_mut() {
                    Some(t) => t.await,
                    None => std::future::pending().await,
                }
            } => {
                server_task = None;
                let e = match res {
                    Ok(Ok(())) => anyhow::anyhow!("the SFTP server stopped unexpectedly"),
                    Ok(Err(e)) => anyhow::Error::new(e).context("the SFTP server failed"),
                    Err(e) => anyhow::anyhow!("the SFTP server task failed: {e}"),
                };
                tracing::error!("{e:#}");
                failure = Some(e);
                break;
            }
        }
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    let _ = shutdown_tx.send(true);
    sched.stop(STOP_GRACE).await;
    stopper.stop();
    // The indexer applies what is pending (lock permitting) and saves before it returns.
    let index = indexer.await.context("the indexing thread failed")?;
    if let Some(t) = server_task {
        match t.await {
            Ok(Err(e)) => tracing::warn!("the SFTP server stopped with an error: {e}"),
            Err(e) => tracing::warn!("the SFTP server task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(t) = status_task {
        let _ = t.await;
    }
    tracing::info!(files = index.counts().0, "stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
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

/// Resolves once a shutdown-style flag turns true (or its sender is gone).
async fn raised(rx: &mut watch::Receiver<bool>) {
    // The borrow guard is dropped here, so callers may hold this across awaits.
    let _ = rx.wait_for(|v| *v).await;
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
    humantime::format_duration(Duration::from_secs(now.saturating_sub(t).max(0) as u64)).to_string()
}

/// Where a root's daemon listens: the first usable runtime folder.
pub fn socket_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    // systemd's RuntimeDirectory= for the service; not set in a user's shell.
    if let Some(d) = std::env::var_os("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(d).join("filesync"));
    }
    v.push(PathBuf::from("/run/filesync"));
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    v.push(std::env::temp_dir().join(format!("filesync-{uid}")));
    v
}
