//! A small blocking request/response client over one TCP connection, matching responses by opaque.
//! Used for NameServer look-ups, heartbeats and pulls; the producer has its own paced connection.

use bytes::BytesMut;
use rocketcore::remoting::{frame, RemotingCommand};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::{Error, Result};

type Pending = Arc<Mutex<HashMap<i32, Sender<RemotingCommand>>>>;

pub struct RpcClient {
    addr: String,
    writer: Mutex<TcpStream>,
    pending: Pending,
    next_opaque: AtomicI32,
    reader: Option<JoinHandle<()>>,
}

pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| Error(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| Error(format!("{addr} resolves to nothing")))?;
    let s = TcpStream::connect_timeout(&sock, timeout)
        .map_err(|e| Error(format!("connect {addr}: {e}")))?;
    s.set_nodelay(true)?;
    Ok(s)
}

impl RpcClient {
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        let stream = connect(addr, timeout)?;
        let read_half = stream.try_clone()?;
        let pending: Pending = Arc::default();
        let p = Arc::clone(&pending);
        let reader = std::thread::Builder::new()
            .name(format!("rpc-read-{addr}"))
            .spawn(move || read_loop(read_half, p))?;
        Ok(Self {
            addr: addr.to_string(),
            writer: Mutex::new(stream),
            pending,
            next_opaque: AtomicI32::new(1),
            reader: Some(reader),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn next_opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `cmd` (its opaque replaced by a fresh one) and waits for the response.
    pub fn call(&self, mut cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        cmd.opaque = self.next_opaque();
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(cmd.opaque, tx);
        let bytes = frame::encode_to_vec(&cmd);
        let written = lock(&self.writer).write_all(&bytes);
        if let Err(e) = written {
            lock(&self.pending).remove(&cmd.opaque);
            return Err(Error(format!("write to {}: {e}", self.addr)));
        }
        match rx.recv_timeout(timeout) {
            Ok(resp) => Ok(resp),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.pending).remove(&cmd.opaque);
                Err(Error(format!(
                    "timeout after {timeout:?} waiting for {} (code {})",
                    self.addr, cmd.code
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error(format!("connection to {} closed", self.addr)))
            }
        }
    }

    /// Closes the connection: every waiting `call` returns an error at once.
    pub fn shutdown(&self) {
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn read_loop(mut s: TcpStream, pending: Pending) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    'outer: loop {
        loop {
            match frame::decode(&mut buf) {
                Ok(Some(cmd)) if cmd.is_response() => {
                    if let Some(tx) = lock(&pending).remove(&cmd.opaque) {
                        let _ = tx.send(cmd);
                    }
                }
                // Requests from the broker (NOTIFY_CONSUMER_IDS_CHANGED…) need no answer from a bench.
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    // Dropping the senders wakes every waiting call with Disconnected.
    lock(&pending).clear();
}

/// Locks, recovering the data if another thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
