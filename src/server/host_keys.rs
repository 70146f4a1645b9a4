//! The hub's host keys: one of each kind OpenSSH's sshd keeps (ed25519, ecdsa-sha2-nistp256,
//! RSA 3072), so every client stack finds one it knows. Made on first start (mode 0600, in the
//! state folder, never in the synced one) and kept: a client's known_hosts stays valid.

use super::ServerError;
use crate::config::{HostKeys, expand_home};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use russh::keys::ssh_key::{EcdsaCurve, LineEnding};
use std::path::{Path, PathBuf};

/// The kinds of host key the hub keeps, in the order it offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    Ecdsa,
    Rsa,
}

/// RSA keys are made this size, as OpenSSH's ssh-keygen does.
const RSA_BITS: usize = 3072;

impl KeyKind {
    const ALL: [KeyKind; 3] = [KeyKind::Ed25519, KeyKind::Ecdsa, KeyKind::Rsa];

    /// The kind a missing file of a list is made as: by its name (`…ecdsa…`, `…rsa…`), else
    /// ed25519.
    fn by_name(path: &Path) -> KeyKind {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.contains("ecdsa") {
            KeyKind::Ecdsa
        } else if name.contains("rsa") {
            KeyKind::Rsa
        } else {
            KeyKind::Ed25519
        }
    }

    fn of(key: &PrivateKey) -> Option<KeyKind> {
        match key.algorithm() {
            russh::keys::Algorithm::Ed25519 => Some(KeyKind::Ed25519),
            russh::keys::Algorithm::Ecdsa { .. } => Some(KeyKind::Ecdsa),
            russh::keys::Algorithm::Rsa { .. } => Some(KeyKind::Rsa),
            _ => None,
        }
    }

    /// Where a key of this kind lives beside the configured key `first` (the ed25519 one,
    /// unless the file there already held another kind).
    fn beside(self, first: &Path) -> PathBuf {
        match self {
            KeyKind::Ed25519 => suffixed(first, "_ed25519"),
            KeyKind::Ecdsa => suffixed(first, "_ecdsa"),
            KeyKind::Rsa => suffixed(first, "_rsa"),
        }
    }

    fn generate(self) -> Result<PrivateKey, String> {
        let mut rng = rand::rng();
        let data = match self {
            KeyKind::Ed25519 => KeypairData::from(Ed25519Keypair::random(&mut rng)),
            KeyKind::Ecdsa => KeypairData::from(
                EcdsaKeypair::random(&mut rng, EcdsaCurve::NistP256).map_err(|e| e.to_string())?,
            ),
            KeyKind::Rsa => KeypairData::from(
                RsaKeypair::random(&mut rng, RSA_BITS).map_err(|e| e.to_string())?,
            ),
        };
        PrivateKey::new(data, "filesync host key").map_err(|e| e.to_string())
    }

    fn label(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Ecdsa => "ecdsa-sha2-nistp256",
            KeyKind::Rsa => "RSA",
        }
    }
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    p.with_file_name(name)
}

/// Loads (or makes) every host key the config names. One path is the ed25519 key, and a key
/// of each other kind is kept beside it (`PATH_ecdsa`, `PATH_rsa`) unless that file already
/// holds a kind; a list names exactly the files used.
pub fn load_all(
    configured: Option<&HostKeys>,
    default: &Path,
) -> Result<Vec<PrivateKey>, ServerError> {
    match configured {
        Some(HostKeys::Many(list)) => {
            if list.is_empty() {
                return Err(ServerError::HostKey {
                    path: "[server] host_key".into(),
                    source: HostKeyError::EmptyList,
                });
            }
            list.iter()
                .map(|p| {
                    let p = expand_home(p);
                    load_or_create(&p, KeyKind::by_name(&p))
                })
                .collect()
        }
        Some(HostKeys::One(p)) => load_set(&expand_home(p)),
        None => load_set(default),
    }
}

fn load_set(first: &Path) -> Result<Vec<PrivateKey>, ServerError> {
    let mut keys = vec![load_or_create(first, KeyKind::Ed25519)?];
    for kind in KeyKind::ALL {
        if !keys.iter().any(|k| KeyKind::of(k) == Some(kind)) {
            keys.push(load_or_create(&kind.beside(first), kind)?);
        }
    }
    Ok(keys)
}

/// The hub's own client key (ed25519), for pulling from laptops: read, or made once.
pub fn client_key(path: &Path) -> Result<PrivateKey, ServerError> {
    load_or_create(path, KeyKind::Ed25519)
}

