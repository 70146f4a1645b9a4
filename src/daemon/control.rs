//! The daemon's control socket: `filesync pair --new` and `filesync devices …` ask a hub's
//! server for a pairing code, the devices, a phone's password, a revocation; a sync on this
//! machine asks any daemon to vouch for its folder's index (`store::local::vouch`). One JSON
//! request per connection, one JSON answer. Only root and the daemon's own user are answered
//! (the socket is theirs alone too: it is made 0600).

use crate::pair::code::Terms;
use crate::server::Control;
use crate::server::control::{NewCode, PhoneLogin};
use crate::store::local::vouch;
use crate::sys::socket;
pub use crate::sys::socket::ControlError;
use crate::watch::FreshnessProbe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    NewCode {
        terms: Terms,
    },
    Devices,
    AddPhone {
        name: String,
    },
    Revoke {
        name: String,
    },
    /// Bring the index up to date and say its state (`store::local::vouch`).
    Refresh,
}

/// A device as `filesync devices` shows it (no key or hash).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeviceView {
    pub name: String,
    pub kind: String,
    pub added: i64,
    pub last_seen: Option<i64>,
    pub from: Option<String>,
    pub pull: Option<String>,
    pub online: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Code(NewCode),
    Devices(Vec<DeviceView>),
    Phone(PhoneLogin),
    Revoked {
        sessions: usize,
        /// Of `sessions`, those still closing when the hub stopped waiting.
        #[serde(default)]
        closing: usize,
    },
    Error(String),
}

/// What the socket answers for: the folder (every daemon) and the hub's pairing and devices
/// (a daemon that serves SFTP).
#[derive(Clone)]
pub struct Answering {
    pub root: PathBuf,
    /// The watcher's probe; `None` (`filesync serve`): a sync here scans for itself.
    pub freshness: Option<FreshnessProbe>,
    pub control: Option<Arc<Control>>,
}

/// Binds the control socket beside the status socket and answers until shutdown.
pub fn serve(
    root: &Path,
    answering: Answering,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let name = socket::control_name(root);
    let (listener, path) = socket::dirs().into_iter().find_map(|dir| {
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(&name);
        // Another of our processes on this folder (`filesync serve` beside a daemon) keeps
        // its socket; one nobody answers is left over from a killed process.
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            tracing::warn!(socket = %path.display(), "another filesync process answers on this folder's control socket; leaving it to that one");
            return None;
        }
        let _ = std::fs::remove_file(&path);
        let l = tokio::net::UnixListener::bind(&path).ok()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).ok()?;
        Some((l, path))
    })?;
    tracing::debug!(socket = %path.display(), "control socket");
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = crate::shutdown::raised(&mut shutdown) => break,
                res = listener.accept() => match res {
                    Ok((conn, _)) => { tokio::spawn(answer(conn, answering.clone())); }
                    Err(e) => {
                        tracing::debug!("control socket accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

fn allowed(conn: &tokio::net::UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    conn.peer_cred()
        .is_ok_and(|c| c.uid() == 0 || c.uid() == me)
}

async fn answer(mut conn: tokio::net::UnixStream, answering: Answering) {
    if !allowed(&conn) {
        let _ = conn.shutdown().await;
        return;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        (&mut conn).take(64 * 1024).read_to_end(&mut buf),
    )
    .await;
    let body = match (read, serde_json::from_slice::<Request>(&buf)) {
        (Ok(Ok(_)), Ok(Request::Refresh)) => serde_json::to_vec(&refresh(&answering).await),
        (Ok(Ok(_)), Ok(req)) => match &answering.control {
            Some(control) => serde_json::to_vec(&handle(req, control).await),
            None => serde_json::to_vec(&Response::Error(
                "this daemon serves no SFTP (no [server] in its config): nothing to pair or list"
                    .into(),
            )),
        },
        _ => serde_json::to_vec(&Response::Error("unreadable request".into())),
    }
    .unwrap_or_default();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = conn.write_all(&body).await;
        let _ = conn.shutdown().await;
    })
    .await;
}

/// The folder's index brought up to date as for a client of the SFTP server, and its state.
async fn refresh(a: &Answering) -> vouch::Reply {
    let root = a.root.clone();
    let Some(probe) = a.freshness.clone() else {
        return vouch::Reply::Error("no watcher here to vouch for the index".into());
    };
    let done = tokio::task::spawn_blocking(move || {
        crate::watch::refresh_for_client(&root, Some(&probe), true, true)
    })
    .await;
    match done {
        Ok(Ok((stats, token))) => vouch::Reply::Refreshed(vouch::Answer::of(&stats, token)),
        Ok(Err(e)) => vouch::Reply::Error(crate::store::Chain(&e).to_string()),
        Err(e) => vouch::Reply::Error(e.to_string()),
    }
}

async fn handle(req: Request, control: &Arc<Control>) -> Response {
    match req {
        Request::Refresh => Response::Error("a refresh is answered apart".into()),
        Request::NewCode { terms } => Response::Code(control.new_code(terms)),
        Request::Devices => {
            let online: Vec<String> = control
                .online
                .lock()
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            Response::Devices(
                control
                    .devices()
                    .into_iter()
                    .map(|d| DeviceView {
                        kind: d.kind().to_string(),
                        online: online.contains(&d.name),
                        pull: d
                            .pull
                            .as_ref()
                            .map(|p| format!("{} every {}", p.url, p.every)),
                        name: d.name,
                        added: d.added,
                        last_seen: d.last_seen,
                        from: d.from,
                    })
                    .collect(),
            )
        }
        Request::AddPhone { name } => {
            let c = control.clone();
            // argon2 is deliberately slow: off the async workers.
            match tokio::task::spawn_blocking(move || c.add_phone(&name)).await {
                Ok(Ok(p)) => Response::Phone(p),
                Ok(Err(e)) => Response::Error(e.to_string()),
                Err(e) => Response::Error(e.to_string()),
            }
        }
        Request::Revoke { name } => match control.revoke(&name).await {
            Ok(Some(e)) => Response::Revoked {
                sessions: e.sessions,
                closing: e.closing,
            },
            Ok(None) => Response::Error(format!(
                "no device named {name:?}; `filesync devices` lists them"
            )),
            Err(e) => Response::Error(e.to_string()),
        },
    }
}

/// Sends `req` to the daemon serving `root` and returns its answer.
pub fn ask(root: &Path, req: &Request) -> Result<Response, ControlError> {
    let body = serde_json::to_vec(req).map_err(|e| ControlError::Io {
        path: root.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let (out, shown) = socket::ask(root, &body, Duration::from_secs(30))?;
    match serde_json::from_slice(&out) {
        Ok(Response::Error(e)) => Err(ControlError::Refused(e)),
        Ok(r) => Ok(r),
        Err(e) => Err(ControlError::Io {
            path: shown,
            source: std::io::Error::other(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store asks with its own bytes (it cannot see this enum): they must be this request.
    #[test]
    fn the_stores_refresh_request_is_ours() {
        assert_eq!(
            serde_json::to_vec(&Request::Refresh).unwrap(),
            vouch::REQUEST
        );
        assert!(matches!(
            serde_json::from_slice::<Request>(vouch::REQUEST).unwrap(),
            Request::Refresh
        ));
    }
}
