use super::*;
use proptest::prelude::*;

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    // xorshift: incompressible, repeatable, and no long runs that would cut alike.
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn chunked(data: &[u8]) -> (ContentHash, ChunkList) {
    let mut c = Chunker::default();
    // Fed in uneven parts, as reads hand them out.
    for part in data.chunks(100_003) {
        c.update(part);
    }
    c.finish_all()
}

/// What the sender sends and the receiver builds, on slices.
fn rebuilt(old: &[u8], new: &[u8]) -> (Vec<u8>, Plan) {
    let (_, ol) = chunked(old);
    let (_, nl) = chunked(new);
    let plan = plan(&ol, &nl);
    let sent: Vec<u8> = plan
        .sent_ranges()
        .iter()
        .flat_map(|&(at, len)| new[at as usize..(at + len) as usize].to_vec())
        .collect();
    let mut pos = 0usize;
    let mut out = Vec::new();
    assemble::<()>(
        &plan,
        |from, len| Ok(old[from as usize..from as usize + len as usize].to_vec()),
        |len| {
            let b = sent[pos..pos + len as usize].to_vec();
            pos += len as usize;
            Ok(b)
        },
        |b| {
            out.extend_from_slice(b);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(pos, sent.len());
    assert!(sent_ok(&plan, &nl, &sent));
    (out, plan)
}

#[test]
fn one_read_gives_the_hash_and_chunks_that_cover_the_file() {
    let data = bytes(7, 3 << 20);
    let (h, list) = chunked(&data);
    assert_eq!(h.0, *blake3::hash(&data).as_bytes());
    assert_eq!(list.size(), data.len() as u64);
    for c in &list.chunks {
        let b = &data[c.offset as usize..c.offset as usize + c.len as usize];
        assert_eq!(c.hash, *blake3::hash(b).as_bytes());
        assert!(c.len <= MAX_CHUNK);
    }
    assert_eq!(ChunkList::decode(&list.encode()), Some(list.clone()));
    let mut cut = list.encode();
    cut.pop();
    assert_eq!(ChunkList::decode(&cut), None);
    let mut c = Chunker::for_size(5);
    c.update(b"small");
    assert_eq!(c.finish().1, 5);
    let mut c = Chunker::default();
    c.update(&data);
    let (h2, n, kept) = c.finish();
    assert_eq!((h2, n, kept), (h, data.len() as u64, Some(list.clone())));
}

#[test]
fn an_insertion_at_the_start_sends_little_more_than_itself() {
    let old = bytes(1, 8 << 20);
    let mut new = bytes(2, 100 * 1024);
    new.extend_from_slice(&old);
    let (out, plan) = rebuilt(&old, &new);
    assert_eq!(out, new);
    assert!(
        plan.sent() < 100 * 1024 + 2 * u64::from(MAX_CHUNK),
        "{}",
        plan.sent()
    );
}

#[test]
fn a_changed_old_version_is_caught_chunk_by_chunk() {
    let old = bytes(3, 2 << 20);
    let mut new = old.clone();
    new[1 << 20] ^= 1;
    let (_, ol) = chunked(&old);
    let (_, nl) = chunked(&new);
    let p = plan(&ol, &nl);
    let mut changed = old.clone();
    changed[10] ^= 1;
    let r = assemble::<()>(
        &p,
        |from, len| Ok(changed[from as usize..from as usize + len as usize].to_vec()),
        |len| Ok(vec![0; len as usize]),
        |_| Ok(()),
    );
    assert!(matches!(r, Err(AssembleError::OldChanged)));
}

/// An edit of a file: cut `del` bytes at `at` (a fraction of the length) and put `ins` there.
#[derive(Debug, Clone)]
struct Edit {
    at: f64,
    del: usize,
    ins: usize,
    seed: u64,
}

/// A list of `lens` as `encode` writes it, whatever the lengths.
fn encoded(lens: &[u32]) -> Vec<u8> {
    let mut offset = 0u64;
    let chunks = lens
        .iter()
        .map(|&len| {
            let c = Chunk {
                offset,
                len,
                hash: [7; 32],
            };
            offset += u64::from(len);
            c
        })
        .collect();
    ChunkList { chunks }.encode()
}

#[test]
fn a_list_with_impossible_chunks_is_refused() {
    assert!(ChunkList::decode(&encoded(&[MAX_CHUNK, 1])).is_some());
    // One chunk too long: a receiver would hold it whole in memory.
    assert!(ChunkList::decode(&encoded(&[MAX_CHUNK + 1])).is_none());
    assert!(ChunkList::decode(&encoded(&[u32::MAX, 5])).is_none());
    // More chunks than the size allows (all but the last are at least MIN_CHUNK).
    let tiny = vec![1u32; 3];
    assert!(ChunkList::decode(&encoded(&tiny)).is_none());
    // A count that promises more than the body holds, or a body cut short.
    let mut b = encoded(&[MIN_CHUNK, MIN_CHUNK]);
    b[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(ChunkList::decode(&b).is_none());
    let b = encoded(&[MIN_CHUNK, MIN_CHUNK]);
    assert!(ChunkList::decode(&b[..b.len() - 1]).is_none());
}

#[test]
fn a_list_of_minimal_chunks_is_sound() {
    let b = encoded(&vec![MIN_CHUNK; 4096]);
    assert!(ChunkList::decode(&b).is_some());
}

fn edit() -> impl Strategy<Value = Edit> {
    (0.0..=1.0f64, 0usize..300_000, 0usize..300_000, any::<u64>())
        .prop_map(|(at, del, ins, seed)| Edit { at, del, ins, seed })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn old_chunks_plus_sent_bytes_give_exactly_the_new_file(
        size in 0usize..(3 << 20),
        seed in any::<u64>(),
        edits in proptest::collection::vec(edit(), 0..4),
    ) {
        let old = bytes(seed, size);
        let mut new = old.clone();
        for e in &edits {
            let at = ((new.len() as f64) * e.at) as usize;
            let end = (at + e.del).min(new.len());
            new.splice(at..end, bytes(e.seed, e.ins));
        }
        let (out, plan) = rebuilt(&old, &new);
        prop_assert_eq!(out.len(), new.len());
        prop_assert!(out == new);
        prop_assert!(plan.sent() <= new.len() as u64);
    }
}
