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

    let mut buf = ReadBuf::new();
    'read: loop {
        loop {
            match frame::decode(&mut buf.buf) {
                Ok(Some(cmd)) => dispatch(&handler, cmd, &conn),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %conn.peer, error = %e, "undecodable frame; closing the connection");
                    break 'read;
                }
            }
        }
        match reader.read(buf.spare()).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.filled(n),
        }
    }
    handler.closed(&conn);
    conn.outbound.close();
}

/// A connection's read buffer. Reads land straight in its spare capacity and frames are split
/// off it, so each byte is copied once, by the kernel. Before, reads went through a separate
/// chunk and were copied in, and the buffer grew by realloc: ~7 % of the broker's CPU on
/// 128-message batch sends (perf, 2026-11-22).
struct ReadBuf {
    buf: BytesMut,
    /// Where the spare capacity started when `init` was counted: a reserve that moves or
    /// reallocates the buffer changes it, and the count starts again.
    spare_at: *const u8,
    /// Bytes at the start of the spare capacity that are initialised (zeroed here, or written
    /// by a read that came up short), so they can be handed to a read as `&mut [u8]`.
    init: usize,
}

impl ReadBuf {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(READ_CHUNK),
            spare_at: std::ptr::null(),
            init: 0,
        }
    }

    /// Spare capacity for the next read: what the buffer has (the frame decoder reserves a
    /// whole frame), at least [`READ_CHUNK`], zeroed the first time it is used.
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK {
            self.buf.reserve(READ_CHUNK);
        }
        let spare = self.buf.spare_capacity_mut();
        if spare.as_ptr() as *const u8 != self.spare_at {
            self.spare_at = spare.as_ptr() as *const u8;
            self.init = 0;
        }
        let want = spare.len().min(MAX_READ);
        if self.init < want {
            spare[self.init..want].fill(std::mem::MaybeUninit::new(0));
            self.init = want;
        }
        let spare = &mut spare[..want];
        // SAFETY: every byte of `spare` is initialised: zeroed just above or on an earlier
        // call, or written by an earlier read (`init` only counts such bytes), and
        // `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) }
    }

    /// The last read wrote `n` bytes at the start of [`ReadBuf::spare`].
    fn filled(&mut self, n: usize) {
        debug_assert!(n <= self.init, "read past the initialised spare capacity");
        let n = n.min(self.init);
        // SAFETY: the `n` bytes after `len` are initialised (see `spare`) and lie within
        // the capacity, since `init` never exceeds the spare capacity.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        self.init -= n;
        self.spare_at = self.spare_at.wrapping_add(n);
    }
}

/// Most bytes one read asks for: a 16 MiB frame is read in pieces, so the zeroing before a
/// read stays proportional to what arrives.
const MAX_READ: usize = 1024 * 1024;

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
