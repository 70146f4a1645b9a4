//! `StoreError`: why a store step did not happen, with a variant for each thing a caller acts
//! on (a lock to wait for, a path that moved since the scan, a link in the way, a lost
//! connection, a bad index, a full disk, a host key or login refused, a target that is not a
//! folder) and the I/O or SSH cause kept as the source, out of the variant's own message.

use crate::index::FormatError;
use crate::relpath::RelPath;
use crate::replica::lock::Holder;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system or SFTP step failed; `what` says which, on what.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The disk on that side is full.
    #[error("{what}")]
    NoSpace {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection to a remote store is gone: every further step would fail the same way.
    #[error("{host}: connection lost")]
    ConnectionLost { host: String },
    #[error(
        "{place} is locked by {holder}; another sync is running (if not, remove {place} or wait {stale_secs}s for it to go stale)"
    )]
    Locked {
        place: String,
        holder: Holder,
        stale_secs: u64,
    },
    /// `fix` says what to run, and where: a remote index cannot be rebuilt from here.
    #[error("the index {path} is corrupt ({source}); nothing was changed. {fix}")]
    CorruptIndex {
        path: String,
        #[source]
        source: FormatError,
        fix: String,
    },
    #[error("the index {path} was {source}; nothing was changed. Upgrade filesync on this machine")]
    NewerIndex {
        path: String,
        #[source]
        source: FormatError,
    },
    /// The source's bytes are not what the index said (it is being written, or it grew).
    #[error("{path} changed while it was being copied; it will be synced next time")]
    SourceChanged { path: RelPath },
    /// A delta transfer could not build the file from its old version (it changed, or the
    /// server cannot copy ranges): nothing was written, and the whole file goes instead.
    #[error("{path} could not be built from its old version {place} ({why})")]
    NoDelta {
        path: RelPath,
        place: String,
        why: String,
    },
    /// The index files changed since this process read them (another writer got there
    /// first): nothing was written over them; a caller that can reads them again and
    /// re-applies its change.
    #[error(
        "{path} was changed by another writer meanwhile; nothing was written over it, try again"
    )]
    IndexMoved { path: String },
    /// Something stands at a path the scan saw empty (never replaced).
    #[error("{path} appeared {place} since it was scanned; it will be synced next time")]
    Appeared { path: RelPath, place: String },
    /// Another program holds the file open and lets no one else in (a Windows sharing
    /// violation): it is changing, and the next sync tries again.
    #[error("{what}: another program has it open; it will be synced next time")]
    Busy { what: String },
    /// What stands at a path is not what the scan saw.
    #[error("{path} changed {place} since it was scanned; it will be synced next time")]
    Changed { path: RelPath, place: String },
    /// What the scan saw at a path is gone (removed or renamed since).
    #[error("{path} is gone {place} since it was scanned; it will be synced next time")]
    Vanished { path: RelPath, place: String },
    /// A symlink in the way of a write: refused, never written through.
    #[error(
        "{link} {place} is a symbolic link; filesync never writes through links: make it a real folder{}",
        if crate::replica::layout::is_internal(link) { "" } else { ", or add it to .syncignore" }
    )]
    ThroughLink { link: RelPath, place: String },
    /// A file where a folder should be.
    #[error("cannot use folder {path} {place}: a file is in the way")]
    InTheWay { path: RelPath, place: String },
    /// The synced folder is a file (or something else): `place` names it as the user wrote it.
    #[error("{place} is not a folder; point {} at a folder", if *.remote { "the target" } else { "`root` (or the sync target)" })]
    NotAFolder { place: String, remote: bool },
    /// The synced folder could not be walked at all.
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// A remote synced folder whose listing failed.
    #[error("cannot list the synced folder {place}; check that it exists and is readable")]
    Unlistable { place: String },
    /// Two folders with one replica id (one was copied with its `.sync`): their histories
    /// would merge.
    #[error(
        "{left} and {right} have the same replica id {replica} (one folder was copied with its .sync); \
         delete .sync in the copy and run `filesync index` there"
    )]
    SameReplica {
        left: String,
        right: String,
        replica: crate::index::ReplicaId,
    },
    /// No `known_hosts` to check a host key against.
    #[error(
        "HOME is not set, so ~/.ssh/known_hosts cannot be found; set HOME or configure `known_hosts` for the peer"
    )]
    NoHome,
    /// TCP or the SSH handshake failed: refused, unreachable, no common algorithm, ...
    #[error("cannot connect to {host}")]
    Connect {
        host: String,
        #[source]
        source: Box<russh::Error>,
    },
    /// Nothing came back from the address within the connect timeout.
    #[error("cannot connect to {host}: no answer within {}s", .after.as_secs())]
    ConnectTimeout {
        host: String,
        after: std::time::Duration,
    },
    /// The far end hung up before or during the handshake: not an SSH server on that port,
    /// or one that refuses us (MaxStartups, a firewall that accepts then drops).
    #[error(
        "cannot connect to {host}: the other end closed the connection during the SSH handshake (is an SSH server listening on that port?)"
    )]
    HandshakeClosed { host: String },
    /// The host is not in `known_hosts` and `--accept-new` was not given.
    #[error("{0}")]
    HostKeyUnknown(Box<UnknownHost>),
    /// The host offered a key other than the one `known_hosts` holds: always refused.
    #[error("{0}")]
    HostKeyChanged(Box<HostKeyChange>),
    /// `known_hosts` could not be read, or the new key not added to it; `what` says which.
    #[error("{what}")]
    KnownHosts {
        what: String,
        #[source]
        source: Box<russh::keys::Error>,
    },
    /// An SSH step after the handshake failed (authenticating, opening the SFTP channel).
    #[error("{what}")]
    Ssh {
        what: String,
        #[source]
        source: Box<russh::Error>,
    },
    /// No key logged in: `tried` are the keys offered, `problems` those that could not be used.
    #[error("{}", auth_refused(host, tried, problems))]
    AuthRefused {
        host: String,
        tried: Vec<String>,
        problems: Vec<String>,
    },
    /// The server did not turn the folder asked for into a path.
    #[error("{host}: the server could not resolve {path}")]
    Unresolved { host: String, path: String },
    /// A plain server's `/` without a `.sync`: a slip of the target would sync all of it.
    #[error(
        "{host}:/ is the whole file system there; name the synced folder in the target (sftp://{host}/path/to/folder)"
    )]
    WholeFileSystem { host: String },
    /// No folder named and no `.sync` in the login folder: a slip of the target (`host:`).
    #[error(
        "no folder given for {host}, which would sync the whole login folder {root}; name the synced folder (e.g. {host}{root}/Sync), or {root} itself to mean it"
    )]
    LoginFolder { host: String, root: String },
}

