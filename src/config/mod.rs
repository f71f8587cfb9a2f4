//! Broker configuration: RocketMQ's `broker.properties` keys plus ours, overridden by flags.
//!
//! An unknown key is a warning; a bad value stops startup with a message naming the key, the
//! value and what is accepted.

mod parse;

pub use parse::{parse_properties, ConfigError};

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    SyncFlush,
    AsyncFlush,
}

impl FlushDiskType {
    /// The name `flushDiskType` takes in broker.properties.
    pub fn name(self) -> &'static str {
        match self {
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    /// `brokerIP1`: the address registered and put in message ids; never guessed.
    pub broker_ip1: Ipv4Addr,
    /// 0 picks an ephemeral port (tests); the fast port listenPort−2 is then not opened.
    pub listen_port: u16,
    /// Empty with the embedded NameServer: the broker registers with it.
    pub namesrv_addr: Option<String>,
    pub embedded_namesrv: bool,
    pub namesrv_listen_port: u16,
    pub store_path_root_dir: PathBuf,
    pub flush_disk_type: FlushDiskType,
    pub sync_flush_timeout: Duration,
    pub flush_interval_commit_log: Duration,
    pub maped_file_size_commit_log: u64,
    pub file_reserved_time_hours: u64,
    pub delete_when: Vec<u32>,
    pub disk_max_used_space_ratio: u32,
    pub max_message_size: usize,
    pub auto_create_topic_enable: bool,
    pub auto_create_subscription_group: bool,
    pub default_topic_queue_nums: i32,
    pub broker_permission: i32,
    pub long_polling_enable: bool,
    /// `enablePropertyFilter`: accept SQL92 subscriptions (RocketMQ's default: off).
    pub enable_property_filter: bool,
    /// Ours: number of shards (pinned cores). Default: one per available core.
    pub shards: usize,
    pub shard_io_memory: usize,
    pub tail_cache_bytes: usize,
    pub pin_shards: bool,
    /// `warmMapedFileEnable`: zero commitlog segments ahead of the writer. RocketMQ defaults it
    /// to false; here it is on, because O_DIRECT writes into fallocated (unwritten) extents made
    /// every SYNC_FLUSH round pay a journal commit (see shards/src/commitlog/warmer.rs).
    /// It applies to SYNC_FLUSH only; under ASYNC_FLUSH warming slowed the writes.
    pub warm_maped_file_enable: bool,
    /// `maxHashSlotNum`: slot heads of each log's key index (8 bytes each, allocated once).
    pub max_hash_slot_num: usize,
    /// Ours: microseconds an idle shard polls before parking (`shardSpinBeforePark`).
    pub shard_spin_before_park: Duration,
    /// `messageDelayLevel`: the delay of each level, level 1 first, in milliseconds.
    pub message_delay_level_ms: Vec<i64>,
    /// `transactionTimeOut`: a half message younger than this is not checked yet.
    pub transaction_timeout: Duration,
    /// `transactionCheckMax`: checks before an unresolved half message is discarded.
    pub transaction_check_max: u32,
    /// `transactionCheckInterval`: how often unresolved half messages are checked.
    pub transaction_check_interval: Duration,
    pub register_interval: Duration,
    pub tuning_profile: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            broker_ip1: Ipv4Addr::LOCALHOST,
            listen_port: 10911,
            namesrv_addr: None,
            embedded_namesrv: true,
            namesrv_listen_port: 9876,
            store_path_root_dir: default_store_dir(),
            flush_disk_type: FlushDiskType::AsyncFlush,
            sync_flush_timeout: Duration::from_millis(5000),
            flush_interval_commit_log: Duration::from_millis(500),
            maped_file_size_commit_log: 1 << 30,
            file_reserved_time_hours: 72,
            delete_when: vec![4],
            disk_max_used_space_ratio: 75,
            max_message_size: 4 * 1024 * 1024,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            broker_permission: 6,
            long_polling_enable: true,
            enable_property_filter: false,
            shards: rocketcore_shards::runtime::available_cores(),
            shard_io_memory: rocketcore_shards::runtime::DEFAULT_IO_MEMORY_BYTES,
            tail_cache_bytes: 64 << 20,
            pin_shards: true,
            warm_maped_file_enable: true,
            max_hash_slot_num: rocketcore_shards::index::DEFAULT_SLOTS,
            shard_spin_before_park: Duration::ZERO,
            message_delay_level_ms: rocketcore_shards::store::DEFAULT_DELAY_LEVELS_MS.to_vec(),
            transaction_timeout: Duration::from_millis(6_000),
            transaction_check_max: 15,
            transaction_check_interval: Duration::from_millis(60_000),
            register_interval: Duration::from_secs(30),
            tuning_profile: "latency".into(),
        }
    }
}

