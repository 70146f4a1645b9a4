//! The laptop's end of pairing: connect to the hub as the pairing user (any host key: the code
//! decides whom to trust), run the exchange, and only once the hub has proved it knows the
//! code, write what lets `filesync sync HUB` work at once — the hub's host keys in
//! known_hosts, this laptop's key, `[peers.HUB]` and `root` in the config (and with `--serve`,
//! a `[server]` that lets the hub's key in).

use super::code::Code;
use super::protocol::{
    DeviceRequest, Laptop, Offer, Outcome, SUBSYSTEM, ServeOffer, USER, Welcome, same_key,
    valid_name,
};
use super::wire;
use crate::config_edit::{ConfigDoc, EditError};
use russh::client;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{HashAlg, PrivateKey, PublicKey, PublicKeyOrCertificate};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The hub's SFTP port when none is given.
pub const DEFAULT_PORT: u16 = 2222;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("cannot connect to {host}")]
    Connect {
        host: String,
        #[source]
        source: russh::Error,
    },
    #[error("{host} did not answer within {} s", TIMEOUT.as_secs())]
    Timeout { host: String },
    #[error("{host} does not offer pairing (not a filesync hub, or an older one)")]
    NotAHub { host: String },
    #[error("the hub refused: {0}")]
    Refused(String),
    #[error("the hub's answer is unusable ({0}); nothing was changed here")]
    BadWelcome(String),
    #[error(
        "refused: the server's host key ({0}) is not one the hub vouches for — someone is in between; nothing was changed"
    )]
    InBetween(String),
    #[error("pairing failed: {0}; nothing was changed")]
    Protocol(#[from] super::protocol::ProtocolError),
    #[error("pairing failed")]
    Wire(#[from] super::wire::WireError),
    #[error("no home folder (HOME is unset)")]
    NoHome,
    #[error("cannot use the key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    KnownHosts(#[from] super::known_hosts::KnownHostsError),
    #[error("{0}; nothing was changed")]
    Clash(String),
    #[error("--serve {0}; nothing was changed")]
    Serve(String),
}

/// What `filesync pair HOST CODE` was asked to do.
pub struct Request {
    pub host: String,
    pub port: u16,
    pub code: Code,
    /// This laptop's device name on the hub.
    pub name: String,
    /// The peer name for the hub in the config (default: the hub's own name).
    pub peer: Option<String>,
    /// The synced folder (default: the config's `root`, else `~/Sync`).
    pub root: Option<PathBuf>,
    /// The laptop serves SFTP here and the hub pulls from it.
    pub serve: Option<String>,
    /// The laptop's own schedule for syncing with the hub.
    pub every: Option<String>,
    /// The user config file to write.
    pub config: PathBuf,
    /// The host keys this laptop serves with (`--serve` only).
    pub host_keys: Vec<String>,
}

/// What was set up, for the person.
pub struct Paired {
    pub peer: String,
    pub device: String,
    pub url: String,
    pub root: PathBuf,
    pub config: PathBuf,
    pub known_hosts: PathBuf,
    pub fingerprint: String,
}

/// Accepts whatever host key the server shows and keeps it: the exchange, not known_hosts,
/// decides whether it is the hub's.
struct Client {
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => PublicKey::new(c.public_key().clone(), ""),
        };
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(key);
        }
        Ok(true)
    }
}

fn home() -> Result<PathBuf, PairError> {
    crate::sys::home_dir().ok_or(PairError::NoHome)
}

