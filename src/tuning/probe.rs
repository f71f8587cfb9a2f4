//! Reading the host (or a fixture tree under a root prefix) and judging values, with the same rules as
//! os.sh. Each function names the os.sh function it mirrors; when one changes, change the other.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::profile::{self, Compare, Kind, Setting};
use super::{Finding, Status, TuningError};

/// "unlimited" in ge/le comparisons (os.sh: INF, bash's largest integer).
pub(crate) const INF: u64 = i64::MAX as u64;

/// `root` joined with an absolute host path ("/proc/sys/vm/swappiness").
pub(crate) fn under(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

/// os.sh `read_raw`: the file's text without trailing newlines; None if unreadable.
pub(crate) fn read_raw(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(text.trim_end_matches('\n').to_string())
}

/// os.sh `squash`: the words of the first line joined by ','.
pub(crate) fn squash(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    first.split_whitespace().collect::<Vec<_>>().join(",")
}

/// os.sh `selected_choice`: "none [mq-deadline] kyber" → mq-deadline; one bare word is itself.
pub(crate) fn selected_choice(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().collect();
    for word in &words {
        if word.len() >= 2 && word.starts_with('[') && word.ends_with(']') {
            return word[1..word.len() - 1].to_string();
        }
    }
    if words.len() == 1 {
        return words[0].to_string();
    }
    String::new()
}

/// os.sh `to_num`.
pub(crate) fn to_num(value: &str) -> Option<u64> {
    match value {
        "unlimited" | "infinity" | "-1" => Some(INF),
        "" => None,
        v if !v.bytes().all(|b| b.is_ascii_digit()) => None,
        v if v.len() > 18 => Some(INF),
        v => v.parse().ok(),
    }
}

/// os.sh `judge`: does `current` satisfy `recommended`?
pub(crate) fn judge(compare: Compare, current: &str, recommended: &str) -> bool {
    match compare {
        Compare::Eq | Compare::ContainsBracketed => {
            recommended.split(',').any(|alt| alt == current)
        }
        Compare::Ge | Compare::Le => match (to_num(current), to_num(recommended)) {
            (Some(c), Some(r)) if compare == Compare::Ge => c >= r,
            (Some(c), Some(r)) => c <= r,
            _ => false,
        },
        Compare::CpusWithin => false,
    }
}

/// os.sh `mem_total_kb`.
fn mem_total_kb(root: &Path) -> u64 {
    let Some(text) = read_raw(&under(root, "/proc/meminfo")) else {
        return 0;
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("MemTotal:") {
            if let Some(v) = words.next().and_then(to_plain_number) {
                return v;
            }
        }
    }
    0
}

fn to_plain_number(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// os.sh `resolve_rec`: mem_pct(P,FLOOR,CAP) becomes P% of MemTotal kB clamped to [FLOOR, CAP].
pub(crate) fn resolve_rec(spec: &str, root: &Path) -> String {
    match profile::mem_pct(spec) {
        Some((pct, floor, cap)) => {
            let v = mem_total_kb(root).saturating_mul(pct) / 100;
            let v = if v < floor { floor } else { v };
            let v = if v > cap { cap } else { v };
            v.to_string()
        }
        None => spec.to_string(),
    }
}

/// The findings for one profile; `claimed` keeps os.sh's "first row matching a file owns it".
pub(crate) fn evaluate(settings: &[Setting], root: &Path) -> Result<Vec<Finding>, TuningError> {
    if !under(root, "/proc/sys").is_dir() {
        return Err(TuningError::NoProcSys(root.to_path_buf()));
    }
    let mut findings = Vec::new();
    let mut claimed = HashSet::new();
    for setting in settings {
        match setting.kind {
            Kind::Sysctl => findings.push(eval_sysctl(setting, root)),
            Kind::Sysfs => findings.extend(eval_sysfs(setting, root, &mut claimed)),
            Kind::Limits => findings.push(eval_limits(setting, root)),
            Kind::Irq => findings.push(eval_irq(setting, root)?),
        }
    }
    Ok(findings)
}

fn finding(
    setting: &Setting,
    name: String,
    current: Option<String>,
    recommended: String,
    status: Status,
) -> Finding {
    Finding {
        name,
        current,
        recommended,
        status,
        why: setting.why.clone(),
    }
}

fn status_of(compare: Compare, current: &str, recommended: &str) -> Status {
    if judge(compare, current, recommended) {
        Status::Ok
    } else {
        Status::Drift
    }
}

pub(crate) fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn eval_sysctl(setting: &Setting, root: &Path) -> Finding {
    let rec = resolve_rec(&setting.recommended, root);
    let path = under(root, &sysctl_path(&setting.target));
    let name = setting.name.clone();
    if !path.exists() {
        return finding(setting, name, None, rec, Status::Absent);
    }
    match read_raw(&path) {
        None => finding(setting, name, Some("unreadable".into()), rec, Status::Drift),
        Some(raw) => {
            let cur = squash(&raw);
            let status = status_of(setting.compare, &cur, &rec);
            finding(setting, name, Some(non_empty(cur)), rec, status)
        }
    }
}

fn non_empty(value: String) -> String {
    if value.is_empty() {
        "empty".to_string()
    } else {
        value
    }
}

fn eval_sysfs(setting: &Setting, root: &Path, claimed: &mut HashSet<String>) -> Vec<Finding> {
    let rec = resolve_rec(&setting.recommended, root);
    let mut out = Vec::new();
    for path in expand(root, &setting.target) {
        if claimed.contains(&path) || !is_disk_or_not_block(root, &path) {
            continue;
        }
        claimed.insert(path.clone());
        let name = match instance_of(&setting.target, &path) {
            Some(inst) => format!("{}:{}", setting.name, inst),
            None => setting.name.clone(),
        };
        let Some(raw) = read_raw(&under(root, &path)) else {
            out.push(finding(
                setting,
                name,
                Some("unreadable".into()),
                rec.clone(),
                Status::Drift,
            ));
            continue;
        };
        let cur = if setting.compare == Compare::ContainsBracketed {
            selected_choice(&raw)
        } else {
            squash(&raw)
        };
        let status = status_of(setting.compare, &cur, &rec);
        out.push(finding(
            setting,
            name,
            Some(non_empty(cur)),
            rec.clone(),
            status,
        ));
    }
    if out.is_empty() {
        out.push(finding(
            setting,
            setting.name.clone(),
            None,
            rec,
            Status::Absent,
        ));
    }
    out
}

/// /sys/block/X/... counts only when X is a real disk (has a `device` entry); loop, ram, zram, dm do not.
fn is_disk_or_not_block(root: &Path, host_path: &str) -> bool {
    match host_path.strip_prefix("/sys/block/") {
        Some(rest) => match rest.split_once('/') {
            Some((dev, _)) => under(root, &format!("/sys/block/{dev}/device")).exists(),
            None => true,
        },
        None => true,
    }
}

/// os.sh `instance_of`: the path component the first wildcard of `target` matched.
pub(crate) fn instance_of(target: &str, path: &str) -> Option<String> {
    let t: Vec<&str> = target.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    let i = t.iter().position(|c| c.contains('*') || c.contains('?'))?;
    p.get(i).map(|s| s.to_string())
}

/// Bash-like pathname expansion under `root` with nullglob and LC_ALL=C: `*` and `?` per component,
/// no match across '/', names starting with '.' only when the pattern does. Returns host paths.
pub(crate) fn expand(root: &Path, pattern: &str) -> Vec<String> {
    let mut prefixes = vec![String::new()];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for prefix in &prefixes {
            if !(component.contains('*') || component.contains('?')) {
                next.push(format!("{prefix}/{component}"));
                continue;
            }
            let dir = under(root, if prefix.is_empty() { "/" } else { prefix });
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| expand_matches(component, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| format!("{prefix}/{n}")));
        }
        prefixes = next;
    }
    prefixes
        .into_iter()
        .filter(|p| under(root, p).exists())
        .collect()
}

