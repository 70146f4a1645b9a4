//! The hub's control socket: `filesync pair --new` and `filesync devices …` ask the running
//! server for a pairing code, the devices, a phone's password, a revocation. One JSON request
//! per connection, one JSON answer. Only root and the daemon's own user are answered (the
//! socket is theirs alone too: the unit's umask makes it 0600).

use crate::pair::code::Terms;
use crate::server::Control;
use crate::server::control::{NewCode, PhoneLogin};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    NewCode { terms: Terms },
    Devices,
    AddPhone { name: String },
    Revoke { name: String },
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

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "no running filesync daemon serves {0} (start it: `sudo systemctl start filesync`, or `filesync daemon`); run this on the hub, with sudo if the service runs it"
    )]
    NotRunning(String),
    #[error("the daemon's control socket {path} refused this user: run it with sudo")]
    Denied { path: String },
    #[error(
        "the control socket {path} belongs to user id {uid}, not root nor the filesync service; not trusting it (remove it, and start the service)"
    )]
    Untrusted { path: String, uid: u32 },
    #[error("the daemon did not answer on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

fn socket_name(root: &Path) -> String {
    let h = blake3::hash(root.as_os_str().as_encoded_bytes());
    format!("{}.ctl", &h.to_hex()[..16])
}

/// Binds the control socket beside the status socket and answers until shutdown.
pub fn serve(
    root: &Path,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let name = socket_name(root);
    let (listener, path) = super::socket_dirs().into_iter().find_map(|dir| {
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(&name);
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
                    Ok((conn, _)) => { tokio::spawn(answer(conn, control.clone())); }
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

async fn answer(mut conn: tokio::net::UnixStream, control: Arc<Control>) {
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
    let response = match (read, serde_json::from_slice::<Request>(&buf)) {
        (Ok(Ok(_)), Ok(req)) => handle(req, &control).await,
        _ => Response::Error("unreadable request".into()),
    };
    let body = serde_json::to_vec(&response).unwrap_or_default();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = conn.write_all(&body).await;
        let _ = conn.shutdown().await;
    })
    .await;
}

async fn handle(req: Request, control: &Arc<Control>) -> Response {
    match req {
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

/// The user id of the process at the other end of `conn`.
fn peer_uid(conn: &std::os::unix::net::UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: both out-pointers are valid.
        if unsafe { libc::getpeereid(conn.as_raw_fd(), &mut uid, &mut gid) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// Root, this user, or the service's user (`filesync`).
fn trusted_uid(uid: u32) -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    if uid == 0 || uid == unsafe { libc::getuid() } {
        return true;
    }
    // SAFETY: the name is NUL-terminated; the entry is read at once, before any other
    // passwd call of this (single-threaded at this point) command.
    let pw = unsafe { libc::getpwnam(c"filesync".as_ptr()) };
    // SAFETY: a non-null entry is valid until the next passwd call.
    !pw.is_null() && unsafe { (*pw).pw_uid } == uid
}

/// Sends `req` to the daemon serving `root` and returns its answer.
pub fn ask(root: &Path, req: &Request) -> Result<Response, ControlError> {
    let name = socket_name(root);
    let paths: Vec<PathBuf> = super::socket_dirs()
        .into_iter()
        .map(|d| d.join(&name))
        .collect();
    let mut denied = None;
    for path in paths {
        let mut conn = match std::os::unix::net::UnixStream::connect(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                denied = Some(path);
                continue;
            }
            Err(_) => continue,
        };
        let shown = path.display().to_string();
        let io = |source| ControlError::Io {
            path: shown.clone(),
            source,
        };
        // What it answers is trusted (a pairing code it made): only the service's own.
        let uid = peer_uid(&conn).map_err(io)?;
        if !trusted_uid(uid) {
            return Err(ControlError::Untrusted { path: shown, uid });
        }
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let body = serde_json::to_vec(req).map_err(|e| io(std::io::Error::other(e)))?;
        conn.write_all(&body).map_err(io)?;
        conn.shutdown(std::net::Shutdown::Write).map_err(io)?;
        let mut out = Vec::new();
        conn.read_to_end(&mut out).map_err(io)?;
        if out.is_empty() {
            return Err(ControlError::Denied { path: shown });
        }
        return match serde_json::from_slice(&out) {
            Ok(Response::Error(e)) => Err(ControlError::Refused(e)),
            Ok(r) => Ok(r),
            Err(e) => Err(io(std::io::Error::other(e))),
        };
    }
    match denied {
        Some(p) => Err(ControlError::Denied {
            path: p.display().to_string(),
        }),
        None => Err(ControlError::NotRunning(root.display().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_this_user_or_the_service_is_trusted_to_answer() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: getuid has no preconditions and cannot fail.
        let me = unsafe { libc::getuid() };
        assert_eq!(peer_uid(&a).unwrap(), me);
        assert!(trusted_uid(0));
        assert!(trusted_uid(me));
        // An id no account here has (the test machine has no `filesync` user at that id).
        assert!(!trusted_uid(4_000_000_000));
    }

    #[test]
    fn root_never_looks_for_its_socket_in_tmp() {
        // SAFETY: getuid has no preconditions and cannot fail.
        let root = unsafe { libc::getuid() } == 0;
        let in_tmp = crate::daemon::socket_dirs()
            .iter()
            .any(|d| d.starts_with(std::env::temp_dir()));
        assert!(!(root && in_tmp));
    }
}
