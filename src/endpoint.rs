//! Sync targets (endpoints) as a user writes them: a peer name, `sftp://user@host:port/path`, the seed's
//! `user@host:port/path`, or a local folder. Parsing only; opening a store is the caller's job.

use crate::config::{Config, PeerConfig};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The folder on the remote; absolute, or relative to the login folder.
    pub path: String,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

impl Remote {
    pub fn describe(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let sep = if self.path.starts_with('/') { "" } else { "/" };
        // An IPv6 address is bracketed, or its colons read as a port.
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("sftp://{user}{host}{port}{sep}{}", self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local(PathBuf),
    Remote(Remote),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TargetError(String);

impl Target {
    /// Resolves what the user typed. `name` is also tried as a configured peer.
    pub fn parse(s: &str, cfg: &Config) -> Result<(Target, String), TargetError> {
        if let Some(peer) = cfg.peers.get(s) {
            let t = Self::parse_url(&peer.url, Some(peer))
                .map_err(|e| TargetError(format!("config key `peers.{s}.url`: {e}")))?;
            return Ok((t, s.to_string()));
        }
        Ok((Self::parse_url(s, None)?, s.to_string()))
    }

    pub fn parse_url(s: &str, peer: Option<&PeerConfig>) -> Result<Target, TargetError> {
        if s.is_empty() {
            return Err(TargetError("empty sync target".into()));
        }
        let with_peer = |mut r: Remote| {
            if let Some(p) = peer {
                r.identity = p.identity.clone();
                r.known_hosts = p.known_hosts.clone();
            }
            Target::Remote(r)
        };
        if let Some(rest) = s.strip_prefix("sftp://") {
            let (auth, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let mut r = parse_authority(auth, s)?;
            // sftp://host/path is absolute; sftp://host/~/path is relative to the login folder.
            r.path = match path.strip_prefix("/~/") {
                Some(rel) => rel.to_string(),
                None if path.is_empty() || path == "/~" => String::new(),
                None => path.to_string(),
            };
            return Ok(with_peer(r));
        }
        if s.contains("://") {
            return Err(TargetError(format!(
                "{s:?}: only sftp:// URLs are supported"
            )));
        }
        // Windows: `C:\docs`, `C:/docs` and `\\server\share` are folders of this machine.
        if cfg!(windows) && is_windows_path(s) {
            return Ok(Target::Local(PathBuf::from(s)));
        }
        // The seed's `user@host:port/path` and scp's `host:path`: something before the first
        // slash that has `@` or `:`. Anything else is a local folder (`./a:b` stays local).
        let head = s.split('/').next().unwrap_or("");
        if head.contains('@') || head.contains(':') {
            let (auth, path) = match s.find('/') {
                Some(i) => (&s[..i], &s[i..]),
                None => (s, ""),
            };
            // `host:path` (scp style, no port digits) vs `host:2222/path`.
            let (auth, path) = match auth.rsplit_once(':') {
                Some((a, rest))
                    if !rest.is_empty() && !rest.chars().all(|c| c.is_ascii_digit()) =>
                {
                    (a.to_string(), format!("{rest}{path}"))
                }
                Some((a, "")) => (a.to_string(), path.trim_start_matches('/').to_string()),
                _ => (auth.to_string(), path.to_string()),
            };
            let mut r = parse_authority(&auth, s)?;
            r.path = path;
            return Ok(with_peer(r));
        }
        Ok(Target::Local(crate::config::expand_home(
            std::path::Path::new(s),
        )))
    }
}

fn parse_authority(auth: &str, whole: &str) -> Result<Remote, TargetError> {
    let (user, hostport) = match auth.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return Err(TargetError(format!("{whole:?}: empty user name"))),
        None => (None, auth),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        // [::1]:2222
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError(format!("{whole:?}: unclosed '[' in host")))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p, whole)?),
            None if after.is_empty() => None,
            None => return Err(TargetError(format!("{whole:?}: junk after ']'"))),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(parse_port(p, whole)?)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(TargetError(format!("{whole:?}: no host name")));
    }
    Ok(Remote {
        user,
        host,
        port,
        path: String::new(),
        identity: None,
        known_hosts: None,
    })
}

fn parse_port(p: &str, whole: &str) -> Result<u16, TargetError> {
    p.parse::<u16>()
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| TargetError(format!("{whole:?}: {p:?} is not a port number")))
}

/// A drive-letter or UNC path (`C:\x`, `c:/x`, `\\host\share`), as Windows writes folders.
fn is_windows_path(s: &str) -> bool {
    let b = s.as_bytes();
    let drive =
        b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/');
    drive || s.starts_with("\\\\")
}

#[cfg(test)]
mod tests {

    #[test]
    fn windows_folders_are_told_from_scp_targets() {
        for local in [r"C:\docs", "c:/docs", r"\\nas\share"] {
            assert!(is_windows_path(local), "{local}");
        }
        for remote in ["pi:docs", "host:2222/x", "C:", "me@pi:/srv"] {
            assert!(!is_windows_path(remote), "{remote}");
        }
    }

    use super::*;

    fn remote(s: &str) -> Remote {
        match Target::parse_url(s, None).unwrap() {
            Target::Remote(r) => r,
            t => panic!("{s} parsed as {t:?}"),
        }
    }

    #[test]
    fn forms() {
        let r = remote("sftp://alice@pi.local:2222/srv/filesync");
        assert_eq!(
            (r.user.as_deref(), r.host.as_str(), r.port, r.path.as_str()),
            (Some("alice"), "pi.local", Some(2222), "/srv/filesync")
        );
        let r = remote("alice@pi:2222/data");
        assert_eq!((r.port, r.path.as_str()), (Some(2222), "/data"));
        let r = remote("pi:docs/x");
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("pi", None, "docs/x")
        );
        let r = remote("sftp://[::1]:22/~/sync");
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("::1", Some(22), "sync")
        );
        assert_eq!(r.describe(), "sftp://[::1]:22/sync");
        assert_eq!(
            Target::parse_url("/home/a/docs", None).unwrap(),
            Target::Local("/home/a/docs".into())
        );
        assert_eq!(
            Target::parse_url("./a:b", None).unwrap(),
            Target::Local("./a:b".into())
        );
        assert!(Target::parse_url("http://x/", None).is_err());
        assert!(Target::parse_url("sftp://u@h:99999/", None).is_err());
    }

    #[test]
    fn peer_names() {
        let mut cfg = Config::default();
        cfg.peers.insert(
            "pi".into(),
            PeerConfig {
                url: "sftp://bob@hub:2222/".into(),
                identity: Some("/k".into()),
                known_hosts: None,
                every: None,
            },
        );
        let (t, name) = Target::parse("pi", &cfg).unwrap();
        assert_eq!(name, "pi");
        match t {
            Target::Remote(r) => {
                assert_eq!(r.identity.as_deref(), Some(std::path::Path::new("/k")))
            }
            _ => panic!(),
        }
    }
}