/// Does one path component `name` match the one-component glob `pattern` (as [`expand`] decides)?
pub(crate) fn expand_matches(pattern: &str, name: &str) -> bool {
    (pattern.starts_with('.') || !name.starts_with('.'))
        && glob_match(pattern.as_bytes(), name.as_bytes())
}

fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// os.sh `limits_lookup`: the value of the last `domain type item value` line that matches, in
/// limits.conf and then limits.d/*.conf in C order (pam_limits reads them as if concatenated).
pub(crate) fn limits_lookup(root: &Path, domain: &str, kind: &str, item: &str) -> Option<String> {
    let mut files = Vec::new();
    let main = under(root, "/etc/security/limits.conf");
    if main.is_file() {
        files.push(main);
    }
    files.extend(
        expand(root, "/etc/security/limits.d/*.conf")
            .iter()
            .map(|p| under(root, p)),
    );
    let mut value = None;
    for file in files {
        let Ok(bytes) = fs::read(&file) else { continue };
        for line in String::from_utf8_lossy(&bytes).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() || words[0].starts_with('#') || words.len() < 4 {
                continue;
            }
            if words[0] == domain && (words[1] == kind || words[1] == "-") && words[2] == item {
                value = Some(words[3].to_string());
            }
        }
    }
    value
}

