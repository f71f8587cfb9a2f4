//! Operations on one queue, executed on the shard that owns the queue's log. A request read on
//! another shard crosses the mesh as a typed operation (bodies as `Bytes`, never copied) and
//! its reply comes back the same way.

use std::rc::Rc;
use std::time::Duration;

use rocketcore_shards::message::record::{check, Check, MessageInput};
use rocketcore_shards::recovery::MAX_RECORD_BYTES;
use rocketcore_shards::runtime::{run_in, Lane};
use rocketcore_shards::{GetResult, GetStatus, Log, PutResult, StoreError};

use super::consumers::Subscription;
use super::ShardCtx;
use crate::remoting::codes::response as rs;

#[derive(Debug)]
pub enum QueueOp {
    Put {
        msgs: Vec<MessageInput>,
        wait: bool,
    },
    Pull(PullOp),
    CommitOffset {
        group: String,
        topic: String,
        queue_id: i32,
        offset: i64,
    },
    QueryOffset {
        group: String,
        topic: String,
        queue_id: i32,
    },
    MaxOffset {
        topic: String,
        queue_id: i32,
    },
    MinOffset {
        topic: String,
        queue_id: i32,
    },
    SearchByTime {
        topic: String,
        queue_id: i32,
        timestamp: i64,
    },
    EarliestTime {
        topic: String,
        queue_id: i32,
    },
    /// Store time of the record at a queue offset; 0 if it no longer exists.
    StoreTimeAt {
        topic: String,
        queue_id: i32,
        offset: u64,
    },
    /// One stored record by physical offset (VIEW_MESSAGE_BY_ID, CONSUMER_SEND_MSG_BACK).
    ReadAt {
        phys: u64,
    },
    /// Records of `topic` whose KEYS or UNIQ_KEY hold `key`, stored in `[begin_ms, end_ms]`,
    /// newest first, at most `max` (QUERY_MESSAGE).
    QueryKey {
        topic: String,
        key: String,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    },
    /// Every record of a queue, oldest first (the transaction op queue, read once at start).
    ReadQueue {
        topic: String,
        queue_id: i32,
    },
    /// An operation on every log of the receiving shard rather than on one queue's.
    Shard(ShardOp),
}

/// Operations on all of one shard's logs; [`execute_on_every_shard`] sends one to each shard.
#[derive(Debug)]
pub enum ShardOp {
    /// Forget a deleted topic's queues and offsets.
    RemoveTopic { topic: String },
    /// Store figures (GET_BROKER_RUNTIME_INFO).
    LogStats,
    /// Forget a deleted subscription group's offsets.
    RemoveGroupOffsets { group: String },
    /// The groups with offsets on `topic`.
    OffsetGroupsOfTopic { topic: String },
    /// The topics `group` has offsets on.
    OffsetTopicsOfGroup { group: String },
    /// Copy `src`'s offsets on `topic` to `dest`.
    CloneGroupOffsets {
        src: String,
        dest: String,
        topic: String,
    },
}

/// Store figures of one shard's logs, combined.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LogStats {
    pub logs: usize,
    /// Smallest physical offset still kept, and the largest written, over the logs.
    pub min_phys: Option<u64>,
    pub max_phys: u64,
    /// Store time of the oldest record kept, over the logs.
    pub earliest_store_ms: Option<i64>,
    /// The highest used ratio of the disks (or configured capacities) the logs are on.
    pub disk_used_ratio: f64,
}

impl LogStats {
    pub fn merge(self, o: LogStats) -> LogStats {
        fn min_of<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            }
        }
        LogStats {
            logs: self.logs + o.logs,
            min_phys: min_of(self.min_phys, o.min_phys),
            max_phys: self.max_phys.max(o.max_phys),
            earliest_store_ms: min_of(self.earliest_store_ms, o.earliest_store_ms),
            disk_used_ratio: self.disk_used_ratio.max(o.disk_used_ratio),
        }
    }
}

#[derive(Debug)]
pub struct PullOp {
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: u64,
    pub max_msgs: usize,
    pub commit_offset: Option<i64>,
    pub suspend: Option<Duration>,
    pub subscription: Option<Subscription>,
}

