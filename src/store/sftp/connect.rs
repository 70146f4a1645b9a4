//! Opening an SSH connection the way OpenSSH users expect: the host key checked against
//! known_hosts (unknown → refuse unless `--accept-new`, changed → always refuse), then
//! ssh-agent, the configured identity and the default key files.

use crate::endpoint::Remote;
use crate::store::{HostKeyChange, StoreError, UnknownHost};
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the TCP connect and the SSH handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    /// Why `check_server_key` refused the key, kept so the caller can say why.
    refusal: Arc<Mutex<Option<StoreError>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error("host key check failed")]
    HostKey,
}

impl From<russh::keys::Error> for ConnectError {
    fn from(e: russh::keys::Error) -> Self {
        ConnectError::Ssh(russh::Error::from(e))
    }
}

fn host_label(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl Client {
    /// Whether `key` is this host's: known, or learnt (`--accept-new`); else why not.
    fn judge(&self, key: &PublicKey) -> Result<(), StoreError> {
        let label = host_label(&self.host, self.port);
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let kh = self.known_hosts.display().to_string();
        let known = russh::keys::known_hosts::known_host_keys_path(
            &self.host,
            self.port,
            &self.known_hosts,
        )
        .map_err(|e| StoreError::KnownHosts {
            what: format!("cannot read {kh}"),
            source: Box::new(e),
        })?;
        if known.iter().any(|(_, k)| k.key_data() == key.key_data()) {
            return Ok(());
        }
        if let Some((line, old)) = known.first() {
            return Err(StoreError::HostKeyChanged(Box::new(HostKeyChange {
                host: label,
                known_hosts: kh,
                line: *line,
                key_type: key.algorithm().to_string(),
                fingerprint,
                old_type: old.algorithm().to_string(),
                old_fingerprint: old.fingerprint(HashAlg::Sha256).to_string(),
            })));
        }
        if !self.accept_new {
            return Err(StoreError::HostKeyUnknown(Box::new(UnknownHost {
                host: label,
                known_hosts: kh,
                key_type: key.algorithm().to_string(),
                fingerprint,
            })));
        }
        russh::keys::known_hosts::learn_known_hosts_path(
            &self.host,
            self.port,
            key,
            &self.known_hosts,
        )
        .map_err(|e| StoreError::KnownHosts {
            what: format!("cannot add {label} to {kh}"),
            source: Box::new(e),
        })?;
        tracing::warn!("added {label} ({} {fingerprint}) to {kh}", key.algorithm());
        Ok(())
    }
}

impl client::Handler for Client {
    type Error = ConnectError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.judge(key),
            PublicKeyOrCertificate::Certificate(c) => {
                self.judge(&PublicKey::new(c.public_key().clone(), ""))
            }
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(e) => {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(e);
                }
                Err(ConnectError::HostKey)
            }
        }
    }
}

pub type Handle = client::Handle<Client>;

/// The user's ssh-agent, if one is set up: `$SSH_AUTH_SOCK`; on Windows that or the OpenSSH
/// agent's named pipe.
#[cfg(unix)]
async fn agent() -> Option<
    Result<russh::keys::agent::client::AgentClient<tokio::net::UnixStream>, russh::keys::Error>,
> {
    let sock = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty())?;
    Some(russh::keys::agent::client::AgentClient::connect_uds(&sock).await)
}

#[cfg(windows)]
async fn agent() -> Option<
    Result<
        russh::keys::agent::client::AgentClient<tokio::net::windows::named_pipe::NamedPipeClient>,
        russh::keys::Error,
    >,
> {
    let pipe = std::env::var_os("SSH_AUTH_SOCK")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| r"\\.\pipe\openssh-ssh-agent".into());
    Some(russh::keys::agent::client::AgentClient::connect_named_pipe(&pipe).await)
}

fn home() -> Option<PathBuf> {
    crate::sys::home_dir()
}

