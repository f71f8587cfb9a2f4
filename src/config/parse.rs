//! Parsing `broker.properties` and individual values.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("bad value for `{key}`: `{value}` (accepted: {accepted})")]
    BadValue {
        key: String,
        value: String,
        accepted: String,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: `{text}` is not `key=value`")]
    Syntax {
        path: String,
        line: usize,
        text: String,
    },
}

impl ConfigError {
    pub fn bad(key: &str, value: &str, accepted: &str) -> Self {
        Self::BadValue {
            key: key.into(),
            value: value.into(),
            accepted: accepted.into(),
        }
    }
}

/// Java `.properties` subset: `key=value` or `key: value`, `#`/`!` comments, blank lines.
pub fn parse_properties(text: &str, path: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(ConfigError::Syntax {
                path: path.into(),
                line: i + 1,
                text: line.into(),
            });
        };
        let key = line[..at].trim();
        if key.is_empty() {
            return Err(ConfigError::Syntax {
                path: path.into(),
                line: i + 1,
                text: line.into(),
            });
        }
        out.push((key.to_string(), line[at + 1..].trim().to_string()));
    }
    Ok(out)
}

pub fn int(key: &str, v: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| ConfigError::bad(key, v, &format!("an integer from {min} to {max}")))
}

pub fn boolean(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::bad(key, v, "true or false")),
    }
}

pub fn ipv4(key: &str, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse()
        .map_err(|_| ConfigError::bad(key, v, "an IPv4 address such as 127.0.0.1"))
}

pub fn name(key: &str, v: &str) -> Result<String, ConfigError> {
    if !v.is_empty()
        && v.len() <= 127
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%|_-".contains(&b))
    {
        Ok(v.to_string())
    } else {
        Err(ConfigError::bad(
            key,
            v,
            "1-127 characters from [a-zA-Z0-9_%|-]",
        ))
    }
}

pub fn path(key: &str, v: &str) -> Result<PathBuf, ConfigError> {
    if v.is_empty() {
        return Err(ConfigError::bad(key, v, "a directory path"));
    }
    let expanded = match v.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(v),
    };
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rocketmq_style_files() {
        let text = "# comment\nbrokerClusterName = DefaultCluster\nbrokerName=broker-a\n\nflushDiskType: SYNC_FLUSH\n";
        let p = parse_properties(text, "broker.properties").expect("parses");
        assert_eq!(p[0], ("brokerClusterName".into(), "DefaultCluster".into()));
        assert_eq!(p[2], ("flushDiskType".into(), "SYNC_FLUSH".into()));
        assert!(parse_properties("justakey\n", "f").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,200}") {
            let _ = parse_properties(&s, "f");
        }
    }
}
