//! The produce workload: per connection one writer thread that sends at fixed intended times (open loop) or
//! as fast as the in-flight window allows (closed loop), and one reader thread that matches answers by opaque.
//!
//! Coordinated omission: in open loop every latency is measured from the *intended* send time, so a stall that
//! holds back later sends (full window, slow socket) is charged to every message it delayed. The uncorrected
//! histogram (from the actual write) is kept beside it to show the difference.

use bytes::{Bytes, BytesMut};
use rocketcore::remoting::codes::response;
use rocketcore::remoting::frame;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::proto::{self, OutMessage, SendTarget};
use crate::route::{self, QueueSet};
use crate::rpc::{self, lock};
use crate::stats::{code_name, SharedStats, Stats};
use crate::util::{err, sleep_until, wall_ms_now, Clock, Result, Rng, SizeDist};

/// `--rate N` (messages per second, open loop) or `--rate max` (closed-loop saturation).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Rate {
    PerSec(f64),
    Max,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let v: f64 = s
            .trim_end_matches("/s")
            .parse()
            .map_err(|_| crate::util::Error(format!("bad rate `{s}`")))?;
        if !(v.is_finite() && v > 0.0) {
            return err(format!("rate must be positive, got `{s}`"));
        }
        Ok(Rate::PerSec(v))
    }
    pub fn describe(&self) -> String {
        match self {
            Rate::PerSec(r) => {
                format!("open-loop {r} msg/s (latency from intended send time, CO-corrected)")
            }
            Rate::Max => {
                "closed-loop saturation (--rate max: latency from send time, NOT CO-corrected)"
                    .to_string()
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub producer_group: String,
    pub size: SizeDist,
    pub connections: usize,
    pub inflight: usize,
    pub batch: usize,
    pub tags: Option<String>,
    pub keys: bool,
    pub rate: Rate,
    pub warmup: Duration,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub timeout: Duration,
    pub progress: bool,
    /// Adds the intended send time as a property, for `e2e`.
    pub stamp_intended: bool,
}

impl Default for ProduceOptions {
    fn default() -> Self {
        Self {
            producer_group: "rocketcore-bench-pg".into(),
            size: SizeDist::Fixed(1024),
            connections: 1,
            inflight: 64,
            batch: 1,
            tags: None,
            keys: false,
            rate: Rate::PerSec(1000.0),
            warmup: Duration::ZERO,
            duration: Some(Duration::from_secs(10)),
            count: None,
            timeout: Duration::from_secs(3),
            progress: false,
            stamp_intended: false,
        }
    }
}

/// What a run measured (warm-up excluded).
#[derive(Debug)]
pub struct ProduceOutcome {
    pub stats: Stats,
    /// The topics sent to, in the order of the targets.
    pub topics: Vec<String>,
    /// From the end of warm-up to the last answer.
    pub measured: Duration,
}

struct InFlight {
    intended: Instant,
    sent: Instant,
    messages: u64,
    bytes: u64,
    measured: bool,
}

struct Conn {
    pending: Mutex<HashMap<i32, InFlight>>,
    window: Condvar,
    writer_done: AtomicBool,
    broken: AtomicBool,
}

/// Shared, read-only plan of the run.
struct Plan {
    opts: ProduceOptions,
    start: Instant,
    warmup_end: Instant,
    end: Option<Instant>,
    remaining: Option<AtomicI64>,
    clock: Clock,
    payload: Bytes,
    stats: SharedStats,
}

/// Sends to every (topic, queue) pair of `targets`. Connection `c` goes to the `c % brokers`-th broker and
/// cycles through all the (topic, queue) pairs on it, so every topic and queue gets an even share.
pub fn run(targets: &[QueueSet], opts: &ProduceOptions) -> Result<ProduceOutcome> {
    validate(targets, opts)?;
    let groups = route::by_broker(targets);
    let mut streams = Vec::with_capacity(opts.connections);
    for c in 0..opts.connections {
        let (addr, sets) = &groups[c % groups.len()];
        streams.push((rpc::connect(addr, opts.timeout)?, slots(sets, opts)));
    }
    let start = Instant::now();
    let warmup_end = start + opts.warmup;
    let plan = Arc::new(Plan {
        opts: opts.clone(),
        start,
        warmup_end,
        end: opts.duration.map(|d| warmup_end + d),
        remaining: opts.count.map(|c| AtomicI64::new(c as i64)),
        clock: Clock::new(),
        payload: payload(opts.size.max()),
        stats: Stats::shared(),
    });
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let avg = avg_size(&opts.size);
        crate::stats::spawn_progress(
            Arc::clone(&plan.stats),
            start,
            warmup_end,
            avg,
            Arc::clone(&done),
        )
    });
    let mut handles = Vec::new();
    for (c, (stream, slots)) in streams.into_iter().enumerate() {
        let conn = Arc::new(Conn {
            pending: Mutex::new(HashMap::new()),
            window: Condvar::new(),
            writer_done: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        });
        let read_half = stream.try_clone()?;
        let (p, k) = (Arc::clone(&plan), Arc::clone(&conn));
        handles.push(
            std::thread::Builder::new()
                .name(format!("read-{c}"))
                .spawn(move || read_loop(read_half, &p, &k))?,
        );
        let (p, k) = (Arc::clone(&plan), Arc::clone(&conn));
        handles.push(
            std::thread::Builder::new()
                .name(format!("write-{c}"))
                .spawn(move || {
                    write_loop(stream, c, &slots, &p, &k);
                })?,
        );
    }
    for h in handles {
        let _ = h.join();
    }
    done.store(true, Ordering::Relaxed);
    if let Some(h) = progress {
        let _ = h.join();
    }
    let stats = std::mem::take(&mut *lock(&plan.stats));
    let measured = match stats.last_at {
        Some(last) => last.saturating_duration_since(warmup_end),
        None => Duration::ZERO,
    };
    Ok(ProduceOutcome {
        stats,
        topics: route::topics_of(targets),
        measured,
    })
}

