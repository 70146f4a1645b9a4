//! Planner tests: hand-written cases, and property tests over random histories of two
//! replicas modelled in memory (disk, index, trash), scanned with the real `reconcile`.

use super::*;
use crate::index::{ContentHash, Index, Kind, MTime, ReplicaId};
use crate::scan::{Observed, needs_hash, reconcile};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File { content: u32, mtime: i64 },
    Dir,
}

/// One replica: a disk, its index, and its trash (contents only).
#[derive(Debug, Clone)]
struct Replica {
    disk: BTreeMap<RelPath, Node>,
    /// Permission bits set on the disk; a path not here has its kind's default.
    modes: BTreeMap<RelPath, u32>,
    /// False for a disk without modes of its own (FAT): every path shows 0755, chmod does
    /// nothing.
    holds_modes: bool,
    index: Index,
    trash: Vec<u32>,
    /// This replica's clock; the right one runs an hour behind.
    clock: i64,
}

fn hash_of(content: u32) -> ContentHash {
    ContentHash::of(&content.to_le_bytes())
}

impl Replica {
    fn new(id: u64, clock: i64) -> Self {
        Replica {
            disk: BTreeMap::new(),
            modes: BTreeMap::new(),
            holds_modes: true,
            index: Index::new(ReplicaId(id)),
            trash: Vec::new(),
            clock,
        }
    }

    /// The mode the disk shows at `q`: what was set, else 0644 for a file, 0755 for a folder.
    fn mode_of(&self, q: &RelPath) -> Option<u32> {
        let default = match self.disk.get(q)? {
            _ if !self.holds_modes => return Some(0o755),
            Node::File { .. } => 0o644,
            Node::Dir => 0o755,
        };
        Some(self.modes.get(q).copied().unwrap_or(default))
    }

