//! Delayed delivery (§6.7): messages with a delay level, and consumer retries, wait in
//! `SCHEDULE_TOPIC_XXXX` (queue = level − 1) and are put to their real topic and queue once due.
//!
//! The store gives each waiting message's queue entry its due time as tag code (store time plus
//! the level's delay, `messageDelayLevel`). One timer per level, on the shard that owns the
//! level's queue, walks the queue in order: entries of one level fall due in the order they were
//! stored. A due message is rebuilt for REAL_TOPIC / REAL_QID with DELAY removed and put there;
//! its queue offset then counts as delivered.
//!
//! Progress is kept in `config/delayOffset.json` under the store root, as RocketMQ does. Delivery
//! is at least once: the file is written every 10 s with the progress of the tick before, so every
//! delivery it vouches for had 10 s to become durable even under ASYNC_FLUSH; after a crash, up to
//! the last 20 s of deliveries may be made again. A clean stop writes the current progress once
//! the logs have flushed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rocketcore_shards::message::properties::{self, DELAY};
use rocketcore_shards::message::record::{decode, MessageInput};
use rocketcore_shards::runtime::{sleep, spawn};
use rocketcore_shards::store::{now_ms, SCHEDULE_TOPIC};
use serde::{Deserialize, Serialize};

use super::queue_ops::put_one;
use super::{lock, BrokerShared, ShardCtx};

pub const REAL_TOPIC: &str = "REAL_TOPIC";
pub const REAL_QID: &str = "REAL_QID";

