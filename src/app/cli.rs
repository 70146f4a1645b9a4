//! Command-line definitions (clap). What each command does lives in `app`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "filesync",
    version,
    about = "Keep folders on several machines in sync over SSH/SFTP",
    long_about = "Keep folders on several machines in sync over SSH/SFTP. Every replica keeps an \
                  index (.sync) at its root; a sync compares two indexes by version vectors, \
                  copies both ways, keeps both versions of concurrent edits, and moves \
                  everything it replaces or deletes into .sync-trash/."
)]
pub struct Cli {
    /// Config file, layered over /etc/filesync/config.toml and ~/.config/filesync/config.toml.
    #[arg(long, global = true, env = "FILESYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the index (.sync) up to date with the folder; rebuild it if it is corrupt.
    Index {
        /// The synced folder (default: `root` from the config).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Sync two replicas both ways: a peer name, sftp://user@host:port/path,
    /// user@host:port/path, or a local folder.
    Sync(SyncArgs),
    /// Show the replica, pending local changes, and the last syncs with each peer.
    Status {
        /// The synced folder (default: `root` from the config).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Serve the folder over SFTP in the foreground.
    Serve {
        /// The folder to serve (default: `root` from the config).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Address to listen on (default: `server.listen`, else 0.0.0.0:2222).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// List the versions kept in the trash (of PATH, or all), newest first.
    Trash(super::history::TrashArgs),
    /// Put a kept version back as a new edit that the next sync carries everywhere.
    Restore(super::history::RestoreArgs),
    /// List the conflict copies and which replica's version each holds.
    Conflicts(super::history::ConflictsArgs),
    /// End a conflict: keep this version, the other one, or both.
    Resolve(super::history::ResolveArgs),
    /// What recent syncs changed here, from which replica, and what went to the trash.
    Changes(super::history::ChangesArgs),
    /// Watch the folder and keep its index current; serve SFTP and sync peers as configured.
    Daemon {
        /// The synced folder (default: `root` from the config).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Start the daemon at each login (systemd user unit, launchd agent, Windows Startup).
        #[arg(long)]
        install: bool,
    },
    /// Pair a laptop with the hub by a one-time code: `pair --new` on the hub prints one,
    /// `pair HOST CODE` on the laptop uses it.
    #[cfg(unix)]
    Pair(super::pair::PairArgs),
    /// The hub's devices: list them, add a phone (password login), revoke one.
    #[cfg(unix)]
    Devices(super::devices::DevicesArgs),
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The first replica.
    pub a: String,
    /// The second replica (default: `root` from the config).
    pub b: Option<String>,
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Trust an unknown host key and add it to known_hosts (a changed key is still refused).
    #[arg(long)]
    pub accept_new: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}
