//! Retention: delete old commitlog segments (never the one being written) and move queue
//! minimums past them, per `fileReservedTime`, `deleteWhen` and `diskMaxUsedSpaceRatio` (§6.11).

use std::time::{Duration, SystemTime};

use crate::error::StoreError;
use crate::store::Log;

#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// `fileReservedTime`, hours: 72.
    pub file_reserved_time: Duration,
    /// `deleteWhen`: hours of the day when expired files may go, ";"-separated ("04").
    pub delete_when: Vec<u32>,
    /// Above this used ratio (percent) expired files go at any hour; above `force_ratio`,
    /// the oldest go even when not expired.
    pub clean_ratio: u32,
    pub force_ratio: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: vec![4],
            clean_ratio: 75,
            force_ratio: 85,
        }
    }
}

/// Parses `deleteWhen` ("04", "01;13"); each must be an hour 0..=23.
pub fn parse_delete_when(v: &str) -> Result<Vec<u32>, String> {
    v.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|h| {
            h.parse::<u32>()
                .ok()
                .filter(|h| *h < 24)
                .ok_or_else(|| format!("`{h}` is not an hour 0-23"))
        })
        .collect()
}

fn current_hour_utc(now: SystemTime) -> u32 {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ((secs / 3600) % 24) as u32
}

/// One retention pass; returns how many segments were deleted.
pub async fn run_once(
    log: &Log,
    policy: &RetentionPolicy,
    now: SystemTime,
) -> Result<usize, StoreError> {
    let cl = log.commitlog();
    let starts = cl.segment_starts()?;
    if starts.len() <= 1 {
        return Ok(0);
    }
    let used = log.disk_used_ratio() * 100.0;
    let in_window = policy.delete_when.contains(&current_hour_utc(now));
    let writing = crate::commitlog::segment::segment_start(cl.config(), cl.write_pos());
    let mut deleted = 0;
    for &start in starts.iter().filter(|s| **s < writing) {
        let path = cl.segment_path(start);
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let expired = age >= policy.file_reserved_time;
        let over_clean = used > policy.clean_ratio as f64;
        let over_force = log.disk_used_ratio() * 100.0 > policy.force_ratio as f64;
        if !((expired && (in_window || over_clean)) || over_force) {
            break; // segments are in age order: if this one stays, the newer ones do too
        }
        cl.segments().remove(start).await?;
        log.segment_removed(start + cl.config().segment_bytes);
        deleted += 1;
        if deleted >= 10 {
            break;
        }
    }
    Ok(deleted)
}

impl Log {
    /// Moves the commitlog minimum past a deleted segment; queue minimums follow.
    pub(crate) fn segment_removed(&self, new_min: u64) {
        self.commitlog_min.set(new_min);
        for q in self.queues.borrow_mut().values_mut() {
            q.set_commitlog_min(new_min);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_when_accepts_rocketmq_forms_and_refuses_bad_hours() {
        assert_eq!(parse_delete_when("04"), Ok(vec![4]));
        assert_eq!(parse_delete_when("01;13"), Ok(vec![1, 13]));
        assert!(parse_delete_when("25").is_err());
        assert!(parse_delete_when("x").is_err());
    }
}
