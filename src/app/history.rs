//! `filesync trash`, `restore`, `conflicts`, `resolve` and `changes`: getting things back on
//! this machine's replica or on a peer's (over SFTP), and what a person reads of it.

use crate::config::Config;
use crate::endpoint::Target;
use crate::history::conflicts::Keep;
use crate::history::log::{Change, What};
use crate::history::versions::{Kept, Pick, Step, Versions};
use crate::relpath::RelPath;
use crate::store::{AnyStore, LocalStore, Store};
use crate::sync::human_bytes;
use crate::sync::recover::{self, Held};
use crate::time::readable;
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Which replica a command works on: this machine's (`--root`, else the configured root)
/// or a peer's.
#[derive(Debug, clap::Args)]
pub struct Where {
    /// The synced folder on this machine (default: `root` from the config).
    #[arg(long, value_name = "DIR", conflicts_with = "peer")]
    pub root: Option<PathBuf>,
    /// Another replica instead: a peer's name, sftp://user@host:port/path, or a folder.
    #[arg(long, value_name = "PEER")]
    pub peer: Option<String>,
    /// Trust an unknown host key and add it to known_hosts (a changed key is still refused).
    #[arg(long)]
    pub accept_new: bool,
}

#[derive(Debug, clap::Args)]
pub struct TrashArgs {
    /// A file or folder in the replica (default: everything kept).
    pub path: Option<String>,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The file or folder to put back: a path in the replica, from the current folder when
    /// that is inside the replica, else from the replica's root (a peer's: from its root).
    pub path: String,
    /// Which kept version of a file: 1 is the newest (`filesync trash PATH` numbers them).
    #[arg(long, value_name = "N", conflicts_with = "at")]
    pub version: Option<usize>,
    /// As it was at this time: "2026-12-06 13:30", "20261206-133000", or "2h" (ago).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Put a file back under another path instead (not a folder; with --at, only a version
    /// the trash keeps).
    #[arg(long = "as", value_name = "NEWPATH")]
    pub as_path: Option<String>,
    /// Restore even over an edit made since the last sync (it goes to the trash).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub on: Where,
}

#[derive(Debug, clap::Args)]
pub struct ConflictsArgs {
    #[command(flatten)]
    pub on: Where,
}

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// The file in conflict, or one of its conflict copies.
    pub path: String,
    /// this: the version at the file's name; other: the conflict copy's; both: keep the copy
    /// as an ordinary file beside it.
    #[arg(long, value_enum)]
    pub keep: Keep,
    #[command(flatten)]
    pub on: Where,
}

#[derive(Debug, clap::Args)]
pub struct ChangesArgs {
    /// Only changes since this time: "2026-12-06 13:30", "20261206-133000", or "2h" (ago).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Another replica's log: a peer's name, sftp://user@host:port/path, or a folder.
    #[arg(value_name = "PEER")]
    pub target: Option<String>,
    #[command(flatten)]
    pub on: Where,
}

async fn open(cfg: &Config, w: &Where, extra_peer: Option<&str>) -> Result<AnyStore> {
    if let Some(peer) = w.peer.as_deref().or(extra_peer) {
        let (t, _) = Target::parse(peer, cfg)?;
        return Ok(crate::sync::job::open_target(&t, cfg, w.accept_new).await?);
    }
    let root = super::root_of(w.root.clone(), cfg)?;
    Ok(AnyStore::Local(LocalStore::open(
        &root,
        cfg.lock_stale_secs,
    )?))
}

/// A path as typed. On this machine's replica: absolute, or relative to the current folder
/// when that is inside the replica, else to the replica's root. On a peer: relative to its
/// root. A path that leads out of the replica is refused, never folded into it.
fn rel(store: &AnyStore, typed: &str) -> Result<RelPath> {
    let inside = match store {
        AnyStore::Local(l) => {
            let cwd = std::env::current_dir().ok();
            in_replica(l.root(), cwd.as_deref(), std::path::Path::new(typed))
        }
        AnyStore::Sftp(_) if typed.starts_with('/') => bail!(
            "{typed:?}: on a peer give the path from its replica's root, e.g. docs/report.txt"
        ),
        AnyStore::Sftp(_) => in_replica(
            std::path::Path::new("/"),
            None,
            &std::path::Path::new("/").join(typed),
        ),
    };
    let Some(inside) = inside else {
        bail!(
            "{typed:?} is outside the replica {}; give a path inside it, e.g. docs/report.txt",
            store.describe()
        );
    };
    let p = RelPath::normalize_client(&inside)
        .with_context(|| format!("{typed:?} is not a path in the replica"))?;
    if p.is_root() || crate::replica::layout::is_internal(&p) {
        bail!(
            "{typed:?} is not a file or folder of the replica; give a path inside it, e.g. docs/report.txt"
        );
    }
    Ok(p)
}

