//! `.sync.lock`: one writer per replica. Who holds a lock (written into it), when one may be
//! broken, which locks this process holds, and taking and releasing it on this machine
//! through the root's descriptor. Each round of taking one is judged by `attempt`, which the
//! SFTP store runs as well for a remote one.

use super::layout::LOCK_FILE;
use super::root::{Folder, Root, RootError, open_read_at, remove_at, stat_at};
use crate::relpath::RelPath;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// What a daemon's watcher writes into `.sync.lock` while it updates the index (seconds at
/// most: a sync waits for it rather than failing).
pub const INDEX_UPDATE: &str = "filesync daemon (index update)";

/// Who holds a lock: written into `.sync.lock` so a person (or a later run) can judge it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// Unix seconds when taken.
    pub time: i64,
    pub what: String,
}

impl LockInfo {
    pub fn here(what: &str) -> Self {
        LockInfo {
            host: crate::sys::hostname(),
            pid: std::process::id(),
            time: crate::time::now_secs(),
            what: what.to_string(),
        }
    }

    /// A lock at `place` is stale when its process is gone (same host), when it names this
    /// very process but this process does not hold it (left behind when a connection dropped
    /// before the lock could be removed), or when it is older than `stale_secs`.
    pub fn is_stale(&self, stale_secs: u64, place: &str) -> bool {
        if self.host == crate::sys::hostname() {
            if !crate::sys::pid_alive(self.pid) {
                return true;
            }
            if self.pid == std::process::id() && !holding(place) {
                return true;
            }
        }
        crate::time::now_secs().saturating_sub(self.time) > stale_secs as i64
    }
}

/// Who holds a lock someone else took.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    Known(LockInfo),
    /// The lock file does not parse (yet): one being written just now.
    Unknown,
}

impl Holder {
    /// Held for moments only (an index update, or a lock being written): worth waiting for.
    pub fn is_brief(&self) -> bool {
        match self {
            Holder::Known(h) => h.what == INDEX_UPDATE,
            Holder::Unknown => true,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Known(h) => write!(
                f,
                "{} (pid {} on {}, since {}, {} ago)",
                h.what,
                h.pid,
                h.host,
                crate::time::readable(h.time),
                crate::time::ago(crate::time::now_secs(), h.time)
            ),
            Holder::Unknown => f.write_str("an unknown process"),
        }
    }
}

/// Judges a `.sync.lock` someone else made, found at `place`: `Ok` when it may be broken, else
/// who holds it. It may be broken when its holder is gone (`LockInfo::is_stale`), or when it
/// does not parse (`bytes` unreadable or half-written) and is old: an empty one after 3 s (its
/// creator died between creating and writing it), anything else after 60 s.
pub fn judge(
    bytes: Option<&[u8]>,
    len: u64,
    age: Duration,
    stale_secs: u64,
    place: &str,
) -> Result<(), Holder> {
    let holder: Option<LockInfo> = bytes.and_then(|b| serde_json::from_slice(b).ok());
    let stale = match &holder {
        Some(h) => h.is_stale(stale_secs, place),
        None => {
            let limit = if len == 0 { 3 } else { 60 };
            age > Duration::from_secs(stale_secs.min(limit))
        }
    };
    if stale {
        return Ok(());
    }
    Err(holder.map_or(Holder::Unknown, Holder::Known))
}

/// How many rounds a take makes: a lock released between our create and our look (a
/// daemon's index update takes moments) is simply tried again.
pub const ROUNDS: usize = 5;

/// What one round of taking `.sync.lock` met.
#[derive(Debug, Clone, Copy)]
pub enum Met<'a> {
    /// Our exclusive create made it; `written`: our record went into it.
    Made { written: bool },
    /// A lock someone else made: what it holds (`None`: unreadable), its size and its age.
    Theirs {
        bytes: Option<&'a [u8]>,
        len: u64,
        age: Duration,
    },
    /// The create failed, yet nothing is there: released meanwhile, or the folder refuses us
    /// (the next round tells which).
    Gone,
}

/// What to do after a round.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Hold,
    /// Ours but without our record: remove it (nobody else can hold it) and fail.
    Undo,
    /// Theirs and stale: remove it and try again.
    Break,
    Retry,
    /// Theirs and live: give up, naming who holds it.
    Refuse(Holder),
}

/// The decision of one round of taking the lock at `place` (see `judge` for when another's
/// may be broken; one being written just now never is).
pub fn attempt(met: Met<'_>, stale_secs: u64, place: &str) -> Next {
    match met {
        Met::Made { written: true } => Next::Hold,
        Met::Made { written: false } => Next::Undo,
        Met::Gone => Next::Retry,
        Met::Theirs { bytes, len, age } => match judge(bytes, len, age, stale_secs, place) {
            Ok(()) => Next::Break,
            Err(holder) => Next::Refuse(holder),
        },
    }
}

/// Locks this process holds now, by place (`/root/.sync.lock`, `user@host:port:/p/.sync.lock`).
static HELD: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn holding(place: &str) -> bool {
    HELD.lock()
        .map(|h| h.iter().any(|p| p == place))
        .unwrap_or(true)
}

