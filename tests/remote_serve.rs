//! Two-way sync between a local folder and our own `filesync serve` on 127.0.0.1 (which
//! offers `index-refresh@filesync`), driving the real binary.

mod common;

use common::pair::{self, Pair};

#[test]
fn propagation_both_ways_and_noop() {
    pair::propagation_both_ways_and_noop(&mut Pair::serve());
}

#[test]
fn concurrent_edits_keep_both() {
    pair::concurrent_edits_keep_both(&mut Pair::serve());
}

#[test]
fn delete_vs_edit_keeps_the_edit() {
    pair::delete_vs_edit_keeps_the_edit(&mut Pair::serve());
}

#[test]
fn clock_skew_later_edit_wins() {
    pair::clock_skew_later_edit_wins(&mut Pair::serve());
}

#[test]
fn remote_lock_held_is_refused_then_next_sync_works() {
    pair::remote_lock_held_is_refused_then_next_sync_works(&mut Pair::serve());
}

#[test]
fn killing_the_server_mid_sync_tears_nothing() {
    pair::killing_the_server_mid_sync_tears_nothing(&mut Pair::serve());
}

#[test]
fn remote_syncignore_is_honoured() {
    pair::remote_syncignore_is_honoured(&mut Pair::serve());
}

#[test]
fn an_index_update_lock_is_waited_for() {
    pair::an_index_update_lock_is_waited_for(&mut Pair::serve());
}

#[test]
fn many_files_in_one_sync() {
    pair::many_files_in_one_sync(&mut Pair::serve());
}

#[test]
fn replaced_small_files_keep_their_old_versions() {
    pair::replaced_small_files_keep_their_old_versions(&mut Pair::serve());
}

#[test]
fn remote_disk_full_fails_cleanly_then_completes() {
    pair::remote_disk_full_fails_cleanly_then_completes(&mut Pair::serve());
}

#[test]
fn a_remote_symlink_is_never_written_through() {
    pair::a_remote_symlink_is_never_written_through(&mut Pair::serve());
}
