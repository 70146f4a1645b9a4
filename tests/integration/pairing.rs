//! Pairing a laptop with the hub by a code (`filesync pair --new` on the hub, `filesync pair
//! HOST CODE` on the laptop), then syncing at once; and every way a pairing must be refused —
//! a wrong code, a used one, one given to another server or through a man in the middle, brute
//! force — with one line saying why and nothing written on either side.

use crate::harness::{Folder, Hub, HubKind, Mitm, Ran, Sandbox, wait_until};
use std::path::PathBuf;
use std::time::Duration;

/// A hub daemon with no client keys at all (no authorized_keys file).
fn bare_hub(sb: &Sandbox) -> Hub {
    let mut hub = Hub::new(sb, HubKind::Daemon, "");
    std::fs::remove_file(&hub.authorized_keys).expect("no authorized_keys");
    hub.start();
    hub
}

/// `filesync pair --new` on the hub: the code it printed.
fn new_code(sb: &Sandbox, hub: &Hub, extra: &[&str]) -> String {
    let o = sb
        .filesync_with(&hub.config)
        .args(["pair", "--new", "--root"])
        .arg(&hub.root.path)
        .args(extra)
        .ok();
    let line = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("code: "))
        .unwrap_or_else(|| panic!("no code printed: {o}"));
    line.trim().to_string()
}

/// `filesync pair 127.0.0.1:PORT CODE` from the laptop sandbox `lap`.
fn pair(lap: &Sandbox, port: u16, code: &str, root: &Folder) -> Ran {
    lap.filesync()
        .args([
            "pair",
            &format!("127.0.0.1:{port}"),
            code,
            "--as",
            "laptop",
            "--root",
        ])
        .arg(&root.path)
        .output()
}

fn devices_file(hub: &Hub) -> PathBuf {
    hub.host_key.parent().unwrap().join("devices.json")
}

/// What a refused pairing may not leave behind on the laptop.
fn laptop_untouched(lap: &Sandbox) {
    let config = std::fs::read_to_string(lap.config()).unwrap();
    assert!(config.is_empty(), "config written: {config}");
    assert!(!lap.path().join("id_ed25519").exists(), "key written");
    assert!(
        !lap.home().join(".ssh/known_hosts").exists(),
        "known_hosts written"
    );
}

fn hub_untouched(hub: &Hub) {
    assert!(!devices_file(hub).exists(), "a device was added");
}

fn changed_secret(code: &str) -> String {
    let mut c: Vec<char> = code.chars().collect();
    let last = c.len() - 1;
    c[last] = if c[last] == 'A' { 'B' } else { 'A' };
    c.into_iter().collect()
}

#[test]
fn a_laptop_pairs_with_a_code_and_syncs_both_ways_at_once() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    assert!(
        hub.log_text().contains("paired devices only"),
        "{}",
        hub.log_text()
    );
    hub.root.write("from-hub.txt", "hub\n");
    let code = new_code(&hsb, &hub, &[]);
    assert_eq!(code.len(), 14, "{code}");

    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    root.write("from-laptop.txt", "laptop\n");
    let o = pair(&lap, hub.port, &code, &root);
    assert!(o.status.success(), "{o}");
    assert!(o.stdout.contains("filesync sync hub"), "{o}");

    let config = std::fs::read_to_string(lap.config()).unwrap();
    assert!(config.contains("[peers.hub]"), "{config}");
    assert!(
        config.contains(&format!("sftp://laptop@127.0.0.1:{}/", hub.port)),
        "{config}"
    );
    let known = std::fs::read_to_string(lap.home().join(".ssh/known_hosts")).unwrap();
    assert_eq!(
        known.lines().filter(|l| !l.is_empty()).count(),
        3,
        "{known}"
    );
    let devices = std::fs::read_to_string(devices_file(&hub)).unwrap();
    assert!(devices.contains("\"laptop\""), "{devices}");

    // No --accept-new: the host keys came with the pairing.
    let o = lap.filesync().args(["sync", "hub"]).ok();
    assert_eq!(hub.root.read("from-laptop.txt"), b"laptop\n", "{o}");
    assert_eq!(root.read("from-hub.txt"), b"hub\n");
    hub.root.write("later.txt", "again\n");
    lap.filesync().args(["sync", "hub"]).ok();
    assert_eq!(root.read("later.txt"), b"again\n");
    assert!(
        hub.log_text()
            .lines()
            .any(|l| l.contains("client logged in") && l.contains("device=laptop")),
        "the login is the paired device's: {}",
        hub.log_text()
    );

    // The code was used up.
    let lap2 = Sandbox::new();
    let o = pair(&lap2, hub.port, &code, &lap2.folder("Sync"));
    o.one_line_error(&["wrong pairing code"]);
    laptop_untouched(&lap2);
}

