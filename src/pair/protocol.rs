//! The pairing exchange, both ends, without I/O: SPAKE2 on the code, then a confirmation each
//! way that covers the whole transcript — the code's id, both SPAKE2 messages, the hub's host
//! keys, and the host key the laptop's SSH handshake verified — plus what each end asks of
//! the other. A man in the middle who relays the messages between two SSH connections shows
//! the laptop his own host key, so the hub's check of the laptop's confirmation fails; one who
//! answers himself does not know the code, so the laptop's check of the hub's fails. Either
//! way each connection is one guess at the code, and nothing is kept.
//!
//! Messages are JSON, one per frame (`wire`). What each end MACs is the exact text it sent or
//! received, so field order and spacing never matter.

use serde::{Deserialize, Serialize};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::code::Code;

pub const VERSION: u32 = 1;
/// The SSH user a pairing connection logs in as (no credential: it may only pair).
pub const USER: &str = "filesync-pair";
/// The only subsystem such a connection may start.
pub const SUBSYSTEM: &str = "filesync-pair@filesync";

const ID_LAPTOP: &[u8] = b"filesync laptop";
const ID_HUB: &[u8] = b"filesync hub";
const CONTEXT_LAPTOP: &str = "filesync pair v1 laptop confirmation";
const CONTEXT_HUB: &str = "filesync pair v1 hub confirmation";

/// Laptop → hub, first.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub code_id: String,
    pub spake: String,
}

/// Hub → laptop: its SPAKE2 message and who it is, or why not.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offer {
    Offer {
        spake: String,
        hub: String,
        host_keys: Vec<String>,
    },
    Refused {
        reason: String,
    },
}

/// Laptop → hub: its confirmation and what it asks for (`device`, the JSON of a
/// `DeviceRequest`, MACed as sent).
#[derive(Debug, Serialize, Deserialize)]
pub struct Join {
    pub mac: String,
    pub seen_host_key: String,
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// The name the laptop proposes for itself.
    pub name: String,
    /// Its public key (OpenSSH line), authorized on the hub.
    pub public_key: String,
    /// The laptop serves SFTP too, and the hub should pull from it.
    pub serve: Option<ServeOffer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeOffer {
    /// Where the hub reaches it; an unspecified host (`0.0.0.0`) means the address the
    /// pairing connection came from.
    pub listen: String,
    pub host_keys: Vec<String>,
}

/// Hub → laptop, last: its confirmation and what the laptop needs (`welcome`, the JSON of a
/// `Welcome`), or why not.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Welcome { mac: String, welcome: String },
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The device's name on the hub (the user name it logs in with).
    pub device: String,
    /// The hub's replica name.
    pub hub: String,
    /// The key the hub logs in with to pull from a laptop that serves.
    pub client_key: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("the code does not match: the other side knows another code, or someone is in between")]
    Mismatch,
    #[error(
        "the server's host key is not one the hub vouches for: someone is in between, or this is not the hub"
    )]
    HostKey,
    #[error("the other side sent something unreadable ({0})")]
    Garbled(String),
}

/// The laptop's half, from its first message to the hub's confirmation.
pub struct Laptop {
    spake: Spake2<Ed25519Group>,
    code_id: String,
    msg: Vec<u8>,
}

/// Where the laptop waits for the hub's confirmation.
pub struct LaptopSent {
    keys: Keys,
    transcript: [u8; 32],
    mac: blake3::Hash,
}

/// The hub's half.
pub struct Hub {
    keys: Keys,
    transcript: Transcript,
}

struct Keys {
    laptop: [u8; 32],
    hub: [u8; 32],
}

/// Everything both ends must agree on, but the host key the laptop saw (added last).
#[derive(Clone)]
struct Transcript(blake3::Hasher);

impl Transcript {
    fn new(code_id: &str, laptop_msg: &[u8], hub_msg: &[u8], host_keys: &[String]) -> Self {
        let mut t = Transcript(blake3::Hasher::new());
        t.item(b"filesync pair v1");
        t.item(code_id.as_bytes());
        t.item(laptop_msg);
        t.item(hub_msg);
        t.item(&(host_keys.len() as u64).to_le_bytes());
        for k in host_keys {
            t.item(k.as_bytes());
        }
        t
    }

    fn item(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn with_seen(mut self, seen: &str) -> [u8; 32] {
        self.item(seen.as_bytes());
        *self.0.finalize().as_bytes()
    }
}

fn keys(shared: &[u8]) -> Keys {
    Keys {
        laptop: blake3::derive_key(CONTEXT_LAPTOP, shared),
        hub: blake3::derive_key(CONTEXT_HUB, shared),
    }
}

fn laptop_mac(keys: &Keys, transcript: &[u8; 32], device: &str) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&keys.laptop);
    h.update(transcript);
    h.update(device.as_bytes());
    h.finalize()
}

fn hub_mac(
    keys: &Keys,
    transcript: &[u8; 32],
    laptop: &blake3::Hash,
    welcome: &str,
) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&keys.hub);
    h.update(transcript);
    h.update(laptop.as_bytes());
    h.update(welcome.as_bytes());
    h.finalize()
}

