use super::*;
use crate::replica::layout::{trash_name, trash_slot_name};
use proptest::prelude::*;

fn rp(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn file(slot: &str, secs: i64) -> TrashFile {
    TrashFile {
        slot: rp(slot),
        size: 3,
        mtime: MTime::new(secs, 0),
        mode: None,
    }
}

#[test]
fn trash_names_parse_back() {
    let k = Kept::of(file(".sync-trash/docs/report.txt~20261206-133220", 1)).unwrap();
    assert_eq!(k.path, rp("docs/report.txt"));
    assert_eq!(crate::time::stamp(k.trashed), "20261206-133220");
    assert_eq!(k.n, 0);
    let k = Kept::of(file(".sync-trash/a~b~20261206-133220-12", 1)).unwrap();
    assert_eq!((k.path.as_str(), k.n), ("a~b", 12));
    // A folder trashed whole: its files keep their paths below it.
    let k = Kept::of(file(".sync-trash/docs~20261206-133220-1/x/y~1.txt", 1)).unwrap();
    assert_eq!((k.path.as_str(), k.n), ("docs/x/y~1.txt", 1));
    for not in [
        ".sync-trash/plain",
        "docs/report.txt~20261206-133220",
        ".sync-trash/x~20261306-133220",
        ".sync-trash/x~20261206-133220-0",
        ".sync-trash/x~20261206-133220x",
        ".sync-trash/~20261206-133220",
    ] {
        assert_eq!(Kept::of(file(not, 1)), None, "{not}");
    }
}

fn kept(path: &str, trashed: i64, n: u32, mtime: i64) -> Kept {
    Kept {
        slot: rp(&format!(".sync-trash/{path}~{trashed}-{n}")),
        path: rp(path),
        trashed,
        n,
        size: 1,
        mtime: MTime::new(mtime, 0),
        mode: None,
    }
}

#[test]
fn the_version_at_a_time() {
    // v1 written at 10, replaced at 20 by v2, which was deleted at 30; v3 written at 40.
    let v = [kept("f", 30, 0, 20), kept("f", 20, 0, 10)];
    let now = Some(Live {
        mtime: MTime::new(40, 0),
        size: 1,
    });
    // "At t": as things stood when second t began.
    assert_eq!(version_at(&v, now, 5), At::Absent);
    assert_eq!(version_at(&v, now, 10), At::Absent);
    assert_eq!(version_at(&v, now, 11), At::Kept(1));
    assert_eq!(version_at(&v, now, 20), At::Kept(1));
    assert_eq!(version_at(&v, now, 21), At::Kept(0));
    assert_eq!(version_at(&v, now, 35), At::Absent);
    assert_eq!(version_at(&v, now, 40), At::Absent);
    assert_eq!(version_at(&v, now, 41), At::Current);
    assert_eq!(version_at(&v, None, 45), At::Absent);
    assert_eq!(version_at(&[], now, 45), At::Current);
}

fn versions(all: &[Kept]) -> Versions {
    let mut out = Versions::new();
    for k in all {
        out.entry(k.path.clone()).or_default().push(k.clone());
    }
    for v in out.values_mut() {
        v.sort_by_key(|k| std::cmp::Reverse(k.order()));
    }
    out
}

fn live(entries: &[(&str, i64)]) -> BTreeMap<RelPath, Live> {
    entries
        .iter()
        .map(|(p, t)| {
            (
                rp(p),
                Live {
                    mtime: MTime::new(*t, 0),
                    size: 1,
                },
            )
        })
        .collect()
}

#[test]
fn restore_steps_and_their_errors() {
    let k = versions(&[
        kept("d/a", 30, 0, 20),
        kept("d/a", 20, 0, 10),
        kept("d/b", 25, 0, 5),
        kept("e", 25, 0, 5),
    ]);
    let none = live(&[]);
    let f = rp("d/a");
    let plan = |t: &RelPath, to: &RelPath, pick, l: &BTreeMap<RelPath, Live>, last| {
        plan_restore(t, to, pick, &k, l, last, false)
    };
    // The newest by default, the Nth asked for, or too old a one.
    let s = plan(&f, &f, Pick::Newest, &none, None).unwrap();
    assert!(matches!(&s[..], [Step::Put { kept, .. }] if kept.trashed == 30));
    let s = plan(&f, &rp("x"), Pick::Version(2), &none, None).unwrap();
    assert!(matches!(&s[..], [Step::Put { kept, to }] if kept.trashed == 20 && to == &rp("x")));
    let e = plan(&f, &f, Pick::Version(3), &none, None).unwrap_err();
    assert!(
        matches!(
            e,
            RestoreError::Expired {
                asked: 3,
                kept: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("no longer kept"), "{e}");
    let e = plan(&f, &f, Pick::At(5), &none, None).unwrap_err();
    assert!(matches!(e, RestoreError::ExpiredAt { .. }), "{e}");
    let e = plan(&rp("zz"), &rp("zz"), Pick::Newest, &none, None).unwrap_err();
    assert_eq!(e, RestoreError::NothingKept(rp("zz")));
    assert_eq!(
        plan(&rp("d"), &rp("d"), Pick::Version(1), &none, None).unwrap_err(),
        RestoreError::VersionOfFolder(rp("d"))
    );
    // A folder: what is missing, newest version; or as it was, with what is newer trashed.
    let here = live(&[("d/b", 40), ("d/c", 50)]);
    let s = plan(&rp("d"), &rp("d"), Pick::Newest, &here, None).unwrap();
    assert!(
        matches!(&s[..], [Step::Put { to, .. }] if to == &f),
        "{s:?}"
    );
    // `--as` puts back one file, not a folder; nor what is at the path unchanged since.
    let e = plan(&rp("d"), &rp("old"), Pick::At(22), &here, None).unwrap_err();
    assert_eq!(e, RestoreError::AsOfFolder(rp("d")));
    let e = plan(&rp("d"), &rp("old"), Pick::Newest, &here, None).unwrap_err();
    assert_eq!(e, RestoreError::AsOfFolder(rp("d")));
    let s = plan(&f, &rp("x"), Pick::At(22), &here, None).unwrap();
    assert!(matches!(&s[..], [Step::Put { kept, to }] if kept.trashed == 30 && to == &rp("x")));
    let now = live(&[("d/a", 25)]);
    let e = plan(&f, &rp("x"), Pick::At(40), &now, None).unwrap_err();
    assert!(matches!(e, RestoreError::AsOfCurrent { .. }), "{e}");
    assert!(e.to_string().contains("copy d/a instead"), "{e}");
    assert!(plan(&f, &f, Pick::At(40), &now, None).unwrap().is_empty());
    let s = plan(&rp("d"), &rp("d"), Pick::At(22), &here, None).unwrap();
    assert!(s.contains(&Step::Trash(rp("d/c"))), "{s:?}");
    // An edit after the last sync is not overwritten unless forced.
    let here = live(&[("d/a", 100)]);
    let e = plan(&f, &f, Pick::Newest, &here, Some(90)).unwrap_err();
    assert!(matches!(e, RestoreError::NewerEdit { .. }), "{e}");
    assert!(plan(&f, &f, Pick::Newest, &here, Some(100)).is_ok());
    assert!(plan_restore(&f, &f, Pick::Newest, &k, &here, Some(90), true).is_ok());
}

/// An operation on the model replica.
#[derive(Debug, Clone)]
enum Op {
    /// A local edit, or one a sync brings: what was there goes to the trash.
    Write(usize, Vec<u8>),
    /// A deletion, local or by a sync.
    Delete(usize),
    /// Time passes (seconds).
    Wait(i64),
}

const PATHS: [&str; 3] = ["a", "d/b", "d/c"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PATHS.len(), prop::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(p, b)| Op::Write(p, b)),
        (0..PATHS.len()).prop_map(Op::Delete),
        (0i64..3).prop_map(Op::Wait),
    ]
}

/// A replica as the trash sees it: live files (bytes, mtime) and the trash's files.
#[derive(Default)]
struct Model {
    now: i64,
    tick: u32,
    live: BTreeMap<RelPath, (Vec<u8>, MTime)>,
    trash: BTreeMap<RelPath, (Vec<u8>, MTime)>,
    /// Every version replaced or deleted: path, bytes, when, and when it was written.
    replaced: Vec<(RelPath, Vec<u8>, i64, i64)>,
}

impl Model {
    /// Moves what is at `p` to the trash, named as `Root::trash_slot` names it.
    fn trash(&mut self, p: &RelPath) {
        let Some((bytes, mtime)) = self.live.remove(p) else {
            return;
        };
        let (dir, base) = trash_name(p, self.now);
        let slot = (0..)
            .map(|n| dir.join(&trash_slot_name(&base, n)).unwrap())
            .find(|s| !self.trash.contains_key(s))
            .unwrap();
        self.trash.insert(slot, (bytes.clone(), mtime));
        self.replaced.push((p.clone(), bytes, self.now, mtime.secs));
    }

    fn write(&mut self, p: &RelPath, bytes: Vec<u8>) {
        self.trash(p);
        self.tick += 1;
        self.live
            .insert(p.clone(), (bytes, MTime::new(self.now, self.tick)));
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(i, b) => self.write(&rp(PATHS[*i]), b.clone()),
            Op::Delete(i) => self.trash(&rp(PATHS[*i])),
            Op::Wait(s) => self.now += s,
        }
    }

    fn kept(&self) -> Versions {
        group(self.trash.iter().map(|(slot, (b, m))| TrashFile {
            slot: slot.clone(),
            size: b.len() as u64,
            mtime: *m,
            mode: None,
        }))
    }

    fn live_view(&self) -> BTreeMap<RelPath, Live> {
        self.live
            .iter()
            .map(|(p, (b, m))| {
                (
                    p.clone(),
                    Live {
                        mtime: *m,
                        size: b.len() as u64,
                    },
                )
            })
            .collect()
    }

    /// Runs a restore's steps as a store would.
    fn restore(&mut self, steps: &[Step]) {
        for s in steps {
            match s {
                Step::Put { kept, to } => {
                    let (bytes, mtime) = self.trash[&kept.slot].clone();
                    self.trash(to);
                    self.live.insert(to.clone(), (bytes, mtime));
                }
                Step::Trash(p) => self.trash(p),
            }
        }
    }
}

