//! The capacity planner: a workload file plus a calibration file give the cores, disk bandwidth, disk size and
//! network bandwidth needed, with headroom, every number shown with the arithmetic that made it.
//!
//! Units: MB = 10^6 bytes, GB = 10^9 bytes, Gbit/s = 10^9 bit/s. Model, stated so it can be argued with:
//! * every replica writes the whole stream to its CommitLog (stored record = body + record overhead);
//! * one broker shard is one core; a shard sustains the calibrated rate at the SLO, scaled down in proportion
//!   to stored bytes when messages are larger than at calibration (never up when smaller);
//! * consumers read from the page cache (a lagging group would add disk reads);
//! * the master sends the stream once per consumer group and once per extra replica;
//! * RocketMQ starts deleting files at 75 % disk use (diskMaxUsedSpaceRatio), so retained data must fit in 75 %.

use crate::util::{err, Error, Result};

/// `workload.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Workload {
    pub messages_per_sec: f64,
    pub message_size_bytes: f64,
    pub retention_hours: f64,
    #[serde(default = "one")]
    pub consumer_groups: f64,
    #[serde(default = "one")]
    pub replicas: f64,
    /// e.g. "p99=5ms"; compared with the calibration's SLO.
    pub slo: Option<String>,
    /// Fraction of every resource kept free (0.3 = plan to run at 70 %).
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Stored record bytes beyond the body: 91 fixed + topic + properties (§4.1).
    #[serde(default = "default_overhead")]
    pub record_overhead_bytes: f64,
}

fn one() -> f64 {
    1.0
}
fn default_headroom() -> f64 {
    0.3
}
fn default_overhead() -> f64 {
    200.0
}

/// `calibration.toml`, written by `rocketcore-bench calibrate`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Messages per second one shard (one core) sustained within `slo`.
    pub shard_msgs_per_sec_at_slo: f64,
    pub message_size_bytes: f64,
    pub slo: String,
    pub disk_write_mb_per_sec: f64,
    #[serde(default)]
    pub disk_probe: String,
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub command: String,
}

/// One line of arithmetic: `label = formula = value unit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: &'static str,
    pub formula: String,
    pub value: f64,
    pub unit: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub lines: Vec<Line>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn get(&self, label: &str) -> Option<f64> {
        self.lines
            .iter()
            .find(|l| l.label == label)
            .map(|l| l.value)
    }
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out += &format!(
                "{:<34} = {:<52} = {} {}\n",
                l.label,
                l.formula,
                fmt(l.value),
                l.unit
            );
        }
        for w in &self.warnings {
            out += &format!("warning: {w}\n");
        }
        out
    }
}

fn fmt(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

pub fn parse_workload(text: &str) -> Result<Workload> {
    let w: Workload = toml::from_str(text).map_err(|e| Error(format!("workload: {e}")))?;
    for (name, v) in [
        ("messages_per_sec", w.messages_per_sec),
        ("message_size_bytes", w.message_size_bytes),
        ("retention_hours", w.retention_hours),
        ("replicas", w.replicas),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return err(format!("workload: {name} must be positive, got {v}"));
        }
    }
    if !(0.0..0.95).contains(&w.headroom) || w.consumer_groups.is_nan() || w.consumer_groups < 0.0 {
        return err("workload: headroom must be in [0, 0.95) and consumer_groups >= 0");
    }
    Ok(w)
}

pub fn parse_calibration(text: &str) -> Result<Calibration> {
    let c: Calibration = toml::from_str(text).map_err(|e| Error(format!("calibration: {e}")))?;
    if !(c.shard_msgs_per_sec_at_slo > 0.0
        && c.disk_write_mb_per_sec > 0.0
        && c.message_size_bytes > 0.0)
    {
        return err("calibration: shard rate, disk bandwidth and message size must be positive");
    }
    Ok(c)
}

