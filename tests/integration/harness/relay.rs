//! `Relay`: a loopback TCP port in front of a server that forwards a set number of bytes and
//! then stalls, holding every connection open without reading or writing (a peer that hangs
//! mid-transfer, a server that stops reading); with no server behind it, a black hole that
//! accepts and never answers (a wrong port, a sleeping laptop behind a NAT). Its threads end
//! when it is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    /// Bytes that may still go through, both directions together.
    budget: AtomicU64,
    stalled: AtomicBool,
    connections: AtomicUsize,
    done: AtomicBool,
}

const POLL: Duration = Duration::from_millis(50);

impl Relay {
    /// Accepts on 127.0.0.1 and never sends or reads a byte.
    pub fn black_hole() -> Relay {
        Relay::start(None, 0)
    }

    /// Forwards to `to` until `budget` bytes went through, then stalls.
    pub fn stalling_after(to: SocketAddr, budget: u64) -> Relay {
        Relay::start(Some(to), budget)
    }

    fn start(to: Option<SocketAddr>, budget: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            budget: AtomicU64::new(budget),
            stalled: AtomicBool::new(to.is_none()),
            connections: AtomicUsize::new(0),
            done: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, to, s));
        Relay { port, shared }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Whether the budget is spent and nothing moves any more.
    pub fn stalled(&self) -> bool {
        self.shared.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, to: Option<SocketAddr>, s: Arc<Shared>) {
    let mut held = Vec::new();
    while !s.done.load(Ordering::SeqCst) {
        let conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => break,
        };
        s.connections.fetch_add(1, Ordering::SeqCst);
        let _ = conn.set_nonblocking(false);
        match to.map(TcpStream::connect) {
            Some(Ok(server)) => {
                for (from, into) in [(&conn, &server), (&server, &conn)] {
                    let (Ok(from), Ok(into)) = (from.try_clone(), into.try_clone()) else {
                        continue;
                    };
                    let s = s.clone();
                    std::thread::spawn(move || pump(from, into, s));
                }
                held.push(server);
            }
            Some(Err(_)) => {}
            None => {}
        }
        held.push(conn);
    }
}

/// Copies `from` into `into` while the budget lasts; then holds both, moving nothing.
fn pump(mut from: TcpStream, mut into: TcpStream, s: Arc<Shared>) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 16 << 10];
    while !s.done.load(Ordering::SeqCst) {
        if s.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let left = s
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_sub(n as u64))
            })
            .unwrap_or(0);
        let pass = (n as u64).min(left) as usize;
        if into.write_all(&buf[..pass]).is_err() {
            break;
        }
        if pass < n || left == pass as u64 {
            s.stalled.store(true, Ordering::SeqCst);
        }
    }
    // Closing only once the relay is dropped: until then the peers see a silent connection.
    while !s.done.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
    }
}
