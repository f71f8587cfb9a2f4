//! Small shared pieces: the error type, wall-clock helpers, a seeded RNG and message-size distributions.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every failure the bench reports: a sentence with its context, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("I/O: {e}"))
    }
}

impl From<rocketcore::remoting::Error> for Error {
    fn from(e: rocketcore::remoting::Error) -> Self {
        Error(format!("remoting: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

/// Maps `Instant`s to wall-clock microseconds, anchored once so that all threads agree.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_instant: Instant,
    base_wall_us: u64,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            base_instant: Instant::now(),
            base_wall_us: wall_us_now(),
        }
    }
    pub fn wall_us(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base_instant).as_micros() as u64;
        let before = self.base_instant.saturating_duration_since(at).as_micros() as u64;
        (self.base_wall_us + since).saturating_sub(before)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

pub fn wall_us_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn wall_ms_now() -> i64 {
    (wall_us_now() / 1000) as i64
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a UNIX time, without a date library (Howard Hinnant's civil_from_days).
pub fn utc_timestamp(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Sleeps until `t`; returns at once when `t` has passed (an open-loop sender then catches up).
pub fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// xorshift64*: fast, seeded, good enough for payload sizes and bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Message body size: `1024`, `uniform:100:2000`, or `choice:100,1000,10000`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SizeDist {
    Fixed(usize),
    Uniform(usize, usize),
    Choice(Vec<usize>),
}

impl SizeDist {
    pub fn parse(s: &str) -> Result<Self> {
        let num = |v: &str| -> Result<usize> {
            parse_bytes(v).ok_or_else(|| {
                Error(format!(
                    "bad size `{v}` in `{s}` (want bytes, e.g. 1024 or 1KiB)"
                ))
            })
        };
        let d = if let Some(rest) = s.strip_prefix("uniform:") {
            let Some((lo, hi)) = rest.split_once(':') else {
                return err(format!("`{s}`: expected uniform:MIN:MAX"));
            };
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return err(format!("`{s}`: MIN is above MAX"));
            }
            SizeDist::Uniform(lo, hi)
        } else if let Some(rest) = s.strip_prefix("choice:") {
            let sizes = rest.split(',').map(num).collect::<Result<Vec<_>>>()?;
            if sizes.is_empty() {
                return err(format!("`{s}`: no sizes"));
            }
            SizeDist::Choice(sizes)
        } else {
            SizeDist::Fixed(num(s)?)
        };
        Ok(d)
    }
    pub fn sample(&self, rng: &mut Rng) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform(lo, hi) => rng.range(*lo as u64, *hi as u64) as usize,
            SizeDist::Choice(v) => v[rng.range(0, v.len() as u64 - 1) as usize],
        }
    }
    pub fn max(&self) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform(_, hi) => *hi,
            SizeDist::Choice(v) => v.iter().copied().max().unwrap_or(0),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            SizeDist::Fixed(n) => format!("{n} B"),
            SizeDist::Uniform(lo, hi) => format!("uniform {lo}..{hi} B"),
            SizeDist::Choice(v) => format!("choice of {v:?} B"),
        }
    }
}

/// `1024`, `1KiB`, `4k`, `1MiB`, `1m`.
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (digits, mult) = [
        ("kib", 1024),
        ("mib", 1 << 20),
        ("kb", 1000),
        ("mb", 1_000_000),
        ("k", 1024),
        ("m", 1 << 20),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| {
        lower
            .strip_suffix(suffix)
            .map(|d| (d.trim().to_string(), *m))
    })
    .unwrap_or((lower.clone(), 1));
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// `500ms`, `2s`, `1m`, `250us`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || Error(format!("bad duration `{s}` (e.g. 30s, 500ms, 2m)"));
    let (num, unit_s) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = s.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * unit_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_every_documented_form() {
        assert_eq!(SizeDist::parse("1024"), Ok(SizeDist::Fixed(1024)));
        assert_eq!(SizeDist::parse("1KiB"), Ok(SizeDist::Fixed(1024)));
        assert_eq!(
            SizeDist::parse("uniform:100:2000"),
            Ok(SizeDist::Uniform(100, 2000))
        );
        assert_eq!(
            SizeDist::parse("choice:10,1k"),
            Ok(SizeDist::Choice(vec![10, 1024]))
        );
        assert!(SizeDist::parse("uniform:5:1").is_err());
        assert!(SizeDist::parse("lots").is_err());
    }

    #[test]
    fn uniform_samples_stay_within_bounds() {
        let d = SizeDist::Uniform(100, 200);
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            let n = d.sample(&mut rng);
            assert!((100..=200).contains(&n));
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn utc_timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