fn validate(targets: &[QueueSet], o: &ProduceOptions) -> Result<()> {
    if targets.is_empty() || targets.iter().any(|t| t.queue_ids.is_empty()) {
        return err("no writable queue to send to");
    }
    if o.connections == 0 || o.inflight == 0 || o.batch == 0 {
        return err("--connections, --inflight and --batch must be at least 1");
    }
    if o.duration.is_none() && o.count.is_none() {
        return err("give --duration or --count");
    }
    Ok(())
}

/// Every (topic, queue) pair of one broker's sets, as send targets.
fn slots(sets: &[QueueSet], o: &ProduceOptions) -> Vec<SendTarget> {
    sets.iter()
        .flat_map(|s| {
            s.queue_ids.iter().map(|&q| SendTarget {
                producer_group: o.producer_group.clone(),
                topic: s.topic.clone(),
                queue_id: q,
                broker_name: s.broker_name.clone(),
            })
        })
        .collect()
}

fn avg_size(d: &SizeDist) -> f64 {
    match d {
        SizeDist::Fixed(n) => *n as f64,
        SizeDist::Uniform(lo, hi) => (*lo + *hi) as f64 / 2.0,
        SizeDist::Choice(v) => v.iter().sum::<usize>() as f64 / v.len().max(1) as f64,
    }
}

/// Incompressible-looking bytes, so a broker that compresses cannot flatter itself.
fn payload(len: usize) -> Bytes {
    let mut rng = Rng::new(0x5EED);
    let mut b = BytesMut::with_capacity(len);
    while b.len() < len {
        let v = rng.next_u64().to_le_bytes();
        let n = (len - b.len()).min(8);
        b.extend_from_slice(&v[..n]);
    }
    b.freeze()
}

