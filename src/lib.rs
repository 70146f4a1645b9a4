//! filesync: keep folders on several machines in sync over SSH/SFTP.
//!
//! Data flows one way: disk → `scan`/`watch` → `index` → `plan` → `sync` → `store` → disk.
//! Dependencies point one way too: `app` → `daemon` → {`server`, `watch`, `sync`} → `store`
//! → {`scan`, `replica`, `proto`} → `index` → `relpath`. `index`, `plan` and `delta` are pure.

pub mod app;
pub mod config;
pub mod config_edit;
pub mod daemon;
pub mod delta;
pub mod endpoint;
pub mod history;
pub mod index;
pub mod pair;
pub mod plan;
pub mod proto;
pub mod relpath;
pub mod replica;
pub mod scan;
#[cfg(unix)] // serves through descriptors; Windows laptops sync, the hub pulls over OpenSSH
pub mod server;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod sys;
pub mod time;
pub mod watch;
