//! `filesync index` and `filesync status`: this machine's replica on its own, no peer.

use super::open_local;
use crate::config::Config;
use crate::relpath::RelPath;
use crate::replica::lock::LockInfo;
use crate::store::StoreError;
use crate::sync::human_bytes;
use anyhow::{Context, Result};
use std::path::Path;

/// `filesync index`: refresh the index, or set a corrupt one aside and rebuild it.
pub fn index(root: &Path, cfg: &Config) -> Result<i32> {
    let store = open_local(root, cfg)?;
    store.lock_blocking(&LockInfo::here("filesync index"))?;
    // The hub's own refresh may write the index meanwhile: read it again and rescan.
    let mut tries = 0;
    let res = loop {
        match index_locked(&store, cfg) {
            Err(e)
                if tries < 3
                    && matches!(
                        e.downcast_ref::<StoreError>(),
                        Some(StoreError::IndexMoved { .. })
                    ) =>
            {
                tries += 1
            }
            other => break other,
        }
    };
    store.unlock_blocking()?;
    res
}

/// One `filesync index` pass under the lock: load (or rebuild), scan, save, report.
fn index_locked(store: &crate::store::local::LocalStore, cfg: &Config) -> Result<i32> {
    let mut idx = match store.load_index_blocking() {
        Ok(Some(i)) => i,
        Ok(None) => store.new_index(),
        Err(StoreError::CorruptIndex { source, .. }) => {
            let aside = store.set_aside_index()?;
            tracing::warn!(
                "the index was corrupt ({source}); kept it as {} and rebuilding",
                aside.display()
            );
            store.new_index()
        }
        Err(e) => return Err(e.into()),
    };
    idx.name = Some(cfg.replica_name());
    let busy = store.busy();
    let root = RelPath::root();
    let st = crate::scan::scan(store.handle(), &mut idx, &root, &|p| busy.contains(p))
        .with_context(|| format!("cannot scan {}", store.root().display()))?;
    crate::store::local::remove_leftover_temps(store.handle(), &st.temps, true);
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
}

pub fn status(root: &Path, cfg: &Config) -> Result<i32> {
    let store = open_local(root, cfg)?;
    // A running daemon knows more (and more cheaply) than a scan.
    if let Some(report) = crate::daemon::status::query(store.root()) {
        print!("{}", report.render());
        print_history(&store)?;
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
    let root = RelPath::root();
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
                "  {} ({id}): {} ({} ago), {} files synced, {} conflicts",
                if p.name.is_empty() { "?" } else { &p.name },
                crate::time::readable(p.last_sync),
                crate::time::ago(now, p.last_sync),
                p.transferred,
                p.conflicts
            );
        }
    }
    print_history(&store)?;
    Ok(0)
}

/// The trash's size, the open conflicts and the last sync's errors.
fn print_history(store: &crate::store::LocalStore) -> Result<()> {
    use crate::history::{conflicts, log};
    use crate::sync::recover;
    let (kept, changes) = super::runtime()?
        .block_on(async { (recover::kept(store).await, recover::read_log(store).await) });
    let kept = kept?;
    let versions: usize = kept.values().map(Vec::len).sum();
    let bytes: u64 = kept.values().flatten().map(|k| k.size).sum();
    println!(
        "trash: {versions} versions of {} files, {} (`filesync trash` lists them)",
        kept.len(),
        human_bytes(bytes)
    );
    let idx = store
        .load_index_blocking()?
        .unwrap_or_else(|| store.new_index());
    let open = conflicts::find(idx.live().map(|(p, _)| p)).len();
    match open {
        0 => println!("conflicts: none open"),
        n => println!("conflicts: {n} open (`filesync conflicts` lists them)"),
    }
    let changes = changes.unwrap_or_default();
    let last = log::last_sync(&changes);
    let newest_sync = idx.peers.values().map(|p| p.last_sync).max().unwrap_or(0);
    // A sync that changes nothing here writes no lines (a no-op stays cheap), and none to
    // the index either: the errors shown are those of the last sync that did.
    let errors: Vec<&log::Change> = last
        .iter()
        .filter(|c| c.what == log::What::Error && c.done >= newest_sync)
        .collect();
    match errors.len() {
        0 => println!("last sync's errors: none"),
        n => {
            println!("last sync's errors: {n}");
            for c in errors {
                println!("  {}: {}", c.path, c.error.as_deref().unwrap_or("failed"));
            }
        }
    }
    Ok(())
}
