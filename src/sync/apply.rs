//! Carrying out a plan: phase by phase, each step on the store it changes (small fetches in
//! batches where the store can), every result folded into that side's index and the report.
//! A step whose inputs moved since the scan is skipped and left for the next sync.

use super::report::{StepError, StepFailure, SyncReport};
use crate::index::{Entry, Index, Kind, mode};
use crate::plan::{Op, Plan, Side, Step};
use crate::relpath::RelPath;
use crate::scan::Observed;
use crate::store::{
    BATCH_BYTES, BATCH_FILE, BATCH_FILES, BatchFile, Put, Reader, Store, StoreError,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Why a path's step did not happen: it moved under the sync, or it failed.
#[derive(Clone, Copy, PartialEq)]
enum Missed {
    Moving,
    Failed,
}

/// The two replicas and what this run has learnt about its steps.
pub(super) struct Apply<'a, L, R> {
    pub left: &'a L,
    pub right: &'a R,
    pub concurrency: usize,
    pub bar: Option<ProgressBar>,
    missed: HashMap<RelPath, Missed>,
}

type Done<'s> = (&'s Step, Result<Entry, StoreError>);

impl<'a, L: Store, R: Store> Apply<'a, L, R> {
    pub fn new(left: &'a L, right: &'a R, concurrency: usize, bar: Option<ProgressBar>) -> Self {
        Apply {
            left,
            right,
            concurrency: concurrency.max(1),
            bar,
            missed: HashMap::new(),
        }
    }

    /// Runs every phase in order. A lost connection ends the run with one error instead of
    /// one per remaining step (the indexes are then not saved: nothing is recorded).
    pub async fn run(
        &mut self,
        plan: &Plan,
        li: &mut Index,
        ri: &mut Index,
        report: &mut SyncReport,
    ) -> Result<(), StoreError> {
        let mut by_phase: Vec<Vec<&Step>> = vec![Vec::new(); Op::PHASES];
        for s in &plan.steps {
            by_phase[usize::from(s.op.phase())].push(s);
        }
        // A conflict copy that failed to land blocks the index update of its original path.
        let copy_of: HashMap<&RelPath, &RelPath> =
            plan.conflicts.iter().map(|c| (&c.copy, &c.path)).collect();
        for (phase, steps) in by_phase.iter().enumerate() {
            let results = if matches!(phase, 2..=4) {
                self.parallel(steps).await
            } else {
                self.sequential(steps, &copy_of, report).await
            };
            let mut lost = None;
            for (s, r) in results {
                match r {
                    Ok(entry) => fold(s, entry, li, ri, report),
                    Err(e) if e.is_connection_lost() => lost = Some(e),
                    Err(e) => self.note_missed(s, e, &copy_of, report),
                }
            }
            if let Some(e) = lost {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A step that did not happen: its path (and a conflict copy's original) keeps its old
    /// index entry. Motion is noted as changing; anything else is an error to report.
    fn note_missed(
        &mut self,
        s: &Step,
        e: StoreError,
        copy_of: &HashMap<&RelPath, &RelPath>,
        report: &mut SyncReport,
    ) {
        let why = if e.is_motion() {
            tracing::debug!(path = %s.path, op = s.op.name(), "changing: {e}");
            report.changing.push(s.path.clone());
            Missed::Moving
        } else {
            // Reported once, by whoever runs the sync (the CLI at the end, the daemon's log).
            tracing::debug!(path = %s.path, op = s.op.name(), "failed: {e}");
            report
                .errors
                .push(self.step_error(s, StepFailure::Store(e)));
            Missed::Failed
        };
        self.missed.insert(s.path.clone(), why);
        if let Some(orig) = copy_of.get(&s.path) {
            self.missed.insert((*orig).clone(), why);
        }
    }

    fn step_error(&self, s: &Step, error: StepFailure) -> StepError {
        let place = match s.side {
            Side::Left => self.left.describe(),
            Side::Right => self.right.describe(),
        };
        StepError {
            op: s.op.name(),
            path: s.path.clone(),
            side: s.side,
            place,
            error,
        }
    }

    /// A phase whose steps depend on earlier ones of the same phase (folders top-down,
    /// records after their copies): one at a time.
    async fn sequential<'s>(
        &mut self,
        steps: &[&'s Step],
        copy_of: &HashMap<&RelPath, &RelPath>,
        report: &mut SyncReport,
    ) -> Vec<Done<'s>> {
        let mut done: Vec<Done<'s>> = Vec::with_capacity(steps.len());
        for s in steps {
            if done
                .last()
                .is_some_and(|(_, r)| r.as_ref().is_err_and(StoreError::is_connection_lost))
            {
                break;
            }
            if s.op == Op::Record {
                let blocked = self.missed.contains_key(&s.path)
                    || copy_of
                        .get(&s.path)
                        .is_some_and(|o| self.missed.contains_key(*o));
                if !blocked {
                    done.push((s, Ok(s.result.clone())));
                }
                continue;
            }
            // Children of a folder that could not be made are skipped, not attempted.
            if let Some(why) = s
                .path
                .ancestors()
                .find_map(|a| self.missed.get(&a).copied())
            {
                self.missed.insert(s.path.clone(), why);
                match why {
                    Missed::Moving => report.changing.push(s.path.clone()),
                    Missed::Failed => report
                        .errors
                        .push(self.step_error(s, StepFailure::FolderFailed)),
                }
                continue;
            }
            done.push((s, self.step(s).await));
        }
        done
    }

    /// A phase of independent steps: many in flight, small fetches batched.
    async fn parallel<'s>(&self, steps: &[&'s Step]) -> Vec<Done<'s>> {
        let mut todo = units(steps, self.left.batches(), self.right.batches()).into_iter();
        let mut running = FuturesUnordered::new();
        let mut done = Vec::with_capacity(steps.len());
        loop {
            while running.len() < self.concurrency {
                match todo.next() {
                    Some(u) => running.push(self.unit(u)),
                    None => break,
                }
            }
            match running.next().await {
                Some(d) => done.extend(d),
                None => return done,
            }
        }
    }

