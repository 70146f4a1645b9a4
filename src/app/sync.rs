//! `filesync sync`: two targets from the command line (and the config), one job, and what a
//! person reads at the end: each conflict, the summary, the files that were changing, and
//! the errors that need a look (exit 1 only for those).

use super::cli::SyncArgs;
use crate::config::Config;
use crate::endpoint::Target;
use crate::plan::{Op, Side};
use crate::shutdown::Signals;
use crate::store::{AnyStore, Store};
use crate::sync::job::{End, Job};
use crate::sync::{SyncReport, human_bytes};
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;

pub async fn sync(cfg: &Config, args: &SyncArgs, verbose: bool) -> Result<i32> {
    let (peer, here) = targets(cfg, &args.a, args.b.as_deref())?;
    // The configured root (or the second argument) is the left side; the peer is the right.
    let left = End {
        target: &here.0,
        name: here.1,
    };
    let right = End {
        target: &peer.0,
        name: peer.1,
    };
    let mut job = Job::open(cfg, left, right, args.accept_new).await?;
    job.opts.progress = !args.no_progress && std::io::stderr().is_terminal();
    job.opts.dry_run = args.dry_run;
    let started = std::time::Instant::now();
    let report = run(&job).await?;
    print_report(&report, &job.left, &job.right, args.dry_run);
    if !args.dry_run {
        let secs = started.elapsed().as_secs_f64();
        println!("{} in {secs:.1}s", report.summary());
        if let Some(note) = report.changing_note() {
            println!("{note}");
        }
    }
    print_skipped(&report, &job.left, &job.right, verbose);
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

type Named = (Target, String);

/// The peer (`a`) and this machine's side (`b`, or the configured root), with the names
/// each records the other by.
fn targets(cfg: &Config, a: &str, b: Option<&str>) -> Result<(Named, Named)> {
    let peer = Target::parse(a, cfg)?;
    let here = match b {
        Some(b) => Target::parse(b, cfg)?,
        None => match &cfg.root {
            Some(r) => (Target::Local(r.clone()), cfg.replica_name()),
            None => bail!(
                "only one replica given and no `root` configured: run `filesync sync A B`, \
                 or set `root` in ~/.config/filesync/config.toml"
            ),
        },
    };
    peer_or_folder(cfg, &peer.0, a)?;
    peer_or_folder(cfg, &here.0, b.unwrap_or_default())?;
    Ok((peer, here))
}

/// A bare word that is no folder here was most likely meant as a peer's name.
fn peer_or_folder(cfg: &Config, t: &Target, typed: &str) -> Result<()> {
    let Target::Local(p) = t else {
        return Ok(());
    };
    if typed.is_empty() || typed.contains('/') || p.exists() {
        return Ok(());
    }
    let known: Vec<&str> = cfg.peers.keys().map(String::as_str).collect();
    let hint = if known.is_empty() {
        format!(
            "add [peers.{typed}] with its url to ~/.config/filesync/config.toml, or give a path"
        )
    } else {
        format!("configured peers: {}", known.join(", "))
    };
    bail!("{typed:?} is neither a configured peer nor a folder here; {hint}")
}

/// How long an interrupted sync may spend removing its temps and releasing its locks.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the job; Ctrl-C, a `kill` or a closed terminal stops it cleanly. The handlers are in
/// place before any lock is taken.
async fn run(job: &Job) -> Result<SyncReport> {
    let mut signals = Signals::listen().context("cannot handle signals")?;
    let report = tokio::select! {
        r = job.run() => r,
        _ = signals.next() => {
            // The far side's unfinished temps go first (`Job::abandon`), for a bounded time;
            // a second signal stops at once. What is left goes at the next sync.
            tokio::select! {
                () = job.abandon(ABANDON_GRACE) => {}
                _ = signals.next() => {}
            }
            bail!("interrupted; nothing is torn, run the sync again to finish");
        }
    };
    match report {
        Err(e) if e.is_connection_lost() => {
            bail!("{e}; nothing is torn, run the sync again to finish")
        }
        r => Ok(r?),
    }
}

/// The count of what was left out, and with `-v` each path, named on its side.
fn print_skipped(r: &SyncReport, left: &AnyStore, right: &AnyStore, verbose: bool) {
    let Some(note) = r.skipped_note() else {
        return;
    };
    if verbose {
        for (on_left, s) in r.skipped() {
            let side = if on_left {
                left.describe()
            } else {
                right.describe()
            };
            println!("not synced: {s} on {side} ({})", s.why.what());
        }
        for (st, side) in [(&r.scan_left, left), (&r.scan_right, right)] {
            for (why, n) in &st.skipped_more {
                let counted = why.counted(*n as usize);
                println!(
                    "not synced: {counted} more on {}, not named by it",
                    side.describe()
                );
            }
        }
    }
    println!("{note}");
}

fn print_report(r: &SyncReport, left: &AnyStore, right: &AnyStore, dry_run: bool) {
    let name = |s: Side| match s {
        Side::Left => left.describe(),
        Side::Right => right.describe(),
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
                Op::Chmod { mode, .. } => format!("set permissions {mode:03o} on"),
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
