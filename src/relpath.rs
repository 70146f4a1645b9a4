//! `RelPath`: a relative, normalized path that can only name something inside a replica root.
//!
//! Built once at the edge (scan, a remote index, an SFTP client) and trusted everywhere after.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

/// A path below a replica root: `/`-separated UTF-8 components, none empty, `.` or `..`, no
/// NUL, no backslash-free tricks needed because we never hand it to a shell. The empty path
/// is the root itself.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath(Text);

/// Paths up to this many bytes are kept inline.
const INLINE: usize = 22;

/// A path's text: a short one inline, a longer one in a heap block of its own. An index
/// holds a million paths, and a heap block costs its size rounded up plus a header (a
/// 20-byte path takes 32 bytes of heap beside its 16-byte pointer).
#[derive(Clone)]
enum Text {
    /// The length and the bytes of a whole `str` of at most `INLINE` bytes.
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            // SAFETY: `Inline` is made only by `From<&str>` (the bytes of a whole `str`) and
            // `joined` (two whole `str`s around an ASCII `/`), with their length, and never
            // changed after: the bytes up to the length are valid UTF-8.
            Text::Inline(n, b) => unsafe { std::str::from_utf8_unchecked(&b[..usize::from(*n)]) },
            Text::Heap(s) => s,
        }
    }
}

