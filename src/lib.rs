//! filesync: keep folders on several machines in sync over SSH/SFTP.
//!
//! Data flows one way: disk → `scan` → `index` → `plan` → `sync` → `store` → disk.
//! `index` and `plan` are pure; the I/O lives in `scan`, `store` and the commands.

pub mod ciphers;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod endpoint;
pub mod index;
pub mod logging;
pub mod plan;
pub mod proto;
pub mod relpath;
pub mod replica;
pub mod scan;
pub mod server;
pub mod store;
pub mod sync;
pub mod sys;
pub mod time;
pub mod watch;
