//! `filesync daemon --install`: writes the file that starts the daemon at login and, where
//! the service manager is there, enables it.

use crate::daemon::install::{self, Launch};
use anyhow::{Context, Result, anyhow};
use std::path::Path;
#[cfg(unix)]
use std::process::Command;

fn utf8(p: &Path, what: &str) -> Result<String> {
    let abs = std::path::absolute(p).with_context(|| format!("{what} {}", p.display()))?;
    abs.to_str().map(str::to_string).ok_or_else(|| {
        anyhow!(
            "{what} {} is not UTF-8: move it to a plain name",
            abs.display()
        )
    })
}

/// Installs the daemon for this user, running this binary with `config` (default: the user
/// config file) and `root`.
pub fn run(config: Option<&Path>, root: Option<&Path>) -> Result<i32> {
    let bin = std::env::current_exe().context("cannot find this program's own path")?;
    let config = match config {
        Some(c) => c.to_path_buf(),
        None => crate::config::user_config_path()
            .ok_or_else(|| anyhow!("no home folder: give the config file with --config"))?,
    };
    let launch = Launch {
        bin: utf8(&bin, "the program")?,
        config: utf8(&config, "the config file")?,
        root: root.map(|r| utf8(r, "the folder")).transpose()?,
    };
    let home = crate::sys::home_dir().ok_or_else(|| anyhow!("no home folder to install into"))?;
    place(&launch, &home)?;
    Ok(0)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Runs a service manager command; false when the tool is not installed.
#[cfg(unix)]
fn try_run(cmd: &str, args: &[&str]) -> Result<bool> {
    match Command::new(cmd).args(args).status() {
        Ok(s) if s.success() => Ok(true),
        Ok(s) => Err(anyhow!("`{cmd} {}` failed ({s})", args.join(" "))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot run {cmd}")),
    }
}

#[cfg(target_os = "macos")]
fn place(l: &Launch, home: &Path) -> Result<()> {
    let home_s = utf8(home, "the home folder")?;
    let plist = home.join("Library/LaunchAgents/org.filesync.daemon.plist");
    std::fs::create_dir_all(home.join("Library/Logs")).context("cannot create ~/Library/Logs")?;
    write(&plist, &install::launchd_plist(l, &home_s))?;
    let p = utf8(&plist, "the agent")?;
    if try_run("launchctl", &["load", "-w", &p])? {
        println!("started; it starts at each login (stop: launchctl unload -w {p})");
    } else {
        println!("to start it now: launchctl load -w {p}");
    }
    Ok(())
}

#[cfg(windows)]
fn place(l: &Launch, _home: &Path) -> Result<()> {
    let appdata = std::env::var_os("APPDATA")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow!("APPDATA is not set: cannot find the Startup folder"))?;
    let cmd = appdata.join(r"Microsoft\Windows\Start Menu\Programs\Startup\filesync.cmd");
    write(&cmd, &install::windows_cmd(l))?;
    println!("the daemon starts at the next login (delete that file to stop it)");
    Ok(())
}

#[cfg(all(unix, not(target_os = "macos")))]
fn place(l: &Launch, home: &Path) -> Result<()> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    write(
        &dir.join("systemd/user/filesync.service"),
        &install::systemd_unit(l),
    )?;
    let hint = "the unit is written; run `systemctl --user enable --now filesync` in your session";
    let enabled = try_run("systemctl", &["--user", "daemon-reload"]).context(hint)?
        && try_run("systemctl", &["--user", "enable", "--now", "filesync"]).context(hint)?;
    if enabled {
        println!("started; it starts at each login (log: journalctl --user -u filesync)");
    } else {
        println!("to start it: systemctl --user enable --now filesync");
    }
    Ok(())
}