#[derive(Debug)]
pub enum QueueReply {
    Put(Result<PutResult, (i32, String)>),
    Get(GetResult),
    Offset(Option<i64>),
    /// QUERY_CONSUMER_OFFSET with no stored offset: (min offset, first entry still in memory).
    NoOffset {
        min: u64,
        first_in_memory: bool,
    },
    Value(i64),
    Record(bytes::Bytes),
    Records(Vec<bytes::Bytes>),
    LogStats(LogStats),
    Names(Vec<String>),
    Done,
    Failed(String),
}

pub struct MeshCall {
    pub log_id: u16,
    pub op: QueueOp,
    pub reply: async_channel::Sender<QueueReply>,
}

/// Runs `op` on the log's owner: here, or across the mesh.
pub async fn execute(ctx: &Rc<ShardCtx>, log_id: u16, op: QueueOp) -> QueueReply {
    let owner = ctx.shared.owner_shard(log_id);
    if owner == ctx.shard.id() {
        return execute_local(ctx, log_id, op).await;
    }
    let (tx, rx) = async_channel::bounded(1);
    if ctx
        .shard
        .send_to(
            owner,
            MeshCall {
                log_id,
                op,
                reply: tx,
            },
        )
        .await
        .is_err()
    {
        return QueueReply::Failed(format!("shard {owner} is not reachable"));
    }
    rx.recv()
        .await
        .unwrap_or_else(|_| QueueReply::Failed(format!("shard {owner} dropped the request")))
}

/// Runs an operation on every shard in turn (each shard's primary log id is its shard id, and
/// the per-shard operations act on all of that shard's logs). The replies in shard order, or
/// the first failure.
pub async fn execute_on_every_shard(
    ctx: &Rc<ShardCtx>,
    op: impl Fn() -> ShardOp,
) -> Result<Vec<QueueReply>, String> {
    let mut replies = Vec::with_capacity(ctx.shared.shards);
    for shard in 0..ctx.shared.shards {
        match execute(ctx, shard as u16, QueueOp::Shard(op())).await {
            QueueReply::Failed(e) => return Err(e),
            r => replies.push(r),
        }
    }
    Ok(replies)
}

/// Serves operations other shards send here.
pub fn serve_mesh(ctx: &Rc<ShardCtx>) {
    let c = ctx.clone();
    ctx.shard.serve(move |call: MeshCall| {
        let c = c.clone();
        rocketcore_shards::runtime::spawn(async move {
            let reply = execute_local(&c, call.log_id, call.op).await;
            let _ = call.reply.send(reply).await;
        });
    });
}

pub fn store_error_code(e: &StoreError) -> i32 {
    match e {
        StoreError::DiskFull { .. } | StoreError::ShuttingDown => rs::SERVICE_NOT_AVAILABLE,
        StoreError::MessageIllegal(_) | StoreError::RecordTooLarge { .. } => rs::MESSAGE_ILLEGAL,
        StoreError::FlushTimeout => rs::FLUSH_DISK_TIMEOUT,
        _ => rs::SYSTEM_ERROR,
    }
}

async fn execute_shard_op(ctx: &Rc<ShardCtx>, op: ShardOp) -> QueueReply {
    let logs: Vec<Rc<Log>> = ctx.logs.borrow().values().cloned().collect();
    match op {
        ShardOp::RemoveTopic { topic } => {
            for log in logs {
                log.remove_topic(&topic).await;
            }
            QueueReply::Done
        }
        ShardOp::RemoveGroupOffsets { group } => {
            for log in logs {
                log.remove_group_offsets(&group);
            }
            QueueReply::Done
        }
        ShardOp::LogStats => {
            let mut stats = LogStats::default();
            for log in logs {
                stats = stats.merge(log_stats(&log).await);
            }
            QueueReply::LogStats(stats)
        }
        ShardOp::OffsetGroupsOfTopic { topic } => QueueReply::Names(
            logs.iter()
                .flat_map(|log| log.offset_groups_of_topic(&topic))
                .collect(),
        ),
        ShardOp::OffsetTopicsOfGroup { group } => QueueReply::Names(
            logs.iter()
                .flat_map(|log| log.offset_topics_of_group(&group))
                .collect(),
        ),
        ShardOp::CloneGroupOffsets { src, dest, topic } => {
            for log in logs {
                log.clone_group_offsets(&src, &dest, &topic);
            }
            QueueReply::Done
        }
    }
}

