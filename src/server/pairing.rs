//! The hub's end of pairing: a connection logged in as `filesync-pair` (no credential) may
//! start only this subsystem, gets one guess at a code, and is refused with a reason. Wrong
//! guesses count against the code (burnt after a few) and as failed logins of the address
//! (`admission`'s penalties); each is logged. Nothing is written unless the laptop proved it
//! knows the code through this very host key.

use super::control::{Control, public_line};
use super::devices::{Credential, Device, Pull, valid_name};
use crate::pair::code::{Code, Lookup, Wrong};
use crate::pair::known_hosts;
use crate::pair::protocol::{
    DeviceRequest, Hello, Hub, Join, Offer, Outcome, ProtocolError, VERSION, Welcome,
};
use crate::pair::wire;
use russh::keys::PublicKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The whole exchange must fit in this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the hub pulls from a laptop when the code did not say.
const DEFAULT_EVERY: &str = "15m";

/// The refusal of an unknown, used or burnt code and of a wrong answer alike: which of them
/// it was would tell a guesser whether a code is worth more tries.
const NO_SUCH_CODE: &str = "wrong pairing code, or one that was used or burnt by wrong tries; check it, or make a new one with `sudo filesync pair --new` on the hub";

/// Why a pairing was refused; `guess`: it was a wrong answer (counted against the address).
struct Refusal {
    reason: String,
    guess: bool,
}

fn refuse(reason: impl Into<String>, guess: bool) -> Refusal {
    Refusal {
        reason: reason.into(),
        guess,
    }
}

/// Runs one pairing on `stream`; `failed` counts a wrong guess against the address.
pub async fn serve<S>(mut stream: S, ctl: Arc<Control>, peer: SocketAddr, failed: impl FnOnce())
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut offered = false;
    let run = exchange(&mut stream, &ctl, peer, &mut offered);
    let res = match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(refuse("pairing took too long", false)),
    };
    let Err(r) = res else { return };
    if r.guess {
        failed();
    }
    let sent = if offered {
        wire::send(&mut stream, &Outcome::Refused { reason: r.reason }).await
    } else {
        wire::send(&mut stream, &Offer::Refused { reason: r.reason }).await
    };
    if let Err(e) = sent {
        tracing::debug!(%peer, "pairing refusal not delivered: {e}");
    }
}

async fn exchange<S>(
    stream: &mut S,
    ctl: &Control,
    peer: SocketAddr,
    offered: &mut bool,
) -> Result<(), Refusal>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let hello: Hello = wire::recv(stream)
        .await
        .map_err(|e| refuse(e.to_string(), false))?;
    if hello.version != VERSION {
        return Err(refuse(
            format!("this hub speaks pairing version {VERSION}; update filesync on one side"),
            false,
        ));
    }
    if !Code::valid_id(&hello.code_id) {
        return Err(refuse(NO_SUCH_CODE, true));
    }
    let id = hello.code_id.clone();
    let (code, terms) = match ctl.try_code(&id) {
        Lookup::Found(c, t) => (c, t),
        Lookup::Expired => {
            tracing::info!(%peer, code = %id, "pairing refused: the code expired");
            return Err(refuse(
                "this pairing code expired (codes last 10 minutes); make a new one with `sudo filesync pair --new` on the hub",
                false,
            ));
        }
        Lookup::Unknown => {
            tracing::warn!(%peer, code = %id, "pairing refused: no such code (used, burnt or mistyped)");
            return Err(refuse(NO_SUCH_CODE, true));
        }
    };
    let (hub, spake) = match Hub::offer(&code, &hello, &ctl.host_keys) {
        Ok(ok) => ok,
        Err(e) => return Err(wrong_guess(ctl, &id, peer, &e)),
    };
    *offered = true;
    let offer = Offer::Offer {
        spake,
        hub: ctl.hub_name(),
        host_keys: ctl.host_keys.clone(),
    };
    let unanswered = |e: String| {
        ctl.wrong(&id);
        refuse(e, false)
    };
    wire::send(stream, &offer)
        .await
        .map_err(|e| unanswered(e.to_string()))?;
    let join: Join = wire::recv(stream)
        .await
        .map_err(|e| unanswered(e.to_string()))?;
    let (confirmed, request) = match hub.check(&join, &ctl.host_keys) {
        Ok(ok) => ok,
        Err(e) => return Err(wrong_guess(ctl, &id, peer, &e)),
    };
    // What the hub would refuse anyway is refused before the code is used up.
    let key = vet(ctl, &request, &terms).map_err(unanswered)?;
    if let Some(offer) = &request.serve {
        serve_addr(&offer.listen, peer.ip()).map_err(unanswered)?;
    }
    if !ctl.consume(&code) {
        tracing::warn!(%peer, code = %id, "pairing refused: the code was used or burnt meanwhile");
        return Err(refuse(NO_SUCH_CODE, false));
    }
    let (welcome, replaced) =
        enroll(ctl, key, request, terms, peer).map_err(|e| refuse(e, false))?;
    let sent = wire::send(stream, &confirmed.welcome(&welcome)).await;
    // The entry this pairing replaced keeps no session (it could not be revoked any more).
    if !replaced.is_empty() {
        ctl.end_sessions(&replaced, "this device was paired again")
            .await;
    }
    sent.map_err(|e| refuse(e.to_string(), false))
}