/// The laptop's key for the hub: the one made at an earlier pairing, else a new one, written
/// only when the pairing succeeds.
fn laptop_key(path: &Path) -> Result<(PrivateKey, bool), PairError> {
    let bad = |why: String| PairError::Key {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((
            PrivateKey::from_openssh(&text).map_err(|e| bad(e.to_string()))?,
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = Ed25519Keypair::random(&mut rand::rng());
            let key = PrivateKey::new(KeypairData::from(pair), "filesync")
                .map_err(|e| bad(e.to_string()))?;
            Ok((key, true))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Where the laptop's key for its hubs lives: beside the user config.
pub fn key_path(config: &Path) -> PathBuf {
    config.with_file_name("id_ed25519")
}

/// Pairs with the hub; on any refusal nothing was written.
pub async fn pair(req: Request) -> Result<Paired, PairError> {
    // What would stop the writing afterwards stops the pairing before it starts.
    let doc = ConfigDoc::open(&req.config)?;
    preflight(&req, &doc)?;
    if let Some(peer) = &req.peer {
        peer_free(&req, &doc, peer)?;
    }
    let key_file = key_path(&req.config);
    let (key, new_key) = laptop_key(&key_file)?;
    let device = DeviceRequest {
        name: req.name.clone(),
        public_key: super::protocol::public_line(key.public_key()),
        serve: req.serve.as_ref().map(|listen| ServeOffer {
            listen: listen.clone(),
            host_keys: req.host_keys.clone(),
        }),
    };
    let label = format!("{}:{}", req.host, req.port);
    let (welcome, host_keys, seen) =
        match tokio::time::timeout(TIMEOUT, exchange(&req, &doc, &device)).await {
            Ok(r) => r?,
            Err(_) => return Err(PairError::Timeout { host: label }),
        };
    let welcome = checked(welcome)?;
    if new_key {
        write_key(&key_file, &key)?;
    }
    let known_hosts = home()?.join(".ssh").join("known_hosts");
    // The code proved these keys: a re-imaged hub's old lines go.
    let keys: Vec<PublicKey> = host_keys
        .iter()
        .filter_map(|l| PublicKey::from_openssh(l).ok())
        .collect();
    super::known_hosts::replace(&known_hosts, &req.host, req.port, &keys)?;
    let peer = req.peer.clone().unwrap_or_else(|| welcome.hub.clone());
    let (url, root) = write_config(&req, &welcome, &peer, &key_file)?;
    Ok(Paired {
        peer,
        device: welcome.device,
        url,
        root,
        config: req.config.clone(),
        known_hosts,
        fingerprint: seen.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// The SSH connection and the exchange on it: the hub's welcome, its host keys, and the host
/// key this connection verified.
async fn exchange(
    req: &Request,
    doc: &ConfigDoc,
    device: &DeviceRequest,
) -> Result<(Welcome, Vec<String>, PublicKey), PairError> {
    let host = format!("{}:{}", req.host, req.port);
    let seen = Arc::new(Mutex::new(None));
    let config = Arc::new(client::Config::default());
    let handler = Client { seen: seen.clone() };
    let connect = |source| PairError::Connect {
        host: host.clone(),
        source,
    };
    let mut handle = client::connect(config, (req.host.as_str(), req.port), handler)
        .await
        .map_err(connect)?;
    let not_hub = || PairError::NotAHub { host: host.clone() };
    let auth = handle.authenticate_none(USER).await.map_err(connect)?;
    if !auth.success() {
        return Err(not_hub());
    }
    let channel = handle.channel_open_session().await.map_err(|_| not_hub())?;
    channel
        .request_subsystem(true, SUBSYSTEM)
        .await
        .map_err(|_| not_hub())?;
    let mut stream = channel.into_stream();
    let seen = seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(not_hub)?;
    let seen_line = super::protocol::public_line(&seen);

    let (laptop, hello) = Laptop::start(&req.code);
    wire::send(&mut stream, &hello).await?;
    let (spake, host_keys) = match wire::recv::<Offer>(&mut stream).await? {
        Offer::Offer {
            spake,
            host_keys,
            hub,
        } => {
            // Before the hub enrolls anything: the peer its name would take must be free.
            if req.peer.is_none() && valid_name(&hub) {
                peer_free(req, doc, &hub)?;
            }
            (spake, host_keys)
        }
        Offer::Refused { reason } => return Err(refused(&reason)),
    };
    let vouched = host_keys.iter().any(|k| same_key(k, &seen_line));
    let (sent, join) = laptop.join(&spake, &host_keys, &seen_line, device)?;
    wire::send(&mut stream, &join).await?;
    let outcome = wire::recv::<Outcome>(&mut stream).await;
    let fp = seen.fingerprint(HashAlg::Sha256).to_string();
    if !vouched {
        return Err(PairError::InBetween(fp));
    }
    let welcome = match outcome? {
        Outcome::Welcome { mac, welcome } => sent.finish(&mac, &welcome)?,
        Outcome::Refused { reason } => return Err(refused(&reason)),
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    Ok((welcome, host_keys, seen))
}

/// The config's `root` and `[server]` may only be kept or newly set, never changed behind
/// the person's back.
fn preflight(req: &Request, doc: &ConfigDoc) -> Result<(), PairError> {
    let shown = req.config.display();
    if let (Some(want), Some(have)) = (&req.root, doc.get_str("root")) {
        let have = crate::config::expand_home(Path::new(&have));
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        if abs(want) != abs(&have) {
            return Err(PairError::Clash(format!(
                "{shown} syncs root {} already; pass --root {} or change root there first",
                have.display(),
                have.display()
            )));
        }
    }
    if let (Some(want), Some(have)) = (&req.serve, doc.get_in(&["server", "listen"]))
        && *want != have
    {
        return Err(PairError::Clash(format!(
            "{shown} serves on {have} already ([server] listen); pass --serve {have}"
        )));
    }
    Ok(())
}

/// `--serve LISTEN` names an address of this machine, or a wildcard (the hub then pulls
/// from the address this laptop pairs from): the hub would pull from it. An address is
/// this machine's when a socket can be bound to it.
pub fn check_serve(listen: &str) -> Result<(), PairError> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| PairError::Serve(format!("{listen:?} is not an address like 0.0.0.0:2222")))?;
    if addr.ip().is_unspecified() {
        return Ok(());
    }
    std::net::TcpListener::bind((addr.ip(), 0))
        .map(drop)
        .map_err(|_| {
            PairError::Serve(format!(
                "{listen}: {} is not an address of this machine; give one of its own, or 0.0.0.0:{}",
                addr.ip(),
                addr.port()
            ))
        })
}

/// `[peers.PEER]` is free, or points at this very hub (a pairing again).
fn peer_free(req: &Request, doc: &ConfigDoc, peer: &str) -> Result<(), PairError> {
    if !valid_name(peer) {
        return Err(PairError::Clash(format!(
            "{peer:?} is not a peer name: use letters, digits, `-`, `_` or `.`"
        )));
    }
    let Some(url) = doc.get_in(&["peers", peer, "url"]) else {
        return Ok(());
    };
    let host = if req.host.contains(':') {
        format!("[{}]", req.host)
    } else {
        req.host.clone()
    };
    let at = format!("@{host}:{}/", req.port);
    if url.starts_with("sftp://") && url.ends_with(&at) {
        return Ok(());
    }
    Err(PairError::Clash(format!(
        "{} has [peers.{peer}] for {url} already; pass --peer OTHER_NAME",
        req.config.display()
    )))
}

/// A refusal as shown on the terminal: the hub's text is not authenticated, so no control
/// characters (escape sequences) and not more than a few lines' worth.
fn refused(reason: &str) -> PairError {
    PairError::Refused(
        reason
            .chars()
            .filter(|c| !c.is_control())
            .take(400)
            .collect(),
    )
}

/// The welcome's strings, checked before any goes into a file name, URL, config key or
/// authorized_keys line; the hub's client key re-rendered from its parse.
fn checked(mut welcome: Welcome) -> Result<Welcome, PairError> {
    for (what, name) in [("hub name", &welcome.hub), ("device name", &welcome.device)] {
        if !valid_name(name) {
            let shown: String = name.chars().filter(|c| !c.is_control()).take(80).collect();
            return Err(PairError::BadWelcome(format!("{what} {shown:?}")));
        }
    }
    if let Some(k) = &welcome.client_key {
        let key = PublicKey::from_openssh(k)
            .map_err(|e| PairError::BadWelcome(format!("its client key: {e}")))?;
        welcome.client_key = Some(super::protocol::public_line(&key));
    }
    Ok(welcome)
}

fn write_key(path: &Path, key: &PrivateKey) -> Result<(), PairError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PairError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    // Windows: the profile folder's ACL keeps it the user's.
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    let public = format!("{}\n", super::protocol::public_line(key.public_key()));
    std::fs::write(path.with_extension("pub"), public).map_err(err)
}

/// `[peers.PEER]`, `root` (and with `--serve`, `[server]`) in the user's config.
fn write_config(
    req: &Request,
    welcome: &Welcome,
    peer: &str,
    key_file: &Path,
) -> Result<(String, PathBuf), PairError> {
    use toml_edit::value;
    let mut doc = ConfigDoc::open(&req.config)?;
    let root = match (&req.root, doc.get_str("root")) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => crate::config::expand_home(Path::new(&r)),
        (None, None) => home()?.join("Sync"),
    };
    let root = std::path::absolute(&root).unwrap_or(root);
    std::fs::create_dir_all(&root).map_err(|source| PairError::Write {
        path: root.clone(),
        source,
    })?;
    doc.set_str("root", &root.display().to_string());
    let host = if req.host.contains(':') {
        format!("[{}]", req.host)
    } else {
        req.host.clone()
    };
    let url = format!("sftp://{}@{host}:{}/", welcome.device, req.port);
    let t = doc.table(&["peers", peer])?;
    t["url"] = value(url.clone());
    t["identity"] = value(key_file.display().to_string());
    if let Some(every) = &req.every {
        t["every"] = value(every.clone());
    }
    if let (Some(listen), Some(client_key)) = (&req.serve, &welcome.client_key) {
        // The person's own authorized_keys stays theirs: the hub's key is added to it.
        let ak = doc
            .get_in(&["server", "authorized_keys"])
            .map(|p| crate::config::expand_home(Path::new(&p)))
            .unwrap_or_else(|| req.config.with_file_name("authorized_keys"));
        add_line(&ak, &format!("{client_key} {}", welcome.hub))?;
        let t = doc.table(&["server"])?;
        t["listen"] = value(listen.clone());
        if !t.contains_key("authorized_keys") {
            t["authorized_keys"] = value(ak.display().to_string());
        }
    }
    doc.save()?;
    Ok((url, root))
}

fn add_line(path: &Path, line: &str) -> Result<(), PairError> {
    let err = |source| PairError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e)),
    };
    if text.lines().any(|l| same_key(l, line)) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, text).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq9Y3DmOZFBFYQnW5pwXlBLbEKBuGv2NFAaH9Uq3/Kq";

    fn welcome(device: &str, hub: &str, key: Option<&str>) -> Welcome {
        Welcome {
            device: device.into(),
            hub: hub.into(),
            client_key: key.map(str::to_string),
        }
    }

    #[test]
    fn the_hubs_strings_are_checked_before_use() {
        let w = checked(welcome("laptop", "hub", Some(&format!("{ED} hub")))).unwrap();
        assert_eq!(w.client_key.as_deref(), Some(ED));
        for (device, hub) in [
            ("laptop", "hub\nssh-ed25519 AAAA evil"),
            ("x@evil.example", "hub"),
            ("a/b", "hub"),
            ("laptop", ""),
        ] {
            let e = checked(welcome(device, hub, None)).unwrap_err().to_string();
            assert!(e.contains("unusable") && !e.contains('\n'), "{e}");
        }
        let forged = format!("{ED}\nssh-rsa AAAA other");
        assert!(checked(welcome("laptop", "hub", Some(&forged))).is_err());
        assert!(checked(welcome("laptop", "hub", Some("not a key"))).is_err());
    }

    #[test]
    fn a_refusal_is_shown_without_control_characters() {
        let e = refused("wrong\u{1b}[2J code\r\n\u{7}").to_string();
        assert_eq!(e, "the hub refused: wrong[2J code");
        assert!(refused(&"x".repeat(10_000)).to_string().len() < 500);
    }
}