proptest! {
    #![proptest_config(crate::index::fuzz_config())]

    /// After any edits and deletions, every replaced version comes back byte-exact: by its
    /// number, and by the time it was replaced at (when nothing else of that path was
    /// replaced in the same second).
    #[test]
    fn restore_gives_back_the_replaced_bytes(ops in prop::collection::vec(op(), 1..40)) {
        let mut m = Model { now: 1_764_000_000, ..Model::default() };
        for o in &ops {
            m.apply(o);
        }
        let replaced = m.replaced.clone();
        for (i, (p, bytes, when, written)) in replaced.iter().enumerate() {
            let later = replaced[i + 1..].iter().filter(|(q, ..)| q == p).count();
            let kept = m.kept();
            let steps = plan_restore(p, p, Pick::Version(later + 1), &kept, &m.live_view(), None, false)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut by_number = Model { now: m.now + 1, live: m.live.clone(), trash: m.trash.clone(), ..Model::default() };
            by_number.restore(&steps);
            let back = by_number.live.get(p).map(|(b, _)| b.clone());
            prop_assert_eq!(back.as_ref(), Some(bytes), "version {} of {}", later + 1, p);

            // A version that lived within one second, or beside another replaced in the
            // same second, has no time of its own to be asked for by.
            let same_second = replaced.iter().filter(|(q, _, w, _)| q == p && w == when).count();
            if same_second > 1 || written == when {
                continue;
            }
            let steps = plan_restore(p, p, Pick::At(*when), &kept, &m.live_view(), None, false)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut by_time = Model { now: m.now + 1, live: m.live.clone(), trash: m.trash.clone(), ..Model::default() };
            by_time.restore(&steps);
            let back = by_time.live.get(p).map(|(b, _)| b.clone());
            prop_assert_eq!(back.as_ref(), Some(bytes), "{} at {}", p, when);
        }
    }

    /// A folder restored at any time holds, for each file, what the model held then.
    #[test]
    fn a_folder_at_a_time_is_as_it_was(ops in prop::collection::vec(op(), 1..40), back in 0i64..30) {
        let mut m = Model { now: 1_764_000_000, ..Model::default() };
        let mut history: Vec<(i64, BTreeMap<RelPath, Vec<u8>>)> = Vec::new();
        for o in &ops {
            m.apply(o);
            let snapshot = m.live.iter().map(|(p, (b, _))| (p.clone(), b.clone())).collect();
            match history.last_mut() {
                Some((t, s)) if *t == m.now => *s = snapshot,
                _ => history.push((m.now, snapshot)),
            }
        }
        let t = m.now - back;
        // The state at the end of second t-1 is what stood at the start of second t.
        let empty = BTreeMap::new();
        let then = history.iter().rev().find(|(w, _)| *w < t).map_or(&empty, |(_, s)| s);
        let then: BTreeMap<RelPath, Vec<u8>> = then
            .iter()
            .filter(|(p, _)| p.starts_with(&rp("d")))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect();
        // Nothing kept below the folder is the one error (a restore then has nothing to use).
        let steps = match plan_restore(&rp("d"), &rp("d"), Pick::At(t), &m.kept(), &m.live_view(), None, false) {
            Ok(steps) => steps,
            Err(RestoreError::NothingKept(_)) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        m.now += 1;
        m.restore(&steps);
        let now: BTreeMap<RelPath, Vec<u8>> = m
            .live
            .iter()
            .filter(|(p, _)| p.starts_with(&rp("d")))
            .map(|(p, (b, _))| (p.clone(), b.clone()))
            .collect();
        prop_assert_eq!(now, then);
    }
}