#[test]
fn wrong_codes_are_refused_and_burn_the_code() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let wrong = changed_secret(&code);
    let mut wrong_said = String::new();
    for _ in 0..3 {
        let o = pair(&lap, hub.port, &wrong, &root);
        o.one_line_error(&["wrong pairing code"]);
        wrong_said = o.stderr;
        laptop_untouched(&lap);
        hub_untouched(&hub);
    }
    assert!(
        hub.log_text().contains("the code is burnt"),
        "{}",
        hub.log_text()
    );
    // Burnt: the right code no longer works either, and is refused as a wrong one is (no
    // telling a guesser which).
    let o = pair(&lap, hub.port, &code, &root);
    o.one_line_error(&["wrong pairing code"]);
    assert_eq!(o.stderr, wrong_said);
    laptop_untouched(&lap);
    hub_untouched(&hub);
    // A code the hub never made.
    let o = pair(&lap, hub.port, "0000-0000-0000", &root);
    o.one_line_error(&["wrong pairing code"]);
    let o = pair(&lap, hub.port, "not-a-code", &root);
    o.one_line_error(&["not a pairing code"]);
    laptop_untouched(&lap);
}

#[test]
fn brute_force_is_penalised_by_address() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    // Guesses at codes the hub never made: each is a failed login of the address.
    for i in 0..10 {
        let o = pair(&lap, hub.port, &format!("{i:04}-0000-0000"), &root);
        assert!(!o.status.success(), "{o}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || hub
            .log_text()
            .contains("refusing this address")),
        "{}",
        hub.log_text()
    );
    let o = pair(&lap, hub.port, "ZZZZ-0000-0000", &root);
    assert!(!o.status.success(), "{o}");
    laptop_untouched(&lap);
    hub_untouched(&hub);
}

#[test]
fn a_code_given_to_another_server_is_refused() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let osb = Sandbox::new();
    let other = bare_hub(&osb);
    let _its_own = new_code(&osb, &other, &[]);
    let lap = Sandbox::new();
    let o = pair(&lap, other.port, &code, &lap.folder("Sync"));
    o.one_line_error(&["refused"]);
    laptop_untouched(&lap);
    hub_untouched(&other);
    hub_untouched(&hub);
}

#[test]
fn a_man_in_the_middle_is_refused_on_both_sides() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let mitm = Mitm::start(hub.port);
    let lap = Sandbox::new();
    let o = pair(&lap, mitm.port, &code, &lap.folder("Sync"));
    o.one_line_error(&["someone is in between"]);
    assert!(
        wait_until(Duration::from_secs(10), || mitm.relayed() > 0),
        "the relay carried the exchange"
    );
    laptop_untouched(&lap);
    hub_untouched(&hub);
    assert!(
        hub.log_text().contains("a man in the middle"),
        "{}",
        hub.log_text()
    );
}

/// The phone's login as `devices add-phone` printed it.
struct PhoneLogin {
    password: String,
    fingerprint: String,
}

fn add_phone(sb: &Sandbox, hub: &Hub, name: &str) -> PhoneLogin {
    let o = sb
        .filesync_with(&hub.config)
        .args(["devices", "add-phone", name, "--root"])
        .arg(&hub.root.path)
        .ok();
    let field = |k: &str| {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {k} in: {o}"))
    };
    assert_eq!(field("port:"), hub.port.to_string());
    assert_eq!(field("user:"), name);
    assert!(o.stdout.contains(&format!("sftp://{name}@")), "{o}");
    assert!(
        o.stdout.contains('█') || o.stdout.contains('▀'),
        "no QR code: {o}"
    );
    let fingerprint = o
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("ssh-ed25519 "))
        .unwrap_or_else(|| panic!("no ed25519 fingerprint: {o}"))
        .to_string();
    PhoneLogin {
        password: field("password:"),
        fingerprint,
    }
}

