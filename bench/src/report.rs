//! Run summaries: the console table, the JSON summary, and the files a run leaves behind
//! (`NAME.hgrm`, `NAME.json`, `NAME.svg`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::hist::{self, LatencyHistogram, PercentileRow, Percentiles};
use crate::util::{Error, Result};

/// Everything a script needs from one run. Round-trips through JSON unchanged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub label: String,
    pub workload: String,
    /// "open-loop N msg/s …" or "closed-loop saturation …".
    pub mode: String,
    pub closed_loop: bool,
    pub target_rate_msgs_per_sec: Option<f64>,
    pub command: String,
    pub started_at: String,
    pub measured_secs: f64,
    pub messages: u64,
    pub bytes: u64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// What `latency` measures, e.g. "send latency from intended time".
    pub latency_kind: String,
    pub latency: Percentiles,
    /// From the actual write, beside the corrected one (produce in open loop).
    pub latency_uncorrected: Option<Percentiles>,
    /// The percentile distribution of `latency`, as in the `.hgrm` file.
    pub distribution: Vec<PercentileRow>,
    /// Other histograms of the same run (e2e keeps the producer's send latency here).
    pub other_latencies: BTreeMap<String, Percentiles>,
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    pub settings: BTreeMap<String, String>,
    /// What the latencies mean, printed under the table.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Summary {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error(format!("JSON summary: {e}")))
    }
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error(format!("JSON summary: {e}")))
    }
}

/// Inputs for building a summary.
pub struct SummaryInput<'a> {
    pub label: String,
    pub workload: &'a str,
    pub rate: Option<f64>,
    pub command: String,
    pub started_unix_s: u64,
    pub measured_secs: f64,
    pub messages: u64,
    pub bytes: u64,
    pub latency_kind: String,
    pub latency: &'a LatencyHistogram,
    pub uncorrected: Option<&'a LatencyHistogram>,
    pub errors: BTreeMap<String, u64>,
    pub settings: BTreeMap<String, String>,
}

pub fn summarize(i: SummaryInput<'_>) -> Summary {
    let secs = i.measured_secs.max(1e-9);
    let mode = match i.rate {
        Some(r) => format!("open-loop {r} msg/s"),
        None => "closed-loop saturation".to_string(),
    };
    Summary {
        label: i.label,
        workload: i.workload.to_string(),
        mode,
        closed_loop: i.rate.is_none(),
        target_rate_msgs_per_sec: i.rate,
        command: i.command,
        started_at: crate::util::utc_timestamp(i.started_unix_s),
        measured_secs: i.measured_secs,
        messages: i.messages,
        bytes: i.bytes,
        msgs_per_sec: if i.measured_secs > 0.0 {
            i.messages as f64 / secs
        } else {
            0.0
        },
        mb_per_sec: if i.measured_secs > 0.0 {
            i.bytes as f64 / secs / 1e6
        } else {
            0.0
        },
        latency_kind: i.latency_kind,
        latency: Percentiles::of(i.latency),
        latency_uncorrected: i.uncorrected.map(Percentiles::of),
        distribution: hist::percentile_rows(i.latency),
        other_latencies: BTreeMap::new(),
        error_total: i.errors.values().sum(),
        errors: i.errors,
        settings: i.settings,
        notes: Vec::new(),
    }
}

/// `A, B, C`, or `A, B, C, D, E … (+N more)` past five topics.
pub fn topic_list(topics: &[String]) -> String {
    const SHOWN: usize = 5;
    if topics.len() <= SHOWN {
        return topics.join(", ");
    }
    format!(
        "{} … (+{} more)",
        topics[..SHOWN].join(", "),
        topics.len() - SHOWN
    )
}

fn row(name: &str, p: &Percentiles) -> String {
    format!(
        "{name:<22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10}",
        p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.p9999_ms, p.max_ms, p.count
    )
}

