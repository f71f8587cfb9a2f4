//! Opening a log: checkpoint, abort marker, consume-queue and index reload, commitlog recovery,
//! and re-dispatch of the commitlog tail the queues do not hold yet.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::{Log, LogConfig};
use crate::commitlog::segment::list;
use crate::commitlog::{CommitLog, CommitLogConfig, FlushMode};
use crate::consume_queue::{ConsumeQueue, CqEntry};
use crate::error::StoreError;
use crate::flush::Notify;
use crate::index::{IndexEntry, KeyIndex};
use crate::message::properties::{self, KEYS, TAGS, UNIQ_KEY};
use crate::offsets::ConsumerOffsets;
use crate::recovery::{recover_commitlog, RecoveredLog};

const CHECKPOINT_FILE: &str = "checkpoint";
const ABORT_FILE: &str = "abort";

/// How far the commitlog was durable, and how far queues and index were persisted.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub durable: u64,
    pub dispatched: u64,
}

impl Checkpoint {
    fn read(dir: &Path, base: u64) -> Result<Self, StoreError> {
        let path = dir.join(CHECKPOINT_FILE);
        Ok(crate::persist::load_json(&path)?.unwrap_or(Self {
            durable: base,
            dispatched: base,
        }))
    }

    pub fn write(&self, dir: &Path) -> Result<(), StoreError> {
        crate::persist::save_json(&dir.join(CHECKPOINT_FILE), self)
    }
}

pub fn remove_abort_marker(dir: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(dir.join(ABORT_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove abort marker", e)),
    }
}

fn load_queues(dir: &Path, keep_below: u64) -> Result<super::QueueMap, StoreError> {
    let root = dir.join("consumequeue");
    let mut out = super::QueueMap::new();
    let Ok(topics) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for t in topics.flatten() {
        let Some(topic) = t.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(qs) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for q in qs.flatten() {
            let Some(qid) = q.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            out.insert(
                (topic.clone(), qid),
                ConsumeQueue::load(q.path(), keep_below)?,
            );
        }
    }
    Ok(out)
}

impl Log {
    /// Opens (or creates) the log, recovering from a crash if the abort marker is present.
    pub async fn open(cfg: LogConfig) -> Result<Rc<Log>, StoreError> {
        let cl_dir = cfg.dir.join("commitlog");
        std::fs::create_dir_all(&cl_dir)
            .map_err(|e| StoreError::io(format!("mkdir {}", cl_dir.display()), e))?;
        let base = cfg.base_offset();
        let cp = Checkpoint::read(&cfg.dir, base)?;
        let crashed_before = cfg.dir.join(ABORT_FILE).exists();
        crate::persist::write_atomic(&cfg.dir.join(ABORT_FILE), b"")?;
        let dispatch_from = cp.dispatched.max(base);
        let mut queues = load_queues(&cfg.dir, dispatch_from)?;
        let mut index = KeyIndex::load(
            cfg.dir.join("index").join("entries"),
            dispatch_from,
            cfg.index_slots,
        )?;
        let cl_cfg = CommitLogConfig {
            dir: cl_dir.clone(),
            base_offset: base,
            segment_bytes: cfg.segment_bytes,
            flush_mode: cfg.flush_mode,
            flush_interval: cfg.flush_interval,
            flush_threshold_bytes: (cfg.max_pending_bytes / 4).max(64 * 1024),
            max_pending_bytes: cfg.max_pending_bytes,
            tail_cache_bytes: cfg.tail_cache_bytes,
            // Warming pays for SYNC_FLUSH rounds that would each commit extent metadata. Under
            // ASYNC_FLUSH that commit comes once per fdatasync interval, and the warmer's own
            // writes and fdatasyncs held the disk: store_bench ASYNC 1 KiB, 64 appenders
            // (2026-11-22), data writes in flight 70 % of the time and 743 MB/s with warming,
            // 93 % and 1118 MB/s without.
            warm_ahead_bytes: match cfg.flush_mode {
                FlushMode::Sync => cfg.warm_ahead_bytes,
                FlushMode::Async => 0,
            },
        };
        let mut redispatched = 0u64;
        let dir_for_paths = cfg.dir.clone();
        let RecoveredLog {
            end,
            tail_page,
            truncated,
        } = recover_commitlog(&cl_cfg, cp.durable.max(base), dispatch_from, |phys, rec| {
            let key = (rec.topic.clone(), rec.queue_id);
            let q = queues.entry(key).or_insert_with(|| {
                ConsumeQueue::new(
                    dir_for_paths
                        .join("consumequeue")
                        .join(&rec.topic)
                        .join(rec.queue_id.to_string()),
                )
            });
            if q.max_offset() != rec.queue_offset as u64 {
                tracing::warn!(topic = %rec.topic, queue = rec.queue_id, expected = q.max_offset(),
                        found = rec.queue_offset, "queue offset gap while re-dispatching");
            }
            let size = rec.total_size as u32;
            let [tags, uniq, keys] = properties::find_each(&rec.properties, [TAGS, UNIQ_KEY, KEYS]);
            q.push(CqEntry {
                phys,
                size,
                tag_code: cfg.cq_tag_code(&rec.topic, rec.queue_id, rec.store_timestamp, tags),
            });
            super::index_keys(
                &mut index,
                &rec.topic,
                uniq,
                keys,
                IndexEntry { phys, size },
            );
            redispatched += 1;
        })
        .await?;
        for q in queues.values_mut() {
            q.truncate_from_phys(end)?;
        }
        index.truncate_from_phys(end)?;
        if let Some((at, why)) = truncated {
            tracing::warn!(
                log = cfg.log_id,
                offset = at,
                reason = why,
                "truncated a torn commitlog tail"
            );
        }
        if crashed_before || redispatched > 0 {
            tracing::info!(
                log = cfg.log_id,
                crashed_before,
                redispatched,
                end,
                "log recovered"
            );
        }
        let segments = list(&cl_dir)?;
        let commitlog_min = segments.first().copied().unwrap_or(base);
        for q in queues.values_mut() {
            q.set_commitlog_min(commitlog_min);
        }
        let offsets = ConsumerOffsets::load(cfg.dir.join("consumerOffset.json"))?;
        let commitlog = CommitLog::new(cl_cfg, end, tail_page, cfg.faults.clone());
        if truncated.is_some() {
            // Rewrite the partial page now, so the torn bytes after `end` are zero on disk.
            commitlog.flush_once().await?;
        }
        let log = Rc::new(Log {
            cfg,
            commitlog,
            queues: RefCell::new(queues),
            index: RefCell::new(index),
            offsets: RefCell::new(offsets),
            arrivals: Notify::default(),
            commitlog_min: Cell::new(commitlog_min),
            crashed_before,
            stopped: Cell::new(false),
            fs_ratio: Cell::new(None),
            checkpointing: Cell::new(false),
            checkpoint_done: Notify::default(),
        });
        log.checkpoint().await?;
        log.commitlog.start_tasks();
        crate::runtime::spawn(log.clone().run_checkpointer());
        Ok(log)
    }
}
