//! The daemon: watch the folder, keep `.sync` current, serve SFTP, sync peers on a schedule.

use crate::config::Config;
use std::path::Path;

/// Runs until SIGTERM/SIGINT.
pub async fn run(_cfg: &Config, _root: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the daemon is not built yet")
}
