//! Latency histograms, the `.hgrm` percentile-distribution text format, and reading it back.
//!
//! Values are recorded in microseconds and written in milliseconds, the unit the HdrHistogram tools
//! (HistogramLogProcessor, wrk2, the plotter at hdrhistogram.github.io) show by default.

use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// Significant digits kept by every histogram: 0.1 % value resolution.
pub const SIGFIG: u8 = 3;
/// The largest latency tracked: one hour. Larger values are clamped to it (and say so by being the max).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// `.hgrm` rows per halving of the remaining distance to 100 % (HistogramLogProcessor's default).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Microseconds per output unit (ms) in `.hgrm` files and reports.
pub const US_PER_MS: f64 = 1000.0;

pub type LatencyHistogram = Histogram<u64>;

pub fn new_histogram() -> LatencyHistogram {
    // Bounds are constants known to be valid; construction cannot fail for them.
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGFIG) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds rejected: {e:?}"),
    }
}

/// Records one latency, clamping to the tracked range so a wild value is never lost.
pub fn record_us(h: &mut LatencyHistogram, latency_us: u64) {
    h.saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
}

/// One row of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PercentileRow {
    pub value_ms: f64,
    pub percentile: f64,
    pub total_count: u64,
}

/// The headline percentiles every report shows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / US_PER_MS;
        Self {
            count: h.len(),
            min_ms: h.min() as f64 / US_PER_MS,
            mean_ms: h.mean() / US_PER_MS,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            p9999_ms: q(0.9999),
            max_ms: h.max() as f64 / US_PER_MS,
        }
    }

    /// Looks a percentile up by its SLO name: `p50`, `p90`, `p99`, `p99.9`, `p99.99`, `max`.
    pub fn by_name(&self, name: &str) -> Option<f64> {
        Some(match name {
            "p50" => self.p50_ms,
            "p90" => self.p90_ms,
            "p99" => self.p99_ms,
            "p99.9" | "p999" => self.p999_ms,
            "p99.99" | "p9999" => self.p9999_ms,
            "max" | "p100" => self.max_ms,
            _ => return None,
        })
    }
}

/// The rows HistogramLogProcessor would print for `h`, values in ms.
pub fn percentile_rows(h: &LatencyHistogram) -> Vec<PercentileRow> {
    let mut rows = Vec::new();
    if h.is_empty() {
        return rows;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        rows.push(PercentileRow {
            value_ms: v.value_iterated_to() as f64 / US_PER_MS,
            percentile: v.quantile_iterated_to(),
            total_count: total,
        });
    }
    rows
}

/// `2^ceil(log2(2 * 10^sigfig))`, as HdrHistogram sizes its sub-buckets.
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// The standard `.hgrm` text (Java `outputPercentileDistribution`, ticks 5, scaled to ms).
pub fn to_hgrm(h: &LatencyHistogram) -> String {
    let d = usize::from(SIGFIG);
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for row in percentile_rows(h) {
        if row.percentile < 1.0 {
            let _ = writeln!(
                out,
                "{:12.d$} {:2.12} {:10} {:14.2}",
                row.value_ms,
                row.percentile,
                row.total_count,
                1.0 / (1.0 - row.percentile),
            );
        } else {
            let _ = writeln!(
                out,
                "{:12.d$} {:2.12} {:10}",
                row.value_ms, row.percentile, row.total_count
            );
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / US_PER_MS,
            h.stdev() / US_PER_MS,
            h.max() as f64 / US_PER_MS,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.d$}, StdDeviation   = {stdev:12.d$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.d$}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(SIGFIG)
    );
    out
}

/// A `.hgrm` file read back: its rows and footer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedHgrm {
    pub rows: Vec<PercentileRow>,
    pub mean_ms: f64,
    pub max_ms: f64,
    pub total_count: u64,
}

impl ParsedHgrm {
    /// The value at the first row at or above `q`, the same reading the HdrHistogram plotter makes.
    pub fn value_at_quantile(&self, q: f64) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.percentile >= q)
            .map(|r| r.value_ms)
    }
}

#[derive(Debug, PartialEq)]
pub struct HgrmError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for HgrmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses the percentile-distribution format (from this tool, HistogramLogProcessor or wrk2).
pub fn parse_hgrm(text: &str) -> Result<ParsedHgrm, HgrmError> {
    let mut parsed = ParsedHgrm {
        rows: Vec::new(),
        mean_ms: 0.0,
        max_ms: 0.0,
        total_count: 0,
    };
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| HgrmError {
            line: i + 1,
            reason,
        };
        let t = line.trim();
        if t.is_empty() || t.starts_with("Value") {
            continue;
        }
        if let Some(footer) = t.strip_prefix("#[") {
            parse_footer(footer, &mut parsed).map_err(err)?;
            continue;
        }
        let cols: Vec<&str> = t.split_whitespace().collect();
        if cols.len() < 3 {
            return Err(err(format!(
                "expected at least 3 columns, got {}",
                cols.len()
            )));
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| format!("bad number `{s}`"));
        let count = cols[2]
            .parse::<u64>()
            .map_err(|_| err(format!("bad count `{}`", cols[2])))?;
        parsed.rows.push(PercentileRow {
            value_ms: num(cols[0]).map_err(err)?,
            percentile: num(cols[1]).map_err(err)?,
            total_count: count,
        });
    }
    Ok(parsed)
}