/// A host `known_hosts` has no key for, and the key it offered.
#[derive(Debug)]
pub struct UnknownHost {
    pub host: String,
    pub known_hosts: String,
    pub key_type: String,
    pub fingerprint: String,
}

impl std::fmt::Display for UnknownHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let UnknownHost {
            host,
            known_hosts,
            key_type,
            fingerprint,
        } = self;
        write!(
            f,
            "the host {host} is not in {known_hosts}; its {key_type} key fingerprint is \
             {fingerprint}. If that is right, run again with --accept-new to trust it"
        )
    }
}

/// A host key that differs from the one `known_hosts` holds for the host.
#[derive(Debug)]
pub struct HostKeyChange {
    pub host: String,
    pub known_hosts: String,
    pub line: usize,
    pub key_type: String,
    pub fingerprint: String,
    pub old_type: String,
    pub old_fingerprint: String,
}

impl std::fmt::Display for HostKeyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let HostKeyChange {
            host,
            known_hosts,
            line,
            key_type,
            fingerprint,
            old_type,
            old_fingerprint,
        } = self;
        write!(
            f,
            "WARNING: the host key of {host} has CHANGED (now {key_type} {fingerprint}; \
             {known_hosts} line {line} has {old_type} {old_fingerprint}). Someone may be \
             intercepting the connection, or the server was reinstalled. Nothing was synced. \
             If the change is expected, remove the old key with \
             `ssh-keygen -R '{host}' -f {known_hosts}` and run again with --accept-new"
        )
    }
}

