//! The desktop and backup applications people point at a hub, each against our daemon hub:
//! sshfs (a FUSE mount: editors' save-by-rename, truncate, chmod, symlinks, statvfs), lftp
//! (`mirror -R`, segmented `pget`), duplicity (paramiko: full, incremental, restore, verify)
//! and GNOME's gio/gvfs (its own ssh process and a session bus). After each, a laptop syncs
//! with the hub and gets exactly what the application left there, private modes included.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[track_caller]
fn ok(what: &str, o: Output, hub: &Hub) -> Output {
    assert!(
        o.status.success(),
        "{what}: {}\nhub log:\n{}",
        show(&o),
        hub.log_text()
    );
    o
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// The laptop gets exactly the hub's tree, and a second sync moves nothing.
#[track_caller]
fn laptop_gets_it_all(p: &Pair) {
    p.sync_and_settle();
    assert!(!p.a.tree().is_empty());
}

/// An sshfs mount of the hub's root, unmounted when dropped (also when the test fails).
struct Mount {
    at: PathBuf,
}

impl Mount {
    fn new(sb: &Sandbox, hub: &Hub) -> Mount {
        require("sshfs");
        require("fusermount");
        let at = sb.folder("mnt").path;
        let mut c = Command::new("sshfs");
        c.args(["-p", &hub.port.to_string()]);
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ] {
            c.args(["-o", o]);
        }
        c.arg("-o")
            .arg(format!("IdentityFile={}", hub.key.display()))
            .arg("tester@127.0.0.1:/")
            .arg(&at);
        ok("sshfs", c.output().expect("run sshfs"), hub);
        Mount { at }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.at.join(rel)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount")
            .arg("-u")
            .arg(&self.at)
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn sshfs_edits_reach_the_hub_and_a_laptop_intact() {
    let p = Pair::hub(HubKind::Daemon);
    let hub = p.hub_ref();
    let m = Mount::new(&p.sb, hub);
    std::fs::create_dir_all(m.p("docs/deep")).expect("mkdir through sshfs");
    std::fs::write(m.p("docs/letter.txt"), "first draft\n").expect("write");
    // An editor's save: a new file beside the old one, renamed over it.
    std::fs::write(m.p("docs/.letter.txt.swp"), "second draft\n").expect("write swap");
    std::fs::rename(m.p("docs/.letter.txt.swp"), m.p("docs/letter.txt")).expect("rename over");
    let big = pattern(3 * 1024 * 1024 + 11, 5);
    std::fs::write(m.p("docs/deep/photo.jpg"), &big).expect("big write");
    std::fs::write(m.p("cut.txt"), "keep only this part, not the rest").expect("write");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.p("cut.txt"))
        .expect("open");
    f.set_len(14).expect("truncate through sshfs");
    drop(f);
    std::fs::write(m.p("private.txt"), "only mine\n").expect("write");
    std::fs::set_permissions(m.p("private.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod through sshfs");
    std::fs::write(m.p("gone.txt"), "short-lived\n").expect("write");
    std::fs::remove_file(m.p("gone.txt")).expect("rm through sshfs");
    std::os::unix::fs::symlink("letter.txt", m.p("docs/link")).expect("symlink through sshfs");
    let vfs = Command::new("df").arg(&m.at).output().expect("df");
    ok("df on the mount (statvfs)", vfs, hub);
    drop(m);

    assert_eq!(hub.root.read("docs/letter.txt"), b"second draft\n");
    assert_eq!(hub.root.read("docs/deep/photo.jpg"), big);
    assert_eq!(hub.root.read("cut.txt"), b"keep only this");
    assert_eq!(mode(&hub.root.p("private.txt")), 0o600);
    assert!(!hub.root.exists("gone.txt"));
    let link = std::fs::read_link(hub.root.p("docs/link")).expect("the symlink on the hub");
    assert_eq!(link, Path::new("letter.txt"));
    // Symlinks are never synced; the laptop's tree is compared without it.
    std::fs::remove_file(hub.root.p("docs/link")).expect("rm link");
    laptop_gets_it_all(&p);
    assert_eq!(p.a.read("docs/letter.txt"), b"second draft\n");
    assert_eq!(
        mode(&p.a.p("private.txt")),
        0o600,
        "a private file must stay private on the laptop"
    );
    assert!(!p.a.exists(".letter.txt.swp") && !p.a.exists("docs/.letter.txt.swp"));
}

#[test]
fn sshfs_sees_a_laptops_sync_at_once() {
    let p = Pair::hub(HubKind::Daemon);
    p.a.write("from-laptop/notes.txt", "written on the laptop\n");
    p.sync();
    let m = Mount::new(&p.sb, p.hub_ref());
    assert_eq!(
        std::fs::read(m.p("from-laptop/notes.txt")).expect("read through sshfs"),
        b"written on the laptop\n"
    );
    let names: Vec<String> = std::fs::read_dir(&m.at)
        .expect("list through sshfs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"from-laptop".to_string()), "{names:?}");
}

/// lftp over OpenSSH's `ssh` (its `sftp:connect-program`), logged in with the hub's key.
fn lftp(hub: &Hub, script: &str) -> Output {
    require("lftp");
    require("ssh");
    let connect = format!("ssh -a -x {}", hub.ssh_options().join(" "));
    let commands = format!(
        "set sftp:connect-program '{connect}'; set cmd:fail-exit yes; \
         open -u tester, sftp://127.0.0.1:{}; {script}; quit",
        hub.port
    );
    Command::new("lftp")
        .args(["-c", &commands])
        .stdin(Stdio::null())
        .output()
        .expect("run lftp")
}

#[test]
fn lftp_mirror_up_and_segmented_download_are_byte_exact() {
    let p = Pair::hub(HubKind::Daemon);
    let hub = p.hub_ref();
    let src = p.sb.folder("camera");
    for i in 0..30 {
        src.write(
            &format!("day{}/img{i}.jpg", i % 3),
            pattern(20_000 + i * 977, i as u64),
        );
    }
    src.write("big/video.mp4", pattern(5 * 1024 * 1024 + 7, 99));
    ok(
        "lftp mirror -R",
        lftp(hub, &format!("mirror -R {} photos", src.s())),
        hub,
    );
    let back = p.sb.path().join("video.back");
    ok(
        "lftp pget",
        lftp(
            hub,
            &format!("pget -n 4 photos/big/video.mp4 -o {}", back.display()),
        ),
        hub,
    );
    assert_eq!(
        std::fs::read(&back).expect("pget result"),
        src.read("big/video.mp4")
    );
    // A second mirror finds nothing to send and rewrites nothing.
    let stamps = |f: &Folder| -> Vec<(String, u64)> {
        f.tree()
            .into_iter()
            .filter(|(_, bytes)| bytes.is_some())
            .map(|(k, _)| (k.clone(), f.mtime(&k)))
            .collect()
    };
    let before = stamps(&hub.root);
    ok(
        "lftp mirror -R again",
        lftp(hub, &format!("mirror -R {} photos", src.s())),
        hub,
    );
    assert_eq!(stamps(&hub.root), before);
    laptop_gets_it_all(&p);
    let sent = Folder::at(p.a.p("photos"));
    assert_eq!(sent.tree(), src.tree());
}

#[test]
fn duplicity_backs_up_to_the_hub_and_restores_byte_exact() {
    require("duplicity");
    let p = Pair::hub(HubKind::Daemon);
    let hub = p.hub_ref();
    let data = p.sb.folder("data");
    data.write("photos/a.jpg", pattern(1024 * 1024 + 3, 1));
    data.write("notes.txt", "backed up by duplicity\n");
    // duplicity's paramiko backend reads the user's known_hosts and has no option to skip it.
    let ssh = p.sb.home().join(".ssh");
    std::fs::create_dir_all(&ssh).expect(".ssh");
    std::fs::write(ssh.join("known_hosts"), hub.known_hosts()).expect("known_hosts");
    let url = format!("sftp://tester@127.0.0.1:{}/backup", hub.port);
    let run = |args: &[&str]| {
        let o = Command::new("duplicity")
            .args(args)
            .args(["--no-encryption", "--archive-dir"])
            .arg(p.sb.path().join("dup-cache"))
            .arg(format!(
                "--ssh-options=-oIdentityFile={}",
                hub.key.display()
            ))
            .env("HOME", p.sb.home())
            .stdin(Stdio::null())
            .output()
            .expect("run duplicity");
        ok(&format!("duplicity {args:?}"), o, hub)
    };
    // duplicity names backup sets by the second: a full and an incremental backup in the
    // same second would share a name, so each gets its own time.
    let (full_at, incr_at) = ((now_secs() - 60).to_string(), (now_secs() - 30).to_string());
    // It also tells a changed file by its mtime in whole seconds: the files backed up first
    // are a minute old, so the edits below are seen whatever second they land in.
    for f in ["photos/a.jpg", "notes.txt"] {
        data.set_mtime_offset(f, -60);
    }
    run(&["full", "--current-time", &full_at, data.s(), &url]);
    data.write("notes.txt", "changed after the full backup\n");
    data.write("photos/b.jpg", pattern(300_000, 2));
    run(&["incr", "--current-time", &incr_at, data.s(), &url]);
    let out = p.sb.path().join("restored");
    run(&["restore", &url, out.to_str().expect("utf-8")]);
    assert_eq!(Folder::at(out).tree(), data.tree());
    let verify = run(&["verify", &url, data.s()]);
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("0 differences found"),
        "{}",
        show(&verify)
    );
    laptop_gets_it_all(&p);
    assert!(p.a.exists("backup"));
}

/// gio against the hub through gvfs: a private session bus with gvfsd in it, and an ssh agent
/// holding the hub's key (gvfs runs its own `ssh`, which reads no key file we could name).
fn gio_session(p: &Pair, script: &str) -> Output {
    for tool in ["gio", "dbus-run-session", "ssh-agent", "ssh-add"] {
        require(tool);
    }
    let gvfsd = Path::new("/usr/libexec/gvfsd");
    assert!(
        gvfsd.exists() && Path::new("/usr/libexec/gvfsd-sftp").exists(),
        "gvfs is missing: install it with `apt-get install -y gvfs gvfs-backends`"
    );
    let hub = p.hub_ref();
    let body = format!(
        "set -e\neval \"$(ssh-agent -s)\" >/dev/null\ntrap 'kill $SSH_AGENT_PID' EXIT\n\
         ssh-add -q {key}\n{gvfsd} --replace >/dev/null 2>&1 &\n\
         U=sftp://tester@127.0.0.1:{port}\n\
         for i in $(seq 50); do gio mount \"$U/\" </dev/null && break; sleep 0.2; done\n\
         {script}\ngio mount -u \"$U/\"\n",
        key = hub.key.display(),
        gvfsd = gvfsd.display(),
        port = hub.port,
    );
    Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &body])
        .env("HOME", p.sb.home())
        .stdin(Stdio::null())
        .output()
        .expect("run gio")
}

