//! The CLI edge: what each subcommand does, and where errors get their context for a person
//! (`anyhow` lives here and nowhere below). `cli` is the command line, `logging` the log
//! setup, `sync` the sync command, `local` the commands on this machine's replica alone.

pub mod cli;
#[cfg(unix)]
mod devices;
mod history;
mod install;
mod local;
pub mod logging;
#[cfg(unix)]
mod pair;
mod sync;

use crate::config::Config;
#[cfg(unix)]
use crate::shutdown::{Shutdown, Signals};
use crate::store::LocalStore;
use anyhow::{Context, Result, bail};
use cli::{Cli, Command};
use std::path::{Path, PathBuf};

/// Runs a parsed command line; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Index { root } => local::index(&root_of(root, &cfg)?, &cfg),
        Command::Status { root } => local::status(&root_of(root, &cfg)?, &cfg),
        Command::Sync(args) => runtime()?.block_on(sync::sync(&cfg, &args, cli.verbose > 0)),
        Command::Trash(a) => runtime()?.block_on(history::trash(&cfg, &a)),
        Command::Restore(a) => runtime()?.block_on(history::restore(&cfg, &a)),
        Command::Conflicts(a) => runtime()?.block_on(history::conflicts(&cfg, &a)),
        Command::Resolve(a) => runtime()?.block_on(history::resolve(&cfg, &a)),
        Command::Changes(a) => runtime()?.block_on(history::changes(&cfg, &a)),
        Command::Serve { root, listen } => {
            let root = root_of(root, &cfg)?;
            runtime()?.block_on(serve(&cfg, &root, listen))
        }
        #[cfg(unix)]
        Command::Pair(args) => pair::run(&cfg, cli.config.as_deref(), args),
        #[cfg(unix)]
        Command::Devices(args) => devices::run(&cfg, args),

        Command::Daemon {
            root,
            install: true,
        } => install::run(cli.config.as_deref(), root.as_deref()),
        Command::Daemon { root, .. } => {
            let root = root_of(root, &cfg)?;
            crate::sys::limit_allocator_arenas(); // before the runtime's threads allocate
            runtime()?.block_on(crate::daemon::run(&cfg, &root, cli.config.as_deref()))?;
            Ok(0)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn root_of(arg: Option<PathBuf>, cfg: &Config) -> Result<PathBuf> {
    match arg.or_else(|| cfg.root.clone()) {
        Some(r) => Ok(r),
        None => bail!(
            "no synced folder given: pass --root DIR or set `root` in ~/.config/filesync/config.toml"
        ),
    }
}

fn open_local(root: &Path, cfg: &Config) -> Result<LocalStore> {
    Ok(LocalStore::open(root, cfg.lock_stale_secs)?)
}

/// `filesync serve` on Windows: the server is not built here.
#[cfg(windows)]
async fn serve(_: &Config, _: &Path, _: Option<String>) -> Result<i32> {
    bail!(
        "`filesync serve` is not supported on Windows: run it on Linux or macOS, or let the hub reach this folder through Windows' OpenSSH server"
    )
}

/// `filesync serve`: the SFTP server in the foreground until a signal stops it.
#[cfg(unix)]
async fn serve(cfg: &Config, root: &Path, listen: Option<String>) -> Result<i32> {
    let mut signals = Signals::listen().context("cannot handle signals")?;
    let mut scfg = cfg.server.clone().unwrap_or_default();
    if let Some(l) = listen {
        scfg.listen = l;
    }
    let bound = crate::server::bind(&scfg, root)
        .await?
        .named(&cfg.replica_name());
    // One machine-readable line so scripts (and tests) can use port 0.
    println!("listening on {}", bound.local_addr());
    let shutdown = Shutdown::default();
    let answering = crate::daemon::control::Answering {
        root: root.to_path_buf(),
        freshness: None,
        control: Some(bound.control()),
    };
    let _control = crate::daemon::control::serve(root, answering, shutdown.listener());
    let server = tokio::spawn(bound.run(shutdown.listener()));
    signals.next().await;
    shutdown.raise();
    server.await.context("the SFTP server task failed")??;
    Ok(0)
}
