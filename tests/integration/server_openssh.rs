//! The SFTP server driven by OpenSSH's `sftp` client in batch mode.

use crate::harness::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn openssh_sftp_basic_operations() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    let local = sb.folder("local").path;
    let big = pattern(5 * 1024 * 1024 + 123, 7);
    std::fs::write(local.join("big.bin"), &big).unwrap();
    std::fs::write(local.join("small.txt"), b"hello\n").unwrap();
    std::fs::write(local.join("other.txt"), b"other\n").unwrap();
    // An old mtime that `put -p` must carry over (SETSTAT with times).
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(local.join("small.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let l = local.display();
    let batch = format!(
        "mkdir dir\nmkdir gone\nrmdir gone\ncd dir\nput {l}/big.bin\nput -p {l}/small.txt\nput {l}/other.txt\n\
         chmod 600 small.txt\nrename other.txt small.txt\nget big.bin {l}/big.back\nls -l\nln -s big.bin link\n\
         df\nput {l}/other.txt tmp.txt\nrm tmp.txt\npwd\n"
    );
    let o = hub.sftp(&batch);
    assert!(o.status.success(), "{}\nlog:\n{}", o, hub.log_text());
    let out = &o.stdout;
    let d = hub.root.path.join("dir");
    assert_eq!(std::fs::read(d.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(local.join("big.back")).unwrap(), big);
    // rename over an existing file (posix-rename): small.txt now holds other's bytes.
    assert_eq!(std::fs::read(d.join("small.txt")).unwrap(), b"other\n");
    assert!(!d.join("other.txt").exists());
    assert!(!d.join("tmp.txt").exists());
    assert!(!hub.root.path.join("gone").exists());
    assert_eq!(
        std::fs::read_link(d.join("link")).unwrap().to_str(),
        Some("big.bin")
    );
    assert!(out.contains("Remote working directory: /dir"), "{out}");
    assert!(
        out.contains("big.bin") && out.contains("-rw"),
        "ls -l output: {out}"
    );
    assert!(
        out.contains("Size") || out.contains("Avail"),
        "df output: {out}"
    );

    // chmod and mtime on a fresh upload.
    let o = hub.sftp(&format!(
        "put -p {l}/small.txt keep.txt\nchmod 640 keep.txt\n"
    ));
    assert!(o.status.success(), "{}", o);
    let m = std::fs::metadata(hub.root.path.join("keep.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
    assert_eq!(m.mtime(), 1_500_000_000);
}

#[test]
#[ignore = "slow: set TEST_BIG_MIB or run with --ignored"]
fn openssh_sftp_big_file_round_trip() {
    big_round_trip(
        std::env::var("TEST_BIG_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024),
    );
}

#[test]
fn openssh_sftp_64mib_round_trip() {
    big_round_trip(64);
}

fn big_round_trip(mib: usize) {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    let src = sb.path().join("src.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        for i in 0..mib {
            f.write_all(&pattern(1 << 20, i as u64 + 1)).unwrap();
        }
    }
    let back = sb.path().join("back.bin");
    let o = hub.sftp(&format!(
        "put {} big.bin\nget big.bin {}\n",
        src.display(),
        back.display()
    ));
    assert!(o.status.success(), "{}", o);
    let want = std::fs::read(&src).unwrap();
    assert!(
        std::fs::read(hub.root.path.join("big.bin")).unwrap() == want,
        "upload differs"
    );
    assert!(std::fs::read(&back).unwrap() == want, "download differs");
}

#[test]
fn openssh_sftp_escapes_are_refused() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Serve, "");
    hub.root.write("sub/inside.txt", b"in");
    // Planted links that point out of the root (as another program might leave them).
    hub.root.symlink(&hub.outside.path, "out_abs");
    hub.root.symlink("../outside", "out_rel");
    hub.start();
    let before = hub.outside.snapshot();
    let local = sb.folder("local").path;
    std::fs::write(local.join("evil"), b"evil").unwrap();
    let l = local.display();
    let o = hub.outside.path.display();

    // Each line alone: a refused command ends an `sftp -b` batch, which is what we want.
    let attempts = [
        format!("get ../outside/secret {l}/got1"),
        format!("get /../outside/secret {l}/got2"),
        format!("get {o}/secret {l}/got3"),
        format!("get out_abs/secret {l}/got4"),
        format!("get out_rel/secret {l}/got5"),
        format!("put {l}/evil ../outside/evil"),
        format!("put {l}/evil out_abs/evil"),
        format!("put {l}/evil out_rel/evil"),
        "rm out_rel/secret".to_string(),
        "rm ../outside/secret".to_string(),
        "rename sub/inside.txt ../outside/moved".to_string(),
        "ln -s ../../outside/secret sub/esc".to_string(),
        "ln -s ../outside esc2".to_string(),
        "mkdir out_abs/newdir".to_string(),
        "chmod 777 out_rel/secret".to_string(),
        "rmdir ..".to_string(),
    ];
    for a in &attempts {
        let _ = hub.sftp(&format!("{a}\n"));
    }
    for n in 1..=5 {
        assert!(
            !local.join(format!("got{n}")).exists(),
            "attempt {n} read outside"
        );
    }
    assert_eq!(hub.outside.snapshot(), before, "outside changed");
    assert!(hub.root.path.join("sub/inside.txt").exists());
    assert!(!hub.root.path.join("sub/esc").exists() && !hub.root.path.join("esc2").exists());

    // `..` folds at the root: the client sees `/` and the root's own files.
    let out = hub.sftp("cd ../../..\npwd\nls\n");
    assert!(out.status.success(), "{}", out);
    assert!(
        out.stdout.contains("Remote working directory: /\n"),
        "{out}"
    );
    assert!(out.stdout.contains("sub"), "{out}");
}
