//! The sync engine: lock both replicas, refresh both indexes, plan, apply, save both indexes.
//!
//! Every disk change goes through a `Store`; a step whose inputs moved since the scan is skipped
//! (and retried next time) rather than guessed at.

use crate::index::{Entry, Index, Kind, PeerRecord, ReplicaId};
use crate::plan::{self, Conflict, Op, Plan, Side, Step};
use crate::relpath::RelPath;
use crate::scan::{Observed, ScanStats};
use crate::store::{
    BATCH_BYTES, BATCH_FILE, BATCH_FILES, BatchFile, LockInfo, Put, Reader, Store, StoreError,
};
use crate::time::now_secs;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Transfers and deletions in flight at once.
    pub concurrency: usize,
    pub trash_days: u64,
    /// Show a progress bar (a terminal is attached).
    pub progress: bool,
    /// Names recorded in each side's peer list.
    pub left_name: String,
    pub right_name: String,
    /// Plan only: print what would happen, change nothing.
    pub dry_run: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: 8,
            trash_days: 30,
            progress: false,
            left_name: "left".into(),
            right_name: "right".into(),
            dry_run: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct SyncReport {
    /// Files and bytes copied to the right side.
    pub sent: (u64, u64),
    /// Files and bytes copied to the left side.
    pub received: (u64, u64),
    /// Files and folders deleted (moved to the trash) on either side.
    pub deleted: u64,
    /// Replaced files kept in the trash.
    pub trashed: u64,
    /// Renames applied as moves instead of copies.
    pub moved: u64,
    pub conflicts: Vec<Conflict>,
    /// Steps that failed; their paths are retried by the next sync.
    pub errors: Vec<String>,
    pub scan_left: ScanStats,
    pub scan_right: ScanStats,
    /// The plan (kept for `--dry-run` output and tests).
    pub plan: Plan,
}

impl SyncReport {
    pub fn summary(&self) -> String {
        format!(
            "sent {} files ({}), received {} files ({}), moved {}, deleted {}, conflicts {}, trashed {}{}",
            self.sent.0,
            human_bytes(self.sent.1),
            self.received.0,
            human_bytes(self.received.1),
            self.moved,
            self.deleted,
            self.conflicts.len(),
            self.trashed,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", {} errors", self.errors.len())
            }
        )
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What a daemon's watcher writes into `.sync.lock` while it updates the index.
pub const INDEX_UPDATE_LOCK: &str = "filesync daemon (index update)";

