//! The planner: two indexes in, the steps that make both replicas agree out. No I/O here.
//!
//! Rules, per path, by version vectors: a dominating side wins; equal content merges; concurrent
//! edits of a file conflict (the loser is kept as a `.sync-conflict-` copy on both sides);
//! delete vs. modify keeps the modification; a folder stays while anything in it survives.
//! Permission bits travel with the entry: a chmod on one side and an edit on the other give the
//! edit's content with the chmod's mode (told apart by each entry's content history); two
//! concurrent chmods, or modes that differ with no history to tell (an upgraded index), meet
//! in `mode::merge`, which never makes a file more readable than either side had it.

use crate::index::{Causality, Entries, Entry, Index, Kind, MTime, ReplicaId, VersionVector, mode};
use crate::relpath::RelPath;
use crate::relpath::fit_name;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// What a step does on disk at `Step::path` on `Step::side`.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Renames the file here to `to` on the same side: a conflict's copy, kept.
    MoveAside { to: RelPath },
    /// Creates a folder; a dominated file in the way (`replace`) goes to the trash first.
    MkDir { replace: Option<Entry> },
    /// Copies the other side's file at `from` here; what is here (`replace`) goes to the trash.
    Fetch {
        from: RelPath,
        source: Entry,
        replace: Option<Entry>,
    },
    /// A rename seen as delete + create: moves this side's file at `from` (which the plan
    /// deletes, and which holds exactly the wanted content) to `path` instead of copying it.
    /// `from_result` is the index entry `from` is left with.
    Move {
        from: RelPath,
        expect: Entry,
        from_result: Entry,
    },
    /// Moves the file here to the trash.
    Trash { expect: Entry },
    /// Removes the folder here; one with leftovers (ignored files) goes to the trash whole.
    RmDir,
    /// Sets the permission bits of the file or folder here (after everything else, so a
    /// folder that forbids writing is filled first), if it still is `expect`.
    Chmod { mode: u32, expect: Entry },
    /// Nothing on disk: only the index entry changes.
    Record,
}

impl Op {
    /// Execution phase: conflict renames, folders (parents first), moves (before a transfer
    /// can replace a folder holding a move's source), transfers, deletions (children first),
    /// and index-only updates last.
    pub fn phase(&self) -> u8 {
        match self {
            Op::MoveAside { .. } => 0,
            Op::MkDir { .. } => 1,
            Op::Move { .. } => 2,
            Op::Fetch { .. } => 3,
            Op::Trash { .. } => 4,
            Op::RmDir => 5,
            Op::Chmod { .. } => 6,
            Op::Record => 7,
        }
    }

    pub const PHASES: usize = 8;

    pub fn name(&self) -> &'static str {
        match self {
            Op::MoveAside { .. } => "move-aside",
            Op::MkDir { .. } => "mkdir",
            Op::Fetch { .. } => "fetch",
            Op::Move { .. } => "move",
            Op::Trash { .. } => "trash",
            Op::RmDir => "rmdir",
            Op::Chmod { .. } => "chmod",
            Op::Record => "record",
        }
    }
}

/// One change on one side, and the index entry it leaves at `path` (for `MoveAside`: at `to`).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub side: Side,
    pub path: RelPath,
    pub op: Op,
    pub result: Entry,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub path: RelPath,
    /// Where the losing version is kept, on both sides.
    pub copy: RelPath,
    /// The side whose version keeps the name.
    pub winner: Side,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Files and bytes to copy in each direction: `(to_left, to_right)` as (count, bytes).
    pub fn transfer_totals(&self) -> ((u64, u64), (u64, u64)) {
        let (mut l, mut r) = ((0, 0), (0, 0));
        for s in &self.steps {
            if let Op::Fetch { source, .. } = &s.op {
                let t = if s.side == Side::Left { &mut l } else { &mut r };
                t.0 += 1;
                t.1 += source.size;
            }
        }
        (l, r)
    }
}

fn absent() -> Entry {
    Entry::tombstone(MTime::default(), VersionVector::new())
}

/// What a path must hold on both sides after the sync.
#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    vv: VersionVector,
    /// The side whose file content is wanted (files only).
    content_from: Option<Side>,
    /// Conflict: a side's file must be kept under `copy`; (side holding it, copy path).
    aside: Option<(Side, RelPath)>,
    /// The permission bits wanted (`None`: neither side knows them).
    mode: Option<u32>,
    /// The content's own history, where shorter than `vv`.
    content_vv: Option<VersionVector>,
}