fn psftp(hub: &Hub, user: &str, login: &PhoneLogin) -> std::process::Command {
    crate::harness::require("psftp");
    let mut c = std::process::Command::new("psftp");
    c.args(["-batch", "-P", &hub.port.to_string()])
        .args(["-hostkey", &login.fingerprint])
        .args(["-pw", &login.password])
        .arg(format!("{user}@127.0.0.1"));
    c
}

#[test]
fn a_phone_logs_in_with_its_password_until_revoked() {
    use std::io::Write;
    use std::process::Stdio;
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let phone = add_phone(&hsb, &hub, "phone");
    let up = hsb.file("photo.jpg", "pixels\n");
    let script = hsb.file("psftp.batch", &format!("put {} photo.jpg\n", up.display()));
    let o = psftp(&hub, "phone", &phone)
        .arg("-b")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(hub.root.read("photo.jpg"), b"pixels\n");
    // Another device's name with this password, and a wrong password: refused.
    let o = psftp(&hub, "laptop", &phone)
        .arg("-b")
        .arg(&script)
        .output()
        .unwrap();
    assert!(!o.status.success());

    let listed = hsb
        .filesync_with(&hub.config)
        .args(["devices", "--root"])
        .arg(&hub.root.path)
        .ok();
    assert!(
        listed.stdout.contains("phone  password") && listed.stdout.contains("from 127.0.0.1"),
        "{listed}"
    );

    // An open session, ended by the revocation; then no login.
    let mut open = psftp(&hub, "phone", &phone)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = open.stdin.take().unwrap();
    stdin.write_all(b"pwd\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || hub
            .log_text()
            .lines()
            .filter(|l| l.contains("client logged in") && l.contains("device=phone"))
            .count()
            >= 2),
        "{}",
        hub.log_text()
    );
    let o = hsb
        .filesync_with(&hub.config)
        .args(["devices", "revoke", "phone", "--root"])
        .arg(&hub.root.path)
        .ok();
    assert!(o.stdout.contains("1 open sessions ended"), "{o}");
    assert!(
        wait_until(Duration::from_secs(10), || open
            .try_wait()
            .unwrap()
            .is_some()),
        "the open session outlived the revocation"
    );
    drop(stdin);
    let o = psftp(&hub, "phone", &phone)
        .arg("-b")
        .arg(&script)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a revoked phone got in");
}

#[test]
fn a_revoked_laptop_is_refused_at_once() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    assert!(pair(&lap, hub.port, &code, &root).status.success());
    lap.filesync().args(["sync", "hub"]).ok();
    hsb.filesync_with(&hub.config)
        .args(["devices", "revoke", "laptop", "--root"])
        .arg(&hub.root.path)
        .ok();
    let o = lap.filesync().args(["sync", "hub"]).fails();
    assert!(o.stderr.contains("refused"), "{o}");
}

#[test]
fn with_serve_the_hub_pulls_from_the_laptop_on_its_schedule() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &["--every", "1s"]);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let lport = crate::harness::free_port();
    let o = lap
        .filesync()
        .args([
            "pair",
            &format!("127.0.0.1:{}", hub.port),
            &code,
            "--as",
            "laptop",
        ])
        .args(["--serve", &format!("127.0.0.1:{lport}"), "--root"])
        .arg(&root.path)
        .output();
    assert!(o.status.success(), "{o}");
    let config = std::fs::read_to_string(lap.config()).unwrap();
    assert!(
        config.contains("[server]") && config.contains(&format!("127.0.0.1:{lport}")),
        "{config}"
    );
    let devices = std::fs::read_to_string(devices_file(&hub)).unwrap();
    assert!(
        devices.contains(&format!("sftp://filesync@127.0.0.1:{lport}/")),
        "{devices}"
    );

    // The laptop's daemon serves; the hub's schedule finds a new laptop file.
    let _daemon = lap.daemon(&root.path);
    root.write("from-laptop.txt", "pulled\n");
    assert!(
        wait_until(Duration::from_secs(60), || hub
            .root
            .get("from-laptop.txt")
            .is_some()),
        "the hub did not pull; hub log:\n{}",
        hub.log_text()
    );
    assert_eq!(hub.root.read("from-laptop.txt"), b"pulled\n");
}