/// `~/store`, as RocketMQ defaults `storePathRootDir`.
pub fn default_store_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("store")
}

impl BrokerConfig {
    pub fn broker_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }

    /// Applies one `key=value`. Unknown keys return `Ok(false)` so the caller can warn.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        use parse::*;
        let v = value.trim();
        match key {
            "brokerClusterName" => self.broker_cluster_name = name(key, v)?,
            "brokerName" => self.broker_name = name(key, v)?,
            "brokerId" => self.broker_id = int(key, v, 0, i64::MAX)?,
            "brokerIP1" => self.broker_ip1 = ipv4(key, v)?,
            "listenPort" => self.listen_port = int(key, v, 0, 65535)? as u16,
            "namesrvAddr" => {
                self.namesrv_addr = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                }
            }
            "embeddedNamesrv" => self.embedded_namesrv = boolean(key, v)?,
            "namesrvListenPort" => self.namesrv_listen_port = int(key, v, 0, 65535)? as u16,
            "storePathRootDir" => self.store_path_root_dir = path(key, v)?,
            "storePathCommitLog" | "storePathConsumeQueue" | "storePathIndex" => {
                return Err(ConfigError::bad(
                    key,
                    v,
                    "not supported: set storePathRootDir instead",
                ))
            }
            "flushDiskType" => {
                self.flush_disk_type = match v {
                    "SYNC_FLUSH" => FlushDiskType::SyncFlush,
                    "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
                    _ => return Err(ConfigError::bad(key, v, "SYNC_FLUSH or ASYNC_FLUSH")),
                }
            }
            "syncFlushTimeout" => {
                self.sync_flush_timeout = Duration::from_millis(int(key, v, 1, 3_600_000)? as u64)
            }
            "flushIntervalCommitLog" => {
                self.flush_interval_commit_log =
                    Duration::from_millis(int(key, v, 1, 60_000)? as u64)
            }
            "mapedFileSizeCommitLog" | "mappedFileSizeCommitLog" => {
                let n = int(key, v, 64 * 1024, 1 << 40)? as u64;
                if !n.is_multiple_of(4096) {
                    return Err(ConfigError::bad(
                        key,
                        v,
                        "a multiple of 4096 bytes, at least 65536",
                    ));
                }
                self.maped_file_size_commit_log = n;
            }
            "fileReservedTime" => {
                self.file_reserved_time_hours = int(key, v, 0, 24 * 365 * 10)? as u64
            }
            "deleteWhen" => {
                self.delete_when =
                    rocketcore_shards::retention::parse_delete_when(v).map_err(|why| {
                        ConfigError::bad(key, v, &format!("hours 00-23 separated by ';' ({why})"))
                    })?
            }
            "diskMaxUsedSpaceRatio" => self.disk_max_used_space_ratio = int(key, v, 10, 95)? as u32,
            "maxMessageSize" => self.max_message_size = int(key, v, 1, 64 * 1024 * 1024)? as usize,
            "autoCreateTopicEnable" => self.auto_create_topic_enable = boolean(key, v)?,
            "autoCreateSubscriptionGroup" => self.auto_create_subscription_group = boolean(key, v)?,
            "defaultTopicQueueNums" => self.default_topic_queue_nums = int(key, v, 1, 1024)? as i32,
            "brokerPermission" => self.broker_permission = int(key, v, 0, 7)? as i32,
            "longPollingEnable" => self.long_polling_enable = boolean(key, v)?,
            "enablePropertyFilter" => self.enable_property_filter = boolean(key, v)?,
            "shards" => self.shards = int(key, v, 1, 256)? as usize,
            "shardIoMemory" => self.shard_io_memory = int(key, v, 64 * 1024, 1 << 30)? as usize,
            "tailCacheBytes" => self.tail_cache_bytes = int(key, v, 0, 1 << 40)? as usize,
            "pinShards" => self.pin_shards = boolean(key, v)?,
            "warmMapedFileEnable" => self.warm_maped_file_enable = boolean(key, v)?,
            "maxHashSlotNum" => self.max_hash_slot_num = int(key, v, 1, 1 << 28)? as usize,
            "shardSpinBeforePark" => {
                self.shard_spin_before_park =
                    Duration::from_micros(int(key, v, 0, 1_000_000)? as u64)
            }
            "transactionTimeOut" => {
                self.transaction_timeout = Duration::from_millis(int(key, v, 0, 86_400_000)? as u64)
            }
            "transactionCheckMax" => self.transaction_check_max = int(key, v, 1, 1_000)? as u32,
            "transactionCheckInterval" => {
                self.transaction_check_interval =
                    Duration::from_millis(int(key, v, 100, 86_400_000)? as u64)
            }
            "registerBrokerInterval" | "registerNameServerPeriod" => {
                self.register_interval = Duration::from_millis(int(key, v, 1000, 60_000)? as u64)
            }
            "tuningProfile" => self.tuning_profile = v.to_string(),
            "messageDelayLevel" => {
                self.message_delay_level_ms = parse_delay_levels(v).ok_or_else(|| {
                    ConfigError::bad(
                        key,
                        v,
                        "1 to 100 durations separated by spaces, each a number and a unit s, m, h \
                         or d (RocketMQ's default: 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m \
                         20m 30m 1h 2h)",
                    )
                })?
            }
            // Accepted for compatibility with existing broker.properties files; no effect yet.
            "brokerRole"
            | "brokerIP2"
            | "haListenPort"
            | "flushConsumeQueueLeastPages"
            | "sendMessageThreadPoolNums"
            | "pullMessageThreadPoolNums"
            | "useReentrantLockWhenPutMessage"
            | "transientStorePoolEnable"
            | "slaveReadEnable"
            | "traceTopicEnable"
            | "aclEnable" => {
                tracing::info!(
                    key,
                    value = v,
                    "accepted for compatibility; has no effect in rocketcore yet"
                );
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies every pair, warning about unknown keys.
    pub fn apply(&mut self, pairs: &[(String, String)], source: &str) -> Result<(), ConfigError> {
        for (k, v) in pairs {
            if !self.set(k, v)? {
                tracing::warn!(key = %k, source, "unknown configuration key ignored");
            }
        }
        Ok(())
    }
}

