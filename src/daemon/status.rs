//! `filesync status` ↔ daemon: a unix socket in a runtime folder, named by a hash of the root;
//! a client connects and reads one JSON report. No requests, so nothing to parse on our side.

use super::schedule::{PeerState, PeerStates};
use crate::watch::{IndexState, PendingProbe};
#[cfg(unix)]
use std::io::Read;
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(unix)]
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// What a running daemon knows, as `filesync status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub pid: u32,
    pub root: String,
    pub index: IndexState,
    pub peers: Vec<PeerState>,
    pub last_error: Option<String>,
}

impl Report {
    pub fn build(
        root: &Path,
        index: &Mutex<IndexState>,
        pending: &PendingProbe,
        peers: &PeerStates,
        last_error: &Arc<Mutex<Option<String>>>,
    ) -> Report {
        let mut index = super::lock(index).clone();
        (index.pending, index.full_rescan_pending) = pending.pending();
        index.writing = pending.writing();
        Report {
            pid: std::process::id(),
            root: root.display().to_string(),
            index,
            peers: super::lock(peers).values().cloned().collect(),
            last_error: super::lock(last_error).clone(),
        }
    }

    /// The report for a person.
    pub fn render(&self) -> String {
        let i = &self.index;
        let now = crate::time::now_secs();
        let mut s = format!(
            "replica {} at {} (daemon pid {})\n",
            i.replica, self.root, self.pid
        );
        s.push_str(&format!(
            "indexed: {} files, {} folders, {} ({} deletions remembered)\n",
            i.files,
            i.dirs,
            crate::sync::human_bytes(i.bytes),
            i.deletions
        ));
        s.push_str(&format!(
            "pending changes: {}{}\n",
            i.pending,
            if i.full_rescan_pending {
                " (full rescan queued)"
            } else {
                ""
            }
        ));
        if i.writing > 0 {
            s.push_str(&format!(
                "being written by SFTP clients: {} (offered once closed)\n",
                i.writing
            ));
        }
        if i.degraded {
            s.push_str("watching: polling with full rescans (inotify watch limit reached)\n");
        }
        if self.peers.is_empty() {
            s.push_str("scheduled peers: none\n");
        } else {
            s.push_str("scheduled peers:\n");
            for p in &self.peers {
                let last = match p.last_sync {
                    Some(t) => format!(
                        "last sync {} ({} ago)",
                        crate::time::readable(t),
                        super::ago(now, t)
                    ),
                    None => "not synced yet".into(),
                };
                let state = match p.online {
                    Some(true) => "online",
                    Some(false) => "OFFLINE",
                    None => "unknown",
                };
                let next = match (p.running, p.next_run) {
                    (true, _) => "syncing now".to_string(),
                    (false, Some(t)) if t > now => format!(
                        "next in {}",
                        humantime::format_duration(Duration::from_secs((t - now) as u64))
                    ),
                    (false, Some(_)) => "next now".to_string(),
                    (false, None) => "no next run".to_string(),
                };
                s.push_str(&format!(
                    "  {} every {}: {state}, {last}, {next}",
                    p.name, p.every
                ));
                if let Some(r) = &p.last_result {
                    s.push_str(&format!("; {r}"));
                }
                s.push('\n');
                if let Some(e) = &p.last_error {
                    s.push_str(&format!("    last error: {e}\n"));
                }
            }
        }
        match self.last_error.as_ref().or(i.last_error.as_ref()) {
            Some(e) => s.push_str(&format!("last error: {e}\n")),
            None => s.push_str("last error: none\n"),
        }
        s
    }
}

/// The socket's file name for a root: stable, short enough for `sun_path`.
#[cfg(unix)]
fn socket_name(root: &Path) -> String {
    let h = blake3::hash(root.as_os_str().as_encoded_bytes());
    format!("{}.sock", &h.to_hex()[..16])
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no usable runtime folder for the status socket (tried {0})")]
    NoDir(String),
    #[error("another daemon already serves {0}")]
    Running(String),
    /// Windows has no status socket: `filesync status` reads the folder itself.
    #[error("no status socket on Windows")]
    Unsupported,
}

#[cfg(windows)]
pub fn serve(
    _root: &Path,
    _report: impl Fn() -> Report + Send + 'static,
    _shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, StatusError> {
    Err(StatusError::Unsupported)
}

/// No daemon answers on Windows: `None`, and the caller reads the folder itself.
#[cfg(windows)]
pub fn query(_root: &Path) -> Option<Report> {
    None
}

/// Binds the status socket and answers every connection with a fresh report until shutdown.
#[cfg(unix)]
pub fn serve(
    root: &Path,
    report: impl Fn() -> Report + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, StatusError> {
    let name = socket_name(root);
    let mut tried = Vec::new();
    let mut bound = None;
    for dir in super::socket_dirs() {
        let path = dir.join(&name);
        tried.push(dir.display().to_string());
        if std::fs::create_dir_all(&dir).is_err() {
            continue;
        }
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(StatusError::Running(root.display().to_string()));
        }
        // A socket file nobody answers is left over from a killed daemon.
        let _ = std::fs::remove_file(&path);
        if let Ok(l) = tokio::net::UnixListener::bind(&path) {
            bound = Some((l, path));
            break;
        }
    }
    let Some((listener, path)) = bound else {
        return Err(StatusError::NoDir(tried.join(", ")));
    };
    tracing::debug!(socket = %path.display(), "status socket");
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = crate::shutdown::raised(&mut shutdown) => break,
                res = listener.accept() => match res {
                    Ok((mut conn, _)) => {
                        let body = serde_json::to_vec(&report()).unwrap_or_default();
                        // A client that does not read must not stall the daemon.
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            let _ = conn.write_all(&body).await;
                            let _ = conn.shutdown().await;
                        })
                        .await;
                    }
                    Err(e) => {
                        tracing::debug!("status socket accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

/// Asks a running daemon for its report; `None` when no daemon serves `root`.
#[cfg(unix)]
pub fn query(root: &Path) -> Option<Report> {
    let name = socket_name(root);
    for dir in super::socket_dirs() {
        let path: PathBuf = dir.join(&name);
        let Ok(mut conn) = std::os::unix::net::UnixStream::connect(&path) else {
            continue;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(3)));
        let mut buf = Vec::new();
        if conn.read_to_end(&mut buf).is_err() {
            continue;
        }
        match serde_json::from_slice(&buf) {
            Ok(r) => return Some(r),
            Err(e) => tracing::warn!(socket = %path.display(), "unreadable daemon status: {e}"),
        }
    }
    None
}
