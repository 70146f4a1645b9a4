//! The one ignore-rule stack: the built-in names apps use for files they are still writing,
//! then each folder's `.syncignore`, outermost first. Gitignore precedence: of the rules in
//! force at a path, the deepest that says anything decides, so `!*.part` in a `.syncignore`
//! brings back what a built-in rule leaves out. The local and the remote walk, the watcher
//! and the planner's "is this still ours" all ask this one type.

use crate::relpath::RelPath;
use crate::replica::layout::is_internal;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Names phone and desktop apps, browsers and editors give files they are still writing
/// (renamed into place when done): never worth shipping half-written to another machine.
pub const BUILT_IN: &[&str] = &[
    "*.part",
    "*.crdownload",
    "*.tmp",
    "~$*",
    ".~lock.*#",
    "*.swp",
];

/// Paths are matched under this made-up base: matchers need a common prefix, not a real
/// folder, so rules read from a remote folder judge exactly as local ones do.
fn virt(p: &RelPath) -> PathBuf {
    p.to_path(Path::new("/r"))
}

/// One folder's `.syncignore`, as matchers.
#[derive(Clone)]
pub struct IgnoreFile {
    dir: RelPath,
    gi: Arc<Gitignore>,
}

/// Ignore rules keyed by the folder whose `.syncignore` they come from, outermost first;
/// the built-in rules first of all, as if in a file above the root.
#[derive(Clone)]
pub struct Rules {
    stack: Arc<Vec<IgnoreFile>>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dirs: Vec<&str> = self.files().map(RelPath::as_str).collect();
        f.debug_struct("Rules").field("files_in", &dirs).finish()
    }
}

fn matcher(dir: &RelPath, lines: impl Iterator<Item = impl AsRef<str>>) -> Arc<Gitignore> {
    let mut b = GitignoreBuilder::new(virt(dir));
    for line in lines {
        // A line that is no valid pattern is skipped, as git skips it.
        let _ = b.add_line(None, line.as_ref());
    }
    Arc::new(b.build().unwrap_or_else(|_| Gitignore::empty()))
}

impl std::fmt::Debug for IgnoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IgnoreFile({})", self.dir)
    }
}

impl IgnoreFile {
    /// The rules of folder `dir`'s `.syncignore`, from its bytes.
    pub fn parse(dir: &RelPath, bytes: &[u8]) -> IgnoreFile {
        let text = String::from_utf8_lossy(bytes);
        IgnoreFile {
            dir: dir.clone(),
            gi: matcher(dir, text.lines()),
        }
    }
}

impl Rules {
    /// The built-in rules alone: what governs the root's own entries without a `.syncignore`.
    pub fn built_in() -> Rules {
        let built_in = IgnoreFile {
            dir: RelPath::root(),
            gi: matcher(&RelPath::root(), BUILT_IN.iter()),
        };
        Rules {
            stack: Arc::new(vec![built_in]),
        }
    }

    /// These rules, plus these `.syncignore` files (deeper ones take precedence).
    pub fn with_files(&self, files: impl IntoIterator<Item = IgnoreFile>) -> Rules {
        let mut stack = (*self.stack).clone();
        let before = stack.len();
        stack.extend(files);
        if stack.len() == before {
            return self.clone();
        }
        // Stable: the built-in rules stay ahead of the root's own file.
        stack.sort_by_key(|f| f.dir.depth());
        Rules {
            stack: Arc::new(stack),
        }
    }

    /// The folders whose `.syncignore` these rules hold.
    pub fn files(&self) -> impl Iterator<Item = &RelPath> {
        self.stack.iter().skip(1).map(|f| &f.dir)
    }

    /// Whether the rules in force at `p` (those of the folders above it) exclude it.
    pub fn excludes(&self, p: &RelPath, is_dir: bool) -> bool {
        let full = virt(p);
        let in_force = self
            .stack
            .iter()
            .rev()
            .filter(|f| p.starts_with(&f.dir) && *p != f.dir);
        for f in in_force {
            match f.gi.matched(&full, is_dir) {
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
                ignore::Match::None => {}
            }
        }
        false
    }

    /// True when a walk would leave `p` out: it is ours, or the rules exclude it or one of its
    /// folders, judged as the walk judges (each folder on the way down by the rules above it;
    /// an excluded folder hides all below it). `is_dir` tells whether a path is a folder now:
    /// asked of `p` (`build/` matches folders only) and of the folders on the way down. A
    /// folder that is gone hides nothing: what was below it is gone with it, even where an
    /// ignore file that went with it had re-included it.
    pub fn leaves_out(&self, p: &RelPath, is_dir: &dyn Fn(&RelPath) -> bool) -> bool {
        if is_internal(p) {
            return true;
        }
        let mut way: Vec<RelPath> = p.ancestors().collect();
        way.reverse();
        for q in &way {
            if self.excludes(q, true) {
                return true;
            }
            if !is_dir(q) {
                return false;
            }
        }
        self.excludes(p, is_dir(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn built_in_names_are_left_out_unless_a_syncignore_brings_them_back() {
        let r = Rules::built_in();
        for name in [
            "IMG_1.jpg.part",
            "DCIM/IMG_1.jpg.part",
            "dl/a.zip.crdownload",
            "x.tmp",
            "docs/~$report.docx",
            "docs/.~lock.report.odt#",
            ".notes.txt.swp",
        ] {
            assert!(r.excludes(&p(name), false), "{name}");
        }
        for name in ["IMG_1.jpg", "partial.txt", "tmp/a", "a~$b", "report.docx"] {
            assert!(!r.excludes(&p(name), false), "{name}");
        }
        let back = r.with_files([IgnoreFile::parse(&RelPath::root(), b"!*.part\n")]);
        assert!(!back.excludes(&p("DCIM/IMG_1.jpg.part"), false));
        assert!(back.excludes(&p("x.tmp"), false));
        let deeper = r.with_files([IgnoreFile::parse(&p("keep"), b"!*.tmp\n")]);
        assert!(!deeper.excludes(&p("keep/x.tmp"), false));
        assert!(deeper.excludes(&p("other/x.tmp"), false));
    }
}
