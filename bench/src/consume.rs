//! The consume workload: per broker one connection and a HEART_BEAT subscribing to every topic it serves, then
//! one PULL_MESSAGE loop per (topic, queue) (sysFlag 2, long polling), parsing the stored records of each
//! answer (§4.1).
//!
//! Two latencies are kept:
//! - the pull round trip (`Stats::pull_rtt`): from writing a PULL_MESSAGE to reading its answer, for every pull
//!   that returned messages. Draining a backlog, this is what the broker makes a consumer wait: the consume
//!   run's headline. (A pull that finds its queue drained is parked by the broker until a message arrives, so
//!   for a caught-up consumer it also holds the wait for the next message.)
//! - the age at delivery (`Stats::corrected`): delivery time minus the message's intended send time when the
//!   bench stamped one (e2e), else minus its born timestamp. For e2e that is the latency; for a backlog it is
//!   mostly how old the backlog was.

use rocketcore::remoting::codes::response;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto;
use crate::route::QueueSet;
use crate::rpc::{lock, RpcClient};
use crate::stats::{code_name, SharedStats, Stats};
use crate::util::{err, wall_us_now, Error, Result};

#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub group: String,
    /// Start at offset 0 instead of the current end of each queue.
    pub from_first: bool,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub suspend: Duration,
    pub progress: bool,
    /// e2e: a message is warm-up by its send time; plain consume: by its delivery time.
    pub warmup_by_send_time: bool,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            group: "rocketcore-bench-cg".into(),
            from_first: false,
            duration: Some(Duration::from_secs(10)),
            count: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(3),
            suspend: Duration::from_secs(2),
            progress: false,
            warmup_by_send_time: false,
        }
    }
}

/// A running consumer: positioned on every queue before `start` returns.
pub struct Consumer {
    clients: Vec<Arc<RpcClient>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pub stats: SharedStats,
    /// Every message pulled, warm-up included.
    pub pulled: Arc<AtomicU64>,
    /// Records whose intended (or born) time is before this wall-clock µs are warm-up.
    pub measure_from_us: Arc<AtomicU64>,
}

pub fn start(sets: &[QueueSet], o: &ConsumeOptions) -> Result<Consumer> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Stats::shared();
    let pulled = Arc::new(AtomicU64::new(0));
    let measure_from_us = Arc::new(AtomicU64::new(wall_us_now() + o.warmup.as_micros() as u64));
    let client_id = format!("127.0.0.1@rocketcore-bench-{}", std::process::id());
    let mut clients = Vec::new();
    let mut threads = Vec::new();
    for (addr, group) in crate::route::by_broker(sets) {
        let c = Arc::new(RpcClient::connect(&addr, o.timeout)?);
        let topics = crate::route::topics_of(&group);
        let hb = c.call(
            proto::heartbeat(&client_id, &o.group, &topics, 0),
            o.timeout,
        )?;
        if hb.code != response::SUCCESS {
            return err(format!("HEART_BEAT to {addr}: {}", code_name(hb.code)));
        }
        for set in &group {
            for &q in &set.queue_ids {
                let offset = if o.from_first {
                    0
                } else {
                    max_offset(&c, &set.topic, q, o.timeout)?
                };
                let ctx = PullCtx {
                    client: Arc::clone(&c),
                    opts: o.clone(),
                    topic: set.topic.clone(),
                    queue_id: q,
                    stop: Arc::clone(&stop),
                    stats: Arc::clone(&stats),
                    pulled: Arc::clone(&pulled),
                    measure_from_us: Arc::clone(&measure_from_us),
                };
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("pull-{}-{q}", set.topic))
                        .spawn(move || ctx.run(offset))?,
                );
            }
        }
        clients.push(c);
    }
    Ok(Consumer {
        clients,
        threads,
        stop,
        stats,
        pulled,
        measure_from_us,
    })
}

impl Consumer {
    /// Stops every pull loop (closing the connections ends parked long polls) and returns the stats.
    pub fn finish(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        for c in &self.clients {
            c.shutdown();
        }
        for t in self.threads {
            let _ = t.join();
        }
        std::mem::take(&mut *lock(&self.stats))
    }

    pub fn measured_messages(&self) -> u64 {
        lock(&self.stats).messages
    }
}

