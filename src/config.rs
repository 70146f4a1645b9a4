//! Configuration: defaults < /etc/filesync < ~/.config/filesync < --config/FILESYNC_CONFIG <
//! `FILESYNC_*` environment variables (nested keys with `__`, e.g. `FILESYNC_SERVER__LISTEN`).

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/filesync/config.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The synced folder on this machine.
    pub root: Option<PathBuf>,
    /// This replica's name in logs and peers' status (defaults to the host name).
    pub name: Option<String>,
    /// Days to keep replaced and deleted files in `.sync-trash/` (0 keeps them forever).
    pub trash_days: u64,
    /// The most the trash may hold: a share of the disk (`"10%"`) or a size (`"20 GiB"`);
    /// the oldest entries go first, never a deleted file's last copy. Unset: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash_max: Option<String>,
    /// Seconds after which another machine's `.sync.lock` counts as abandoned.
    pub lock_stale_secs: u64,
    /// Transfers in flight at once during a sync.
    pub concurrency: usize,
    pub peers: BTreeMap<String, PeerConfig>,
    pub server: Option<ServerConfig>,
    /// How `filesync daemon` watches the folder.
    pub daemon: DaemonConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Full rescan as a safety net for changes the file events missed, e.g. `"1h"`.
    pub rescan_every: String,
    /// Quiet time after file events before the index is updated, in milliseconds.
    pub debounce_ms: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            rescan_every: "1h".into(),
            debounce_ms: 300,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: None,
            name: None,
            trash_days: 30,
            trash_max: None,
            lock_stale_secs: 6 * 3600,
            concurrency: 8,
            peers: BTreeMap::new(),
            server: None,
            daemon: DaemonConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// `sftp://user@host:port/path`, `user@host:port/path`, or a local path.
    pub url: String,
    /// Private key file to use (after ssh-agent).
    pub identity: Option<PathBuf>,
    /// known_hosts file to check the peer's host key against (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Sync with this peer on a schedule from the daemon, e.g. `"15m"`.
    pub every: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `"0.0.0.0:2222"`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Host key files: one path (the ed25519 key; an ecdsa and an RSA key are kept beside it)
    /// or a list of files. Missing ones are created (mode 0600) on start.
    pub host_key: Option<HostKeys>,
    /// OpenSSH `authorized_keys` file of the clients allowed in.
    pub authorized_keys: Option<PathBuf>,
    /// Refuse every write.
    #[serde(default)]
    pub read_only: bool,
    /// argon2 hash (PHC string) enabling password login; unset means keys only.
    pub password_hash: Option<String>,
    /// Seconds of silence from a logged-in client after which the server asks whether it is
    /// still there (an SSH keepalive, as sshd's `ClientAliveInterval`); 0: never ask. Idle
    /// clients that answer stay connected.
    #[serde(default = "default_alive_interval")]
    pub client_alive_interval: u64,
    /// Keepalives left unanswered before a client is taken for gone and dropped (sshd's
    /// `ClientAliveCountMax`); 0: never drop.
    #[serde(default = "default_alive_count")]
    pub client_alive_count_max: usize,
    /// Not used: idle sessions are kept, and gone ones found by `client_alive_interval`.
    /// Accepted so an older config still loads; the server says it is ignored.
    #[serde(default, skip_serializing)]
    pub idle_timeout_secs: Option<u64>,
    /// Clients logged in at once (connections still logging in have limits of their own).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Seconds from connecting to logging in before a connection is dropped.
    #[serde(default = "default_grace")]
    pub login_grace_secs: u64,
    /// Connections not logged in yet: `start:rate:full`, as OpenSSH's: none past `full`, and
    /// from `start` on new ones dropped at random (a chance of `rate` % rising to 100 % at
    /// `full`), where one address counts for at most four.
    #[serde(default = "default_startups")]
    pub max_startups: String,
    /// Connections not logged in yet from one address.
    #[serde(default = "default_startups_per_source")]
    pub max_startups_per_source: usize,
    /// Addresses or networks (`192.168.1.0/24`) never penalised nor held to the per-address
    /// limit.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Also offer diffie-hellman-group14-sha1 and hmac-sha1, for very old apps.
    #[serde(default)]
    pub legacy_algorithms: bool,
    /// Announce the server on the local network (`_sftp-ssh._tcp` through avahi). Read by
    /// the Debian package's `/usr/lib/filesync/announce`, not by the daemon: the hardened
    /// service cannot write avahi's folder.
    #[serde(default = "default_true")]
    pub announce: bool,
    /// The server's own files: host keys (unless `host_key` says otherwise), devices, the
    /// hub's client key and the known_hosts of laptops it pulls from, used pairing codes.
    /// Default: systemd's `$STATE_DIRECTORY` (the hub unit's `StateDirectory`,
    /// /var/lib/filesync), else `$XDG_STATE_HOME/filesync` (~/.local/state/filesync).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// A pairing code written down beforehand (for a hub without a screen): taken for an
    /// hour from when it is first taken, while no device is paired. Default:
    /// `pair-code.txt` in the state folder (where the image's first boot moves the boot
    /// partition's `filesync/pair-code.txt`).
    #[serde(default)]
    pub pair_code_file: Option<PathBuf>,
}

/// `[server] host_key`: one path or a list of paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum HostKeys {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

fn default_true() -> bool {
    true
}