/// The console table. Its last line says whether the run had errors.
pub fn console(s: &Summary) -> String {
    let mut out = String::new();
    let closed = if s.closed_loop {
        "  ** closed-loop saturation: latencies are NOT coordinated-omission corrected **"
    } else {
        ""
    };
    out += &format!("== {} [{}] {}{}\n", s.label, s.workload, s.mode, closed);
    out += &format!("   {} | started {}\n", s.command, s.started_at);
    if let Some(topics) = s.settings.get("topics").filter(|t| !t.is_empty()) {
        let topics: Vec<String> = topics.split(',').map(str::to_string).collect();
        out += &format!("topics ({}): {}\n", topics.len(), topic_list(&topics));
    }
    out += &format!(
        "throughput: {:.0} msgs/s, {:.2} MB/s ({} messages, {} bytes in {:.2} s measured)\n",
        s.msgs_per_sec, s.mb_per_sec, s.messages, s.bytes, s.measured_secs
    );
    out += &format!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
    );
    out += &row(&s.latency_kind, &s.latency);
    out.push('\n');
    if let Some(u) = &s.latency_uncorrected {
        out += &row("uncorrected", u);
        out.push('\n');
    }
    for (name, p) in &s.other_latencies {
        out += &row(name, p);
        out.push('\n');
    }
    for note in &s.notes {
        out += &format!("note: {note}\n");
    }
    for (kind, n) in &s.errors {
        out += &format!("errors: {n} x {kind}\n");
    }
    out += &verdict(s);
    out.push('\n');
    out
}

/// "OK: no errors" or "FAILED: N errors (…)": the last line of every run.
pub fn verdict(s: &Summary) -> String {
    if s.error_total == 0 {
        format!("OK: {} messages, no errors ({})", s.messages, s.mode)
    } else {
        let by: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!(
            "FAILED: {} errors ({}) in {} ({})",
            s.error_total,
            by.join(", "),
            s.label,
            s.mode
        )
    }
}

/// Writes `DIR/LABEL.hgrm`, `.json` and `.svg`; returns their paths.
pub fn write_files(dir: &Path, s: &Summary, latency: &LatencyHistogram) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error(format!("create {}: {e}", dir.display())))?;
    let base = dir.join(sanitize(&s.label));
    let hgrm = base.with_extension("hgrm");
    let json = base.with_extension("json");
    let svg = base.with_extension("svg");
    write(&hgrm, &hist::to_hgrm(latency))?;
    write(&json, &s.to_json()?)?;
    let title = format!("{} — {}", s.label, s.mode);
    crate::plot::draw(&svg, &title, &[crate::plot::Series::from_summary(s)])?;
    Ok(vec![hgrm, json, svg])
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error(format!("write {}: {e}", path.display())))
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::{new_histogram, record_us};

    pub fn sample_summary() -> Summary {
        let mut h = new_histogram();
        for us in [120, 250, 900, 1_500, 40_000] {
            record_us(&mut h, us);
        }
        let mut errors = BTreeMap::new();
        errors.insert("2 SYSTEM_BUSY".to_string(), 3);
        let mut s = summarize(SummaryInput {
            label: "unit".into(),
            workload: "produce",
            rate: Some(1000.0),
            command: "rocketcore-bench produce --rate 1000".into(),
            started_unix_s: 1_700_000_000,
            measured_secs: 2.5,
            messages: 5,
            bytes: 5 * 1024,
            latency_kind: "corrected".into(),
            latency: &h,
            uncorrected: Some(&h),
            errors,
            settings: BTreeMap::from([("size".to_string(), "1024 B".to_string())]),
        });
        s.other_latencies.insert("send".into(), Percentiles::of(&h));
        s
    }

    #[test]
    fn the_json_summary_round_trips() {
        let s = sample_summary();
        let back = Summary::from_json(&s.to_json().expect("serializes")).expect("parses");
        assert_eq!(back, s);
    }

    #[test]
    fn a_run_with_errors_says_so_on_its_last_line() {
        let s = sample_summary();
        let text = console(&s);
        let last = text.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("FAILED: 3 errors (2 SYSTEM_BUSY: 3)"),
            "{last}"
        );
        assert!(text.contains("msgs/s"));
        for col in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
            assert!(text.contains(col), "{col}");
        }
    }

    #[test]
    fn closed_loop_runs_are_labelled_in_the_table() {
        let mut s = sample_summary();
        s.closed_loop = true;
        s.mode = "closed-loop saturation".into();
        assert!(console(&s).contains("closed-loop saturation"));
        assert!(verdict(&s).contains("closed-loop saturation"));
    }
}