/// `typed` as a `/`-separated path below `root` (absolute; else from `cwd` when that is
/// below `root`, else from `root`), `..` taken lexically; `None` when it leads outside.
fn in_replica(
    root: &std::path::Path,
    cwd: Option<&std::path::Path>,
    typed: &std::path::Path,
) -> Option<String> {
    use std::path::Component;
    let full = match cwd {
        _ if typed.is_absolute() => typed.to_path_buf(),
        Some(c) if c.starts_with(root) => c.join(typed),
        _ => root.join(typed),
    };
    // A link above the replica (e.g. /home being one) shows the root under another name.
    let below = full
        .strip_prefix(root)
        .ok()
        .map(std::path::Path::to_path_buf)
        .or_else(|| {
            let parent = std::fs::canonicalize(full.parent()?).ok()?;
            let name = full.file_name()?;
            Some(parent.strip_prefix(root).ok()?.join(name))
        })?;
    let mut parts: Vec<&str> = Vec::new();
    for c in below.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// A time as typed: a date and time (UTC), a `YYYYMMDD-HHMMSS` stamp, or a duration ago.
pub fn parse_time(s: &str, now: i64) -> Result<i64> {
    let t = s.trim();
    if let Some(secs) = crate::time::parse_stamp(t) {
        return Ok(secs);
    }
    let ago = t.strip_suffix("ago").unwrap_or(t).trim();
    if let Ok(d) = humantime::parse_duration(ago) {
        return Ok(now - d.as_secs() as i64);
    }
    let full = match t.len() {
        10 => format!("{t} 00:00:00"),
        16 => format!("{t}:00"),
        _ => t.trim_end_matches(" UTC").to_string(),
    };
    match humantime::parse_rfc3339_weak(&full) {
        Ok(st) => Ok(crate::index::MTime::from_system(st).secs),
        Err(_) => bail!(
            "{s:?} is not a time; use e.g. \"2026-12-06 13:30\" (UTC), \"20261206-133000\" or \"2h\" (ago)"
        ),
    }
}

fn spinner(what: String) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.set_message(what);
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(b)
}

/// The sync (or command) that sent a kept version to the trash, from the changes log.
fn why_kept<'l>(k: &Kept, log: &'l [Change]) -> Option<&'l Change> {
    log.iter()
        .rev()
        .find(|c| c.trashed && c.path == k.path && c.t - 1 <= k.trashed && k.trashed <= c.done + 1)
}

fn describe_kept(k: &Kept, log: &[Change]) -> String {
    match why_kept(k, log) {
        Some(c) if c.what == What::Deleted && c.source.starts_with("filesync ") => {
            format!("deleted by `{}`", c.source)
        }
        Some(c) if c.source.starts_with("filesync ") => format!("replaced by `{}`", c.source),
        Some(c) if c.what == What::Deleted => format!("deleted by a sync with {}", c.source),
        Some(c) => format!("replaced by a sync with {} ({})", c.source, c.what.verb()),
        None => "replaced or deleted".into(),
    }
}

/// `filesync trash [PATH]`.
pub async fn trash(cfg: &Config, args: &TrashArgs) -> Result<i32> {
    let store = open(cfg, &args.at, None).await?;
    let only = args.path.as_deref().map(|p| rel(&store, p)).transpose()?;
    let bar = spinner(format!("listing the trash of {}", store.describe()));
    let kept = recover::kept(&store).await?;
    let log = recover::read_log(&store).await.unwrap_or_default();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let chosen: Versions = kept
        .into_iter()
        .filter(|(p, _)| only.as_ref().is_none_or(|o| p.starts_with(o)))
        .collect();
    if chosen.is_empty() {
        match &only {
            Some(p) => bail!(
                "no version of {p} is kept in the trash of {}",
                store.describe()
            ),
            None => {
                println!("the trash of {} is empty", store.describe());
                return Ok(0);
            }
        }
    }
    let single = only
        .as_ref()
        .filter(|o| chosen.len() == 1 && chosen.contains_key(*o));
    if let Some(p) = single {
        println!(
            "{p}: versions kept in the trash of {}, newest first",
            store.describe()
        );
        for (i, k) in chosen[p].iter().enumerate() {
            println!(
                "{}",
                printable(format!(
                    "  {:>3}  {}  {:>9}  {}  (written {})",
                    i + 1,
                    readable(k.trashed),
                    human_bytes(k.size),
                    describe_kept(k, &log),
                    readable(k.mtime.secs)
                ))
            );
        }
        println!("put one back with `filesync restore {p} --version N`");
        return Ok(0);
    }
    let mut all: Vec<&Kept> = chosen.values().flatten().collect();
    all.sort_by_key(|k| std::cmp::Reverse((k.trashed, k.n)));
    for k in &all {
        println!(
            "{}",
            printable(format!(
                "{}  {:>9}  {}  {}",
                readable(k.trashed),
                human_bytes(k.size),
                k.path,
                describe_kept(k, &log)
            ))
        );
    }
    let bytes: u64 = all.iter().map(|k| k.size).sum();
    println!(
        "{} versions of {} files, {}, in the trash of {}",
        all.len(),
        chosen.len(),
        human_bytes(bytes),
        store.describe()
    );
    Ok(0)
}

