//! The SFTP server (russh + our own pipelined SFTP loop): setup, the accept loop and shutdown.
//! Every client path is confined to the replica root (see `fs`); who may hold a connection is
//! `admission`'s.

mod admission;
mod algorithms;
mod auth;
mod batch;
mod client_id;
mod connection;
pub mod control;
pub mod devices;
mod fs;
#[cfg(test)]
mod fuzz;
mod host_keys;
mod pairing;
mod sftp;

pub use control::Control;

use crate::config::{HostKeys, ServerConfig, expand_home};
use crate::watch::FreshnessProbe;
use admission::{Admission, Change, Limits, Net, Startups, Ticket};
use client_id::{ClientId, Noting};
use connection::{Connection, Gate};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::{MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Each variant is one line naming the file or address and what to do about it; the cause,
/// when there is one, is its source.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use {path} as the SFTP root")]
    Root {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use {path} as the SFTP root: it is not a folder")]
    RootNotAFolder { path: String },
    #[error("host key {path}")]
    HostKey {
        path: String,
        #[source]
        source: host_keys::HostKeyError,
    },
    #[error(transparent)]
    AuthorizedKeys(#[from] auth::AuthorizedKeysError),
    #[error(transparent)]
    Devices(#[from] devices::DevicesError),
    #[error(
        "password_hash in [server] is not an argon2 PHC string ({0}); generate one with `argon2` or remove it"
    )]
    PasswordHash(String),
    #[error("cannot listen on {addr} (pick another address with --listen or [server] listen)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
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
    /// From accepting a connection to its login.
    grace: Duration,
    /// Keepalive interval × count: a silent client is dropped about then.
    alive_bound: Duration,
}

/// The server's state folder (`[server] state_dir`, else `sys::state_dir`): devices, the
/// default host keys, the hub's client key, used pairing codes.
pub fn state_dir(cfg: &ServerConfig) -> Result<PathBuf, ServerError> {
    let dir = match &cfg.state_dir {
        Some(d) => expand_home(d),
        None => {
            let default = crate::sys::state_dir().ok_or_else(|| {
                ServerError::Setup(
                    "no state folder: set [server] state_dir, or HOME or STATE_DIRECTORY".into(),
                )
            })?;
            match beside_host_key(cfg, &default) {
                Some(old) => {
                    tracing::warn!(
                        "using the state in {} (beside [server] host_key), not {}: set [server] state_dir = \"{}\" to keep it there",
                        old.display(),
                        default.display(),
                        old.display()
                    );
                    old
                }
                None => default,
            }
        }
    };
    if !dir.is_absolute() {
        return Err(ServerError::Setup(format!(
            "[server] state_dir {} is not an absolute path; give the full path",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Files that show a folder holds a hub's state.
const STATE_FILES: [&str; 3] = [devices::FILE, "client_key", control::USED_CODES];

/// The folder of the first `[server] host_key` when it holds a hub's state and `default`
/// does not: where that state was kept before `state_dir` existed, so an upgraded hub keeps
/// its devices and client key.
fn beside_host_key(cfg: &ServerConfig, default: &Path) -> Option<PathBuf> {
    let first = match cfg.host_key.as_ref()? {
        HostKeys::One(p) => p,
        HostKeys::Many(list) => list.first()?,
    };
    let old = expand_home(first).parent()?.to_path_buf();
    let holds = |dir: &Path| STATE_FILES.iter().any(|f| dir.join(f).exists());
    (old.is_absolute() && old != default && holds(&old) && !holds(default)).then_some(old)
}

fn default_authorized_keys() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/authorized_keys"))
}

fn russh_config(cfg: &ServerConfig, host_keys: Vec<PrivateKey>) -> russh::server::Config {
    let alive =
        (cfg.client_alive_interval > 0).then(|| Duration::from_secs(cfg.client_alive_interval));
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    if cfg.password_hash.is_some() {
        methods.push(MethodKind::Password);
    }
    russh::server::Config {
        methods,
        keys: host_keys,
        preferred: algorithms::preferred(cfg.legacy_algorithms),
        // Big windows and packets: the default 2 MiB / 32 KiB halve bulk throughput.
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        // Channel data waiting for its SFTP loop, per channel: 16 packets of at most 64 KiB.
        channel_buffer_size: 16,
        event_buffer_size: 64,
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH probes with "none" first; answering it at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        // No idle cut-off, as with OpenSSH: a client that answers keepalives stays. One that
        // stops answering is dropped after `client_alive_count_max` of them; the inactivity
        // bound, past that, catches a send stuck on a peer that is gone (no keepalive goes
        // out while it waits).
        inactivity_timeout: alive.filter(|_| cfg.client_alive_count_max > 0).map(|d| {
            let count = u32::try_from(cfg.client_alive_count_max).unwrap_or(u32::MAX);
            d.checked_mul(count.saturating_add(2))
                .unwrap_or(Duration::MAX)
        }),
        keepalive_interval: alive,
        keepalive_max: cfg.client_alive_count_max,
        nodelay: true,
        ..Default::default()
    }
}

/// `[server]`'s connection limits, each problem one line naming its key.
fn limits(cfg: &ServerConfig) -> Result<Limits, ServerError> {
    let setup = |key: &str, e: String| ServerError::Setup(format!("[server] {key}: {e}"));
    let startups = Startups::parse(&cfg.max_startups).map_err(|e| setup("max_startups", e))?;
    let trusted = cfg
        .trusted
        .iter()
        .map(|t| Net::parse(t).map_err(|e| setup("trusted", e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Limits {
        startups,
        per_source: cfg.max_startups_per_source.max(1),
        max_sessions: cfg.max_clients.max(1),
        trusted,
        ..Limits::default()
    })
}

/// Loads the host keys and authorized keys and binds the listener; every problem is a clear
/// error.
pub async fn bind(cfg: &ServerConfig, root: &Path) -> Result<BoundServer, ServerError> {
    let path = || root.display().to_string();
    let root_err = |source| ServerError::Root {
        path: path(),
        source,
    };
    let canonical = std::fs::canonicalize(root).map_err(root_err)?;
    if !canonical.is_dir() {
        return Err(ServerError::RootNotAFolder { path: path() });
    }
    let root_fd =
        crate::replica::Root::open(&canonical, crate::replica::Follow::InRoot).map_err(root_err)?;
    let limits = limits(cfg)?;
    let state_dir = state_dir(cfg)?;
    make_state_dir(&state_dir)?;
    outside_root(&state_dir, &canonical)?;
    let host_keys = load_host_keys(cfg, &state_dir)?;
    let keys = authorized_keys(cfg)?;
    if let Some(h) = &cfg.password_hash {
        argon2::password_hash::phc::PasswordHash::new(h)
            .map_err(|e| ServerError::PasswordHash(e.to_string()))?;
        tracing::info!("password login enabled (argon2 hash from the config)");
    }
    if cfg.idle_timeout_secs.is_some() {
        tracing::warn!(
            "[server] idle_timeout_secs is ignored: idle clients stay connected, and gone ones are dropped by client_alive_interval; remove it"
        );
    }
    let bind_err = |source| ServerError::Bind {
        addr: cfg.listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&cfg.listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let control = Arc::new(Control::new(
        &state_dir,
        &host_keys,
        addr.port(),
        keys.clone(),
    )?);
    let code_file = match &cfg.pair_code_file {
        Some(p) => expand_home(p),
        None => state_dir.join("pair-code.txt"),
    };
    control.take_code_file(&code_file);
    tracing::info!(devices = control.devices().len(), file = %control.devices.path().display(), "devices");
    Ok(BoundServer {
        addr,
        listener,
        config: Arc::new(russh_config(cfg, host_keys)),
        gate: Arc::new(Gate {
            keys,
            password_hash: cfg.password_hash.clone(),
            admission: Admission::new(limits),
            control,
        }),
        shared: sftp::Shared::new(root_fd, cfg.read_only),
        grace: Duration::from_secs(cfg.login_grace_secs.max(1)),
        alive_bound: Duration::from_secs(
            cfg.client_alive_interval
                .saturating_mul(cfg.client_alive_count_max as u64 + 1),
        ),
    })
}

/// The public host keys a server with `cfg` serves with (made when missing), as OpenSSH lines.
pub fn host_public_keys(cfg: &ServerConfig) -> Result<Vec<String>, ServerError> {
    let state_dir = state_dir(cfg)?;
    make_state_dir(&state_dir)?;
    let keys = load_host_keys(cfg, &state_dir)?;
    Ok(keys
        .iter()
        .map(|k| crate::pair::protocol::public_line(k.public_key()))
        .collect())
}

/// The keys of `authorized_keys`; none at all is fine (paired devices and pairing still get
/// in), a file that is there but cannot be read is not.
fn authorized_keys(cfg: &ServerConfig) -> Result<Vec<PublicKey>, ServerError> {
    let path = match &cfg.authorized_keys {
        Some(p) => expand_home(p),
        None => match default_authorized_keys() {
            Some(p) => p,
            None => return Ok(Vec::new()),
        },
    };
    match auth::load_authorized_keys(&path) {
        Ok(keys) => {
            tracing::info!(path = %path.display(), keys = keys.len(), "authorized keys loaded");
            Ok(keys)
        }
        Err(auth::AuthorizedKeysError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::info!(path = %path.display(), "no authorized_keys file: paired devices only (add one with `filesync pair --new`)");
            Ok(Vec::new())
        }
        Err(auth::AuthorizedKeysError::Empty { .. }) => {
            tracing::info!(path = %path.display(), "authorized_keys holds no key: paired devices only (add one with `filesync pair --new`)");
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the state folder when missing, or narrows it: readable by this user alone (it
/// holds secrets).
fn make_state_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |e: std::io::Error| {
        ServerError::Setup(format!(
            "cannot create the state folder {} ({e}); create it, or set [server] state_dir",
            dir.display()
        ))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            ServerError::Setup(format!(
                "the state folder {} is open to other users (mode {:o}) and cannot be made 0700 ({e}); chmod 700 it",
                dir.display(),
                mode & 0o777
            ))
        })?;
        tracing::warn!(
            "the state folder {} was open to other users (mode {:o}); made it 0700",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Refuses a state folder inside the served folder `root` (canonical): every device could
/// download the keys and devices it holds.
fn outside_root(state_dir: &Path, root: &Path) -> Result<(), ServerError> {
    let state = std::fs::canonicalize(state_dir).map_err(|e| {
        ServerError::Setup(format!(
            "cannot open the state folder {} ({e}); fix it, or set [server] state_dir",
            state_dir.display()
        ))
    })?;
    if state.starts_with(root) {
        return Err(ServerError::Setup(format!(
            "the state folder {} is inside the served folder {} (devices could download its keys); set [server] state_dir to a folder outside it",
            state.display(),
            root.display()
        )));
    }
    Ok(())
}

/// The host keys (`[server] host_key`, else `host_key` in the state folder).
fn load_host_keys(cfg: &ServerConfig, state_dir: &Path) -> Result<Vec<PrivateKey>, ServerError> {
    let keys = host_keys::load_all(cfg.host_key.as_ref(), &state_dir.join("host_key"))?;
    for k in &keys {
        tracing::info!(
            algorithm = %k.algorithm(),
            fingerprint = %k.public_key().fingerprint(HashAlg::Sha256),
            "host key"
        );
    }
    Ok(keys)
}

/// One line per state an address (or the server) entered or left.
fn log_changes(changes: &[Change]) {
    for c in changes {
        match c {
            Change::Penalised { ip, secs, failures } => tracing::warn!(
                peer = %ip,
                "refusing this address for {secs} s: {failures} failed logins"
            ),
            Change::Forgiven { ip } => {
                tracing::info!(peer = %ip, "accepting this address again after its penalty")
            }
            Change::Capped { ip, open } => tracing::info!(
                peer = %ip,
                "refusing more connections from this address: {open} have not logged in yet (max_startups_per_source)"
            ),
            Change::Uncapped { ip } => {
                tracing::info!(peer = %ip, "accepting connections from this address again")
            }
            Change::Dropping { open } => tracing::warn!(
                "{open} connections have not logged in yet: new ones are dropped at random (max_startups)"
            ),
            Change::NotDropping => {
                tracing::info!("fewer connections waiting to log in: accepting every one again")
            }
        }
    }
}

use control::Handles;

/// What the accept loop hands each connection.
struct Accepted {
    id: u64,
    config: Arc<russh::server::Config>,
    handles: Handles,
    grace: Duration,
    /// How long a silent client is kept before it is taken for gone (for the log line).
    alive_bound: Duration,
}

impl BoundServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pairing, devices and revocation, for the daemon's control socket.
    pub fn control(&self) -> Arc<Control> {
        self.gate.control.clone()
    }

    /// The name pairing laptops are told (the replica's).
    pub fn named(self, name: &str) -> Self {
        *lock(&self.gate.control.name) = name.to_string();
        self
    }

    /// Lets index refreshes ask the daemon's watcher instead of rescanning the folder.
    pub fn with_freshness(mut self, probe: FreshnessProbe) -> Self {
        self.shared.freshness = Some(probe);
        self
    }

    /// Serves until `shutdown` turns true (or its sender goes away), then closes sessions cleanly.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
        let handles: Handles = self.gate.control.handles.clone();
        let mut conns = JoinSet::new();
        let mut next_id = 0u64;
        let shared = Arc::new(self.shared);
        tracing::debug!(addr = %self.addr, root = %shared.root.path().display(), read_only = shared.read_only, "SFTP server listening");
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
                    let Some(ticket) = admit(&self.gate.admission, peer) else {
                        continue;
                    };
                    next_id += 1;
                    let a = Accepted {
                        id: next_id,
                        config: self.config.clone(),
                        handles: handles.clone(),
                        grace: self.grace,
                        alive_bound: self.alive_bound,
                    };
                    let handler = (peer, self.gate.clone(), shared.clone(), ticket);
                    match on_own_thread(sock, peer, move |sock| serve_one(sock, handler, a)) {
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
        shut_down(handles, conns).await;
        Ok(())
    }
}

/// Asks the admission book about a new connection; a refused one is closed at once.
fn admit(book: &Admission, peer: SocketAddr) -> Option<Ticket> {
    let mut log = Vec::new();
    let verdict = book.admit(peer.ip(), Instant::now(), rand::random(), &mut log);
    log_changes(&log);
    match verdict {
        Ok(t) => Some(t),
        Err(why) => {
            tracing::debug!(%peer, "connection refused: {why}");
            None
        }
    }
}

/// Says goodbye to every open session, and waits a little for them to go.
async fn shut_down(handles: Handles, mut conns: JoinSet<()>) {
    let open: Vec<_> = handles
        .lock()
        .map(|h| h.values().cloned().collect())
        .unwrap_or_default();
    tracing::info!(sessions = open.len(), "SFTP server stopping");
    // Inside the bound too: a goodbye to a peer that stopped reading waits on its socket.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        for h in open {
            let _ = h
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "server shutting down".into(),
                    "en".into(),
                )
                .await;
        }
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some sessions did not close in 5 s; dropping them");
        conns.shutdown().await;
    }
}

/// One connection, from its first byte to its end: it must log in within the grace time.
async fn serve_one(
    sock: tokio::net::TcpStream,
    (peer, gate, shared, ticket): (SocketAddr, Arc<Gate>, Arc<sftp::Shared>, Ticket),
    a: Accepted,
) {
    // russh sets TCP_NODELAY only on sockets it accepts itself; without it, Nagle holds each
    // small reply until the client's delayed ACK (40 ms).
    if let Err(e) = sock.set_nodelay(true) {
        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
    }
    let client = ClientId::default();
    let control = gate.control.clone();
    let (logged_in, mut login) = watch::channel(None);
    let handler = Connection {
        id: a.id,
        device: None,
        pairing: false,
        paired: false,
        peer,
        gate,
        shared,
        channels: HashMap::new(),
        sftp: JoinSet::new(),
        ticket,
        client: client.clone(),
        logged_in,
        tried: Vec::new(),
        user: String::new(),
        budget: Arc::default(),
        counted: false,
    };
    let stream = Noting::new(sock, client.clone());
    let session = async {
        let running = russh::server::run_stream(a.config, stream, handler).await?;
        if let Ok(mut h) = a.handles.lock() {
            h.insert(a.id, running.handle());
        }
        running.await
    };
    let grace = async {
        if tokio::time::timeout(a.grace, login.wait_for(|l| l.is_some()))
            .await
            .is_ok()
        {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = session => match r {
            Ok(()) => tracing::debug!(%peer, "connection ended"),
            Err(russh::Error::KeepaliveTimeout | russh::Error::InactivityTimeout) => {
                let user = login.borrow().clone().unwrap_or_default();
                tracing::info!(%peer, %user, client = %client.get(),
                    "client stopped answering; connection dropped after {} s (client_alive_interval × client_alive_count_max)",
                    a.alive_bound.as_secs());
            }
            Err(e) => match algorithms::mismatch(&e) {
                Some(why) => tracing::info!(%peer, client = %client.get(), "could not connect: {why}"),
                None => tracing::debug!(%peer, client = %client.get(), "connection ended: {e}"),
            },
        },
        () = grace => tracing::debug!(%peer, client = %client.get(), "not logged in within {} s; dropped", a.grace.as_secs()),
    }
    if let Ok(mut h) = a.handles.lock() {
        h.remove(&a.id);
    }
    control.sessions_ended.notify_waiters();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one connection on a thread of its own with a single-threaded runtime, as OpenSSH
/// gives each connection a process: the SSH session task and the SFTP loop hand every request
/// back and forth, and on one thread that costs no cross-thread wake-ups (measured: two futex
/// calls and an eventfd write per request on the shared runtime). Connections still run in
/// parallel. The returned receiver fires when the connection is over; the runtime, and every
/// task of the connection with it, is gone by then.
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

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn an_upgraded_hub_keeps_the_state_beside_its_host_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("keys");
        let default = dir.path().join("xdg/filesync");
        std::fs::create_dir_all(&old).unwrap();
        let cfg = ServerConfig {
            host_key: Some(HostKeys::Many(vec![old.join("host_key")])),
            ..ServerConfig::default()
        };
        assert_eq!(beside_host_key(&cfg, &default), None, "no state there yet");
        std::fs::write(old.join(devices::FILE), "{}").unwrap();
        assert_eq!(beside_host_key(&cfg, &default), Some(old.clone()));
        std::fs::create_dir_all(&default).unwrap();
        std::fs::write(default.join("client_key"), "").unwrap();
        assert_eq!(
            beside_host_key(&cfg, &default),
            None,
            "the default has state"
        );
        let unset = ServerConfig::default();
        assert_eq!(beside_host_key(&unset, &default), None);
    }

    #[test]
    fn an_open_state_folder_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_state_dir(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_state_folder_inside_the_served_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("root");
        let inside = root.join(".local/state/filesync");
        std::fs::create_dir_all(&inside).unwrap();
        let e = outside_root(&inside, &root).unwrap_err().to_string();
        assert!(e.contains(&*inside.to_string_lossy()), "{e}");
        assert!(
            e.contains(&*root.to_string_lossy()) && !e.contains('\n'),
            "{e}"
        );
        let beside = dir.path().join("state");
        std::fs::create_dir_all(&beside).unwrap();
        outside_root(&beside, &root).unwrap();
    }
}