impl Target {
    /// `kind` with history `vv`, no content to move and nothing kept aside.
    fn plain(kind: Kind, vv: VersionVector) -> Target {
        Target {
            kind,
            vv,
            content_from: None,
            aside: None,
            mode: None,
            content_vv: None,
        }
    }

    /// The same target with `mode` and the content history `c` (kept only where shorter).
    fn shaped(mut self, mode: Option<u32>, c: VersionVector) -> Target {
        self.mode = mode;
        self.content_vv = (c != self.vv).then_some(c);
        self
    }

    /// `e` as this target records it: its history, content history and mode.
    fn entry_for(&self, e: &Entry) -> Entry {
        let mut e = e.clone();
        e.vv = self.vv.clone();
        e.content_vv = self.content_vv.clone().map(Box::new);
        e.disk_mode = None;
        if e.kind.is_live() {
            e.mode = self.mode.or(e.mode);
        } else {
            e.mode = None;
            e.content_vv = None;
        }
        e
    }
}

/// Every path of either index in order, with its entry on each side (a merge join).
fn union<'a>(
    left: &'a Entries,
    right: &'a Entries,
) -> impl Iterator<Item = (&'a RelPath, Option<&'a Entry>, Option<&'a Entry>)> {
    let mut l = left.iter().peekable();
    let mut r = right.iter().peekable();
    std::iter::from_fn(move || match (l.peek(), r.peek()) {
        (Some((lp, _)), Some((rp, _))) => match lp.cmp(rp) {
            std::cmp::Ordering::Less => l.next().map(|(p, e)| (p, Some(e), None)),
            std::cmp::Ordering::Greater => r.next().map(|(p, e)| (p, None, Some(e))),
            std::cmp::Ordering::Equal => {
                let (p, a) = l.next()?;
                let (_, b) = r.next()?;
                Some((p, Some(a), Some(b)))
            }
        },
        (Some(_), None) => l.next().map(|(p, e)| (p, Some(e), None)),
        (None, Some(_)) => r.next().map(|(p, e)| (p, None, Some(e))),
        (None, None) => None,
    })
}

/// Plans a two-way sync between two indexes (each already reflecting its disk): a target
/// for each path that differs, folders kept where anything in them survives, then the steps
/// that reach every target, in phase order.
pub fn plan(left: &Index, right: &Index) -> Plan {
    let mut pl = Planner {
        left,
        right,
        // Conflict names must be new to both indexes and to this plan.
        taken: Taken {
            left: &left.entries,
            right: &right.entries,
            chosen: BTreeSet::new(),
        },
    };
    let mut targets: BTreeMap<RelPath, Target> = BTreeMap::new();
    for (p, a, b) in union(&left.entries, &right.entries) {
        // The common case, and all of a no-op sync: both sides already agree.
        if let (Some(a), Some(b)) = (a, b)
            && a.vv == b.vv
            && a.same_content(b)
            && a.mode == b.mode
            && a.content_vv == b.content_vv
        {
            continue;
        }
        let a = a.cloned().unwrap_or_else(absent);
        let b = b.cloned().unwrap_or_else(absent);
        let t = pl.target(p, &a, &b);
        targets.insert(p.clone(), t);
    }
    pl.keep_folders(&mut targets);
    let mut out = Plan::default();
    for (p, t) in &targets {
        emit(&mut out, p, t, left.entries.get(p), right.entries.get(p));
    }
    detect_moves(&mut out.steps);
    out.steps.sort_by(|x, y| {
        let (px, py) = (x.op.phase(), y.op.phase());
        px.cmp(&py).then_with(|| {
            if px == 5 || px == 6 {
                // Deepest folders first (a chmod may close a folder to its own children).
                y.path.cmp(&x.path)
            } else {
                x.path.cmp(&y.path)
            }
        })
    });
    out
}

/// The two indexes and the conflict names this plan has handed out.
struct Planner<'a> {
    left: &'a Index,
    right: &'a Index,
    taken: Taken<'a>,
}

