//! The hub's devices: each laptop or phone that may log in, by name, with a public key or a
//! password (kept only as an argon2 hash), when it was added, when and from where it was last
//! seen. One JSON file in the state folder (the hardened unit may write there, upgrades keep
//! it), read again whenever it changed on disk, so an edit by another process counts at the
//! next login without a restart.

use russh::keys::PublicKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FILE: &str = "devices.json";
/// A login refreshes `last_seen` on disk at most this often (an SD card is not written per
/// login).
const SEEN_EVERY: i64 = 600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    Key(String),
    Password(String),
}

/// A laptop the hub pulls from (paired with `--serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pull {
    pub url: String,
    pub every: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub credential: Credential,
    pub added: i64,
    #[serde(default)]
    pub last_seen: Option<i64>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub pull: Option<Pull>,
}

impl Device {
    pub fn kind(&self) -> &'static str {
        match self.credential {
            Credential::Key(_) => "key",
            Credential::Password(_) => "password",
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    devices: Vec<Device>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("cannot read the devices file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the devices file {path} is damaged ({why}); fix it or move it away")]
    Damaged { path: String, why: String },
    #[error("cannot write the devices file {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("there is already a device named {0:?}; pick another name or revoke it first")]
    Taken(String),
    #[error("that key is already device {0:?}'s; revoke {0:?} first")]
    KeyTaken(String),
    #[error("{0:?} is not a device name: use letters, digits, `-`, `_` or `.` (at most 64)")]
    BadName(String),
}

/// What was on disk when it was last read.
#[derive(Debug, Default)]
struct Cache {
    stamp: Option<(i64, i64, u64, u64)>,
    devices: Arc<Vec<Device>>,
    keys: Arc<Vec<(String, PublicKey)>>,
}

#[derive(Debug)]
pub struct Devices {
    path: PathBuf,
    cache: Mutex<Cache>,
}

pub use crate::pair::protocol::valid_name;

