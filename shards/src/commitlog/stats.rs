//! Latency and size of the group commit's rounds: how long each DMA write and each fdatasync
//! took, and how many bytes a write carried. An append's SYNC_FLUSH latency is made of these
//! (plus waiting for the ones in flight), so they tell how much of a percentile is the device.
//! Under SYNC_FLUSH segments are O_DSYNC: a write's time includes its flush, and there are no
//! separate fdatasync rounds.

use hdrhistogram::Histogram;

/// Upper bound of the latency histograms: one minute in microseconds.
const MAX_US: u64 = 60_000_000;
/// Upper bound of the round-size histogram: a whole 1 GiB segment.
const MAX_BYTES: u64 = 1 << 30;

#[derive(Clone)]
pub struct FlushStats {
    /// One DMA write of one chunk, microseconds.
    pub write_us: Histogram<u64>,
    /// One fdatasync round (every segment it covered), microseconds.
    pub sync_us: Histogram<u64>,
    /// Bytes taken by one write round (all its chunks).
    pub round_bytes: Histogram<u64>,
}

impl FlushStats {
    pub fn new() -> Self {
        let h = |max| {
            // Fixed, valid bounds (1 ≤ low, 2 × low ≤ high, 2 significant figures): cannot fail.
            Histogram::new_with_bounds(1, max, 2).expect("constant histogram bounds are valid")
        };
        Self {
            write_us: h(MAX_US),
            sync_us: h(MAX_US),
            round_bytes: h(MAX_BYTES),
        }
    }

    pub(super) fn wrote(&mut self, us: u64) {
        self.write_us.saturating_record(us.max(1));
    }

    pub(super) fn synced(&mut self, us: u64) {
        self.sync_us.saturating_record(us.max(1));
    }

    pub(super) fn took(&mut self, bytes: u64) {
        self.round_bytes.saturating_record(bytes.max(1));
    }

    /// `name n=… p50=… p90=… p99=… p99.9=… max=…` for each histogram, one per line.
    pub fn summary(&self) -> String {
        [
            ("write_us", &self.write_us),
            ("fdatasync_us", &self.sync_us),
            ("round_bytes", &self.round_bytes),
        ]
        .iter()
        .map(|(name, h)| {
            format!(
                "{name} n={} p50={} p90={} p99={} p99.9={} max={}",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
    }
}

impl Default for FlushStats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_summarises_each_histogram() {
        let mut s = FlushStats::new();
        for us in [100, 200, 300] {
            s.wrote(us);
        }
        s.synced(0);
        s.took(u64::MAX);
        assert_eq!(s.write_us.len(), 3);
        assert_eq!(s.sync_us.min(), 1, "a zero duration counts as 1 us");
        assert_eq!(s.round_bytes.len(), 1, "values above the bound saturate");
        let text = s.summary();
        assert!(text.starts_with("write_us n=3 p50=200"), "{text}");
        assert_eq!(text.lines().count(), 3);
    }
}
