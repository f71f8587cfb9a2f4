//! `--ramp from:to:step` with `--slo p99=2ms`: a series of fixed-rate runs and the knee, the highest rate whose
//! run met the SLO (no errors, the percentile within the limit, and at least 90 % of the rate achieved).

use crate::report::Summary;
use crate::util::{err, parse_duration, Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Slo {
    /// `p50`, `p90`, `p99`, `p99.9`, `p99.99` or `max`.
    pub percentile: String,
    pub limit_ms: f64,
}

impl Slo {
    pub fn parse(s: &str) -> Result<Self> {
        let Some((p, limit)) = s.split_once('=') else {
            return err(format!("bad SLO `{s}`: expected e.g. p99=2ms"));
        };
        let p = p.trim().to_ascii_lowercase();
        if crate::hist::Percentiles::default().by_name(&p).is_none() {
            return err(format!(
                "bad SLO percentile `{p}`: use p50, p90, p99, p99.9, p99.99 or max"
            ));
        }
        let limit_ms = parse_duration(limit)?.as_secs_f64() * 1000.0;
        Ok(Self {
            percentile: p,
            limit_ms,
        })
    }
    pub fn describe(&self) -> String {
        format!("{} <= {} ms", self.percentile, self.limit_ms)
    }
    /// Why `s` misses the SLO, or `None` when it meets it.
    pub fn miss(&self, s: &Summary) -> Option<String> {
        if s.error_total > 0 {
            return Some(format!("{} errors", s.error_total));
        }
        let got = s.latency.by_name(&self.percentile).unwrap_or(f64::INFINITY);
        if got > self.limit_ms {
            return Some(format!("{} = {got:.3} ms", self.percentile));
        }
        if let Some(target) = s.target_rate_msgs_per_sec {
            if s.msgs_per_sec < 0.9 * target {
                return Some(format!("achieved {:.0} of {target} msg/s", s.msgs_per_sec));
            }
        }
        None
    }
}

/// `from:to:step` → `[from, from+step, …, to]`.
pub fn parse_ramp(s: &str) -> Result<Vec<f64>> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || {
        Error(format!(
            "bad ramp `{s}`: expected FROM:TO:STEP, e.g. 1000:20000:1000"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let n = |v: &str| v.trim().parse::<f64>().map_err(|_| bad());
    let (from, to, step) = (n(parts[0])?, n(parts[1])?, n(parts[2])?);
    if !(from > 0.0 && to >= from && step > 0.0) {
        return Err(bad());
    }
    let steps = ((to - from) / step).floor() as usize + 1;
    if steps > 1000 {
        return err(format!("ramp `{s}` has {steps} steps; at most 1000"));
    }
    Ok((0..steps).map(|i| from + step * i as f64).collect())
}

#[derive(Debug, Clone)]
pub struct Step {
    pub rate: f64,
    pub summary: Summary,
    pub miss: Option<String>,
}

/// The highest rate that met the SLO.
pub fn knee(steps: &[Step]) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.miss.is_none())
        .map(|s| s.rate)
        .fold(None, |a, r| Some(a.map_or(r, |a: f64| a.max(r))))
}

pub fn table(steps: &[Step], slo: &Slo) -> String {
    let mut out = format!(
        "ramp, SLO {}\n{:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  verdict\n",
        slo.describe(),
        "target/s",
        "msgs/s",
        "MB/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors",
        ""
    );
    for s in steps {
        let l = &s.summary.latency;
        out += &format!(
            "{:>10.0} {:>10.0} {:>8.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9} {:>7}  {}\n",
            s.rate,
            s.summary.msgs_per_sec,
            s.summary.mb_per_sec,
            l.p50_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            s.summary.error_total,
            "",
            s.miss
                .as_deref()
                .map_or("meets SLO".to_string(), |m| format!("misses: {m}"))
        );
    }
    out += &match knee(steps) {
        Some(k) => format!(
            "knee: {k:.0} msg/s is the highest rate meeting {}\n",
            slo.describe()
        ),
        None => format!("knee: no rate met {}\n", slo.describe()),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_and_slos_parse() {
        assert_eq!(
            parse_ramp("1000:3000:1000"),
            Ok(vec![1000.0, 2000.0, 3000.0])
        );
        assert!(parse_ramp("3:1:1").is_err());
        let slo = Slo::parse("p99=2ms").expect("parses");
        assert_eq!(
            slo,
            Slo {
                percentile: "p99".into(),
                limit_ms: 2.0
            }
        );
        assert_eq!(Slo::parse("p99.9=1s").map(|s| s.limit_ms), Ok(1000.0));
        assert!(Slo::parse("p42=1ms").is_err());
    }
}
