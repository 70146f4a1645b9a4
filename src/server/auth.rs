//! Who may log in: the authorized public keys and an optional argon2 password hash. (How often
//! an address may fail is `admission`'s.)

use russh::keys::PublicKey;
use std::path::{Path, PathBuf};

/// Parses an OpenSSH `authorized_keys` file. Lines with options before the key type are
/// accepted (the options are ignored: this server only offers SFTP in one folder anyway).
pub fn parse_authorized_keys(text: &str) -> (Vec<PublicKey>, Vec<usize>) {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .match_indices(|c: char| c.is_ascii_whitespace())
            .map(|(i, _)| i + 1)
            .chain(std::iter::once(0))
            .filter(|&i| {
                let rest = &line[i..];
                rest.starts_with("ssh-") || rest.starts_with("ecdsa-") || rest.starts_with("sk-")
            })
            .find_map(|i| PublicKey::from_openssh(&line[i..]).ok());
        match parsed {
            Some(k) => keys.push(k),
            None => bad.push(n + 1),
        }
    }
    (keys, bad)
}

pub fn key_allowed(allowed: &[PublicKey], key: &PublicKey) -> bool {
    allowed.iter().any(|k| k.key_data() == key.key_data())
}

/// Checks a password against an argon2 PHC string; any problem with the hash is a refusal.
pub fn password_ok(hash: &str, password: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Reads the authorized keys file, or says in one line what is wrong and what to do.
/// Why the keys allowed in could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizedKeysError {
    #[error("cannot read authorized_keys {} (create it with the public keys allowed in)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "authorized_keys {} holds no usable public key; add one (ed25519, ecdsa or rsa) to let clients in",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error("no authorized_keys file: set [server] authorized_keys (HOME is unset)")]
    NoPath,
}

pub fn load_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, AuthorizedKeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthorizedKeysError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (keys, bad) = parse_authorized_keys(&text);
    for line in &bad {
        tracing::warn!(
            "{}:{line}: not a public key this server understands; skipped",
            path.display()
        );
    }
    if keys.is_empty() {
        return Err(AuthorizedKeysError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq9Y3DmOZFBFYQnW5pwXlBLbEKBuGv2NFAaH9Uq3/Kq me@host";

    #[test]
    fn parses_keys_with_options_and_comments() {
        let text = format!("# comment\n\n{ED}\nno-pty,command=\"x y\" {ED}\ngarbage here\n");
        let (keys, bad) = parse_authorized_keys(&text);
        assert_eq!(keys.len(), 2);
        assert_eq!(bad, vec![5]);
        assert!(key_allowed(&keys, &keys[0]));
    }

    #[test]
    fn passwords_check_against_argon2_hashes() {
        use argon2::password_hash::PasswordHasher;
        let hash = argon2::Argon2::default()
            .hash_password_with_salt(b"hunter2", b"somesaltsomesalt")
            .unwrap()
            .to_string();
        assert!(password_ok(&hash, "hunter2"));
        assert!(!password_ok(&hash, "hunter3"));
        assert!(!password_ok("not a hash", "hunter2"));
    }
}
