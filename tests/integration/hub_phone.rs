//! The hub's everyday case: a phone app uploads photos (as `NAME.part`, renamed into place)
//! while the laptop syncs with the hub again and again. Every sync is clean (exit 0, no
//! error), no half-written photo or temp name ever reaches the laptop, and at the end both
//! sides hold every photo as the phone sent it, and the laptop's own files.

use crate::harness::{HubKind, Pair, wait_until};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Names a half-written file has on the way: the app's own, and ours.
fn in_flight(name: &str) -> bool {
    name.ends_with(".part") || name.contains(".sync-tmp.")
}

#[test]
fn a_sync_while_the_phone_uploads_is_clean_and_loses_nothing() {
    let p = Pair::hub(HubKind::Daemon);
    for i in 0..20 {
        p.a.write(&format!("notes/n{i}.txt"), format!("laptop note {i}\n"));
    }
    p.sync();
    let keep = p.sb.folder("phone");
    let mut phone = p
        .hub_ref()
        .python_cmd("phone.py", &p.hub_ref().key, &[keep.s(), "300", "12"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the phone");
    let started = Instant::now();
    let mut syncs = 0;
    while phone.try_wait().expect("phone").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the phone never finished"
        );
        syncs += 1;
        if syncs % 4 == 0 {
            p.a.write(
                &format!("notes/during{syncs}.txt"),
                "written during the upload\n",
            );
        }
        let r = p.sync_cmd().output();
        assert!(
            r.status.success() && !r.stderr.contains("error") && !r.stderr.contains("WARN"),
            "sync {syncs} while the phone uploads: {r}\nhub log:\n{}",
            p.hub_ref().log_text()
        );
        let shipped: Vec<String> =
            p.a.snapshot()
                .into_keys()
                .filter(|k| in_flight(k))
                .collect();
        assert!(shipped.is_empty(), "sync {syncs} shipped {shipped:?}");
    }
    let out = phone.wait_with_output().expect("phone");
    assert!(
        out.status.success(),
        "the phone failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(syncs >= 3, "only {syncs} syncs overlapped the upload");
    // Once the phone is quiet, a sync or two carry the rest, then nothing is left to do.
    let settled = wait_until(Duration::from_secs(60), || {
        let r = p.sync_cmd().output();
        assert!(r.status.success(), "{r}");
        r.stdout
            .contains("sent 0 files (0 B), received 0 files (0 B)")
            && photos(&p.a) == photos(&keep)
    });
    assert!(
        settled,
        "the laptop never caught up:\n{}",
        p.hub_ref().log_text()
    );
    assert_eq!(
        photos(&p.b),
        photos(&keep),
        "the hub's photos are not the phone's"
    );
    assert_eq!(photos(&keep).len(), 300);
    let notes = |f: &crate::harness::Folder| {
        f.tree()
            .into_iter()
            .filter(|(k, _)| k.starts_with("notes/"))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(notes(&p.a), notes(&p.b));
    assert!(notes(&p.a).len() > 20, "the laptop's notes are gone");
}

/// A phone client (`hold.py`) holding a file open and half written on the hub until released.
struct Held {
    client: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Held {
    fn start(hub: &crate::harness::Hub, name: &str, size: usize) -> Held {
        use std::io::BufRead;
        let mut client = hub
            .python_cmd("hold.py", &hub.key, &[name, &size.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the client");
        let mut lines = std::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
        assert_eq!(
            lines.next().and_then(Result::ok).as_deref(),
            Some("half written")
        );
        Held { client, lines }
    }

    /// Lets the client write the rest and close the file.
    fn release(mut self) {
        drop(self.client.stdin.take().expect("stdin"));
        assert_eq!(
            self.lines.next().and_then(Result::ok).as_deref(),
            Some("done")
        );
        assert!(self.client.wait().expect("client").success());
    }
}

fn photos(f: &crate::harness::Folder) -> BTreeMap<String, Option<Vec<u8>>> {
    f.tree()
        .into_iter()
        .filter(|(k, _)| k.starts_with("DCIM/"))
        .collect()
}

/// A file a client is still writing in place (open, half of it there) is not offered by the
/// hub, however long the client pauses; once it is closed and quiet, it is.
#[test]
fn a_file_open_for_writing_on_the_hub_is_not_offered() {
    let p = Pair::hub(HubKind::Daemon);
    p.b.write("old.txt", "there before\n");
    p.sync();
    let size = 300_000;
    let held = Held::start(p.hub_ref(), "big.jpg", size);
    // Longer than the watcher's debounce and the quiet time: only "open" keeps it out.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..2 {
        let r = p.sync_cmd().output();
        assert!(r.status.success(), "{r}");
        assert!(
            !p.a.exists("big.jpg"),
            "a half-written file was offered: {r}"
        );
    }
    held.release();
    let whole = wait_until(Duration::from_secs(30), || {
        p.sync_cmd().ok();
        p.a.get("big.jpg").is_some_and(|b| b.len() == size)
    });
    assert!(
        whole,
        "the finished file never came:\n{}",
        p.hub_ref().log_text()
    );
    assert_eq!(p.a.read("big.jpg"), p.b.read("big.jpg"));
}

/// The phone closes its upload and the laptop syncs at once: the file comes in that very sync.
/// A file the phone still holds open, half written, stays on the hub, and the summary says
/// so (exit 0).
#[test]
fn a_closed_upload_comes_at_once_and_one_still_open_is_named() {
    for kind in [HubKind::Daemon, HubKind::Serve] {
        let p = Pair::hub(kind);
        p.sync();
        let phone = p.sb.folder("phone");
        phone.write("p.txt", "a photo\n");
        let up = p
            .hub_ref()
            .sftp(&format!("put {} p.txt\n", phone.p("p.txt").display()));
        assert!(up.status.success(), "{up}");
        let r = p.sync_cmd().output();
        assert!(r.status.success(), "{kind:?}: {r}");
        assert_eq!(
            p.a.get("p.txt").as_deref(),
            Some(&b"a photo\n"[..]),
            "{kind:?}: the upload did not come in the sync right after it: {r}\nhub log:\n{}",
            p.hub_ref().log_text()
        );
        assert!(
            !r.stdout.contains("left for the next sync"),
            "{kind:?}: {r}"
        );

        let held = Held::start(p.hub_ref(), "big.jpg", 300_000);
        let r = p.sync_cmd().output();
        assert!(r.status.success(), "{kind:?}: {r}");
        assert!(
            !p.a.exists("big.jpg"),
            "{kind:?}: a half-written file came: {r}"
        );
        assert!(
            r.stdout.contains(
                "1 file was still being written on the hub and is left for the next sync"
            ),
            "{kind:?}: {r}\nhub log:\n{}",
            p.hub_ref().log_text()
        );
        if kind == HubKind::Daemon {
            // The hub's own status counts it too.
            let st =
                p.sb.filesync_with(&p.hub_ref().config)
                    .args(["status", "--root"])
                    .arg(&p.b.path)
                    .ok();
            assert!(
                st.stdout.contains("being written by SFTP clients: 1"),
                "{st}"
            );
        }
        held.release();
        let r = p.sync_cmd().output();
        assert!(r.status.success(), "{kind:?}: {r}");
        assert_eq!(
            p.a.get("big.jpg").map(|b| b.len()),
            Some(300_000),
            "{kind:?}: {r}"
        );
    }
}

/// The hub's own scheduled sync leaves a file a phone still holds open, and its log line says
/// so; once closed, the next scheduled sync carries it.
#[test]
fn the_hubs_scheduled_sync_names_a_file_still_being_written() {
    use crate::harness::{Hub, Sandbox};
    let sb = Sandbox::new();
    let laptop = sb.folder("laptop");
    let hub = Hub::started(
        &sb,
        HubKind::Daemon,
        &format!("[peers.laptop]\nurl = {:?}\nevery = \"1s\"\n", laptop.s()),
    );
    let held = Held::start(&hub, "big.jpg", 300_000);
    let named = wait_until(Duration::from_secs(30), || {
        hub.log_text()
            .contains("1 file was still being written on the hub and is left for the next sync")
    });
    assert!(named, "hub log:\n{}", hub.log_text());
    assert!(!laptop.exists("big.jpg"));
    held.release();
    let came = wait_until(Duration::from_secs(30), || {
        laptop.get("big.jpg").is_some_and(|b| b.len() == 300_000)
    });
    assert!(came, "hub log:\n{}", hub.log_text());
}
