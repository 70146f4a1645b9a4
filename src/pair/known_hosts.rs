//! Writing a host's keys into an OpenSSH known_hosts file once pairing proved them: that
//! host[:port]'s earlier lines (plain or hashed) are replaced, so a re-imaged hub or a reused
//! address is not refused as a changed key; every other line and comment is kept, and the file
//! is replaced atomically with its mode.

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("cannot read {path} (fix its permissions, or move it away)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path} (check that its folder is writable)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How OpenSSH names `host` at `port` in known_hosts.
pub fn host_field(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `line` without `name` in its host list: `None` when no name is left or a hashed entry
/// matched (it stands for that one name), the line as it was when it does not name `name`.
/// Markers such as `@revoked` and comments are kept.
fn without(line: &str, name: &str) -> Option<String> {
    let trimmed = line.trim_start();
    let hosts = trimmed.split_whitespace().next().unwrap_or("");
    if hosts.starts_with('#') || hosts.starts_with('@') {
        return Some(line.to_string());
    }
    let mut kept = Vec::new();
    for entry in hosts.split(',') {
        match entry.strip_prefix("|1|") {
            Some(hashed) if hashed_is(hashed, name) => return None,
            None if entry.eq_ignore_ascii_case(name) => {}
            _ => kept.push(entry),
        }
    }
    if kept.len() == hosts.split(',').count() {
        Some(line.to_string())
    } else if kept.is_empty() {
        None
    } else {
        Some(format!("{}{}", kept.join(","), &trimmed[hosts.len()..]))
    }
}

/// `SALT|HASH` (base64) of a hashed entry: HMAC-SHA1 of the name under the salt.
fn hash_matches(hashed: &str, name: &str) -> bool {
    let b64 = data_encoding::BASE64;
    let mut parts = hashed.split('|');
    let (Some(Ok(salt)), Some(Ok(hash))) = (
        parts.next().map(|p| b64.decode(p.as_bytes())),
        parts.next().map(|p| b64.decode(p.as_bytes())),
    ) else {
        return false;
    };
    Hmac::<sha1::Sha1>::new_from_slice(&salt)
        .map(|m| m.chain_update(name.as_bytes()).verify_slice(&hash).is_ok())
        .unwrap_or(false)
}

/// OpenSSH hashes the lowercased name; a name typed otherwise is tried as typed too.
fn hashed_is(hashed: &str, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    hash_matches(hashed, &lower) || (lower != name && hash_matches(hashed, name))
}

/// `text` without the lines for `field` (markers such as `@revoked` and comments are kept),
/// then one line per key.
pub fn replaced(text: &str, field: &str, keys: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + keys.len() * 100);
    for line in text.lines().filter_map(|l| without(l, field)) {
        out.push_str(&line);
        out.push('\n');
    }
    for k in keys {
        out.push_str(&format!("{field} {k}\n"));
    }
    out
}

/// Makes `keys` the only keys known for `host:port` in `path` (created 0600, its folder 0700,
/// when missing); what the file held before (`None`: there was none), for `put_back`.
pub fn replace(
    path: &Path,
    host: &str,
    port: u16,
    keys: &[PublicKey],
) -> Result<Option<String>, KnownHostsError> {
    let field = host_field(host, port);
    let lines: Vec<String> = keys.iter().map(super::protocol::public_line).collect();
    // A symlinked known_hosts (dotfiles) is written where it points.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let read_err = |source| KnownHostsError::Read {
        path: path.clone(),
        source,
    };
    let (text, mode) = match std::fs::read_to_string(&path) {
        Ok(t) => {
            let meta = std::fs::metadata(&path).map_err(read_err)?;
            (t, Some(meta.permissions()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomic(&path, &replaced("", &field, &lines), None)?;
            return Ok(None);
        }
        Err(e) => return Err(read_err(e)),
    };
    write_atomic(&path, &replaced(&text, &field, &lines), mode)?;
    Ok(Some(text))
}

/// Undoes `replace`: `before` is what it returned.
pub fn put_back(path: &Path, before: Option<String>) -> Result<(), KnownHostsError> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let err = |source| KnownHostsError::Write {
        path: path.clone(),
        source,
    };
    match before {
        Some(text) => {
            let mode = std::fs::metadata(&path).map_err(err)?.permissions();
            write_atomic(&path, &text, Some(mode))
        }
        None => std::fs::remove_file(&path).map_err(err),
    }
}

/// Writes `text` beside `path` and renames it over; `mode`: the old file's permissions.
fn write_atomic(
    path: &Path,
    text: &str,
    mode: Option<std::fs::Permissions>,
) -> Result<(), KnownHostsError> {
    use std::io::Write;
    let err = |source| KnownHostsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
        dirs.create(dir).map_err(err)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut f = open.open(&tmp)?;
        if let Some(m) = mode {
            f.set_permissions(m)?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq9Y3DmOZFBFYQnW5pwXlBLbEKBuGv2NFAaH9Uq3/Kq";
    const NEW: &str = "ssh-ed25519 NEW";

    fn random_key() -> PublicKey {
        use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
        let pair = Ed25519Keypair::random(&mut rand::rng());
        russh::keys::PrivateKey::new(KeypairData::from(pair), "")
            .unwrap()
            .public_key()
            .clone()
    }

    /// `|1|salt|hash` for `name`, as `ssh-keygen -H` writes it.
    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let mac = Hmac::<sha1::Sha1>::new_from_slice(&salt)
            .unwrap()
            .chain_update(name.as_bytes())
            .finalize()
            .into_bytes();
        let b64 = data_encoding::BASE64;
        format!("|1|{}|{}", b64.encode(&salt), b64.encode(&mac))
    }

    #[test]
    fn the_hosts_old_lines_go_and_everything_else_stays() {
        let text = format!(
            "# my hosts\n\
             [pi.local]:2222 {OLD}\n\
             pi.local {OLD}\n\
             [pi.local]:2223 {OLD}\n\
             other,[PI.local]:2222 {OLD}\n\
             [pi.local]:2222,pi.local {OLD}\n\
             {} {OLD}\n\
             {} {OLD}\n\
             @revoked [pi.local]:2222 {OLD}\n\
             \n\
             github.com {OLD}\n",
            hashed("[pi.local]:2222"),
            hashed("pi.local"),
        );
        let out = replaced(&text, "[Pi.local]:2222", &[NEW.to_string()]);
        let want = format!(
            "# my hosts\n\
             pi.local {OLD}\n\
             [pi.local]:2223 {OLD}\n\
             other {OLD}\n\
             pi.local {OLD}\n\
             {} {OLD}\n\
             @revoked [pi.local]:2222 {OLD}\n\
             \n\
             github.com {OLD}\n\
             [Pi.local]:2222 {NEW}\n",
            hashed("pi.local"),
        );
        assert_eq!(out, want);
    }

    #[test]
    fn port_22_is_the_bare_name() {
        assert_eq!(host_field("pi.local", 22), "pi.local");
        assert_eq!(host_field("::1", 2222), "[::1]:2222");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_keeps_its_mode_and_a_new_one_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = random_key();
        let line = super::super::protocol::public_line(&key);
        let fresh = dir.path().join("ssh/known_hosts");
        replace(&fresh, "pi.local", 2222, std::slice::from_ref(&key)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(mode(fresh.parent().unwrap()), 0o700);
        let kept = dir.path().join("known_hosts");
        std::fs::write(&kept, format!("[pi.local]:2222 {OLD}\n")).unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace(&kept, "pi.local", 2222, &[key]).unwrap();
        assert_eq!(mode(&kept), 0o644);
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            format!("[pi.local]:2222 {line}\n")
        );
    }

    #[test]
    fn put_back_undoes_a_replace() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("known_hosts");
        let before = format!("# mine\n[pi.local]:2222 {OLD}\n");
        std::fs::write(&kept, &before).unwrap();
        let was = replace(&kept, "pi.local", 2222, &[random_key()]).unwrap();
        put_back(&kept, was).unwrap();
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), before);
        let fresh = dir.path().join("new_hosts");
        let was = replace(&fresh, "pi.local", 2222, &[random_key()]).unwrap();
        put_back(&fresh, was).unwrap();
        assert!(!fresh.exists());
    }
}