impl BrokerConfig {
    /// Every key `set` accepts with an effect, and its current value in the form `set` reads
    /// (GET_BROKER_CONFIG, `mqadmin getBrokerConfig`).
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        vec![
            ("brokerClusterName", self.broker_cluster_name.clone()),
            ("brokerName", self.broker_name.clone()),
            ("brokerId", self.broker_id.to_string()),
            ("brokerIP1", self.broker_ip1.to_string()),
            ("listenPort", self.listen_port.to_string()),
            ("namesrvAddr", self.namesrv_addr.clone().unwrap_or_default()),
            ("embeddedNamesrv", self.embedded_namesrv.to_string()),
            ("namesrvListenPort", self.namesrv_listen_port.to_string()),
            (
                "storePathRootDir",
                self.store_path_root_dir.display().to_string(),
            ),
            ("flushDiskType", self.flush_disk_type.name().into()),
            ("syncFlushTimeout", ms(self.sync_flush_timeout)),
            ("flushIntervalCommitLog", ms(self.flush_interval_commit_log)),
            (
                "mapedFileSizeCommitLog",
                self.maped_file_size_commit_log.to_string(),
            ),
            (
                "fileReservedTime",
                self.file_reserved_time_hours.to_string(),
            ),
            (
                "deleteWhen",
                self.delete_when
                    .iter()
                    .map(|h| format!("{h:02}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            (
                "diskMaxUsedSpaceRatio",
                self.disk_max_used_space_ratio.to_string(),
            ),
            ("maxMessageSize", self.max_message_size.to_string()),
            (
                "autoCreateTopicEnable",
                self.auto_create_topic_enable.to_string(),
            ),
            (
                "autoCreateSubscriptionGroup",
                self.auto_create_subscription_group.to_string(),
            ),
            (
                "defaultTopicQueueNums",
                self.default_topic_queue_nums.to_string(),
            ),
            ("brokerPermission", self.broker_permission.to_string()),
            ("longPollingEnable", self.long_polling_enable.to_string()),
            (
                "enablePropertyFilter",
                self.enable_property_filter.to_string(),
            ),
            ("shards", self.shards.to_string()),
            ("shardIoMemory", self.shard_io_memory.to_string()),
            ("tailCacheBytes", self.tail_cache_bytes.to_string()),
            ("pinShards", self.pin_shards.to_string()),
            (
                "warmMapedFileEnable",
                self.warm_maped_file_enable.to_string(),
            ),
            ("maxHashSlotNum", self.max_hash_slot_num.to_string()),
            (
                "shardSpinBeforePark",
                self.shard_spin_before_park.as_micros().to_string(),
            ),
            (
                "messageDelayLevel",
                self.message_delay_level_ms
                    .iter()
                    .map(|ms| delay_text(*ms))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("transactionTimeOut", ms(self.transaction_timeout)),
            (
                "transactionCheckMax",
                self.transaction_check_max.to_string(),
            ),
            (
                "transactionCheckInterval",
                ms(self.transaction_check_interval),
            ),
            ("registerBrokerInterval", ms(self.register_interval)),
            ("tuningProfile", self.tuning_profile.clone()),
        ]
    }
}

/// One delay level in the largest unit that divides it exactly, as `messageDelayLevel` reads it.
fn delay_text(ms: i64) -> String {
    for (unit, per) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{}s", ms / 1_000)
}

/// `messageDelayLevel`: durations like `1s 5s 1m 2h`, in milliseconds.
pub fn parse_delay_levels(v: &str) -> Option<Vec<i64>> {
    let levels: Option<Vec<i64>> = v
        .split_whitespace()
        .map(|d| {
            let unit_at = d.len().checked_sub(1)?;
            let (n, unit) = (d.get(..unit_at)?, d.get(unit_at..)?);
            let ms = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
            n.checked_mul(ms)
        })
        .collect();
    levels.filter(|l| (1..=100).contains(&l.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `properties()` back through `set`, key by key, into a default config.
    fn reread(c: &BrokerConfig) -> BrokerConfig {
        let mut back = BrokerConfig::default();
        for (k, v) in c.properties() {
            assert_eq!(
                back.set(k, &v).map_err(|e| e.to_string()),
                Ok(true),
                "{k}={v}"
            );
        }
        back
    }

    #[test]
    fn every_property_written_reads_back_to_the_same_value() {
        let mut c = BrokerConfig::default();
        for (k, v) in [
            ("brokerName", "b-7"),
            ("brokerIP1", "10.1.2.3"),
            ("namesrvAddr", "127.0.0.1:9876;127.0.0.1:9877"),
            ("flushDiskType", "SYNC_FLUSH"),
            ("syncFlushTimeout", "1234"),
            ("deleteWhen", "04;16"),
            ("messageDelayLevel", "1s 90s 2m 1h 2d"),
            ("shardSpinBeforePark", "50"),
            ("pinShards", "false"),
            ("maxMessageSize", "1000"),
        ] {
            assert_eq!(c.set(k, v).map_err(|e| e.to_string()), Ok(true), "{k}");
        }
        let back = reread(&c);
        assert_eq!(back.properties(), c.properties());
        assert_eq!(
            back.message_delay_level_ms,
            [1_000, 90_000, 120_000, 3_600_000, 172_800_000]
        );
        assert_eq!(back.delete_when, [4, 16]);
        assert_eq!(back.flush_disk_type, FlushDiskType::SyncFlush);
        let d = BrokerConfig::default();
        assert_eq!(reread(&d).properties(), d.properties());
    }

    #[test]
    fn delay_levels_parse_as_rocketmq_writes_them_and_refuse_anything_else() {
        let default = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
        assert_eq!(
            parse_delay_levels(default).as_deref(),
            Some(&rocketcore_shards::store::DEFAULT_DELAY_LEVELS_MS[..])
        );
        assert_eq!(
            parse_delay_levels(" 2s  1d "),
            Some(vec![2_000, 86_400_000])
        );
        for bad in [
            "",
            "1",
            "s",
            "1x 2s",
            "0s",
            "-1s",
            "1.5s",
            "99999999999999999d",
            "é",
        ] {
            assert_eq!(parse_delay_levels(bad), None, "{bad:?}");
        }
        let mut c = BrokerConfig::default();
        let e = c
            .set("messageDelayLevel", "1s soon")
            .expect_err("bad value");
        assert!(e.to_string().contains("messageDelayLevel"), "{e}");
    }

    #[test]
    fn defaults_match_rocketmq() {
        let c = BrokerConfig::default();
        assert_eq!((c.listen_port, c.namesrv_listen_port), (10911, 9876));
        assert_eq!(c.flush_disk_type, FlushDiskType::AsyncFlush);
        assert_eq!(c.maped_file_size_commit_log, 1 << 30);
        assert_eq!(c.broker_ip1, Ipv4Addr::LOCALHOST);
        assert_eq!(c.default_topic_queue_nums, 8);
    }

    #[test]
    fn a_bad_value_names_the_key_the_value_and_what_is_accepted() {
        let mut c = BrokerConfig::default();
        let e = c.set("flushDiskType", "SOMETIMES").expect_err("bad value");
        let s = e.to_string();
        assert!(
            s.contains("flushDiskType") && s.contains("SOMETIMES") && s.contains("SYNC_FLUSH"),
            "{s}"
        );
        let e = c.set("listenPort", "70000").expect_err("bad port");
        assert!(e.to_string().contains("listenPort"));
        assert!(c.set("brokerIP1", "example.com").is_err());
        assert!(c.set("deleteWhen", "27").is_err());
    }

    #[test]
    fn an_unknown_key_is_not_an_error() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.set("noSuchKey", "1").ok(), Some(false));
    }
}
