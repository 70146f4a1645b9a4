//! Which names a replica's file system tells apart and which it can hold, found by trying
//! (`Root::probe_names`), never assumed from the OS: APFS and NTFS fold case, APFS (and HFS+)
//! the Unicode normalization of a name, a FAT stick both and refuses Windows' reserved names;
//! ext4 on a Mac-formatted disk image, or a case-sensitive APFS volume, does neither.

use super::{Root, remove_at, stat_at};
use crate::relpath::RelPath;
use unicode_normalization::UnicodeNormalization;

/// How a file system compares and accepts names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameRules {
    /// `README` and `readme` are one file.
    pub fold_case: bool,
    /// The NFC and NFD spellings of a name (`é` as one code point or as `e` + accent) are one
    /// file.
    pub fold_normalization: bool,
    /// Windows' rules: no `<>:"\|?*` or control characters, no trailing dot or space, no
    /// `CON`, `NUL`, `COM1`, … (with or without an extension).
    pub windows_names: bool,
}

impl NameRules {
    /// Every distinct name is a distinct file, and every name we sync can be held.
    pub const EXACT: NameRules = NameRules {
        fold_case: false,
        fold_normalization: false,
        windows_names: false,
    };

    /// Whether names are compared byte for byte.
    pub fn is_exact(&self) -> bool {
        !self.fold_case && !self.fold_normalization
    }

    /// The form under which this file system finds `p`: two paths with one key are one file.
    pub fn key(&self, p: &RelPath) -> String {
        let s = p.as_str();
        match (self.fold_normalization, self.fold_case) {
            (false, false) => s.to_string(),
            (true, false) => s.nfc().collect(),
            // Case folding is applied to the canonical form, then recomposed, so `É` in NFD
            // and `é` in NFC meet.
            (n, true) => {
                let base: String = if n { s.nfd().collect() } else { s.to_string() };
                let lower = base.to_lowercase();
                if n { lower.nfc().collect() } else { lower }
            }
        }
    }

    /// Why this file system cannot hold the name `name` (one component), if it cannot.
    pub fn refuses(&self, name: &str) -> Option<&'static str> {
        if self.windows_names {
            windows_refuses(name)
        } else {
            None
        }
    }
}

/// Why Windows (and FAT) cannot hold the file name `name`, if it cannot.
pub fn windows_refuses(name: &str) -> Option<&'static str> {
    if name
        .chars()
        .any(|c| (c as u32) < 0x20 || r#"<>:"\|?*"#.contains(c))
    {
        return Some(
            r#"a character Windows does not allow in names (<>:"\|?* or a control character)"#,
        );
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("a name ending in a dot or a space, which Windows drops");
    }
    // Reserved whatever the case and the extension: `con`, `Con.txt`, `LPT1.tar.gz`.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    let reserved = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (upper.len() == 4
            && (upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.as_bytes()[3].is_ascii_digit()
            && upper.as_bytes()[3] != b'0');
    reserved.then_some("a device name Windows reserves (CON, NUL, COM1, …)")
}

impl Root {
    /// How the file system of this root compares and accepts names, found out once by making
    /// probe files (temp names, which the scan ignores) and looking them up by other
    /// spellings. A root that cannot be written receives nothing, and counts as exact.
    pub fn probe_names(&self) -> NameRules {
        *self.names.get_or_init(|| self.probe())
    }

    /// Whether this root's file system takes `a` and `b` (different names) as one.
    pub(super) fn spells_alike(&self, a: &RelPath, b: &RelPath) -> bool {
        let rules = self.probe_names();
        a != b && !rules.is_exact() && rules.key(a) == rules.key(b)
    }