impl Planner<'_> {
    fn replica(&self, side: Side) -> ReplicaId {
        match side {
            Side::Left => self.left.replica,
            Side::Right => self.right.replica,
        }
    }

    fn entry(&self, side: Side, p: &RelPath) -> Entry {
        let idx = match side {
            Side::Left => self.left,
            Side::Right => self.right,
        };
        idx.entries.get(p).cloned().unwrap_or_else(absent)
    }

    /// What `p` must become, from its entry on each side.
    fn target(&mut self, p: &RelPath, a: &Entry, b: &Entry) -> Target {
        let mut causality = a.vv.compare(&b.vv);
        if causality == Causality::Equal && !a.same_content(b) {
            // Same history but different content: an interrupted sync or an old index. Never
            // pick a side silently; treat it as concurrent so nothing is lost.
            causality = Causality::Concurrent;
        }
        match causality {
            // Same history: only the modes or content histories can differ (an index from
            // before modes were kept on one side); nothing is newer, so they merge.
            Causality::Equal => Target::plain(a.kind, a.vv.clone()).shaped(
                unordered_mode(a, b),
                a.content_history().merged(b.content_history()),
            ),
            Causality::Dominates => take(Side::Left, a, b),
            Causality::DominatedBy => take(Side::Right, b, a),
            Causality::Concurrent => {
                let m = concurrent_mode(a, b);
                let c = a.content_history().merged(b.content_history());
                self.concurrent(p, a, b).shaped(m, c)
            }
        }
    }

    /// Concurrent histories, by what each side holds: the table of conflict rules.
    fn concurrent(&mut self, p: &RelPath, a: &Entry, b: &Entry) -> Target {
        let vv = a.vv.merged(&b.vv);
        match (a.kind, b.kind) {
            (Kind::File, Kind::File) if a.same_content(b) => Target::plain(Kind::File, vv),
            // One side changed only the mode: the other's content, no conflict.
            (Kind::File, Kind::File) if content_only_from(a, b) != content_only_from(b, a) => {
                let from = if content_only_from(a, b) {
                    Side::Left
                } else {
                    Side::Right
                };
                Target {
                    content_from: Some(from),
                    ..Target::plain(Kind::File, vv)
                }
            }
            (Kind::File, Kind::File) => {
                // The later edit keeps the name; the replica id breaks a tie.
                let left_wins = (a.mtime, self.left.replica) > (b.mtime, self.right.replica);
                let (winner, loser, lose_entry) = if left_wins {
                    (Side::Left, Side::Right, b)
                } else {
                    (Side::Right, Side::Left, a)
                };
                let copy = self.copy_of(p, lose_entry, loser);
                Target {
                    content_from: Some(winner),
                    aside: Some((loser, copy)),
                    ..Target::plain(Kind::File, vv)
                }
            }
            // Delete vs. modify keeps the modification.
            (Kind::File, Kind::Deleted) => Target {
                content_from: Some(Side::Left),
                ..Target::plain(Kind::File, vv)
            },
            (Kind::Deleted, Kind::File) => Target {
                content_from: Some(Side::Right),
                ..Target::plain(Kind::File, vv)
            },
            // A file against a folder: the folder keeps the name, the file is kept aside.
            (Kind::File, Kind::Dir) | (Kind::Dir, Kind::File) => {
                let (file_side, fe) = if a.kind == Kind::File {
                    (Side::Left, a)
                } else {
                    (Side::Right, b)
                };
                let copy = self.copy_of(p, fe, file_side);
                Target {
                    aside: Some((file_side, copy)),
                    ..Target::plain(Kind::Dir, vv)
                }
            }
            (Kind::Dir, _) | (_, Kind::Dir) => Target::plain(Kind::Dir, vv),
            (Kind::Deleted, Kind::Deleted) => Target::plain(Kind::Deleted, vv),
        }
    }

    /// A new conflict copy name for `p`, held on `side` as `e`.
    fn copy_of(&mut self, p: &RelPath, e: &Entry, side: Side) -> RelPath {
        let replica = self.replica(side);
        self.taken.conflict_name(p, e.mtime, replica)
    }

    /// A folder stays while anything in it survives; it then needs a history newer than any
    /// deletion of it, or the next sync would delete it again.
    fn keep_folders(&mut self, targets: &mut BTreeMap<RelPath, Target>) {
        let mut needed: BTreeSet<RelPath> = BTreeSet::new();
        for (p, t) in targets.iter() {
            if t.kind.is_live() {
                needed.extend(p.ancestors());
            }
            if let Some((_, copy)) = &t.aside {
                needed.extend(copy.ancestors());
            }
        }
        for d in needed {
            let Some(t) = targets.get_mut(&d) else {
                continue;
            };
            if t.kind == Kind::Dir {
                continue;
            }
            let a = self.entry(Side::Left, &d);
            let b = self.entry(Side::Right, &d);
            if t.kind == Kind::File && t.aside.is_none() {
                // A file where a surviving folder must be: the folder keeps the name and the
                // file is kept as a conflict copy.
                let (holder, fe) = if a.kind == Kind::File {
                    (Side::Left, &a)
                } else {
                    (Side::Right, &b)
                };
                t.aside = Some((holder, self.copy_of(&d, fe, holder)));
            }
            t.kind = Kind::Dir;
            t.vv = a.vv.merged(&b.vv).bumped(self.left.replica);
            t.content_from = None;
            t.mode = [&a, &b]
                .into_iter()
                .find(|e| e.kind == Kind::Dir)
                .and_then(|e| e.mode);
            t.content_vv = None;
        }
    }
}