/// Records that this process took (`true`) or gave up (`false`) the lock at `place`.
pub fn note_held(place: &str, held: bool) {
    if let Ok(mut h) = HELD.lock() {
        if held {
            h.push(place.to_string());
        } else if let Some(i) = h.iter().position(|p| p == place) {
            h.swap_remove(i);
        }
    }
}

/// Why a local lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("held by {0}")]
    Held(Holder),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `.sync.lock` as this process took it: the folder it was made in and what was written, so
/// it is released in the same folder (wherever that was renamed to) and only if still ours.
pub struct Held {
    dir: Folder,
    body: Vec<u8>,
    place: String,
}

/// This root's lock, as the record of held locks names it.
pub fn place(root: &Root) -> String {
    root.path().join(LOCK_FILE).to_string_lossy().into_owned()
}

fn read_at(dir: &Folder, name: &str) -> std::io::Result<Vec<u8>> {
    let mut f = open_read_at(dir, name).map_err(RootError::into_io)?;
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut buf)?;
    Ok(buf)
}

/// Takes `.sync.lock` by exclusive create, breaking a stale one.
pub fn take(root: &Root, info: &LockInfo, stale_secs: u64) -> Result<Held, LockError> {
    let body = serde_json::to_vec(info).unwrap_or_default();
    let dir = root
        .dir(&RelPath::root(), false)
        .map_err(RootError::into_io)?;
    let place = place(root);
    for _ in 0..ROUNDS {
        let read: Option<Vec<u8>>;
        let mut failed = None;
        let met = match Root::create_in(&dir, LOCK_FILE) {
            Ok(mut f) => {
                failed = f.write_all(&body).and_then(|_| f.sync_all()).err();
                Met::Made {
                    written: failed.is_none(),
                }
            }
            Err(e) if e.errno() == Some(libc::EEXIST) => match read_at(&dir, LOCK_FILE) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Met::Gone,
                r => {
                    read = r.ok();
                    // Size and age only matter for a lock that does not parse; one we cannot
                    // stat is judged young.
                    let (len, age) = stat_at(&dir, LOCK_FILE)
                        .map(|st| (st.size, age_of(st.mtime.secs)))
                        .unwrap_or((1, Duration::ZERO));
                    Met::Theirs {
                        bytes: read.as_deref(),
                        len,
                        age,
                    }
                }
            },
            Err(e) => return Err(e.into_io().into()),
        };
        match attempt(met, stale_secs, &place) {
            Next::Hold => {
                note_held(&place, true);
                return Ok(Held { dir, body, place });
            }
            Next::Undo => {
                let _ = remove_at(&dir, LOCK_FILE);
                return Err(failed
                    .unwrap_or_else(|| std::io::Error::other("not written"))
                    .into());
            }
            Next::Break => {
                tracing::warn!(lock = %place, "breaking a stale lock");
                let _ = remove_at(&dir, LOCK_FILE);
            }
            Next::Retry => {}
            Next::Refuse(holder) => return Err(LockError::Held(holder)),
        }
    }
    Err(LockError::Held(Holder::Unknown))
}

fn age_of(mtime: i64) -> Duration {
    Duration::from_secs(crate::time::now_secs().saturating_sub(mtime).max(0) as u64)
}

impl Held {
    /// Releases the lock. A lock file that is no longer ours (broken as stale and retaken by
    /// someone else) is left alone.
    pub fn release(self) -> std::io::Result<()> {
        note_held(&self.place, false);
        match read_at(&self.dir, LOCK_FILE) {
            Ok(b) if b == self.body => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        match remove_at(&self.dir, LOCK_FILE) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_io()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_is_judged_the_same_way_on_every_transport() {
        let place = "/nowhere/.sync.lock";
        let young = Duration::from_secs(1);
        let old = Duration::from_secs(120);
        assert_eq!(attempt(Met::Made { written: true }, 300, place), Next::Hold);
        assert_eq!(
            attempt(Met::Made { written: false }, 300, place),
            Next::Undo
        );
        assert_eq!(attempt(Met::Gone, 300, place), Next::Retry);
        // Being written just now (empty or half-written, young): never broken.
        for bytes in [Some(&b""[..]), Some(&b"{\"host\""[..]), None] {
            let len = bytes.map_or(1, |b| b.len() as u64);
            let met = Met::Theirs {
                bytes,
                len,
                age: young,
            };
            assert_eq!(attempt(met, 300, place), Next::Refuse(Holder::Unknown));
            let met = Met::Theirs {
                bytes,
                len,
                age: old,
            };
            assert_eq!(attempt(met, 300, place), Next::Break);
        }
        // A live holder elsewhere is refused; its lock goes stale with age only.
        let mut other = LockInfo::here("filesync sync");
        other.host = "elsewhere".into();
        let body = serde_json::to_vec(&other).unwrap();
        let met = Met::Theirs {
            bytes: Some(&body),
            len: body.len() as u64,
            age: old,
        };
        assert_eq!(
            attempt(met, 300, place),
            Next::Refuse(Holder::Known(other.clone()))
        );
        other.time -= 301;
        let body = serde_json::to_vec(&other).unwrap();
        let met = Met::Theirs {
            bytes: Some(&body),
            len: body.len() as u64,
            age: old,
        };
        assert_eq!(attempt(met, 300, place), Next::Break);
    }
}
