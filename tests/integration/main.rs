//! The end-to-end tests, one binary: the real `filesync` against real folders, our own server
//! and OpenSSH's, driven by real clients. `harness` is what they share.

mod harness;

mod accounted;
mod daemon_notify;
mod daemon_schedule;
mod daemon_stop;
mod daemon_watch;
mod hub_phone;
mod remote;
mod server_abuse;
mod server_auth;
mod server_clients;
mod server_openssh;
mod server_paramiko;
mod server_sessions;
mod server_stacks;
mod sync_faults;
mod sync_local;
mod sync_modes;
mod sync_names;