/// Turns a delete + fetch of the same content on one side into a local move (a rename on the
/// other side), so renamed files are not sent again.
fn detect_moves(steps: &mut Vec<Step>) {
    let mut deleted: BTreeMap<(Side, [u8; 32]), Vec<usize>> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        if let Op::Trash { expect } = &s.op
            && let Some(h) = expect.hash
        {
            deleted.entry((s.side, h.0)).or_default().push(i);
        }
    }
    if deleted.is_empty() {
        return;
    }
    let mut consumed = BTreeSet::new();
    for i in 0..steps.len() {
        let Op::Fetch {
            source,
            replace: None,
            ..
        } = &steps[i].op
        else {
            continue;
        };
        let Some(h) = source.hash else { continue };
        let Some(j) = deleted.get_mut(&(steps[i].side, h.0)).and_then(Vec::pop) else {
            continue;
        };
        let Op::Trash { expect } = &steps[j].op else {
            continue;
        };
        // A move is a rename: it keeps the mode, so only one that has the wanted mode.
        if expect.size != source.size || expect.mode != steps[i].result.mode {
            continue;
        }
        steps[i].op = Op::Move {
            from: steps[j].path.clone(),
            expect: expect.clone(),
            from_result: steps[j].result.clone(),
        };
        consumed.insert(j);
    }
    let mut k = 0;
    steps.retain(|_| {
        k += 1;
        !consumed.contains(&(k - 1))
    });
}

/// The dominating side's state, applied to both; its mode, or the other's where the winner
/// does not know it (a server that reports none) and the kind stays.
fn take(side: Side, winner: &Entry, loser: &Entry) -> Target {
    let mode = winner
        .mode
        .or(loser.mode.filter(|_| loser.kind == winner.kind));
    Target {
        kind: winner.kind,
        vv: winner.vv.clone(),
        content_from: (winner.kind == Kind::File).then_some(side),
        aside: None,
        mode: None,
        content_vv: None,
    }
    .shaped(mode, winner.content_history().clone())
}

/// Whether `a` holds content `b` has not seen, while `b`'s content is one `a` has seen: `b`'s
/// changes since were to the mode only, and `a`'s content stands.
fn content_only_from(a: &Entry, b: &Entry) -> bool {
    let newer = |x: &Entry, y: &Entry| {
        matches!(
            x.content_history().compare(&y.vv),
            Causality::Dominates | Causality::Concurrent
        )
    };
    newer(a, b) && !newer(b, a)
}

/// Whether `a`'s mode was set by a change `b` has not seen: a counter of `a`'s history past
/// both its content history and `b`'s history is a chmod `b` does not know.
fn mode_is_news(a: &Entry, b: &Entry) -> bool {
    let content = a.content_history();
    a.vv.iter()
        .any(|(r, n)| n > content.get(r).max(b.vv.get(r)))
}

/// The mode of two concurrent entries: the side that changed it, else both merged.
fn concurrent_mode(a: &Entry, b: &Entry) -> Option<u32> {
    if a.kind != b.kind {
        // A kind clash: the live side (the folder, where one is) decides.
        return [a, b]
            .into_iter()
            .find(|e| e.kind == Kind::Dir)
            .or_else(|| [a, b].into_iter().find(|e| e.is_live()))
            .and_then(|e| e.mode);
    }
    match (mode_is_news(a, b), mode_is_news(b, a)) {
        (true, false) => a.mode.or(b.mode),
        (false, true) => b.mode.or(a.mode),
        _ => unordered_mode(a, b),
    }
}

