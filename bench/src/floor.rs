//! The machine's own floor for a request/response over loopback TCP: an echo server that does no
//! work, driven at the same fixed rate and with the same request/response sizes as a produce run.
//! Whatever latency this shows, no broker on the same machine can beat; a broker's numbers read
//! best as a ratio to it, measured in the same session.
//!
//! One connection, requests pipelined like a produce run's (a writer thread sends at the intended
//! times, a reader thread takes the answers in order), latency from the intended send time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::hist::{new_histogram, record_us, LatencyHistogram};
use crate::util::{sleep_until, Error, Result};

#[derive(Debug, Clone)]
pub struct FloorOptions {
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_bytes: usize,
    pub response_bytes: usize,
}

pub struct FloorOutcome {
    pub latency: LatencyHistogram,
    pub requests: u64,
    pub elapsed: Duration,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error(format!("floor: {what}: {e}"))
}

/// Answers each `request_bytes` read with `response_bytes`, until the client closes.
fn echo(mut conn: TcpStream, request_bytes: usize, response_bytes: usize) {
    let _ = conn.set_nodelay(true);
    let mut req = vec![0u8; request_bytes];
    let resp = vec![0u8; response_bytes];
    while conn.read_exact(&mut req).is_ok() {
        if conn.write_all(&resp).is_err() {
            return;
        }
    }
}

pub fn run(o: &FloorOptions) -> Result<FloorOutcome> {
    if !o.rate.is_finite() || o.rate <= 0.0 || o.request_bytes == 0 || o.response_bytes == 0 {
        return Err(Error(
            "floor: --rate, --request-bytes and --response-bytes must be positive".into(),
        ));
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    let addr = listener.local_addr().map_err(io("local address"))?;
    let (req_len, resp_len) = (o.request_bytes, o.response_bytes);
    let server = std::thread::Builder::new()
        .name("floor-echo".into())
        .spawn(move || {
            if let Ok((conn, _)) = listener.accept() {
                echo(conn, req_len, resp_len);
            }
        })
        .map_err(io("spawn the echo thread"))?;
    let mut conn = TcpStream::connect(addr).map_err(io("connect"))?;
    conn.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io("read timeout"))?;

    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let start = Instant::now();
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    // The reader takes each request's intended time in send order (TCP keeps the order).
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<Instant>();
    let mut reader_conn = conn.try_clone().map_err(io("clone the connection"))?;
    let reader = std::thread::Builder::new()
        .name("floor-reader".into())
        .spawn(move || -> Result<(LatencyHistogram, u64)> {
            let mut resp = vec![0u8; resp_len];
            let mut latency = new_histogram();
            let mut requests = 0u64;
            for intended in sent_rx {
                reader_conn.read_exact(&mut resp).map_err(io("receive"))?;
                if intended >= measure_from {
                    record_us(&mut latency, intended.elapsed().as_micros() as u64);
                    requests += 1;
                }
            }
            Ok((latency, requests))
        })
        .map_err(io("spawn the reader thread"))?;
    let req = vec![0x5Au8; o.request_bytes];
    let mut sent = Ok(());
    for k in 0u32.. {
        let intended = start + interval * k;
        if intended >= end {
            break;
        }
        sleep_until(intended);
        if sent_tx.send(intended).is_err() {
            break; // the reader failed; its error is reported below
        }
        if let Err(e) = conn.write_all(&req) {
            sent = Err(io("send")(e));
            break;
        }
    }
    drop(sent_tx);
    let read = reader
        .join()
        .map_err(|_| Error("floor: the reader thread panicked".into()))?;
    let _ = conn.shutdown(Shutdown::Both);
    let _ = server.join();
    sent?;
    let (latency, requests) = read?;
    Ok(FloorOutcome {
        latency,
        requests,
        elapsed: o.duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_floor_answers_every_request_and_counts_only_measured_ones() {
        let o = FloorOptions {
            rate: 2000.0,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(200),
            request_bytes: 1300,
            response_bytes: 300,
        };
        let out = run(&o).expect("floor run");
        // 200 ms at 2000/s is 400 intended sends; all are answered, none from the warm-up.
        assert_eq!(out.requests, 400);
        assert_eq!(out.latency.len(), 400);
    }

    #[test]
    fn a_zero_rate_is_a_clear_error() {
        let o = FloorOptions {
            rate: 0.0,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(10),
            request_bytes: 1,
            response_bytes: 1,
        };
        assert!(run(&o).is_err());
    }
}