/// The user to log in as: the target's, else `$USER`.
pub fn user_of(r: &Remote) -> String {
    r.user
        .clone()
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("USERNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "root".into())
}

/// Connects and authenticates; every failure names the host and what to do.
pub async fn connect(r: &Remote, accept_new: bool) -> Result<Handle, StoreError> {
    let port = r.port.unwrap_or(22);
    let user = user_of(r);
    let label = format!("{user}@{}", host_label(&r.host, port));
    let known_hosts = match &r.known_hosts {
        Some(p) => crate::config::expand_home(p),
        None => home()
            .map(|h| h.join(".ssh").join("known_hosts"))
            .ok_or(StoreError::NoHome)?,
    };
    let config = client::Config {
        window_size: 8 << 20,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(10)),
        keepalive_max: 3,
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(crate::proto::ciphers::client_order()),
            ..Default::default()
        },
        ..Default::default()
    };
    let refusal = Arc::new(Mutex::new(None));
    let handler = Client {
        host: r.host.clone(),
        port,
        known_hosts,
        accept_new,
        refusal: refusal.clone(),
    };
    let addr = (r.host.as_str(), port);
    let connecting = client::connect(Arc::new(config), addr, handler);
    let res = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(r) => r,
        Err(_) => {
            return Err(StoreError::ConnectTimeout {
                host: label,
                after: CONNECT_TIMEOUT,
            });
        }
    };
    let mut handle = match res {
        Ok(h) => h,
        Err(e) => {
            let refused = refusal.lock().ok().and_then(|mut r| r.take());
            return Err(match (refused, e) {
                (Some(why), _) => why,
                (None, ConnectError::Ssh(russh::Error::Disconnect) | ConnectError::HostKey) => {
                    StoreError::HandshakeClosed { host: label }
                }
                (None, ConnectError::Ssh(e)) => StoreError::Connect {
                    host: label,
                    source: Box::new(e),
                },
            });
        }
    };
    authenticate(&mut handle, r, &user, &label).await?;
    Ok(handle)
}

async fn authenticate(
    handle: &mut Handle,
    r: &Remote,
    user: &str,
    label: &str,
) -> Result<(), StoreError> {
    let fail = |e: russh::Error| StoreError::Ssh {
        what: format!("authenticating to {label}"),
        source: Box::new(e),
    };
    let mut tried: Vec<String> = Vec::new();

    if let Some(agent) = agent().await {
        match agent {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                for id in ids {
                    let key = match id {
                        russh::keys::agent::AgentIdentity::PublicKey { key, .. } => key,
                        _ => continue,
                    };
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash(handle).await
                    } else {
                        None
                    };
                    match handle
                        .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                        .await
                    {
                        Ok(res) if res.success() => return Ok(()),
                        Ok(_) => tried.push(format!("agent key {}", key.algorithm())),
                        Err(e) => tracing::debug!("agent signing failed: {e}"),
                    }
                }
            }
            Err(e) => tracing::debug!("ssh-agent not usable: {e}"),
        }
    }

    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(id) = &r.identity {
        files.push(crate::config::expand_home(id));
    }
    if let Some(h) = home() {
        for n in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            files.push(h.join(".ssh").join(n));
        }
    }
    let mut problems: Vec<String> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if !f.is_file() {
            if i == 0 && r.identity.is_some() {
                problems.push(format!("identity {} does not exist", f.display()));
            }
            continue;
        }
        let key = match load_key(f).await {
            Ok(k) => k,
            Err(m) => {
                problems.push(m);
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            rsa_hash(handle).await
        } else {
            None
        };
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(fail)?;
        if res.success() {
            return Ok(());
        }
        tried.push(f.display().to_string());
    }
    Err(StoreError::AuthRefused {
        host: label.to_string(),
        tried,
        problems,
    })
}

/// rsa-sha2-512/256 as the server allows; rsa-sha2-256 when it does not say.
async fn rsa_hash(handle: &Handle) -> Option<HashAlg> {
    match handle.best_supported_rsa_hash().await {
        Ok(Some(h)) => h,
        _ => Some(HashAlg::Sha256),
    }
}

/// Loads a private key, asking for its passphrase on the terminal when it is encrypted.
async fn load_key(path: &Path) -> Result<PrivateKey, String> {
    let p = path.to_path_buf();
    let res = tokio::task::spawn_blocking(move || match russh::keys::load_secret_key(&p, None) {
        Ok(k) => Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let prompt = format!("Enter passphrase for key {}: ", p.display());
            let pass = rpassword::prompt_password(prompt).map_err(|e| {
                format!(
                    "key {} is encrypted and no passphrase could be read from a terminal ({e}); \
                         add it to ssh-agent with `ssh-add {}` or run on a terminal",
                    p.display(),
                    p.display()
                )
            })?;
            russh::keys::load_secret_key(&p, Some(&pass)).map_err(|e| match e {
                russh::keys::Error::SshKey(_) => {
                    format!("cannot decrypt key {}: wrong passphrase?", p.display())
                }
                e => format!("cannot decrypt key {}: {e}", p.display()),
            })
        }
        Err(e) => Err(format!("cannot read key {}: {e}", p.display())),
    })
    .await;
    match res {
        Ok(r) => r,
        Err(e) => Err(format!("reading key {}: {e}", path.display())),
    }
}