async fn execute_local(ctx: &Rc<ShardCtx>, log_id: u16, op: QueueOp) -> QueueReply {
    let op = match op {
        QueueOp::Shard(op) => return execute_shard_op(ctx, op).await,
        op => op,
    };
    let Some(log) = ctx.log(log_id) else {
        return QueueReply::Failed(format!(
            "log {log_id} is not open on shard {}",
            ctx.shard.id()
        ));
    };
    debug_assert_eq!(
        ctx.shared.owner_shard(log_id),
        ctx.shard.id(),
        "queue op on a shard that does not own the log"
    );
    match op {
        // Appends and reads run in their own lanes, so a burst of pulls of old data gets only
        // its share of a busy shard and cannot starve appends (runtime::Lane).
        QueueOp::Put { msgs, wait } => {
            let put = async move { log.put(&msgs, wait).await };
            match run_in(Lane::Writes, put).await {
                Some(r) => QueueReply::Put(r.map_err(|e| (store_error_code(&e), e.to_string()))),
                None => QueueReply::Failed("the append task was cancelled".into()),
            }
        }
        QueueOp::Pull(p) => match run_in(Lane::Reads, async move { pull(&log, p).await }).await {
            Some(r) => QueueReply::Get(r),
            None => QueueReply::Failed("the pull task was cancelled".into()),
        },
        QueueOp::CommitOffset {
            group,
            topic,
            queue_id,
            offset,
        } => {
            log.commit_offset(&group, &topic, queue_id, offset);
            QueueReply::Done
        }
        QueueOp::QueryOffset {
            group,
            topic,
            queue_id,
        } => match log.query_offset(&group, &topic, queue_id) {
            Some(o) => QueueReply::Offset(Some(o)),
            None => {
                let min = log.min_offset(&topic, queue_id);
                let first_in_memory = match log.entry(&topic, queue_id, min) {
                    None => true,
                    Some(e) => {
                        log.commitlog().write_pos().saturating_sub(e.phys)
                            < in_memory_window_bytes()
                    }
                };
                QueueReply::NoOffset {
                    min,
                    first_in_memory,
                }
            }
        },
        QueueOp::MaxOffset { topic, queue_id } => {
            QueueReply::Value(log.max_offset(&topic, queue_id) as i64)
        }
        QueueOp::MinOffset { topic, queue_id } => {
            QueueReply::Value(log.min_offset(&topic, queue_id) as i64)
        }
        QueueOp::SearchByTime {
            topic,
            queue_id,
            timestamp,
        } => QueueReply::Value(log.search_offset_by_time(&topic, queue_id, timestamp).await as i64),
        QueueOp::Shard(op) => execute_shard_op(ctx, op).await,
        QueueOp::ReadAt { phys } => match read_at(&log, phys).await {
            Ok(b) => QueueReply::Record(b),
            Err(e) => QueueReply::Failed(e.to_string()),
        },
        QueueOp::QueryKey {
            topic,
            key,
            max,
            begin_ms,
            end_ms,
        } => {
            let query = async move { log.query_by_key(&topic, &key, max, begin_ms, end_ms).await };
            match run_in(Lane::Reads, query).await {
                Some(records) => QueueReply::Records(records),
                None => QueueReply::Failed("the lookup task was cancelled".into()),
            }
        }
        QueueOp::StoreTimeAt {
            topic,
            queue_id,
            offset,
        } => QueueReply::Value(
            log.store_time_at(&topic, queue_id, offset)
                .await
                .unwrap_or(0),
        ),
        QueueOp::ReadQueue { topic, queue_id } => {
            let read = async move { read_queue(&log, &topic, queue_id).await };
            match run_in(Lane::Reads, read).await {
                Some(Ok(records)) => QueueReply::Records(records),
                Some(Err(e)) => QueueReply::Failed(e.to_string()),
                None => QueueReply::Failed("the read task was cancelled".into()),
            }
        }
        QueueOp::EarliestTime { topic, queue_id } => {
            let min = log.min_offset(&topic, queue_id);
            QueueReply::Value(log.store_time_at(&topic, queue_id, min).await.unwrap_or(0))
        }
    }
}

/// The record starting at `phys`. The offset comes from a client (a message id), so the bytes
/// there must be a whole valid record naming that offset, not the middle of another one.
async fn read_at(log: &Log, phys: u64) -> Result<bytes::Bytes, StoreError> {
    let not_found = || StoreError::NotFound(format!("no record starts at physical offset {phys}"));
    let head = log.read_record(phys, 4).await?;
    let size = match head.get(..4) {
        Some(&[a, b, c, d]) => i32::from_be_bytes([a, b, c, d]),
        _ => return Err(not_found()),
    };
    if !(91..=MAX_RECORD_BYTES as i32).contains(&size) {
        return Err(not_found());
    }
    let rec = log.read_record(phys, size as u32).await?;
    match check(&rec, phys as i64) {
        Check::Record(_) => Ok(rec),
        _ => Err(not_found()),
    }
}

