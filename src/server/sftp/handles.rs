//! Handle names on the wire and the keys they stand for.

/// A handle's name on the wire: hex text, because some clients keep handles as UTF-8 strings
/// (russh-sftp decodes them lossily) and raw bytes past 0x7f came back mangled.
pub(super) fn handle_name(key: u32) -> String {
    format!("{key:x}")
}

/// The key a handle name stands for; `None` for anything `handle_name` never makes.
pub(super) fn handle_key(h: &[u8]) -> Option<u32> {
    if h.is_empty() || h.len() > 8 || !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::{handle_key, handle_name};

    #[test]
    fn handle_names_are_ascii_and_round_trip() {
        for key in [1u32, 0x7f, 0x80, 0xff, 0x100, 0x8080, u32::MAX] {
            let name = handle_name(key);
            assert!(name.is_ascii(), "{name:?}");
            assert_eq!(handle_key(name.as_bytes()), Some(key));
        }
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 ",
            b"123456789",
            b"\x00\x00\x00\x80",
            b"zz",
        ] {
            assert_eq!(handle_key(bad), None, "{bad:?}");
        }
    }
}