/// Why no key logged in to `host`, and what to do about it.
fn auth_refused(host: &str, tried: &[String], problems: &[String]) -> String {
    if tried.is_empty() && !problems.is_empty() {
        return format!("cannot log in to {host}: {}", problems.join("; "));
    }
    let mut msg = if tried.is_empty() {
        format!(
            "no SSH key to log in to {host}: none in ssh-agent and no ~/.ssh/id_ed25519, \
             id_ecdsa or id_rsa; create one with ssh-keygen and add it to the server's \
             authorized_keys, or set `identity` for the peer"
        )
    } else {
        format!(
            "{host} refused every key (tried {}); add your public key to the server's ~/.ssh/authorized_keys",
            tried.join(", ")
        )
    };
    if !problems.is_empty() {
        msg.push_str(&format!("; also: {}", problems.join("; ")));
    }
    msg
}

impl StoreError {
    /// An I/O failure, sorted: a full disk and a lost connection are their own variants.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let what = what.into();
        match source.kind() {
            K::StorageFull => StoreError::NoSpace { what, source },
            K::ConnectionAborted | K::ConnectionReset | K::BrokenPipe => {
                StoreError::ConnectionLost { host: what }
            }
            _ => StoreError::Io { what, source },
        }
    }

    /// The error for an index that does not parse: damage (with `fix`), or a later version's.
    pub fn bad_index(path: String, e: FormatError, fix: String) -> Self {
        match e {
            FormatError::TooNew(_) => StoreError::NewerIndex { path, source: e },
            FormatError::Bad(_) => StoreError::CorruptIndex {
                path,
                source: e,
                fix,
            },
        }
    }

    /// Someone else changed the path under the sync (written, renamed, removed): nothing to
    /// act on, the next sync picks it up.
    pub fn is_motion(&self) -> bool {
        matches!(
            self,
            StoreError::SourceChanged { .. }
                | StoreError::Appeared { .. }
                | StoreError::Changed { .. }
                | StoreError::Vanished { .. }
                | StoreError::Busy { .. }
        )
    }

    pub fn is_connection_lost(&self) -> bool {
        matches!(self, StoreError::ConnectionLost { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An error and its causes on one line (`cannot read a: permission denied`), each once.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(tried: &[&str], problems: &[&str]) -> String {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        StoreError::AuthRefused {
            host: "me@pi".into(),
            tried: v(tried),
            problems: v(problems),
        }
        .to_string()
    }

    /// A refused login says what was tried, what could not be used, and what to do.
    #[test]
    fn auth_refused_says_what_was_tried() {
        assert_eq!(
            refused(&["agent key ed25519", "/h/.ssh/id_rsa"], &[]),
            "me@pi refused every key (tried agent key ed25519, /h/.ssh/id_rsa); \
             add your public key to the server's ~/.ssh/authorized_keys"
        );
        let both = refused(&["/h/.ssh/id_rsa"], &["cannot read key /k: bad"]);
        assert!(
            both.ends_with("authorized_keys; also: cannot read key /k: bad"),
            "{both}"
        );
        assert_eq!(
            refused(&[], &["identity /k does not exist"]),
            "cannot log in to me@pi: identity /k does not exist"
        );
        assert!(refused(&[], &[]).starts_with("no SSH key to log in to me@pi: none in ssh-agent"));
    }

    /// A variant with a cause shows it once, after its own words.
    #[test]
    fn causes_are_shown_once() {
        let e = StoreError::Connect {
            host: "me@pi".into(),
            source: Box::new(russh::Error::IO(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
        };
        assert_eq!(e.to_string(), "cannot connect to me@pi");
        assert_eq!(
            Chain(&e).to_string(),
            "cannot connect to me@pi: connection refused"
        );
        let bad = crate::index::from_json_slice(b"{bad").expect_err("a parse error");
        let e = StoreError::bad_index("/r/.sync".into(), bad, "Rebuild it.".into());
        let text = Chain(&e).to_string();
        assert!(
            text.starts_with("the index /r/.sync is corrupt ("),
            "{text}"
        );
        assert!(text.ends_with("nothing was changed. Rebuild it."), "{text}");
    }
}
