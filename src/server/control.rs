//! What the hub's owner asks of a running server (through the daemon's control socket): a
//! pairing code, the devices, a phone's password, a revocation that ends the device's open
//! sessions at once. Also what pairing connections need: the codes and the hub's identity.

use super::devices::{Credential, Device, Devices, DevicesError, Pull};
use crate::pair::code::{Code, Invitations, LIFETIME, Lookup, MAX_WRONG, Terms, Wrong};
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
    /// Raised whenever a connection is over (its handle gone from `handles`).
    pub sessions_ended: tokio::sync::Notify,
    /// Raised when a pairing added a laptop the hub pulls from (the daemon restarts its
    /// schedule).
    pub pulls_changed: tokio::sync::Notify,
    /// The keys of `[server] authorized_keys` (they log in as no device).
    pub authorized: Vec<PublicKey>,
    /// The code taken from `[server] pair_code_file`, while it may be used.
    file_code: Mutex<Option<Code>>,
}

/// How long ending a device's sessions waits for them to close.
const SESSION_END_WAIT: Duration = Duration::from_secs(5);
/// How long after a start the code file's code is taken.
const FILE_CODE_LIFETIME: Duration = Duration::from_secs(3600);
/// What became of file codes, one line each, so a code left on the boot partition keeps its
/// rules across restarts: `TAG` when it is done (used, burnt or expired), `try TAG` per
/// try, `taken TAG SECS` when it was first taken.
pub(super) const USED_CODES: &str = "used-pair-codes";

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
        authorized: Vec<PublicKey>,
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
            sessions_ended: tokio::sync::Notify::new(),
            pulls_changed: tokio::sync::Notify::new(),
            authorized,
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

    /// Takes the code written down in `path` (the boot partition's, moved to the state
    /// folder) for an hour from when it was first taken, while no device is paired, unless it was
    /// used, burnt or expired before; a file that is not there is no code.
    pub fn take_code_file(&self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(
                    "cannot read the pairing code file {} ({e}); make it readable by the hub's user, or remove it",
                    path.display()
                );
                return;
            }
        };
        let code = match Code::parse(text.trim()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; write a code from `filesync pair --new --file FILE` there (on the image: the boot partition's filesync/pair-code.txt)",
                    path.display()
                );
                return;
            }
        };
        if !self.first_pairing() {
            tracing::info!(path = %path.display(), "the pairing code there is not taken: this hub has paired devices already (make a code with `sudo filesync pair --new`)");
            return;
        }
        let tag = code_tag(&code);
        let state = std::fs::read_to_string(self.state_dir.join(USED_CODES)).unwrap_or_default();
        let mut tries = 0;
        let mut taken = None;
        for line in state.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some(t), None, _) if t == tag => {
                    tracing::info!(path = %path.display(), "the pairing code there was used, burnt or expired already");
                    return;
                }
                (Some("try"), Some(t), None) if t == tag => tries += 1,
                (Some("taken"), Some(t), Some(secs)) if t == tag && taken.is_none() => {
                    taken = secs.parse::<i64>().ok();
                }
                _ => {}
            }
        }
        let now = crate::time::now_secs();
        let Some(taken) = taken.or_else(|| self.note(&format!("taken {tag} {now}")).then_some(now))
        else {
            return;
        };
        // A clock set back counts as no time gone; the hour is never longer.
        let gone = Duration::from_secs(now.saturating_sub(taken).max(0) as u64);
        if gone >= FILE_CODE_LIFETIME || tries >= MAX_WRONG {
            self.note(&tag);
            tracing::info!(path = %path.display(), "the pairing code there expired or was burnt by wrong tries");
            return;
        }
        let left = FILE_CODE_LIFETIME - gone;
        lock(&self.invitations).add_tried(
            code.clone(),
            Terms::default(),
            Instant::now() + left,
            tries,
        );
        *lock(&self.file_code) = Some(code);
        tracing::info!(path = %path.display(), "pairing code from the file taken for {} min, until used", left.as_secs().div_ceil(60));
    }

    /// No device paired yet: the boot partition's code may pair the first. Keys of
    /// `authorized_keys` do not count: Raspberry Pi Imager's first boot puts the
    /// administrator's SSH keys there, and whoever wrote the card wrote the code too.
    fn first_pairing(&self) -> bool {
        self.devices.list().is_empty()
    }

    /// The file code, when `id` names it.
    fn file_code(&self, id: &str) -> Option<Code> {
        lock(&self.file_code).clone().filter(|c| c.id() == id)
    }

    /// Takes a try at code `id` (kept on disk for the file's code, which is dropped once the
    /// hub has a device).
    pub fn try_code(&self, id: &str) -> Lookup {
        let file = self.file_code(id);
        if let Some(code) = &file
            && !self.first_pairing()
        {
            lock(&self.invitations).consume(id, Instant::now());
            self.note_done(code);
            return Lookup::Unknown;
        }
        let found = lock(&self.invitations).lookup(id, Instant::now());
        if let Some(code) = &file {
            match &found {
                Lookup::Found(..) => {
                    self.note(&format!("try {}", code_tag(code)));
                }
                Lookup::Expired | Lookup::Unknown => self.note_done(code),
            }
        }
        found
    }

    /// A try at code `id` that failed: what is left of the code.
    pub fn wrong(&self, id: &str) -> Wrong {
        let left = lock(&self.invitations).wrong(id);
        if matches!(left, Wrong::Burnt | Wrong::Gone)
            && let Some(code) = self.file_code(id)
        {
            self.note_done(&code);
        }
        left
    }

    /// Uses code `code` up; false when it went meanwhile (used, burnt or expired).
    pub fn consume(&self, code: &Code) -> bool {
        let used = lock(&self.invitations).consume(code.id(), Instant::now());
        if self.file_code(code.id()).is_some() {
            self.note_done(code);
        }
        used
    }

    /// Remembers the file code as done, so it is not taken at the next start.
    fn note_done(&self, code: &Code) {
        let mut file = lock(&self.file_code);
        if file.as_ref().is_some_and(|c| c.id() == code.id()) {
            *file = None;
            drop(file);
            self.note(&code_tag(code));
        }
    }

    /// Appends `line` to the file codes' record; false (and logged) when it cannot.
    fn note(&self, line: &str) -> bool {
        use std::io::Write;
        let path = self.state_dir.join(USED_CODES);
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}").and_then(|()| f.sync_all()));
        if let Err(e) = res {
            tracing::warn!(
                "cannot note the pairing code's use in {}: {e}",
                path.display()
            );
            return false;
        }
        true
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

    /// Removes device `name` and ends its open sessions; how many, or `None` when there is
    /// no such device. A login of that device that was checked just before is
    /// either among the sessions ended or refused (`admit`).
    pub async fn revoke(&self, name: &str) -> Result<Option<Ended>, DevicesError> {
        let pulling: Vec<String> = self.pulls().into_iter().map(|(n, _)| n).collect();
        let (removed, sessions) = self.change_ending(|d| {
            let removed = d.remove(name)?;
            Ok((removed.clone(), removed))
        })?;
        if removed.is_empty() {
            return Ok(None);
        }
        if removed.len() > 1 {
            tracing::warn!(device = name, also = %removed.join(", "), "these devices had the same key and are revoked with it");
        }
        let ended = self
            .end_sessions(&sessions, "this device was revoked")
            .await;
        tracing::info!(device = name, sessions = ended.sessions, "device revoked");
        if removed.iter().any(|n| pulling.contains(n)) {
            self.pulls_changed.notify_one();
        }
        Ok(Some(ended))
    }

    /// Changes the devices while no login is admitted (`admit` takes the same lock), and
    /// the connections of the devices `f` names, which the change ended.
    pub fn change_ending<T>(
        &self,
        f: impl FnOnce(&Devices) -> Result<(T, Vec<String>), DevicesError>,
    ) -> Result<(T, Vec<u64>), DevicesError> {
        let online = lock(&self.online);
        let (out, names) = f(&self.devices)?;
        let ids = online
            .iter()
            .filter(|(_, n)| names.contains(n))
            .map(|(id, _)| *id)
            .collect();
        Ok((out, ids))
    }

    /// Notes connection `id` as device `name`'s, unless `still` (asked under the lock that
    /// `change_ending` holds) says the device was revoked or replaced since its login was
    /// checked.
    pub fn admit(&self, id: u64, name: &str, still: impl FnOnce() -> bool) -> bool {
        let mut online = lock(&self.online);
        if !still() {
            return false;
        }
        online.insert(id, name.to_string());
        true
    }

    /// Disconnects connections `ids` and waits (a few seconds at most) until they are over.
    pub async fn end_sessions(&self, ids: &[u64], why: &str) -> Ended {
        let handles: Vec<_> = {
            let h = lock(&self.handles);
            ids.iter().filter_map(|id| h.get(id).cloned()).collect()
        };
        for h in &handles {
            let _ = h
                .disconnect(russh::Disconnect::ByApplication, why.into(), "en".into())
                .await;
        }
        let over = async {
            loop {
                let ended = self.sessions_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if !ids.iter().any(|id| lock(&self.handles).contains_key(id)) {
                    return;
                }
                ended.await;
            }
        };
        let closing = match tokio::time::timeout(SESSION_END_WAIT, over).await {
            Ok(()) => 0,
            Err(_) => {
                let h = lock(&self.handles);
                ids.iter().filter(|id| h.contains_key(id)).count()
            }
        };
        if closing > 0 {
            tracing::warn!(closing, "some ended sessions are still closing");
        }
        Ended {
            sessions: handles.len(),
            closing,
        }
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

/// Sessions told to end, and how many of them were still closing when the wait ran out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ended {
    pub sessions: usize,
    pub closing: usize,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_laptop(dir: &Path) -> (Control, PublicKey) {
        use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
        let ctl = Control::new(dir, &[], 2222, Vec::new()).unwrap();
        let pair = Ed25519Keypair::random(&mut rand::rng());
        let key = PrivateKey::new(KeypairData::from(pair), "")
            .unwrap()
            .public_key()
            .clone();
        ctl.devices
            .add(Device {
                name: "laptop".into(),
                credential: Credential::Key(public_line(&key)),
                added: 0,
                last_seen: None,
                from: None,
                pull: None,
            })
            .unwrap();
        (ctl, key)
    }

    fn revoke_now(ctl: &Control) -> Vec<u64> {
        let (_, ended) = ctl
            .change_ending(|d| {
                let gone = d.remove("laptop")?;
                Ok(((), gone))
            })
            .unwrap();
        ended
    }

    #[test]
    fn a_login_checked_before_a_revocation_is_ended_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ctl, key) = with_laptop(dir.path());
        let still = || ctl.devices.by_key(&key).as_deref() == Some("laptop");
        // Both logins found the key; one is admitted before the revocation, one after.
        assert!(still());
        assert!(ctl.admit(1, "laptop", still));
        assert_eq!(revoke_now(&ctl), vec![1]);
        assert!(!ctl.admit(2, "laptop", still));
        assert!(!lock(&ctl.online).contains_key(&2));
    }

    #[test]
    fn logins_racing_a_revocation_are_all_ended_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ctl, key) = with_laptop(dir.path());
        let ended = std::thread::scope(|s| {
            for id in 0..64u64 {
                let (ctl, key) = (&ctl, &key);
                s.spawn(move || {
                    // The credential check, then (later) the admission.
                    if ctl.devices.by_key(key).as_deref() == Some("laptop") {
                        std::thread::yield_now();
                        ctl.admit(id, "laptop", || {
                            ctl.devices.by_key(key).as_deref() == Some("laptop")
                        });
                    }
                });
            }
            revoke_now(&ctl)
        });
        let online: Vec<u64> = lock(&ctl.online).keys().copied().collect();
        assert!(
            online.iter().all(|id| ended.contains(id)),
            "admitted {online:?}, ended {ended:?}"
        );
    }
}
