//! Who may hold a connection, decided at accept and at login (pure: time is passed in).
//!
//! Connections that have not logged in yet are cheap and bounded apart from sessions: at most
//! `per_source` from one address and `full` in all, and each must log in within the grace time
//! (the caller's timer). Past `start` new ones are dropped at random (OpenSSH's `MaxStartups
//! start:rate:full`), judged by a load in which one address counts for at most `FAIR`: a
//! single flooding neighbour fills only its own share, and the others' logins still go
//! through. Logged-in sessions count against `max_sessions` only, so a stranger's half-open
//! connections never lock people out. An address that keeps failing to log in is refused for
//! a while that doubles each time it happens again (OpenSSH's `PerSourcePenalties`); trusted
//! addresses never are, nor are they held to the per-address cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// OpenSSH's `MaxStartups start:rate:full` for connections not logged in yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    pub start: usize,
    pub rate: u32,
    pub full: usize,
}

impl Startups {
    /// Parses `"10:30:100"` (or a single number: a hard cap).
    pub fn parse(s: &str) -> Result<Startups, String> {
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let num = |p: &str| {
            p.parse::<usize>()
                .map_err(|_| format!("{p:?} is not a number"))
        };
        let st = match parts.as_slice() {
            [full] => {
                let full = num(full)?;
                Startups {
                    start: full,
                    rate: 100,
                    full,
                }
            }
            [start, rate, full] => Startups {
                start: num(start)?,
                rate: num(rate)?.min(100) as u32,
                full: num(full)?,
            },
            _ => return Err(format!("{s:?} is not start:rate:full")),
        };
        if st.full == 0 || st.start > st.full {
            return Err(format!(
                "{s:?}: start must be at most full, and full above 0"
            ));
        }
        Ok(st)
    }

    /// The chance (0..=1) that a new connection is dropped while `open` are not logged in.
    fn drop_chance(&self, open: usize) -> f64 {
        if open >= self.full {
            1.0
        } else if open < self.start {
            0.0
        } else {
            let span = (self.full - self.start).max(1) as f64;
            let rate = f64::from(self.rate) / 100.0;
            rate + (1.0 - rate) * (open - self.start) as f64 / span
        }
    }
}

/// The limits, from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub startups: Startups,
    pub per_source: usize,
    pub max_sessions: usize,
    /// Failed logins within `FAILURE_WINDOW` after which an address is penalised.
    pub failures: u32,
    pub trusted: Vec<Net>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            startups: Startups {
                start: 10,
                rate: 30,
                full: 100,
            },
            per_source: 32,
            max_sessions: 64,
            failures: 10,
            trusted: Vec::new(),
        }
    }
}

/// What one address adds at most to the load the random early drop is judged by.
const FAIR: usize = 4;

/// How far back failed logins count.
const FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// The first penalty, doubled at each repeat offence up to `PENALTY_MAX`.
const PENALTY_FIRST: Duration = Duration::from_secs(30);
const PENALTY_MAX: Duration = Duration::from_secs(3600);
/// An address clean this long is forgotten: its next offence counts as a first.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Addresses remembered at most (failures, penalties); the oldest go first.
const MAX_REMEMBERED: usize = 10_000;

/// An address or a network (`192.168.1.0/24`, `fd00::/8`), for `[server] trusted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    bits: u8,
}

impl Net {
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/bits"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Net {
            addr: canonical(addr),
            bits,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix(net: &[u8], addr: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if net[..whole] != addr[..whole] {
        return false;
    }
    rest == 0 || (net[whole] ^ addr[whole]) >> (8 - rest) == 0
}

/// An IPv4 address reached over IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The address failed to log in too often; refused until then.
    Penalised { for_secs: u64 },
    /// This address already has `open` connections that have not logged in.
    PerSource { open: usize },
    /// Too many connections are not logged in yet (dropped at random past `start`).
    Startups { open: usize },
    /// Every session slot is taken.
    Full { max: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Penalised { for_secs } => write!(
                f,
                "refused for {for_secs} s more after repeated failed logins from this address"
            ),
            Refusal::PerSource { open } => write!(
                f,
                "{open} connections from this address have not logged in yet (max_startups_per_source)"
            ),
            Refusal::Startups { open } => write!(
                f,
                "{open} connections have not logged in yet (max_startups)"
            ),
            Refusal::Full { max } => write!(f, "all {max} sessions are in use (max_clients)"),
        }
    }
}

