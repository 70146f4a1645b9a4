use super::*;

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[test]
fn escapes_through_symlinks_stay_in_root() {
    let outer = tempfile::tempdir().unwrap();
    let root_dir = outer.path().join("root");
    std::fs::create_dir(&root_dir).unwrap();
    std::fs::write(outer.path().join("secret"), b"x").unwrap();
    std::os::unix::fs::symlink("../secret", root_dir.join("up")).unwrap();
    std::os::unix::fs::symlink(outer.path(), root_dir.join("abs")).unwrap();
    // Both resolvers: the kernel's openat2 and the component walk used without it.
    for walk in [false, true] {
        let root = Root::open_with(&root_dir, Follow::InRoot, walk).unwrap();
        assert!(root.stat(&p("up")).is_err());
        assert!(root.stat(&p("abs/secret")).is_err());
        let f = root.resolve(
            &p("abs/new"),
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o600),
        );
        assert!(
            f.is_err(),
            "creating through a symlink to outside must fail"
        );
        assert!(!outer.path().join("new").exists());
        assert!(root.lstat(&p("up")).is_ok());
    }
}

/// The component-by-component resolver agrees with the kernel's openat2(RESOLVE_IN_ROOT)
/// on every path and flag combination of a tree full of awkward symlinks.
#[test]
fn walking_resolver_matches_openat2() {
    let outer = tempfile::tempdir().unwrap();
    let r = outer.path().join("root");
    std::fs::create_dir_all(r.join("a/b")).unwrap();
    std::fs::write(outer.path().join("secret"), b"x").unwrap();
    std::fs::write(r.join("a/b/f"), b"f").unwrap();
    std::fs::write(r.join("top"), b"t").unwrap();
    let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, r.join(at)).unwrap();
    link("../secret", "up");
    link(outer.path().to_str().unwrap(), "abs");
    link("/a/b", "rootabs");
    link("b/f", "a/rel");
    link("../../../../top", "a/b/climb");
    link("loop2", "loop1");
    link("loop1", "loop2");
    link("a/b/nothing", "dangling");
    link("/", "slash");
    link("a", "chain1");
    link("chain1/b", "chain2");
    link("/top", "a/b/abstop");
    link("/a/b", "a/toab");
    let kernel = Root::open(&r, Follow::InRoot).unwrap();
    assert!(
        !kernel.walk,
        "this kernel has no openat2 (Linux 5.6 or later): the component walk has nothing to be compared with"
    );
    let walker = Root::open_with(&r, Follow::InRoot, true).unwrap();
    let paths = [
        "",
        "top",
        "a",
        "a/b",
        "a/b/f",
        "up",
        "abs",
        "abs/secret",
        "rootabs",
        "rootabs/f",
        "a/rel",
        "a/b/climb",
        "loop1",
        "loop1/x",
        "dangling",
        "slash",
        "slash/top",
        "slash/a/b/f",
        "chain2/f",
        "chain2",
        "a/b/f/x",
        "missing",
        "missing/x",
        "top/x",
        "a/../top",
        "a/b/../../top",
        "../../top",
        "a/b/abstop",
        "a/toab/f",
        "a/toab",
    ];
    let flag_sets = [
        OFlags::PATH,
        OFlags::PATH | OFlags::NOFOLLOW,
        OFlags::PATH | OFlags::DIRECTORY,
        OFlags::RDONLY,
        OFlags::RDONLY | OFlags::DIRECTORY,
        OFlags::RDONLY | OFlags::NOFOLLOW,
    ];
    let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|s| (s.st_dev, s.st_ino)).ok();
    for raw in paths {
        let p = RelPath::normalize_client(raw).unwrap();
        for flags in flag_sets {
            let a = kernel.resolve(&p, flags, Mode::empty());
            let b = walker.resolve_walk(&p, flags, Mode::empty());
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert_eq!(ino(x), ino(y), "{raw:?} {flags:?}"),
                (Err(RootError::Io(x)), Err(y)) => {
                    assert_eq!(
                        x.raw_os_error(),
                        Some(y.raw_os_error()),
                        "{raw:?} {flags:?}"
                    )
                }
                _ => panic!("{raw:?} {flags:?}: kernel {a:?}, walker {b:?}"),
            }
        }
    }
    // Creating through links lands inside the root, as with openat2, or not at all.
    for raw in ["dangling", "abs/new", "up/../new2", "rootabs/new3"] {
        let p = RelPath::normalize_client(raw).unwrap();
        let flags = OFlags::WRONLY | OFlags::CREATE;
        let b = walker.resolve_walk(&p, flags, Mode::from_raw_mode(0o600));
        let a = kernel.resolve(&p, flags | OFlags::EXCL, Mode::from_raw_mode(0o600));
        // The walker made it first; the kernel resolving the same path must find it there.
        match (&a, &b) {
            (Err(RootError::Io(x)), Ok(_)) => {
                assert_eq!(x.raw_os_error(), Some(Errno::EXIST.raw_os_error()), "{raw}")
            }
            (Err(RootError::Io(x)), Err(y)) => {
                assert_eq!(x.raw_os_error(), Some(y.raw_os_error()), "{raw}")
            }
            _ => panic!("{raw}: kernel {a:?}, walker {b:?}"),
        }
    }
    assert!(r.join("a/b/nothing").exists());
    assert!(r.join("a/b/new3").exists());
    assert!(!outer.path().join("new").exists() && !outer.path().join("new2").exists());
}

/// Under `Follow::Never` no link is passed, wherever it stands and wherever it points (inside
/// the root too), and the error names it; a file where a folder should be is named as well.
/// Both resolvers: the kernel's and the component walk.
#[test]
fn never_means_no_link_anywhere_on_the_way() {
    let outer = tempfile::tempdir().unwrap();
    let r = outer.path().join("root");
    std::fs::create_dir_all(r.join("a/b")).unwrap();
    std::fs::write(r.join("a/b/f"), b"f").unwrap();
    std::fs::write(r.join("file"), b"x").unwrap();
    std::os::unix::fs::symlink("a", r.join("inside")).unwrap();
    std::os::unix::fs::symlink(outer.path(), r.join("out")).unwrap();
    std::os::unix::fs::symlink("f", r.join("a/b/lf")).unwrap();
    for walk in [false, true] {
        let root = Root::open_with(&r, Follow::Never, walk).unwrap();
        assert!(root.open_regular(&p("a/b/f")).is_ok());
        for (path, link) in [
            ("inside/b/f", "inside"),
            ("out/x", "out"),
            ("a/b/lf", "a/b/lf"),
        ] {
            match root.open_regular(&p(path)) {
                Err(RootError::ThroughLink(l)) => assert_eq!(l.as_str(), link, "{path} {walk}"),
                Err(RootError::Denied(_)) if path == "a/b/lf" => {}
                other => panic!("{path} (walk {walk}): {other:?}"),
            }
        }
        match root.dir(&p("out/new"), true) {
            Err(RootError::ThroughLink(l)) => assert_eq!(l.as_str(), "out"),
            other => panic!("walk {walk}: {other:?}"),
        }
        match root.dir(&p("file/sub"), true) {
            Err(RootError::NotAFolder(l)) => assert_eq!(l.as_str(), "file"),
            other => panic!("walk {walk}: {other:?}"),
        }
        // Missing folders are made, real ones found.
        assert!(root.dir(&p("made/deep/er"), true).is_ok());
        assert!(r.join("made/deep/er").is_dir());
        assert!(root.dir(&p("missing"), false).unwrap_err().is_not_found());
        assert_eq!(std::fs::read_dir(outer.path()).unwrap().count(), 1);
    }
}
