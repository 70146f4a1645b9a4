//! What each subcommand does: the CLI edge, where errors get their context for a person.

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::endpoint::Target;
use crate::index::{Index, ReplicaId};
use crate::plan::{Op, Side};
use crate::replica::lock::LockInfo;
use crate::store::{AnyStore, LocalStore, Store, StoreError};
use crate::sync::job::{End, Job};
use crate::sync::{SyncReport, human_bytes};
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Runs a parsed command line; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Index { root } => index(&root_of(root, &cfg)?, &cfg),
        Command::Status { root } => status(&root_of(root, &cfg)?, &cfg),
        Command::Sync {
            a,
            b,
            dry_run,
            accept_new,
            no_progress,
        } => runtime()?.block_on(sync(
            &cfg,
            &a,
            b.as_deref(),
            dry_run,
            accept_new,
            no_progress,
        )),
        Command::Serve { root, listen } => {
            let root = root_of(root, &cfg)?;
            runtime()?.block_on(serve(&cfg, &root, listen))
        }
        Command::Daemon { root } => {
            let root = root_of(root, &cfg)?;
            runtime()?.block_on(daemon(&cfg, &root, cli.config.as_deref()))
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

/// `filesync index`: refresh the index, or set a corrupt one aside and rebuild it.
fn index(root: &Path, cfg: &Config) -> Result<i32> {
    let store = open_local(root, cfg)?;
    store.lock_blocking(&LockInfo::here("filesync index"))?;
    let res = (|| -> Result<i32> {
        let mut idx = match store.load_index_blocking() {
            Ok(Some(i)) => i,
            Ok(None) => Index::new(ReplicaId::random()),
            Err(StoreError::CorruptIndex { reason, .. }) => {
                let aside = store.set_aside_index()?;
                tracing::warn!(
                    "the index was corrupt ({reason}); kept it as {} and rebuilding",
                    aside.display()
                );
                Index::new(ReplicaId::random())
            }
            Err(e) => return Err(e.into()),
        };
        idx.name = Some(cfg.replica_name());
        let busy = store.busy();
        let root = crate::relpath::RelPath::root();
        let st = crate::scan::scan(store.handle(), &mut idx, &root, &|p| busy.contains(p))
            .with_context(|| format!("cannot scan {}", store.root().display()))?;
        crate::store::local::remove_leftover_temps(store.handle(), &st.temps);
        store.save_index_blocking(&idx)?;
        let (files, dirs, tombs) = idx.counts();
        println!(
            "indexed {}: {files} files, {dirs} folders, {} ({tombs} deletions remembered); \
             {} added, {} modified, {} deleted, {} hashed",
            store.root().display(),
            human_bytes(idx.live_bytes()),
            st.added,
            st.modified,
            st.deleted,
            st.hashed
        );
        for (p, why) in &st.unreadable {
            eprintln!("filesync: warning: could not read {p}: {why}");
        }
        Ok(if st.unreadable.is_empty() { 0 } else { 1 })
    })();
    store.unlock_blocking()?;
    res
}

fn status(root: &Path, cfg: &Config) -> Result<i32> {
    let store = open_local(root, cfg)?;
    // A running daemon knows more (and more cheaply) than a scan.
    if let Some(report) = crate::daemon::status::query(store.root()) {
        print!("{}", report.render());
        return Ok(0);
    }
    let idx = store.load_index_blocking()?;
    let Some(idx) = idx else {
        println!(
            "{} has no index yet; run `filesync index --root {}`",
            store.root().display(),
            store.root().display()
        );
        return Ok(0);
    };
    let mut fresh = idx.clone();
    let root = crate::relpath::RelPath::root();
    let st = crate::scan::scan(
        store.handle(),
        &mut fresh,
        &root,
        &crate::scan::nothing_busy,
    )
    .with_context(|| format!("cannot scan {}", store.root().display()))?;
    let (files, dirs, tombs) = idx.counts();
    println!(
        "replica {} ({}) at {}",
        idx.replica,
        idx.name.as_deref().unwrap_or("unnamed"),
        store.root().display()
    );
    println!(
        "indexed: {files} files, {dirs} folders, {} ({tombs} deletions remembered)",
        human_bytes(idx.live_bytes())
    );
    println!(
        "pending local changes: {} added, {} modified, {} deleted",
        st.added, st.modified, st.deleted
    );
    if idx.peers.is_empty() {
        println!("last syncs: none yet");
    } else {
        println!("last syncs:");
        let now = crate::time::now_secs();
        for (id, p) in &idx.peers {
            println!(
                "  {} ({id}): {} ({} ago), {} files moved, {} conflicts",
                if p.name.is_empty() { "?" } else { &p.name },
                crate::time::readable(p.last_sync),
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(p.last_sync).max(0) as u64
                )),
                p.transferred,
                p.conflicts
            );
        }
    }
    Ok(0)
}