/// A confirmation that did not match: the code's try stays taken (it is burnt after the
/// last), logged.
fn wrong_guess(ctl: &Control, id: &str, peer: SocketAddr, e: &ProtocolError) -> Refusal {
    let left = ctl.wrong(id);
    let what = match e {
        ProtocolError::HostKey => {
            "through a host key this hub does not hold (a man in the middle?)"
        }
        ProtocolError::Mismatch => "with a wrong code",
        ProtocolError::Garbled(_) => "with a garbled confirmation",
    };
    match left {
        Wrong::TriesLeft(n) => {
            tracing::warn!(%peer, code = %id, "pairing attempt {what}; {n} tries left for this code")
        }
        Wrong::Burnt | Wrong::Gone => {
            tracing::warn!(%peer, code = %id, "pairing attempt {what}; the code is burnt")
        }
    }
    let reason = match e {
        ProtocolError::HostKey => {
            "refused: this connection does not end at the hub's host key (someone is in between)"
        }
        _ => NO_SUCH_CODE,
    };
    refuse(reason, true)
}

/// The laptop's key and wanted name, checked: a key of `authorized_keys` logs in already
/// (as no device, so revoking could not end it).
fn vet(
    ctl: &Control,
    req: &DeviceRequest,
    terms: &crate::pair::code::Terms,
) -> Result<PublicKey, String> {
    let key = PublicKey::from_openssh(&req.public_key)
        .map_err(|e| format!("the laptop's public key is unreadable ({e})"))?;
    let want = terms.name.as_ref().unwrap_or(&req.name);
    if !valid_name(want) {
        return Err(format!(
            "{want:?} is not a device name: use letters, digits, `-`, `_` or `.`"
        ));
    }
    if super::auth::key_allowed(&ctl.authorized, &key) {
        return Err("this laptop's key is in the hub's authorized_keys already, so it logs in without pairing; remove it there first to pair it as a device".into());
    }
    Ok(key)
}

/// One enrollment at a time: the known_hosts change one of them may undo is its own.
static ENROLLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Adds the device the laptop asked for (and the pull from it): what the hub writes, after
/// the laptop proved it knows the code. The device is added last; when that fails, the
/// laptop's host keys are taken out of the hub's known_hosts again. The open sessions of
/// an entry it replaced (the same key paired before), for the caller to end.
fn enroll(
    ctl: &Control,
    key: PublicKey,
    req: DeviceRequest,
    terms: crate::pair::code::Terms,
    peer: SocketAddr,
) -> Result<(Welcome, Vec<u64>), String> {
    let _one = ENROLLING.lock().unwrap_or_else(|p| p.into_inner());
    let want = terms.name.clone().unwrap_or(req.name.clone());
    let serve = match &req.serve {
        Some(offer) => Some(pull_from(ctl, offer, &terms, peer)?),
        None => None,
    };
    let known = ctl.state_dir.join("known_hosts");
    let before = match &serve {
        Some(s) => Some(
            known_hosts::replace(&known, &s.host, s.port, &s.host_keys)
                .map_err(|e| hub_side(&e))?,
        ),
        None => None,
    };
    let device = Device {
        name: want.clone(),
        credential: Credential::Key(public_line(&key)),
        added: crate::time::now_secs(),
        last_seen: None,
        from: Some(peer.ip().to_string()),
        pull: serve.as_ref().map(|s| s.pull.clone()),
    };
    let added = ctl.change_ending(|d| {
        let (name, replaced) = d.pair(&want, device)?;
        Ok(((name, replaced.clone()), replaced))
    });
    let ((name, replaced), sessions) = match added {
        Ok(ok) => ok,
        Err(e) => {
            if let Some(before) = before
                && let Err(undo) = known_hosts::put_back(&known, before)
            {
                tracing::error!("{undo}");
            }
            return Err(e.to_string());
        }
    };
    if !replaced.is_empty() {
        tracing::info!(%peer, device = %name, replaced = %replaced.join(", "), sessions = sessions.len(), "the same key paired again: its old entry is replaced and its sessions ended");
    }
    tracing::info!(%peer, device = %name, key = %key.fingerprint(russh::keys::HashAlg::Sha256), "paired a new device");
    if serve.is_some() || !replaced.is_empty() {
        ctl.pulls_changed.notify_one();
    }
    let welcome = Welcome {
        device: name,
        hub: ctl.hub_name(),
        client_key: serve.map(|s| s.client_key),
    };
    Ok((welcome, sessions))
}

