//! The e2e workload: a consumer positioned at the end of every queue, then an open-loop producer stamping each
//! message with its intended send time; latency = delivery time − intended time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::consume::{self, ConsumeOptions};
use crate::produce::{self, ProduceOptions, ProduceOutcome};
use crate::route::QueueSet;
use crate::stats::Stats;
use crate::util::{wall_us_now, Result};

pub struct E2eOutcome {
    pub produced: ProduceOutcome,
    pub delivered: Stats,
    pub delivered_window: Duration,
}

/// `drain`: how long to wait after the last send for the consumer to catch up.
pub fn run(
    sets: &[QueueSet],
    p: &ProduceOptions,
    c: &ConsumeOptions,
    drain: Duration,
) -> Result<E2eOutcome> {
    let mut p = p.clone();
    p.stamp_intended = true;
    let mut c = c.clone();
    c.warmup_by_send_time = true;
    let consumer = consume::start(sets, &c)?;
    consumer.measure_from_us.store(
        wall_us_now() + p.warmup.as_micros() as u64,
        Ordering::Relaxed,
    );
    let produced = produce::run(sets, &p)?;
    let deadline = Instant::now() + drain;
    let want = produced.stats.messages;
    while consumer.measured_messages() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let delivered = consumer.finish();
    let delivered_window = match (delivered.first_at, delivered.last_at) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => Duration::ZERO,
    };
    Ok(E2eOutcome {
        produced,
        delivered,
        delivered_window,
    })
}