/// Two modes neither of which is known to be newer: `mode::merge`, or the one that is known.
fn unordered_mode(a: &Entry, b: &Entry) -> Option<u32> {
    match (a.mode, b.mode) {
        (Some(x), Some(y)) => Some(mode::merge(x, y)),
        (x, y) => x.or(y),
    }
}

/// The steps that bring `p` to `t` on both sides, given what each side holds (`a`, `b`).
fn emit(out: &mut Plan, p: &RelPath, t: &Target, a: Option<&Entry>, b: Option<&Entry>) {
    let cur = |s: Side| if s == Side::Left { a } else { b };
    let moved_aside = emit_aside(out, p, t, cur);
    for side in [Side::Left, Side::Right] {
        let here = if moved_aside == Some(side) {
            None
        } else {
            cur(side)
        };
        let at = At {
            side,
            p,
            here,
            same_vv: here.is_some_and(|e| e.vv == t.vv),
        };
        match t.kind {
            Kind::File => {
                let from = t.content_from.unwrap_or(side);
                let src = cur(from).filter(|e| e.kind == Kind::File);
                at.file(out, t, src, from != side)
            }
            Kind::Dir => {
                let mtime = [a, b]
                    .into_iter()
                    .flatten()
                    .find(|e| e.kind == Kind::Dir)
                    .map(|e| e.mtime)
                    .unwrap_or_default();
                at.dir(out, t, mtime)
            }
            Kind::Deleted => {
                let mtime = [a, b]
                    .into_iter()
                    .flatten()
                    .filter(|e| e.kind == Kind::Deleted)
                    .map(|e| e.mtime)
                    .max()
                    .unwrap_or_default();
                at.deleted(out, Entry::tombstone(mtime, t.vv.clone()))
            }
        }
    }
}

/// Conflict copies: the holder renames its file aside, the other side fetches that copy.
/// Returns the side that moved its file away.
fn emit_aside<'e>(
    out: &mut Plan,
    p: &RelPath,
    t: &Target,
    cur: impl Fn(Side) -> Option<&'e Entry>,
) -> Option<Side> {
    let (holder, copy) = t.aside.as_ref()?;
    let fe = cur(*holder).filter(|e| e.kind == Kind::File)?;
    out.steps.push(Step {
        side: *holder,
        path: p.clone(),
        op: Op::MoveAside { to: copy.clone() },
        result: fe.clone(),
    });
    let other = holder.other();
    out.steps.push(Step {
        side: other,
        path: copy.clone(),
        op: Op::Fetch {
            from: copy.clone(),
            source: fe.clone(),
            replace: None,
        },
        result: fe.clone(),
    });
    out.conflicts.push(Conflict {
        path: p.clone(),
        copy: copy.clone(),
        winner: other,
    });
    Some(*holder)
}

/// One side of one path as `emit` sees it: what it holds now, and whether that already has
/// the target history.
struct At<'a> {
    side: Side,
    p: &'a RelPath,
    here: Option<&'a Entry>,
    same_vv: bool,
}

