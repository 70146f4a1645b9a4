//! Scheduled syncs: one task per `[peers.NAME]` with `every`, so never two syncs at once with
//! the same peer; jittered periods; exponential backoff while a peer is unreachable, logged
//! once per state change rather than once per attempt.

use crate::config::Config;
use crate::endpoint::Target;
use crate::store::{Chain, StoreError};
use crate::sync::SyncReport;
use crate::sync::job::{End, Job};
use crate::time::now_secs;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The longest wait between attempts at an unreachable peer (unless `every` is longer).
const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// The first sync after start comes soon, not a whole period later.
const FIRST_RUN_MAX: Duration = Duration::from_secs(10);
/// Retry delay when a replica is locked by another sync (ours or a person's).
const BUSY_RETRY: Duration = Duration::from_secs(2);

/// What the daemon knows about each scheduled peer, by name.
pub type PeerStates = Arc<Mutex<BTreeMap<String, PeerState>>>;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerState {
    pub name: String,
    pub every: String,
    /// `None` until the first attempt.
    pub online: Option<bool>,
    /// Unix seconds of the last completed sync.
    pub last_sync: Option<i64>,
    pub last_result: Option<String>,
    /// Unix seconds of the next attempt.
    pub next_run: Option<i64>,
    pub last_error: Option<String>,
    pub running: bool,
    pub failures: u32,
}

