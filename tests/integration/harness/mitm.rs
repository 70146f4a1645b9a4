//! `Mitm`: a man in the middle of a pairing. It ends the laptop's SSH connection with a host
//! key of its own, opens its own connection to the real hub, and relays the pairing
//! subsystem's bytes both ways unchanged — the strongest relay that does not know the code.
//! Its thread ends when it is dropped.

use russh::keys::{PrivateKey, PublicKeyOrCertificate};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, client, server};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const SUBSYSTEM: &str = "filesync-pair@filesync";

pub struct Mitm {
    pub port: u16,
    relayed: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Mitm {
    /// Listens on 127.0.0.1 and relays to the hub on `hub_port`.
    pub fn start(hub_port: u16) -> Mitm {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the mitm");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let relayed = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let r = relayed.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                    .expect("host key");
                let config = Arc::new(server::Config {
                    keys: vec![key],
                    ..Default::default()
                });
                tokio::select! {
                    _ = stopped => {}
                    _ = accept(listener, config, hub_port, r) => {}
                }
            });
        });
        Mitm {
            port,
            relayed,
            stop: Some(stop),
        }
    }

    /// Bytes carried between the laptop and the hub, both ways.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    config: Arc<server::Config>,
    hub_port: u16,
    relayed: Arc<AtomicU64>,
) {
    while let Ok((sock, _)) = listener.accept().await {
        let h = Front {
            hub_port,
            relayed: relayed.clone(),
            channels: HashMap::new(),
        };
        let config = config.clone();
        tokio::spawn(async move {
            if let Ok(s) = server::run_stream(config, sock, h).await {
                let _ = s.await;
            }
        });
    }
}

/// The side the laptop talks to.
struct Front {
    hub_port: u16,
    relayed: Arc<AtomicU64>,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

struct Back;

impl client::Handler for Back {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

impl server::Handler for Front {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(front) = self.channels.remove(&channel) else {
            return Ok(());
        };
        let hub = client::connect(
            Arc::new(client::Config::default()),
            ("127.0.0.1", self.hub_port),
            Back,
        )
        .await?;
        let mut hub = hub;
        hub.authenticate_none("filesync-pair").await?;
        let back = hub.channel_open_session().await?;
        back.request_subsystem(true, SUBSYSTEM).await?;
        assert_eq!(name, SUBSYSTEM);
        session.channel_success(channel)?;
        let relayed = self.relayed.clone();
        tokio::spawn(async move {
            let mut a = front.into_stream();
            let mut b = back.into_stream();
            if let Ok((x, y)) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                relayed.fetch_add(x + y, Ordering::SeqCst);
            }
            drop(hub);
        });
        Ok(())
    }
}