#[test]
fn a_code_from_the_boot_partition_pairs_once() {
    let hsb = Sandbox::new();
    let boot = hsb.path().join("boot/filesync/pair-code.txt");
    // authorized_keys stays, as Raspberry Pi Imager's first boot fills it with the
    // administrator's keys: the code is still taken.
    let mut hub = Hub::new(&hsb, HubKind::Daemon, &format!("pair_code_file = {boot:?}"));
    // Written on another machine, before the hub ever started.
    let o = Sandbox::new()
        .filesync()
        .args(["pair", "--new", "--file"])
        .arg(&boot)
        .ok();
    let code = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("code: "))
        .unwrap()
        .to_string();
    hub.start();
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let o = pair(&lap, hub.port, &code, &root);
    assert!(o.status.success(), "{o}");
    lap.filesync().args(["sync", "hub"]).ok();
    // Left on the partition, it is not taken again after a restart.
    hub.start();
    let lap2 = Sandbox::new();
    pair(&lap2, hub.port, &code, &lap2.folder("Sync")).one_line_error(&["wrong pairing code"]);
    laptop_untouched(&lap2);
}

/// `filesync pair --new --file BOOT` run elsewhere: the code it wrote.
fn boot_code(boot: &std::path::Path) -> String {
    let o = Sandbox::new()
        .filesync()
        .args(["pair", "--new", "--file"])
        .arg(boot)
        .ok();
    o.stdout
        .lines()
        .find_map(|l| l.strip_prefix("code: "))
        .unwrap()
        .to_string()
}

#[test]
fn a_boot_partition_code_burnt_by_wrong_tries_stays_burnt_after_a_restart() {
    let hsb = Sandbox::new();
    let boot = hsb.path().join("boot/filesync/pair-code.txt");
    let mut hub = Hub::new(&hsb, HubKind::Daemon, &format!("pair_code_file = {boot:?}"));
    std::fs::remove_file(&hub.authorized_keys).unwrap();
    let code = boot_code(&boot);
    hub.start();
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    for _ in 0..3 {
        pair(&lap, hub.port, &changed_secret(&code), &root).one_line_error(&["wrong pairing code"]);
    }
    hub.start();
    pair(&lap, hub.port, &code, &root).one_line_error(&["wrong pairing code"]);
    laptop_untouched(&lap);
    hub_untouched(&hub);
}

#[test]
fn a_boot_partition_code_is_not_taken_once_a_device_is_paired() {
    let hsb = Sandbox::new();
    let boot = hsb.path().join("boot/filesync/pair-code.txt");
    let mut hub = Hub::new(&hsb, HubKind::Daemon, &format!("pair_code_file = {boot:?}"));
    hub.start();
    let first = Sandbox::new();
    let code = new_code(&hsb, &hub, &[]);
    assert!(
        pair(&first, hub.port, &code, &first.folder("Sync"))
            .status
            .success()
    );
    let devices = std::fs::read_to_string(devices_file(&hub)).unwrap();
    let code = boot_code(&boot);
    hub.start();
    let lap = Sandbox::new();
    pair(&lap, hub.port, &code, &lap.folder("Sync")).one_line_error(&["wrong pairing code"]);
    laptop_untouched(&lap);
    assert_eq!(
        std::fs::read_to_string(devices_file(&hub)).unwrap(),
        devices
    );
    assert!(
        hub.log_text().contains("has paired devices already"),
        "{}",
        hub.log_text()
    );
}

#[test]
fn pairing_the_same_laptop_again_replaces_its_entry_and_revoke_ends_it() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let code = new_code(&hsb, &hub, &[]);
    assert!(pair(&lap, hub.port, &code, &root).status.success());
    let code = new_code(&hsb, &hub, &[]);
    let o = pair(&lap, hub.port, &code, &root);
    assert!(o.status.success(), "{o}");
    let devices = std::fs::read_to_string(devices_file(&hub)).unwrap();
    assert_eq!(devices.matches("\"name\"").count(), 1, "{devices}");
    assert!(!devices.contains("laptop-2"), "{devices}");
    hsb.filesync_with(&hub.config)
        .args(["devices", "revoke", "laptop", "--root"])
        .arg(&hub.root.path)
        .ok();
    let o = lap.filesync().args(["sync", "hub"]).fails();
    assert!(o.stderr.contains("refused"), "{o}");
}

