//! One log: a commitlog with the consume queues, key index and consumer offsets of the queues
//! placed on it. A shard owns one or more logs; nothing here is shared across cores.

mod config;
mod get;
mod open;

pub use config::{log_of_offset, LogConfig, StoreLimits, DEFAULT_DELAY_LEVELS_MS, SCHEDULE_TOPIC};
pub use get::{GetResult, GetStatus};

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::commitlog::{Appended, CommitLog, FlushMode};
use crate::consume_queue::{ConsumeQueue, CqEntry};
use crate::error::StoreError;
use crate::flush::Notify;
use crate::index::{IndexEntry, KeyIndex};
use crate::message::properties::{self, KEYS, TAGS, UNIQ_KEY};
use crate::message::record::{MessageInput, MAX_TOPIC_BYTES};
use crate::offsets::ConsumerOffsets;

pub type QueueKey = (String, i32);

/// How long a statvfs reading of the disk's used ratio is reused.
const FS_RATIO_TTL: Duration = Duration::from_secs(1);

/// The queues of one log. hashbrown rather than std: lookups by `(&str, i32)` without building
/// a `String` key, and a fast default hasher (foldhash). The key clone and SipHash per put were
/// ~4 % of the shard's CPU on single-message ASYNC puts.
pub(crate) type QueueMap = hashbrown::HashMap<QueueKey, ConsumeQueue>;

/// A borrowed [`QueueKey`] for lookups; hashes exactly as the owned key does.
#[derive(Hash)]
pub(crate) struct QueueRef<'a>(pub &'a str, pub i32);

