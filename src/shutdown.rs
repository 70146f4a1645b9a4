//! Stopping, one way: a `Shutdown` whose listeners every long-running part holds (the SFTP
//! server, the status socket, scheduled syncs); raising it once tells them all, and each
//! stops at the next point where stopping tears nothing. `Signals` are the ways a person or
//! systemd asks.

#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The flag every part listens to; raised once, never lowered.
pub struct Shutdown(watch::Sender<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(watch::channel(false).0)
    }
}

impl Shutdown {
    pub fn listener(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    pub fn raise(&self) {
        self.0.send_replace(true);
    }
}

/// Resolves once a shutdown-style flag turns true (or its sender is gone).
pub async fn raised(rx: &mut watch::Receiver<bool>) {
    // The borrow guard is dropped here, so callers may hold this across awaits.
    let _ = rx.wait_for(|v| *v).await;
}

/// A signal that asks something of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (systemd, `kill`).
    Term,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGHUP: a closed terminal, or (to the daemon) "reload the configuration".
    Hangup,
}

/// SIGTERM, SIGINT and SIGHUP, handled from the moment this is made: a signal sent during
/// start-up is ours, not fatal.
#[cfg(unix)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.hup.recv() => Signal::Hangup,
        }
    }
}

/// Windows: Ctrl-C and Ctrl-Break (a console closing, or `taskkill` without /F) ask to stop;
/// there is no reload.
#[cfg(windows)]
pub struct Signals {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
}

#[cfg(windows)]
impl Signals {
    pub fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            c: tokio::signal::windows::ctrl_c()?,
            brk: tokio::signal::windows::ctrl_break()?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.c.recv() => Signal::Interrupt,
            _ = self.brk.recv() => Signal::Term,
        }
    }
}