/// Something worth one log line: a state an address entered or left.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Penalised {
        ip: IpAddr,
        secs: u64,
        failures: u32,
    },
    Forgiven {
        ip: IpAddr,
    },
    Capped {
        ip: IpAddr,
        open: usize,
    },
    Uncapped {
        ip: IpAddr,
    },
    /// New connections are being dropped at random: this many have not logged in.
    Dropping {
        open: usize,
    },
    NotDropping,
}

#[derive(Debug, Default)]
struct Source {
    /// Connections from here that have not logged in.
    unauth: usize,
    /// Failed logins within the window, oldest first.
    failures: Vec<Instant>,
    /// The end of the latest penalty (kept after it ends: repeat offences double it).
    until: Option<Instant>,
    /// Penalties so far (each doubles the next).
    offences: u32,
    /// Refusing for a penalty now (to log its end once).
    penalised: bool,
    /// The last refusal for the per-address cap, while that episode lasts (to log it once).
    capped: Option<Instant>,
    last_seen: Option<Instant>,
}

impl Source {
    /// Nothing worth remembering: no connection, no failure, no penalty history.
    fn blank(&self) -> bool {
        self.unauth == 0
            && self.failures.is_empty()
            && self.until.is_none()
            && !self.penalised
            && self.capped.is_none()
    }
}

#[derive(Debug, Default)]
struct State {
    unauth: usize,
    /// Σ min(not logged in from an address, FAIR).
    load: usize,
    sessions: usize,
    sources: HashMap<IpAddr, Source>,
    /// The last random drop, while that episode lasts (to log it once).
    dropping: Option<Instant>,
}

/// An episode of refusals (the cap, the random drop) is over after this long without one:
/// a flood whose connections come and go is one episode, logged once, not a line per turn.
const EPISODE_QUIET: Duration = Duration::from_secs(60);

/// Whether an episode that last refused at `last` is over at `now`.
fn over(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|t| now.duration_since(t) >= EPISODE_QUIET)
}

/// The shared book of connections; a `Ticket` per admitted connection keeps it current.
#[derive(Clone)]
pub struct Admission {
    limits: Arc<Limits>,
    state: Arc<Mutex<State>>,
}

/// One admitted connection: not logged in until `promote`; its count goes back when dropped.
pub struct Ticket {
    book: Admission,
    ip: IpAddr,
    logged_in: bool,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits: Arc::new(limits),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.limits.trusted.iter().any(|n| n.contains(ip))
    }

    /// A new connection from `ip` at `now`; `dice` is a uniform draw from 0..1 for the random
    /// early drop. Changes worth logging go to `log`.
    pub fn admit(
        &self,
        ip: IpAddr,
        now: Instant,
        dice: f64,
        log: &mut Vec<Change>,
    ) -> Result<Ticket, Refusal> {
        let ip = canonical(ip);
        let trusted = self.trusted(ip);
        let limits = self.limits.clone();
        let mut guard = self.state();
        let st = &mut *guard;
        if st.sources.len() >= MAX_REMEMBERED && !st.sources.contains_key(&ip) {
            forget_oldest(&mut st.sources, now);
        }
        let (total, load) = (st.unauth, st.load);
        let src = st.sources.entry(ip).or_default();
        src.last_seen = Some(now);
        if let Some(until) = src.until.filter(|u| now < *u && !trusted) {
            return Err(Refusal::Penalised {
                for_secs: until.duration_since(now).as_secs().max(1),
            });
        }
        if src.penalised {
            src.penalised = false;
            log.push(Change::Forgiven { ip });
        }
        if !trusted && src.unauth >= limits.per_source {
            if src.capped.is_none() {
                log.push(Change::Capped {
                    ip,
                    open: src.unauth,
                });
            }
            src.capped = Some(now);
            return Err(Refusal::PerSource { open: src.unauth });
        }
        let chance = if total >= limits.startups.full {
            1.0
        } else {
            limits.startups.drop_chance(load)
        };
        if dice < chance {
            if st.dropping.is_none() {
                log.push(Change::Dropping { open: total });
            }
            st.dropping = Some(now);
            return Err(Refusal::Startups { open: total });
        }
        if over(src.capped, now) {
            src.capped = None;
            log.push(Change::Uncapped { ip });
        }
        if src.unauth < FAIR {
            st.load += 1;
        }
        src.unauth += 1;
        st.unauth += 1;
        if over(st.dropping, now) {
            st.dropping = None;
            log.push(Change::NotDropping);
        }
        drop(guard);
        Ok(Ticket {
            book: self.clone(),
            ip,
            logged_in: false,
        })
    }

    /// A failed login from `ip` (a wrong password; a connection that tried and gave up).
    pub fn failed_login(&self, ip: IpAddr, now: Instant, log: &mut Vec<Change>) {
        let ip = canonical(ip);
        if self.trusted(ip) {
            return;
        }
        let threshold = self.limits.failures.max(1);
        let mut st = self.state();
        if st.sources.len() >= MAX_REMEMBERED && !st.sources.contains_key(&ip) {
            forget_oldest(&mut st.sources, now);
        }
        let src = st.sources.entry(ip).or_default();
        src.last_seen = Some(now);
        // Long clean since its last penalty: the next one counts as a first again.
        if src
            .until
            .is_some_and(|u| now.saturating_duration_since(u) > FORGET_AFTER)
        {
            src.offences = 0;
            src.until = None;
        }
        src.failures
            .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        src.failures.push(now);
        if src.failures.len() as u32 >= threshold && src.until.is_none_or(|u| u <= now) {
            let secs = penalty(src.offences);
            src.offences += 1;
            src.until = Some(now + secs);
            src.penalised = true;
            log.push(Change::Penalised {
                ip,
                secs: secs.as_secs(),
                failures: src.failures.len() as u32,
            });
            src.failures.clear();
        }
    }

    /// (not logged in, logged in) connections now.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state();
        (st.unauth, st.sessions)
    }
}

