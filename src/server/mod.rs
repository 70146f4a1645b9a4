//! The SFTP server (russh + russh-sftp): every client path confined to the replica root.

use crate::config::Config;
use std::path::Path;

/// Runs the SFTP server in the foreground until SIGINT/SIGTERM.
pub async fn serve_foreground(
    _cfg: &Config,
    _root: &Path,
    _listen: Option<String>,
) -> anyhow::Result<()> {
    anyhow::bail!("the SFTP server is not built yet")
}
