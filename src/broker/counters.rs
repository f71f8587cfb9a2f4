//! Message counters for operators (GET_BROKER_RUNTIME_INFO: `mqadmin clusterList` and
//! `brokerStatus`): messages stored and messages handed to consumers, their rates over the last
//! 10 s, 1 min and 10 min, and the totals at the start of today and yesterday.
//!
//! Each shard adds to its own cache-line-sized slot, so counting costs the send and pull paths
//! one uncontended atomic add per request. Readers sum the slots. Like the Java broker's, the
//! counts start at zero when the broker starts; days are UTC days.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// How often a sample is taken for the rates.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The windows the rates are reported over, in the order Java prints them.
pub const RATE_WINDOWS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(600),
];
const MAX_SAMPLES: usize = 61;
const DAY_MS: i64 = 86_400_000;

#[derive(Default)]
#[repr(align(128))]
struct Slot {
    put: AtomicU64,
    get: AtomicU64,
}

/// Stored and delivered message counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub put: u64,
    pub get: u64,
}

#[derive(Default)]
struct History {
    /// (when, totals), oldest first, one every SAMPLE_EVERY, the last 10 minutes.
    samples: VecDeque<(Instant, Totals)>,
    /// The UTC day of the last sample, and the totals when that day and the one before began.
    day: Option<i64>,
    today_morning: Totals,
    yesterday_morning: Totals,
}

pub struct Counters {
    slots: Vec<Slot>,
    history: Mutex<History>,
}

/// What GET_BROKER_RUNTIME_INFO reports about message flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub now: Totals,
    pub today_morning: Totals,
    pub yesterday_morning: Totals,
    /// Messages per second stored / delivered over each of RATE_WINDOWS.
    pub put_tps: [f64; 3],
    pub get_tps: [f64; 3],
}

impl Counters {
    pub fn new(shards: usize) -> Self {
        Self {
            slots: (0..shards.max(1)).map(|_| Slot::default()).collect(),
            history: Mutex::new(History::default()),
        }
    }

    fn slot(&self, shard: usize) -> &Slot {
        debug_assert!(
            shard < self.slots.len(),
            "shard {shard} has no counter slot"
        );
        &self.slots[shard % self.slots.len()]
    }

    pub fn add_put(&self, shard: usize, n: u64) {
        self.slot(shard).put.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_get(&self, shard: usize, n: u64) {
        self.slot(shard).get.fetch_add(n, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        self.slots.iter().fold(Totals::default(), |t, s| Totals {
            put: t.put + s.put.load(Ordering::Relaxed),
            get: t.get + s.get.load(Ordering::Relaxed),
        })
    }

    /// Takes a sample (every SAMPLE_EVERY, from one shard) and rolls the day marks at midnight.
    pub fn sample(&self, at: Instant, now_ms: i64) {
        let t = self.totals();
        let mut h = lock(&self.history);
        h.samples.push_back((at, t));
        while h.samples.len() > MAX_SAMPLES {
            h.samples.pop_front();
        }
        let day = now_ms.div_euclid(DAY_MS);
        match h.day {
            Some(d) if day > d => {
                // Midnight passed since the last sample: that day's end is this day's start.
                h.yesterday_morning = if day == d + 1 { h.today_morning } else { t };
                h.today_morning = t;
            }
            _ => {}
        }
        h.day = Some(day);
    }

    pub fn flow(&self, at: Instant) -> Flow {
        let now = self.totals();
        let h = lock(&self.history);
        let rate = |window: Duration, pick: fn(&Totals) -> u64| -> f64 {
            // The newest sample at least `window` old, else the oldest there is.
            let base = h
                .samples
                .iter()
                .rev()
                .find(|(when, _)| at.saturating_duration_since(*when) >= window)
                .or(h.samples.front());
            match base {
                Some((when, t)) => {
                    let secs = at.saturating_duration_since(*when).as_secs_f64();
                    if secs > 0.0 {
                        pick(&now).saturating_sub(pick(t)) as f64 / secs
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            }
        };
        let rates = |pick: fn(&Totals) -> u64| RATE_WINDOWS.map(|w| rate(w, pick));
        Flow {
            now,
            today_morning: h.today_morning,
            yesterday_morning: h.yesterday_morning,
            put_tps: rates(|t| t.put),
            get_tps: rates(|t| t.get),
        }
    }
}

/// Java's form for a TPS entry: the three windows' rates, space-separated, two decimals.
pub fn tps_text(r: &[f64; 3]) -> String {
    format!("{:.2} {:.2} {:.2}", r[0], r[1], r[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shards_adds_are_summed() {
        let c = Counters::new(2);
        c.add_put(0, 3);
        c.add_put(1, 4);
        c.add_get(1, 5);
        assert_eq!(c.totals(), Totals { put: 7, get: 5 });
    }

    #[test]
    fn rates_use_the_sample_at_least_a_window_old() {
        let c = Counters::new(1);
        let t0 = Instant::now();
        let day = 20_000 * DAY_MS;
        c.sample(t0, day);
        c.add_put(0, 100);
        c.sample(t0 + Duration::from_secs(10), day + 10_000);
        c.add_put(0, 50);
        let f = c.flow(t0 + Duration::from_secs(20));
        // 10 s window: 50 over the last 10 s; 60 s and 600 s: the oldest sample, 150 over 20 s.
        assert_eq!(f.put_tps, [5.0, 7.5, 7.5]);
        assert_eq!(f.get_tps, [0.0, 0.0, 0.0]);
        assert_eq!(tps_text(&f.put_tps), "5.00 7.50 7.50");
    }

    #[test]
    fn with_no_sample_yet_rates_are_zero() {
        let c = Counters::new(1);
        c.add_put(0, 10);
        let f = c.flow(Instant::now());
        assert_eq!(f.put_tps, [0.0; 3]);
        assert_eq!(f.now.put, 10);
    }

    #[test]
    fn midnight_moves_the_morning_marks() {
        let c = Counters::new(1);
        let t0 = Instant::now();
        let day = 20_000 * DAY_MS;
        c.sample(t0, day + 1_000);
        c.add_put(0, 7);
        c.sample(t0, day + DAY_MS + 5);
        c.add_put(0, 3);
        let f = c.flow(t0);
        assert_eq!(f.today_morning.put, 7);
        assert_eq!(f.yesterday_morning.put, 0);
        c.sample(t0, day + 2 * DAY_MS + 5);
        let f = c.flow(t0);
        assert_eq!((f.yesterday_morning.put, f.today_morning.put), (7, 10));
        // Several days without a sample: yesterday had no traffic we saw.
        c.add_put(0, 1);
        c.sample(t0, day + 9 * DAY_MS);
        let f = c.flow(t0);
        assert_eq!((f.yesterday_morning.put, f.today_morning.put), (11, 11));
    }
}
