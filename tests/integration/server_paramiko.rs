//! The SFTP server driven by Python paramiko (scripts in `tests/clients/`).

use crate::harness::*;

#[test]
fn paramiko_basic_operations() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    hub.python_ok("basic.py", &[]);
}

#[test]
fn paramiko_escapes_are_refused() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Serve, "");
    hub.root.write("inside.txt", b"in");
    hub.root.symlink(&hub.outside.path, "link_out");
    hub.start();
    let before = hub.outside.snapshot();
    hub.python_ok("escapes.py", &[hub.outside.s()]);
    assert_eq!(hub.outside.snapshot(), before, "outside changed");
}

#[test]
fn twenty_clients_each_move_a_hundred_files() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    hub.python_ok("parallel.py", &["20", "100"]);
}

#[test]
fn read_only_server_refuses_every_change() {
    let sb = Sandbox::new();
    let mut hub = Hub::new(&sb, HubKind::Serve, "read_only = true\n");
    hub.root.write("present.txt", b"here");
    hub.start();
    let before = hub.root.snapshot();
    hub.python_ok("readonly.py", &[]);
    assert_eq!(hub.root.snapshot(), before, "the read-only root changed");
}

#[test]
fn several_clients_move_big_files_at_once() {
    let sb = Sandbox::new();
    let hub = Hub::started(&sb, HubKind::Serve, "");
    hub.python_ok("bigmulti.py", &["4", "16"]);
}
