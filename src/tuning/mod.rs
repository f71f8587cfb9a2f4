//! Host tuning: the broker's view of the profiles in `tuning/*.profile`, which `os.sh` checks and applies.
//!
//! The profile files are built into the binary, so `rocketcore broker --check-tuning` and the startup
//! warnings judge the host exactly as `./os.sh --check` does: same parser rules, same reading rules
//! (root prefix, globs, limits.conf order, IRQ masks), same table, same exit codes. `probe.rs` names the
//! os.sh function each piece mirrors; change them together. Std only: this runs before any reactor.

mod probe;
mod profile;
mod startup;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

const LATENCY: &str = include_str!("../../tuning/latency.profile");
const THROUGHPUT: &str = include_str!("../../tuning/throughput.profile");

/// os.sh's default profile; the startup warnings judge against it.
pub const DEFAULT_PROFILE: &str = "latency";

/// One checked setting: one table row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The profile's name, plus `:<instance>` for wildcard targets (`disk-scheduler:sda`).
    pub name: String,
    /// None when the host does not have the setting (Absent) or limits.conf does not set it (Drift).
    pub current: Option<String>,
    /// Resolved (mem_pct is turned into kB for this host's memory).
    pub recommended: String,
    pub status: Status,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Drift,
    /// Not present on this host (older kernel, no cpufreq, no NVMe): reported, never a failure.
    Absent,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Drift => "DRIFT",
            Status::Absent => "ABSENT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuningError {
    /// No built-in profile of that name.
    UnknownProfile(String),
    /// A profile line that os.sh would reject too; `line` 0 means the whole profile.
    BadProfile {
        profile: String,
        line: usize,
        reason: String,
    },
    /// The root prefix has no proc/sys: a wrong ROCKETCORE_TUNING_ROOT, or not Linux.
    NoProcSys(PathBuf),
}

impl fmt::Display for TuningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TuningError::UnknownProfile(name) => {
                write!(f, "no profile '{name}' (available: {})", PROFILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" "))
            }
            TuningError::BadProfile { profile, line: 0, reason } => write!(f, "profile {profile}: {reason}"),
            TuningError::BadProfile { profile, line, reason } => write!(f, "profile {profile} line {line}: {reason}"),
            TuningError::NoProcSys(root) => write!(
                f,
                "no proc/sys under {}: ROCKETCORE_TUNING_ROOT must name a tree with proc/, sys/ and etc/ (or be unset)",
                root.display()
            ),
        }
    }
}

impl std::error::Error for TuningError {}

const PROFILES: [(&str, &str); 2] = [("latency", LATENCY), ("throughput", THROUGHPUT)];

/// The text of a built-in profile (`latency`, `throughput`), as shipped in `tuning/<name>.profile`.
pub fn profile_text(name: &str) -> Option<&'static str> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

fn settings(profile: &str) -> Result<Vec<profile::Setting>, TuningError> {
    let text =
        profile_text(profile).ok_or_else(|| TuningError::UnknownProfile(profile.to_string()))?;
    profile::parse(profile, text)
}

/// Judge the host under `root` ("/" for the real one) against a built-in profile, as `os.sh --check`.
pub fn check_profile(profile: &str, root: &Path) -> Result<Vec<Finding>, TuningError> {
    probe::evaluate(&settings(profile)?, root)
}

/// Findings that matter to the broker: memlock too low for `io_memory_bytes` of io_uring buffers, swappiness, scheduler of the disk holding `store_dir`, nofile below `max_connections`+margin. One warning line each for drift.
///
/// memlock and nofile come from `/proc/self/limits` (what binds this process, however it was started);
/// swappiness and the scheduler are judged against the latency profile. A value that cannot be read
/// (no such file, tmpfs store) gives no warning: the startup check only reports what it knows.
pub fn broker_startup_warnings(
    root: &Path,
    store_dir: &Path,
    io_memory_bytes: u64,
    max_connections: u64,
) -> Vec<String> {
    match settings(DEFAULT_PROFILE) {
        Ok(settings) => {
            startup::warnings(&settings, root, store_dir, io_memory_bytes, max_connections)
        }
        Err(e) => vec![format!(
            "tuning: built-in profile is broken, startup check skipped: {e}"
        )],
    }
}

/// `rocketcore broker --check-tuning`: print the same table as os.sh --check to `out`, return os.sh's exit code (0 ok, 1 drift, 2 error).
pub fn run_check_cli(profile: &str, root: &Path, out: &mut dyn Write) -> i32 {
    match check_profile(profile, root) {
        Ok(findings) => {
            let (table, drift) = render_table(profile, &findings);
            match out.write_all(table.as_bytes()) {
                Ok(()) if drift => 1,
                Ok(()) => 0,
                Err(_) => 2,
            }
        }
        Err(e) => {
            let _ = writeln!(out, "rocketcore: {e}");
            2
        }
    }
}

/// ROCKETCORE_TUNING_ROOT or "/".
pub fn root_from_env() -> PathBuf {
    match std::env::var_os("ROCKETCORE_TUNING_ROOT") {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => PathBuf::from("/"),
    }
}

/// The table os.sh's print_table prints, byte for byte, and whether any row drifts.
fn render_table(profile: &str, findings: &[Finding]) -> (String, bool) {
    let mut table = format!(
        "{:<32} {:<16} {:<24} {}\n",
        "SETTING", "CURRENT", "RECOMMENDED", "STATUS"
    );
    let (mut ok, mut drift, mut absent) = (0, 0, 0);
    for f in findings {
        let extra = match f.status {
            Status::Ok => {
                ok += 1;
                ""
            }
            Status::Drift => {
                drift += 1;
                ""
            }
            Status::Absent => {
                absent += 1;
                "  not present on this host"
            }
        };
        let current = match (&f.current, f.status) {
            (Some(c), _) => c.as_str(),
            (None, Status::Absent) => "-",
            (None, _) => "unset",
        };
        table.push_str(&format!(
            "{:<32} {:<16} {:<24} {}{}\n",
            f.name,
            current,
            f.recommended,
            f.status.as_str(),
            extra
        ));
    }
    table.push_str(&format!(
        "summary: {ok} OK, {drift} DRIFT, {absent} ABSENT (profile {profile})\n"
    ));
    (table, drift > 0)
}

#[cfg(test)]
mod tests;
