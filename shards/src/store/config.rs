//! Configuration of one log, with RocketMQ's defaults and names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::commitlog::FlushMode;
use crate::message::hash::tag_code;
use crate::runtime::dma::FaultInjector;

#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// `maxMessageSize`: 4 MiB.
    pub max_message_size: usize,
    /// `diskMaxUsedSpaceRatio` (percent): above it appends are refused.
    pub disk_max_used_space_ratio: u32,
    /// Treat the store as having this capacity instead of asking the filesystem (tests, quotas).
    pub disk_capacity_bytes: Option<u64>,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            disk_max_used_space_ratio: 75,
            disk_capacity_bytes: None,
        }
    }
}

#[derive(Clone)]
pub struct LogConfig {
    /// The log's own directory (commitlog/, consumequeue/, index/, checkpoint, abort).
    pub dir: PathBuf,
    pub log_id: u16,
    /// `mapedFileSizeCommitLog`: 1 GiB.
    pub segment_bytes: u64,
    pub flush_mode: FlushMode,
    /// `flushIntervalCommitLog`: 500 ms.
    pub flush_interval: Duration,
    /// `syncFlushTimeout`: 5 s.
    pub sync_flush_timeout: Duration,
    pub tail_cache_bytes: usize,
    pub max_pending_bytes: usize,
    /// How far ahead of the writer the current segment is zeroed (`warmMapedFileEnable`); 0: off.
    /// SYNC_FLUSH only: ASYNC_FLUSH logs never warm.
    pub warm_ahead_bytes: u64,
    /// Slot heads of the key index (`maxHashSlotNum`), 8 bytes each, allocated once per log.
    pub index_slots: usize,
    pub limits: StoreLimits,
    pub faults: Option<Rc<FaultInjector>>,
    pub store_host: SocketAddr,
    /// `messageDelayLevel` in milliseconds, level 1 first: the due time of a delayed message
    /// waiting in [`SCHEDULE_TOPIC`] queue `level − 1` is its store time plus its level's delay.
    pub delay_levels_ms: Vec<i64>,
}

/// Where RocketMQ keeps delayed messages until they are due (`TopicValidator.RMQ_SYS_SCHEDULE_TOPIC`).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// RocketMQ's default `messageDelayLevel`: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
pub const DEFAULT_DELAY_LEVELS_MS: [i64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// Far enough ahead that the writer (at most a few hundred MB/s here) never catches the warmer
/// (about 2 GB/s of zeroing writes), small enough to cost nothing noticeable at startup.
pub const DEFAULT_WARM_AHEAD_BYTES: u64 = 32 << 20;

impl LogConfig {
    pub fn new(dir: PathBuf, log_id: u16) -> Self {
        Self {
            dir,
            log_id,
            segment_bytes: 1 << 30,
            flush_mode: FlushMode::Async,
            flush_interval: Duration::from_millis(500),
            sync_flush_timeout: Duration::from_secs(5),
            tail_cache_bytes: 64 << 20,
            max_pending_bytes: 16 << 20,
            warm_ahead_bytes: DEFAULT_WARM_AHEAD_BYTES,
            index_slots: crate::index::DEFAULT_SLOTS,
            limits: StoreLimits::default(),
            faults: None,
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            delay_levels_ms: DEFAULT_DELAY_LEVELS_MS.to_vec(),
        }
    }

    /// The consume-queue tag code of a record: the tag's hash, or for a delayed message waiting
    /// in [`SCHEDULE_TOPIC`] its due time (RocketMQ's dispatcher does the same), which is what
    /// the broker's delay timer compares with the clock.
    pub fn cq_tag_code(
        &self,
        topic: &str,
        queue_id: i32,
        store_ts: i64,
        tags: Option<&str>,
    ) -> i64 {
        if topic != SCHEDULE_TOPIC {
            return tag_code(tags);
        }
        let last = self.delay_levels_ms.len().saturating_sub(1);
        let delay = self
            .delay_levels_ms
            .get((queue_id.max(0) as usize).min(last))
            .copied()
            .unwrap_or(0);
        store_ts.saturating_add(delay)
    }

    /// The log id lives in the top 16 bits of every physical offset, so a message id (store host
    /// plus physical offset) names its log and stays unique across shards.
    pub fn base_offset(&self) -> u64 {
        (self.log_id as u64) << 48
    }
}

/// The log a physical offset belongs to (the inverse of [`LogConfig::base_offset`]).
pub fn log_of_offset(phys: u64) -> u16 {
    (phys >> 48) as u16
}
