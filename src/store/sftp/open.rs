//! Opening a remote replica: the SSH connection, its SFTP channels, what the server can do,
//! and the synced folder checked to be one.

use super::wire::to_io;
use super::{
    CHANNELS, PLAIN_CHANNELS, REQUEST_TIMEOUT_SECS, Sftp, SftpStore, State, connect, made,
};
use crate::config::Config;
use crate::endpoint::Remote;
use crate::proto::ext;
use crate::replica::layout::INDEX_FILE;
use crate::store::StoreError;
use russh_sftp::client::RawSftpSession;
use std::sync::{Arc, Mutex};

/// Connects to a remote replica (host key checked against known_hosts): the SSH connection,
/// the first SFTP channel and what the server can do, the synced folder checked, and more
/// channels beside the first.
pub async fn open(r: &Remote, cfg: &Config, accept_new: bool) -> Result<SftpStore, StoreError> {
    let ssh = connect::connect(r, accept_new).await?;
    let port = r.port.unwrap_or(22);
    let host = if r.host.contains(':') {
        format!("{}@[{}]:{port}", connect::user_of(r), r.host)
    } else {
        format!("{}@{}:{port}", connect::user_of(r), r.host)
    };
    let sftp_cfg = russh_sftp::client::Config {
        max_packet_len: 4 << 20,
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Default::default()
    };
    let (raw, version) = first_session(&ssh, &host, &sftp_cfg).await?;
    let ext = |n: &str| version.extensions.contains_key(n);
    let (read_len, write_len) = io_lengths(&raw, ext(ext::LIMITS)).await;
    let root = synced_folder(&raw, &host, r, ext(ext::INDEX_REFRESH)).await?;
    let batch = ext(ext::WRITE_FILES_WITH_MODE) && ext(ext::INSTALL_FILES) && ext(ext::READ_FILES);
    let channels = if batch { CHANNELS } else { PLAIN_CHANNELS };
    let mut sessions = vec![Arc::new(raw)];
    sessions.extend(more_sessions(&ssh, &host, &sftp_cfg, channels - 1).await);
    let writing = sessions
        .iter()
        .map(|_| {
            Arc::new(tokio::sync::Semaphore::new(
                super::session::OPEN_FOR_WRITING,
            ))
        })
        .collect();
    let s = Sftp {
        sessions,
        writing,
        ssh: Arc::new(ssh),
        next: std::sync::atomic::AtomicUsize::new(0),
        host,
        root,
        posix_rename: ext(ext::POSIX_RENAME),
        hardlink: ext(ext::HARDLINK),
        fsync: ext(ext::FSYNC),
        index_refresh: ext(ext::INDEX_REFRESH),
        refresh_token: (version.extensions.get(ext::INDEX_REFRESH))
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v >= 3),
        copy_data: std::sync::atomic::AtomicBool::new(ext(ext::COPY_DATA)),
        blake3: ext(ext::BLAKE3),
        batch,
        read_len,
        write_len,
        made: made::Made::default(),
    };
    tracing::debug!(
        root = %s.root, read_len, write_len, posix_rename = s.posix_rename,
        index_refresh = s.index_refresh, copy_data = ext(ext::COPY_DATA), channels = s.sessions.len(), "SFTP session open"
    );
    Ok(SftpStore {
        s: Arc::new(s),
        describe: r.describe(),
        lock_stale_secs: cfg.lock_stale_secs,
        st: Box::new(State {
            loaded: Mutex::new(None),
            staged: Mutex::new(None),
            locked: std::sync::atomic::AtomicBool::new(false),
            links: Mutex::new(Default::default()),
            refreshed: Mutex::new(None),
        }),
    })
}

/// The first SFTP channel, started: the server's version and extensions.
async fn first_session(
    ssh: &connect::Handle,
    host: &str,
    cfg: &russh_sftp::client::Config,
) -> Result<(RawSftpSession, russh_sftp::protocol::Version), StoreError> {
    let fail = |what: &str, e: russh::Error| StoreError::Ssh {
        what: format!("{what} on {host}"),
        source: Box::new(e),
    };
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| fail("cannot open an SSH session", e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| fail("the SFTP subsystem is not available", e))?;
    let raw = RawSftpSession::new_with_config(channel.into_stream(), cfg.clone());
    let version = raw.init().await.map_err(|e| StoreError::Io {
        what: format!("the SFTP server on {host} did not start"),
        source: to_io(e),
    })?;
    Ok((raw, version))
}

