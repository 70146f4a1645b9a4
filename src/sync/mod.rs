//! The sync engine: lock both replicas, bring both indexes up to date, plan, apply, commit.
//!
//! Every disk change goes through a `Store`; a step whose inputs moved since the scan is
//! skipped (and left for the next sync) rather than guessed at. `job` assembles a sync from
//! the config and two targets, for the CLI and the daemon alike.

mod apply;
mod changes;
mod clash;
mod commit;
mod current;
mod delta;
mod fold;
pub mod job;
pub mod recover;
mod report;
#[cfg(test)]
mod restore_tests;
pub mod settled;

pub use report::{StepError, StepFailure, SyncReport, human_bytes};

use crate::index::Index;
use crate::index::journal::Token;
use crate::plan::Side;
use crate::replica::lock::LockInfo;
use crate::store::{Archive, Store, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

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
    /// The trash's size cap (`trash_max`), kept after each sync that trashed something.
    pub trash_max: Option<crate::history::evict::Cap>,
    /// Where this pair of replicas is kept when a sync leaves it settled (`settled`); `None`:
    /// every sync loads both indexes.
    pub settled: Option<std::path::PathBuf>,
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
            trash_max: None,
            settled: None,
        }
    }
}

/// Syncs two replicas both ways. Locks are released on every path out, errors included.
pub async fn sync<L: Archive, R: Archive>(
    left: &L,
    right: &R,
    opts: &SyncOptions,
) -> Result<SyncReport, StoreError> {
    let info = LockInfo::here("filesync sync");
    let t0 = Instant::now();
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

/// Takes both locks (see `store::while_brief`).
async fn lock_both<L: Store, R: Store>(
    left: &L,
    right: &R,
    info: &LockInfo,
) -> Result<(), StoreError> {
    crate::store::while_brief(|| async {
        left.lock(info).await?;
        match right.lock(info).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = left.unlock().await;
                Err(e)
            }
        }
    })
    .await
}

async fn sync_locked<L: Archive, R: Archive>(
    left: &L,
    right: &R,
    opts: &SyncOptions,
) -> Result<SyncReport, StoreError> {
    let t0 = Instant::now();
    let started = crate::time::now_secs();
    let (cl, cr) = match current::start(left, right, opts, started).await? {
        // Kept again only if this sync ends with nothing left to do.
        current::Start::Loaded(cl, cr) => {
            if let Some(p) = opts.settled.as_deref() {
                settled::forget(p);
            }
            (cl, cr)
        }
        current::Start::Settled(report) => {
            let ms = t0.elapsed().as_millis() as u64;
            tracing::debug!(ms, "both sides as last settled");
            return Ok(report);
        }
    };
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "indexes current");
    let (mut li, mut ri) = (cl.index, cr.index);
    li.name.get_or_insert_with(|| opts.left_name.clone());
    ri.name.get_or_insert_with(|| opts.right_name.clone());
    let mut report = SyncReport {
        scan_left: cl.stats,
        scan_right: cr.stats,
        ..Default::default()
    };
    note_unreadable(&mut report, &left.describe(), &right.describe());

    let plan = plan_held(left, right, (&li, &ri), &mut report).await;
    if opts.dry_run {
        report.plan = plan;
        return Ok(report);
    }

    let bar = opts.progress.then(|| progress_bar(&plan));
    let mut run = apply::Apply::new(left, right, opts.concurrency, bar.clone());
    let applied = run.run(&plan, &mut li, &mut ri, &mut report).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    applied?;
    report.plan = plan;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "applied");

    let transferred = report.sent.0 + report.received.0 + report.moved;
    let done = commit::commit(
        commit::Side {
            store: left,
            index: &mut li,
            loaded: cl.loaded,
            token: cl.token,
            peer_name: &opts.right_name,
        },
        commit::Side {
            store: right,
            index: &mut ri,
            loaded: cr.loaded,
            token: cr.token,
            peer_name: &opts.left_name,
        },
        crate::time::now_secs(),
        transferred,
        report.conflicts.len() as u64,
    )
    .await?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "indexes saved");
    keep_settled(opts, &report, (&li, &ri), done.tokens);
    commit::cleanup(left, right, done, opts.trash_days).await;
    after_commit(left, right, (&li, &ri), &report, opts, started).await;
    Ok(report)
}

/// The plan, less what a side cannot take yet: paths that clash with what a scan left out,
/// and names a side cannot hold (each noted in the report).
async fn plan_held<L: Store, R: Store>(
    left: &L,
    right: &R,
    (li, ri): (&Index, &Index),
    report: &mut SyncReport,
) -> crate::plan::Plan {
    let mut plan = crate::plan::plan(li, ri);
    let clashes = clash::find(
        li,
        ri,
        &report.scan_left.skipped,
        &report.scan_right.skipped,
    );
    clash::hold_back(&mut plan, &clashes);
    note_clashes(report, &clashes, &left.describe(), &right.describe());
    let (rl, rr) = tokio::join!(left.name_rules(), right.name_rules());
    let held = fold::settle(&mut plan, li, ri, [rl, rr]);
    note_held(report, &held, &left.describe(), &right.describe());
    tracing::debug!(steps = plan.steps.len(), "planned");
    report.conflicts = plan.conflicts.clone();
    plan
}