fn default_listen() -> String {
    "0.0.0.0:2222".into()
}
fn default_alive_interval() -> u64 {
    15
}
fn default_alive_count() -> usize {
    3
}
fn default_max_clients() -> usize {
    64
}
fn default_grace() -> u64 {
    30
}
fn default_startups() -> String {
    "10:30:100".into()
}
fn default_startups_per_source() -> usize {
    32
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            host_key: None,
            authorized_keys: None,
            read_only: false,
            password_hash: None,
            client_alive_interval: default_alive_interval(),
            client_alive_count_max: default_alive_count(),
            idle_timeout_secs: None,
            max_clients: default_max_clients(),
            login_grace_secs: default_grace(),
            max_startups: default_startups(),
            max_startups_per_source: default_startups_per_source(),
            trusted: Vec::new(),
            legacy_algorithms: false,
            announce: true,
            state_dir: None,
            pair_code_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The per-user config file, `$XDG_CONFIG_HOME/filesync/config.toml` or `~/.config/...`.
pub fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| crate::sys::home_dir().map(|h| h.join(".config")))?;
    Some(base.join("filesync").join("config.toml"))
}

/// Expands a leading `~/` to the home folder.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), crate::sys::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    }
}

impl Config {
    /// Loads the layered configuration. `explicit` is `--config` (or `FILESYNC_CONFIG`).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(SYSTEM_CONFIG));
        if let Some(user) = user_config_path() {
            // Absolute paths: `Toml::file` does not search parents, and a missing file is empty.
            fig = fig.merge(Toml::file(user));
        }
        let explicit = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("FILESYNC_CONFIG").map(PathBuf::from));
        if let Some(p) = &explicit {
            if !p.is_file() {
                return Err(ConfigError(format!(
                    "config file {} {} (given with --config or FILESYNC_CONFIG)",
                    p.display(),
                    if p.is_dir() {
                        "is a folder, not a file"
                    } else {
                        "does not exist"
                    }
                )));
            }
            fig = fig.merge(Toml::file_exact(p));
        }
        fig = fig.merge(Env::prefixed("FILESYNC_").ignore(&["CONFIG"]).split("__"));
        let mut cfg: Config = fig.extract().map_err(describe)?;
        cfg.root = cfg.root.map(|r| expand_home(&r));
        for (name, peer) in &cfg.peers {
            if let Some(every) = &peer.every {
                humantime::parse_duration(every).map_err(|e| {
                    ConfigError(format!(
                        "config key `peers.{name}.every`: {every:?} is not a duration ({e}); use e.g. \"15m\""
                    ))
                })?;
            }
        }
        if let Some(max) = &cfg.trash_max {
            crate::history::evict::Cap::parse(max)
                .map_err(|e| ConfigError(format!("config key `trash_max`: {e}")))?;
        }
        humantime::parse_duration(&cfg.daemon.rescan_every).map_err(|e| {
            ConfigError(format!(
                "config key `daemon.rescan_every`: {:?} is not a duration ({e}); use e.g. \"1h\"",
                cfg.daemon.rescan_every
            ))
        })?;
        Ok(cfg)
    }

    /// `trash_max` as a cap (checked when the config loaded).
    pub fn trash_cap(&self) -> Option<crate::history::evict::Cap> {
        self.trash_max
            .as_deref()
            .and_then(|m| crate::history::evict::Cap::parse(m).ok())
    }

    /// This replica's display name.
    pub fn replica_name(&self) -> String {
        self.name.clone().unwrap_or_else(crate::sys::hostname)
    }
}

/// A TOML syntax error comes with a drawing of the line under it (lines of `N | text` and
/// `| ^`): the drawing goes, what it says stays ("…line 2, column 1: invalid table header;
/// expected `.`, `]`").
fn one_line(msg: &str) -> String {
    let words: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| {
            let rest = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !rest.starts_with('|')
        })
        .collect();
    match words.split_first() {
        Some((first, [])) => first.to_string(),
        Some((first, rest)) => format!("{first}: {}", rest.join("; ")),
        None => String::new(),
    }
}

/// One line per problem: where it came from, which key, what is wrong.
fn describe(e: figment::Error) -> ConfigError {
    let lines: Vec<String> = e
        .into_iter()
        .map(|e| {
            let source = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(figment::Source::File(p)) => format!("config file {}", p.display()),
                Some(other) => format!("config {other}"),
                None => match &e.metadata {
                    Some(m) => format!("config from {}", m.name),
                    None => "config".to_string(),
                },
            };
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!(": key `{}`", e.path.join("."))
            };
            format!("{source}{key}: {}", one_line(&e.kind.to_string()))
        })
        .collect();
    ConfigError(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_names_file_key_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "trash_days = \"soon\"\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("trash_days"), "{e}");

        std::fs::write(&f, "rooot = \"/x\"\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("rooot"), "{e}");

        std::fs::write(&f, "trash_max = \"lots\"\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("trash_max") && e.contains("20 GiB"), "{e}");

        std::fs::write(&f, "[peers.pi]\nurl = \"sftp://pi/\"\nevery = \"often\"\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("peers.pi.every"), "{e}");

        let e = Config::load(Some(&dir.path().join("missing.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");

        let e = Config::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");

        // A syntax error: one line, saying where and what.
        std::fs::write(&f, "root = \"/x\"\n[peers\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(
            !e.contains('\n')
                && e.contains("c.toml")
                && e.contains("line 2")
                && e.contains("table header")
                && !e.contains('|'),
            "{e}"
        );
    }

    #[test]
    fn file_values_load() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "root = \"/srv/x\"\nname = \"pi\"\n[server]\nlisten = \"127.0.0.1:2\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.root.as_deref(), Some(Path::new("/srv/x")));
        assert_eq!(c.server.unwrap().listen, "127.0.0.1:2");
    }
}
