//! Restores (`sync::recover`) on real folders synced by the real engine.

use crate::history::versions::Pick;
use crate::relpath::RelPath;
use crate::replica::layout::{is_reserved_root_name, is_temp_name};
use crate::store::LocalStore;
use crate::sync::SyncOptions;
use crate::sync::recover::{Held, kept, plan};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const PATHS: [&str; 3] = ["a.txt", "d/b.txt", "d/c.txt"];

#[derive(Debug, Clone)]
enum Act {
    /// A person writes a file on one side (true: left).
    Write(bool, usize, Vec<u8>),
    Delete(bool, usize),
    Sync,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        (
            any::<bool>(),
            0..PATHS.len(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(s, p, b)| Act::Write(s, p, b)),
        (any::<bool>(), 0..PATHS.len()).prop_map(|(s, p)| Act::Delete(s, p)),
        Just(Act::Sync),
    ]
}

type Tree = BTreeMap<String, Vec<u8>>;

/// The user's files below `dir`.
fn tree(root: &Path, dir: &Path, out: &mut Tree) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (dir == root && is_reserved_root_name(&name)) || is_temp_name(&name) {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            tree(root, &p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            // Joined with `/` as a RelPath is, whatever the OS separator.
            let rel: Vec<String> = p
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.insert(rel.join("/"), b);
        }
    }
}

fn user_tree(root: &Path) -> Tree {
    let mut t = Tree::new();
    tree(root, root, &mut t);
    t
}

/// What a sync took from `before` on one side: contents gone from a path and not moved to
/// another (a rename, a conflict copy).
fn replaced(before: &Tree, after: &Tree) -> Vec<(String, Vec<u8>)> {
    before
        .iter()
        .filter(|(p, b)| after.get(*p) != Some(*b))
        .filter(|(_, b)| {
            !after
                .iter()
                .any(|(q, c)| c == *b && before.get(q) != Some(c))
        })
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

async fn sync(l: &LocalStore, r: &LocalStore) {
    let report = crate::sync::sync(l, r, &SyncOptions::default())
        .await
        .expect("sync");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Every version a sync replaced or deleted, on either side: kept in that side's trash with
/// exactly its bytes, and the last of them restored there comes back byte-exact on both
/// sides after the next sync.
async fn run(acts: Vec<Act>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&ra).unwrap();
    std::fs::create_dir_all(&rb).unwrap();
    let (la, lb) = (
        LocalStore::open(&ra, 3600).unwrap(),
        LocalStore::open(&rb, 3600).unwrap(),
    );
    let mut gone: Vec<(bool, String, Vec<u8>)> = Vec::new();
    for a in acts.iter().chain([&Act::Sync]) {
        match a {
            Act::Write(left, p, b) => write(if *left { &ra } else { &rb }, PATHS[*p], b),
            Act::Delete(left, p) => {
                let _ = std::fs::remove_file((if *left { &ra } else { &rb }).join(PATHS[*p]));
            }
            Act::Sync => {
                let (ba, bb) = (user_tree(&ra), user_tree(&rb));
                sync(&la, &lb).await;
                for (p, b) in replaced(&ba, &user_tree(&ra)) {
                    gone.push((true, p, b));
                }
                for (p, b) in replaced(&bb, &user_tree(&rb)) {
                    gone.push((false, p, b));
                }
            }
        }
    }
    for (left, p, bytes) in &gone {
        let (store, root) = if *left { (&la, &ra) } else { (&lb, &rb) };
        let kept = kept(store).await.expect("list");
        let versions = kept
            .get(&RelPath::parse(p).unwrap())
            .cloned()
            .unwrap_or_default();
        let found = versions
            .iter()
            .any(|k| std::fs::read(k.slot.to_path(root)).ok().as_ref() == Some(bytes));
        prop_assert!(
            found,
            "{p} on {} lost {bytes:?}: kept {versions:?}",
            if *left { "a" } else { "b" }
        );
    }
    let Some((left, p, bytes)) = gone.last() else {
        return Ok(());
    };
    let (store, root) = if *left { (&la, &ra) } else { (&lb, &rb) };
    let path = RelPath::parse(p).unwrap();
    let kept = kept(store).await.expect("list");
    let n = kept[&path]
        .iter()
        .position(|k| std::fs::read(k.slot.to_path(root)).ok().as_ref() == Some(bytes))
        .unwrap();
    let held = Held::take(store, "test").await.expect("lock");
    let steps = plan(&held, &kept, &path, &path, Pick::Version(n + 1), true).expect("plan");
    held.restore(&steps, |_| {}).await.expect("restore");
    held.release().await.expect("unlock");
    prop_assert_eq!(std::fs::read(path.to_path(root)).ok(), Some(bytes.clone()));
    sync(&la, &lb).await;
    for r in [&ra, &rb] {
        prop_assert_eq!(std::fs::read(path.to_path(r)).ok(), Some(bytes.clone()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::index::fuzz_config())]

    #[test]
    fn what_a_sync_replaced_comes_back_byte_exact(acts in prop::collection::vec(act(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(acts))?;
    }
}