/// Keeps the pair as settled when the sync left nothing to do: no step failed or was left
/// for later, neither side left anything as it was, and a plan of the indexes as committed
/// is empty. Otherwise forgets it.
fn keep_settled(
    opts: &SyncOptions,
    report: &SyncReport,
    (li, ri): (&Index, &Index),
    tokens: (Option<Token>, Option<Token>),
) {
    let Some(path) = opts.settled.as_deref() else {
        return;
    };
    let clean = report.errors.is_empty()
        && report.changing.is_empty()
        && !settled::left_something(&report.scan_left)
        && !settled::left_something(&report.scan_right);
    // A plan that had steps is planned again: settled means nothing would be left to do.
    let done = clean
        && (report.plan.steps.is_empty() && report.conflicts.is_empty() || {
            let again = crate::plan::plan(li, ri);
            again.steps.is_empty() && again.conflicts.is_empty()
        });
    match tokens {
        (Some(l), Some(r)) if done => settled::save(
            path,
            &settled::Settled {
                left: settled::side(l, &report.scan_left),
                right: settled::side(r, &report.scan_right),
                at: crate::time::now_secs(),
            },
        ),
        _ => settled::forget(path),
    }
}

/// What follows a committed sync on both sides: each side's changes log and trash cap, and
/// the chunk lists of content neither side holds any more.
async fn after_commit<L: Archive, R: Archive>(
    left: &L,
    right: &R,
    (li, ri): (&Index, &Index),
    report: &SyncReport,
    opts: &SyncOptions,
    started: i64,
) {
    let names = (
        li.name.as_deref().unwrap_or(&opts.left_name),
        ri.name.as_deref().unwrap_or(&opts.right_name),
    );
    let run = changes::Run {
        t: started,
        done: crate::time::now_secs(),
        id: rand::random(),
    };
    let ll = changes::lines(report, Side::Left, names, run);
    let rl = changes::lines(report, Side::Right, names, run);
    tokio::join!(
        keep_history(left, li, &ll, opts),
        keep_history(right, ri, &rl, opts)
    );
    delta::prune(left, right, li, ri).await;
}

/// Appends a side's lines to its changes log and, when the sync trashed something there,
/// holds its trash to the cap. Neither failing fails the sync: the files are synced.
async fn keep_history<S: Archive>(
    store: &S,
    index: &crate::index::Index,
    lines: &[crate::history::log::Change],
    opts: &SyncOptions,
) {
    if let Err(e) = recover::append_log(store, lines).await {
        tracing::warn!(
            "cannot append to the changes log on {}: {}",
            store.describe(),
            crate::store::Chain(&e)
        );
    }
    let Some(cap) = opts.trash_max else { return };
    if !lines.iter().any(|l| l.trashed) {
        return;
    }
    if let Err(e) = recover::hold_to_cap(store, index, cap).await {
        tracing::warn!(
            "cannot hold the trash to trash_max on {}: {}",
            store.describe(),
            crate::store::Chain(&e)
        );
    }
}

/// What a side could not read is left as it was there, unsynced: the sync did not finish.
fn note_unreadable(report: &mut SyncReport, left: &str, right: &str) {
    let mut errors = Vec::new();
    let sides = [
        (&report.scan_left, Side::Left, left),
        (&report.scan_right, Side::Right, right),
    ];
    for (stats, side, place) in sides {
        for (p, why) in &stats.unreadable {
            let error = StepFailure::Unreadable(why.clone());
            errors.push(StepError {
                op: "read",
                path: p.clone(),
                side,
                place: place.to_string(),
                error,
            });
        }
    }
    report.errors.extend(errors);
}

/// A clash is left as it is on both sides until a person resolves it.
fn note_clashes(report: &mut SyncReport, clashes: &[clash::Clash], left: &str, right: &str) {
    for c in clashes {
        report.errors.push(StepError {
            op: "sync",
            path: c.path.clone(),
            side: Side::Left,
            place: left.to_string(),
            error: StepFailure::Clash {
                here: c.left.clone(),
                there: c.right.clone(),
                other_place: right.to_string(),
            },
        });
    }
}

/// A name a side cannot hold is left on the other side as it is, named once.
fn note_held(report: &mut SyncReport, held: &[fold::HeldName], left: &str, right: &str) {
    for h in held {
        report.errors.push(StepError {
            op: "sync",
            path: h.path.clone(),
            side: h.side,
            place: if h.side == Side::Left { left } else { right }.to_string(),
            error: StepFailure::CannotHold(h.why.clone()),
        });
    }
}

fn progress_bar(plan: &crate::plan::Plan) -> ProgressBar {
    let ((nl, bl), (nr, br)) = plan.transfer_totals();
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
}
