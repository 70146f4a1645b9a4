//! Every path accounted for, on every backend (two local folders, our hub, plain OpenSSH): a
//! folder that cannot be entered is unreadable, never empty, and deletes nothing; what is
//! never synced (symlinks, FIFOs, names that are not UTF-8) is counted in the summary and
//! listed with `-v`, never mangled and never "changing"; a type clash is an error naming
//! both sides until a person resolves it. Tests: `accounted::{local,serve,daemon,sshd}::NAME`.

use crate::harness::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

on_backends!([local, serve, daemon, sshd](
    a_far_folder_that_cannot_be_entered_deletes_nothing,
    what_is_never_synced_is_counted_listed_and_not_mangled,
    a_type_clash_is_an_error_naming_both_sides,
));

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", p.display());
}

/// A path below `f` whose last name is the given bytes.
fn raw(f: &Folder, dir: &str, name: &[u8]) -> std::path::PathBuf {
    f.p(dir).join(OsStr::from_bytes(name))
}

/// After `chmod 644` of a far folder (listable, not enterable; plain sshd then lists it as
/// empty) the sync names it, exits 1 and deletes nothing below it on either side, run after
/// run; once it can be entered again all is as before.
fn a_far_folder_that_cannot_be_entered_deletes_nothing(t: &mut Pair) {
    t.b.write("d/x.txt", "x")
        .write("d/sub/y.txt", "y")
        .write("plain.txt", "p");
    t.sync_and_settle();
    let before = t.a.tree();
    t.as_nobody();
    chmod(&t.b.p("d"), 0o644);
    for round in 0..2 {
        let out = t.sync_fails();
        let err = &out.stderr;
        assert!(err.contains("cannot read d "), "round {round}: {out}");
        assert!(!out.stdout.contains("changing"), "round {round}: {out}");
        assert_eq!(
            t.a.tree(),
            before,
            "round {round}: the laptop lost files: {out}"
        );
        assert!(
            t.a.trash_contents().is_empty(),
            "round {round}: trashed: {out}"
        );
    }
    chmod(&t.b.p("d"), 0o755);
    t.sync_and_settle();
    assert_eq!(t.a.read("d/sub/y.txt"), b"y");
    assert_eq!(t.b.read("d/x.txt"), b"x");
}

/// Symlinks, a FIFO and names that are not UTF-8 on both sides: each counted once in the
/// summary, each listed with `-v`, none copied under another name, and the second sync is
/// the same with nothing moving.
fn what_is_never_synced_is_counted_listed_and_not_mangled(t: &mut Pair) {
    t.a.write("mine.txt", "a");
    t.a.symlink("mine.txt", "a-link");
    t.b.write("theirs.txt", "b");
    t.b.symlink("theirs.txt", "b-link");
    mkfifo(&t.b.p("pipe"));
    std::fs::write(raw(&t.b, "", b"r\xe9sum\xe9.txt"), "cv").expect("write");
    std::fs::create_dir(raw(&t.b, "", b"caf\xe9")).expect("mkdir");
    std::fs::write(raw(&t.b, "", b"caf\xe9").join("menu.txt"), "m").expect("write");
    t.as_nobody();
    let note = "2 symlinks, 1 FIFO, socket or device and 2 names that are not UTF-8 were not \
                synced; `-v` lists them";
    for round in 0..2 {
        let out = t.sync_cmd().arg("-v").ok();
        let says = &out.stdout;
        assert!(says.contains(note), "round {round}: {out}");
        assert!(!says.contains("changing"), "round {round}: {out}");
        for listed in [
            "not synced: a-link on",
            "not synced: b-link on",
            "not synced: pipe on",
        ] {
            assert!(
                says.contains(listed),
                "round {round}: {listed:?} not listed: {out}"
            );
        }
        assert_eq!(
            says.matches("(a name that is not UTF-8)").count(),
            2,
            "{out}"
        );
        if round == 1 {
            assert!(
                says.contains("sent 0 files (0 B), received 0 files (0 B)"),
                "{out}"
            );
        }
    }
    assert_eq!(t.a.read("theirs.txt"), b"b");
    assert_eq!(t.b.read("mine.txt"), b"a");
    // Nothing arrived under a mangled name, nor was anything left out copied.
    let names: Vec<String> =
        t.a.snapshot()
            .into_keys()
            .filter(|n| !n.starts_with(".sync"))
            .collect();
    assert_eq!(
        names,
        ["a-link", "mine.txt", "theirs.txt"],
        "{:?}",
        t.a.snapshot().keys()
    );
    assert!(!t.b.exists("a-link"), "a symlink was synced");
}

/// A file here where the far side has a symlink, and a folder here where it has a FIFO: each
/// is an error naming both sides, on every run, with nothing "changing" and nothing touched
/// on either side; removing the far side's link resolves it.
fn a_type_clash_is_an_error_naming_both_sides(t: &mut Pair) {
    t.a.write("clash.txt", "mine").write("box/inside.txt", "in");
    t.b.write("target.txt", "t");
    t.b.symlink("target.txt", "clash.txt");
    mkfifo(&t.b.p("box"));
    t.as_nobody();
    for round in 0..2 {
        let out = t.sync_fails();
        let err = &out.stderr;
        assert!(
            err.contains("clash.txt is a file on") && err.contains("and a symbolic link on"),
            "round {round}: {out}"
        );
        assert!(
            err.contains("box is a folder on") && err.contains("and a FIFO, socket or device on"),
            "round {round}: {out}"
        );
        assert!(!out.stdout.contains("changing"), "round {round}: {out}");
        assert_eq!(t.a.read("clash.txt"), b"mine");
        assert_eq!(t.a.read("box/inside.txt"), b"in");
        assert_eq!(t.a.read("target.txt"), b"t");
        let link = std::fs::symlink_metadata(t.b.p("clash.txt")).expect("lstat");
        assert!(
            link.file_type().is_symlink(),
            "round {round}: the link was replaced"
        );
    }
    std::fs::remove_file(t.b.p("clash.txt")).expect("rm link");
    std::fs::remove_file(t.b.p("box")).expect("rm fifo");
    t.sync_and_settle();
    assert_eq!(t.b.read("clash.txt"), b"mine");
    assert_eq!(t.b.read("box/inside.txt"), b"in");
}

/// More links on the hub than its refresh reply names: the rest are counted all the same.
#[test]
fn links_past_what_the_hub_names_are_counted() {
    let t = Pair::hub(HubKind::Serve);
    t.b.write("real.txt", "r").mkdir("links");
    for i in 0..1005 {
        t.b.symlink("real.txt", &format!("links/l{i:04}"));
    }
    let out = t.sync_cmd().arg("-v").ok();
    assert!(
        out.stdout.contains("1005 symlinks were not synced"),
        "{}",
        out.stdout.lines().last().unwrap_or_default()
    );
    assert!(
        out.stdout.contains("not synced: 5 symlinks more on"),
        "{out}"
    );
    assert_eq!(out.stdout.matches("(a symbolic link)").count(), 1000);
}
