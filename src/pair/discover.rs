//! Finding hubs on the local network: a DNS-SD browse for `_sftp-ssh._tcp` (what avahi
//! announces for the hub, see `image/announce.sh`) for a few seconds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const SERVICE: &str = "_sftp-ssh._tcp.local.";

/// A server found on the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The announced name (`filesync on pi`).
    pub name: String,
    /// Its host name without the trailing dot (`pi.local`).
    pub host: String,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

impl Found {
    /// What to connect to: the host name when this machine resolves it (libnss-mdns), so the
    /// config names the hub as the network does; else its first address.
    pub fn target(&self) -> String {
        use std::net::ToSocketAddrs;
        if (self.host.as_str(), self.port)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.next().is_some())
        {
            return self.host.clone();
        }
        self.addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(self.addrs.first())
            .map(|a| a.to_string())
            .unwrap_or_else(|| self.host.clone())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot look for hubs on the local network ({0}); name the hub: `filesync pair HOST[:PORT] CODE`"
)]
pub struct DiscoverError(String);

/// Every `_sftp-ssh._tcp` server that answers within `window`.
pub fn browse(window: Duration) -> Result<Vec<Found>, DiscoverError> {
    let err = |e: mdns_sd::Error| DiscoverError(e.to_string());
    let mdns = mdns_sd::ServiceDaemon::new().map_err(err)?;
    let events = mdns.browse(SERVICE).map_err(err)?;
    let deadline = Instant::now() + window;
    let mut found: Vec<Found> = Vec::new();
    while let Ok(event) = events.recv_deadline(deadline) {
        if let mdns_sd::ServiceEvent::ServiceResolved(s) = event {
            let name = s
                .fullname
                .strip_suffix(&format!(".{SERVICE}"))
                .unwrap_or(&s.fullname)
                .replace("\\032", " ");
            let mut addrs: Vec<IpAddr> = s.addresses.iter().map(|a| a.to_ip_addr()).collect();
            addrs.sort();
            let f = Found {
                name,
                host: s.host.trim_end_matches('.').to_string(),
                port: s.port,
                addrs,
            };
            if !found.iter().any(|g| g.name == f.name && g.host == f.host) {
                found.push(f);
            }
        }
    }
    let _ = mdns.shutdown();
    Ok(found)
}