fn password(code: &Code) -> Password {
    Password::new(code.secret())
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Result<Vec<u8>, ProtocolError> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return Err(ProtocolError::Garbled("bad hex".into()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16)
                .map_err(|_| ProtocolError::Garbled("bad hex".into()))
        })
        .collect()
}

fn mac_from_hex(s: &str) -> Result<blake3::Hash, ProtocolError> {
    blake3::Hash::from_hex(s).map_err(|_| ProtocolError::Garbled("bad confirmation".into()))
}

impl Laptop {
    pub fn start(code: &Code) -> (Laptop, Hello) {
        let (spake, msg) = Spake2::<Ed25519Group>::start_a(
            &password(code),
            &Identity::new(ID_LAPTOP),
            &Identity::new(ID_HUB),
        );
        let hello = Hello {
            version: VERSION,
            code_id: code.id().to_string(),
            spake: to_hex(&msg),
        };
        let me = Laptop {
            spake,
            code_id: code.id().to_string(),
            msg,
        };
        (me, hello)
    }

    /// The hub's offer answered: `seen` is the host key this connection's handshake verified
    /// (OpenSSH format). The laptop commits to nothing yet.
    pub fn join(
        self,
        hub_spake: &str,
        host_keys: &[String],
        seen: &str,
        device: &DeviceRequest,
    ) -> Result<(LaptopSent, Join), ProtocolError> {
        let hub_msg = from_hex(hub_spake)?;
        let shared = self
            .spake
            .finish(&hub_msg)
            .map_err(|e| ProtocolError::Garbled(format!("key exchange: {e:?}")))?;
        let keys = keys(&shared);
        let transcript =
            Transcript::new(&self.code_id, &self.msg, &hub_msg, host_keys).with_seen(seen);
        let device =
            serde_json::to_string(device).map_err(|e| ProtocolError::Garbled(e.to_string()))?;
        let mac = laptop_mac(&keys, &transcript, &device);
        let join = Join {
            mac: mac.to_hex().to_string(),
            seen_host_key: seen.to_string(),
            device,
        };
        Ok((
            LaptopSent {
                keys,
                transcript,
                mac,
            },
            join,
        ))
    }
}

impl LaptopSent {
    /// The hub's confirmation checked: only then is anything it says believed.
    pub fn finish(self, mac: &str, welcome: &str) -> Result<Welcome, ProtocolError> {
        let theirs = mac_from_hex(mac)?;
        // `Hash` compares in constant time.
        if theirs != hub_mac(&self.keys, &self.transcript, &self.mac, welcome) {
            return Err(ProtocolError::Mismatch);
        }
        serde_json::from_str(welcome).map_err(|e| ProtocolError::Garbled(e.to_string()))
    }
}

impl Hub {
    /// The hub's answer to a hello for `code`; `host_keys` are all of its own.
    pub fn offer(
        code: &Code,
        hello: &Hello,
        host_keys: &[String],
    ) -> Result<(Hub, String), ProtocolError> {
        let laptop_msg = from_hex(&hello.spake)?;
        let (spake, msg) = Spake2::<Ed25519Group>::start_b(
            &password(code),
            &Identity::new(ID_LAPTOP),
            &Identity::new(ID_HUB),
        );
        let shared = spake
            .finish(&laptop_msg)
            .map_err(|e| ProtocolError::Garbled(format!("key exchange: {e:?}")))?;
        let hub = Hub {
            keys: keys(&shared),
            transcript: Transcript::new(code.id(), &laptop_msg, &msg, host_keys),
        };
        Ok((hub, to_hex(&msg)))
    }

    /// The laptop's confirmation checked against this hub's own host keys: a wrong code and
    /// a man in the middle both end here, with nothing done.
    pub fn check(
        self,
        join: &Join,
        host_keys: &[String],
    ) -> Result<(HubConfirmed, DeviceRequest), ProtocolError> {
        let transcript = self.transcript.with_seen(&join.seen_host_key);
        let theirs = mac_from_hex(&join.mac)?;
        if theirs != laptop_mac(&self.keys, &transcript, &join.device) {
            return Err(ProtocolError::Mismatch);
        }
        if !host_keys.iter().any(|k| same_key(k, &join.seen_host_key)) {
            return Err(ProtocolError::HostKey);
        }
        let device = serde_json::from_str(&join.device)
            .map_err(|e| ProtocolError::Garbled(e.to_string()))?;
        Ok((
            HubConfirmed {
                keys: self.keys,
                transcript,
                laptop: theirs,
            },
            device,
        ))
    }
}

/// The hub after a good confirmation: what it says last.
pub struct HubConfirmed {
    keys: Keys,
    transcript: [u8; 32],
    laptop: blake3::Hash,
}

impl HubConfirmed {
    pub fn welcome(self, welcome: &Welcome) -> Outcome {
        let text = serde_json::to_string(welcome).unwrap_or_default();
        let mac = hub_mac(&self.keys, &self.transcript, &self.laptop, &text);
        Outcome::Welcome {
            mac: mac.to_hex().to_string(),
            welcome: text,
        }
    }
}