impl hashbrown::Equivalent<QueueKey> for QueueRef<'_> {
    fn equivalent(&self, key: &QueueKey) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl From<&QueueRef<'_>> for QueueKey {
    fn from(r: &QueueRef<'_>) -> Self {
        (r.0.to_string(), r.1)
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How an append ended (RocketMQ's PutMessageStatus, reduced to what we produce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutStatus {
    Ok,
    /// Stored, but the flush covering it did not complete within syncFlushTimeout.
    FlushDiskTimeout,
}

#[derive(Debug, Clone)]
pub struct PutResult {
    pub status: PutStatus,
    /// (queue offset, physical offset, size) per message, in order.
    pub appended: Vec<(u64, u64, u32)>,
}

pub struct Log {
    pub(crate) cfg: LogConfig,
    pub(crate) commitlog: Rc<CommitLog>,
    pub(crate) queues: RefCell<QueueMap>,
    pub(crate) index: RefCell<KeyIndex>,
    pub(crate) offsets: RefCell<ConsumerOffsets>,
    /// Woken on every append, so parked pulls can re-check their queue.
    pub arrivals: Notify,
    pub(crate) commitlog_min: Cell<u64>,
    pub(crate) crashed_before: bool,
    pub(crate) stopped: Cell<bool>,
    /// The filesystem's used ratio and when it was read ([`crate::runtime::coarse_now`]):
    /// statvfs at most once a second, not once per append.
    pub(crate) fs_ratio: Cell<Option<(Duration, f64)>>,
    pub(crate) checkpointing: Cell<bool>,
    pub(crate) checkpoint_done: Notify,
}

impl Log {
    pub fn id(&self) -> u16 {
        self.cfg.log_id
    }

    pub fn crashed_before(&self) -> bool {
        self.crashed_before
    }

    pub fn commitlog(&self) -> &CommitLog {
        &self.commitlog
    }

    fn queue_path(&self, topic: &str, queue_id: i32) -> PathBuf {
        self.cfg
            .dir
            .join("consumequeue")
            .join(topic)
            .join(queue_id.to_string())
    }

    /// Appends messages of one queue as consecutive queue offsets (a batch is one call).
    /// With `wait_durable` under SYNC_FLUSH, returns only once they are durable (the O_DSYNC
    /// write covering them completed).
    pub async fn put(
        &self,
        msgs: &[MessageInput],
        wait_durable: bool,
    ) -> Result<PutResult, StoreError> {
        if self.stopped.get() {
            return Err(StoreError::ShuttingDown);
        }
        self.check_disk()?;
        let mut total = 0usize;
        for m in msgs {
            validate(m, &self.cfg.limits)?;
            total += m.encoded_len();
        }
        self.commitlog.reserve(total).await;
        let store_ts = now_ms();
        let mut appended = Vec::with_capacity(msgs.len());
        let mut last: Option<Appended> = None;
        {
            let mut queues = self.queues.borrow_mut();
            let mut index = self.index.borrow_mut();
            // A batch targets one queue: look it up once per run of messages for the same queue
            // (the key clone and hash per message showed up on batch sends).
            let mut run_queue: Option<(&str, i32, &mut ConsumeQueue)> = None;
            for m in msgs {
                if !matches!(&run_queue, Some((t, q, _)) if *t == &*m.topic && *q == m.queue_id) {
                    run_queue = None;
                }
                let cq = match run_queue.take() {
                    Some((_, _, cq)) => cq,
                    None => queues
                        .entry_ref(&QueueRef(&m.topic, m.queue_id))
                        .or_insert_with(|| {
                            ConsumeQueue::new(self.queue_path(&m.topic, m.queue_id))
                        }),
                };
                let qoff = cq.max_offset();
                let len = m.encoded_len();
                let a = self.commitlog.append(len, |mut dst, phys| {
                    m.encode_into(&mut dst, qoff as i64, phys as i64, store_ts);
                    debug_assert!(dst.is_empty(), "record encoded to a different length");
                })?;

                let [tags, uniq, keys] =
                    properties::find_each(&m.properties, [TAGS, UNIQ_KEY, KEYS]);
                cq.push(CqEntry {
                    phys: a.physical_offset,
                    size: len as u32,
                    tag_code: self.cfg.cq_tag_code(&m.topic, m.queue_id, store_ts, tags),
                });
                index_keys(
                    &mut index,
                    &m.topic,
                    uniq,
                    keys,
                    IndexEntry {
                        phys: a.physical_offset,
                        size: len as u32,
                    },
                );
                appended.push((qoff, a.physical_offset, len as u32));
                last = Some(a);
                run_queue = Some((&m.topic, m.queue_id, cq));
            }
        }
        self.arrivals.notify_all();
        if last.as_ref().is_some_and(|a| a.filled_buffer) {
            // A caller putting in a loop never waits under ASYNC_FLUSH; without a yield here
            // the writer would start only once the appends block on max_pending_bytes, and
            // filling and writing would take turns instead of overlapping.
            futures_lite::future::yield_now().await;
        }
        let mut status = PutStatus::Ok;
        if let (true, FlushMode::Sync, Some(a)) =
            (wait_durable, self.commitlog.config().flush_mode, last)
        {
            match self
                .commitlog
                .wait_durable(&a, self.cfg.sync_flush_timeout)
                .await
            {
                Ok(()) => {}
                Err(StoreError::FlushTimeout) => status = PutStatus::FlushDiskTimeout,
                Err(e) => return Err(e),
            }
        }
        Ok(PutResult { status, appended })
    }

    /// Reads `size` bytes of one stored record.
    pub async fn read_record(&self, phys: u64, size: u32) -> Result<Bytes, StoreError> {
        if phys < self.commitlog_min.get() || phys + size as u64 > self.commitlog.write_pos() {
            return Err(StoreError::NotFound(format!(
                "no record at physical offset {phys}"
            )));
        }
        self.commitlog.read(phys, size as usize).await
    }

    pub fn max_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.queues
            .borrow()
            .get(&QueueRef(topic, queue_id))
            .map(|q| q.max_offset())
            .unwrap_or(0)
    }

    pub fn min_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.queues
            .borrow()
            .get(&QueueRef(topic, queue_id))
            .map(|q| q.min_offset())
            .unwrap_or(0)
    }

    pub fn entry(&self, topic: &str, queue_id: i32, offset: u64) -> Option<CqEntry> {
        self.queues
            .borrow()
            .get(&QueueRef(topic, queue_id))
            .and_then(|q| q.get(offset))
    }

    pub fn queue_keys(&self) -> Vec<QueueKey> {
        self.queues.borrow().keys().cloned().collect()
    }

    pub fn commit_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.offsets
            .borrow_mut()
            .commit(group, topic, queue_id, offset);
    }

    pub fn query_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.offsets.borrow().query(group, topic, queue_id)
    }

    /// Store time of the record at `offset`, if it still exists.
    pub async fn store_time_at(&self, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
        let e = self.entry(topic, queue_id, offset)?;
        let rec = self.read_record(e.phys, e.size).await.ok()?;
        crate::message::record::store_timestamp_of(&rec)
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP as 4.9 answers it: the first entry stored at or after `ts`,
    /// else the nearer neighbour; 0 for an empty queue.
    pub async fn search_offset_by_time(&self, topic: &str, queue_id: i32, ts: i64) -> u64 {
        let (mut lo, mut hi) = (
            self.min_offset(topic, queue_id),
            self.max_offset(topic, queue_id),
        );
        if lo >= hi {
            return 0;
        }
        let max = hi;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.store_time_at(topic, queue_id, mid).await {
                Some(t) if t < ts => lo = mid + 1,
                Some(_) => hi = mid,
                None => lo = mid + 1,
            }
        }
        lo.min(max - 1).max(self.min_offset(topic, queue_id))
    }

    /// Records whose KEYS or UNIQ_KEY equal `key`, newest first, at most `max`.
    pub async fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Vec<Bytes> {
        let candidates = self
            .index
            .borrow()
            .candidates(topic, key, self.commitlog_min.get());
        let mut out = Vec::new();
        for c in candidates {
            if out.len() >= max {
                break;
            }
            let Ok(rec) = self.read_record(c.phys, c.size).await else {
                continue;
            };
            let Some(r) = crate::message::record::decode(&rec) else {
                continue;
            };
            if r.topic != topic || r.store_timestamp < begin_ms || r.store_timestamp > end_ms {
                continue;
            }
            let props = properties::parse(&r.properties);
            let matches = properties::get(&props, UNIQ_KEY) == Some(key)
                || properties::get(&props, KEYS).is_some_and(|ks| ks.split(' ').any(|k| k == key));
            if matches {
                out.push(rec);
            }
        }
        out
    }

    /// Forgets a deleted topic's queues and offsets. Waits out a checkpoint in flight, which
    /// could otherwise append the queues' entries to files after they are removed.
    pub async fn remove_topic(&self, topic: &str) {
        while self.checkpointing.get() {
            self.checkpoint_done.notified().await;
        }
        self.queues.borrow_mut().retain(|(t, _), _| t != topic);
        self.offsets.borrow_mut().remove_topic(topic);
        let _ = std::fs::remove_dir_all(self.cfg.dir.join("consumequeue").join(topic));
    }

    /// The groups with a committed offset on `topic` in this log.
    pub fn offset_groups_of_topic(&self, topic: &str) -> Vec<String> {
        self.offsets.borrow().groups_of_topic(topic)
    }

    /// The topics `group` has committed offsets on in this log.
    pub fn offset_topics_of_group(&self, group: &str) -> Vec<String> {
        self.offsets.borrow().topics_of_group(group)
    }

    /// Copies `src`'s committed offsets on `topic` in this log to `dest`.
    pub fn clone_group_offsets(&self, src: &str, dest: &str, topic: &str) {
        self.offsets.borrow_mut().clone_group(src, dest, topic);
    }

    /// Forgets every offset `group` committed in this log.
    pub fn remove_group_offsets(&self, group: &str) {
        self.offsets.borrow_mut().remove_group(group);
    }

    /// Physical offset of the oldest record still kept: where the oldest segment starts.
    pub fn min_phys(&self) -> u64 {
        self.commitlog_min.get()
    }

    /// Bytes the store occupies by its own accounting (preallocated segments count in full):
    /// every segment from the oldest kept one to the one being written.
    pub fn used_bytes(&self) -> u64 {
        let cl = self.commitlog.config();
        let writing = crate::commitlog::segment::segment_start(cl, self.commitlog.write_pos());
        let oldest = self.commitlog_min.get().min(writing);
        (writing - oldest) + self.cfg.segment_bytes
    }

    pub fn disk_used_ratio(&self) -> f64 {
        match self.cfg.limits.disk_capacity_bytes {
            Some(cap) if cap > 0 => self.used_bytes() as f64 / cap as f64,
            // Checked on every put: a coarse clock (a memory read, no TSC read) is enough for a
            // one-second cache, and the precise one was ~2 % of a shard's CPU on ASYNC puts.
            _ => {
                let now = crate::runtime::coarse_now();
                match self.fs_ratio.get() {
                    Some((at, r)) if now.saturating_sub(at) < FS_RATIO_TTL => r,
                    _ => {
                        let r = filesystem_used_ratio(&self.cfg.dir).unwrap_or(0.0);
                        self.fs_ratio.set(Some((now, r)));
                        r
                    }
                }
            }
        }
    }

    fn check_disk(&self) -> Result<(), StoreError> {
        let ratio = self.disk_used_ratio();
        let limit = self.cfg.limits.disk_max_used_space_ratio;
        if ratio * 100.0 > limit as f64 {
            return Err(StoreError::DiskFull {
                used_ratio: ratio * 100.0,
                limit_percent: limit,
            });
        }
        Ok(())
    }

    /// Writes consume queues, index and offsets, then a checkpoint that says how far they go.
    /// The file I/O and fsyncs run on a helper thread so appends never wait behind them; one
    /// checkpoint runs at a time.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        while self.checkpointing.get() {
            self.checkpoint_done.notified().await;
        }
        self.checkpointing.set(true);
        let result = self.checkpoint_now().await;
        self.checkpointing.set(false);
        self.checkpoint_done.notify_all();
        result
    }

    async fn checkpoint_now(&self) -> Result<(), StoreError> {
        let cp = open::Checkpoint {
            durable: self.commitlog.durability.durable(),
            dispatched: self.commitlog.write_pos(),
        };
        // The entries' bytes move to the checkpoint thread; what is marked persisted after it
        // (queue keys and counts) stays here. Cloning the bytes cost a copy of every entry.
        let mut queue_jobs = Vec::new();
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for (key, q) in self.queues.borrow().iter() {
            if let Some((bytes, count)) = q.unpersisted() {
                queue_jobs.push((key.clone(), count));
                files.push((q.path().to_path_buf(), bytes));
            }
        }
        let (index_file, index_count) = match self.index.borrow().unpersisted() {
            Some((path, bytes, count)) => (Some((path, bytes)), Some(count)),
            None => (None, None),
        };
        let offsets_job = self.offsets.borrow().snapshot()?;
        let dir = self.cfg.dir.clone();
        let offsets_file = offsets_job.as_ref().map(|(p, j, _)| (p.clone(), j.clone()));
        crate::runtime::blocking(move || -> Result<(), StoreError> {
            for (path, bytes) in &files {
                crate::persist::append_and_sync(path, bytes)?;
            }
            if let Some((path, bytes)) = &index_file {
                crate::persist::append_and_sync(path, bytes)?;
            }
            if let Some((path, json)) = &offsets_file {
                crate::persist::write_atomic(path, json)?;
            }
            cp.write(&dir)
        })
        .await
        .map_err(|e| StoreError::io("checkpoint thread", e))??;
        let mut queues = self.queues.borrow_mut();
        for (key, count) in queue_jobs {
            if let Some(q) = queues.get_mut(&key) {
                q.mark_persisted(count);
            }
        }
        if let Some(count) = index_count {
            self.index.borrow_mut().mark_persisted(count);
        }
        if let Some((_, _, version)) = offsets_job {
            self.offsets.borrow_mut().mark_persisted(version);
        }
        Ok(())
    }

    /// Periodic work: checkpoint every second, until stopped.
    pub async fn run_checkpointer(self: Rc<Self>) {
        while !self.stopped.get() {
            crate::runtime::sleep(Duration::from_millis(1000)).await;
            if let Err(e) = self.checkpoint().await {
                tracing::error!(log = self.id(), error = %e, "checkpoint failed");
            }
        }
    }

    /// Clean stop: flush everything, checkpoint, remove the abort marker.
    pub async fn stop(&self) -> Result<(), StoreError> {
        self.stopped.set(true);
        self.commitlog.stop().await;
        tracing::info!(
            dir = %self.cfg.dir.display(),
            "commitlog flush rounds since open:\n{}",
            self.commitlog.flush_stats().summary()
        );
        self.checkpoint().await?;
        open::remove_abort_marker(&self.cfg.dir)
    }
}