/// The running peer tasks and the switches that stop them.
pub struct Schedule {
    stop: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Schedule {
    pub fn start(cfg: Arc<Config>, root: PathBuf, states: PeerStates) -> Schedule {
        let (stop, stop_rx) = watch::channel(false);
        let (abandon, abandon_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut active = Vec::new();
        for (name, peer) in &cfg.peers {
            let Some(every) = peer
                .every
                .as_deref()
                .and_then(|e| humantime::parse_duration(e).ok())
            else {
                continue;
            };
            let every = every.max(Duration::from_millis(100));
            active.push(name.clone());
            {
                let mut st = super::lock(&states);
                let s = st.entry(name.clone()).or_default();
                s.name = name.clone();
                s.every = humantime::format_duration(every).to_string();
            }
            let peer = PeerTask {
                cfg: cfg.clone(),
                root: root.clone(),
                name: name.clone(),
                every,
                states: states.clone(),
                stop: stop_rx.clone(),
                abandon: abandon_rx.clone(),
            };
            tasks.spawn(peer.run());
        }
        // Peers removed from the config by a reload leave the status.
        super::lock(&states).retain(|n, _| active.contains(n));
        Schedule {
            stop,
            abandon,
            tasks,
        }
    }

    /// Stops every peer task: sleeping ones at once, a sync in flight after it finishes or,
    /// past `grace`, abandoned (nothing torn: only temp files are ever half-written).
    pub async fn stop(&mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("abandoning syncs still running after {grace:?}");
            let _ = self.abandon.send(true);
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

struct PeerTask {
    cfg: Arc<Config>,
    root: PathBuf,
    name: String,
    every: Duration,
    states: PeerStates,
    stop: watch::Receiver<bool>,
    abandon: watch::Receiver<bool>,
}

enum Outcome {
    Synced(Box<SyncReport>),
    /// A replica is locked by another sync: try again soon, the peer is fine.
    Busy(String),
    /// The peer cannot be reached or the sync failed: back off.
    Unavailable(String),
    Abandoned,
}

impl PeerTask {
    async fn run(mut self) {
        let mut delay = jitter(self.every).min(FIRST_RUN_MAX);
        loop {
            self.update(|s| {
                s.next_run = Some(now_secs() + delay.as_secs() as i64);
                s.running = false;
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = crate::shutdown::raised(&mut self.stop) => return,
            }
            if *self.stop.borrow() {
                return;
            }
            self.update(|s| s.running = true);
            let outcome = self.sync_once().await;
            let was_online = self.state(|s| s.online);
            delay = match outcome {
                Outcome::Synced(r) => {
                    if was_online == Some(false) {
                        tracing::info!(peer = %self.name, "peer is reachable again; syncing resumed");
                    }
                    let moved = r.sent.0 + r.received.0 + r.deleted;
                    // One line per sync: files that were changing are a count in it.
                    let changing = r
                        .changing_note()
                        .map(|n| format!("; {n}"))
                        .unwrap_or_default();
                    if moved > 0 || !r.conflicts.is_empty() || !changing.is_empty() {
                        tracing::info!(peer = %self.name, sent = r.sent.0, received = r.received.0,
                            deleted = r.deleted, conflicts = r.conflicts.len(),
                            "synced: {}{changing}", r.summary());
                    } else {
                        tracing::debug!(peer = %self.name, "synced: nothing to do");
                    }
                    for e in &r.errors {
                        tracing::warn!(peer = %self.name, "not synced: {e}");
                    }
                    let first_error = r.errors.first().map(ToString::to_string);
                    self.update(|s| {
                        s.online = Some(true);
                        s.failures = 0;
                        s.last_sync = Some(now_secs());
                        s.last_result = Some(r.summary());
                        s.last_error = first_error;
                    });
                    jitter(self.every)
                }
                Outcome::Busy(why) => {
                    tracing::debug!(peer = %self.name, "replica busy, retrying soon: {why}");
                    self.update(|s| s.last_error = Some(why));
                    BUSY_RETRY.min(self.every.max(Duration::from_millis(500)))
                }
                Outcome::Unavailable(why) => {
                    // One line when the peer goes away, none for each further failed attempt.
                    if was_online != Some(false) {
                        tracing::warn!(peer = %self.name, error = %why,
                            "peer unreachable; retrying with backoff");
                    } else {
                        tracing::debug!(peer = %self.name, error = %why, "peer still unreachable");
                    }
                    let failures = self.state(|s| s.failures) + 1;
                    self.update(|s| {
                        s.online = Some(false);
                        s.failures = failures;
                        s.last_error = Some(why);
                    });
                    backoff(self.every, failures)
                }
                Outcome::Abandoned => {
                    self.update(|s| {
                        s.running = false;
                        s.last_error = Some("abandoned at shutdown".into());
                    });
                    return;
                }
            };
        }
    }

    fn update(&self, f: impl FnOnce(&mut PeerState)) {
        let mut st = super::lock(&self.states);
        if let Some(s) = st.get_mut(&self.name) {
            f(s);
        }
    }

    fn state<T>(&self, f: impl FnOnce(&PeerState) -> T) -> T {
        let st = super::lock(&self.states);
        f(st.get(&self.name).unwrap_or(&PeerState::default()))
    }

    async fn sync_once(&mut self) -> Outcome {
        let target = match Target::parse(&self.name, &self.cfg) {
            Ok((t, _)) => t,
            Err(e) => return Outcome::Unavailable(e.to_string()),
        };
        let here = Target::Local(self.root.clone());
        let left = End {
            target: &here,
            name: self.cfg.replica_name(),
        };
        let right = End {
            target: &target,
            name: self.name.clone(),
        };
        // Connecting and the handshake hold no lock: a stop ends them at once.
        let opened = tokio::select! {
            r = Job::open(&self.cfg, left, right, false) => r,
            _ = crate::shutdown::raised(&mut self.stop) => return Outcome::Abandoned,
        };
        let job = match opened {
            Ok(j) => j,
            Err(e) => return Outcome::Unavailable(Chain(&e).to_string()),
        };
        let res = tokio::select! {
            r = job.run() => r,
            _ = crate::shutdown::raised(&mut self.abandon) => {
                job.abandon(crate::sync::job::UNLOCK_LIMIT).await;
                return Outcome::Abandoned;
            }
        };
        match res {
            Ok(r) => Outcome::Synced(Box::new(r)),
            Err(e @ StoreError::Locked { .. }) => Outcome::Busy(e.to_string()),
            Err(e) => Outcome::Unavailable(Chain(&e).to_string()),
        }
    }
}

/// `every` ±10%, so many daemons on one schedule do not all hit the hub at once.
fn jitter(every: Duration) -> Duration {
    every.mul_f64(rand::random_range(0.9..1.1))
}

/// The wait after `failures` failed attempts in a row: `every`, doubling, capped.
fn backoff(every: Duration, failures: u32) -> Duration {
    let cap = BACKOFF_CAP.max(every);
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    jitter(every.saturating_mul(factor).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs(1);
        let b: Vec<f64> = (1..=4).map(|f| backoff(s, f).as_secs_f64()).collect();
        for (got, want) in b.iter().zip([1.0, 2.0, 4.0, 8.0]) {
            assert!((got / want - 1.0).abs() <= 0.1 + 1e-9, "{b:?}");
        }
        assert!(backoff(s, 40) <= BACKOFF_CAP.mul_f64(1.1));
        let day = Duration::from_secs(86_400);
        assert!(backoff(day, 5) >= day.mul_f64(0.9));
    }
}