async fn sync(
    cfg: &Config,
    a: &str,
    b: Option<&str>,
    dry_run: bool,
    accept_new: bool,
    no_progress: bool,
) -> Result<i32> {
    let (ta, name_a) = Target::parse(a, cfg)?;
    let (tb, name_b) = match b {
        Some(b) => Target::parse(b, cfg)?,
        None => match &cfg.root {
            Some(r) => (Target::Local(r.clone()), cfg.replica_name()),
            None => bail!(
                "only one replica given and no `root` configured: run `filesync sync A B`, \
                 or set `root` in ~/.config/filesync/config.toml"
            ),
        },
    };
    for (t, typed) in [(&ta, a), (&tb, b.unwrap_or_default())] {
        // A bare word that is no folder here was most likely meant as a peer's name.
        if let Target::Local(p) = t
            && !typed.is_empty()
            && !typed.contains('/')
            && !p.exists()
        {
            let known: Vec<&str> = cfg.peers.keys().map(String::as_str).collect();
            bail!(
                "{typed:?} is neither a configured peer nor a folder here; {}",
                if known.is_empty() {
                    format!(
                        "add [peers.{typed}] with its url to ~/.config/filesync/config.toml, or give a path"
                    )
                } else {
                    format!("configured peers: {}", known.join(", "))
                }
            );
        }
    }
    // The configured root (or the second argument) is the left side; the peer is the right.
    let left = End {
        target: &tb,
        name: name_b,
    };
    let right = End {
        target: &ta,
        name: name_a,
    };
    let mut job = Job::open(cfg, left, right, accept_new).await?;
    job.opts.progress = !no_progress && std::io::stderr().is_terminal();
    job.opts.dry_run = dry_run;
    let started = std::time::Instant::now();
    let stop = interrupted()?;
    let report = tokio::select! {
        r = job.run() => r,
        _ = stop => {
            job.abandon().await;
            bail!("interrupted; nothing is torn, run the sync again to finish");
        }
    };
    let report = match report {
        Err(e) if e.is_connection_lost() => {
            bail!("{e}; nothing is torn, run the sync again to finish")
        }
        r => r?,
    };
    print_report(&report, &job.left, &job.right, dry_run);
    if !dry_run {
        println!(
            "{} in {:.1}s",
            report.summary(),
            started.elapsed().as_secs_f64()
        );
        if let Some(note) = report.changing_note() {
            println!("{note}");
        }
    }
    if report.errors.is_empty() {
        return Ok(0);
    }
    for e in &report.errors {
        eprintln!("filesync: error: {e}");
    }
    eprintln!(
        "filesync: {} items could not be synced; they are untouched and the next sync retries them",
        report.errors.len()
    );
    Ok(1)
}

/// Ctrl-C, a `kill` (SIGTERM) or a closed terminal (SIGHUP): the sync stops cleanly. The
/// handlers are in place when this returns, before any lock is taken.
fn interrupted() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    })
}

fn print_report(r: &SyncReport, left: &AnyStore, right: &AnyStore, dry_run: bool) {
    let name = |s: Side| {
        if s == Side::Left {
            left.describe()
        } else {
            right.describe()
        }
    };
    if dry_run {
        for s in &r.plan.steps {
            let what = match &s.op {
                Op::Record => continue,
                Op::MoveAside { to } => format!("keep as {to}"),
                Op::Fetch { source, .. } => format!("copy ({})", human_bytes(source.size)),
                Op::Move { from, .. } => format!("move {from} to"),
                Op::MkDir { .. } => "create folder".into(),
                Op::Trash { .. } => "delete (to trash)".into(),
                Op::RmDir => "remove folder".into(),
            };
            println!("{}: {} {}", name(s.side), what, s.path);
        }
    }
    for c in &r.conflicts {
        println!(
            "conflict: {} changed on both sides; {}'s version keeps the name, the other is kept as {}",
            c.path,
            name(c.winner),
            c.copy
        );
    }
}

async fn serve(cfg: &Config, root: &Path, listen: Option<String>) -> Result<i32> {
    crate::server::serve_foreground(cfg, root, listen).await?;
    Ok(0)
}

async fn daemon(cfg: &Config, root: &Path, config_file: Option<&Path>) -> Result<i32> {
    crate::daemon::run(cfg, root, config_file).await?;
    Ok(0)
}
