//! The end-to-end tests, one binary: the real `filesync` against real folders, our own server
//! and OpenSSH's, driven by real clients. `harness` is what they share.

/// One test module per backend, each running the scenarios on a `Pair` of that kind: `local`
/// (two folders), `serve` (our hub, `filesync serve`), `daemon` (the hub daemon, whose watcher
/// answers the index refresh), `sshd` (plain OpenSSH). Each test is `FILE::BACKEND::SCENARIO`.
macro_rules! on_backends {
    ([$($backend:ident),* $(,)?] $scenarios:tt) => {
        $( on_backends!(@one $backend $scenarios); )*
    };
    (@one local $scenarios:tt) => {
        on_backends!(@mod local (crate::harness::Pair::local()) $scenarios);
    };
    (@one serve $scenarios:tt) => {
        on_backends!(@mod serve
            (crate::harness::Pair::hub(crate::harness::HubKind::Serve)) $scenarios);
    };
    (@one daemon $scenarios:tt) => {
        on_backends!(@mod daemon
            (crate::harness::Pair::hub(crate::harness::HubKind::Daemon)) $scenarios);
    };
    (@one sshd $scenarios:tt) => {
        on_backends!(@mod sshd (crate::harness::Pair::sshd()) $scenarios);
    };
    (@mod $name:ident ($pair:expr) ($($s:ident),* $(,)?)) => {
        mod $name {
            $( #[test] fn $s() { super::$s(&mut $pair); } )*
        }
    };
}

mod harness;

mod accounted;
mod daemon_notify;
mod daemon_schedule;
mod daemon_stop;
mod daemon_watch;
mod history;
mod hub_phone;
mod index_journal;
mod pairing;
mod remote;
mod server_abuse;
mod server_apps;
mod server_auth;
mod server_clients;
mod server_openssh;
mod server_paramiko;
mod server_sessions;
mod server_stacks;
mod sync_delta;
mod sync_faults;
mod sync_fold;
mod sync_local;
mod sync_modes;
mod sync_names;
mod sync_settled;