/// The refusal after `offences` earlier penalties.
fn penalty(offences: u32) -> Duration {
    PENALTY_FIRST
        .saturating_mul(2u32.saturating_pow(offences.min(16)))
        .min(PENALTY_MAX)
}

/// Drops the entries of the longest-quiet addresses that hold no connection.
fn forget_oldest(sources: &mut HashMap<IpAddr, Source>, now: Instant) {
    let mut idle: Vec<(Duration, IpAddr)> = sources
        .iter()
        .filter(|(_, s)| s.unauth == 0 && s.until.is_none_or(|u| u <= now))
        .map(|(ip, s)| {
            (
                s.last_seen.map_or(Duration::MAX, |t| now.duration_since(t)),
                *ip,
            )
        })
        .collect();
    idle.sort_by_key(|(quiet, _)| std::cmp::Reverse(*quiet));
    for (_, ip) in idle.into_iter().take(MAX_REMEMBERED / 10 + 1) {
        sources.remove(&ip);
    }
}

impl Ticket {
    /// The connection logged in: it leaves the not-logged-in count for a session slot.
    pub fn promote(&mut self) -> Result<(), Refusal> {
        if self.logged_in {
            return Ok(());
        }
        let max = self.book.limits.max_sessions;
        let mut guard = self.book.state();
        let st = &mut *guard;
        if st.sessions >= max {
            return Err(Refusal::Full { max });
        }
        st.sessions += 1;
        st.unauth = st.unauth.saturating_sub(1);
        if let Some(src) = st.sources.get_mut(&self.ip) {
            if src.unauth <= FAIR {
                st.load = st.load.saturating_sub(1);
            }
            src.unauth = src.unauth.saturating_sub(1);
            // A good login from here clears its record of failures (not a running penalty).
            src.failures.clear();
        }
        self.logged_in = true;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut st = self.book.state();
        if self.logged_in {
            st.sessions = st.sessions.saturating_sub(1);
            return;
        }
        let st = &mut *st;
        st.unauth = st.unauth.saturating_sub(1);
        let forget = match st.sources.get_mut(&self.ip) {
            Some(src) => {
                if src.unauth <= FAIR {
                    st.load = st.load.saturating_sub(1);
                }
                src.unauth = src.unauth.saturating_sub(1);
                src.blank()
            }
            None => false,
        };
        if forget {
            st.sources.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests;