fn index_keys(
    index: &mut KeyIndex,
    topic: &str,
    uniq: Option<&str>,
    keys: Option<&str>,
    e: IndexEntry,
) {
    if let Some(u) = uniq {
        index.add(topic, u, e);
    }
    if let Some(keys) = keys {
        for k in keys.split(' ').filter(|k| !k.is_empty()) {
            index.add(topic, k, e);
        }
    }
}

fn validate(m: &MessageInput, limits: &StoreLimits) -> Result<(), StoreError> {
    if m.topic.is_empty() || m.topic.len() > MAX_TOPIC_BYTES {
        return Err(StoreError::MessageIllegal(format!(
            "topic length {} is outside 1..=127 bytes",
            m.topic.len()
        )));
    }
    if m.body.len() > limits.max_message_size {
        return Err(StoreError::MessageIllegal(format!(
            "body of {} bytes exceeds maxMessageSize {}",
            m.body.len(),
            limits.max_message_size
        )));
    }
    if m.properties.len() > properties::MAX_PROPERTIES_BYTES {
        return Err(StoreError::MessageIllegal(format!(
            "properties of {} bytes exceed 32767",
            m.properties.len()
        )));
    }
    Ok(())
}

fn filesystem_used_ratio(dir: &std::path::Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 || s.f_blocks == 0 {
        return None;
    }
    // As RocketMQ computes it (File.getFreeSpace): blocks reserved for root count as free.
    Some(1.0 - s.f_bfree as f64 / s.f_blocks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_queue_key_finds_the_owned_one_and_inserts_it() {
        let mut m: hashbrown::HashMap<QueueKey, u32> = hashbrown::HashMap::new();
        for (i, t) in ["A", "TopicTest", "%RETRY%g", ""].iter().enumerate() {
            for q in [0, 1, 7, -1] {
                *m.entry_ref(&QueueRef(t, q)).or_insert(0) += i as u32 + 1;
            }
        }
        assert_eq!(m.len(), 16);
        assert_eq!(m.get(&QueueRef("TopicTest", 7)), Some(&2));
        assert_eq!(m.get(&("TopicTest".to_string(), 7)), Some(&2));
        assert_eq!(m.get(&QueueRef("TopicTest", 8)), None);
        assert_eq!(m.get(&QueueRef("TopicTes", 7)), None);
        *m.entry_ref(&QueueRef("A", 0)).or_insert(0) += 10;
        assert_eq!(
            m.get(&("A".to_string(), 0)),
            Some(&11),
            "no second entry for the same key"
        );
    }
}