/// What is wrong with one host key file.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("the list is empty; name at least one key file, or remove it")]
    EmptyList,
    #[error("cannot read it (fix its permissions or path)")]
    Read(#[source] std::io::Error),
    #[error("cannot create it")]
    Create(#[source] std::io::Error),
    #[error("not an OpenSSH private key (move it away to have a new one generated)")]
    NotAKey(#[source] russh::keys::ssh_key::Error),
    #[error("the key is encrypted with a passphrase; the server needs an unencrypted key")]
    Encrypted,
    #[error("a {0} key cannot sign for this server; use an ed25519, ecdsa or RSA key")]
    CannotSign(russh::keys::Algorithm),
}

/// Reads the key at `path`, or makes one of `kind` there when there is none.
fn load_or_create(path: &Path, kind: KeyKind) -> Result<PrivateKey, ServerError> {
    let err = |source| ServerError::HostKey {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create(path, kind) {
            // Another process made it first: use what it made.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| err(HostKeyError::Read(e)))?;
                parse(&text).map_err(err)
            }
            Err(e) => Err(err(HostKeyError::Create(e))),
            Ok(key) => {
                tracing::info!(path = %path.display(), "generated a new {} host key", kind.label());
                Ok(key)
            }
        },
        Err(e) => Err(err(HostKeyError::Read(e))),
    }
}

fn parse(text: &str) -> Result<PrivateKey, HostKeyError> {
    let key = PrivateKey::from_openssh(text).map_err(HostKeyError::NotAKey)?;
    if key.is_encrypted() {
        return Err(HostKeyError::Encrypted);
    }
    if KeyKind::of(&key).is_none() {
        return Err(HostKeyError::CannotSign(key.algorithm()));
    }
    Ok(key)
}

/// Makes a key of `kind` at `path` (0600, durable), never replacing a file that is there.
fn create(path: &Path, kind: KeyKind) -> std::io::Result<PrivateKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = kind.generate().map_err(std::io::Error::other)?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_file_names_and_siblings_are_named_beside_the_first() {
        assert_eq!(
            KeyKind::by_name(Path::new("/k/ssh_host_ecdsa_key")),
            KeyKind::Ecdsa
        );
        assert_eq!(KeyKind::by_name(Path::new("/k/host_key_rsa")), KeyKind::Rsa);
        assert_eq!(KeyKind::by_name(Path::new("/k/host_key")), KeyKind::Ed25519);
        assert_eq!(
            KeyKind::Ed25519.beside(Path::new("/s/host_key")),
            PathBuf::from("/s/host_key_ed25519")
        );
        assert_eq!(
            KeyKind::Ecdsa.beside(Path::new("/s/host_key")),
            PathBuf::from("/s/host_key_ecdsa")
        );
        assert_eq!(
            KeyKind::Rsa.beside(Path::new("/s/host_key")),
            PathBuf::from("/s/host_key_rsa")
        );
    }

    #[test]
    fn one_path_gives_three_kinds_made_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("state/host_key");
        let keys = load_all(None, &first).unwrap();
        let kinds: Vec<_> = keys.iter().filter_map(KeyKind::of).collect();
        assert_eq!(kinds, KeyKind::ALL.to_vec());
        for p in [
            first.clone(),
            suffixed(&first, "_ecdsa"),
            suffixed(&first, "_rsa"),
        ] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        // Loaded again: the same keys, nothing new made.
        let again = load_all(Some(&HostKeys::One(first.clone())), Path::new("/unused")).unwrap();
        let fp = |k: &PrivateKey| k.public_key().fingerprint(russh::keys::HashAlg::Sha256);
        assert_eq!(
            keys.iter().map(fp).collect::<Vec<_>>(),
            again.iter().map(fp).collect::<Vec<_>>()
        );
        // A list names exactly the keys used.
        let only = load_all(
            Some(&HostKeys::Many(vec![suffixed(&first, "_rsa")])),
            Path::new("/unused"),
        )
        .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(fp(&only[0]), fp(&keys[2]));
        // Bad files are one-line errors naming them.
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not a key").unwrap();
        let e = load_all(Some(&HostKeys::Many(vec![bad])), Path::new("/unused")).unwrap_err();
        let e = crate::store::Chain(&e).to_string();
        assert!(
            e.contains("bad") && e.contains("not an OpenSSH private key"),
            "{e}"
        );
    }
}
