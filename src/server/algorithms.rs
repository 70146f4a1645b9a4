//! What the hub offers in SSH negotiation: modern choices first (ML-KEM and curve25519, AES-GCM
//! or chacha20-poly1305, encrypt-then-MAC), then what older phone and Java stacks (JSch 0.1.55,
//! old Android) need to reach a choice that is still sound (NIST ECDH, group14 with SHA-256,
//! AES-CTR, HMAC-SHA-256). SHA-1 (group14-sha1, hmac-sha1) only with `legacy_algorithms`.
//!
//! The client's order decides (RFC 4253 §7.1): a client that knows the modern names lists
//! them first and gets them; these lists only say what is acceptable.

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{kex, mac};
use std::borrow::Cow;

const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G18_SHA512,
    kex::DH_G17_SHA512,
    kex::DH_G16_SHA512,
    kex::DH_G15_SHA512,
    kex::DH_G14_SHA256,
];

const KEX_LEGACY: &[kex::Name] = &[kex::DH_G14_SHA1];

/// Negotiation extensions (RFC 8308 ext-info, OpenSSH's strict kex), always last.
const KEX_EXTENSIONS: &[kex::Name] = &[
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Host key (and client key) signature algorithms, ed25519 first. RSA signs with SHA-512 or
/// SHA-256; `ssh-rsa` (SHA-1) is there for clients that know nothing newer (JSch 0.1.55).
const KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
    Algorithm::Rsa { hash: None },
];

const MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
];

const MACS_LEGACY: &[mac::Name] = &[mac::HMAC_SHA1_ETM, mac::HMAC_SHA1];

/// The server's lists; `legacy` adds the SHA-1 key exchange and MACs.
pub fn preferred(legacy: bool) -> russh::Preferred {
    let pick = |modern: &'static [kex::Name]| {
        let mut v: Vec<kex::Name> = modern.to_vec();
        if legacy {
            v.extend_from_slice(KEX_LEGACY);
        }
        v.extend_from_slice(KEX_EXTENSIONS);
        v
    };
    let mut macs = MACS.to_vec();
    if legacy {
        macs.extend_from_slice(MACS_LEGACY);
    }
    russh::Preferred {
        kex: Cow::Owned(pick(KEX)),
        key: Cow::Borrowed(KEYS),
        cipher: Cow::Borrowed(crate::proto::ciphers::server_offer()),
        mac: Cow::Owned(macs),
        ..Default::default()
    }
}

/// `no common key exchange algorithm: client offers a, b`, for the log, when a client and
/// the hub share no algorithm of some kind.
pub fn mismatch(e: &russh::Error) -> Option<String> {
    let russh::Error::NoCommonAlgo { kind, theirs, .. } = e else {
        return None;
    };
    let what = match kind {
        russh::AlgorithmKind::Kex => "key exchange algorithm",
        russh::AlgorithmKind::Key => "host key algorithm",
        russh::AlgorithmKind::Cipher => "cipher",
        russh::AlgorithmKind::Mac => "MAC",
        russh::AlgorithmKind::Compression => "compression",
    };
    let offered = if theirs.is_empty() {
        "nothing".to_string()
    } else {
        theirs.join(", ")
    };
    Some(format!("no common {what}: client offers {offered}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_first_and_sha1_only_when_asked() {
        let p = preferred(false);
        assert_eq!(p.kex[0], kex::MLKEM768X25519_SHA256);
        assert!(p.kex.contains(&kex::ECDH_SHA2_NISTP256) && p.kex.contains(&kex::DH_G14_SHA256));
        assert!(!p.kex.contains(&kex::DH_G14_SHA1) && !p.mac.contains(&mac::HMAC_SHA1));
        assert_eq!(p.key[0], Algorithm::Ed25519);
        assert_eq!(p.mac[0], mac::HMAC_SHA512_ETM);
        let l = preferred(true);
        assert!(l.kex.contains(&kex::DH_G14_SHA1) && l.mac.contains(&mac::HMAC_SHA1));
        // Extensions stay last, after the legacy exchange.
        assert_eq!(
            l.kex.last(),
            Some(&kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER)
        );
        let e = russh::Error::NoCommonAlgo {
            kind: russh::AlgorithmKind::Key,
            ours: vec![],
            theirs: vec!["ssh-rsa".into(), "ecdsa-sha2-nistp256".into()],
        };
        assert_eq!(
            mismatch(&e).as_deref(),
            Some("no common host key algorithm: client offers ssh-rsa, ecdsa-sha2-nistp256")
        );
    }
}
