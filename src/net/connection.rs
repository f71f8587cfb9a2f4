//! One client connection on one shard: a reader that decodes frames and runs each request as
//! its own task (a held long-poll must not block the requests behind it), and a writer that
//! sends responses and broker-initiated requests in arrival order.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rocketcore_shards::runtime::{spawn, TcpStream};

use crate::remoting::{frame, RemotingCommand};

/// Frames queued for one connection's writer; beyond this, senders wait.
const OUTBOUND_CAPACITY: usize = 4096;
const READ_CHUNK: usize = 64 * 1024;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What a handler knows about the connection a request came on. The outbound sender is `Send`,
/// so any shard can push a request (e.g. NOTIFY_CONSUMER_IDS_CHANGED) to this client.
#[derive(Clone, Debug)]
pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    pub outbound: async_channel::Sender<RemotingCommand>,
}

pub trait Handler: 'static {
    /// Answers one request; `None` for oneway requests and requests that get no answer.
    fn handle(
        self: &Rc<Self>,
        cmd: RemotingCommand,
        conn: &Conn,
    ) -> impl Future<Output = Option<RemotingCommand>>;
    /// The connection closed.
    fn closed(self: &Rc<Self>, _conn: &Conn) {}
}

pub async fn serve_connection<H: Handler>(stream: TcpStream, handler: Rc<H>) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let (tx, rx) = async_channel::bounded::<RemotingCommand>(OUTBOUND_CAPACITY);
    let conn = Conn {
        id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        outbound: tx,
    };
    let (mut reader, mut writer) = futures_lite::io::split(stream);

    spawn(async move {
        let mut out = BytesMut::with_capacity(READ_CHUNK);
        while let Ok(first) = rx.recv().await {
            frame::encode(&first, &mut out);
            // Coalesce whatever else is ready into the same write.
            while out.len() < READ_CHUNK {
                match rx.try_recv() {
                    Ok(next) => frame::encode(&next, &mut out),
                    Err(_) => break,
                }
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        let _ = writer.close().await;
    });

    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    'read: loop {
        loop {
            match frame::decode(&mut buf) {
                Ok(Some(cmd)) => dispatch(&handler, cmd, &conn),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %conn.peer, error = %e, "undecodable frame; closing the connection");
                    break 'read;
                }
            }
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    handler.closed(&conn);
    conn.outbound.close();
}

fn dispatch<H: Handler>(handler: &Rc<H>, cmd: RemotingCommand, conn: &Conn) {
    if cmd.is_response() {
        // Answers to requests we sent oneway; nothing waits for them.
        return;
    }
    let handler = handler.clone();
    let conn = conn.clone();
    spawn(async move {
        let oneway = cmd.is_oneway();
        if let Some(resp) = handler.handle(cmd, &conn).await {
            if !oneway {
                let _ = conn.outbound.send(resp).await;
            }
        }
    });
}
