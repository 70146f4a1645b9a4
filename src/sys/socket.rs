//! The daemon's local sockets as both ends see them: where they are, who may be believed,
//! and one request answered per connection. What is asked is for the caller.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a root's daemon listens: the first usable runtime folder.
pub fn dirs() -> Vec<PathBuf> {
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
    // Anyone may make a folder in /tmp; root always has /run.
    if uid != 0 {
        v.push(std::env::temp_dir().join(format!("filesync-{uid}")));
    }
    v
}

/// The control socket's name for the daemon of `root`.
pub fn control_name(root: &Path) -> String {
    let h = blake3::hash(root.as_os_str().as_encoded_bytes());
    format!("{}.ctl", &h.to_hex()[..16])
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

/// Sends `body` to the daemon serving `root` and returns its answer, with the socket's path
/// (for messages). Only a daemon run by root, this user or the service's user is believed.
pub fn ask(root: &Path, body: &[u8], wait: Duration) -> Result<(Vec<u8>, String), ControlError> {
    let name = control_name(root);
    let paths: Vec<PathBuf> = dirs().into_iter().map(|d| d.join(&name)).collect();
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
        // What it answers is trusted (a pairing code it made, an index it vouches for):
        // only the service's own.
        let uid = peer_uid(&conn).map_err(io)?;
        if !trusted_uid(uid) {
            return Err(ControlError::Untrusted { path: shown, uid });
        }
        let _ = conn.set_read_timeout(Some(wait));
        conn.write_all(body).map_err(io)?;
        conn.shutdown(std::net::Shutdown::Write).map_err(io)?;
        let mut out = Vec::new();
        conn.read_to_end(&mut out).map_err(io)?;
        if out.is_empty() {
            return Err(ControlError::Denied { path: shown });
        }
        return Ok((out, shown));
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
        let in_tmp = dirs().iter().any(|d| d.starts_with(std::env::temp_dir()));
        assert!(!(root && in_tmp));
    }
}
