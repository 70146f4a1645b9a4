//! Who may log in: the authorized public keys, an optional argon2 password hash, and a
//! per-address limit on failed attempts.

use russh::keys::PublicKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address within `WINDOW` after which it is turned away until the window ends.
/// Each key a client offers that is not authorized counts, so leave room for agents with a few keys.
const MAX_FAILURES: u32 = 30;
const WINDOW: Duration = Duration::from_secs(60);

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

/// Counts failed logins per address so a guesser is slowed down and then shut out.
#[derive(Default)]
pub struct FailureLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    pub fn record_failure(&self, ip: IpAddr) -> u32 {
        let Ok(mut seen) = self.seen.lock() else {
            return 0;
        };
        let now = Instant::now();
        // Bound the table: forget windows that are over.
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let e = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1
    }

    pub fn blocked(&self, ip: IpAddr) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        matches!(seen.get(&ip), Some((start, n)) if *n >= MAX_FAILURES && start.elapsed() < WINDOW)
    }
}

/// Reads the authorized keys file, or says in one line what is wrong and what to do.
pub fn load_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read authorized_keys {}: {e}; create it with the public keys allowed in",
            path.display()
        )
    })?;
    let (keys, bad) = parse_authorized_keys(&text);
    for line in &bad {
        tracing::warn!(
            "{}:{line}: not a public key this server understands; skipped",
            path.display()
        );
    }
    if keys.is_empty() {
        return Err(format!(
            "authorized_keys {} holds no usable public key; add one (ed25519, ecdsa or rsa) to let clients in",
            path.display()
        ));
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
    fn limiter_blocks_after_many_failures() {
        let l = FailureLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(!l.blocked(ip));
            l.record_failure(ip);
        }
        assert!(l.blocked(ip));
        assert!(!l.blocked("10.0.0.2".parse().unwrap()));
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