/// `filesync restore PATH`.
pub async fn restore(cfg: &Config, args: &RestoreArgs) -> Result<i32> {
    let store = open(cfg, &args.on, None).await?;
    let target = rel(&store, &args.path)?;
    let to = match &args.as_path {
        Some(p) => rel(&store, p)?,
        None => target.clone(),
    };
    let pick = match (args.version, &args.at) {
        (Some(0), _) => bail!("--version counts from 1 (the newest kept version)"),
        (Some(n), _) => Pick::Version(n),
        (None, Some(t)) => Pick::At(parse_time(t, crate::time::now_secs())?),
        (None, None) => Pick::Newest,
    };
    let bar = spinner(format!("reading {}", store.describe()));
    let held = Held::take(&store, "filesync restore").await?;
    let res = restore_held(&held, &target, &to, pick, args.force, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    held.release().await?;
    let steps = res?;
    for s in &steps {
        match s {
            Step::Put { kept, to } => println!(
                "restored {to} ({}, written {}, kept since {})",
                human_bytes(kept.size),
                readable(kept.mtime.secs),
                readable(kept.trashed)
            ),
            Step::Trash(p) => println!("moved {p} to the trash (it did not exist then)"),
        }
    }
    match steps.len() {
        0 => println!("{to} already is as asked; nothing to restore"),
        n => println!(
            "{n} changes on {}; the next sync carries them to the other replicas",
            store.describe()
        ),
    }
    Ok(0)
}

async fn restore_held(
    held: &Held<'_, AnyStore>,
    target: &RelPath,
    to: &RelPath,
    pick: Pick,
    force: bool,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<Vec<Step>> {
    let kept = recover::kept(held.store).await?;
    let steps = recover::plan(held, &kept, target, to, pick, force)?;
    let total = steps.len();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let done = held
        .restore(&steps, |s| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let (Some(b), Step::Put { to, .. }) = (bar, s) {
                b.set_message(format!("restoring {i}/{total}: {to}"));
            }
        })
        .await;
    let done = done?;
    if let Err(e) = recover::append_log(held.store, &done).await {
        tracing::warn!(
            "cannot append to the changes log: {}",
            crate::store::Chain(&e)
        );
    }
    Ok(steps)
}

/// `filesync conflicts`.
pub async fn conflicts(cfg: &Config, args: &ConflictsArgs) -> Result<i32> {
    let store = open(cfg, &args.on, None).await?;
    // The rescan that brings the index up to date writes (temps, the hub's index): only
    // under the lock, as a restore takes it.
    let held = Held::take(&store, "filesync conflicts").await?;
    let copies = held.conflicts();
    let cur = held.index.clone();
    held.release().await?;
    let log = recover::read_log(&store).await.unwrap_or_default();
    if copies.is_empty() {
        println!("no open conflicts on {}", store.describe());
        return Ok(0);
    }
    for c in &copies {
        let winner = log
            .iter()
            .rev()
            .find(|l| l.what == What::Conflict && l.other.as_ref() == Some(&c.copy))
            .map_or("the other replica", |l| l.source.as_str());
        let at = |p: &RelPath| {
            cur.get(p)
                .filter(|e| e.is_live())
                .map_or("gone".to_string(), |e| readable(e.mtime.secs))
        };
        println!(
            "{}",
            printable(format!(
                "{}: {winner}'s version ({}); {}: {}'s version ({})",
                c.original,
                at(&c.original),
                c.copy,
                recover::replica_name(&cur, &c.replica),
                at(&c.copy)
            ))
        );
    }
    println!(
        "{} open conflicts on {}; end one with `filesync resolve PATH --keep this|other|both`",
        copies.len(),
        store.describe()
    );
    Ok(0)
}

/// `filesync resolve PATH --keep ...`.
pub async fn resolve(cfg: &Config, args: &ResolveArgs) -> Result<i32> {
    let store = open(cfg, &args.on, None).await?;
    let path = rel(&store, &args.path)?;
    let held = Held::take(&store, "filesync resolve").await?;
    let res = held.resolve(&path, args.keep).await;
    if let Ok(done) = &res
        && let Err(e) = recover::append_log(held.store, done).await
    {
        tracing::warn!(
            "cannot append to the changes log: {}",
            crate::store::Chain(&e)
        );
    }
    held.release().await?;
    for c in res? {
        let copy = c.other.as_ref().map(RelPath::to_string).unwrap_or_default();
        match args.keep {
            Keep::This => println!("kept {}; {copy} went to the trash", c.path),
            Keep::Other => println!(
                "{} now holds {copy}'s version; both earlier files are in the trash",
                c.path
            ),
            Keep::Both => println!("kept both: {copy} is now {}", c.path),
        }
    }
    println!("the next sync ends the conflict on the other replicas too");
    Ok(0)
}

/// `filesync changes`.
pub async fn changes(cfg: &Config, args: &ChangesArgs) -> Result<i32> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time(s, crate::time::now_secs()))
        .transpose()?;
    let store = open(cfg, &args.on, args.target.as_deref()).await?;
    let log = recover::read_log(&store).await?;
    let shown: Vec<&Change> = log
        .iter()
        .filter(|c| since.is_none_or(|s| c.done >= s))
        .collect();
    for c in &shown {
        println!("{}", printable(change_line(c)));
    }
    println!("{} changes on {}", shown.len(), store.describe());
    Ok(0)
}

