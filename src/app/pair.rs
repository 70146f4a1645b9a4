//! `filesync pair`: on the hub, `--new` asks the running server for a code; on a laptop,
//! `HOST[:PORT] CODE` pairs with it (see `pair::laptop`).

use super::{root_of, runtime};
use crate::config::Config;
use crate::daemon::control::{Request, Response, ask};
use crate::pair::code::{Code, Terms};
use crate::pair::laptop::{self, DEFAULT_PORT};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct PairArgs {
    /// On the hub: print a new pairing code (single use, valid 10 minutes).
    #[arg(long)]
    pub new: bool,
    /// The hub, HOST or HOST:PORT (port 2222 when not given); then the code it printed.
    #[arg(value_name = "HOST[:PORT]")]
    pub host: Option<String>,
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
    /// With --new: the name the paired device gets on the hub.
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,
    /// With --new: how often the hub pulls from a laptop paired with --serve (default 15m).
    /// On a laptop: how often its daemon syncs with the hub.
    #[arg(long, value_name = "PERIOD")]
    pub every: Option<String>,
    /// This laptop's name on the hub (default: the host name).
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
    /// The hub's peer name in this laptop's config (default: the hub's own name).
    #[arg(long, value_name = "NAME")]
    pub peer: Option<String>,
    /// The synced folder: on the hub, whose daemon to ask; on a laptop, the folder to sync
    /// (default: `root` from the config, else ~/Sync).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// With --new: write the code to FILE instead of asking the running hub (for a hub
    /// without a screen: the boot partition's `filesync/pair-code.txt`).
    #[arg(long, value_name = "FILE", requires = "new")]
    pub file: Option<PathBuf>,
    /// This laptop serves SFTP on ADDR (e.g. 0.0.0.0:2222) and the hub pulls from it.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

pub fn run(cfg: &Config, config: Option<&Path>, args: PairArgs) -> Result<i32> {
    if let Some(every) = &args.every {
        humantime::parse_duration(every)
            .with_context(|| format!("--every {every:?} is not a duration; use e.g. 15m"))?;
    }
    if args.new {
        return new_code(cfg, args);
    }
    let (host, port, code) = match (args.host.as_deref(), args.code.as_deref()) {
        (Some(h), Some(c)) => {
            let (host, port) = split_host(h)?;
            (host, port, Code::parse(c)?)
        }
        (Some(c), None) => {
            let code = Code::parse(c)?;
            let (host, port) = pick_hub()?;
            (host, port, code)
        }
        (None, _) => bail!(
            "give the code the hub printed: `filesync pair [HOST[:PORT]] CODE` (make one on the hub with `sudo filesync pair --new`)"
        ),
    };
    let config = match config {
        Some(c) => c.to_path_buf(),
        None => {
            crate::config::user_config_path().context("no place for the config: HOME is unset")?
        }
    };
    let host_keys = match &args.serve {
        Some(listen) => {
            laptop::check_serve(listen)?;
            let mut sc = cfg.server.clone().unwrap_or_default();
            sc.listen = listen.clone();
            crate::server::host_public_keys(&sc)?
        }
        None => Vec::new(),
    };
    let req = laptop::Request {
        host,
        port,
        code,
        name: args.as_name.unwrap_or_else(|| cfg.replica_name()),
        peer: args.peer,
        root: args.root,
        serve: args.serve,
        every: args.every,
        config,
        host_keys,
    };
    let done = runtime()?.block_on(laptop::pair(req))?;
    println!(
        "paired with hub {} as device {:?} (host key {})",
        done.peer, done.device, done.fingerprint
    );
    println!(
        "  {} → [peers.{}] url = {:?}, root = {:?}",
        done.config.display(),
        done.peer,
        done.url,
        done.root.display().to_string()
    );
    println!("  {}: the hub's host keys", done.known_hosts.display());
    println!("now: filesync sync {}", done.peer);
    Ok(0)
}

/// The hub found on the local network: the only one, or the one the person picks.
fn pick_hub() -> Result<(String, u16)> {
    use std::io::{BufRead, IsTerminal, Write};
    eprintln!("looking for hubs on the local network (_sftp-ssh._tcp)…");
    let found = crate::pair::discover::browse(std::time::Duration::from_secs(3))?;
    let line = |f: &crate::pair::discover::Found| format!("{} — {}:{}", f.name, f.host, f.port);
    match found.as_slice() {
        [] => {
            bail!("no hub answered on the local network; name it: `filesync pair HOST[:PORT] CODE`")
        }
        [one] => {
            eprintln!("found {}", line(one));
            Ok((one.target(), one.port))
        }
        many if std::io::stdin().is_terminal() => {
            for (i, f) in many.iter().enumerate() {
                eprintln!("  {}) {}", i + 1, line(f));
            }
            eprint!("which one? ");
            std::io::stderr().flush().ok();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            let n: usize = answer.trim().parse().unwrap_or(0);
            let f = many
                .get(n.wrapping_sub(1))
                .with_context(|| format!("{:?} is not one of 1–{}", answer.trim(), many.len()))?;
            Ok((f.target(), f.port))
        }
        many => bail!(
            "several hubs answered ({}); name one: `filesync pair HOST[:PORT] CODE`",
            many.iter().map(line).collect::<Vec<_>>().join("; ")
        ),
    }
}

/// `HOST`, `HOST:PORT` or `[V6]:PORT`.
fn split_host(s: &str) -> Result<(String, u16)> {
    let bad = || anyhow::anyhow!("{s:?} is not a host: use HOST or HOST:PORT");
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => DEFAULT_PORT,
            None => return Err(bad()),
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
        _ if s.is_empty() => Err(bad()),
        _ => Ok((s.to_string(), DEFAULT_PORT)),
    }
}

fn new_code(cfg: &Config, args: PairArgs) -> Result<i32> {
    if args.host.is_some() || args.serve.is_some() || args.as_name.is_some() {
        bail!("`pair --new` runs on the hub and takes only --name, --every and --root");
    }
    if let Some(file) = &args.file {
        let code = Code::random();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(file, format!("{code}\n"))
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!("code: {code}");
        println!(
            "written to {}; the hub takes it once, for an hour from its first start, while it has no paired device",
            file.display()
        );
        return Ok(0);
    }
    let root = root_of(args.root, cfg)?;
    let terms = Terms {
        name: args.name,
        every: args.every,
    };
    let Response::Code(c) = ask(&root, &Request::NewCode { terms })? else {
        bail!("the daemon gave an unexpected answer");
    };
    let host = format!("{}.local", crate::sys::hostname());
    println!("code: {}", c.code);
    println!(
        "valid once, for {} minutes. On the laptop: filesync pair {host}:{} {}",
        c.expires_secs / 60,
        c.port,
        c.code
    );
    for f in &c.fingerprints {
        println!("hub host key: {f}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_with_and_without_ports() {
        assert_eq!(split_host("pi.local").unwrap(), ("pi.local".into(), 2222));
        assert_eq!(split_host("pi:22").unwrap(), ("pi".into(), 22));
        assert_eq!(split_host("[::1]:2200").unwrap(), ("::1".into(), 2200));
        assert_eq!(split_host("[::1]").unwrap(), ("::1".into(), 2222));
        assert!(split_host("pi:x").is_err());
        assert!(split_host("").is_err());
    }
}