fn parse_footer(footer: &str, parsed: &mut ParsedHgrm) -> Result<(), String> {
    let footer = footer.trim_end_matches(']');
    for part in footer.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let bad = || format!("bad footer value `{value}` for {key}");
        match key {
            "Mean" => parsed.mean_ms = value.parse().map_err(|_| bad())?,
            "Max" => parsed.max_ms = value.parse().map_err(|_| bad())?,
            "Total count" => parsed.total_count = value.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=10_000 µs, each once: the p-th percentile of a uniform distribution is p × 10 ms.
    fn uniform_1_to_10ms() -> LatencyHistogram {
        let mut h = new_histogram();
        for us in 1..=10_000 {
            record_us(&mut h, us);
        }
        h
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-9)
    }

    #[test]
    fn percentiles_of_a_uniform_distribution_are_where_arithmetic_puts_them() {
        let p = Percentiles::of(&uniform_1_to_10ms());
        assert_eq!(p.count, 10_000);
        for (got, want) in [
            (p.p50_ms, 5.0),
            (p.p90_ms, 9.0),
            (p.p99_ms, 9.9),
            (p.p999_ms, 9.99),
            (p.max_ms, 10.0),
        ] {
            assert!(close(got, want, 0.001), "got {got} want {want}");
        }
        assert!(close(p.mean_ms, 5.0005, 0.001));
        assert_eq!(p.min_ms, 0.001);
    }

    #[test]
    fn a_bimodal_distribution_shows_its_tail_only_above_the_mode_split() {
        // 99 % at 1 ms, 1 % at 100 ms: p99 is still 1 ms, p99.9 is 100 ms.
        let mut h = new_histogram();
        for _ in 0..9_900 {
            record_us(&mut h, 1_000);
        }
        for _ in 0..100 {
            record_us(&mut h, 100_000);
        }
        let p = Percentiles::of(&h);
        assert!(close(p.p99_ms, 1.0, 0.001), "{p:?}");
        assert!(close(p.p999_ms, 100.0, 0.001), "{p:?}");
    }

    #[test]
    fn hgrm_has_the_standard_header_columns_and_footer() {
        let text = to_hgrm(&uniform_1_to_10ms());
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        assert_eq!(
            header,
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next(), Some(""));
        let first = lines.next().unwrap_or_default();
        assert_eq!(
            first,
            "       0.001 0.000000000000          1           1.00"
        );
        assert!(
            text.contains("#[Mean    =        5.001, StdDeviation   =        2.887]"),
            "{text}"
        );
        assert!(
            text.contains("#[Max     =       10.007, Total count    =        10000]"),
            "{text}"
        );
        assert!(
            text.contains("#[Buckets =           22, SubBuckets     =         2048]"),
            "{text}"
        );
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#'))
            .unwrap_or_default();
        assert!(last_row.contains("1.000000000000      10000"), "{last_row}");
        assert_eq!(
            last_row.split_whitespace().count(),
            3,
            "the 100 % row has no 1/(1-p) column"
        );
    }

    #[test]
    fn hgrm_parses_back_into_the_same_percentiles() {
        let h = uniform_1_to_10ms();
        let parsed = parse_hgrm(&to_hgrm(&h)).expect("own output parses");
        let rows = percentile_rows(&h);
        assert_eq!(parsed.rows.len(), rows.len());
        for (p, r) in parsed.rows.iter().zip(&rows) {
            assert!(close(p.value_ms, r.value_ms, 1e-9), "{p:?} vs {r:?}");
            assert!((p.percentile - r.percentile).abs() < 1e-12);
            assert_eq!(p.total_count, r.total_count);
            // Each row's value is the histogram's own reading at that percentile.
            let want = h.value_at_quantile(r.percentile) as f64 / US_PER_MS;
            assert!(
                close(p.value_ms, want, 1e-9),
                "row {p:?} vs value_at_quantile {want}"
            );
        }
        assert_eq!(parsed.total_count, 10_000);
        assert!(close(parsed.max_ms, 10.007, 1e-9));
        assert!(close(parsed.mean_ms, 5.001, 1e-9));
        // Headline percentiles read from the file match the histogram's to its resolution.
        let p = Percentiles::of(&h);
        for (q, want) in [
            (0.5, p.p50_ms),
            (0.9, p.p90_ms),
            (0.99, p.p99_ms),
            (1.0, p.max_ms),
        ] {
            let got = parsed.value_at_quantile(q).unwrap_or(f64::NAN);
            assert!(
                close(got, want, 0.002),
                "q={q}: file {got} vs histogram {want}"
            );
        }
    }

    #[test]
    fn a_malformed_hgrm_line_is_reported_with_its_number() {
        let e = parse_hgrm("       Value     Percentile TotalCount 1/(1-Percentile)\n\n 1.0 x 3\n");
        assert_eq!(e.map_err(|e| e.line), Err(3));
    }
}