    fn probe(&self) -> NameRules {
        let mut rules = NameRules::EXACT;
        let Ok(dir) = self.dir(&RelPath::root(), false) else {
            return rules;
        };
        let found_as = |made: &str, other: &str| -> Option<bool> {
            Root::create_in(&dir, made).ok()?;
            let seen = stat_at(&dir, other).is_ok();
            let _ = remove_at(&dir, made);
            Some(seen)
        };
        let made = crate::replica::layout::temp_name("probe-a");
        let other = made.replacen("probe-a", "PROBE-A", 1);
        let Some(fold_case) = found_as(&made, &other) else {
            return rules;
        };
        rules.fold_case = fold_case;
        let made = crate::replica::layout::temp_name("probe-\u{e9}");
        let other = made.replacen('\u{e9}', "e\u{301}", 1);
        rules.fold_normalization = found_as(&made, &other).unwrap_or(false);
        // A name with `?` is refused (EINVAL on Windows and vfat, EPERM on fusefat) only
        // where Windows' rules hold; a plain name was just made, so the `?` is the reason.
        let made = crate::replica::layout::temp_name("probe-?");
        rules.windows_names = match Root::create_in(&dir, &made) {
            Ok(_) => {
                let _ = remove_at(&dir, &made);
                false
            }
            Err(_) => true,
        };
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    const CASE: NameRules = NameRules {
        fold_case: true,
        fold_normalization: false,
        windows_names: false,
    };
    const NORM: NameRules = NameRules {
        fold_case: false,
        fold_normalization: true,
        windows_names: false,
    };
    const APFS: NameRules = NameRules {
        fold_case: true,
        fold_normalization: true,
        windows_names: false,
    };

    #[test]
    fn keys_meet_exactly_where_the_file_system_folds() {
        let nfc = "caf\u{e9}/R\u{c9}SUM\u{c9}.txt";
        let nfd = "cafe\u{301}/RE\u{301}SUME\u{301}.txt";
        let lower_nfd = "cafe\u{301}/re\u{301}sume\u{301}.txt";
        let cases = [
            (NameRules::EXACT, "README", "readme", false),
            (NameRules::EXACT, nfc, nfd, false),
            (CASE, "README", "readme", true),
            (CASE, "Docs/README", "docs/readme", true),
            (CASE, nfc, nfd, false),
            (NORM, nfc, nfd, true),
            (NORM, "README", "readme", false),
            (NORM, nfd, lower_nfd, false),
            (APFS, nfc, lower_nfd, true),
            (APFS, "README", "readme", true),
            (APFS, "a/b", "a/c", false),
            (APFS, "readme", "readme.md", false),
        ];
        for (rules, a, b, same) in cases {
            assert_eq!(
                rules.key(&p(a)) == rules.key(&p(b)),
                same,
                "{rules:?} {a} {b}"
            );
        }
    }

    #[test]
    fn windows_refuses_what_windows_cannot_hold_and_nothing_else() {
        for bad in [
            "CON",
            "con",
            "Con.txt",
            "nul",
            "NUL.tar.gz",
            "COM1",
            "lpt9.log",
            "aux",
            "prn",
            "a:b",
            "a?",
            "*",
            "x<y",
            "x>y",
            "a\"b",
            "a|b",
            "a\\b",
            "tab\there",
            "dot.",
            "space ",
            "CON .txt",
        ] {
            assert!(windows_refuses(bad).is_some(), "{bad:?} should be refused");
        }
        for good in [
            "CONSOLE",
            "con-notes",
            "COM0",
            "COM10",
            "LPT",
            "nul_",
            "a.b",
            ".hidden",
            "caf\u{e9}",
            "résumé.txt",
            "a b",
            "x.y.z",
            "COMA",
        ] {
            assert_eq!(windows_refuses(good), None, "{good:?} should be allowed");
        }
        assert_eq!(NameRules::EXACT.refuses("CON"), None);
    }

    #[test]
    #[cfg(unix)] // Windows folds case on every folder
    fn a_linux_folder_probes_exact() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path(), super::super::Follow::Never).unwrap();
        // tmpfs and ext4 here: case and normalization kept apart, `?` allowed.
        assert_eq!(root.probe_names(), NameRules::EXACT);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probes left behind"
        );
    }
}
