//! The SFTP server (russh + our own pipelined SFTP loop): setup, the accept loop and shutdown.
//! Every client path is confined to the replica root (see `fs`).

mod auth;
mod batch;
mod connection;
mod fs;
mod sftp;
pub(crate) mod wire;

pub use sftp::INDEX_REFRESH;

use crate::config::{Config, ServerConfig, expand_home};
use crate::watch::FreshnessProbe;
use connection::{Connection, Gate};
use russh::keys::{HashAlg, PrivateKey};
use russh::{MethodKind, MethodSet};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Each variant is one line naming the file or address and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use {path} as the SFTP root: {reason}")]
    Root { path: String, reason: String },
    #[error("host key {path}: {reason}")]
    HostKey { path: String, reason: String },
    #[error("{0}")]
    AuthorizedKeys(String),
    #[error(
        "password_hash in [server] is not an argon2 PHC string ({0}); generate one with `argon2` or remove it"
    )]
    PasswordHash(String),
    #[error(
        "cannot listen on {addr}: {reason}; pick another address with --listen or [server] listen"
    )]
    Bind { addr: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// A server whose keys are loaded and whose listener is bound (so READY may be sent).
pub struct BoundServer {
    addr: SocketAddr,
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    gate: Arc<Gate>,
    shared: sftp::Shared,
    max_clients: usize,
}

/// Where the host key lives when `[server] host_key` is unset: systemd's state folder, else
/// the user's XDG state folder (never inside the synced folder, which is shared).
pub fn default_host_key_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd may pass several folders separated by `:`; the first is ours.
        let first = dir.to_string_lossy().split(':').next().map(PathBuf::from)?;
        return Some(first.join("host_key"));
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("filesync").join("host_key"))
}

fn default_authorized_keys() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/authorized_keys"))
}

/// Reads the ed25519 host key, or creates it (mode 0600) on first start.
fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, ServerError> {
    let err = |reason: String| ServerError::HostKey {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = PrivateKey::from_openssh(&text).map_err(|e| {
                err(format!(
                    "not an OpenSSH private key ({e}); move it away to have a new one generated"
                ))
            })?;
            if key.is_encrypted() {
                return Err(err(
                    "the key is encrypted with a passphrase; the server needs an unencrypted key"
                        .into(),
                ));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| err(format!("cannot create folder {}: {e}", dir.display())))?;
            }
            // ThreadRng is a CSPRNG seeded from the OS.
            let seed: [u8; 32] = rand::random();
            let key = PrivateKey::new(
                KeypairData::from(Ed25519Keypair::from_seed(&seed)),
                "filesync host key",
            )
            .map_err(|e| err(format!("cannot generate: {e}")))?;
            let text = key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(|e| err(format!("cannot encode: {e}")))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(format!("cannot create: {e}")))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err(format!("cannot write: {e}")))?;
            tracing::info!(path = %path.display(), "generated a new ed25519 host key");
            Ok(key)
        }
        Err(e) => Err(err(format!(
            "cannot read: {e}; fix its permissions or path"
        ))),
    }
}

fn russh_config(cfg: &ServerConfig, host_key: PrivateKey) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    if cfg.password_hash.is_some() {
        methods.push(MethodKind::Password);
    }
    let preferred = russh::Preferred {
        cipher: Cow::Borrowed(crate::ciphers::server_offer()),
        ..Default::default()
    };
    russh::server::Config {
        methods,
        keys: vec![host_key],
        preferred,
        // Big windows and packets: the default 2 MiB / 32 KiB halve bulk throughput.
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        event_buffer_size: 64,
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH probes with "none" first; answering it at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        inactivity_timeout: (cfg.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(cfg.idle_timeout_secs)),
        keepalive_interval: None,
        nodelay: true,
        ..Default::default()
    }
}

/// Loads the host key and authorized keys and binds the listener; every problem is a clear error.
pub async fn bind(cfg: &ServerConfig, root: &Path) -> Result<BoundServer, ServerError> {
    let root_err = |reason: String| ServerError::Root {
        path: root.display().to_string(),
        reason,
    };
    let root = std::fs::canonicalize(root).map_err(|e| root_err(e.to_string()))?;
    if !root.is_dir() {
        return Err(root_err("not a folder".into()));
    }
    let root_fd = fs::Root::open(&root).map_err(|e| root_err(e.to_string()))?;

    let key_path = match &cfg.host_key {
        Some(p) => expand_home(p),
        None => default_host_key_path().ok_or_else(|| {
            ServerError::Setup(
                "no place for the host key: set [server] host_key, or HOME or STATE_DIRECTORY"
                    .into(),
            )
        })?,
    };
    let host_key = load_or_create_host_key(&key_path)?;
    tracing::info!(
        path = %key_path.display(),
        fingerprint = %host_key.public_key().fingerprint(HashAlg::Sha256),
        "host key"
    );

    let ak_path = match &cfg.authorized_keys {
        Some(p) => expand_home(p),
        None => default_authorized_keys().ok_or_else(|| {
            ServerError::AuthorizedKeys(
                "no authorized_keys file: set [server] authorized_keys (HOME is unset)".into(),
            )
        })?,
    };
    let keys = auth::load_authorized_keys(&ak_path).map_err(ServerError::AuthorizedKeys)?;
    tracing::info!(path = %ak_path.display(), keys = keys.len(), "authorized keys loaded");

    if let Some(h) = &cfg.password_hash {
        argon2::password_hash::phc::PasswordHash::new(h)
            .map_err(|e| ServerError::PasswordHash(e.to_string()))?;
        tracing::info!("password login enabled (argon2 hash from the config)");
    }

    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| ServerError::Bind {
            addr: cfg.listen.clone(),
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Bind {
        addr: cfg.listen.clone(),
        reason: e.to_string(),
    })?;

    Ok(BoundServer {
        addr,
        listener,
        config: Arc::new(russh_config(cfg, host_key)),
        gate: Arc::new(Gate {
            keys,
            password_hash: cfg.password_hash.clone(),
            failures: Default::default(),
        }),
        shared: sftp::Shared {
            root: root_fd,
            read_only: cfg.read_only,
            freshness: None,
        },
        max_clients: cfg.max_clients.max(1),
    })
}