fn eval_limits(setting: &Setting, root: &Path) -> Finding {
    let rec = resolve_rec(&setting.recommended, root);
    let name = setting.name.clone();
    if !under(root, "/etc/security").is_dir() {
        return finding(setting, name, None, rec, Status::Absent);
    }
    let mut parts = setting.target.splitn(3, ':');
    let (domain, kind, item) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    match limits_lookup(root, domain, kind, item) {
        Some(cur) => {
            let status = status_of(setting.compare, &cur, &rec);
            finding(setting, name, Some(cur), rec, status)
        }
        None => finding(setting, name, None, rec, Status::Drift),
    }
}

fn eval_irq(setting: &Setting, root: &Path) -> Result<Finding, TuningError> {
    let allowed = parse_cpu_list(&setting.recommended).ok_or_else(|| TuningError::BadProfile {
        profile: setting.name.clone(),
        line: 0,
        reason: "recommended must be a cpu list like 0 or 0-1".to_string(),
    })?;
    let paths = expand(root, &setting.target);
    if paths.is_empty() {
        return Ok(finding(
            setting,
            setting.name.clone(),
            None,
            setting.recommended.clone(),
            Status::Absent,
        ));
    }
    let mut cpus = BTreeSet::new();
    let mut bad = false;
    for path in paths {
        match read_raw(&under(root, &path)) {
            Some(raw) if add_mask(&squash(&raw), &mut cpus) => {}
            _ => bad = true,
        }
    }
    let (current, status) = if bad {
        ("unreadable".to_string(), Status::Drift)
    } else if cpus.is_subset(&allowed) {
        (cpu_list(&cpus), Status::Ok)
    } else {
        (cpu_list(&cpus), Status::Drift)
    };
    Ok(finding(
        setting,
        setting.name.clone(),
        Some(current),
        setting.recommended.clone(),
        status,
    ))
}

/// os.sh `add_mask`: the CPUs of an smp_affinity mask ("ff", "00000000,0000000f").
pub(crate) fn add_mask(mask: &str, cpus: &mut BTreeSet<u32>) -> bool {
    let hex: Vec<u8> = mask
        .bytes()
        .filter(|&b| b != b',')
        .map(|b| b.to_ascii_lowercase())
        .collect();
    if hex.is_empty() || !hex.iter().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    for (nibble_index, digit) in hex.iter().rev().enumerate() {
        let value = (*digit as char).to_digit(16).unwrap_or(0);
        for bit in 0..4u32 {
            if (value >> bit) & 1 == 1 {
                cpus.insert(nibble_index as u32 * 4 + bit);
            }
        }
    }
    true
}

/// os.sh `add_list`: "0-3,8" → {0,1,2,3,8}.
pub(crate) fn parse_cpu_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in list.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (to_plain_number(lo)?, to_plain_number(hi)?),
            None => (to_plain_number(part)?, to_plain_number(part)?),
        };
        for cpu in lo..=hi {
            cpus.insert(u32::try_from(cpu).ok()?);
        }
    }
    Some(cpus)
}

/// os.sh `cpuset_list`: {0,1,2,3,8} → "0-3,8"; empty → "none".
pub(crate) fn cpu_list(cpus: &BTreeSet<u32>) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == cpu => *hi = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    if ranges.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    parts.join(",")
}
