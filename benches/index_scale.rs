//! Index scale: build, save, load and plan a synthetic index of N entries (default 1,000,000
//! under `cargo bench`, 20,000 as a smoke run under `cargo test`). Prints seconds and sizes.

use filesync::index::{
    ContentHash, Entry, Index, MTime, ReplicaId, VersionVector, from_json_slice, to_json_vec,
};
use filesync::relpath::RelPath;
use std::time::Instant;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 20_000 });
    let me = ReplicaId(0x1234_5678_9abc_def0);
    let other = ReplicaId(0x0fed_cba9_8765_4321);

    let t = Instant::now();
    let mut idx = Index::new(me);
    // 1000 folders of n/1000 files, like a photo library.
    let per_dir = (n / 1000).max(1);
    for d in 0..n.div_ceil(per_dir) {
        let dir = RelPath::parse(&format!("folder-{d:04}")).expect("valid");
        idx.entries.insert(
            dir.clone(),
            Entry::dir(
                MTime::new(1_700_000_000, 0),
                VersionVector::from_pairs([(me, 1)]),
            ),
        );
        for f in 0..per_dir {
            let p = dir.join(&format!("IMG_{f:06}.jpg")).expect("valid");
            let vv = VersionVector::from_pairs([(me, 1 + (f % 3) as u64), (other, (f % 2) as u64)]);
            let h = ContentHash::of(&(d * per_dir + f).to_le_bytes());
            idx.entries.insert(
                p,
                Entry::file(
                    3_000_000 + f as u64,
                    MTime::new(1_700_000_000 + f as i64, 123),
                    Some(h),
                    vv,
                ),
            );
        }
    }
    let build = t.elapsed();

    let t = Instant::now();
    let json = to_json_vec(&idx);
    let save = t.elapsed();
    let t = Instant::now();
    let back = from_json_slice(&json).expect("parses");
    let load = t.elapsed();
    assert_eq!(back.entries.len(), idx.entries.len());

    let mut peer = back.clone();
    peer.replica = other;
    let t = Instant::now();
    let plan = filesync::plan::plan(&idx, &peer);
    let plan_t = t.elapsed();

    println!(
        "index of {} entries: build {:.2}s, serialize {:.2}s, parse {:.2}s, plan (no-op) {:.2}s, {} steps, .sync {:.1} MiB",
        idx.entries.len(),
        build.as_secs_f64(),
        save.as_secs_f64(),
        load.as_secs_f64(),
        plan_t.as_secs_f64(),
        plan.steps.len(),
        json.len() as f64 / (1024.0 * 1024.0)
    );
}
