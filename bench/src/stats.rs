//! Shared counters of a run: latency histograms (coordinated-omission corrected and not), message and byte
//! counts, errors by code, and a per-second interval for the progress line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hist::{new_histogram, record_us, LatencyHistogram, Percentiles};
use crate::rpc::lock;

/// The name errors are counted under: `timeout`, `io`, or `<code> <NAME>` for a non-OK answer.
pub fn code_name(code: i32) -> String {
    let name = match code {
        1 => "SYSTEM_ERROR",
        2 => "SYSTEM_BUSY",
        3 => "REQUEST_CODE_NOT_SUPPORTED",
        10 => "FLUSH_DISK_TIMEOUT",
        11 => "SLAVE_NOT_AVAILABLE",
        12 => "FLUSH_SLAVE_TIMEOUT",
        13 => "MESSAGE_ILLEGAL",
        14 => "SERVICE_NOT_AVAILABLE",
        15 => "VERSION_NOT_SUPPORTED",
        16 => "NO_PERMISSION",
        17 => "TOPIC_NOT_EXIST",
        21 => "PULL_OFFSET_MOVED",
        24 => "SUBSCRIPTION_NOT_EXIST",
        26 => "SUBSCRIPTION_GROUP_NOT_EXIST",
        215 => "FLOW_CONTROL",
        _ => "UNKNOWN",
    };
    format!("{code} {name}")
}

#[derive(Debug)]
pub struct Stats {
    /// Latency from the intended send time (open loop), or from the send time (closed loop).
    pub corrected: LatencyHistogram,
    /// Latency from the moment the request was written.
    pub uncorrected: LatencyHistogram,
    /// Consumers: round trip of each pull that returned messages, from the request's write to its answer.
    pub pull_rtt: LatencyHistogram,
    pub messages: u64,
    pub bytes: u64,
    pub errors: BTreeMap<String, u64>,
    /// Measured-phase window, for the throughput denominators.
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
    interval: LatencyHistogram,
    interval_messages: u64,
    interval_errors: u64,
    /// The progress line's p99 is of the pull round trip instead of the corrected latency.
    interval_is_pull_rtt: bool,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            pull_rtt: new_histogram(),
            messages: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            first_at: None,
            last_at: None,
            interval: new_histogram(),
            interval_messages: 0,
            interval_errors: 0,
            interval_is_pull_rtt: false,
        }
    }
}

pub type SharedStats = Arc<Mutex<Stats>>;

impl Stats {
    pub fn shared() -> SharedStats {
        Arc::new(Mutex::new(Stats::default()))
    }

    /// One successful request carrying `messages` messages.
    pub fn record_ok(
        &mut self,
        corrected_us: u64,
        uncorrected_us: u64,
        messages: u64,
        bytes: u64,
        at: Instant,
    ) {
        record_us(&mut self.corrected, corrected_us);
        record_us(&mut self.uncorrected, uncorrected_us);
        if !self.interval_is_pull_rtt {
            record_us(&mut self.interval, corrected_us);
        }
        self.messages += messages;
        self.bytes += bytes;
        self.interval_messages += messages;
        self.first_at.get_or_insert(at);
        self.last_at = Some(at);
    }

    /// A warm-up answer: shown on the progress line, kept out of the results.
    pub fn record_warmup(&mut self, corrected_us: u64, messages: u64) {
        if !self.interval_is_pull_rtt {
            record_us(&mut self.interval, corrected_us);
        }
        self.interval_messages += messages;
    }

    /// The round trip of one pull that returned messages; `measured` false keeps it out of the results.
    pub fn record_pull(&mut self, rtt_us: u64, measured: bool) {
        if measured {
            record_us(&mut self.pull_rtt, rtt_us);
        }
        if self.interval_is_pull_rtt {
            record_us(&mut self.interval, rtt_us);
        }
    }

    /// Makes the progress line show the pull round trip (plain consume runs, where it is the headline).
    pub fn progress_on_pull_rtt(&mut self) {
        self.interval_is_pull_rtt = true;
        self.interval.reset();
    }

    pub fn record_error(&mut self, kind: String) {
        *self.errors.entry(kind).or_insert(0) += 1;
        self.interval_errors += 1;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Takes the last interval: (messages, errors, p99 ms of the corrected latency).
    pub fn take_interval(&mut self) -> (u64, u64, f64) {
        let p99 = Percentiles::of(&self.interval).p99_ms;
        let out = (self.interval_messages, self.interval_errors, p99);
        self.interval.reset();
        self.interval_messages = 0;
        self.interval_errors = 0;
        out
    }
}

/// Prints `[  3s] warmup|run  4998 msg/s  4.88 MB/s  errors 0  p99 1.230 ms` each second until `done`.
pub fn spawn_progress(
    stats: SharedStats,
    start: Instant,
    warmup_end: Instant,
    avg_msg_bytes: f64,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = start + Duration::from_secs(1);
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            // Short naps keep shutdown prompt; the line still comes once a second.
            std::thread::sleep(
                Duration::from_millis(50).min(next.saturating_duration_since(Instant::now())),
            );
            let now = Instant::now();
            if now < next {
                continue;
            }
            let (msgs, errors, p99) = lock(&stats).take_interval();
            // The interval that just ended is warm-up if it ended by the end of warm-up.
            let phase = if next <= warmup_end {
                "warmup"
            } else {
                "run   "
            };
            eprintln!(
                "[{:>4}s] {phase} {:>9} msg/s {:>8.2} MB/s  errors {:<6} p99 {:.3} ms",
                (now - start).as_secs(),
                msgs,
                msgs as f64 * avg_msg_bytes / 1e6,
                errors,
                p99
            );
            next += Duration::from_secs(1);
        }
    })
}