impl Text {
    /// `dir/name`, with no heap block in between when it is short.
    fn joined(dir: &str, name: &str) -> Self {
        let n = dir.len() + 1 + name.len();
        if n > INLINE {
            return Text::Heap(format!("{dir}/{name}").into_boxed_str());
        }
        let mut b = [0; INLINE];
        b[..dir.len()].copy_from_slice(dir.as_bytes());
        b[dir.len()] = b'/';
        b[dir.len() + 1..n].copy_from_slice(name.as_bytes());
        Text::Inline(n as u8, b)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut b = [0; INLINE];
            b[..s.len()].copy_from_slice(s.as_bytes());
            Text::Inline(s.len() as u8, b)
        } else {
            Text::Heap(s.into())
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            Text::from(s.as_str())
        } else {
            Text::Heap(s.into_boxed_str())
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::from("")
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The longest file name (in bytes) any file system we run on takes.
pub const NAME_MAX: usize = 255;

/// The longest prefix of `name` (on a character boundary) that leaves `reserve` bytes free
/// under `NAME_MAX`, so a temp, trash or conflict name built from it is still valid.
pub fn fit_name(name: &str, reserve: usize) -> &str {
    let max = NAME_MAX.saturating_sub(reserve);
    if name.len() <= max {
        return name;
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelPathError {
    #[error("path component {0:?} is not allowed (empty, `.`, `..`, or contains `/` or NUL)")]
    BadComponent(String),
    /// Named by its first characters only: the name itself may be enormous.
    #[error("the name {0:?}… is {1} bytes long; no file system takes more than {NAME_MAX}")]
    TooLong(String, usize),
    #[error("path is not valid UTF-8")]
    NotUtf8,
    #[error("path {0:?} is absolute")]
    Absolute(String),
}

impl RelPath {
    pub fn root() -> Self {
        RelPath(Text::default())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks one file name: what a directory listing or an index key may contain.
    pub fn check_name(name: &str) -> Result<(), RelPathError> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(RelPathError::BadComponent(name.to_string()));
        }
        if name.len() > NAME_MAX {
            let start: String = name.chars().take(24).collect();
            return Err(RelPathError::TooLong(start, name.len()));
        }
        Ok(())
    }

    /// Parses a strict relative path (`a/b/c`): what an index or a peer sends us.
    pub fn parse(s: &str) -> Result<Self, RelPathError> {
        if s.is_empty() {
            return Ok(Self::root());
        }
        if s.starts_with('/') {
            return Err(RelPathError::Absolute(s.to_string()));
        }
        for c in s.split('/') {
            Self::check_name(c)?;
        }
        Ok(RelPath(s.into()))
    }

    /// Resolves a client-supplied path lexically against the root: leading `/`, `.`, empty
    /// components and `..` are folded; `..` never climbs above the root (like `chroot`).
    pub fn normalize_client(s: &str) -> Result<Self, RelPathError> {
        if s.contains('\0') {
            return Err(RelPathError::BadComponent(s.to_string()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        Ok(RelPath(parts.join("/").into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn join(&self, name: &str) -> Result<Self, RelPathError> {
        Self::check_name(name)?;
        Ok(self.join_unchecked(name))
    }

    /// Joins a name already known to be valid (it came from a `RelPath` or was checked).
    pub(crate) fn join_unchecked(&self, name: &str) -> Self {
        if self.0.is_empty() {
            RelPath(name.into())
        } else {
            RelPath(Text::joined(&self.0, name))
        }
    }

    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].into()),
            None => RelPath::root(),
        })
    }

    /// Last component; empty for the root.
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || self.0 == other.0
            || (self.0.starts_with(&*other.0)
                && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// All proper ancestors, nearest first, excluding the root.
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.0
            .char_indices()
            .filter(|&(_, c)| c == '/')
            .map(|(i, _)| RelPath(self.0[..i].into()))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
    }

    /// The path on this machine below `root`. Safe because every component was checked.
    pub fn to_path(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in self.components() {
            p.push(c);
        }
        p
    }

    /// Builds a `RelPath` from a path found under `root` on disk (scan, watcher).
    pub fn from_fs(root: &Path, path: &Path) -> Result<Self, RelPathError> {
        let rel = path
            .strip_prefix(root)
            .map_err(|_| RelPathError::Absolute(path.display().to_string()))?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(os) => {
                    let s = os.to_str().ok_or(RelPathError::NotUtf8)?;
                    Self::check_name(s)?;
                    parts.push(s);
                }
                std::path::Component::CurDir => {}
                _ => return Err(RelPathError::BadComponent(rel.display().to_string())),
            }
        }
        Ok(RelPath(parts.join("/").into()))
    }
}

impl Ord for RelPath {
    /// Component-wise, so a folder's descendants sort right after it (`a`, `a/b`, `a b`).
    /// Computed byte-wise with `/` ranked below every other byte: names hold neither `/` nor
    /// NUL, so this is the same order without splitting strings on every comparison.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let rank = |c: u8| if c == b'/' { 0 } else { c };
        match a.iter().zip(b).position(|(x, y)| x != y) {
            Some(i) => rank(a[i]).cmp(&rank(b[i])),
            None => a.len().cmp(&b.len()),
        }
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_escapes() {
        for bad in ["/a", "a/../b", "..", "a//b", "a/./b", "a/", "a\0b"] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(RelPath::parse("a/b c/ü\nx").unwrap().as_str(), "a/b c/ü\nx");
    }

    #[test]
    fn client_paths_stay_inside() {
        for (input, want) in [
            ("/", ""),
            ("", ""),
            ("../../etc/passwd", "etc/passwd"),
            ("/a/./b//c/..", "a/b"),
            ("a/../../..", ""),
            ("//x", "x"),
        ] {
            assert_eq!(RelPath::normalize_client(input).unwrap().as_str(), want);
        }
        assert!(RelPath::normalize_client("a\0").is_err());
    }

    #[test]
    fn order_keeps_subtrees_together() {
        let mut v: Vec<RelPath> = ["a b", "a/b", "a", "a.b", "a/b/c", "b"]
            .iter()
            .map(|s| RelPath::parse(s).unwrap())
            .collect();
        v.sort();
        let s: Vec<&str> = v.iter().map(|p| p.as_str()).collect();
        assert_eq!(s, ["a", "a/b", "a/b/c", "a b", "a.b", "b"]);
    }

    proptest::proptest! {
        #[test]
        fn byte_order_is_component_order(
            a in proptest::collection::vec("[ a/.!-]{1,3}", 1..4),
            b in proptest::collection::vec("[ a/.!-]{1,3}", 1..4),
        ) {
            let mk = |v: &Vec<String>| {
                let parts: Vec<&str> = v.iter().flat_map(|s| s.split('/')).filter(|c| !c.is_empty() && *c != "." && *c != "..").collect();
                RelPath(parts.join("/").into())
            };
            let (a, b) = (mk(&a), mk(&b));
            proptest::prop_assert_eq!(a.cmp(&b), a.components().cmp(b.components()));
        }
    }

    proptest::proptest! {
        /// Paths kept inline and on the heap, however they were made, are the same paths.
        #[test]
        fn short_and_long_paths_are_alike(
            names in proptest::collection::vec("[aé/]{0,3}[bü]{1,12}", 1..5),
        ) {
            let names: Vec<String> = names.iter().map(|n| n.replace('/', "")).collect();
            let joined = names
                .iter()
                .try_fold(RelPath::root(), |p, n| p.join(n))
                .unwrap();
            let text = names.join("/");
            let parsed = RelPath::parse(&text).unwrap();
            proptest::prop_assert_eq!(joined.as_str(), text.as_str());
            proptest::prop_assert_eq!(&joined, &parsed);
            let hash = |p: &RelPath| {
                use std::hash::{BuildHasher, BuildHasherDefault};
                BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                    .hash_one(p)
            };
            proptest::prop_assert_eq!(hash(&joined), hash(&parsed));
            proptest::prop_assert_eq!(joined.parent().map(|p| p.as_str().to_string()),
                text.rfind('/').map(|i| text[..i].to_string()).or(Some(String::new())));
        }
    }

    #[test]
    fn a_path_stays_small() {
        assert_eq!(size_of::<RelPath>(), 24);
        assert_eq!(size_of::<Option<RelPath>>(), 24);
    }

    #[test]
    fn parent_name_ancestors() {
        let p = RelPath::parse("a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.name(), "c");
        let anc: Vec<String> = p.ancestors().map(|a| a.as_str().to_string()).collect();
        assert_eq!(anc, ["a/b", "a"]);
        assert!(p.starts_with(&RelPath::parse("a").unwrap()));
        assert!(
            !RelPath::parse("ab")
                .unwrap()
                .starts_with(&RelPath::parse("a").unwrap())
        );
    }
}
