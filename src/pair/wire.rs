//! One pairing message per frame: a 4-byte big-endian length, then that much JSON.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// No message of the exchange comes near this; a bigger frame is an attack or a mistake.
const MAX_FRAME: u32 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the connection ended during pairing")]
    Io(#[from] std::io::Error),
    #[error("a pairing message of {0} bytes is too big")]
    TooBig(u32),
    #[error("an unreadable pairing message ({0})")]
    Json(#[from] serde_json::Error),
}

pub async fn send<T: serde::Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooBig(u32::MAX))?;
    if len > MAX_FRAME {
        return Err(WireError::TooBig(len));
    }
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

pub async fn recv<T: serde::de::DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<T, WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(WireError::TooBig(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}
