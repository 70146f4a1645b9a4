//! The SFTP server driven by Python paramiko (scripts in `tests/clients/`).

mod common;

use common::server::{Fixture, show, snapshot};

#[test]
fn paramiko_basic_operations() {
    let fx = Fixture::new();
    let srv = fx.start();
    let o = srv.paramiko("basic.py", &fx.key, &[]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
}

#[test]
fn paramiko_escapes_are_refused() {
    let fx = Fixture::new();
    std::fs::write(fx.root.join("inside.txt"), b"in").unwrap();
    std::os::unix::fs::symlink(&fx.outside, fx.root.join("link_out")).unwrap();
    let srv = fx.start();
    let before = snapshot(&fx.outside);
    let outside = fx.outside.to_str().unwrap();
    let o = srv.paramiko("escapes.py", &fx.key, &[outside]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
    assert_eq!(snapshot(&fx.outside), before, "outside changed");
}

#[test]
fn twenty_clients_each_move_a_hundred_files() {
    let fx = Fixture::new();
    let srv = fx.start();
    let o = srv.paramiko("parallel.py", &fx.key, &["20", "100"]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
}

#[test]
fn read_only_server_refuses_every_change() {
    let fx = Fixture::with_config("read_only = true\n");
    std::fs::write(fx.root.join("present.txt"), b"here").unwrap();
    let srv = fx.start();
    let before = snapshot(&fx.root);
    let o = srv.paramiko("readonly.py", &fx.key, &[]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
    assert_eq!(snapshot(&fx.root), before, "the read-only root changed");
}

#[test]
fn several_clients_move_big_files_at_once() {
    let fx = Fixture::new();
    let srv = fx.start();
    let o = srv.paramiko("bigmulti.py", &fx.key, &["4", "16"]);
    assert!(o.status.success(), "{}\nlog:\n{}", show(&o), srv.log_text());
}