/// Takes both locks. A lock held for an index update (a daemon saving what its watcher saw,
/// seconds at most), or one not readable yet (being written), is waited for, up to half a
/// minute; any other holder is an error at once.
async fn lock_both<L: Store, R: Store>(
    left: &L,
    right: &R,
    info: &LockInfo,
) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut pause = std::time::Duration::from_millis(100);
    let mut said = false;
    loop {
        let res = match left.lock(info).await {
            Ok(()) => match right.lock(info).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = left.unlock().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        match res {
            Err(StoreError::Locked { ref holder, .. })
                if (holder.starts_with(INDEX_UPDATE_LOCK)
                    || holder == crate::store::UNKNOWN_HOLDER)
                    && std::time::Instant::now() < deadline =>
            {
                if !said {
                    tracing::info!("waiting for an index update to finish ({holder})");
                    said = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Syncs two replicas both ways. Locks are released on every path out, errors included.
pub async fn sync<L: Store, R: Store>(
    left: &L,
    right: &R,
    opts: &SyncOptions,
) -> Result<SyncReport, StoreError> {
    let info = LockInfo::here("filesync sync");
    let t0 = std::time::Instant::now();
    lock_both(left, right, &info).await?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "locked both");
    let res = sync_locked(left, right, opts).await;
    let ur = right.unlock().await;
    let ul = left.unlock().await;
    let report = res?;
    ur?;
    ul?;
    Ok(report)
}

async fn sync_locked<L: Store, R: Store>(
    left: &L,
    right: &R,
    opts: &SyncOptions,
) -> Result<SyncReport, StoreError> {
    let t0 = std::time::Instant::now();
    let (cl, cr) = tokio::join!(left.current_index(), right.current_index());
    let (cl, cr) = (cl?, cr?);
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "indexes current");
    let (mut li, mut ri) = (cl.index, cr.index);
    if li.replica == ri.replica {
        return Err(StoreError::Other(format!(
            "{} and {} have the same replica id {} (one folder was copied with its .sync); \
             delete .sync in the copy and run `filesync index` there",
            left.describe(),
            right.describe(),
            li.replica
        )));
    }
    // What each index held on disk, to skip rewriting an index that did not change.
    let (loaded_l, loaded_r) = (cl.loaded, cr.loaded);
    li.name.get_or_insert_with(|| opts.left_name.clone());
    ri.name.get_or_insert_with(|| opts.right_name.clone());
    let mut report = SyncReport {
        scan_left: cl.stats,
        scan_right: cr.stats,
        ..Default::default()
    };
    // What a side could not read is left as it was there, unsynced: the sync did not finish.
    for (stats, side) in [
        (&report.scan_left, left.describe()),
        (&report.scan_right, right.describe()),
    ] {
        for (p, why) in &stats.unreadable {
            report
                .errors
                .push(format!("cannot read {p} on {side} ({why}); left as it was"));
        }
    }

    let plan = plan::plan(&li, &ri);
    tracing::debug!(steps = plan.steps.len(), "planned");
    if opts.dry_run {
        report.plan = plan;
        report.conflicts = report.plan.conflicts.clone();
        return Ok(report);
    }

    let ((nl, bl), (nr, br)) = plan.transfer_totals();
    let bar = opts.progress.then(|| {
        let b = ProgressBar::new(bl + br);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(format!("{} files", nl + nr));
        b
    });

    let mut failed: HashSet<RelPath> = HashSet::new();
    let mut by_phase: Vec<Vec<&Step>> = vec![Vec::new(); Op::PHASES];
    for s in &plan.steps {
        by_phase[usize::from(s.op.phase())].push(s);
    }
    // A conflict copy that failed to land blocks the index update of its original path.
    let copy_of: std::collections::HashMap<&RelPath, &RelPath> =
        plan.conflicts.iter().map(|c| (&c.copy, &c.path)).collect();

    // A lost connection ends the sync with one error instead of one per remaining step.
    let mut lost: Option<StoreError> = None;
    for (phase, steps) in by_phase.iter().enumerate() {
        if let Some(e) = lost.take() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Err(e);
        }
        let parallel = matches!(phase, 2..=4);
        let results: Vec<(&Step, Result<Entry, StoreError>)> = if parallel {
            let units = units(steps, left.batches(), right.batches());
            futures::stream::iter(units.into_iter().map(|u| {
                let bar = bar.as_ref();
                async move {
                    match u {
                        Unit::One(s) => vec![(s, run_step(s, left, right, bar).await)],
                        Unit::Batch(v) => run_batch(v, left, right, bar).await,
                    }
                }
            }))
            .buffer_unordered(opts.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect()
        } else {
            let mut v: Vec<(&Step, Result<Entry, StoreError>)> = Vec::with_capacity(steps.len());
            for s in steps {
                if v.last()
                    .is_some_and(|(_, r)| r.as_ref().is_err_and(StoreError::is_connection_lost))
                {
                    break;
                }
                if s.op == Op::Record
                    && (failed.contains(&s.path)
                        || copy_of.get(&s.path).is_some_and(|o| failed.contains(*o)))
                {
                    continue;
                }
                // Children of a folder that could not be made are skipped, not attempted.
                if s.path.ancestors().any(|a| failed.contains(&a)) && s.op != Op::Record {
                    failed.insert(s.path.clone());
                    report
                        .errors
                        .push(format!("{}: skipped, its folder failed", s.path));
                    continue;
                }
                v.push((*s, run_step(s, left, right, bar.as_ref()).await));
            }
            v
        };
        for (s, r) in results {
            match r {
                Ok(result) => {
                    let idx = if s.side == Side::Left {
                        &mut li
                    } else {
                        &mut ri
                    };
                    match &s.op {
                        Op::MoveAside { to } => {
                            idx.entries.remove(&s.path);
                            idx.entries.insert(to.clone(), result);
                        }
                        Op::Move {
                            from, from_result, ..
                        } => {
                            report.moved += 1;
                            idx.entries.insert(from.clone(), from_result.clone());
                            idx.entries.insert(s.path.clone(), result);
                        }
                        op => {
                            match op {
                                Op::Fetch {
                                    source, replace, ..
                                } => {
                                    let t = if s.side == Side::Left {
                                        &mut report.received
                                    } else {
                                        &mut report.sent
                                    };
                                    t.0 += 1;
                                    t.1 += source.size;
                                    if replace.is_some() {
                                        report.trashed += 1;
                                    }
                                }
                                Op::Trash { .. } | Op::RmDir => report.deleted += 1,
                                Op::MkDir { replace: Some(_) } => report.trashed += 1,
                                _ => {}
                            }
                            idx.entries.insert(s.path.clone(), result);
                        }
                    }
                }
                Err(e) if e.is_connection_lost() => {
                    lost.get_or_insert(e);
                }
                Err(e) => {
                    let side = if s.side == Side::Left {
                        left.describe()
                    } else {
                        right.describe()
                    };
                    // Reported once, by whoever runs the sync (the CLI at the end, the daemon's
                    // log), from `report.errors`.
                    tracing::debug!(path = %s.path, op = s.op.name(), "on {side}: {e}");
                    report
                        .errors
                        .push(format!("{} {} on {side}: {e}", s.op.name(), s.path));
                    failed.insert(s.path.clone());
                    if let Some(orig) = copy_of.get(&s.path) {
                        failed.insert((*orig).clone());
                    }
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(e) = lost {
        return Err(e);
    }
    report.conflicts = plan.conflicts.clone();
    report.plan = plan;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "applied");

    let now = now_secs();
    let moved = report.sent.0 + report.received.0 + report.moved;
    let conflicts = report.conflicts.len() as u64;
    let save_l = note_peer(
        &mut li,
        loaded_l,
        ri.replica,
        &opts.right_name,
        now,
        moved,
        conflicts,
    );
    let save_r = note_peer(
        &mut ri,
        loaded_r,
        li.replica,
        &opts.left_name,
        now,
        moved,
        conflicts,
    );
    // Expiring the trash walks it (many round trips on a remote): a few times a day is enough
    // for an age counted in days.
    let sweep_l = sweep_due(&mut li, now);
    let sweep_r = sweep_due(&mut ri, now);
    // Both written at once, put in place left first: any counter the planner bumped belongs to
    // the left replica (see `plan`), so the right must never name one the left has not kept.
    let (sl, sr) = tokio::join!(
        async {
            if save_l || sweep_l {
                left.stage_index(&li).await
            } else {
                Ok(None)
            }
        },
        async {
            if save_r || sweep_r {
                right.stage_index(&ri).await
            } else {
                Ok(None)
            }
        },
    );
    let committed_l = match sl {
        Ok(Some(s)) => left.commit_index(s).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match (committed_l, sr) {
        (Ok(()), Ok(Some(s))) => right.commit_index(s).await?,
        (Ok(()), r) => r.map(|_| ())?,
        (Err(e), r) => {
            if let Ok(Some(s)) = r {
                right.discard_index(s).await;
            }
            return Err(e);
        }
    }
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "indexes saved");
    let sweep = |due: bool, days: u64| if due { days } else { 0 };
    // `cleanup(0)` keeps everything and returns at once.
    let (cl, cr) = tokio::join!(
        left.cleanup(sweep(sweep_l, opts.trash_days)),
        right.cleanup(sweep(sweep_r, opts.trash_days)),
    );
    for (s, name) in [(cl, left.describe()), (cr, right.describe())] {
        if let Err(e) = s {
            tracing::warn!("trash cleanup on {name}: {e}");
        }
    }
    Ok(report)
}

/// Index key (top level) holding when this replica's trash was last swept, unix seconds.
const SWEPT_KEY: &str = ".swept";
const SWEEP_EVERY_SECS: i64 = 6 * 3600;

/// Whether the trash of `idx`'s replica is due for expiry; if so, records `now` as its sweep.
fn sweep_due(idx: &mut Index, now: i64) -> bool {
    let last = idx
        .extra
        .get(SWEPT_KEY)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    // A clock that went backwards would otherwise postpone the sweep for as long.
    if (0..SWEEP_EVERY_SECS).contains(&(now - last)) {
        return false;
    }
    idx.extra.insert(SWEPT_KEY.into(), now.into());
    true
}

/// Records a sync with `peer`; true when the index must be written: its entries changed, or
/// its record of this peer is missing or over an hour old. A no-op sync writes nothing.
fn note_peer(
    idx: &mut Index,
    loaded: crate::index::ContentHash,
    peer: ReplicaId,
    name: &str,
    now: i64,
    transferred: u64,
    conflicts: u64,
) -> bool {
    let changed = idx.entries_digest() != loaded;
    let stale = idx
        .peers
        .get(&peer)
        .is_none_or(|p| p.name != name || now - p.last_sync > 3600);
    if changed || stale {
        idx.peers.insert(
            peer,
            PeerRecord {
                name: name.to_string(),
                last_sync: now,
                transferred,
                conflicts,
            },
        );
    }
    changed || stale
}

/// Equal times, where a store with 1-second resolution (SFTP v3 reports no nanoseconds) agrees
/// with an index that recorded the nanoseconds (one kept by the remote's own server).
fn same_mtime(a: crate::index::MTime, b: crate::index::MTime) -> bool {
    a == b || (a.secs == b.secs && (a.nanos == 0 || b.nanos == 0))
}

/// Whether the disk still holds what the index said when the plan was made.
fn matches(o: Option<Observed>, e: Option<&Entry>) -> bool {
    match (o, e.filter(|e| e.is_live())) {
        (None, None) => true,
        (Some(o), Some(e)) => match e.kind {
            Kind::File => o.kind == Kind::File && o.size == e.size && same_mtime(o.mtime, e.mtime),
            Kind::Dir => o.kind == Kind::Dir,
            Kind::Deleted => false,
        },
        _ => false,
    }
}

async fn check<S: Store>(s: &S, p: &RelPath, e: Option<&Entry>) -> Result<(), StoreError> {
    let o = s.stat(p).await?;
    if matches(o, e) {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "{p} changed on {} since it was scanned; it will be synced next time",
            s.describe()
        )))
    }
}

async fn run_step<L: Store, R: Store>(
    s: &Step,
    left: &L,
    right: &R,
    bar: Option<&ProgressBar>,
) -> Result<Entry, StoreError> {
    match s.side {
        Side::Left => apply(s, left, right, bar).await,
        Side::Right => apply(s, right, left, bar).await,
    }
}

/// What the engine runs as one piece of work: a step, or a batch of small fetches into one
/// replica (one durability barrier for all of them instead of one per file).
#[derive(Debug)]
enum Unit<'a> {
    One(&'a Step),
    Batch(Vec<&'a Step>),
}

/// The size of a fetch small enough to travel in a batch: small, and with a hash to check it
/// by (a source without one needs a look before it is read; see `apply`).
fn batchable(s: &Step) -> Option<u64> {
    match &s.op {
        Op::Fetch { source, .. } if source.size <= BATCH_FILE && source.hash.is_some() => {
            Some(source.size)
        }
        _ => None,
    }
}

/// The steps of a phase as units: small fetches into a replica whose store `batches` grouped
/// into batches of at most `BATCH_FILES` files and about `BATCH_BYTES`, first (they finish
/// quickly); every other step on its own.
fn units<'a>(steps: &[&'a Step], batch_left: bool, batch_right: bool) -> Vec<Unit<'a>> {
    let mut out = Vec::new();
    let mut singles = Vec::new();
    let mut open: [(Vec<&Step>, u64); 2] = [(Vec::new(), 0), (Vec::new(), 0)];
    for s in steps {
        let batches = match s.side {
            Side::Left => batch_left,
            Side::Right => batch_right,
        };
        let Some(size) = batchable(s).filter(|_| batches) else {
            singles.push(Unit::One(s));
            continue;
        };
        let (batch, bytes) = &mut open[usize::from(s.side == Side::Right)];
        if !batch.is_empty() && (batch.len() >= BATCH_FILES || *bytes + size > BATCH_BYTES) {
            out.push(Unit::Batch(std::mem::take(batch)));
            *bytes = 0;
        }
        batch.push(*s);
        *bytes += size;
    }
    for (batch, _) in open {
        if !batch.is_empty() {
            out.push(Unit::Batch(batch));
        }
    }
    out.extend(singles);
    out
}

async fn run_batch<'s, L: Store, R: Store>(
    steps: Vec<&'s Step>,
    left: &L,
    right: &R,
    bar: Option<&ProgressBar>,
) -> Vec<(&'s Step, Result<Entry, StoreError>)> {
    match steps.first().map(|s| s.side) {
        Some(Side::Left) => apply_batch(steps, left, right, bar).await,
        Some(Side::Right) => apply_batch(steps, right, left, bar).await,
        None => Vec::new(),
    }
}