pub fn plan(w: &Workload, c: &Calibration) -> Plan {
    let mut lines = Vec::new();
    let mut push = |label, formula: String, value: f64, unit| {
        lines.push(Line {
            label,
            formula,
            value,
            unit,
        });
        value
    };
    let keep = 1.0 - w.headroom;
    let stored = push(
        "stored record size",
        format!(
            "{} body + {} overhead",
            fmt(w.message_size_bytes),
            fmt(w.record_overhead_bytes)
        ),
        w.message_size_bytes + w.record_overhead_bytes,
        "B",
    );
    let payload_mb = push(
        "producer payload",
        format!(
            "{} msg/s x {} B / 1e6",
            fmt(w.messages_per_sec),
            fmt(w.message_size_bytes)
        ),
        w.messages_per_sec * w.message_size_bytes / 1e6,
        "MB/s",
    );
    let _ = payload_mb;
    let stream_mb = push(
        "stored stream per replica",
        format!(
            "{} msg/s x {} B / 1e6",
            fmt(w.messages_per_sec),
            fmt(stored)
        ),
        w.messages_per_sec * stored / 1e6,
        "MB/s",
    );
    // Cores.
    let cal_stored = c.message_size_bytes + w.record_overhead_bytes;
    let scale = (cal_stored / stored).min(1.0);
    let shard_cap = push(
        "shard capacity at this size",
        format!(
            "{} msg/s x min(1, {} B / {} B)",
            fmt(c.shard_msgs_per_sec_at_slo),
            fmt(cal_stored),
            fmt(stored)
        ),
        c.shard_msgs_per_sec_at_slo * scale,
        "msg/s",
    );
    let usable = push(
        "shard rate with headroom",
        format!("{} x (1 - {})", fmt(shard_cap), w.headroom),
        shard_cap * keep,
        "msg/s",
    );
    let shards = push(
        "shards (cores) per replica",
        format!("ceil({} / {})", fmt(w.messages_per_sec), fmt(usable)),
        (w.messages_per_sec / usable).ceil(),
        "cores",
    );
    push(
        "cores, all replicas",
        format!("{} x {} replicas", fmt(shards), fmt(w.replicas)),
        shards * w.replicas,
        "cores",
    );
    // Disk bandwidth.
    let disk_bw = push(
        "disk write per broker",
        format!("{} / (1 - {})", fmt(stream_mb), w.headroom),
        stream_mb / keep,
        "MB/s",
    );
    push(
        "disks per broker (bandwidth)",
        format!(
            "ceil({} / {} calibrated)",
            fmt(disk_bw),
            fmt(c.disk_write_mb_per_sec)
        ),
        (disk_bw / c.disk_write_mb_per_sec).ceil(),
        "disks",
    );
    // Disk size.
    let retention_s = w.retention_hours * 3600.0;
    let retained = push(
        "retained data per replica",
        format!("{} MB/s x {} s / 1e3", fmt(stream_mb), fmt(retention_s)),
        stream_mb * retention_s / 1e3,
        "GB",
    );
    let disk_gb = push(
        "disk size per broker",
        format!("{} / 0.75 (diskMaxUsedSpaceRatio)", fmt(retained)),
        retained / 0.75,
        "GB",
    );
    push(
        "disk size, all replicas",
        format!("{} x {}", fmt(disk_gb), fmt(w.replicas)),
        disk_gb * w.replicas,
        "GB",
    );
    // Network.
    let net_in = push(
        "master network in",
        format!("{} / (1 - {})", fmt(stream_mb), w.headroom),
        stream_mb / keep,
        "MB/s",
    );
    let fanout = w.consumer_groups + w.replicas - 1.0;
    let net_out = push(
        "master network out",
        format!(
            "{} x ({} groups + {} - 1 replicas) / (1 - {})",
            fmt(stream_mb),
            fmt(w.consumer_groups),
            fmt(w.replicas),
            w.headroom
        ),
        stream_mb * fanout / keep,
        "MB/s",
    );
    push(
        "master NIC (larger direction)",
        format!("max({}, {}) x 8 / 1000", fmt(net_in), fmt(net_out)),
        net_in.max(net_out) * 8.0 / 1000.0,
        "Gbit/s",
    );
    let mut warnings = Vec::new();
    if let (Some(want), Ok(cal)) = (w.slo.as_deref(), crate::ramp::Slo::parse(&c.slo)) {
        match crate::ramp::Slo::parse(want) {
            Ok(want) if want.percentile != cal.percentile || want.limit_ms < cal.limit_ms => warnings.push(format!(
                "the workload's SLO ({}) is not covered by the calibration's ({}): re-run calibrate with --slo {}",
                want.describe(),
                cal.describe(),
                w.slo.as_deref().unwrap_or_default()
            )),
            Ok(_) => {}
            Err(e) => warnings.push(format!("workload slo: {e}")),
        }
    }
    Plan { lines, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_and_calibration_files_parse_with_defaults() {
        let w = parse_workload(
            "messages_per_sec = 1000\nmessage_size_bytes = 512\nretention_hours = 24\n",
        )
        .expect("parses");
        assert_eq!(
            (
                w.replicas,
                w.consumer_groups,
                w.headroom,
                w.record_overhead_bytes
            ),
            (1.0, 1.0, 0.3, 200.0)
        );
        assert!(parse_workload(
            "messages_per_sec = -1\nmessage_size_bytes = 512\nretention_hours = 24\n"
        )
        .is_err());
        assert!(parse_calibration("shard_msgs_per_sec_at_slo = 0\nmessage_size_bytes = 1\nslo='p99=1ms'\ndisk_write_mb_per_sec = 1\n").is_err());
    }
}