/// Announces `_sftp-ssh._tcp` for a hub at `ip:port` from inside `ns`, as avahi does on the
/// Pi (the product has no responder of its own); stops when the sender is dropped.
fn announce(ns: &crate::harness::Netns, ip: &str, port: u16) -> std::sync::mpsc::Sender<()> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let (name, ip) = (ns.name.clone(), ip.to_string());
    std::thread::spawn(move || {
        crate::harness::Netns::enter_named(&name);
        let mdns = mdns_sd::ServiceDaemon::new().expect("mdns daemon");
        let info = mdns_sd::ServiceInfo::new(
            "_sftp-ssh._tcp.local.",
            "filesync on hub",
            "hub.local.",
            ip.as_str(),
            port,
            &[("u", "filesync"), ("path", "/")][..],
        )
        .expect("service info");
        mdns.register(info).expect("register");
        ready.send(()).unwrap();
        let _ = stopped.recv();
        let _ = mdns.shutdown();
    });
    is_ready.recv().unwrap();
    stop
}

#[test]
fn pair_without_a_host_finds_the_hub_on_the_network() {
    use crate::harness::Netns;
    let (hns, lns) = (Netns::new(), Netns::new());
    Netns::cable(&hns, "10.231.7.1", &lns, "10.231.7.2");
    let hsb = Sandbox::new();
    let mut hub = Hub::new(&hsb, HubKind::Daemon, "");
    std::fs::remove_file(&hub.authorized_keys).unwrap();
    let config = std::fs::read_to_string(&hub.config).unwrap();
    std::fs::write(&hub.config, config.replace("127.0.0.1:", "0.0.0.0:")).unwrap();
    hub.netns = Some(hns.name.clone());
    hub.start();
    let code = new_code(&hsb, &hub, &[]);
    let _announced = announce(&hns, "10.231.7.1", hub.port);

    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let run = |args: &[&str]| {
        let c = lap.filesync().args(args).command();
        let o = lns.wrap(&c).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, out) = run(&["pair", &code, "--as", "laptop", "--root", root.s()]);
    assert!(ok, "{out}\nhub log:\n{}", hub.log_text());
    let config = std::fs::read_to_string(lap.config()).unwrap();
    assert!(
        config.contains(&format!("sftp://laptop@10.231.7.1:{}/", hub.port)),
        "{config}"
    );
    hub.root.write("found.txt", "over the cable\n");
    let (ok, out) = run(&["sync", "hub"]);
    assert!(ok, "{out}");
    assert_eq!(root.read("found.txt"), b"over the cable\n");
}

/// Accepts any host key: the test is about what the hub grants, not whom it is.
struct AnyHost;

impl russh::client::Handler for AnyHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Whether the hub grants each of `n` pairing subsystems asked for on one connection.
async fn pairings_granted(port: u16, n: usize) -> Vec<bool> {
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(config, ("127.0.0.1", port), AnyHost)
        .await
        .expect("connect to the hub");
    let auth = h.authenticate_none("filesync-pair").await.expect("auth");
    assert!(auth.success(), "the pairing user is let in");
    let mut granted = Vec::new();
    let mut open = Vec::new();
    for _ in 0..n {
        let mut ch = h.channel_open_session().await.expect("a channel");
        ch.request_subsystem(true, "filesync-pair@filesync")
            .await
            .expect("ask for pairing");
        let answer = loop {
            match ch.wait().await {
                Some(russh::ChannelMsg::Success) => break true,
                Some(russh::ChannelMsg::Failure) | None => break false,
                Some(_) => {}
            }
        };
        granted.push(answer);
        // Kept open, so the first pairing is still running when the next is asked for.
        open.push(ch);
    }
    granted
}

#[test]
fn one_connection_gets_one_pairing() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let _code = new_code(&hsb, &hub, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let granted = rt.block_on(pairings_granted(hub.port, 3));
    assert_eq!(granted, [true, false, false], "{}", hub.log_text());
    assert!(
        hub.log_text()
            .contains("second pairing on one connection refused"),
        "{}",
        hub.log_text()
    );
    hub_untouched(&hub);
}

