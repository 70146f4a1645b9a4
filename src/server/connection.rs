//! One SSH connection: authentication decisions and channel requests. Only the `sftp`
//! subsystem is ever granted; shells, exec, forwarding and agents are refused. A connection
//! that does not log in says so in one line when it ends: who, with which client, and what
//! did not match.

use super::admission::{Admission, Ticket};
use super::auth;
use super::client_id::ClientId;
use super::control::Control;
use super::devices::Devices;
use super::sftp::{self, Shared};
use crate::pair::protocol as pairing;
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Channels one connection may have open (ours uses four; most clients one).
const MAX_CHANNELS: usize = 8;

/// What every connection needs to decide on logins.
pub struct Gate {
    pub keys: Vec<PublicKey>,
    pub password_hash: Option<String>,
    pub admission: Admission,
    /// Paired devices, pairing codes, open sessions by device.
    pub control: Arc<Control>,
}

pub struct Connection {
    /// This connection's number in the server's table of sessions.
    pub id: u64,
    /// The paired device logged in on it (none for `authorized_keys` and `password_hash`).
    pub device: Option<String>,
    /// Logged in as the pairing user: it may start the pairing subsystem and nothing else.
    pub pairing: bool,
    /// This connection started its one pairing (one guess per connection).
    pub paired: bool,
    pub peer: SocketAddr,
    pub gate: Arc<Gate>,
    pub shared: Arc<Shared>,
    pub channels: HashMap<ChannelId, Channel<Msg>>,
    /// SFTP sessions of this connection; dropped (and aborted) with it.
    pub sftp: JoinSet<()>,
    /// This connection's place in the admission book (a session slot once logged in).
    pub ticket: Ticket,
    /// The software version the client announced.
    pub client: ClientId,
    /// The user name, once logged in (the grace timer waits for it; the connection's last
    /// line names it).
    pub logged_in: tokio::sync::watch::Sender<Option<String>>,
    /// What each failed login attempt was, for the one line logged if none succeeds.
    pub tried: Vec<String>,
    pub user: String,
    /// What its SFTP sessions may hold in memory (`sftp::Budget`).
    pub budget: Arc<sftp::Budget>,
    /// A failed login of this connection was already counted for its address.
    pub counted: bool,
}

impl Drop for Connection {
    /// A connection that tried to log in and never did: one line, and (unless a wrong
    /// password already counted) one failure for its address.
    fn drop(&mut self) {
        if self.device.is_some() {
            super::lock(&self.gate.control.online).remove(&self.id);
        }
        if self.logged_in.borrow().is_some() || self.tried.is_empty() {
            return;
        }
        tracing::info!(
            peer = %self.peer,
            client = %self.client.get(),
            user = %self.user,
            "login refused: {}",
            self.tried.join("; ")
        );
        if !self.counted {
            self.count_failure();
        }
    }
}

impl Connection {
    fn methods(&self) -> MethodSet {
        let mut m = MethodSet::empty();
        m.push(MethodKind::PublicKey);
        if self.gate.password_hash.is_some() || self.gate.control.devices.any_password() {
            m.push(MethodKind::Password);
        }
        m
    }

    fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.methods()),
            partial_success: false,
        }
    }

    /// Notes a failed attempt (`what`: what did not match) and refuses it.
    fn failed(&mut self, user: &str, what: String) -> Auth {
        self.user = user.to_string();
        if !self.tried.contains(&what) {
            self.tried.push(what);
        }
        self.reject()
    }

    /// A key in `authorized_keys`, or a paired device's (whose name is noted).
    fn key_known(&self, key: &PublicKey) -> Option<Option<String>> {
        if auth::key_allowed(&self.gate.keys, key) {
            return Some(None);
        }
        self.gate.control.devices.by_key(key).map(Some)
    }

    /// Counts a failed login against this connection's address.
    fn count_failure(&mut self) {
        self.counted = true;
        let mut log = Vec::new();
        self.gate
            .admission
            .failed_login(self.peer.ip(), Instant::now(), &mut log);
        super::log_changes(&log);
    }

    /// A login that succeeded: it takes a session slot, or the connection ends here when
    /// every slot is in use. A device's login is admitted only if `still` holds under the
    /// revocation lock (the device was not revoked or replaced since its credential was
    /// checked).
    fn accept(
        &mut self,
        user: &str,
        how: &str,
        still: impl FnOnce(&Devices, &str) -> bool,
    ) -> Result<Auth, russh::Error> {
        if let Some(d) = self.device.clone() {
            let devices = &self.gate.control.devices;
            if !self.gate.control.admit(self.id, &d, || still(devices, &d)) {
                tracing::info!(peer = %self.peer, device = %d, "login refused: the device was revoked or replaced while it logged in");
                self.device = None;
                return Ok(self.failed(user, format!("device {d:?} was revoked as it logged in")));
            }
        }
        if let Err(full) = self.ticket.promote() {
            tracing::warn!(peer = %self.peer, user, "connection refused after login: {full}");
            self.tried.clear();
            return Err(russh::Error::Disconnect);
        }
        tracing::info!(peer = %self.peer, client = %self.client.get(), user, device = %self.device.as_deref().unwrap_or("-"), "client logged in {how}");
        self.user = user.to_string();
        if let Some(d) = &self.device {
            self.gate
                .control
                .devices
                .seen(d, &self.peer.ip().to_string());
        }
        let _ = self.logged_in.send(Some(user.to_string()));
        Ok(Auth::Accept)
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    /// Only the pairing user gets in without a credential, and only to pair: it keeps its
    /// place among connections not logged in (and their grace time), and is never given a
    /// session slot nor SFTP.
    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if user == pairing::USER {
            self.pairing = true;
            self.user = user.to_string();
            tracing::debug!(peer = %self.peer, "pairing connection");
            return Ok(Auth::Accept);
        }
        Ok(self.reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.key_known(offer.public_key).is_some() {
            Ok(Auth::Accept)
        } else {
            // A client offering several keys is normal: the line at the end lists them.
            let fp = offer.public_key.fingerprint(russh::keys::HashAlg::Sha256);
            tracing::debug!(peer = %self.peer, user, key = %fp, "public key not in authorized_keys");
            Ok(self.failed(
                user,
                format!("{} key {fp} is not in authorized_keys", offer.algorithm),
            ))
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = key.public_key.fingerprint(russh::keys::HashAlg::Sha256);
        if let Some(device) = self.key_known(key.public_key) {
            self.device = device;
            let how = format!("with {} key {fp}", key.algorithm);
            let key = key.public_key.clone();
            let still = move |d: &Devices, name: &str| d.by_key(&key).as_deref() == Some(name);
            self.accept(user, &how, still)
        } else {
            Ok(self.failed(user, format!("key {fp} is not in authorized_keys")))
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        // A phone's own password first (the user name is the device's), then the shared one.
        let device_hash = self.gate.control.devices.password_hash(user);
        let device = device_hash.is_some().then(|| user.to_string());
        let Some(hash) = device_hash.or_else(|| self.gate.password_hash.clone()) else {
            let why = if self.gate.control.devices.any_password() {
                format!("a password, but {user:?} is not a device with a password")
            } else {
                "a password, but password login is off".into()
            };
            return Ok(self.failed(user, why));
        };
        let password = password.to_string();
        let used = hash.clone();
        // argon2 is deliberately slow: keep it off the async workers.
        let good = tokio::task::spawn_blocking(move || auth::password_ok(&hash, &password))
            .await
            .unwrap_or(false);
        if good {
            self.device = device;
            let still =
                move |d: &Devices, name: &str| d.password_hash(name).as_deref() == Some(&*used);
            return self.accept(user, "with a password", still);
        }
        // Each wrong password counts: passwords, unlike keys, can be guessed.
        self.count_failure();
        Ok(self.failed(user, "wrong password".into()))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.failed(user, "keyboard-interactive, which is not offered".into()))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Reap sessions already over so the count is of live ones.
        while self.sftp.try_join_next().is_some() {}
        if self.channels.len() + self.sftp.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _addr: &str,
        _port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _orig: &str,
        _orig_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::warn!(peer = %self.peer, "port forwarding refused");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&channel)) {
            (pairing::SUBSYSTEM, Some(_)) if self.pairing && self.paired => {
                tracing::warn!(peer = %self.peer, "second pairing on one connection refused");
                session.channel_failure(channel)?;
            }
            (pairing::SUBSYSTEM, Some(ch)) if self.pairing => {
                self.paired = true;
                session.channel_success(channel)?;
                let (gate, peer) = (self.gate.clone(), self.peer);
                let failed = move || {
                    let mut log = Vec::new();
                    gate.admission
                        .failed_login(peer.ip(), Instant::now(), &mut log);
                    super::log_changes(&log);
                };
                self.sftp.spawn(super::pairing::serve(
                    ch.into_stream(),
                    self.gate.control.clone(),
                    self.peer,
                    failed,
                ));
            }
            ("sftp", Some(ch)) if !self.pairing => {
                session.channel_success(channel)?;
                tracing::debug!(peer = %self.peer, user = %self.user, "SFTP session started");
                // Reap sessions already over so the set does not grow on long connections.
                while self.sftp.try_join_next().is_some() {}
                let client = sftp::Client {
                    peer: self.peer,
                    user: self.user.clone(),
                };
                self.sftp.spawn(sftp::serve(
                    ch,
                    self.shared.clone(),
                    client,
                    self.budget.clone(),
                ));
            }
            _ => {
                tracing::warn!(peer = %self.peer, subsystem = name, "subsystem refused");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::warn!(peer = %self.peer, "shell refused");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::warn!(peer = %self.peer, "exec refused");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _c: u32,
        _r: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _proto: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::warn!(peer = %self.peer, "remote port forwarding refused");
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}