impl At<'_> {
    fn push(&self, out: &mut Plan, op: Op, result: Entry) {
        out.steps.push(Step {
            side: self.side,
            path: self.p.clone(),
            op,
            result,
        });
    }

    /// A file wanted: `src` is the wanted content, on the other side when `from_other`.
    fn file(&self, out: &mut Plan, t: &Target, src: Option<&Entry>, from_other: bool) {
        let live_here = self.here.filter(|e| e.is_live()).cloned();
        match (self.here, src) {
            (Some(e), Some(s)) if e.kind == Kind::File && e.same_content(s) => {
                self.keep(out, t, e);
            }
            (_, Some(s)) if from_other => {
                let op = Op::Fetch {
                    from: self.p.clone(),
                    source: s.clone(),
                    replace: live_here,
                };
                self.push(out, op, t.entry_for(s));
            }
            (Some(e), _) if e.kind == Kind::File => self.keep(out, t, e),
            // Unreachable with consistent inputs (the content side holds a file).
            _ => {}
        }
    }

    fn dir(&self, out: &mut Plan, t: &Target, mtime: MTime) {
        match self.here {
            Some(e) if e.kind == Kind::Dir => self.keep(out, t, e),
            _ => {
                let replace = self.here.filter(|e| e.is_live()).cloned();
                let made = t.entry_for(&Entry::dir(mtime, t.vv.clone()));
                // Made fillable (`mode::while_filling`); a mode that forbids the owner to
                // write or enter it is set after everything has gone in.
                if let Some(m) = made.mode.filter(|m| mode::blocks_filling(*m)) {
                    let op = Op::Chmod {
                        mode: m,
                        expect: made.clone(),
                    };
                    self.push(out, op, made.clone());
                }
                self.push(out, Op::MkDir { replace }, made);
            }
        }
    }

    /// What is here stays: its record takes the target's history, and its mode is set where
    /// it differs (a disk that reports no mode keeps the wanted one in its index only).
    fn keep(&self, out: &mut Plan, t: &Target, e: &Entry) {
        let mut want = t.entry_for(e);
        if want.mode == e.mode {
            // What this disk shows of the mode stays known.
            want.disk_mode = e.disk_mode;
        }
        match want.mode {
            Some(m) if e.mode.is_some() && e.mode != want.mode => {
                let op = Op::Chmod {
                    mode: m,
                    expect: e.clone(),
                };
                self.push(out, op, want)
            }
            _ if want != *e => self.push(out, Op::Record, want),
            _ => {}
        }
    }

    fn deleted(&self, out: &mut Plan, tomb: Entry) {
        match self.here {
            Some(e) if e.kind == Kind::File => {
                self.push(out, Op::Trash { expect: e.clone() }, tomb)
            }
            Some(e) if e.kind == Kind::Dir => self.push(out, Op::RmDir, tomb),
            _ if !self.same_vv => out.steps.push(record(self.side, self.p, tomb)),
            _ => {}
        }
    }
}

fn record(side: Side, p: &RelPath, result: Entry) -> Step {
    Step {
        side,
        path: p.clone(),
        op: Op::Record,
        result,
    }
}

/// Paths a new conflict copy must not use.
struct Taken<'a> {
    left: &'a Entries,
    right: &'a Entries,
    chosen: BTreeSet<RelPath>,
}

impl Taken<'_> {
    fn conflict_name(&mut self, p: &RelPath, mtime: MTime, replica: ReplicaId) -> RelPath {
        let (l, r) = (self.left, self.right);
        let chosen = &mut self.chosen;
        conflict_name_with(p, mtime, replica, |c| {
            !l.contains_key(c) && !r.contains_key(c) && chosen.insert(c.clone())
        })
    }
}

/// Marks a conflict copy's name.
pub const CONFLICT_MARK: &str = ".sync-conflict-";

/// `name.sync-conflict-YYYYMMDD-HHMMSS-<replica>.ext`, unique among `taken`.
pub fn conflict_name(
    p: &RelPath,
    mtime: MTime,
    replica: ReplicaId,
    taken: &mut BTreeSet<RelPath>,
) -> RelPath {
    conflict_name_with(p, mtime, replica, |c| taken.insert(c.clone()))
}

/// Tries `name`, `name-1`, … until `claim` accepts one.
fn conflict_name_with(
    p: &RelPath,
    mtime: MTime,
    replica: ReplicaId,
    mut claim: impl FnMut(&RelPath) -> bool,
) -> RelPath {
    let name = p.name();
    let (stem, ext) = match name.rfind('.') {
        // A very long "extension" is not one; keep the name whole and shorten it instead.
        Some(i) if i > 0 && name.len() - i <= 32 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    // Marker, stamp, replica, a possible `-N` and the extension must fit in a file name.
    let stem = fit_name(stem, CONFLICT_MARK.len() + 15 + 1 + 8 + 11 + ext.len());
    let when = crate::time::stamp(mtime.secs);
    let parent = p.parent().unwrap_or_default();
    for n in 0u32.. {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let candidate = format!(
            "{stem}{CONFLICT_MARK}{when}-{}{suffix}{ext}",
            replica.short()
        );
        let path = parent.join_unchecked(&candidate);
        if claim(&path) {
            return path;
        }
    }
    unreachable!("u32 conflict suffixes exhausted")
}

#[cfg(test)]
mod tests;
