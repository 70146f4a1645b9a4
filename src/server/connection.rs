//! One SSH connection: authentication decisions and channel requests. Only the `sftp`
//! subsystem is ever granted; shells, exec, forwarding and agents are refused.

use super::auth::{self, FailureLimiter};
use super::sftp::{self, Shared};
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;

/// What every connection needs to decide on logins.
pub struct Gate {
    pub keys: Vec<PublicKey>,
    pub password_hash: Option<String>,
    pub failures: FailureLimiter,
}

pub struct Connection {
    pub peer: SocketAddr,
    pub gate: Arc<Gate>,
    pub shared: Arc<Shared>,
    pub channels: HashMap<ChannelId, Channel<Msg>>,
    /// SFTP sessions of this connection; dropped (and aborted) with it.
    pub sftp: JoinSet<()>,
}

impl Connection {
    fn methods(&self) -> MethodSet {
        let mut m = MethodSet::empty();
        m.push(MethodKind::PublicKey);
        if self.gate.password_hash.is_some() {
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

    fn failed(&self, user: &str, how: &str) -> Auth {
        let n = self.gate.failures.record_failure(self.peer.ip());
        tracing::warn!(peer = %self.peer, user, attempts = n, "login refused ({how})");
        self.reject()
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if auth::key_allowed(&self.gate.keys, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            // A client offering several keys is normal; only count it, no warning per key.
            self.gate.failures.record_failure(self.peer.ip());
            tracing::debug!(peer = %self.peer, user, "public key not in authorized_keys");
            Ok(self.reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if auth::key_allowed(&self.gate.keys, key.public_key) {
            let fp = key.public_key.fingerprint(russh::keys::HashAlg::Sha256);
            tracing::info!(peer = %self.peer, user, key = %fp, "client logged in");
            Ok(Auth::Accept)
        } else {
            Ok(self.failed(user, "unknown public key"))
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let Some(hash) = self.gate.password_hash.clone() else {
            return Ok(self.failed(user, "password login is not enabled"));
        };
        let password = password.to_string();
        // argon2 is deliberately slow: keep it off the async workers.
        let good = tokio::task::spawn_blocking(move || auth::password_ok(&hash, &password))
            .await
            .unwrap_or(false);
        if good {
            tracing::info!(peer = %self.peer, user, "client logged in with a password");
            Ok(Auth::Accept)
        } else {
            Ok(self.failed(user, "wrong password"))
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.failed(user, "keyboard-interactive is not offered"))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= 16 {
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
            ("sftp", Some(ch)) => {
                session.channel_success(channel)?;
                tracing::debug!(peer = %self.peer, "SFTP session started");
                // Reap sessions already over so the set does not grow on long connections.
                while self.sftp.try_join_next().is_some() {}
                self.sftp
                    .spawn(sftp::serve(ch, self.shared.clone(), self.peer.to_string()));
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
