//! Our SFTP extensions for trees of small files. `write-files@filesync` writes many files to
//! new temp names in one request (no fsync); `install-files@filesync` makes a set of such
//! temps durable with one `syncfs` and renames each into place, keeping what it replaces in
//! the trash, then makes the renames durable with another; `read-files@filesync` returns
//! many small files in one reply. A 10,000-file upload is then a few hundred requests and a
//! few dozen barriers instead of 60,000 requests and 10,000 fsyncs.

use super::fs::{self, ClientOps, FsError, FsResult, Root};
use crate::proto as wire;
use crate::relpath::RelPath;
use crate::replica::InstallError;
use crate::replica::layout::is_temp_name;
use bytes::Bytes;
use std::collections::HashSet;
use std::io::Write;

/// A batch path: inside the root (as every client path), and for temps, one of our temp names
/// (so a batch can only ever create files the scans know to skip and clean up).
fn batch_path(raw: &[u8], temp: bool) -> FsResult<RelPath> {
    let p = fs::client_path(raw)?;
    if p.is_root() {
        return Err(FsError::Denied("the root is a folder"));
    }
    if temp && !is_temp_name(p.name()) {
        return Err(FsError::Denied("not a temp file name"));
    }
    Ok(p)
}

fn status(r: FsResult<()>) -> wire::Outcome {
    match r {
        Ok(()) => wire::Outcome::ok(Bytes::new()),
        Err(e) => outcome_of(e),
    }
}

fn outcome_of(e: FsError) -> wire::Outcome {
    let (code, msg) = fs::status_code(&e, true);
    wire::Outcome::err(code, msg)
}

/// Told of each file a batch could not do: its path as the client sent it, and why.
pub type Failed<'a> = &'a mut dyn FnMut(&[u8], &FsError);

/// `write-files@filesync`: each file to a new temp (never replacing anything), with its mtime.
pub fn write_files(root: &Root, id: u32, data: &Bytes, failed: Failed) -> Bytes {
    match wire::decode_write_files(data) {
        Ok(files) => write_each(root, id, &files, failed),
        Err(_) => wire::status(id, wire::FX_BAD_MESSAGE, "malformed request"),
    }
}

/// `write-files-with-mode@filesync`: as `write_files`, each temp born with its mode.
pub fn write_files_with_mode(root: &Root, id: u32, data: &Bytes, failed: Failed) -> Bytes {
    match wire::decode_write_files_with_mode(data) {
        Ok(files) => write_each(root, id, &files, failed),
        Err(_) => wire::status(id, wire::FX_BAD_MESSAGE, "malformed request"),
    }
}

fn write_each(root: &Root, id: u32, files: &[wire::PutFile], failed: Failed) -> Bytes {
    let statuses: Vec<_> = files
        .iter()
        .map(|f| {
            let r = write_one(root, f);
            if let Err(e) = &r {
                failed(&f.path, e);
            }
            status(r)
        })
        .collect();
    wire::batch_reply(id, &statuses)
}

fn write_one(root: &Root, f: &wire::PutFile) -> FsResult<()> {
    let p = batch_path(&f.path, true)?;
    let file = root.open_file(&p, wire::PF_WRITE | wire::PF_CREAT | wire::PF_EXCL, f.mode)?;
    let mtime = u32::try_from(f.mtime).unwrap_or(u32::MAX);
    let attrs = wire::Attrs {
        atime_mtime: Some((mtime, mtime)),
        ..Default::default()
    };
    // The mode again, exactly: the umask may have narrowed what the file was born with. A
    // disk that cannot hold modes (FAT) refuses it; the client's index keeps the mode.
    if let Some(m) = f.mode {
        let perms = wire::Attrs {
            permissions: Some(m),
            ..Default::default()
        };
        let _ = fs::fsetstat(&file, &perms);
    }
    let r = (&file)
        .write_all(&f.data)
        .map_err(FsError::from)
        .and_then(|()| fs::fsetstat(&file, &attrs));
    if r.is_err() {
        drop(file);
        let _ = root.remove(&p);
    }
    r
}