#[test]
fn a_laptop_config_that_differs_is_refused_before_the_code_is_used() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let elsewhere = lap.folder("Elsewhere");
    let other_hub = "[peers.hub]\nurl = \"sftp://laptop@10.0.0.9:2222/\"\n";
    std::fs::write(
        lap.config(),
        format!("root = {:?}\n{other_hub}", elsewhere.path),
    )
    .unwrap();
    pair(&lap, hub.port, &code, &root).one_line_error(&["--root", "nothing was changed"]);
    hub_untouched(&hub);

    std::fs::write(lap.config(), format!("root = {:?}\n{other_hub}", root.path)).unwrap();
    pair(&lap, hub.port, &code, &root).one_line_error(&["[peers.hub]", "--peer"]);
    hub_untouched(&hub);
    assert!(!lap.path().join("id_ed25519").exists(), "key written");

    // The same code still pairs, under the name asked for; the other hub's entry stays.
    let o = lap
        .filesync()
        .args(["pair", &format!("127.0.0.1:{}", hub.port), &code])
        .args(["--as", "laptop", "--peer", "pi"])
        .output();
    assert!(o.status.success(), "{o}");
    let config = std::fs::read_to_string(lap.config()).unwrap();
    assert!(config.contains(other_hub), "{config}");
    assert!(config.contains("[peers.pi]"), "{config}");
    lap.filesync().args(["sync", "pi"]).ok();
}

#[test]
fn pairing_with_a_reimaged_hub_replaces_its_old_known_hosts_lines() {
    let hsb = Sandbox::new();
    let mut hub = bare_hub(&hsb);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    assert!(
        pair(&lap, hub.port, &new_code(&hsb, &hub, &[]), &root)
            .status
            .success()
    );
    let known = lap.home().join(".ssh/known_hosts");
    let mine = "# my own hosts\ngithub.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
    let before = std::fs::read_to_string(&known).unwrap();
    std::fs::write(&known, format!("{mine}{before}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o640)).unwrap();

    // Re-imaged: a fresh state folder, so new host keys and no devices, on the same port.
    assert!(hub.terminate(Duration::from_secs(10)));
    std::fs::remove_dir_all(hub.host_key.parent().unwrap()).unwrap();
    hub.start();
    let o = pair(&lap, hub.port, &new_code(&hsb, &hub, &[]), &root);
    assert!(o.status.success(), "{o}");
    let after = std::fs::read_to_string(&known).unwrap();
    assert!(after.starts_with(mine), "{after}");
    let ours: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with(&format!("[127.0.0.1]:{} ", hub.port)))
        .collect();
    let want = hub.known_hosts();
    assert_eq!(ours.len(), want.lines().count(), "{after}");
    for l in want.lines() {
        let key = l.split_whitespace().nth(2).unwrap();
        assert!(
            ours.iter().any(|o| o.contains(key)),
            "{l} missing:\n{after}"
        );
    }
    let mode = std::fs::metadata(&known).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    root.write("after-reimage.txt", "still syncing\n");
    lap.filesync().args(["sync", "hub"]).ok();
    assert_eq!(hub.root.read("after-reimage.txt"), b"still syncing\n");
}

#[test]
fn serve_on_an_address_that_is_not_this_machines_is_refused() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    // 192.0.2.0/24 is for documentation: never an address of this machine.
    let o = lap
        .filesync()
        .args(["pair", &format!("127.0.0.1:{}", hub.port), &code])
        .args(["--serve", "192.0.2.7:2222", "--root"])
        .arg(&root.path)
        .output();
    o.one_line_error(&["--serve", "192.0.2.7", "not an address of this machine"]);
    laptop_untouched(&lap);
    hub_untouched(&hub);
    // The code was not used.
    assert!(pair(&lap, hub.port, &code, &root).status.success());
}

