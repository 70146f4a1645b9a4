//! The SFTP server (russh + russh-sftp): every client path confined to the replica root.

use crate::config::{Config, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Setup(String),
}

/// A server whose keys are loaded and whose listener is bound (so READY may be sent).
pub struct BoundServer {
    addr: SocketAddr,
    _root: PathBuf,
}

/// Loads the host key and authorized keys and binds the listener; every problem is a clear error.
pub async fn bind(_cfg: &ServerConfig, root: &Path) -> Result<BoundServer, ServerError> {
    Err(ServerError::Setup(format!(
        "the SFTP server is not built yet (root {})",
        root.display()
    )))
}

impl BoundServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` turns true, then closes sessions cleanly.
    pub async fn run(self, _shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
        Ok(())
    }
}

/// Runs the SFTP server in the foreground until SIGINT/SIGTERM.
pub async fn serve_foreground(
    _cfg: &Config,
    _root: &Path,
    _listen: Option<String>,
) -> anyhow::Result<()> {
    anyhow::bail!("the SFTP server is not built yet")
}
