//! Permission bits of files and folders: read, write and execute for user, group and other.
//! Setuid, setgid and sticky are never synced; owners, ACLs and xattrs neither.

/// The bits a sync keeps: `rwxrwxrwx`.
pub const PERM_BITS: u32 = 0o777;

/// The synced bits of an `st_mode` (or an SFTP permissions field).
pub fn perm_bits(st_mode: u32) -> u32 {
    st_mode & PERM_BITS
}

/// Two modes set concurrently, combined so the result is never more readable or writable
/// than either: a read or write bit stays where both have it; an execute bit stays where
/// either has it and the result keeps the matching read bit (`0600` and `0755` give `0700`).
pub fn merge(a: u32, b: u32) -> u32 {
    let both = a & b & PERM_BITS;
    let exec = (a | b) & 0o111 & ((both & 0o444) >> 2);
    both | exec
}

/// What a new folder is made with: its mode plus the owner's `rwx`, so the sync can fill it;
/// a mode without them is set once the folder is filled. Only the owner's bits are ever wider.
pub fn while_filling(mode: u32) -> u32 {
    (mode & PERM_BITS) | 0o700
}

/// Whether a folder of this mode must be made wider first (see `while_filling`).
pub fn blocks_filling(mode: u32) -> bool {
    mode & 0o700 != 0o700
}

/// The octal digits of a mode read as a decimal number (`0o644` is `644`), as `.sync` keeps it.
pub fn to_digits(mode: u32) -> u32 {
    let m = mode & PERM_BITS;
    (m >> 6) * 100 + ((m >> 3) & 7) * 10 + (m & 7)
}

/// The inverse of `to_digits`; `None` for a number that is not three octal digits.
pub fn from_digits(n: u64) -> Option<u32> {
    let (a, b, c) = (n / 100, (n / 10) % 10, n % 10);
    if a > 7 || b > 7 || c > 7 {
        return None;
    }
    Some(((a as u32) << 6) | ((b as u32) << 3) | c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_never_widens_reading_or_writing() {
        assert_eq!(merge(0o600, 0o644), 0o600);
        assert_eq!(merge(0o600, 0o755), 0o700);
        assert_eq!(merge(0o700, 0o755), 0o700);
        assert_eq!(merge(0o755, 0o644), 0o755);
        assert_eq!(merge(0o644, 0o644), 0o644);
        assert_eq!(merge(0o4755, 0o755), 0o755);
        for a in 0..=0o777 {
            for b in [0, 0o600, 0o644, 0o700, 0o755, 0o777, 0o111, 0o421] {
                let m = merge(a, b);
                assert_eq!(m, merge(b, a));
                assert_eq!(m & 0o666 & !(a & b), 0, "{a:o} {b:o} -> {m:o}");
                assert_eq!(merge(m, m), m);
            }
        }
    }

    #[test]
    fn digits_round_trip() {
        for m in 0..=0o777 {
            assert_eq!(from_digits(u64::from(to_digits(m))), Some(m));
        }
        assert_eq!(to_digits(0o644), 644);
        assert_eq!(from_digits(8), None);
        assert_eq!(from_digits(1000), None);
        assert_eq!(from_digits(780), None);
    }

    #[test]
    fn folders_are_filled_before_they_are_narrowed() {
        assert_eq!(while_filling(0o500), 0o700);
        assert_eq!(while_filling(0o755), 0o755);
        assert!(blocks_filling(0o500));
        assert!(!blocks_filling(0o700));
    }
}
