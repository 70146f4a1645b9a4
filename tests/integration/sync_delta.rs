//! Big files move by delta, both ways, to our hub and to OpenSSH: only the chunks that
//! changed go over the wire, the result is byte-exact, and the old version is in the trash.
//! An old version changed behind the index's back, or a source unlike its old self, gets the
//! whole file instead; a sync killed half-way tears nothing.

use crate::harness::{Pair, pattern};

on_backends!([serve, sshd](
    delta_edit_in_the_middle_both_ways,
    delta_edit_at_the_start_and_at_the_end,
    delta_truncate_and_append,
    delta_insert_at_the_start,
    delta_unrelated_replacement_sends_the_whole_file,
    delta_old_version_changed_behind_the_index,
    delta_far_old_version_changed_behind_the_index,
    delta_sync_killed_half_way_tears_nothing,
    delta_lists_of_content_gone_are_pruned,
));

mod sshd_only {
    use super::delta_upload_with_copy_data_denied_sends_the_whole_file;
    on_backends!([sshd](
        delta_upload_with_copy_data_denied_sends_the_whole_file,
    ));
}

const SIZE: usize = 4 << 20;

/// Syncs with the engine's delta log on; what each delta sent, in bytes.
#[track_caller]
fn sync_delta(p: &Pair) -> Vec<u64> {
    let r = p
        .sync_cmd()
        .env("RUST_LOG", "warn,filesync::sync::delta=debug")
        .output();
    assert!(r.status.success(), "sync failed: {r}");
    r.stderr
        .lines()
        .filter(|l| l.contains("fetched by delta"))
        .filter_map(|l| {
            let v = l.split("sent=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// `old` on both sides, then `new` written on side `a` (`up`) or the far side: it arrives
/// whole and exact on the other, by a delta that sent at most `most` bytes, with `old` in
/// the receiver's trash.
#[track_caller]
fn moves_by_delta(p: &mut Pair, name: &str, old: &[u8], new: &[u8], up: bool, most: u64) {
    let from = if up { &p.a } else { &p.b };
    from.write(name, new);
    // An mtime unlike the last one's (OpenSSH shows whole seconds), so the change is seen.
    from.set_mtime_offset(name, if up { -7 } else { -30 });
    let sent = sync_delta(p);
    let (from, to) = if up { (&p.a, &p.b) } else { (&p.b, &p.a) };
    assert!(to.read(name) == new, "{name} is not byte-exact");
    assert!(from.read(name) == new);
    assert!(
        to.trash_contents().iter().any(|t| t == old),
        "the old version of {name} is not in the trash"
    );
    assert_eq!(sent.len(), 1, "{name}: no delta was made");
    assert!(sent[0] <= most, "{name}: sent {} bytes by delta", sent[0]);
    p.assert_same();
}

/// A big file on both sides, synced whole.
fn start(p: &mut Pair, name: &str, seed: u64) -> Vec<u8> {
    let old = pattern(SIZE, seed);
    p.a.write(name, &old);
    p.sync();
    assert!(p.b.read(name) == old);
    old
}

fn edited(old: &[u8], at: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut v = old.to_vec();
    v[at..at + len].copy_from_slice(&pattern(len, seed));
    v
}

fn delta_edit_in_the_middle_both_ways(p: &mut Pair) {
    let old = start(p, "mid.bin", 1);
    let new = edited(&old, SIZE / 2, 64 << 10, 2);
    moves_by_delta(p, "mid.bin", &old, &new, true, 1 << 20);
    let newer = edited(&new, SIZE / 3, 64 << 10, 3);
    moves_by_delta(p, "mid.bin", &new, &newer, false, 1 << 20);
}

fn delta_edit_at_the_start_and_at_the_end(p: &mut Pair) {
    let old = start(p, "ends.bin", 4);
    let new = edited(&old, 0, 32 << 10, 5);
    moves_by_delta(p, "ends.bin", &old, &new, true, 1 << 20);
    let newer = edited(&new, SIZE - (32 << 10), 32 << 10, 6);
    moves_by_delta(p, "ends.bin", &new, &newer, false, 1 << 20);
}

fn delta_truncate_and_append(p: &mut Pair) {
    let old = start(p, "grow.bin", 7);
    let cut = old[..SIZE - (1 << 20)].to_vec();
    moves_by_delta(p, "grow.bin", &old, &cut, false, 1 << 20);
    let mut longer = cut.clone();
    longer.extend_from_slice(&pattern(512 << 10, 8));
    moves_by_delta(p, "grow.bin", &cut, &longer, true, 1 << 20);
}

fn delta_insert_at_the_start(p: &mut Pair) {
    let old = start(p, "ins.bin", 9);
    let mut new = pattern(100 << 10, 10);
    new.extend_from_slice(&old);
    moves_by_delta(p, "ins.bin", &old, &new, true, 1 << 20);
    let mut newer = new.clone();
    newer.splice(2 << 20..2 << 20, pattern(100 << 10, 11));
    moves_by_delta(p, "ins.bin", &new, &newer, false, 1 << 20);
}

fn delta_unrelated_replacement_sends_the_whole_file(p: &mut Pair) {
    let old = start(p, "other.bin", 12);
    let new = pattern(SIZE, 13);
    p.a.write("other.bin", &new);
    let sent = sync_delta(p);
    assert!(sent.is_empty(), "a delta for unrelated content: {sent:?}");
    assert!(p.b.read("other.bin") == new);
    assert!(p.b.trash_contents().contains(&old));
    p.assert_same();
}

/// The receiver's old version is rewritten with its size and mtime kept, so its scan trusts
/// its index: a delta would build on bytes that are not the old version. Each copied chunk
/// is checked as it is read, so the change is seen and the whole file goes.
fn delta_old_version_changed_behind_the_index(p: &mut Pair) {
    let old = start(p, "behind.bin", 14);
    let changed = edited(&old, 1 << 20, 4096, 15);
    keep_mtime(&p.a.p("behind.bin"), || {
        p.a.write("behind.bin", &changed);
    });
    let new = edited(&old, 3 << 20, 4096, 16);
    p.b.write("behind.bin", &new);
    p.b.set_mtime_offset("behind.bin", -5);
    let sent = sync_delta(p);
    assert!(
        sent.is_empty(),
        "a delta built on a changed old version: {sent:?}"
    );
    assert!(p.a.read("behind.bin") == new, "not the new version");
    assert!(p.a.trash_contents().contains(&changed));
    p.assert_same();
}

/// The far old version is rewritten with its size and mtime kept: the upload's delta copies
/// bytes that are not the old version, which the result's hash shows (our server's, or read
/// back from OpenSSH), and the whole file goes.
fn delta_far_old_version_changed_behind_the_index(p: &mut Pair) {
    let old = start(p, "far.bin", 17);
    let changed = edited(&old, 1 << 20, 4096, 18);
    keep_mtime(&p.b.p("far.bin"), || {
        p.b.write("far.bin", &changed);
    });
    let new = edited(&old, 3 << 20, 4096, 19);
    p.a.write("far.bin", &new);
    p.a.set_mtime_offset("far.bin", -5);
    let sent = sync_delta(p);
    assert!(
        sent.is_empty(),
        "a delta built on a changed far version: {sent:?}"
    );
    assert!(p.b.read("far.bin") == new, "not the new version");
    assert!(p.b.trash_contents().contains(&changed));
    p.assert_same();
}

/// An OpenSSH that denies `copy-data` (`sftp-server -P copy-data`): the uploads go whole and
/// exact. Where it still offers the extension, the first refusal turns it off for the
/// session, so it is refused at most once.
fn delta_upload_with_copy_data_denied_sends_the_whole_file(p: &mut Pair) {
    let olds = [start(p, "d1.bin", 40), start(p, "d2.bin", 41)];
    p.sshd_mut().restart_sftp_flags("-P copy-data");
    let news = [
        edited(&olds[0], 1 << 20, 4096, 42),
        edited(&olds[1], 2 << 20, 4096, 43),
    ];
    for (name, new) in ["d1.bin", "d2.bin"].iter().zip(&news) {
        p.a.write(name, new);
        p.a.set_mtime_offset(name, -9);
    }
    let r = p
        .sync_cmd()
        .env(
            "RUST_LOG",
            "warn,filesync::sync::delta=debug,filesync::store=info",
        )
        .output();
    assert!(r.status.success(), "sync failed: {r}");
    assert!(!r.stderr.contains("fetched by delta"), "a delta went: {r}");
    let refused = r.stderr.matches("refuses copy-data").count();
    assert!(
        refused <= 1,
        "copy-data asked for again after a refusal: {r}"
    );
    for ((name, new), old) in ["d1.bin", "d2.bin"].iter().zip(&news).zip(&olds) {
        assert!(p.b.read(name) == *new, "{name} is not byte-exact");
        assert!(p.b.trash_contents().contains(old));
    }
    p.assert_same();
}

/// The names in `.sync-chunks/` of a folder.
fn chunk_names(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(".sync-chunks"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A big file replaced by unrelated content: after the sync each side's `.sync-chunks/`
/// holds the new version's list only; a temp left there (a writer killed) is gone too.
fn delta_lists_of_content_gone_are_pruned(p: &mut Pair) {
    let old = start(p, "gone.bin", 50);
    let hex = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    for root in [p.a.p(""), p.b.p("")] {
        assert!(
            chunk_names(&root).contains(&hex(&old)),
            "no list of the old version"
        );
        std::fs::write(
            root.join(".sync-chunks/.0123.sync-tmp.0123456789abcdef"),
            b"half",
        )
        .expect("plant a temp");
    }
    let new = pattern(SIZE, 51);
    p.a.write("gone.bin", &new);
    p.sync();
    assert!(p.b.read("gone.bin") == new);
    for root in [p.a.p(""), p.b.p("")] {
        assert_eq!(chunk_names(&root), vec![hex(&new)], "in {}", root.display());
    }
    p.assert_same();
}

/// Runs `f`, which rewrites the file at `path`, and gives it back its mtime to the
/// nanosecond.
fn keep_mtime(path: &std::path::Path, f: impl FnOnce()) {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    f();
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(mtime).expect("set mtime");
}

/// SIGKILL of the sync at several moments of a delta upload and download: every file is
/// whole (one version or the other), and the next sync completes, byte-exact.
fn delta_sync_killed_half_way_tears_nothing(p: &mut Pair) {
    let mut versions = vec![start(p, "k.bin", 20)];
    for round in 0..6u64 {
        let new = edited(
            versions.last().unwrap(),
            (round as usize * 600_000) % SIZE / 2,
            200 << 10,
            30 + round,
        );
        let up = round % 2 == 0;
        let side = if up { &p.a } else { &p.b };
        side.write("k.bin", &new);
        side.set_mtime_offset("k.bin", -(round as i64) * 20 - 3);
        versions.push(new);
        let child = p.sync_cmd().spawn();
        std::thread::sleep(std::time::Duration::from_millis(20 + round * 60));
        crate::harness::signal(child.id(), libc::SIGKILL);
        let _ = child.wait_with_output();
        for f in [&p.a, &p.b] {
            let now = f.read("k.bin");
            assert!(versions.contains(&now), "a torn k.bin after round {round}");
        }
        p.sync();
        p.assert_same();
        assert!(p.a.read("k.bin") == *versions.last().unwrap());
        assert!(
            p.b.temp_files().is_empty(),
            "temps left: {:?}",
            p.b.temp_files()
        );
        assert!(
            p.a.temp_files().is_empty(),
            "temps left: {:?}",
            p.a.temp_files()
        );
    }
}
