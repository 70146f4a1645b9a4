//! A local replica's index as a sync starts: loaded and brought up to date by a walk of
//! the folder, or loaded alone when this machine's daemon vouched for it.

use super::{LocalStore, remove_leftover_temps};
use crate::index::journal::Token;
use crate::index::{ContentHash, Index};
use crate::relpath::RelPath;
use crate::scan::ScanStats;
use crate::store::{Current, StoreError};

impl LocalStore {
    /// `current_index` on this thread, and whether `.sync` was there (a new one is not yet
    /// on disk, even for an empty folder). Leftover temps go only `under_lock`.
    pub fn current_blocking(&self, under_lock: bool) -> Result<(Current, bool), StoreError> {
        // Files our SFTP clients closed a moment ago are finished: take them in this scan.
        self.writers.settle();
        // Parsing `.sync` and walking the folder do not depend on each other.
        let scope = RelPath::root();
        let (loaded, walked) = rayon::join(
            || self.load_index_token(),
            || crate::scan::local::walk(&self.root, &scope),
        );
        let loaded = loaded?;
        let existed = loaded.is_some();
        let (mut index, digest, token) = self.or_new(loaded);
        let walked = walked?;
        let busy = self.busy();
        let mut stats = crate::scan::scan_walked(&self.root, &mut index, &scope, walked, &|p| {
            busy.contains(p)
        });
        stats.writing = self.writers.among(&stats.moving);
        remove_leftover_temps(&self.root, &stats.temps, under_lock);
        let current = Current {
            index,
            loaded: digest,
            stats,
            token,
        };
        Ok((current, existed))
    }

    /// The index as loaded, with no walk: the daemon's refresh (`stats`, what it left as it
    /// was) made it current just before. A load that found no index, or its journal damaged
    /// (what that held is known only to a walk), walks after all.
    pub(super) fn vouched_blocking(
        &self,
        stats: ScanStats,
        under_lock: bool,
    ) -> Result<Current, StoreError> {
        let loaded = self.load_index_token()?;
        if loaded.is_none() || self.take_rescan_due() {
            return self.current_blocking(under_lock).map(|(c, _)| c);
        }
        let (index, loaded, token) = self.or_new(loaded);
        Ok(Current {
            index,
            loaded,
            stats,
            token,
        })
    }

    /// A loaded index (a new one when there was none), its entries digest and token.
    fn or_new(
        &self,
        loaded: Option<(Index, bool, Option<Token>)>,
    ) -> (Index, ContentHash, Option<Token>) {
        match loaded {
            Some((index, false, token)) => {
                let digest = index.entries_digest();
                (index, digest, token)
            }
            // A digest no index has: the commit then writes the index, with its home.
            Some((index, true, _)) => (index, ContentHash([0; 32]), None),
            None => (self.new_index(), ContentHash([0; 32]), None),
        }
    }
}