#[test]
fn gio_gvfs_copies_moves_and_overwrites_on_the_hub() {
    let p = Pair::hub(HubKind::Daemon);
    let hub = p.hub_ref();
    let ssh = p.sb.home().join(".ssh");
    std::fs::create_dir_all(&ssh).expect(".ssh");
    std::fs::write(ssh.join("known_hosts"), hub.known_hosts()).expect("known_hosts");
    let src = p.sb.folder("desk");
    src.write("report.odt", pattern(400_000, 3));
    src.write("report-v2.odt", pattern(410_000, 4));
    let (one, two) = (src.p("report.odt"), src.p("report-v2.odt"));
    let back = p.sb.path().join("report.back");
    let script = format!(
        "gio mkdir \"$U/work\"\ngio copy {one} \"$U/work/report.odt\"\n\
         gio move \"$U/work/report.odt\" \"$U/work/final.odt\"\n\
         gio copy {two} \"$U/work/final.odt\"\ngio copy \"$U/work/final.odt\" {back}\n\
         gio list \"$U/work\"\n",
        one = one.display(),
        two = two.display(),
        back = back.display(),
    );
    let o = ok("gio", gio_session(&p, &script), hub);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("final.odt"),
        "{}",
        show(&o)
    );
    assert_eq!(hub.root.read("work/final.odt"), src.read("report-v2.odt"));
    assert!(!hub.root.exists("work/report.odt"));
    assert_eq!(
        std::fs::read(&back).expect("gio download"),
        src.read("report-v2.odt")
    );
    laptop_gets_it_all(&p);
    assert_eq!(p.a.read("work/final.odt"), src.read("report-v2.odt"));
}
