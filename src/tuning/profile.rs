//! The profile file format (documented at the top of `tuning/*.profile` and in `tuning/README.md`).
//!
//! One setting per line, six fields separated by `|`: `name|kind|target|recommended|compare|why`.
//! os.sh parses the same files with the same rules; a line either one rejects, the other rejects too.

use super::TuningError;

/// How the current value is read and how os.sh applies the recommended one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `target` is a sysctl key; the value lives in `/proc/sys/<key with '.' as '/'>`.
    Sysctl,
    /// `target` is an absolute path, possibly with `*`/`?` wildcards; one finding per matching file.
    Sysfs,
    /// `target` is `domain:type:item` of limits.conf + limits.d/*.conf.
    Limits,
    /// `target` globs smp_affinity masks; one finding: the union of CPUs IRQs may use. Check only.
    Irq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    Eq,
    Ge,
    Le,
    ContainsBracketed,
    CpusWithin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) target: String,
    /// As written: a value, `a,b` alternatives, `unlimited`, or `mem_pct(P,FLOOR,CAP)`.
    pub(crate) recommended: String,
    pub(crate) compare: Compare,
    pub(crate) why: String,
}

pub(crate) fn parse(profile: &str, text: &str) -> Result<Vec<Setting>, TuningError> {
    let mut settings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let setting = parse_line(line).map_err(|reason| TuningError::BadProfile {
            profile: profile.to_string(),
            line: index + 1,
            reason,
        })?;
        settings.push(setting);
    }
    if settings.is_empty() {
        return Err(TuningError::BadProfile {
            profile: profile.to_string(),
            line: 0,
            reason: "holds no settings".to_string(),
        });
    }
    Ok(settings)
}

fn parse_line(line: &str) -> Result<Setting, String> {
    let fields: Vec<&str> = line.split('|').collect();
    if fields.len() != 6 || fields[5].is_empty() {
        return Err("want 6 fields name|kind|target|recommended|compare|why".to_string());
    }
    let name = fields[0];
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !name_ok {
        return Err(format!("bad name '{name}'"));
    }
    let kind = match fields[1] {
        "sysctl" => Kind::Sysctl,
        "sysfs" => Kind::Sysfs,
        "limits" => Kind::Limits,
        "irq" => Kind::Irq,
        other => return Err(format!("unknown kind '{other}'")),
    };
    let compare = match fields[4] {
        "eq" => Compare::Eq,
        "ge" => Compare::Ge,
        "le" => Compare::Le,
        "contains-bracketed" => Compare::ContainsBracketed,
        "cpus-within" => Compare::CpusWithin,
        other => return Err(format!("unknown compare '{other}'")),
    };
    if (kind == Kind::Irq) != (compare == Compare::CpusWithin) {
        return Err("cpus-within goes with kind irq and only with it".to_string());
    }
    let target = fields[2];
    if kind == Kind::Limits && !is_limits_target(target) {
        return Err("limits target must be domain:soft|hard:item".to_string());
    }
    if matches!(kind, Kind::Sysfs | Kind::Irq) && !target.starts_with('/') {
        return Err("target must be an absolute path".to_string());
    }
    Ok(Setting {
        name: name.to_string(),
        kind,
        target: target.to_string(),
        recommended: fields[3].to_string(),
        compare,
        why: fields[5].to_string(),
    })
}

/// `domain:type:item` with type soft or hard and a lowercase item, as os.sh's regex
/// `^[^:]+:(soft|hard):[a-z]+$` accepts.
fn is_limits_target(target: &str) -> bool {
    let parts: Vec<&str> = target.split(':').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && (parts[1] == "soft" || parts[1] == "hard")
        && !parts[2].is_empty()
        && parts[2].bytes().all(|b| b.is_ascii_lowercase())
}

/// `mem_pct(P,FLOOR,CAP)` → (P, FLOOR, CAP); anything else is a literal value.
pub(crate) fn mem_pct(spec: &str) -> Option<(u64, u64, u64)> {
    let inner = spec.strip_prefix("mem_pct(")?.strip_suffix(')')?;
    let numbers: Vec<&str> = inner.split(',').collect();
    if numbers.len() != 3
        || !numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((
        numbers[0].parse().ok()?,
        numbers[1].parse().ok()?,
        numbers[2].parse().ok()?,
    ))
}