    fn chmod(&mut self, q: &RelPath, m: u32) {
        if self.disk.contains_key(q) && self.holds_modes {
            self.modes.insert(q.clone(), m);
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn scan(&mut self) {
        let observed: BTreeMap<RelPath, Observed> = self
            .disk
            .iter()
            .map(|(p, n)| {
                let o = match *n {
                    Node::File { mtime, .. } => Observed {
                        kind: Kind::File,
                        size: 4,
                        mtime: MTime::new(mtime, 0),
                        mode: self.mode_of(p),
                    },
                    Node::Dir => Observed {
                        kind: Kind::Dir,
                        size: 0,
                        mtime: MTime::default(),
                        mode: self.mode_of(p),
                    },
                };
                (p.clone(), o)
            })
            .collect();
        let mut hashes = crate::scan::Hashes::new();
        for q in needs_hash(&self.index, &observed) {
            if let Some(Node::File { content, .. }) = self.disk.get(&q) {
                hashes.insert(q, hash_of(*content));
            }
        }
        let now = MTime::new(self.tick(), 0);
        reconcile(
            &mut self.index,
            &RelPath::root(),
            &observed,
            &hashes,
            |_| true,
            now,
        );
    }

    fn remove_subtree(&mut self, at: &RelPath, to_trash: bool) {
        let gone: Vec<RelPath> = self
            .disk
            .keys()
            .filter(|k| k.starts_with(at))
            .cloned()
            .collect();
        for g in gone {
            self.modes.remove(&g);
            if let Some(Node::File { content, .. }) = self.disk.remove(&g)
                && to_trash
            {
                self.trash.push(content);
            }
        }
    }

    /// Makes `at`'s ancestors folders, as a user would (a file in the way is deleted).
    fn make_parents(&mut self, at: &RelPath) {
        let mut anc: Vec<RelPath> = at.ancestors().collect();
        anc.reverse();
        for a in anc {
            if let Some(Node::File { .. }) = self.disk.get(&a) {
                self.remove_subtree(&a, true);
            }
            self.disk.insert(a, Node::Dir);
        }
    }

    fn write(&mut self, at: &RelPath, content: u32) {
        self.make_parents(at);
        match self.disk.get(at) {
            Some(Node::Dir) => self.remove_subtree(at, true),
            // A new file gets the default mode; writing into one keeps its mode.
            None => {
                self.modes.remove(at);
            }
            Some(Node::File { .. }) => {}
        }
        let mtime = self.tick();
        self.disk.insert(at.clone(), Node::File { content, mtime });
    }

    fn live_contents(&self) -> Vec<u32> {
        self.disk
            .values()
            .filter_map(|n| match n {
                Node::File { content, .. } => Some(*content),
                Node::Dir => None,
            })
            .collect()
    }
}

/// Runs a plan on the two model replicas the way `sync::apply` runs it on stores.
fn execute(plan: &Plan, l: &mut Replica, r: &mut Replica) {
    for s in &plan.steps {
        let (here, there) = match s.side {
            Side::Left => (&mut *l, &*r),
            Side::Right => (&mut *r, &*l),
        };
        let mut result = s.result.clone();
        match &s.op {
            Op::MoveAside { to } => {
                let n = here.disk.remove(&s.path).expect("move-aside source exists");
                let m = here.modes.remove(&s.path);
                here.make_parents(to);
                here.disk.insert(to.clone(), n);
                if let Some(m) = m {
                    here.modes.insert(to.clone(), m);
                }
                here.index.entries.remove(&s.path);
                here.index.entries.insert(to.clone(), result);
                continue;
            }
            Op::MkDir { .. } => {
                if let Some(Node::File { .. }) = here.disk.get(&s.path) {
                    here.remove_subtree(&s.path.clone(), true);
                }
                here.make_parents(&s.path);
                here.disk.insert(s.path.clone(), Node::Dir);
                let m = result.mode.map(crate::index::mode::while_filling);
                here.modes.remove(&s.path);
                if let Some(m) = m {
                    here.chmod(&s.path, m);
                }
            }
            Op::Fetch { from, .. } => {
                let Some(Node::File { content, mtime }) = there.disk.get(from).copied() else {
                    panic!("fetch source {from} missing: {s:?}");
                };
                here.remove_subtree(&s.path.clone(), true);
                here.make_parents(&s.path);
                here.disk
                    .insert(s.path.clone(), Node::File { content, mtime });
                here.modes
                    .insert(s.path.clone(), result.mode.unwrap_or(0o644));
                result.mtime = MTime::new(mtime, 0);
            }
            Op::Move {
                from, from_result, ..
            } => {
                let n = here.disk.remove(from).expect("move source exists");
                let Node::File { content, mtime } = n else {
                    panic!("move of a folder: {s:?}");
                };
                assert_eq!(
                    Some(hash_of(content)),
                    s.result.hash,
                    "move of other content"
                );
                let m = here.modes.remove(from);
                here.make_parents(&s.path);
                here.disk.insert(s.path.clone(), n);
                if let Some(m) = m {
                    here.modes.insert(s.path.clone(), m);
                }
                here.index.entries.insert(from.clone(), from_result.clone());
                result.mtime = MTime::new(mtime, 0);
            }
            Op::Trash { .. } | Op::RmDir => here.remove_subtree(&s.path.clone(), true),
            Op::Chmod { mode, .. } => {
                assert!(here.disk.contains_key(&s.path), "chmod of nothing: {s:?}");
                here.chmod(&s.path, *mode);
            }
            Op::Record => {}
        }
        // What the disk shows of the mode, noted as `sync::apply` notes it.
        let blocked = result.mode.is_some_and(crate::index::mode::blocks_filling);
        match &s.op {
            Op::Fetch { .. } | Op::Move { .. } | Op::Chmod { .. } => {
                result.landed_mode(here.mode_of(&s.path))
            }
            Op::MkDir { .. } if !blocked => result.landed_mode(here.mode_of(&s.path)),
            // Recorded as made (fillable) until the chmod that follows records its mode.
            Op::MkDir { .. } => result.mode = result.mode.map(crate::index::mode::while_filling),
            _ => {}
        }
        here.index.entries.insert(s.path.clone(), result);
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Write(usize),
    /// Writes what the other side has at that path (identical concurrent edits).
    WriteSame(usize),
    Delete(usize),
    Mkdir(usize),
    Rename(usize, usize),
    Chmod(usize, u32),
}

const MODES: [u32; 6] = [0o600, 0o644, 0o755, 0o700, 0o640, 0o500];

const PATHS: [&str; 7] = ["a", "b", "a/x", "a/y", "b/x", "a/x/q", "c.txt"];

fn arb_edit() -> impl Strategy<Value = Edit> {
    let i = 0..PATHS.len();
    prop_oneof![
        3 => i.clone().prop_map(Edit::Write),
        1 => i.clone().prop_map(Edit::WriteSame),
        2 => i.clone().prop_map(Edit::Delete),
        1 => i.clone().prop_map(Edit::Mkdir),
        2 => (i.clone(), i.clone()).prop_map(|(a, b)| Edit::Rename(a, b)),
        2 => (i, 0..MODES.len()).prop_map(|(a, m)| Edit::Chmod(a, MODES[m])),
    ]
}

fn apply_edit(e: &Edit, me: &mut Replica, other: &Replica, next: &mut u32) {
    match e {
        Edit::Write(i) => {
            *next += 1;
            me.write(&p(PATHS[*i]), *next);
        }
        Edit::WriteSame(i) => {
            if let Some(Node::File { content, .. }) = other.disk.get(&p(PATHS[*i])) {
                me.write(&p(PATHS[*i]), *content);
            }
        }
        Edit::Delete(i) => me.remove_subtree(&p(PATHS[*i]), false),
        Edit::Rename(i, j) => {
            let (from, to) = (p(PATHS[*i]), p(PATHS[*j]));
            if to.starts_with(&from) || from.starts_with(&to) || me.disk.contains_key(&to) {
                return;
            }
            if let Some(n @ Node::File { .. }) = me.disk.get(&from).copied() {
                me.disk.remove(&from);
                let m = me.modes.remove(&from);
                me.make_parents(&to);
                me.disk.insert(to.clone(), n);
                if let Some(m) = m {
                    me.modes.insert(to, m);
                }
            }
        }
        Edit::Chmod(i, m) => me.chmod(&p(PATHS[*i]), *m),
        Edit::Mkdir(i) => {
            let at = p(PATHS[*i]);
            if !me.disk.contains_key(&at) {
                me.make_parents(&at);
                me.disk.insert(at, Node::Dir);
            }
        }
    }
}

/// Runs one sync and checks the planner's promises; returns an error message on violation.
fn sync_and_check(l: &mut Replica, r: &mut Replica) -> Result<(), String> {
    l.scan();
    r.scan();
    let before: Vec<u32> = l
        .live_contents()
        .into_iter()
        .chain(r.live_contents())
        .collect();
    // Versions the other side has not superseded (edits it has not seen) must stay live; a
    // content the other side has seen is superseded, whatever chmods came after it.
    let mut unsuperseded = Vec::new();
    for (me, other) in [(&*l, &*r), (&*r, &*l)] {
        for (q, n) in &me.disk {
            let (Some(c), Some(e)) = (content(n), me.index.entries.get(q)) else {
                continue;
            };
            let theirs = other
                .index
                .entries
                .get(q)
                .map(|o| o.vv.clone())
                .unwrap_or_default();
            if e.content_history().compare(&theirs) != Causality::DominatedBy {
                unsuperseded.push(c);
            }
        }
    }
    let modes_before: Vec<BTreeMap<RelPath, (bool, u32)>> = [&*l, &*r]
        .into_iter()
        .map(|rep| {
            rep.disk
                .iter()
                .filter_map(|(q, n)| Some((q.clone(), (*n == Node::Dir, rep.mode_of(q)?))))
                .collect()
        })
        .collect();
    let pl = plan(&l.index, &r.index);
    execute(&pl, l, r);
    // A sync never makes anything more readable than one of the sides had it.
    for (q, n) in &l.disk {
        let Some(now) = l.mode_of(q) else { continue };
        let before: Vec<u32> = modes_before
            .iter()
            .filter_map(|m| m.get(q))
            .filter(|(dir, _)| *dir == (*n == Node::Dir))
            .map(|(_, m)| *m)
            .collect();
        if !before.is_empty() && !before.iter().any(|b| now & 0o444 & !b == 0) {
            return Err(format!(
                "{q} became more readable: {now:o} from {before:?}; plan {pl:#?}"
            ));
        }
    }
    for c in &unsuperseded {
        if !l.live_contents().contains(c) || !r.live_contents().contains(c) {
            return Err(format!(
                "unsuperseded content {c} is not live on both sides; plan {pl:#?}"
            ));
        }
    }

    // Nothing that was live is gone: it is live somewhere or in a trash.
    let mut after: Vec<u32> = l.live_contents();
    after.extend(r.live_contents());
    after.extend(&l.trash);
    after.extend(&r.trash);
    for c in &before {
        if !after.contains(c) {
            return Err(format!("content {c} lost; plan {pl:#?}"));
        }
    }
    // Both disks hold the same tree, with the same modes where both can hold them.
    let shown =
        |rep: &Replica, k: &RelPath| (l.holds_modes && r.holds_modes).then(|| rep.mode_of(k));
    if l.disk
        .iter()
        .map(|(k, n)| (k, content(n), shown(l, k)))
        .collect::<Vec<_>>()
        != r.disk
            .iter()
            .map(|(k, n)| (k, content(n), shown(r, k)))
            .collect::<Vec<_>>()
    {
        return Err(format!(
            "disks differ after sync:\n{:?} {:?}\n{:?} {:?}\nplan {pl:#?}",
            l.disk, l.modes, r.disk, r.modes
        ));
    }
    // Each index describes its disk: a rescan finds nothing new.
    for (name, rep) in [("left", &mut *l), ("right", &mut *r)] {
        let idx = rep.index.clone();
        let snapshot = rep.clone();
        rep.scan();
        let changed: Vec<_> = rep
            .index
            .entries
            .iter()
            .filter(|(k, e)| {
                idx.entries
                    .get(k)
                    .map(|x| x.vv != e.vv || x.kind != e.kind || x.mode != e.mode)
                    != Some(false)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !changed.is_empty() {
            return Err(format!(
                "{name} index disagrees with its disk at {changed:?}; {snapshot:#?}"
            ));
        }
    }
    // Both indexes agree entry by entry.
    let keys: BTreeSet<&RelPath> = l
        .index
        .entries
        .keys()
        .chain(r.index.entries.keys())
        .collect();
    for k in keys {
        let (a, b) = (l.index.entries.get(k), r.index.entries.get(k));
        let same = match (a, b) {
            (Some(a), Some(b)) => {
                a.vv == b.vv && a.kind == b.kind && a.same_content(b) && a.mode == b.mode
            }
            _ => false,
        };
        if !same {
            return Err(format!("indexes disagree at {k}: {a:?} vs {b:?}"));
        }
    }
    // A second sync has nothing to do.
    let again = plan(&l.index, &r.index);
    if !again.steps.is_empty() {
        return Err(format!("second sync not a no-op: {again:#?}"));
    }
    Ok(())
}

fn content(n: &Node) -> Option<u32> {
    match n {
        Node::File { content, .. } => Some(*content),
        Node::Dir => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_converge_without_loss(
        rounds in proptest::collection::vec(
            (proptest::collection::vec(arb_edit(), 0..4), proptest::collection::vec(arb_edit(), 0..4)),
            1..5,
        ),
        right_holds_modes in proptest::bool::weighted(0.8),
    ) {
        let mut l = Replica::new(0x1111, 1_000_000);
        let mut r = Replica::new(0x2222, 1_000_000 - 3600);
        r.holds_modes = right_holds_modes;
        let mut next = 0u32;
        for (le, re) in &rounds {
            for e in le {
                let other = r.clone();
                apply_edit(e, &mut l, &other, &mut next);
            }
            for e in re {
                let other = l.clone();
                apply_edit(e, &mut r, &other, &mut next);
            }
            if let Err(m) = sync_and_check(&mut l, &mut r) {
                prop_assert!(false, "{}", m);
            }
        }
    }
}

/// Two replicas that synced `a` once.
fn synced_pair() -> (Replica, Replica) {
    let mut l = Replica::new(1, 1000);
    let mut r = Replica::new(2, 1000 - 3600);
    l.write(&p("a"), 1);
    sync_and_check(&mut l, &mut r).unwrap();
    (l, r)
}

#[test]
fn dominating_edit_wins_despite_older_clock() {
    let (mut l, mut r) = synced_pair();
    // The right replica's clock is an hour behind: its later edit has an older mtime.
    r.write(&p("a"), 2);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(content(&l.disk[&p("a")]), Some(2));
    assert!(l.trash.contains(&1));
}

#[test]
fn concurrent_edits_keep_both() {
    let (mut l, mut r) = synced_pair();
    l.write(&p("a"), 2);
    r.write(&p("a"), 3);
    l.scan();
    r.scan();
    let pl = plan(&l.index, &r.index);
    assert_eq!(pl.conflicts.len(), 1);
    sync_and_check(&mut l, &mut r).unwrap();
    let mut contents = l.live_contents();
    contents.sort();
    assert_eq!(contents, vec![2, 3]);
    let names: Vec<String> = l.disk.keys().map(|k| k.to_string()).collect();
    assert!(
        names.iter().any(|n| n.starts_with("a.sync-conflict-")),
        "{names:?}"
    );
}

#[test]
fn delete_vs_edit_keeps_the_edit() {
    let (mut l, mut r) = synced_pair();
    l.remove_subtree(&p("a"), false);
    r.write(&p("a"), 5);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(content(&l.disk[&p("a")]), Some(5));
}

#[test]
fn tombstones_do_not_resurrect() {
    let (mut l, mut r) = synced_pair();
    l.remove_subtree(&p("a"), false);
    sync_and_check(&mut l, &mut r).unwrap();
    assert!(!r.disk.contains_key(&p("a")));
    assert_eq!(r.index.entries[&p("a")].kind, Kind::Deleted);
}

#[test]
fn folder_with_new_content_survives_its_deletion() {
    let mut l = Replica::new(1, 1000);
    let mut r = Replica::new(2, 1000);
    l.write(&p("d/old"), 1);
    sync_and_check(&mut l, &mut r).unwrap();
    l.remove_subtree(&p("d"), false);
    r.write(&p("d/new"), 2);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(content(&l.disk[&p("d/new")]), Some(2));
    assert!(!l.disk.contains_key(&p("d/old")));
}

#[test]
fn a_rename_is_a_move_not_a_copy() {
    let (mut l, mut r) = synced_pair();
    let n = l.disk.remove(&p("a")).unwrap();
    l.make_parents(&p("moved/a2"));
    l.disk.insert(p("moved/a2"), n);
    l.scan();
    r.scan();
    let pl = plan(&l.index, &r.index);
    assert!(
        pl.steps.iter().any(|s| matches!(s.op, Op::Move { .. })),
        "{pl:#?}"
    );
    assert!(
        !pl.steps.iter().any(|s| matches!(s.op, Op::Fetch { .. })),
        "{pl:#?}"
    );
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(content(&r.disk[&p("moved/a2")]), Some(1));
}

#[test]
fn conflict_names() {
    let mut taken = BTreeSet::new();
    let t = MTime::new(1_795_546_644, 0); // 2026-11-24 18:57:24 UTC
    let r = ReplicaId(0x2c33_502f_fc97_ff56);
    assert_eq!(
        conflict_name(&p("dir/report.txt"), t, r, &mut taken).as_str(),
        "dir/report.sync-conflict-20261124-185724-2c33502f.txt"
    );
    assert_eq!(
        conflict_name(&p("dir/report.txt"), t, r, &mut taken).as_str(),
        "dir/report.sync-conflict-20261124-185724-2c33502f-1.txt"
    );
    assert_eq!(
        conflict_name(&p(".bashrc"), t, r, &mut taken).as_str(),
        ".bashrc.sync-conflict-20261124-185724-2c33502f"
    );
    assert_eq!(crate::time::stamp(0), "19700101-000000");
    assert_eq!(crate::time::stamp(951_782_400), "20000229-000000");
}

fn mode_at(r: &Replica, q: &str) -> Option<u32> {
    r.mode_of(&p(q))
}

#[test]
fn a_chmod_alone_syncs_without_moving_content() {
    let (mut l, mut r) = synced_pair();
    l.chmod(&p("a"), 0o600);
    l.scan();
    r.scan();
    let pl = plan(&l.index, &r.index);
    let modes: Vec<Option<u32>> = pl
        .steps
        .iter()
        .map(|s| match &s.op {
            Op::Chmod { mode, .. } => Some(*mode),
            _ => None,
        })
        .collect();
    assert_eq!(modes, vec![Some(0o600)], "{pl:#?}");
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(mode_at(&r, "a"), Some(0o600));
}

#[test]
fn a_chmod_and_a_concurrent_edit_merge() {
    for chmod_left in [true, false] {
        let (mut l, mut r) = synced_pair();
        let (chmodder, editor) = if chmod_left {
            (&mut l, &mut r)
        } else {
            (&mut r, &mut l)
        };
        chmodder.chmod(&p("a"), 0o755);
        editor.write(&p("a"), 9);
        l.scan();
        r.scan();
        let pl = plan(&l.index, &r.index);
        assert!(pl.conflicts.is_empty(), "{pl:#?}");
        sync_and_check(&mut l, &mut r).unwrap();
        for side in [&l, &r] {
            assert_eq!(content(&side.disk[&p("a")]), Some(9));
            assert_eq!(mode_at(side, "a"), Some(0o755));
            assert_eq!(side.disk.len(), 1, "no conflict copy: {:?}", side.disk);
        }
    }
}

#[test]
fn concurrent_chmods_merge_to_the_narrower() {
    let (mut l, mut r) = synced_pair();
    l.chmod(&p("a"), 0o600);
    r.chmod(&p("a"), 0o755);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(mode_at(&l, "a"), Some(0o700));
    assert_eq!(mode_at(&r, "a"), Some(0o700));
}

#[test]
fn an_edit_keeps_the_mode_of_the_file_it_replaces() {
    let (mut l, mut r) = synced_pair();
    l.chmod(&p("a"), 0o600);
    sync_and_check(&mut l, &mut r).unwrap();
    r.write(&p("a"), 7);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(content(&l.disk[&p("a")]), Some(7));
    assert_eq!(mode_at(&l, "a"), Some(0o600));
}

#[test]
fn a_folder_that_forbids_writing_is_filled_then_closed() {
    let mut l = Replica::new(1, 1000);
    let mut r = Replica::new(2, 1000);
    l.write(&p("d/f"), 1);
    l.chmod(&p("d"), 0o500);
    l.scan();
    r.scan();
    let pl = plan(&l.index, &r.index);
    let ops: Vec<&Op> = pl.steps.iter().map(|s| &s.op).collect();
    assert!(matches!(ops[0], Op::MkDir { .. }), "{pl:#?}");
    assert!(matches!(ops[1], Op::Fetch { .. }), "{pl:#?}");
    assert!(matches!(ops[2], Op::Chmod { mode: 0o500, .. }));
    assert_eq!(pl.steps[0].result.mode, Some(0o500));
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(mode_at(&r, "d"), Some(0o500));
}

/// An index written before modes were kept: the first sync after the upgrade takes the modes
/// as the disks have them, changes no history and moves no content; where the sides differ
/// (a sync of the old version widened one), the narrower reading wins, and the +x stays.
#[test]
fn an_index_without_modes_adopts_the_disk_without_a_change() {
    let (mut l, mut r) = synced_pair();
    l.write(&p("run.sh"), 2);
    l.write(&p("same"), 3);
    sync_and_check(&mut l, &mut r).unwrap();
    l.chmod(&p("a"), 0o600);
    l.chmod(&p("run.sh"), 0o755);
    for side in [&mut l, &mut r] {
        for e in side.index.entries.values_mut() {
            e.mode = None;
        }
    }
    let before: Vec<VersionVector> = l.index.entries.values().map(|e| e.vv.clone()).collect();
    l.scan();
    r.scan();
    let after: Vec<VersionVector> = l.index.entries.values().map(|e| e.vv.clone()).collect();
    assert_eq!(before, after, "adopting modes is no change");
    let pl = plan(&l.index, &r.index);
    assert!(
        pl.steps
            .iter()
            .all(|s| matches!(s.op, Op::Chmod { .. } | Op::Record)),
        "{pl:#?}"
    );
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(mode_at(&r, "a"), Some(0o600));
    assert_eq!(mode_at(&r, "run.sh"), Some(0o755));
    assert_eq!(mode_at(&r, "same"), Some(0o644));
    assert_eq!(l.index.entries[&p("a")].vv, r.index.entries[&p("a")].vv);
}

#[test]
fn modes_survive_renames_conflicts_and_deletes() {
    // A rename on one side and a chmod on the other: the renamed file keeps the new mode.
    let (mut l, mut r) = synced_pair();
    r.chmod(&p("a"), 0o600);
    sync_and_check(&mut l, &mut r).unwrap();
    let n = l.disk.remove(&p("a")).unwrap();
    let m = l.modes.remove(&p("a")).unwrap();
    l.disk.insert(p("b"), n);
    l.modes.insert(p("b"), m);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(mode_at(&r, "b"), Some(0o600));
    // Concurrent edits: each version keeps its own mode, the copy included.
    l.write(&p("b"), 5);
    r.write(&p("b"), 6);
    r.chmod(&p("b"), 0o640);
    sync_and_check(&mut l, &mut r).unwrap();
    let copy = l
        .disk
        .keys()
        .find(|k| k.as_str().contains(CONFLICT_MARK))
        .unwrap()
        .clone();
    let copy_content = content(&l.disk[&copy]);
    let copy_mode = if copy_content == Some(6) {
        0o640
    } else {
        0o600
    };
    assert_eq!(l.mode_of(&copy), Some(copy_mode));
    // Delete vs chmod keeps the file, with the chmod.
    l.remove_subtree(&p("b"), false);
    r.chmod(&p("b"), 0o700);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(mode_at(&l, "b"), Some(0o700));
}

/// A far side whose disk cannot hold modes (FAT) keeps them in its index: what it shows is
/// never taken for a chmod, an edit there keeps the mode, and nothing ping-pongs.
#[test]
fn a_disk_without_modes_keeps_them_in_its_index() {
    let mut l = Replica::new(1, 1000);
    let mut r = Replica::new(2, 1000);
    r.holds_modes = false;
    l.write(&p("secret"), 1);
    l.chmod(&p("secret"), 0o600);
    l.write(&p("private/notes"), 2);
    l.chmod(&p("private"), 0o700);
    sync_and_check(&mut l, &mut r).unwrap();
    let e = &r.index.entries[&p("secret")];
    assert_eq!((e.mode, e.disk_mode), (Some(0o600), Some(0o755)));
    // An edit on the disk without modes keeps the mode everywhere.
    r.write(&p("secret"), 3);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(content(&l.disk[&p("secret")]), Some(3));
    assert_eq!(mode_at(&l, "secret"), Some(0o600));
    // A chmod where modes are held reaches the other index, and stays there.
    l.chmod(&p("secret"), 0o640);
    sync_and_check(&mut l, &mut r).unwrap();
    assert_eq!(r.index.entries[&p("secret")].mode, Some(0o640));
    assert_eq!(mode_at(&l, "secret"), Some(0o640));
    assert_eq!(mode_at(&l, "private"), Some(0o700));
}
