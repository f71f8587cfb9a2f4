//! Calling a remote peer (the broker registering with a NameServer): one short-lived
//! connection per call, which is plenty for calls made every 30 s.

use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rocketcore_shards::runtime::{timeout, TcpStream};

use crate::remoting::{frame, RemotingCommand};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} closed the connection before answering")]
    Closed { addr: String },
    #[error("{addr} sent an undecodable frame: {source}")]
    Decode {
        addr: String,
        source: crate::remoting::Error,
    },
    #[error("{addr} did not answer within {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
}

/// Sends `cmd` to `addr` and waits for the response with the same opaque.
pub async fn invoke(
    addr: &str,
    cmd: RemotingCommand,
    limit: Duration,
) -> Result<RemotingCommand, ClientError> {
    match timeout(limit, invoke_inner(addr, cmd)).await {
        Some(r) => r,
        None => Err(ClientError::Timeout {
            addr: addr.to_string(),
            timeout: limit,
        }),
    }
}

/// Sends a oneway request (no answer expected).
pub async fn invoke_oneway(
    addr: &str,
    cmd: RemotingCommand,
    limit: Duration,
) -> Result<(), ClientError> {
    let cmd = cmd.mark_oneway();
    let a = addr.to_string();
    let send = async move {
        let mut s = TcpStream::connect(a.as_str())
            .await
            .map_err(|e| ClientError::Connect {
                addr: a.clone(),
                source: e.into(),
            })?;
        s.write_all(&frame::encode_to_vec(&cmd))
            .await
            .map_err(|e| ClientError::Io {
                addr: a.clone(),
                source: e,
            })?;
        s.flush().await.map_err(|e| ClientError::Io {
            addr: a.clone(),
            source: e,
        })?;
        Ok(())
    };
    timeout(limit, send)
        .await
        .unwrap_or(Err(ClientError::Timeout {
            addr: addr.to_string(),
            timeout: limit,
        }))
}

async fn invoke_inner(addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand, ClientError> {
    let a = || addr.to_string();
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| ClientError::Connect {
            addr: a(),
            source: e.into(),
        })?;
    let _ = s.set_nodelay(true);
    s.write_all(&frame::encode_to_vec(&cmd))
        .await
        .map_err(|e| ClientError::Io {
            addr: a(),
            source: e,
        })?;
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(resp) = frame::decode(&mut buf).map_err(|e| ClientError::Decode {
            addr: a(),
            source: e,
        })? {
            if resp.is_response() && resp.opaque == cmd.opaque {
                return Ok(resp);
            }
        }
        let n = s.read(&mut chunk).await.map_err(|e| ClientError::Io {
            addr: a(),
            source: e,
        })?;
        if n == 0 {
            return Err(ClientError::Closed { addr: a() });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