/// Runs a batch of small fetches into `here`: what they replace looked at (as `apply` does),
/// the sources read together, then written together.
async fn apply_batch<'s, H: Store, T: Store>(
    steps: Vec<&'s Step>,
    here: &H,
    there: &T,
    bar: Option<&ProgressBar>,
) -> Vec<(&'s Step, Result<Entry, StoreError>)> {
    let fetch = |s: &'s Step| match &s.op {
        Op::Fetch {
            from,
            source,
            replace,
        } => Some((from, source, replace.as_ref())),
        _ => None,
    };
    let mut results: Vec<Option<Result<Entry, StoreError>>> = steps.iter().map(|_| None).collect();
    let checks = futures::future::join_all(steps.iter().map(|s| async move {
        match fetch(s) {
            Some((_, _, replace)) if replace.is_some_and(Entry::is_live) => {
                check(here, &s.path, replace).await
            }
            Some(_) => Ok(()),
            None => Err(StoreError::Other(format!("{}: not a fetch", s.path))),
        }
    }))
    .await;
    let mut wanted = Vec::new();
    let mut sources = Vec::new();
    for (i, c) in checks.into_iter().enumerate() {
        match (c, fetch(steps[i])) {
            (Ok(()), Some((from, source, _))) => {
                wanted.push(i);
                sources.push((from.clone(), source.size));
            }
            (Err(e), _) => results[i] = Some(Err(e)),
            (Ok(()), None) => {}
        }
    }
    let read = there.read_batch(&sources).await;
    let mut files = Vec::new();
    let mut written_idx = Vec::new();
    for (i, r) in wanted.into_iter().zip(read) {
        let Some((_, source, replace)) = fetch(steps[i]) else {
            continue;
        };
        match r {
            Ok(bytes) => {
                if let Some(b) = bar {
                    b.inc(bytes.len() as u64);
                }
                files.push(BatchFile {
                    path: steps[i].path.clone(),
                    bytes,
                    put: Put {
                        mtime: source.mtime,
                        expect: source.hash,
                        fresh: !replace.is_some_and(Entry::is_live),
                        size: source.size,
                    },
                });
                written_idx.push(i);
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let written = here.write_batch(files).await;
    for (i, r) in written_idx.into_iter().zip(written) {
        results[i] = Some(r.map(|o| {
            let mut e = steps[i].result.clone();
            e.mtime = o.mtime;
            e.size = o.size;
            e
        }));
    }
    steps
        .into_iter()
        .zip(results)
        .map(|(s, r)| {
            let r = r.unwrap_or_else(|| {
                Err(StoreError::Other(format!(
                    "{}: the batch lost track of it",
                    s.path
                )))
            });
            (s, r)
        })
        .collect()
}

/// Runs one step on `here`, reading from `there` when it fetches.
async fn apply<H: Store, T: Store>(
    s: &Step,
    here: &H,
    there: &T,
    bar: Option<&ProgressBar>,
) -> Result<Entry, StoreError> {
    let p = &s.path;
    match &s.op {
        Op::MoveAside { to } => {
            here.rename(p, to).await?;
            Ok(s.result.clone())
        }
        Op::MkDir { replace } => {
            if let Some(e) = replace {
                check(here, p, Some(e)).await?;
                here.trash(p).await?;
            }
            here.mkdir(p).await?;
            Ok(s.result.clone())
        }
        Op::Fetch {
            from,
            source,
            replace,
        } => {
            // Nothing expected at `p`: the store refuses to replace whatever appeared there
            // since the scan, so no need to look first (a round trip on a remote).
            let fresh = !replace.as_ref().is_some_and(Entry::is_live);
            if !fresh {
                check(here, p, replace.as_ref()).await?;
            }
            // The bytes are checked against the source's hash on arrival; only a source
            // without one needs a look before it is read.
            if source.hash.is_none() {
                check(there, from, Some(source)).await?;
            }
            let reader = there.read(from, Some(source.size)).await?;
            let reader: Reader = match bar {
                Some(b) => Box::pin(Counting {
                    inner: reader,
                    bar: b.clone(),
                }),
                None => reader,
            };
            let put = Put {
                mtime: source.mtime,
                expect: source.hash,
                fresh,
                size: source.size,
            };
            let o = here.write(p, reader, put).await?;
            let mut e = s.result.clone();
            e.mtime = o.mtime;
            e.size = o.size;
            Ok(e)
        }
        Op::Move { from, expect, .. } => {
            check(here, p, None).await?;
            check(here, from, Some(expect)).await?;
            here.rename(from, p).await?;
            let o = here.stat(p).await?.ok_or_else(|| {
                StoreError::Other(format!("{p} vanished right after moving it into place"))
            })?;
            let mut e = s.result.clone();
            e.mtime = o.mtime;
            e.size = o.size;
            Ok(e)
        }
        Op::Trash { expect } => {
            let o = here.stat(p).await?;
            if o.is_some() && !matches(o, Some(expect)) {
                return Err(StoreError::Other(format!(
                    "{p} changed on {} since it was scanned; not deleting it",
                    here.describe()
                )));
            }
            here.trash(p).await?;
            Ok(s.result.clone())
        }
        Op::RmDir => {
            here.rmdir(p).await?;
            Ok(s.result.clone())
        }
        Op::Record => Ok(s.result.clone()),
    }
}

/// Counts bytes into the progress bar as they stream through.
struct Counting {
    inner: Reader,
    bar: ProgressBar,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bar.inc(n as u64);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ContentHash, MTime, VersionVector};

    fn fetch(side: Side, i: usize, size: u64, hashed: bool) -> Step {
        let e = Entry::file(
            size,
            MTime::new(1, 0),
            hashed.then_some(ContentHash([1; 32])),
            VersionVector::new(),
        );
        let path = RelPath::parse(&format!("f{i}")).unwrap();
        Step {
            side,
            path: path.clone(),
            op: Op::Fetch {
                from: path,
                source: e.clone(),
                replace: None,
            },
            result: e,
        }
    }

    fn shape(units: &[Unit]) -> Vec<(char, usize)> {
        units
            .iter()
            .map(|u| match u {
                Unit::One(_) => ('1', 1),
                Unit::Batch(v) => ('B', v.len()),
            })
            .collect()
    }

    #[test]
    fn small_hashed_fetches_are_batched_per_side_within_the_limits() {
        let mut steps = Vec::new();
        for i in 0..(BATCH_FILES + 10) {
            steps.push(fetch(Side::Right, i, 10, true));
        }
        steps.push(fetch(Side::Right, 9000, BATCH_FILE + 1, true)); // too big
        steps.push(fetch(Side::Right, 9001, 10, false)); // no hash to check it by
        for i in 0..3 {
            steps.push(fetch(Side::Left, 10_000 + i, 10, true));
        }
        let refs: Vec<&Step> = steps.iter().collect();
        let u = units(&refs, true, true);
        assert_eq!(
            shape(&u),
            vec![('B', BATCH_FILES), ('B', 3), ('B', 10), ('1', 1), ('1', 1)]
        );
        // Every step is in exactly one unit, and a batch holds one side only.
        let mut seen = 0;
        for unit in &u {
            if let Unit::Batch(v) = unit {
                assert!(v.iter().all(|s| s.side == v[0].side));
                seen += v.len();
            } else {
                seen += 1;
            }
        }
        assert_eq!(seen, steps.len());
        // A side whose store does not batch gets single steps.
        let u = units(&refs, true, false);
        assert_eq!(shape(&u).iter().filter(|s| s.0 == 'B').count(), 1);
        assert_eq!(u.len(), 1 + BATCH_FILES + 10 + 2);
    }

    #[test]
    fn a_batch_stays_within_its_byte_budget() {
        let big = BATCH_FILE; // the largest batchable file
        let n = (BATCH_BYTES / big) as usize;
        let steps: Vec<Step> = (0..n + 1)
            .map(|i| fetch(Side::Left, i, big, true))
            .collect();
        let refs: Vec<&Step> = steps.iter().collect();
        assert_eq!(shape(&units(&refs, true, true)), vec![('B', n), ('B', 1)]);
    }
}