type Handles = Arc<Mutex<HashMap<u64, russh::server::Handle>>>;

impl BoundServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets index refreshes ask the daemon's watcher instead of rescanning the folder.
    pub fn with_freshness(mut self, probe: FreshnessProbe) -> Self {
        self.shared.freshness = Some(probe);
        self
    }

    /// Serves until `shutdown` turns true (or its sender goes away), then closes sessions cleanly.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
        let slots = Arc::new(Semaphore::new(self.max_clients));
        let handles: Handles = Arc::default();
        let mut conns = JoinSet::new();
        let mut next_id = 0u64;
        let shared = Arc::new(self.shared);
        tracing::info!(addr = %self.addr, root = %shared.root.path().display(), read_only = shared.read_only, "SFTP server listening");
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (sock, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors and the like: back off instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    // russh sets TCP_NODELAY only on sockets it accepts itself; without it,
                    // Nagle holds each small reply until the client's delayed ACK (40 ms).
                    if let Err(e) = sock.set_nodelay(true) {
                        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
                    }
                    if self.gate.failures.blocked(peer.ip()) {
                        tracing::warn!(%peer, "connection refused: too many failed logins from this address");
                        continue;
                    }
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, max = self.max_clients, "connection refused: too many clients");
                        continue;
                    };
                    next_id += 1;
                    let id = next_id;
                    let handler = Connection {
                        peer,
                        gate: self.gate.clone(),
                        shared: shared.clone(),
                        channels: HashMap::new(),
                        sftp: JoinSet::new(),
                    };
                    let config = self.config.clone();
                    let handles = handles.clone();
                    let serve = move |sock| async move {
                        let _permit = permit;
                        tracing::debug!(%peer, "connection");
                        match russh::server::run_stream(config, sock, handler).await {
                            Ok(running) => {
                                if let Ok(mut h) = handles.lock() {
                                    h.insert(id, running.handle());
                                }
                                if let Err(e) = running.await {
                                    tracing::debug!(%peer, "connection ended: {e}");
                                }
                            }
                            Err(e) => tracing::debug!(%peer, "handshake failed: {e}"),
                        }
                        if let Ok(mut h) = handles.lock() {
                            h.remove(&id);
                        }
                    };
                    match on_own_thread(sock, peer, serve) {
                        Ok(done) => {
                            conns.spawn(async move {
                                let _ = done.await;
                            });
                        }
                        Err(e) => tracing::warn!(%peer, "cannot start a connection thread: {e}"),
                    }
                }
            }
        }
        drop(self.listener);
        let open: Vec<_> = handles
            .lock()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default();
        tracing::info!(sessions = open.len(), "SFTP server stopping");
        for h in open {
            let _ = h
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "server shutting down".into(),
                    "en".into(),
                )
                .await;
        }
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some sessions did not close in 5 s; dropping them");
            conns.shutdown().await;
        }
        Ok(())
    }
}

/// Runs one connection on a thread of its own with a single-threaded runtime, as OpenSSH
/// gives each connection a process: the SSH session task and the SFTP loop hand every request
/// back and forth, and on one thread that costs no cross-thread wake-ups (measured: two futex
/// calls and an eventfd write per request on the shared runtime). Connections still run in
/// parallel. The returned receiver fires when the connection is over.
fn on_own_thread<F>(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    serve: impl FnOnce(tokio::net::TcpStream) -> F + Send + 'static,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>>
where
    F: std::future::Future<Output = ()>,
{
    // The socket is registered with the accepting runtime; move it over as a plain socket.
    let sock = sock.into_std()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("sftp {peer}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(async move {
                    match tokio::net::TcpStream::from_std(sock) {
                        Ok(sock) => serve(sock).await,
                        Err(e) => tracing::warn!(%peer, "cannot use the connection: {e}"),
                    }
                }),
                Err(e) => tracing::warn!(%peer, "cannot start a runtime for the connection: {e}"),
            }
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// Runs the SFTP server in the foreground until SIGINT/SIGTERM.
pub async fn serve_foreground(
    cfg: &Config,
    root: &Path,
    listen: Option<String>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut scfg = cfg.server.clone().unwrap_or_default();
    if let Some(l) = listen {
        scfg.listen = l;
    }
    let bound = bind(&scfg, root).await?;
    // One machine-readable line so scripts (and tests) can use port 0.
    println!("listening on {}", bound.local_addr());
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let server = tokio::spawn(bound.run(rx));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = tx.send(true);
    server.await??;
    Ok(())
}