#[test]
fn pairing_the_same_key_again_ends_the_old_entrys_sessions() {
    use std::io::Write;
    use std::process::Stdio;
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    assert!(
        pair(&lap, hub.port, &new_code(&hsb, &hub, &[]), &root)
            .status
            .success()
    );
    crate::harness::require("sftp");
    let mut open = std::process::Command::new("sftp")
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            lap.home().join(".ssh/known_hosts").display()
        ))
        .args(["-P", &hub.port.to_string(), "-i"])
        .arg(lap.path().join("id_ed25519"))
        .arg("laptop@127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = open.stdin.take().unwrap();
    stdin.write_all(b"pwd\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || hub.log_text().lines().any(
            |l| l.contains("client logged in") && l.contains("device=laptop")
        )),
        "{}",
        hub.log_text()
    );
    let o = pair(&lap, hub.port, &new_code(&hsb, &hub, &[]), &root);
    assert!(o.status.success(), "{o}");
    // OpenSSH sftp notices a closed connection at its next command.
    let _ = stdin.write_all(b"ls\n");
    assert!(
        wait_until(Duration::from_secs(10), || open
            .try_wait()
            .unwrap()
            .is_some()),
        "the old entry's session outlived the pairing again; hub log:\n{}",
        hub.log_text()
    );
    assert!(!open.wait().unwrap().success());
    drop(stdin);
    assert!(
        hub.log_text().contains("its sessions ended"),
        "{}",
        hub.log_text()
    );
}

#[test]
fn a_device_that_cannot_be_added_leaves_the_hubs_known_hosts_as_it_was() {
    let hsb = Sandbox::new();
    let hub = bare_hub(&hsb);
    let code = new_code(&hsb, &hub, &[]);
    let state = hub.host_key.parent().unwrap().to_path_buf();
    let known = state.join("known_hosts");
    std::fs::write(&known, "# the hub's pulls\n").unwrap();
    // A devices file broken by hand: the device cannot be added.
    std::fs::write(state.join("devices.json"), "{ not json").unwrap();
    let lap = Sandbox::new();
    let root = lap.folder("Sync");
    let lport = crate::harness::free_port();
    let o = lap
        .filesync()
        .args(["pair", &format!("127.0.0.1:{}", hub.port), &code])
        .args(["--serve", &format!("127.0.0.1:{lport}"), "--root"])
        .arg(&root.path)
        .output();
    o.one_line_error(&["devices file", "damaged"]);
    laptop_untouched(&lap);
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        "# the hub's pulls\n"
    );
}

#[test]
fn the_state_folder_is_the_configs_not_the_host_keys() {
    let hsb = Sandbox::new();
    let mut hub = Hub::new(&hsb, HubKind::Daemon, "");
    std::fs::remove_file(&hub.authorized_keys).unwrap();
    let keys = hub.host_key.parent().unwrap().to_path_buf();
    let state = hsb.path().join("hub/var");
    let config = std::fs::read_to_string(&hub.config).unwrap();
    let config = config.replace(
        &format!("state_dir = {keys:?}"),
        &format!("state_dir = {state:?}"),
    );
    std::fs::write(&hub.config, config).unwrap();
    hub.start();
    let lap = Sandbox::new();
    let code = new_code(&hsb, &hub, &[]);
    assert!(
        pair(&lap, hub.port, &code, &lap.folder("Sync"))
            .status
            .success()
    );
    assert!(state.join("devices.json").exists());
    assert!(!keys.join("devices.json").exists());
    assert!(hub.host_key.exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn an_upgraded_hub_keeps_the_state_beside_its_host_key() {
    let hsb = Sandbox::new();
    let mut hub = Hub::started(&hsb, HubKind::Daemon, "");
    let lap = Sandbox::new();
    let code = new_code(&hsb, &hub, &[]);
    assert!(
        pair(&lap, hub.port, &code, &lap.folder("Sync"))
            .status
            .success()
    );
    // The config of a hub from before `state_dir`: its state sits beside the host key.
    let keys = hub.host_key.parent().unwrap().to_path_buf();
    let config = std::fs::read_to_string(&hub.config).unwrap();
    let config = config.replace(&format!("state_dir = {keys:?}\n"), "");
    assert!(!config.contains("state_dir"), "{config}");
    std::fs::write(&hub.config, config).unwrap();
    hub.start();
    let log = hub.log_text();
    assert!(
        log.contains("set [server] state_dir") && log.contains(&*keys.to_string_lossy()),
        "{log}"
    );
    let listed = hsb
        .filesync_with(&hub.config)
        .args(["devices", "--root"])
        .arg(&hub.root.path)
        .ok();
    assert!(listed.stdout.starts_with("laptop  key"), "{listed}");
}