/// A failure with the hub's own files: logged with its causes, told to the laptop as the
/// hub's (not something to fix on the laptop).
fn hub_side(e: &dyn std::error::Error) -> String {
    let mut full = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        full.push_str(&format!(": {c}"));
        cause = c.source();
    }
    tracing::error!("pairing failed on the hub: {full}");
    format!("the hub failed: {e}; the hub's log says why")
}

/// The hub's side of `--serve`, checked and nothing written but the hub's own client key
/// (made once, for every laptop it pulls from).
struct Serve {
    pull: Pull,
    client_key: String,
    /// Where the laptop serves, and its host keys (for the hub's known_hosts).
    host: String,
    port: u16,
    host_keys: Vec<PublicKey>,
}

/// Where the hub pulls from for a laptop that offered `listen` and connected from `peer`:
/// only the laptop's own address (a wildcard means it), so a code cannot point the hub, and
/// its known_hosts line, at another machine.
fn serve_addr(listen: &str, peer: std::net::IpAddr) -> Result<SocketAddr, String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("--serve {listen:?} is not an address like 0.0.0.0:2222"))?;
    let peer = peer.to_canonical();
    if addr.ip().is_unspecified() {
        return Ok(SocketAddr::new(peer, addr.port()));
    }
    if addr.ip().to_canonical() != peer {
        return Err(format!(
            "--serve {listen} is not the address this laptop reaches the hub from ({peer}); serve on {peer} or 0.0.0.0"
        ));
    }
    Ok(SocketAddr::new(peer, addr.port()))
}

/// Where and how often to pull from the laptop, and the keys that will let the hub in and
/// tell the laptop from another machine.
fn pull_from(
    ctl: &Control,
    offer: &crate::pair::protocol::ServeOffer,
    terms: &crate::pair::code::Terms,
    peer: SocketAddr,
) -> Result<Serve, String> {
    let addr = serve_addr(&offer.listen, peer.ip())?;
    let ip = addr.ip();
    let host_keys = offer
        .host_keys
        .iter()
        .map(|line| {
            PublicKey::from_openssh(line)
                .map_err(|e| format!("the laptop's host key is unreadable ({e})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = super::host_keys::client_key(&ctl.state_dir.join("client_key"))
        .map_err(|e| hub_side(&e))?;
    let host = ip.to_string();
    let url_host = if ip.is_ipv6() {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let every = terms.every.clone().unwrap_or_else(|| DEFAULT_EVERY.into());
    Ok(Serve {
        pull: Pull {
            url: format!("sftp://filesync@{url_host}:{}/", addr.port()),
            every,
        },
        client_key: public_line(client.public_key()),
        host,
        port: addr.port(),
        host_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::serve_addr;
    use std::net::IpAddr;

    #[test]
    fn the_hub_pulls_only_from_the_laptops_own_address() {
        let peer: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(
            serve_addr("0.0.0.0:2222", peer).unwrap().to_string(),
            "192.168.1.20:2222"
        );
        assert_eq!(
            serve_addr("192.168.1.20:2223", peer).unwrap().to_string(),
            "192.168.1.20:2223"
        );
        let mapped: IpAddr = "::ffff:192.168.1.20".parse().unwrap();
        assert!(serve_addr("192.168.1.20:2222", mapped).is_ok());
        let e = serve_addr("192.168.1.30:2222", peer).unwrap_err();
        assert!(
            e.contains("192.168.1.30") && e.contains("192.168.1.20"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(serve_addr("nonsense", peer).is_err());
    }
}