/// How often a timer looks again when its next message is not due or not there (RocketMQ's
/// 100 ms), and how long it backs off when a delivery fails.
const POLL: Duration = Duration::from_millis(100);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often progress is written (RocketMQ's `flushDelayOffsetInterval`).
pub const PERSIST_EVERY: Duration = Duration::from_secs(10);

/// The delay level a message asks for: its DELAY property, clamped to the configured levels;
/// `None` for no delay.
pub fn requested_level(props: &[(String, String)], levels: usize) -> Option<i32> {
    let level: i32 = properties::get(props, DELAY)?.trim().parse().ok()?;
    (level > 0).then(|| level.min(levels as i32))
}

/// Redirects `msg` to wait at `level` (1-based, within the configured levels): RocketMQ's
/// rewrite of a delayed message, remembering the destination in REAL_TOPIC and REAL_QID.
pub fn redirect(msg: &mut MessageInput, props: &mut Vec<(String, String)>, level: i32) {
    debug_assert!(level >= 1, "delay levels start at 1");
    properties::set(props, REAL_TOPIC, &msg.topic);
    properties::set(props, REAL_QID, &msg.queue_id.to_string());
    properties::set(props, DELAY, &level.to_string());
    msg.topic = SCHEDULE_TOPIC.into();
    msg.queue_id = level - 1;
    msg.properties = properties::encode(props).into();
}

/// The message a waiting record turns into when due: its real topic and queue, DELAY removed,
/// everything else as stored. `None` if the record does not say where it goes.
pub fn delivery(stored: &[u8], store_host: std::net::SocketAddr) -> Option<MessageInput> {
    let r = decode(stored)?;
    let mut props = properties::parse(&r.properties);
    let topic = properties::get(&props, REAL_TOPIC)?.to_string();
    let queue_id: i32 = properties::get(&props, REAL_QID)?.parse().ok()?;
    properties::remove(&mut props, DELAY);
    Some(MessageInput {
        topic: topic.as_str().into(),
        queue_id,
        properties: properties::encode(&props).into(),
        ..MessageInput::again(&r, store_host)
    })
}

/// Delivered queue offsets per level: the latest, and the ones the file may hold.
#[derive(Debug, Default)]
pub struct DelayProgress {
    current: BTreeMap<i32, u64>,
    persistable: BTreeMap<i32, u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayOffsetFile {
    offset_table: BTreeMap<i32, u64>,
}

pub fn progress_path(store_root: &Path) -> PathBuf {
    store_root.join("config").join("delayOffset.json")
}

impl DelayProgress {
    pub fn load(store_root: &Path) -> Result<Self, String> {
        let path = progress_path(store_root);
        let file: Option<DelayOffsetFile> = rocketcore_shards::persist::load_json(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let table = file.map(|f| f.offset_table).unwrap_or_default();
        Ok(Self {
            current: table.clone(),
            persistable: table,
        })
    }

    fn next(&self, level: i32) -> u64 {
        self.current.get(&level).copied().unwrap_or(0)
    }

    fn delivered(&mut self, level: i32, next: u64) {
        self.current.insert(level, next);
    }

    /// At a clean stop, once this shard's logs have flushed: writes the current progress. A timer
    /// of another shard may still deliver after this; the file is then behind, which only
    /// repeats those deliveries.
    pub fn persist_current(&mut self, store_root: &Path) -> Result<(), String> {
        self.persistable = self.current.clone();
        self.persist(store_root)
    }

    /// Writes what the previous call set aside, then sets aside the current progress.
    pub fn persist(&mut self, store_root: &Path) -> Result<(), String> {
        let file = DelayOffsetFile {
            offset_table: self.persistable.clone(),
        };
        rocketcore_shards::persist::save_json(&progress_path(store_root), &file)
            .map_err(|e| e.to_string())?;
        self.persistable = self.current.clone();
        Ok(())
    }
}

/// Starts the timers of the levels whose queue lives on this shard.
pub fn start_timers(ctx: &Rc<ShardCtx>) {
    let levels = ctx.shared.cfg.message_delay_level_ms.len() as i32;
    for level in 1..=levels {
        match ctx.shared.log_of(SCHEDULE_TOPIC, level - 1) {
            Ok(log_id) if ctx.shared.owner_shard(log_id) == ctx.shard.id() => {
                spawn(run_level(ctx.clone(), log_id, level));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(level, error = %e, "delay level has no queue; its messages will wait")
            }
        }
    }
}

async fn run_level(ctx: Rc<ShardCtx>, log_id: u16, level: i32) {
    let queue = level - 1;
    let Some(log) = ctx.log(log_id) else {
        tracing::error!(level, log_id, "delay level's log is not open here");
        return;
    };
    loop {
        let next = lock(&ctx.shared.delay_progress)
            .next(level)
            .max(log.min_offset(SCHEDULE_TOPIC, queue));
        let Some(entry) = log.entry(SCHEDULE_TOPIC, queue, next) else {
            sleep(POLL).await;
            continue;
        };
        let wait_ms = entry.tag_code - now_ms();
        if wait_ms > 0 {
            sleep(POLL.min(Duration::from_millis(wait_ms as u64))).await;
            continue;
        }
        match deliver(&ctx, &log, entry.phys, entry.size).await {
            Ok(()) => lock(&ctx.shared.delay_progress).delivered(level, next + 1),
            Err(Failure::Skip(why)) => {
                tracing::warn!(level, offset = next, why, "dropping a delayed message");
                lock(&ctx.shared.delay_progress).delivered(level, next + 1);
            }
            Err(Failure::Retry(why)) => {
                tracing::warn!(
                    level,
                    offset = next,
                    why,
                    "delayed delivery failed; will retry"
                );
                sleep(RETRY_AFTER_FAILURE).await;
            }
        }
    }
}

enum Failure {
    /// The record cannot be delivered, ever.
    Skip(String),
    /// It may succeed later (disk full, shutting down, a flush timeout).
    Retry(String),
}

async fn deliver(
    ctx: &Rc<ShardCtx>,
    log: &rocketcore_shards::Log,
    phys: u64,
    size: u32,
) -> Result<(), Failure> {
    let stored = log.read_record(phys, size).await.map_err(|e| match e {
        // Retention removed it: there is nothing left to deliver.
        rocketcore_shards::StoreError::NotFound(why) => Failure::Skip(why),
        e => Failure::Retry(e.to_string()),
    })?;
    let msg = delivery(&stored, ctx.shared.store_host())
        .ok_or_else(|| Failure::Skip("no REAL_TOPIC / REAL_QID".into()))?;
    match put_one(ctx, msg, true).await {
        Ok(_) => Ok(()),
        Err((_, e)) => Err(Failure::Retry(e)),
    }
}

/// Writes delivery progress every [`PERSIST_EVERY`] (on one shard).
pub async fn persist_loop(shared: Arc<BrokerShared>) {
    loop {
        sleep(PERSIST_EVERY).await;
        let root = shared.cfg.store_path_root_dir.clone();
        if let Err(e) = lock(&shared.delay_progress).persist(&root) {
            tracing::error!(error = %e, "cannot write delayOffset.json");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_to_vec(m: &MessageInput, queue_offset: i64, phys: i64, store_ts: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(m.encoded_len());
        m.encode_into(&mut out, queue_offset, phys, store_ts);
        out
    }

    fn input(topic: &str, queue_id: i32, props: &str) -> MessageInput {
        MessageInput {
            topic: topic.into(),
            queue_id,
            flag: 7,
            body: bytes::Bytes::from_static(b"payload"),
            properties: props.into(),
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.1:1234".parse().expect("addr"),
            store_host: "127.0.0.1:10911".parse().expect("addr"),
            reconsume_times: 2,
            prepared_transaction_offset: 0,
        }
    }

    #[test]
    fn a_delayed_message_waits_in_its_levels_queue_and_comes_back_as_sent() {
        let sent = "TAGS\u{1}A\u{2}DELAY\u{1}40\u{2}KEYS\u{1}k";
        let mut props = properties::parse(sent);
        let level = requested_level(&props, 18).expect("a delay");
        assert_eq!(level, 18, "levels past the last are clamped to it");
        let mut msg = input("Orders", 3, sent);
        redirect(&mut msg, &mut props, level);
        assert_eq!((&*msg.topic, msg.queue_id), (SCHEDULE_TOPIC, 17));
        let stored = encode_to_vec(&msg, 0, 0, 1_700_000_000_500);
        let back = delivery(&stored, msg.store_host).expect("deliverable");
        assert_eq!((&*back.topic, back.queue_id), ("Orders", 3));
        let p = properties::parse(&back.properties);
        assert_eq!(properties::get(&p, DELAY), None, "delivered without DELAY");
        assert_eq!(properties::get(&p, "TAGS"), Some("A"));
        assert_eq!(properties::get(&p, "KEYS"), Some("k"));
        assert_eq!(
            (back.flag, back.reconsume_times, back.born_timestamp),
            (7, 2, 1_700_000_000_000)
        );
        assert_eq!(&back.body[..], b"payload");
    }

    #[test]
    fn no_or_bad_delay_means_no_delay_and_a_record_without_a_destination_is_not_delivered() {
        for props in ["", "DELAY\u{1}0", "DELAY\u{1}-3", "DELAY\u{1}soon"] {
            assert_eq!(
                requested_level(&properties::parse(props), 18),
                None,
                "{props:?}"
            );
        }
        let stored = encode_to_vec(&input(SCHEDULE_TOPIC, 0, "DELAY\u{1}1"), 0, 0, 1);
        assert!(delivery(&stored, "127.0.0.1:1".parse().expect("addr")).is_none());
    }

    #[test]
    fn the_progress_file_holds_what_was_delivered_one_persist_earlier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = DelayProgress::load(dir.path()).expect("no file yet");
        assert_eq!(p.next(3), 0);
        p.delivered(3, 5);
        p.persist(dir.path()).expect("persist");
        assert_eq!(DelayProgress::load(dir.path()).expect("load").next(3), 0);
        p.delivered(3, 9);
        p.persist(dir.path()).expect("persist");
        assert_eq!(DelayProgress::load(dir.path()).expect("load").next(3), 5);
    }
}
