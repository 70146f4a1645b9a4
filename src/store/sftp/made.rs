//! The temps one connection made and has not yet put in place nor removed. A sync stopped
//! half-way (Ctrl-C, SIGTERM, a failed step) removes them before it lets go of the far
//! side's lock, so no phone ever sees them; what a lost connection leaves goes at the next
//! sync's scan.

use super::Sftp;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Mutex;

/// Removals in flight at once.
const DEPTH: usize = 64;

#[derive(Default)]
pub(super) struct Made(Mutex<HashSet<String>>);

impl Made {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A temp about to be created at remote path `path`.
    pub(super) fn add(&self, path: &str) {
        self.set().insert(path.to_string());
    }

    /// A temp put in place or removed.
    pub(super) fn done(&self, path: &str) {
        self.set().remove(path);
    }

    fn take(&self) -> Vec<String> {
        self.set().drain().collect()
    }
}

impl Sftp {
    /// Removes every temp this connection made and did not put in place; how many were there.
    /// Each channel first answers a cheap request: a server answers a channel's requests in
    /// order, so a write sent before it (by a step dropped half-way) has landed by then, and
    /// its temp is there to be removed rather than made just after.
    pub(super) async fn remove_made_temps(&self) -> usize {
        let temps = self.made.take();
        if temps.is_empty() {
            return 0;
        }
        let root = self.root.as_str();
        futures::future::join_all(self.sessions.iter().map(|s| s.lstat(root))).await;
        // Spread over the channels: a server answers each channel's removes one by one.
        let removed = futures::stream::iter(temps)
            .map(|t| {
                let raw = self.raw();
                async move { raw.remove(t).await.is_ok() }
            })
            .buffer_unordered(DEPTH)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        if removed > 0 {
            tracing::info!(
                "removed {removed} temp files this sync had not put in place on {}",
                self.host
            );
        }
        removed
    }
}