/// `install-files@filesync`: one barrier for all the temps, each into place, one barrier for
/// the renames. A temp whose install fails is removed; the others still go in.
pub fn install_files(root: &Root, id: u32, data: &Bytes, now: i64, failed: Failed) -> Bytes {
    let Ok(files) = wire::decode_install_files(data) else {
        return wire::status(id, wire::FX_BAD_MESSAGE, "malformed request");
    };
    let mut todo: Vec<FsResult<(RelPath, RelPath, bool)>> = files
        .iter()
        .map(|f| {
            let tmp = batch_path(&f.tmp, true)?;
            let path = batch_path(&f.path, false)?;
            // Only a regular file goes in: not a folder, nor a symlink someone put there.
            if root.lstat(&tmp)?.kind != crate::replica::root::FileKind::File {
                return Err(FsError::Denied("the temp is not a regular file"));
            }
            Ok((tmp, path, f.fresh))
        })
        .collect();
    // The bytes reach the disk before any name points at them.
    let temps: Vec<RelPath> = todo.iter().flatten().map(|(t, _, _)| t.clone()).collect();
    if let Err(e) = barrier(root, &temps) {
        for t in &temps {
            let _ = root.remove(t);
        }
        failed(b"/", &e);
        let o = outcome_of(e);
        let msg = format!("cannot make the files durable: {}", o.msg);
        let outcomes: Vec<_> = files
            .iter()
            .map(|_| wire::Outcome::err(o.code, msg.clone()))
            .collect();
        return wire::batch_reply(id, &outcomes);
    }
    let mut dirs: Vec<RelPath> = Vec::new();
    // Trash folders made (or found) for this batch: files of one folder share theirs.
    let mut made = HashSet::new();
    for t in todo.iter_mut() {
        let Ok((tmp, path, fresh)) = t else { continue };
        if let Err(e) = install_one(root, tmp, path, *fresh, now, &mut made) {
            let _ = root.remove(tmp);
            *t = Err(e);
            continue;
        }
        let dir = path.parent().unwrap_or_else(RelPath::root);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    // The renames reach the disk before the client records them in its index.
    let after = barrier(root, &dirs);
    if let Err(e) = &after {
        failed(b"/", e);
    }
    for (t, f) in todo.iter().zip(&files) {
        if let Err(e) = t {
            failed(&f.path, e);
        }
    }
    let statuses: Vec<_> = todo
        .into_iter()
        .map(|t| match (t, &after) {
            (Err(e), _) => status(Err(e)),
            (Ok(_), Ok(())) => status(Ok(())),
            (Ok(_), Err(e)) => wire::Outcome::err(
                wire::FX_FAILURE,
                format!("put in place, but not known to be durable: {e}"),
            ),
        })
        .collect();
    wire::batch_reply(id, &statuses)
}

/// `read-files@filesync`: each file whole (up to its `max`), within one reply's budget.
pub fn read_files(root: &Root, id: u32, data: &Bytes, failed: Failed) -> Bytes {
    let Ok(files) = wire::decode_read_files(data) else {
        return wire::status(id, wire::FX_BAD_MESSAGE, "malformed request");
    };
    // However much a client asks for, the reply stays one packet's worth.
    let mut budget = wire::MAX_IO as u64;
    let outcomes: Vec<_> = files
        .iter()
        .map(|f| {
            if f.max > budget {
                return wire::Outcome::err(
                    wire::FX_FAILURE,
                    "the reply is full; ask for this file again".into(),
                );
            }
            match read_one(root, f) {
                Ok(data) => {
                    budget -= data.len() as u64;
                    wire::Outcome::ok(data)
                }
                Err(e) => {
                    failed(&f.path, &e);
                    outcome_of(e)
                }
            }
        })
        .collect();
    wire::batch_reply(id, &outcomes)
}

fn read_one(root: &Root, f: &wire::ReadFile) -> FsResult<Bytes> {
    let file = root.open_regular(&batch_path(&f.path, false)?)?;
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&file, f.max), &mut v)?;
    Ok(Bytes::from(v))
}

fn install_one(
    root: &Root,
    tmp: &RelPath,
    path: &RelPath,
    fresh: bool,
    now: i64,
    made: &mut HashSet<RelPath>,
) -> FsResult<()> {
    match root.install(tmp, path, fresh, now, made) {
        Ok(()) => Ok(()),
        // A file that arrived since the client's scan is left alone.
        Err(InstallError::Appeared) => {
            Err(FsError::Io(std::io::Error::from_raw_os_error(libc::EEXIST)))
        }
        Err(InstallError::Trash(e) | InstallError::Root(e)) => Err(e),
    }
}