fn stamp(path: &Path) -> Option<(i64, i64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.len(), m.ino()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Devices {
    /// The devices kept in `dir` (none yet is fine).
    pub fn open(dir: &Path) -> Result<Devices, DevicesError> {
        let d = Devices {
            path: dir.join(FILE),
            cache: Mutex::default(),
        };
        d.refresh()?;
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Book, DevicesError> {
        let shown = || self.path.display().to_string();
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| DevicesError::Damaged {
                path: shown(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
            Err(source) => Err(DevicesError::Read {
                path: shown(),
                source,
            }),
        }
    }

    /// Reads the file again when it changed since the last look.
    fn refresh(&self) -> Result<(), DevicesError> {
        let now = stamp(&self.path);
        let mut c = lock(&self.cache);
        if c.stamp == now && now.is_some() {
            return Ok(());
        }
        let book = self.read()?;
        let keys = book
            .devices
            .iter()
            .filter_map(|d| match &d.credential {
                Credential::Key(k) => PublicKey::from_openssh(k).ok().map(|k| (d.name.clone(), k)),
                Credential::Password(_) => None,
            })
            .collect();
        *c = Cache {
            stamp: now,
            devices: Arc::new(book.devices),
            keys: Arc::new(keys),
        };
        Ok(())
    }

    /// The devices as the file has them now; a damaged file keeps the last good list (and
    /// says so).
    pub fn list(&self) -> Arc<Vec<Device>> {
        if let Err(e) = self.refresh() {
            tracing::warn!("{e}");
        }
        lock(&self.cache).devices.clone()
    }

    /// The cache for a login: none while the file is damaged, so a hand-edited revocation
    /// that broke the JSON refuses device logins rather than keeping the old list.
    fn for_login(&self) -> Option<std::sync::MutexGuard<'_, Cache>> {
        match self.refresh() {
            Ok(()) => Some(lock(&self.cache)),
            Err(e) => {
                tracing::error!("device logins refused: {e}");
                None
            }
        }
    }

    /// The device whose key this is.
    pub fn by_key(&self, key: &PublicKey) -> Option<String> {
        let keys = self.for_login()?.keys.clone();
        keys.iter()
            .find(|(_, k)| k.key_data() == key.key_data())
            .map(|(n, _)| n.clone())
    }

    /// The argon2 hash of the password device named `user`.
    pub fn password_hash(&self, user: &str) -> Option<String> {
        let devices = self.for_login()?.devices.clone();
        devices.iter().find_map(|d| match &d.credential {
            Credential::Password(h) if d.name == user => Some(h.clone()),
            _ => None,
        })
    }

    pub fn any_password(&self) -> bool {
        self.list()
            .iter()
            .any(|d| matches!(d.credential, Credential::Password(_)))
    }

    /// Changes the file under a lock of this process, read fresh and written whole.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Book) -> Result<T, DevicesError>,
    ) -> Result<T, DevicesError> {
        static WRITING: Mutex<()> = Mutex::new(());
        let _held = lock(&WRITING);
        let mut book = self.read()?;
        let out = f(&mut book)?;
        self.write(&book)?;
        self.refresh()?;
        Ok(out)
    }

    fn write(&self, book: &Book) -> Result<(), DevicesError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| DevicesError::Write {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let text = serde_json::to_string_pretty(book).map_err(|e| err(std::io::Error::other(e)))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    /// Adds a device; its name must be new, and so must its key (one key is one device, so
    /// revoking it ends the key's access).
    pub fn add(&self, device: Device) -> Result<(), DevicesError> {
        if !valid_name(&device.name) {
            return Err(DevicesError::BadName(device.name));
        }
        self.change(|b| {
            if b.devices.iter().any(|d| d.name == device.name) {
                return Err(DevicesError::Taken(device.name.clone()));
            }
            if let Some(d) = b.devices.iter().find(|d| same_key(d, &device)) {
                return Err(DevicesError::KeyTaken(d.name.clone()));
            }
            b.devices.push(device);
            Ok(())
        })
    }

    /// Adds a paired device named `want` (else `want-2`, …): a device with the same key is
    /// the same laptop paired again, so its entry is replaced (and its name reused). The
    /// name given, and the names replaced.
    pub fn pair(&self, want: &str, device: Device) -> Result<(String, Vec<String>), DevicesError> {
        if !valid_name(want) {
            return Err(DevicesError::BadName(want.to_string()));
        }
        self.change(|b| {
            let mut replaced = Vec::new();
            b.devices.retain(|d| {
                let same = same_key(d, &device);
                if same {
                    replaced.push(d.name.clone());
                }
                !same
            });
            let name = free_name(&b.devices, want);
            b.devices.push(Device {
                name: name.clone(),
                ..device
            });
            Ok((name, replaced))
        })
    }

    /// Removes device `name` and any other entry with its key (a revoked key logs in as
    /// nothing); the names removed, none when there is no such device.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, DevicesError> {
        self.change(|b| {
            let Some(gone) = b.devices.iter().find(|d| d.name == name).cloned() else {
                return Ok(Vec::new());
            };
            let mut removed = Vec::new();
            b.devices.retain(|d| {
                let keep = d.name != name && !same_key(d, &gone);
                if !keep {
                    removed.push(d.name.clone());
                }
                keep
            });
            Ok(removed)
        })
    }

    /// Notes a login of `name` from `from` (on disk at most every `SEEN_EVERY`).
    pub fn seen(&self, name: &str, from: &str) {
        let now = crate::time::now_secs();
        let stale = self.list().iter().any(|d| {
            d.name == name
                && (d.from.as_deref() != Some(from)
                    || d.last_seen.is_none_or(|t| now - t >= SEEN_EVERY))
        });
        if !stale {
            return;
        }
        let res = self.change(|b| {
            for d in b.devices.iter_mut().filter(|d| d.name == name) {
                d.last_seen = Some(now);
                d.from = Some(from.to_string());
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::warn!("{e}");
        }
    }
}

/// Both are key devices with the same key (comments aside).
fn same_key(a: &Device, b: &Device) -> bool {
    match (&a.credential, &b.credential) {
        (Credential::Key(x), Credential::Key(y)) => crate::pair::protocol::same_key(x, y),
        _ => false,
    }
}

/// A name not used in `devices`: `want`, else `want-2`, `want-3`, …
fn free_name(devices: &[Device], want: &str) -> String {
    let taken = |n: &str| devices.iter().any(|d| d.name == n);
    if !taken(want) {
        return want.to_string();
    }
    (2..)
        .map(|i| format!("{want}-{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| want.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq9Y3DmOZFBFYQnW5pwXlBLbEKBuGv2NFAaH9Uq3/Kq me@host";

    fn key_device(name: &str) -> Device {
        Device {
            name: name.into(),
            credential: Credential::Key(ED.into()),
            added: 1,
            last_seen: None,
            from: None,
            pull: None,
        }
    }

    #[test]
    fn devices_are_kept_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = Devices::open(dir.path()).unwrap();
        assert!(d.list().is_empty());
        d.add(key_device("laptop")).unwrap();
        assert!(matches!(
            d.add(key_device("laptop")),
            Err(DevicesError::Taken(_))
        ));
        assert!(matches!(
            d.add(key_device("../x")),
            Err(DevicesError::BadName(_))
        ));
        let key = PublicKey::from_openssh(ED).unwrap();
        assert_eq!(d.by_key(&key).as_deref(), Some("laptop"));

        // Another process's view of the same folder sees it, and its removal counts here.
        let other = Devices::open(dir.path()).unwrap();
        assert_eq!(other.list().len(), 1);
        assert_eq!(other.remove("laptop").unwrap(), ["laptop"]);
        assert!(other.remove("laptop").unwrap().is_empty());
        assert_eq!(d.by_key(&key), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn one_key_is_one_device_and_revoking_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = Devices::open(dir.path()).unwrap();
        let key = PublicKey::from_openssh(ED).unwrap();
        d.add(key_device("laptop")).unwrap();
        assert!(matches!(
            d.add(key_device("other")),
            Err(DevicesError::KeyTaken(n)) if n == "laptop"
        ));
        // The same laptop paired again keeps its name; its old entry goes.
        let mut again = key_device("ignored");
        again.added = 2;
        assert_eq!(
            d.pair("laptop", again).unwrap(),
            ("laptop".to_string(), vec!["laptop".to_string()])
        );
        assert_eq!(d.list().len(), 1);
        assert_eq!(d.list()[0].added, 2);
        // Asking for a taken name gives the next free one.
        let mut phone = key_device("phone");
        phone.credential = Credential::Password("$argon2id$x".into());
        d.add(phone).unwrap();
        assert_eq!(
            d.pair("phone", key_device("x")).unwrap(),
            ("phone-2".to_string(), vec!["laptop".to_string()])
        );

        // A file edited by hand with the key twice: revoking one revokes the key.
        let mut book: Book =
            serde_json::from_str(&std::fs::read_to_string(d.path()).unwrap()).unwrap();
        book.devices.push(key_device("copy"));
        std::fs::write(d.path(), serde_json::to_string(&book).unwrap()).unwrap();
        assert!(d.by_key(&key).is_some());
        let mut gone = d.remove("copy").unwrap();
        gone.sort();
        assert_eq!(gone, ["copy", "phone-2"]);
        assert_eq!(d.by_key(&key), None);
    }

    #[test]
    fn a_damaged_file_is_a_clear_error_and_refuses_device_logins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        let e = Devices::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains("damaged"), "{e}");
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let d = Devices::open(dir.path()).unwrap();
        d.add(key_device("a")).unwrap();
        let mut phone = key_device("phone");
        phone.credential = Credential::Password("$argon2id$x".into());
        d.add(phone).unwrap();
        let key = PublicKey::from_openssh(ED).unwrap();
        assert!(d.by_key(&key).is_some());
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        // Listing keeps the last good list; logins fail closed.
        assert_eq!(d.list().len(), 2);
        assert_eq!(d.by_key(&key), None);
        assert_eq!(d.password_hash("phone"), None);
        assert!(d.add(key_device("b")).is_err());
    }

    #[test]
    fn passwords_are_found_by_device_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = Devices::open(dir.path()).unwrap();
        let mut phone = key_device("phone");
        phone.credential = Credential::Password("$argon2id$x".into());
        d.add(phone).unwrap();
        assert!(d.any_password());
        assert_eq!(d.password_hash("phone").as_deref(), Some("$argon2id$x"));
        assert_eq!(d.password_hash("laptop"), None);
    }
}
