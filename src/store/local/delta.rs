//! The local store's side of a delta transfer: chunk lists in `.sync-chunks/`, ranges read
//! for a far side's delta, and a new version assembled from the old one here plus the bytes
//! sent, every copied chunk checked against its hash as it is read.

use super::{LocalStore, Place, blocking, install, made_set, new_temp};
use crate::delta::{AssembleError, ChunkList, Plan, assemble};
use crate::index::ContentHash;
use crate::relpath::RelPath;
use crate::replica::root::read_exact_at;
use crate::replica::{Root, chunks};
use crate::scan::Observed;
use crate::store::{Put, Seen, StoreError};
use std::collections::HashSet;
use std::io::{self, Write};

impl LocalStore {
    pub(super) async fn chunks_async(&self, h: &ContentHash) -> Option<ChunkList> {
        let (root, h) = (self.root.clone(), *h);
        blocking(move || Ok(chunks::load(&root, &h))).await.ok()?
    }

    pub(super) async fn keep_chunks_async(&self, h: &ContentHash, list: &ChunkList) {
        let (root, h, list) = (self.root.clone(), *h, list.clone());
        let _ = blocking(move || {
            chunks::keep(&root, &h, &list);
            Ok(())
        })
        .await;
    }

    pub(super) async fn prune_chunks_async(&self, keep: &HashSet<ContentHash>) {
        let (root, keep) = (self.root.clone(), keep.clone());
        let _ = blocking(move || {
            chunks::prune(&root, &keep);
            Ok(())
        })
        .await;
    }

    pub(super) async fn read_ranges_async(
        &self,
        p: &RelPath,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<u8>, StoreError> {
        let (root, q, ranges) = (self.root.clone(), p.clone(), ranges.to_vec());
        blocking(move || {
            let f = root
                .open_regular(&q)
                .map_err(|e| Place(&root).err(format!("cannot read {q}"), e))?;
            let mut out = Vec::new();
            for (at, len) in ranges {
                let start = out.len();
                out.resize(start + len as usize, 0);
                read_exact_at(&f, &mut out[start..], at)
                    .map_err(|e| StoreError::io(format!("cannot read {q}"), e))?;
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn write_delta_async(
        &self,
        p: &RelPath,
        plan: &Plan,
        old: Seen,
        sent: Vec<u8>,
        put: Put,
    ) -> Result<Observed, StoreError> {
        // One trip to a blocking thread: what is sent is in memory already.
        let (root, q, plan, made) = (
            self.root.clone(),
            p.clone(),
            plan.clone(),
            self.made.clone(),
        );
        blocking(move || {
            let (dir, tmp) = new_temp(&root, &q)?;
            made_set(&made).insert(tmp.clone());
            let res = Root::create_in_with(&dir, tmp.name(), put.mode)
                .map_err(|e| Place(&root).err(format!("cannot create a temp file for {q}"), e))
                .and_then(|f| fill(&root, &q, &f, &plan, old, &sent, put))
                .and_then(|()| install(&root, &tmp, &q, put.fresh, true, &mut HashSet::new()));
            if res.is_err() {
                let _ = root.remove(&tmp);
            }
            made_set(&made).remove(&tmp);
            res
        })
        .await
    }
}

/// The assembly into temp `f`: checked against `put.expect`, given its mtime, fsynced.
fn fill(
    root: &Root,
    p: &RelPath,
    f: &std::fs::File,
    plan: &Plan,
    old: Seen,
    sent: &[u8],
    put: Put,
) -> Result<(), StoreError> {
    let no_delta = |why: &str| StoreError::NoDelta {
        path: p.clone(),
        place: Place(root).name(),
        why: why.to_string(),
    };
    let src = root
        .open_regular(p)
        .map_err(|e| Place(root).err(format!("cannot read {p}"), e))?;
    let now = src
        .metadata()
        .map_err(|e| StoreError::io(format!("cannot stat {p}"), e))?;
    let seen = Observed::from_metadata(&now);
    if seen.is_none_or(|o| o.size != old.size || o.mtime != old.mtime) {
        return Err(no_delta("it changed since the scan"));
    }
    let mut hasher = blake3::Hasher::new();
    let mut w = io::BufWriter::with_capacity(256 * 1024, f);
    let mut pos = 0usize;
    let res = assemble(
        plan,
        |from, len| {
            let mut b = vec![0; len as usize];
            read_exact_at(&src, &mut b, from).map(|()| b)
        },
        |len| {
            let b = sent
                .get(pos..pos + len as usize)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            pos += len as usize;
            Ok(b.to_vec())
        },
        |b| {
            hasher.update(b);
            w.write_all(b)
        },
    );
    match res {
        Err(AssembleError::OldChanged) => return Err(no_delta("a chunk of it changed")),
        Err(AssembleError::Io(e)) => return Err(StoreError::io(format!("writing {p}"), e)),
        Ok(()) => {}
    }
    w.flush()
        .map_err(|e| StoreError::io(format!("writing {p}"), e))?;
    let got = ContentHash(*hasher.finalize().as_bytes());
    if pos != sent.len() || put.expect.is_some_and(|h| h != got) {
        return Err(no_delta("the result is not the new version"));
    }
    f.set_modified(put.mtime.to_system())
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io(format!("finishing {p}"), e))
}