async fn log_stats(log: &Log) -> LogStats {
    let (min, max) = (log.min_phys(), log.commitlog().write_pos());
    let earliest_store_ms = if min < max {
        // The oldest segment starts with a record; a failed read only leaves the figure out.
        read_at(log, min)
            .await
            .ok()
            .and_then(|rec| rocketcore_shards::message::record::store_timestamp_of(&rec))
    } else {
        None
    };
    LogStats {
        logs: 1,
        min_phys: Some(min),
        max_phys: max,
        earliest_store_ms,
        disk_used_ratio: log.disk_used_ratio(),
    }
}

/// Every record still kept in a queue, oldest first.
async fn read_queue(
    log: &Log,
    topic: &str,
    queue_id: i32,
) -> Result<Vec<bytes::Bytes>, StoreError> {
    let mut out = Vec::new();
    for offset in log.min_offset(topic, queue_id)..log.max_offset(topic, queue_id) {
        let Some(e) = log.entry(topic, queue_id, offset) else {
            continue;
        };
        match log.read_record(e.phys, e.size).await {
            Ok(b) => out.push(b),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Puts one message to the log of its queue (placing the queue on first use).
pub async fn put_one(
    ctx: &Rc<ShardCtx>,
    msg: MessageInput,
    wait: bool,
) -> Result<PutResult, (i32, String)> {
    let log = ctx
        .shared
        .log_of(&msg.topic, msg.queue_id)
        .map_err(|e| (rs::SYSTEM_ERROR, e))?;
    let op = QueueOp::Put {
        msgs: vec![msg],
        wait,
    };
    match execute(ctx, log, op).await {
        QueueReply::Put(r) => r,
        QueueReply::Failed(e) => Err((rs::SYSTEM_ERROR, e)),
        other => Err((
            rs::SYSTEM_ERROR,
            format!("unexpected store reply {other:?}"),
        )),
    }
}

/// RocketMQ's "in memory" test: within 40 % of physical RAM behind the commitlog head.
fn in_memory_window_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages <= 0 || page <= 0 {
        return 1 << 30;
    }
    (pages as u64 * page as u64) / 10 * 4
}

/// A pull with long polling: parked until a message arrives past the offset or time runs out,
/// then answered with fresh offsets (§6.5).
async fn pull(log: &Log, p: PullOp) -> GetResult {
    if let Some(o) = p.commit_offset {
        log.commit_offset(&p.group, &p.topic, p.queue_id, o);
    }
    let sub = p.subscription;
    let sql = sub.as_ref().and_then(Subscription::sql_filter);
    let filter = move |code: i64| sub.as_ref().is_none_or(|s| s.matches(code));
    // SQL92 looks at each record's properties, after the tag stage; a pull whose records all
    // fail it answers "nothing matched" with the offset past them, as a tag miss does.
    let by_properties = |mut r: GetResult| {
        if let Some(f) = &sql {
            r.records.retain(|rec| {
                rocketcore_shards::message::record::properties_of(rec).is_some_and(|props| {
                    f.matches(|name| rocketcore_shards::message::properties::find(props, name))
                })
            });
            if r.status == GetStatus::Found && r.records.is_empty() {
                r.status = GetStatus::NoMatchedMessage;
            }
        }
        r
    };
    let deadline = p.suspend.map(|d| std::time::Instant::now() + d);
    loop {
        let arrival = log.arrivals.notified();
        let r = log
            .get(&p.topic, p.queue_id, p.offset, p.max_msgs, &filter)
            .await;
        let waiting = matches!(r.status, GetStatus::OffsetOverflowOne)
            || (r.status == GetStatus::NoMessageInQueue && p.offset == 0);
        let Some(deadline) = deadline.filter(|_| waiting) else {
            return by_properties(r);
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return by_properties(r);
        }
        if rocketcore_shards::runtime::timeout(left, arrival)
            .await
            .is_none()
        {
            let r = log
                .get(&p.topic, p.queue_id, p.offset, p.max_msgs, &filter)
                .await;
            return by_properties(r);
        }
    }
}
