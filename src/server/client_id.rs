//! A client's socket that remembers the first line the client sent (its SSH software version,
//! `SSH-2.0-JSCH-0.1.55`), so the log can say which app could not connect and why, and that
//! acknowledges what it reads at once (see `Noting::poll_read`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest identification line SSH allows (RFC 4253 §4.2), CR LF included.
const MAX_LINE: usize = 255;

/// The version a connection's client announced; empty until its first line is in.
#[derive(Clone, Default)]
pub struct ClientId(Arc<Mutex<String>>);

impl ClientId {
    /// What the client said it is, or what it sent instead, printable and short.
    pub fn get(&self) -> String {
        let s = self.0.lock().map(|s| s.clone()).unwrap_or_default();
        if s.is_empty() {
            "no version sent".into()
        } else {
            s
        }
    }

    fn set(&self, line: &[u8]) {
        let text: String = String::from_utf8_lossy(line)
            .trim_end_matches(['\r', '\n'])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(80)
            .collect();
        if let Ok(mut s) = self.0.lock() {
            *s = text;
        }
    }
}

/// `inner`, noting the bytes the client sends until its first line ends.
pub struct Noting<S> {
    inner: S,
    id: ClientId,
    line: Option<Vec<u8>>,
}

impl<S> Noting<S> {
    pub fn new(inner: S, id: ClientId) -> Self {
        Noting {
            inner,
            id,
            line: Some(Vec::new()),
        }
    }

    fn note(&mut self, bytes: &[u8]) {
        let Some(line) = self.line.as_mut() else {
            return;
        };
        let end = bytes.iter().position(|&b| b == b'\n');
        let take = end
            .map_or(bytes.len(), |i| i + 1)
            .min(MAX_LINE - line.len());
        line.extend_from_slice(&bytes[..take]);
        if end.is_some() || line.len() >= MAX_LINE {
            self.id.set(line);
            self.line = None;
        }
    }
}

impl<S: AsyncRead + Unpin + std::os::fd::AsFd> AsyncRead for Noting<S> {
    /// Every read also asks for an immediate ACK (TCP_QUICKACK, which Linux drops again by
    /// itself): a client that leaves Nagle on (Java's default; Trilead, older Android apps)
    /// holds the tail of each request until the last segment is acknowledged, and a delayed
    /// ACK made every request-reply round trip ~40 ms.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        #[cfg(target_os = "linux")]
        if buf.filled().len() > before {
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.inner, true);
        }
        if self.line.is_some() {
            let new = buf.filled()[before..].to_vec();
            self.note(&new);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Noting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_first_line_is_noted_across_reads_and_nothing_after_it() {
        let id = ClientId::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tx = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (rx, _) = listener.accept().await.unwrap();
        let mut s = Noting::new(rx, id.clone());
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"SSH-2.0-Pu")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(n, 10);
        assert_eq!(id.get(), "no version sent");
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"TTY_Release_0.78\r\n\x00\x01binary")
            .await
            .unwrap();
        let _ = s.read(&mut buf).await.unwrap();
        assert_eq!(id.get(), "SSH-2.0-PuTTY_Release_0.78");
    }

    #[test]
    fn garbage_is_kept_short_and_printable() {
        let id = ClientId::default();
        let mut s = Noting::new(tokio::io::empty(), id.clone());
        s.note(&[0xff; 400]);
        let got = id.get();
        assert!(
            got.chars().count() <= 80 && !got.chars().any(char::is_control),
            "{got}"
        );
    }
}
