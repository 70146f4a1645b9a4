//! What the hub's owner asks of a running server (through the daemon's control socket): a
//! pairing code, the devices, a phone's password, a revocation that ends the device's open
//! sessions at once. Also what pairing connections need: the codes and the hub's identity.

use super::devices::{Credential, Device, Devices, DevicesError, Pull};
use crate::pair::code::{Code, Invitations, LIFETIME, Terms};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Handles = Arc<Mutex<HashMap<u64, russh::server::Handle>>>;

/// What the owner is told after `devices add-phone`: shown once, kept only as a hash.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PhoneLogin {
    pub user: String,
    pub password: String,
    pub port: u16,
    pub fingerprints: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewCode {
    pub code: String,
    pub expires_secs: u64,
    pub port: u16,
    pub fingerprints: Vec<String>,
}

pub struct Control {
    pub devices: Arc<Devices>,
    pub invitations: Mutex<Invitations>,
    /// The hub's state folder: devices, its own client key, the known_hosts of laptops.
    pub state_dir: PathBuf,
    /// The hub's host public keys, OpenSSH lines without comments.
    pub host_keys: Vec<String>,
    pub name: Mutex<String>,
    pub port: u16,
    pub handles: Handles,
    /// Connection id → the device logged in on it.
    pub online: Mutex<HashMap<u64, String>>,
    /// Raised when a pairing added a laptop the hub pulls from (the daemon restarts its
    /// schedule).
    pub pulls_changed: tokio::sync::Notify,
    /// The id of the code taken from `[server] pair_code_file`, remembered once used.
    file_code: Mutex<Option<String>>,
}

/// How long after a start the code file's code is taken.
const FILE_CODE_LIFETIME: Duration = Duration::from_secs(3600);
/// Tags of file codes already used, so a code left on the boot partition is never taken again.
const USED_CODES: &str = "used-pair-codes";

fn code_tag(code: &Code) -> String {
    blake3::hash(code.secret()).to_hex()[..32].to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub use crate::pair::protocol::public_line;

impl Control {
    pub fn new(
        state_dir: &Path,
        host_keys: &[PrivateKey],
        port: u16,
    ) -> Result<Control, DevicesError> {
        Ok(Control {
            devices: Arc::new(Devices::open(state_dir)?),
            invitations: Mutex::default(),
            state_dir: state_dir.to_path_buf(),
            host_keys: host_keys
                .iter()
                .map(|k| public_line(k.public_key()))
                .collect(),
            name: Mutex::new(crate::sys::hostname()),
            port,
            handles: Arc::default(),
            online: Mutex::default(),
            pulls_changed: tokio::sync::Notify::new(),
            file_code: Mutex::default(),
        })
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.host_keys
            .iter()
            .filter_map(|k| PublicKey::from_openssh(k).ok())
            .map(|k| format!("{} {}", k.algorithm(), k.fingerprint(HashAlg::Sha256)))
            .collect()
    }

    pub fn hub_name(&self) -> String {
        lock(&self.name).clone()
    }

    pub fn new_code(&self, terms: Terms) -> NewCode {
        let inv = lock(&self.invitations).issue(terms, Instant::now(), LIFETIME);
        tracing::info!(
            id = inv.code.id(),
            "pairing code made; valid for {} min",
            LIFETIME.as_secs() / 60
        );
        NewCode {
            code: inv.code.to_string(),
            expires_secs: LIFETIME.as_secs(),
            port: self.port,
            fingerprints: self.fingerprints(),
        }
    }

    /// Takes the code written down in `path` (the boot partition's) for an hour, unless it
    /// was used before; a file that is not there is no code.
    pub fn take_code_file(&self, path: &Path) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let code = match Code::parse(text.trim()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; make one with `filesync pair --new --file {}`",
                    path.display(),
                    path.display()
                );
                return;
            }
        };
        let used = std::fs::read_to_string(self.state_dir.join(USED_CODES)).unwrap_or_default();
        if used.lines().any(|l| l == code_tag(&code)) {
            tracing::info!(path = %path.display(), "the pairing code there was used already");
            return;
        }
        *lock(&self.file_code) = Some(code.id().to_string());
        lock(&self.invitations).add(code, Terms::default(), Instant::now() + FILE_CODE_LIFETIME);
        tracing::info!(path = %path.display(), "pairing code from the file taken for {} min, until used", FILE_CODE_LIFETIME.as_secs() / 60);
    }

    /// Remembers a used code from the file, so it is not taken at the next start.
    pub fn note_used(&self, code: &Code) {
        if lock(&self.file_code).as_deref() != Some(code.id()) {
            return;
        }
        use std::io::Write;
        let path = self.state_dir.join(USED_CODES);
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{}", code_tag(code)).and_then(|()| f.sync_all()));
        if let Err(e) = res {
            tracing::warn!(
                "cannot note the used pairing code in {}: {e}",
                path.display()
            );
        }
    }

    pub fn devices(&self) -> Vec<Device> {
        self.devices.list().as_ref().clone()
    }

    /// A password device: the password is made here, shown once, kept as an argon2 hash.
    pub fn add_phone(&self, name: &str) -> Result<PhoneLogin, DevicesError> {
        use argon2::password_hash::PasswordHasher;
        let password = random_password();
        let salt: [u8; 16] = rand::random();
        let hash = argon2::Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map_err(|e| DevicesError::Damaged {
                path: "argon2".into(),
                why: e.to_string(),
            })?
            .to_string();
        self.devices.add(Device {
            name: name.to_string(),
            credential: Credential::Password(hash),
            added: crate::time::now_secs(),
            last_seen: None,
            from: None,
            pull: None,
        })?;
        tracing::info!(device = name, "phone added (password login)");
        Ok(PhoneLogin {
            user: name.to_string(),
            password,
            port: self.port,
            fingerprints: self.fingerprints(),
        })
    }

    /// Removes device `name` and ends its open sessions; how many were ended, or `None`
    /// when there is no such device.
    pub async fn revoke(&self, name: &str) -> Result<Option<usize>, DevicesError> {
        let had_pull = self
            .devices
            .list()
            .iter()
            .any(|d| d.name == name && d.pull.is_some());
        if !self.devices.remove(name)? {
            return Ok(None);
        }
        let ids: Vec<u64> = lock(&self.online)
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(id, _)| *id)
            .collect();
        let handles: Vec<_> = {
            let h = lock(&self.handles);
            ids.iter().filter_map(|id| h.get(id).cloned()).collect()
        };
        for h in &handles {
            let _ = h
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "this device was revoked".into(),
                    "en".into(),
                )
                .await;
        }
        tracing::info!(device = name, sessions = handles.len(), "device revoked");
        if had_pull {
            self.pulls_changed.notify_one();
        }
        Ok(Some(handles.len()))
    }

    /// The laptops the hub pulls from, as peers of its config.
    pub fn pulls(&self) -> Vec<(String, Pull)> {
        self.devices
            .list()
            .iter()
            .filter_map(|d| d.pull.clone().map(|p| (d.name.clone(), p)))
            .collect()
    }
}

/// 20 characters of Crockford base32 (100 bits), in groups of five for typing on a phone.
fn random_password() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let chars: Vec<char> = (0..20)
        .map(|_| ALPHABET[rand::random_range(0..32usize)] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}