fn max_offset(c: &RpcClient, topic: &str, q: i32, timeout: Duration) -> Result<i64> {
    let r = c.call(proto::get_max_offset(topic, q, 0), timeout)?;
    if r.code != response::SUCCESS {
        return err(format!("GET_MAX_OFFSET {topic}/{q}: {}", code_name(r.code)));
    }
    r.field("offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error(format!("GET_MAX_OFFSET {topic}/{q}: no offset in answer")))
}

struct PullCtx {
    client: Arc<RpcClient>,
    opts: ConsumeOptions,
    topic: String,
    queue_id: i32,
    stop: Arc<AtomicBool>,
    stats: SharedStats,
    pulled: Arc<AtomicU64>,
    measure_from_us: Arc<AtomicU64>,
}

impl PullCtx {
    fn run(self, mut offset: i64) {
        let o = &self.opts;
        let rpc_timeout = o.suspend + o.timeout + Duration::from_secs(5);
        while !self.stop.load(Ordering::Relaxed) {
            let req = proto::pull(
                &o.group,
                &self.topic,
                self.queue_id,
                offset,
                o.suspend.as_millis() as u64,
                0,
            );
            let sent = Instant::now();
            let resp = match self.client.call(req, rpc_timeout) {
                Ok(r) => r,
                Err(e) if !self.stop.load(Ordering::Relaxed) => {
                    lock(&self.stats).record_error(if e.0.contains("timeout") {
                        "timeout".into()
                    } else {
                        "io".into()
                    });
                    // The connection is gone or the broker is stuck; another pull would fail the same way.
                    if e.0.contains("closed") || e.0.contains("write") {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            let next = resp
                .field("nextBeginOffset")
                .and_then(|v| v.parse::<i64>().ok());
            match resp.code {
                response::SUCCESS => self.deliver(&resp.body, sent),
                response::PULL_NOT_FOUND
                | response::PULL_RETRY_IMMEDIATELY
                | response::PULL_OFFSET_MOVED => {}
                code => {
                    lock(&self.stats).record_error(code_name(code));
                    // Back off like a Java client after an unexpected answer (it waits 1 s); keep it short.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Some(n) = next {
                offset = n;
            }
        }
    }

    /// Records one answer with messages; `sent` is when its pull was written.
    fn deliver(&self, body: &[u8], sent: Instant) {
        let now = Instant::now();
        let now_us = wall_us_now();
        let rtt_us = now.saturating_duration_since(sent).as_micros() as u64;
        let records = match proto::parse_records(body) {
            Ok(r) => r,
            Err(e) => {
                lock(&self.stats).record_error(format!("bad pull body ({e})"));
                return;
            }
        };
        self.pulled
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let from = self.measure_from_us.load(Ordering::Relaxed);
        let mut s = lock(&self.stats);
        s.record_pull(rtt_us, now_us >= from);
        for r in records {
            let born_us = (r.born_ms.max(0) as u64) * 1000;
            let sent_us = r.intended_us.unwrap_or(born_us);
            let latency = now_us.saturating_sub(sent_us);
            let since_born = now_us.saturating_sub(born_us);
            let phase_us = if self.opts.warmup_by_send_time {
                sent_us
            } else {
                now_us
            };
            if phase_us >= from {
                s.record_ok(latency, since_born, 1, r.body_len as u64, now);
            } else {
                s.record_warmup(latency, 1);
            }
        }
    }
}

/// Runs a consumer alone until the duration ends or `count` messages arrived.
pub fn run(sets: &[QueueSet], o: &ConsumeOptions) -> Result<(Stats, Duration)> {
    let started = Instant::now();
    let consumer = start(sets, o)?;
    lock(&consumer.stats).progress_on_pull_rtt();
    let done = Arc::new(AtomicBool::new(false));
    let warmup_end = started + o.warmup;
    let progress = o.progress.then(|| {
        crate::stats::spawn_progress(
            Arc::clone(&consumer.stats),
            started,
            warmup_end,
            1024.0,
            Arc::clone(&done),
        )
    });
    let end = o.duration.map(|d| warmup_end + d);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if end.is_some_and(|e| Instant::now() >= e)
            || o.count.is_some_and(|c| consumer.measured_messages() >= c)
        {
            break;
        }
    }
    let stats = consumer.finish();
    done.store(true, Ordering::Relaxed);
    if let Some(h) = progress {
        let _ = h.join();
    }
    let measured = match (stats.first_at, stats.last_at) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => Duration::ZERO,
    };
    Ok((stats, measured))
}