    async fn unit<'s>(&self, u: Unit<'s>) -> Vec<Done<'s>> {
        match u {
            Unit::One(s) => vec![(s, self.step(s).await)],
            Unit::Batch(v) => match v.first().map(|s| s.side) {
                Some(Side::Left) => batch(v, self.left, self.right, self.bar.as_ref()).await,
                Some(Side::Right) => batch(v, self.right, self.left, self.bar.as_ref()).await,
                None => Vec::new(),
            },
        }
    }

    async fn step(&self, s: &Step) -> Result<Entry, StoreError> {
        match s.side {
            Side::Left => apply(s, self.left, self.right, self.bar.as_ref()).await,
            Side::Right => apply(s, self.right, self.left, self.bar.as_ref()).await,
        }
    }
}

/// A step's result into its side's index, and its count into the report.
fn fold(s: &Step, result: Entry, li: &mut Index, ri: &mut Index, report: &mut SyncReport) {
    let idx = match s.side {
        Side::Left => li,
        Side::Right => ri,
    };
    match &s.op {
        Op::MoveAside { to } => {
            idx.entries.remove(&s.path);
            idx.entries.insert(to.clone(), result);
            return;
        }
        Op::Move {
            from, from_result, ..
        } => {
            report.moved += 1;
            idx.entries.insert(from.clone(), from_result.clone());
        }
        Op::Fetch {
            source, replace, ..
        } => {
            let t = match s.side {
                Side::Left => &mut report.received,
                Side::Right => &mut report.sent,
            };
            t.0 += 1;
            t.1 += source.size;
            if replace.is_some() {
                report.trashed += 1;
            }
        }
        Op::Trash { .. } | Op::RmDir => report.deleted += 1,
        Op::MkDir { replace: Some(_) } => report.trashed += 1,
        Op::Chmod { .. } => report.chmodded += 1,
        Op::MkDir { replace: None } | Op::Record => {}
    }
    idx.entries.insert(s.path.clone(), result);
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

/// `Ok` when `p` on `s` still is what `e` says; else the motion error that says so.
async fn check<S: Store>(s: &S, p: &RelPath, e: Option<&Entry>) -> Result<(), StoreError> {
    let o = s.stat(p).await?;
    if matches(o, e) {
        return Ok(());
    }
    let place = format!("on {}", s.describe());
    Err(match (o, e.filter(|e| e.is_live())) {
        (None, Some(_)) => StoreError::Vanished {
            path: p.clone(),
            place,
        },
        (Some(_), None) => StoreError::Appeared {
            path: p.clone(),
            place,
        },
        _ => StoreError::Changed {
            path: p.clone(),
            place,
        },
    })
}

/// A source that is gone when it is opened moved since the scan.
fn vanished<S: Store>(s: &S, p: &RelPath, e: StoreError) -> StoreError {
    if e.is_not_found() {
        StoreError::Vanished {
            path: p.clone(),
            place: format!("on {}", s.describe()),
        }
    } else {
        e
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

/// A batchable step's parts: where it reads, what it reads, what it replaces.
fn fetch_of(s: &Step) -> Option<(&RelPath, &Entry, Option<&Entry>)> {
    match &s.op {
        Op::Fetch {
            from,
            source,
            replace,
        } => Some((from, source, replace.as_ref())),
        _ => None,
    }
}

/// Runs a batch of small fetches into `here`: what they replace looked at (as `apply` does),
/// the sources read together, then written together.
async fn batch<'s, H: Store, T: Store>(
    steps: Vec<&'s Step>,
    here: &H,
    there: &T,
    bar: Option<&ProgressBar>,
) -> Vec<Done<'s>> {
    let mut results: Vec<Option<Result<Entry, StoreError>>> = steps.iter().map(|_| None).collect();
    let checks = futures::future::join_all(steps.iter().map(|s| batch_check(here, s))).await;
    let mut wanted = Vec::new();
    let mut sources = Vec::new();
    for (i, c) in checks.into_iter().enumerate() {
        match (c, fetch_of(steps[i])) {
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
    for ((i, r), (from, _)) in wanted.into_iter().zip(read).zip(&sources) {
        let Some((_, source, replace)) = fetch_of(steps[i]) else {
            continue;
        };
        match r {
            Ok(bytes) => {
                if let Some(b) = bar {
                    b.inc(bytes.len() as u64);
                }
                let put = put_for(source, replace, steps[i].result.mode);
                let path = steps[i].path.clone();
                files.push(BatchFile { path, bytes, put });
                written_idx.push(i);
            }
            Err(e) => results[i] = Some(Err(vanished(there, from, e))),
        }
    }
    let written = here.write_batch(files).await;
    for (i, r) in written_idx.into_iter().zip(written) {
        results[i] = Some(r.map(|o| landed(steps[i], o)));
    }
    steps
        .into_iter()
        .zip(results)
        .map(|(s, r)| {
            let r = r.unwrap_or_else(|| {
                Err(StoreError::io(
                    format!("fetching {}", s.path),
                    std::io::Error::other("the batch lost track of it"),
                ))
            });
            (s, r)
        })
        .collect()
}

/// What a batched fetch must find at its path first (as `apply` does for one fetch).
async fn batch_check<H: Store>(here: &H, s: &Step) -> Result<(), StoreError> {
    match fetch_of(s) {
        Some((_, _, replace)) if replace.is_some_and(Entry::is_live) => {
            check(here, &s.path, replace).await
        }
        Some(_) => Ok(()),
        None => Err(StoreError::io(
            format!("batching {}", s.path),
            std::io::Error::other("not a fetch"),
        )),
    }
}

/// How a fetched file is written: the source's mtime and hash, the wanted mode, and fresh
/// when nothing live is expected at its path (the store then refuses to replace whatever
/// appeared there).
fn put_for(source: &Entry, replace: Option<&Entry>, mode: Option<u32>) -> Put {
    Put {
        mtime: source.mtime,
        expect: source.hash,
        fresh: !replace.is_some_and(Entry::is_live),
        size: source.size,
        mode,
    }
}

/// The step's index entry with what the store reports for the file it put in place.
fn landed(s: &Step, o: Observed) -> Entry {
    let mut e = s.result.clone();
    e.mtime = o.mtime;
    e.size = o.size;
    e.landed_mode(o.mode);
    e
}

/// The step's index entry once its mode was set: a disk that could not hold it shows its own,
/// and the index keeps the wanted one beside it (said once, here, for the log).
fn moded(s: &Step, shown: Option<u32>) -> Entry {
    let mut e = s.result.clone();
    e.landed_mode(shown);
    if let (Some(want), Some(d)) = (e.mode, e.disk_mode) {
        tracing::info!(
            path = %s.path,
            "the disk keeps {d:03o} where {want:03o} was set; the index keeps {want:03o}"
        );
    }
    e
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
        Op::MoveAside { to } => here.rename(p, to).await.map(|()| s.result.clone()),
        Op::MkDir { replace } => {
            if let Some(e) = replace {
                check(here, p, Some(e)).await?;
                here.trash(p).await?;
            }
            let shown = here.mkdir(p, s.result.mode).await?;
            // A folder made wider to be filled is recorded as it is on disk until the chmod
            // that follows records its mode: if that chmod fails, the next scan sees no
            // change to send to the other side.
            Ok(match s.result.mode {
                Some(m) if mode::blocks_filling(m) => {
                    let mut e = s.result.clone();
                    e.mode = Some(mode::while_filling(m));
                    e
                }
                _ => moded(s, shown),
            })
        }
        Op::Fetch {
            from,
            source,
            replace,
        } => {
            let put = put_for(source, replace.as_ref(), s.result.mode);
            // A fresh write needs no look first (a round trip on a remote): the store refuses
            // to replace whatever appeared since the scan.
            if !put.fresh {
                check(here, p, replace.as_ref()).await?;
            }
            // The bytes are checked against the source's hash on arrival; only a source
            // without one needs a look before it is read.
            if source.hash.is_none() {
                check(there, from, Some(source)).await?;
            }
            let delta = super::delta::fetch(here, there, (p, from), source, replace.as_ref(), put);
            if let Some(r) = delta.await {
                if let (Ok(_), Some(b)) = (&r, bar) {
                    b.inc(source.size);
                }
                return r.map(|o| landed(s, o));
            }
            let reader = there
                .read(from, Some(source.size))
                .await
                .map_err(|e| vanished(there, from, e))?;
            let reader: Reader = match bar {
                Some(b) => Box::pin(Counting {
                    inner: reader,
                    bar: b.clone(),
                }),
                None => reader,
            };
            let o = here.write(p, reader, put).await?;
            super::delta::carry_list(here, there, source).await;
            Ok(landed(s, o))
        }
        Op::Move { from, expect, .. } => {
            // On a disk that folds names `p` may show `from` itself, spelled otherwise (a
            // rename that only changes case); the rename still never replaces another file.
            if !matches(here.stat(p).await?, Some(expect)) {
                check(here, p, None).await?;
            }
            check(here, from, Some(expect)).await?;
            here.rename(from, p).await?;
            match here.stat(p).await? {
                Some(o) => Ok(landed(s, o)),
                None => Err(StoreError::Vanished {
                    path: p.clone(),
                    place: format!("on {}", here.describe()),
                }),
            }
        }
        Op::Trash { expect } => {
            let o = here.stat(p).await?;
            if o.is_some() && !matches(o, Some(expect)) {
                return Err(StoreError::Changed {
                    path: p.clone(),
                    place: format!("on {}", here.describe()),
                });
            }
            here.trash(p).await.map(|()| s.result.clone())
        }
        Op::RmDir => here.rmdir(p).await.map(|()| s.result.clone()),
        Op::Chmod { mode, expect } => {
            // What stands there now may not be what the scan saw (replaced, or a file where
            // a folder could not be made): its mode is not ours to change.
            check(here, p, Some(expect)).await?;
            match here.set_mode(p, *mode).await {
                Ok(shown) => Ok(moded(s, shown)),
                Err(e) => Err(vanished(here, p, e)),
            }
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
mod tests;
