//! `filesync devices`: the hub's devices, through the running daemon: list, add a phone
//! (a password shown once, a QR code of its address), revoke.

use super::root_of;
use crate::config::Config;
use crate::daemon::control::{DeviceView, Request, Response, ask};
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The hub's synced folder, to find its daemon (default: `root` from the config).
    #[arg(long, value_name = "DIR", global = true)]
    pub root: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Add a phone that logs in with a password (made here, shown once).
    AddPhone {
        /// The phone's name, also its user name.
        name: String,
    },
    /// Remove a device; its open sessions end at once.
    Revoke { name: String },
}

pub fn run(cfg: &Config, args: DevicesArgs) -> Result<i32> {
    let root = root_of(args.root, cfg)?;
    match args.action {
        None => {
            let Response::Devices(list) = ask(&root, &Request::Devices)? else {
                bail!("the daemon gave an unexpected answer");
            };
            print!("{}", render(&list));
        }
        Some(Action::AddPhone { name }) => {
            let Response::Phone(p) = ask(&root, &Request::AddPhone { name })? else {
                bail!("the daemon gave an unexpected answer");
            };
            let host = format!("{}.local", crate::sys::hostname());
            println!("server:   {host}");
            println!("port:     {}", p.port);
            println!("user:     {}", p.user);
            println!("password: {}   (shown only now)", p.password);
            println!("host key fingerprints (the app shows one on first connect):");
            for f in &p.fingerprints {
                println!("  {f}");
            }
            let url = format!("sftp://{}@{host}:{}/", p.user, p.port);
            println!("{url}");
            print!("{}", qr(&url));
        }
        Some(Action::Revoke { name }) => {
            let Response::Revoked { sessions, closing } =
                ask(&root, &Request::Revoke { name: name.clone() })?
            else {
                bail!("the daemon gave an unexpected answer");
            };
            if closing == 0 {
                println!("revoked {name:?}; {sessions} open sessions ended");
            } else {
                println!(
                    "revoked {name:?}; {sessions} open sessions told to end, {closing} still closing (they can log in no more)"
                );
            }
        }
    }
    Ok(0)
}

fn render(list: &[DeviceView]) -> String {
    if list.is_empty() {
        return "no devices yet: `sudo filesync pair --new` (laptop) or `sudo filesync devices add-phone NAME`\n".into();
    }
    let now = crate::time::now_secs();
    let mut s = String::new();
    for d in list {
        let seen = match d.last_seen {
            Some(t) if d.online => format!("online (since {})", crate::time::readable(t)),
            Some(t) => format!("last seen {} ago", crate::time::ago(now, t)),
            None if d.online => "online".into(),
            None => "never seen".into(),
        };
        s.push_str(&format!(
            "{}  {}  added {}  {seen}{}{}\n",
            d.name,
            d.kind,
            crate::time::readable(d.added),
            d.from
                .as_ref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default(),
            d.pull
                .as_ref()
                .map(|p| format!("; pulled from {p}"))
                .unwrap_or_default(),
        ));
    }
    s
}

/// A QR code of `text` drawn with half-block characters (two modules per character row).
fn qr(text: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            code.render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build()
                + "\n"
        }
        Err(_) => String::new(),
    }
}
