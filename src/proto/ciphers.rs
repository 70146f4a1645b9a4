//! SSH cipher preferences shared by our client and our server: AES-GCM where the CPU has AES
//! instructions, chacha20-poly1305 where it does not.
//!
//! In SSH the client's order decides. ring's AES-GCM with AES-NI/ARMv8 crypto is several
//! times faster than its chacha20-poly1305 (whose poly1305 is plain C), and without those
//! instructions the other way round (a Raspberry Pi 4 has none; a Pi 5 has them). So the
//! client puts AES-GCM first only when its own CPU has AES, and the server offers AES-GCM
//! only when its CPU has AES: a fast laptop and a Pi 4 hub then settle on chacha20.

use russh::cipher::{self, Name};

/// Whether this CPU runs AES-GCM in hardware.
pub fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

const AES_FIRST: &[Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

const CHACHA_FIRST: &[Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Without AES-GCM: what a server without AES instructions offers (CTR stays for clients
/// that know nothing else).
const NO_GCM: &[Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// The client's order.
pub fn client_order() -> &'static [Name] {
    if aes_in_hardware() {
        AES_FIRST
    } else {
        CHACHA_FIRST
    }
}

/// What the server offers.
pub fn server_offer() -> &'static [Name] {
    if aes_in_hardware() { AES_FIRST } else { NO_GCM }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_always_share_chacha20_and_ctr() {
        for list in [AES_FIRST, CHACHA_FIRST, NO_GCM] {
            assert!(list.contains(&cipher::CHACHA20_POLY1305));
            assert!(list.contains(&cipher::AES_128_CTR));
        }
        // Whatever this machine is, the lists it picks are among these.
        assert!([AES_FIRST, CHACHA_FIRST].contains(&client_order()));
        assert!([AES_FIRST, NO_GCM].contains(&server_offer()));
    }
}