fn write_loop(mut stream: TcpStream, c: usize, slots: &[SendTarget], plan: &Plan, conn: &Conn) {
    let o = &plan.opts;
    let interval = match o.rate {
        Rate::PerSec(r) => Some(Duration::from_secs_f64(
            o.batch as f64 * o.connections as f64 / r,
        )),
        Rate::Max => None,
    };
    // Connections interleave evenly: connection c starts c/connections of an interval late.
    let phase = interval
        .map(|i| i.mul_f64(c as f64 / o.connections as f64))
        .unwrap_or_default();
    let mut rng = Rng::new(0x9E37_79B9 ^ (c as u64 + 1));
    let uniq_prefix = (std::process::id() as u64) << 32 | c as u64;
    let mut out = BytesMut::with_capacity(64 * 1024);
    for k in 0u64.. {
        let scheduled = interval.map(|i| plan.start + phase + i.mul_f64(k as f64));
        if let Some(t) = scheduled {
            if plan.end.is_some_and(|end| t >= end) {
                break;
            }
            sleep_until(t);
        } else if plan.end.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        if !wait_for_window(conn, o.inflight) {
            break;
        }
        let intended = scheduled.unwrap_or_else(Instant::now);
        let measured = intended >= plan.warmup_end;
        if measured {
            if let Some(rem) = &plan.remaining {
                if rem.fetch_sub(o.batch as i64, Ordering::Relaxed) <= 0 {
                    break;
                }
            }
        }
        let target = &slots[(k as usize + c) % slots.len()];
        let msgs: Vec<OutMessage> = (0..o.batch)
            .map(|i| {
                let n = o.size.sample(&mut rng);
                let seq = k * o.batch as u64 + i as u64;
                OutMessage {
                    body: plan.payload.slice(..n),
                    tags: o.tags.clone(),
                    keys: o.keys.then(|| format!("k{c}-{seq}")),
                    uniq_key: proto::uniq_key(uniq_prefix, seq),
                    intended_us: o.stamp_intended.then(|| plan.clock.wall_us(intended)),
                }
            })
            .collect();
        let bytes: u64 = msgs.iter().map(|m| m.body.len() as u64).sum();
        let opaque = k as i32;
        let cmd = if o.batch == 1 {
            proto::send_v2(target, &msgs[0], opaque, wall_ms_now())
        } else {
            proto::send_batch(target, &msgs, opaque, wall_ms_now())
        };
        out.clear();
        frame::encode(&cmd, &mut out);
        let sent = Instant::now();
        let f = InFlight {
            intended,
            sent,
            messages: o.batch as u64,
            bytes,
            measured,
        };
        lock(&conn.pending).insert(opaque, f);
        if let Err(e) = stream.write_all(&out) {
            lock(&conn.pending).remove(&opaque);
            lock(&plan.stats).record_error(format!("io ({})", e.kind()));
            conn.broken.store(true, Ordering::Relaxed);
            break;
        }
    }
    conn.writer_done.store(true, Ordering::Release);
    conn.window.notify_all();
}

/// Blocks until fewer than `inflight` requests are outstanding; false if the connection broke.
fn wait_for_window(conn: &Conn, inflight: usize) -> bool {
    let mut p = lock(&conn.pending);
    while p.len() >= inflight {
        if conn.broken.load(Ordering::Relaxed) {
            return false;
        }
        p = match conn.window.wait_timeout(p, Duration::from_millis(100)) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
    !conn.broken.load(Ordering::Relaxed)
}

fn read_loop(mut stream: TcpStream, plan: &Plan, conn: &Conn) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match frame::decode(&mut buf) {
                Ok(Some(cmd)) if cmd.is_response() => on_response(cmd.opaque, cmd.code, plan, conn),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    lock(&plan.stats).record_error(format!("bad frame ({e})"));
                    fail_all(plan, conn, "io (bad frame)");
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                fail_all(plan, conn, "io (connection closed)");
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                fail_all(plan, conn, &format!("io ({})", e.kind()));
                return;
            }
        }
        expire(plan, conn);
        if conn.writer_done.load(Ordering::Acquire) && lock(&conn.pending).is_empty() {
            return;
        }
    }
}

fn on_response(opaque: i32, code: i32, plan: &Plan, conn: &Conn) {
    let now = Instant::now();
    let Some(f) = lock(&conn.pending).remove(&opaque) else {
        return; // answered after its timeout: already counted
    };
    conn.window.notify_one();
    let corrected = now.saturating_duration_since(f.intended).as_micros() as u64;
    let uncorrected = now.saturating_duration_since(f.sent).as_micros() as u64;
    let mut s = lock(&plan.stats);
    match (code == response::SUCCESS, f.measured) {
        (true, true) => s.record_ok(corrected, uncorrected, f.messages, f.bytes, now),
        (true, false) => s.record_warmup(corrected, f.messages),
        (false, true) => s.record_error(code_name(code)),
        (false, false) => {}
    }
}

fn expire(plan: &Plan, conn: &Conn) {
    let now = Instant::now();
    let timeout = plan.opts.timeout;
    let mut expired = 0;
    {
        let mut p = lock(&conn.pending);
        p.retain(|_, f| {
            let keep = now.saturating_duration_since(f.sent) < timeout;
            if !keep && f.measured {
                expired += 1;
            }
            keep
        });
    }
    if expired > 0 {
        let mut s = lock(&plan.stats);
        for _ in 0..expired {
            s.record_error("timeout".into());
        }
        conn.window.notify_all();
    }
}

fn fail_all(plan: &Plan, conn: &Conn, why: &str) {
    conn.broken.store(true, Ordering::Relaxed);
    let lost: Vec<InFlight> = lock(&conn.pending).drain().map(|(_, f)| f).collect();
    let mut s = lock(&plan.stats);
    for f in lost.iter().filter(|f| f.measured) {
        let _ = f;
        s.record_error(why.to_string());
    }
    if lost.is_empty() && !conn.writer_done.load(Ordering::Acquire) {
        s.record_error(why.to_string());
    }
    conn.window.notify_all();
}