/// The public half of a key as one OpenSSH line without its comment.
pub fn public_line(key: &russh::keys::PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_string()
}

/// A device or hub name: letters, digits, `-`, `_`, `.`, not starting with `.` or `-`, at
/// most 64 (it goes into file names, config keys and URL user parts).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['.', '-'])
}

/// Two OpenSSH public key lines name the same key (comments aside).
pub fn same_key(a: &str, b: &str) -> bool {
    fn core(s: &str) -> Vec<&str> {
        s.split_whitespace().take(2).collect()
    }
    core(a) == core(b) && !core(a).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HK: [&str; 2] = ["ssh-ed25519 AAAAhub1", "ecdsa-sha2-nistp256 AAAAhub2"];

    fn device() -> DeviceRequest {
        DeviceRequest {
            name: "laptop".into(),
            public_key: "ssh-ed25519 AAAAme".into(),
            serve: None,
        }
    }

    fn welcome() -> Welcome {
        Welcome {
            device: "laptop".into(),
            hub: "pi".into(),
            client_key: None,
        }
    }

    /// Runs both ends; `seen` is the key the laptop saw, `hub_code` what the hub holds.
    fn run(laptop_code: &Code, hub_code: &Code, seen: &str) -> Result<Welcome, ProtocolError> {
        let keys: Vec<String> = HK.iter().map(|s| s.to_string()).collect();
        let (laptop, hello) = Laptop::start(laptop_code);
        let (hub, offer) = Hub::offer(hub_code, &hello, &keys)?;
        let (sent, join) = laptop.join(&offer, &keys, seen, &device())?;
        let (confirmed, dev) = hub.check(&join, &keys)?;
        assert_eq!(dev, device());
        match confirmed.welcome(&welcome()) {
            Outcome::Welcome { mac, welcome } => sent.finish(&mac, &welcome),
            Outcome::Refused { .. } => unreachable!(),
        }
    }

    #[test]
    fn the_same_code_pairs() {
        let c = Code::random();
        assert_eq!(run(&c, &c, HK[1]).unwrap(), welcome());
    }

    #[test]
    fn another_code_is_refused_at_the_hub() {
        let (a, b) = (Code::random(), Code::random());
        assert_eq!(run(&a, &b, HK[0]), Err(ProtocolError::Mismatch));
    }

    #[test]
    fn a_host_key_the_hub_does_not_hold_is_refused() {
        let c = Code::random();
        assert_eq!(
            run(&c, &c, "ssh-ed25519 AAAAmitm"),
            Err(ProtocolError::HostKey)
        );
    }

    #[test]
    fn a_relayed_exchange_with_its_host_key_rewritten_is_refused() {
        // The man in the middle relays every message and puts the hub's key in place of his.
        let keys: Vec<String> = HK.iter().map(|s| s.to_string()).collect();
        let c = Code::random();
        let (laptop, hello) = Laptop::start(&c);
        let (hub, offer) = Hub::offer(&c, &hello, &keys).unwrap();
        let (_, mut join) = laptop
            .join(&offer, &keys, "ssh-ed25519 AAAAmitm", &device())
            .unwrap();
        join.seen_host_key = HK[0].into();
        assert_eq!(hub.check(&join, &keys).err(), Some(ProtocolError::Mismatch));
    }

    #[test]
    fn tampered_requests_and_answers_are_refused() {
        let keys: Vec<String> = HK.iter().map(|s| s.to_string()).collect();
        let c = Code::random();
        let (laptop, hello) = Laptop::start(&c);
        let (hub, offer) = Hub::offer(&c, &hello, &keys).unwrap();
        let (_, mut join) = laptop.join(&offer, &keys, HK[0], &device()).unwrap();
        join.device = join.device.replace("AAAAme", "AAAAevil");
        assert_eq!(hub.check(&join, &keys).err(), Some(ProtocolError::Mismatch));

        let (laptop, hello) = Laptop::start(&c);
        let (hub, offer) = Hub::offer(&c, &hello, &keys).unwrap();
        let (sent, join) = laptop.join(&offer, &keys, HK[0], &device()).unwrap();
        let (confirmed, _) = hub.check(&join, &keys).unwrap();
        let Outcome::Welcome { mac, welcome } = confirmed.welcome(&welcome()) else {
            unreachable!()
        };
        let forged = welcome.replace("\"pi\"", "\"evil\"");
        assert_eq!(sent.finish(&mac, &forged), Err(ProtocolError::Mismatch));
    }

    #[test]
    fn an_impostor_hub_cannot_confirm() {
        // A server that does not know the code answers with a guess of its own.
        let keys: Vec<String> = HK.iter().map(|s| s.to_string()).collect();
        let c = Code::random();
        let (laptop, hello) = Laptop::start(&c);
        let (_, offer) = Hub::offer(&Code::random(), &hello, &keys).unwrap();
        let (sent, _) = laptop.join(&offer, &keys, HK[0], &device()).unwrap();
        let text = serde_json::to_string(&welcome()).unwrap();
        let guess = blake3::hash(text.as_bytes()).to_hex().to_string();
        assert_eq!(sent.finish(&guess, &text), Err(ProtocolError::Mismatch));
    }
}