/// The READ and WRITE lengths to use: what the server's `limits@openssh.com` allows (within
/// bounds), else 64 KiB, which every server accepts in practice.
async fn io_lengths(raw: &RawSftpSession, has_limits: bool) -> (u32, u32) {
    if !has_limits {
        return (64 * 1024, 64 * 1024);
    }
    let (mut read_len, mut write_len) = (32 * 1024u32, 32 * 1024u32);
    if let Ok(l) = raw.limits().await {
        let cap = |v: u64| -> u32 { v.clamp(32 * 1024, 256 * 1024) as u32 };
        if l.max_read_len > 0 {
            read_len = cap(l.max_read_len);
        }
        if l.max_write_len > 0 {
            write_len = cap(l.max_write_len);
        }
    }
    (read_len, write_len)
}

/// The absolute path of the synced folder, checked to be one. A plain server's `/` is its
/// whole file system, and an empty path its login folder: a slip of the target (`host:` for
/// `host:Sync`) that would index and fill either. Taken only when a replica is already there
/// (the login folder also when its path is given). Our server's `/` is its synced root.
async fn synced_folder(
    raw: &RawSftpSession,
    host: &str,
    r: &Remote,
    ours: bool,
) -> Result<String, StoreError> {
    let wanted = if r.path.is_empty() { "." } else { &r.path };
    let resolved = raw.realpath(wanted).await.map_err(|e| {
        StoreError::io(
            format!("cannot open the synced folder {host}:{wanted}"),
            to_io(e),
        )
    })?;
    let root = resolved
        .files
        .into_iter()
        .next()
        .map(|f| f.filename)
        .ok_or_else(|| StoreError::Unresolved {
            host: host.to_string(),
            path: wanted.to_string(),
        })?;
    let root = if root.len() > 1 {
        root.trim_end_matches('/').to_string()
    } else {
        root
    };
    match raw.stat(root.as_str()).await {
        Ok(a) if a.attrs.file_type().is_dir() => {}
        Ok(_) => {
            return Err(StoreError::NotAFolder {
                place: format!("{host}:{root}"),
                remote: true,
            });
        }
        Err(e) => {
            return Err(StoreError::io(
                format!("cannot open the synced folder {host}:{root} (create it first)"),
                to_io(e),
            ));
        }
    }
    let implicit = r.path.is_empty() || root == "/";
    if implicit && !ours {
        let index = format!("{}/{INDEX_FILE}", if root == "/" { "" } else { &root });
        if !matches!(raw.lstat(index.as_str()).await, Ok(a) if a.attrs.file_type().is_file()) {
            let host = host.to_string();
            return Err(if root == "/" {
                StoreError::WholeFileSystem { host }
            } else {
                StoreError::LoginFolder { host, root }
            });
        }
    }
    Ok(root)
}

/// Up to `n` more SFTP channels on the connection; a server that allows fewer gets fewer.
async fn more_sessions(
    ssh: &connect::Handle,
    host: &str,
    cfg: &russh_sftp::client::Config,
    n: usize,
) -> Vec<Arc<RawSftpSession>> {
    let one = || async {
        let channel = ssh.channel_open_session().await.ok()?;
        channel.request_subsystem(true, "sftp").await.ok()?;
        let raw = RawSftpSession::new_with_config(channel.into_stream(), cfg.clone());
        raw.init().await.ok()?;
        Some(Arc::new(raw))
    };
    let got: Vec<_> = futures::future::join_all((0..n).map(|_| one()))
        .await
        .into_iter()
        .flatten()
        .collect();
    if got.len() < n {
        tracing::debug!(
            host,
            opened = got.len(),
            wanted = n,
            "fewer extra SFTP channels"
        );
    }
    got
}