/// Makes everything written at `paths` durable (one `syncfs` per file system).
fn barrier(root: &Root, paths: &[RelPath]) -> FsResult<()> {
    root.barrier(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn statuses(reply: &Bytes) -> Vec<u32> {
        assert_eq!(reply[4], wire::FXP_EXTENDED_REPLY, "{reply:?}");
        wire::decode_batch_reply(&reply.slice(9..))
            .unwrap()
            .into_iter()
            .map(|o| o.code)
            .collect()
    }

    fn write(root: &Root, files: &[(&str, &[u8])]) -> Vec<u32> {
        let mut b = wire::BatchBuilder::default();
        for (p, data) in files {
            b.put_file(p, 1_600_000_000, data);
        }
        statuses(&write_files(
            root,
            1,
            &Bytes::from(b.finish()),
            &mut |_, _| {},
        ))
    }

    fn install(root: &Root, files: &[(&str, &str, bool)]) -> Vec<u32> {
        let mut b = wire::BatchBuilder::default();
        for (tmp, p, fresh) in files {
            b.install(tmp, p, *fresh);
        }
        statuses(&install_files(
            root,
            2,
            &Bytes::from(b.finish()),
            1_700_000_000,
            &mut |_, _| {},
        ))
    }

    fn temps_in(dir: &Path) -> Vec<String> {
        walkdir_names(dir)
            .into_iter()
            .filter(|n| is_temp_name(n))
            .collect()
    }

    fn walkdir_names(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.extend(walkdir_names(&e.path()));
            }
            out.push(name);
        }
        out
    }

    #[test]
    fn files_go_in_with_their_mtime_and_replaced_ones_go_to_the_trash() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "old a").unwrap();
        std::fs::create_dir(d.path().join("d")).unwrap();
        let root = Root::open(d.path(), crate::replica::Follow::InRoot).unwrap();
        let got = write(
            &root,
            &[
                ("/.a.sync-tmp.0000000000000001", b"new a"),
                ("d/.b.sync-tmp.0000000000000002", b"b"),
            ],
        );
        assert_eq!(got, vec![wire::FX_OK, wire::FX_OK]);
        // Written, but not in place until installed.
        assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"old a");
        let got = install(
            &root,
            &[
                ("/.a.sync-tmp.0000000000000001", "/a", false),
                ("d/.b.sync-tmp.0000000000000002", "d/b", true),
            ],
        );
        assert_eq!(got, vec![wire::FX_OK, wire::FX_OK]);
        assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"new a");
        assert_eq!(std::fs::read(d.path().join("d/b")).unwrap(), b"b");
        let m = std::fs::metadata(d.path().join("d/b")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(m.mtime(), 1_600_000_000);
        let trash: Vec<_> = std::fs::read_dir(d.path().join(".sync-trash"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(trash.len(), 1);
        assert!(trash[0].file_name().to_string_lossy().starts_with("a~"));
        assert_eq!(std::fs::read(trash[0].path()).unwrap(), b"old a");
        assert_eq!(temps_in(d.path()), Vec::<String>::new());
    }

    #[test]
    fn a_fresh_file_never_replaces_one_that_appeared() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path(), crate::replica::Follow::InRoot).unwrap();
        assert_eq!(
            write(&root, &[(".c.sync-tmp.0000000000000003", b"ours")]),
            vec![wire::FX_OK]
        );
        std::fs::write(d.path().join("c"), "theirs").unwrap();
        assert_eq!(
            install(&root, &[(".c.sync-tmp.0000000000000003", "c", true)]),
            vec![wire::FX_FILE_ALREADY_EXISTS]
        );
        assert_eq!(std::fs::read(d.path().join("c")).unwrap(), b"theirs");
        assert_eq!(temps_in(d.path()), Vec::<String>::new());
        // And a second write to the same temp name does not clobber an existing temp.
        assert_eq!(
            write(&root, &[(".e.sync-tmp.0000000000000004", b"1")]),
            vec![wire::FX_OK]
        );
        assert_eq!(
            write(&root, &[(".e.sync-tmp.0000000000000004", b"2")]),
            vec![wire::FX_FILE_ALREADY_EXISTS]
        );
        assert_eq!(
            std::fs::read(d.path().join(".e.sync-tmp.0000000000000004")).unwrap(),
            b"1"
        );
    }

    #[test]
    fn batch_paths_stay_inside_the_root_and_only_temps_are_written() {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        std::fs::write(outside.path().join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("victim"),
            d.path().join(".v.sync-tmp.0000000000000005"),
        )
        .unwrap();
        let root = Root::open(d.path(), crate::replica::Follow::InRoot).unwrap();
        let got = write(
            &root,
            &[
                ("plain", b"x"),
                ("/../../.p.sync-tmp.0000000000000006", b"x"),
                ("out/.q.sync-tmp.0000000000000007", b"x"),
                (".sync-trash/.r.sync-tmp.0000000000000008", b"x"),
            ],
        );
        // Not a temp name; `..` folds at the root (so this one lands inside it); a symlink
        // to outside resolves inside the root, where no such folder is; a missing folder.
        assert_eq!(
            got,
            vec![
                wire::FX_PERMISSION_DENIED,
                wire::FX_OK,
                wire::FX_NO_SUCH_FILE,
                wire::FX_NO_SUCH_FILE,
            ]
        );
        assert!(d.path().join(".p.sync-tmp.0000000000000006").exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        // A "temp" that is a symlink to a file outside is not put in place, and the file it
        // points at is untouched.
        assert_eq!(
            install(
                &root,
                &[
                    (".v.sync-tmp.0000000000000005", "v", true),
                    (".p.sync-tmp.0000000000000006", "", true)
                ]
            ),
            vec![wire::FX_PERMISSION_DENIED, wire::FX_PERMISSION_DENIED]
        );
        assert!(!d.path().join("v").exists());
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn reads_return_regular_files_only_and_stay_within_one_reply() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "aaa").unwrap();
        std::fs::write(d.path().join("big"), vec![7u8; 200 * 1024]).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let root = Root::open(d.path(), crate::replica::Follow::InRoot).unwrap();
        let mut b = wire::BatchBuilder::default();
        for (p, max) in [
            ("a", 4),
            ("a", 2),
            ("link", 4),
            ("fifo", 4),
            ("missing", 4),
            ("/../a", 4),
            ("big", 300 * 1024),
            ("big", 200 * 1024),
        ] {
            b.read_file(p, max);
        }
        let mut failed = Vec::new();
        let reply = read_files(&root, 5, &Bytes::from(b.finish()), &mut |p, _| {
            failed.push(String::from_utf8_lossy(p).into_owned())
        });
        assert_eq!(failed, ["link", "fifo", "missing"]);
        let got = wire::decode_batch_reply(&reply.slice(9..)).unwrap();
        let codes: Vec<u32> = got.iter().map(|o| o.code).collect();
        assert_eq!(
            codes,
            vec![
                wire::FX_OK,
                wire::FX_OK,
                wire::FX_PERMISSION_DENIED, // ELOOP: the symlink is not followed
                wire::FX_PERMISSION_DENIED,
                wire::FX_NO_SUCH_FILE,
                wire::FX_OK,
                // More than one reply can hold is refused, not truncated; and once the
                // budget is spent the rest must be asked for again.
                wire::FX_FAILURE,
                wire::FX_OK,
            ]
        );
        assert_eq!(&got[0].data[..], b"aaa");
        assert_eq!(&got[1].data[..], b"aa");
        assert_eq!(&got[5].data[..], b"aaa");
        assert_eq!(got[7].data.len(), 200 * 1024);
        assert!(reply.len() <= wire::MAX_PACKET as usize + 4);
    }

    #[test]
    fn a_malformed_batch_is_refused_whole() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path(), crate::replica::Follow::InRoot).unwrap();
        for reply in [
            write_files(
                &root,
                3,
                &Bytes::from_static(&[0, 0, 0, 9, 1]),
                &mut |_, _| {},
            ),
            install_files(&root, 4, &Bytes::from_static(&[1]), 0, &mut |_, _| {}),
        ] {
            assert_eq!(reply[4], wire::FXP_STATUS);
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