/// A line as a terminal shows it: names and messages from disk or a peer may hold control
/// characters (escape sequences), each shown as `?`.
fn printable(line: String) -> String {
    if !line.chars().any(char::is_control) {
        return line;
    }
    line.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn change_line(c: &Change) -> String {
    let other = c.other.as_ref();
    let what = match (c.what, other) {
        (What::Renamed, Some(o)) => format!("renamed {o} -> {}", c.path),
        (What::Conflict, Some(o)) => format!(
            "conflict {}: {}'s version keeps the name, the other is {o}",
            c.path, c.source
        ),
        (What::Restored, Some(o)) => format!("restored {} from {o}", c.path),
        (What::Resolved, Some(o)) => format!("resolved {} ({o})", c.path),
        (w, _) => format!("{} {}", w.verb(), c.path),
    };
    let from = match c.what {
        What::Conflict => String::new(),
        _ if c.source.starts_with("filesync ") => format!(" by `{}`", c.source),
        _ => format!(" from {}", c.source),
    };
    let trashed = if c.trashed {
        " (the old version is in the trash)"
    } else {
        ""
    };
    let error = c
        .error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!("{}  {what}{from}{trashed}{error}", readable(c.t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_not_printed() {
        let c = Change {
            t: 0,
            done: 0,
            run: 1,
            what: What::Error,
            path: RelPath::parse("a\u{1b}[2Jb").unwrap(),
            other: None,
            source: "pi\u{7}".into(),
            trashed: false,
            error: Some("bad\r\nthing".into()),
        };
        let line = printable(change_line(&c));
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("error a?[2Jb from pi?: bad??thing"),
            "{line:?}"
        );
    }

    #[test]
    fn typed_paths_stay_inside_the_replica() {
        let root = std::path::Path::new("/r/sync");
        let at = |cwd: Option<&str>, typed: &str| {
            in_replica(
                root,
                cwd.map(std::path::Path::new),
                std::path::Path::new(typed),
            )
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(at(None, "docs/a.txt"), some("docs/a.txt"));
        assert_eq!(at(Some("/elsewhere"), "docs/a.txt"), some("docs/a.txt"));
        assert_eq!(at(Some("/r/sync/docs"), "a.txt"), some("docs/a.txt"));
        assert_eq!(at(Some("/r/sync/docs"), "../b/./c"), some("b/c"));
        assert_eq!(
            at(Some("/elsewhere"), "/r/sync/docs/a.txt"),
            some("docs/a.txt")
        );
        assert_eq!(at(None, "/r/other/a.txt"), None);
        assert_eq!(at(None, "/etc/passwd"), None);
        assert_eq!(at(None, "../x"), None);
        assert_eq!(at(Some("/r/sync/docs"), "../../x"), None);
        assert_eq!(at(None, "docs/../../x"), None);
    }

    #[test]
    fn times_as_people_type_them() {
        let now = 1_764_011_090;
        assert_eq!(parse_time("20251124-190450", now).unwrap(), now);
        assert_eq!(parse_time("2025-11-24 19:04:50", now).unwrap(), now);
        assert_eq!(parse_time("2025-11-24 19:04", now).unwrap(), now - 50);
        assert_eq!(
            parse_time("2025-11-24", now).unwrap(),
            now - 19 * 3600 - 290
        );
        assert_eq!(parse_time("2h", now).unwrap(), now - 7200);
        assert_eq!(parse_time("2h ago", now).unwrap(), now - 7200);
        let e = parse_time("yesterday-ish", now).unwrap_err().to_string();
        assert!(e.contains("is not a time") && !e.contains('\n'), "{e}");
    }
}
