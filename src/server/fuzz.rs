//! Bad input for the server, at random: packet bodies (random, and truncated or altered
//! valid ones) for the decoder and every request handler. No panic, every request that
//! decodes gets a well-formed reply, and nothing outside the root changes. `FUZZ_CASES` sets
//! how many cases a run tries (`just fuzz` runs many more).

use crate::proto as wire;
use crate::replica::{Follow, Root};
use bytes::Bytes;
use proptest::prelude::*;

/// Path-ish strings that try every way out of the root.
fn arb_path() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b"".to_vec()),
        Just(b"in".to_vec()),
        Just(b"up".to_vec()),
        Just(b"abs".to_vec()),
        Just(b"f".to_vec()),
        Just(b".sync".to_vec()),
        Just(b".f.sync-tmp.0000000000000001".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"a\0b".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
    ];
    (any::<bool>(), proptest::collection::vec(part, 0..5)).prop_map(|(abs, parts)| {
        let mut p = if abs { b"/".to_vec() } else { Vec::new() };
        p.extend(parts.join(&b'/'));
        p
    })
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u32).to_be_bytes());
    b.extend_from_slice(s);
}

/// A field of a request body.
#[derive(Debug, Clone)]
enum Field {
    U32(u32),
    U64(u64),
    Str(Vec<u8>),
}

fn arb_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        // Flags and lengths, including the ones that matter (pflags, attr flags).
        prop_oneof![
            Just(0u32),
            Just(0x3f),
            Just(0x8000_000f),
            1u32..64,
            any::<u32>()
        ]
        .prop_map(Field::U32),
        prop_oneof![Just(0u64), Just(u64::MAX), 0u64..1 << 20].prop_map(Field::U64),
        arb_path().prop_map(Field::Str),
        // Handles as the server names them (hex), and short garbage.
        prop_oneof![
            (1u32..8).prop_map(|h| format!("{h:x}").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..9),
        ]
        .prop_map(Field::Str),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Field::Str),
    ]
}

/// A request body: a known type (or any), an id, and fields of any shape.
fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![
        8 => 3u8..=20,
        3 => Just(wire::FXP_EXTENDED),
        1 => any::<u8>(),
    ];
    let ext = prop_oneof![
        Just(&b"posix-rename@openssh.com"[..]),
        Just(&b"hardlink@openssh.com"[..]),
        Just(&b"statvfs@openssh.com"[..]),
        Just(&b"fstatvfs@openssh.com"[..]),
        Just(&b"fsync@openssh.com"[..]),
        Just(&b"limits@openssh.com"[..]),
        Just(&b"write-files@filesync"[..]),
        Just(&b"install-files@filesync"[..]),
        Just(&b"read-files@filesync"[..]),
        Just(&b"index-refresh@filesync"[..]),
        Just(&b"nonsense@nowhere"[..]),
    ];
    (
        kind,
        any::<u32>(),
        ext,
        proptest::collection::vec(arb_field(), 0..6),
    )
        .prop_map(|(kind, id, ext, fields)| {
            let mut b = vec![kind];
            b.extend_from_slice(&id.to_be_bytes());
            if kind == wire::FXP_EXTENDED {
                put_str(&mut b, ext);
            }
            for f in fields {
                match f {
                    Field::U32(v) => b.extend_from_slice(&v.to_be_bytes()),
                    Field::U64(v) => b.extend_from_slice(&v.to_be_bytes()),
                    Field::Str(s) => put_str(&mut b, &s),
                }
            }
            b
        })
}

/// A reply as a client reads it: a length that is the rest, and a reply type.
fn well_formed(reply: &Bytes) -> bool {
    reply.len() >= 5
        && u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize == reply.len() - 4
        && matches!(
            reply[4],
            wire::FXP_VERSION
                | wire::FXP_STATUS
                | wire::FXP_HANDLE
                | wire::FXP_DATA
                | wire::FXP_NAME
                | wire::FXP_ATTRS
                | wire::FXP_EXTENDED_REPLY
        )
        && reply.len() <= wire::MAX_PACKET as usize + 1024
}

/// A root with a file, a folder and links out of it, beside an `outside` folder.
fn world() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("root");
    let outside = d.path().join("outside");
    std::fs::create_dir_all(root.join("in")).expect("root");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::write(outside.join("secret"), b"keep").expect("secret");
    std::fs::write(root.join("f"), b"file").expect("f");
    std::os::unix::fs::symlink("../outside", root.join("up")).expect("link");
    std::os::unix::fs::symlink(&outside, root.join("abs")).expect("link");
    (d, root, outside)
}

fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("ls").flatten() {
        out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(crate::index::fuzz_config())]

    #[test]
    fn fuzz_the_decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let b = Bytes::from(body);
        let _ = wire::decode(b.clone());
        let _ = wire::decode_write_files(&b);
        let _ = wire::decode_write_files_with_mode(&b);
        let _ = wire::decode_install_files(&b);
        let _ = wire::decode_read_files(&b);
        let _ = wire::decode_batch_reply(&b);
        let _ = wire::ext_strings(&b, 3);
    }

    #[test]
    fn fuzz_truncated_requests_are_malformed_not_misread(body in arb_body(), cut in any::<prop::sample::Index>()) {
        let whole = Bytes::from(body);
        let at = cut.index(whole.len() + 1);
        let _ = wire::decode(whole.slice(..at));
    }

    #[test]
    fn fuzz_every_handler_answers_and_stays_inside(bodies in proptest::collection::vec(arb_body(), 1..40)) {
        let (_d, root, outside) = world();
        let before = snapshot(&outside);
        for walk in [false, true] {
            let r = Root::open_with(&root, Follow::InRoot, walk).expect("root");
            let replies = super::sftp::replies_to(r, bodies.iter().cloned().map(Bytes::from).collect());
            for reply in &replies {
                prop_assert!(well_formed(reply), "{:?}", &reply[..reply.len().min(16)]);
            }
        }
        prop_assert_eq!(snapshot(&outside), before);
    }
}
