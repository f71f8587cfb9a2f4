//! Transactional messages, as RocketMQ 4.x keeps them (§3.3, §6).
//!
//! A producer's prepared ("half") message is not stored in its topic: it waits in
//! `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with REAL_TOPIC / REAL_QID, invisible to consumers. When
//! the producer ends the transaction (END_TRANSACTION), a commit puts the message to its real
//! topic and queue; a commit or a rollback then writes an op message to
//! `RMQ_SYS_TRANS_OP_HALF_TOPIC` (tag `d`, body the half message's queue offset) so the half
//! message counts as resolved.
//!
//! A checker, on the shard that owns the half queue, walks it every `transactionCheckInterval`.
//! A half message still unresolved after `transactionTimeOut` (or its
//! CHECK_IMMUNITY_TIME_IN_SECONDS) is put back at the end of the queue with
//! TRANSACTION_CHECK_TIMES + 1 and a producer of its group is asked for the outcome
//! (CHECK_TRANSACTION_STATE, oneway); the producer answers with END_TRANSACTION for the copy.
//! After `transactionCheckMax` checks it is moved to `TRANS_CHECK_MAX_TIME_TOPIC` instead.
//! Progress is the committed offset of group CID_RMQ_SYS_TRANS on the half queue, persisted with
//! the log's consumer offsets; the resolved set is rebuilt from the op queue at start.
//!
//! Guarantees: a half message is never delivered unless its producer committed it (a rollback
//! or a producer that never answers delivers nothing); a commit reaches consumers at least once.
//! A second END_TRANSACTION for an offset already resolved does nothing.

use std::collections::BTreeSet;
use std::rc::Rc;

use rocketcore_shards::message::properties::{self, TAGS, TRAN_MSG, UNIQ_KEY};
use rocketcore_shards::message::record::{decode, MessageInput, StoredRecord};
use rocketcore_shards::runtime::{sleep, spawn};
use rocketcore_shards::store::now_ms;
use rocketcore_shards::Log;

use super::queue_ops::{put_one, QueueOp, QueueReply};
use super::schedule::{REAL_QID, REAL_TOPIC};
use super::{lock, ShardCtx};
use crate::remoting::codes::request as rq;
use crate::remoting::RemotingCommand;

pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The group whose offset on the half queue is the checker's progress.
pub const CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
pub const PGROUP: &str = "PGROUP";
const CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
const CHECK_IMMUNITY_SECS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
const REMOVE_TAG: &str = "d";

/// sysFlag transaction types.
pub const TYPE_MASK: i32 = 0x0C;
pub const TYPE_PREPARED: i32 = 0x04;
pub const TYPE_COMMIT: i32 = 0x08;
pub const TYPE_ROLLBACK: i32 = 0x0C;

/// Half-queue offsets whose transaction has ended (committed, rolled back or discarded).
#[derive(Debug, Default)]
pub struct Resolved {
    offsets: BTreeSet<u64>,
}

impl Resolved {
    pub fn contains(&self, half_offset: u64) -> bool {
        self.offsets.contains(&half_offset)
    }

    /// Marks an offset resolved (or being resolved); false if it already was, so of two
    /// concurrent answers for one half message only one goes ahead.
    pub fn insert(&mut self, half_offset: u64) -> bool {
        self.offsets.insert(half_offset)
    }

    /// Takes back a claim whose resolution failed.
    pub fn remove(&mut self, half_offset: u64) {
        self.offsets.remove(&half_offset);
    }

    /// Forgets offsets below the checker's progress: it never looks at them again.
    fn prune_below(&mut self, next: u64) {
        self.offsets = self.offsets.split_off(&next);
    }
}

/// Whether a send is a transaction's prepared message (TRAN_MSG=true, as RocketMQ decides, or
/// the prepared type in sysFlag).
pub fn is_prepared(props: &[(String, String)], sys_flag: i32) -> bool {
    properties::get(props, TRAN_MSG) == Some("true") || sys_flag & TYPE_MASK == TYPE_PREPARED
}

/// Rewrites a prepared message into its half message: queue 0 of the half topic, its
/// destination remembered in REAL_TOPIC / REAL_QID, transaction type cleared so the store
/// indexes it like any message.
pub fn prepare(msg: &mut MessageInput, props: &mut Vec<(String, String)>) {
    properties::set(props, REAL_TOPIC, &msg.topic);
    properties::set(props, REAL_QID, &msg.queue_id.to_string());
    msg.topic = HALF_TOPIC.into();
    msg.queue_id = 0;
    msg.sys_flag &= !TYPE_MASK;
    msg.properties = properties::encode(props).into();
}

/// The message a committed half message becomes: its real topic and queue, REAL_TOPIC,
/// REAL_QID and TRAN_MSG removed, commit type, and the half message's offset as
/// preparedTransactionOffset. `None` if the record does not say where it goes.
pub fn committed(half: &StoredRecord, store_host: std::net::SocketAddr) -> Option<MessageInput> {
    let mut props = properties::parse(&half.properties);
    let topic = properties::get(&props, REAL_TOPIC)?.to_string();
    let queue_id: i32 = properties::get(&props, REAL_QID)?.parse().ok()?;
    for k in [REAL_TOPIC, REAL_QID, TRAN_MSG] {
        properties::remove(&mut props, k);
    }
    Some(MessageInput {
        topic: topic.as_str().into(),
        queue_id,
        properties: properties::encode(&props).into(),
        sys_flag: (half.sys_flag & !TYPE_MASK) | TYPE_COMMIT,
        prepared_transaction_offset: half.physical_offset,
        ..MessageInput::again(half, store_host)
    })
}

/// The op message that marks a half message resolved.
fn op_message(half_offset: u64, store_host: std::net::SocketAddr) -> MessageInput {
    let props = vec![(TAGS.to_string(), REMOVE_TAG.to_string())];
    MessageInput {
        topic: OP_TOPIC.into(),
        queue_id: 0,
        flag: 0,
        body: half_offset.to_string().into_bytes().into(),
        properties: properties::encode(&props).into(),
        sys_flag: 0,
        born_timestamp: now_ms(),
        born_host: store_host,
        store_host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// The half offset an op message resolves; `None` for anything else.
fn resolved_by(op: &StoredRecord) -> Option<u64> {
    let props = properties::parse(&op.properties);
    if properties::get(&props, TAGS) != Some(REMOVE_TAG) {
        return None;
    }
    std::str::from_utf8(&op.body).ok()?.trim().parse().ok()
}

/// Resolves `half_offset`: claims it, runs `first` (the commit's put, or nothing), then writes
/// the op message. Returns false if it was already resolved or being resolved; on an error the
/// claim is taken back so a later answer or check can try again.
pub async fn resolve<F>(
    ctx: &Rc<ShardCtx>,
    half_offset: u64,
    first: F,
) -> Result<bool, (i32, String)>
where
    F: std::future::Future<Output = Result<(), (i32, String)>>,
{
    if !lock(&ctx.shared.transactions).insert(half_offset) {
        return Ok(false);
    }
    let op = op_message(half_offset, ctx.shared.store_host());
    let done = match first.await {
        Ok(()) => put_one(ctx, op, true).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Ok(true),
        Err(e) => {
            lock(&ctx.shared.transactions).remove(half_offset);
            Err(e)
        }
    }
}

/// Starts the checker if the half queue lives on this shard.
pub fn start_checker(ctx: &Rc<ShardCtx>) {
    match ctx.shared.log_of(HALF_TOPIC, 0) {
        Ok(log_id) if ctx.shared.owner_shard(log_id) == ctx.shard.id() => {
            spawn(run_checker(ctx.clone(), log_id));
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "the transaction half queue has no log; half messages will not be checked")
        }
    }
}

async fn run_checker(ctx: Rc<ShardCtx>, log_id: u16) {
    let Some(log) = ctx.log(log_id) else {
        tracing::error!(log_id, "the half queue's log is not open here");
        return;
    };
    load_resolved(&ctx).await;
    loop {
        sleep(ctx.shared.cfg.transaction_check_interval).await;
        check_once(&ctx, &log).await;
    }
}

/// Rebuilds the resolved set from the op queue, wherever it lives.
async fn load_resolved(ctx: &Rc<ShardCtx>) {
    let Ok(op_log) = ctx.shared.log_of(OP_TOPIC, 0) else {
        return;
    };
    let op = || QueueOp::ReadQueue {
        topic: OP_TOPIC.to_string(),
        queue_id: 0,
    };
    match super::queue_ops::execute(ctx, op_log, op()).await {
        QueueReply::Records(records) => {
            let mut r = lock(&ctx.shared.transactions);
            for rec in records.iter().filter_map(|b| decode(b)) {
                if let Some(half) = resolved_by(&rec) {
                    r.insert(half);
                }
            }
        }
        other => tracing::error!(reply = ?other, "cannot read the transaction op queue"),
    }
}

/// One walk of the half queue from the checker's progress.
async fn check_once(ctx: &Rc<ShardCtx>, log: &Log) {
    let cfg = &ctx.shared.cfg;
    let start_ms = now_ms();
    let mut next = log
        .query_offset(CHECK_GROUP, HALF_TOPIC, 0)
        .map(|o| o.max(0) as u64)
        .unwrap_or(0)
        .max(log.min_offset(HALF_TOPIC, 0));
    let end = log.max_offset(HALF_TOPIC, 0);
    while next < end {
        if lock(&ctx.shared.transactions).contains(next) {
            next += 1;
            continue;
        }
        let Some(entry) = log.entry(HALF_TOPIC, 0, next) else {
            break;
        };
        let half = match log.read_record(entry.phys, entry.size).await {
            Ok(b) => b,
            Err(rocketcore_shards::StoreError::NotFound(_)) => {
                next += 1; // removed by retention: nothing left to check
                continue;
            }
            Err(e) => {
                tracing::warn!(offset = next, error = %e, "cannot read a half message; will retry");
                break;
            }
        };
        let Some(rec) = decode(&half) else {
            next += 1;
            continue;
        };
        if rec.store_timestamp >= start_ms {
            break; // put back during this walk
        }
        let mut props = properties::parse(&rec.properties);
        let checks: u32 = properties::get(&props, CHECK_TIMES)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if checks >= cfg.transaction_check_max {
            if discard(ctx, &rec).await.is_err() {
                break;
            }
            next += 1;
            continue;
        }
        let immunity_ms = properties::get(&props, CHECK_IMMUNITY_SECS)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|s| *s >= 0)
            .map(|s| s * 1000)
            .unwrap_or(cfg.transaction_timeout.as_millis() as i64);
        if now_ms() - rec.born_timestamp < immunity_ms {
            break; // later half messages are younger still
        }
        properties::set(&mut props, CHECK_TIMES, &(checks + 1).to_string());
        if put_back_and_ask(ctx, &rec, &props).await.is_err() {
            break;
        }
        next += 1;
    }
    log.commit_offset(CHECK_GROUP, HALF_TOPIC, 0, next as i64);
    lock(&ctx.shared.transactions).prune_below(next);
}

/// Moves a half message checked too often to TRANS_CHECK_MAX_TIME_TOPIC and resolves it.
async fn discard(ctx: &Rc<ShardCtx>, rec: &StoredRecord) -> Result<(), ()> {
    let mut msg = MessageInput::again(rec, ctx.shared.store_host());
    msg.topic = CHECK_MAX_TIME_TOPIC.into();
    msg.queue_id = 0;
    let offset = rec.queue_offset.max(0) as u64;
    let moved = async { put_one(ctx, msg, true).await.map(|_| ()) };
    match resolve(ctx, offset, moved).await {
        Ok(_) => {
            tracing::warn!(
                offset,
                "half message checked too often; moved to {CHECK_MAX_TIME_TOPIC}"
            );
            Ok(())
        }
        Err((_, e)) => {
            tracing::warn!(offset, error = %e, "cannot discard a half message; will retry");
            Err(())
        }
    }
}

/// Appends a copy of the half message (with its new check count) to the half queue and asks a
/// producer of its group about the copy.
async fn put_back_and_ask(
    ctx: &Rc<ShardCtx>,
    rec: &StoredRecord,
    props: &[(String, String)],
) -> Result<(), ()> {
    let store_host = ctx.shared.store_host();
    let mut copy = MessageInput::again(rec, store_host);
    copy.properties = properties::encode(props).into();
    let put = match put_one(ctx, copy.clone(), true).await {
        Ok(p) => p,
        Err((_, e)) => {
            tracing::warn!(error = %e, "cannot put back a half message; will retry");
            return Err(());
        }
    };
    let Some(&(queue_offset, phys, _)) = put.appended.first() else {
        return Err(());
    };
    let group = properties::get(props, PGROUP).unwrap_or_default();
    let uniq = properties::get(props, UNIQ_KEY).unwrap_or_default();
    // The producer sees the message as it will be delivered: its real topic and queue.
    let mut shown = copy;
    if let Some(t) = properties::get(props, REAL_TOPIC) {
        shown.topic = t.into();
    }
    if let Some(q) = properties::get(props, REAL_QID).and_then(|q| q.parse().ok()) {
        shown.queue_id = q;
    }
    let mut body = Vec::with_capacity(shown.encoded_len());
    shown.encode_into(&mut body, queue_offset as i64, phys as i64, now_ms());
    let mut offset_msg_id = String::new();
    super::handlers::push_offset_msg_id(&mut offset_msg_id, store_host, phys);
    let cmd = RemotingCommand::request(rq::CHECK_TRANSACTION_STATE, 0)
        .with_field("tranStateTableOffset", queue_offset)
        .with_field("commitLogOffset", phys)
        .with_field("msgId", uniq)
        .with_field("transactionId", uniq)
        .with_field("offsetMsgId", offset_msg_id)
        .with_body(body);
    if !lock(&ctx.shared.consumers).send_oneway_to_a_producer(group, &cmd) {
        tracing::warn!(
            group,
            "no producer of the group is online to check a transaction"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(m: &MessageInput, queue_offset: i64, phys: i64) -> StoredRecord {
        let mut out = Vec::with_capacity(m.encoded_len());
        m.encode_into(&mut out, queue_offset, phys, 1_700_000_000_500);
        decode(&out).expect("decodes")
    }

    fn sent(props: &str, sys_flag: i32) -> MessageInput {
        MessageInput {
            topic: "Orders".into(),
            queue_id: 3,
            flag: 7,
            body: bytes::Bytes::from_static(b"payload"),
            properties: props.into(),
            sys_flag,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.1:1234".parse().expect("addr"),
            store_host: "127.0.0.1:10911".parse().expect("addr"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    #[test]
    fn a_half_message_waits_in_the_half_queue_and_commits_back_to_its_topic() {
        let text = "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG\u{2}TAGS\u{1}A\u{2}UNIQ_KEY\u{1}U1";
        let mut props = properties::parse(text);
        let mut msg = sent(text, TYPE_PREPARED);
        assert!(is_prepared(&props, msg.sys_flag));
        prepare(&mut msg, &mut props);
        assert_eq!(
            (&*msg.topic, msg.queue_id, msg.sys_flag & TYPE_MASK),
            (HALF_TOPIC, 0, 0)
        );
        let half = stored(&msg, 5, 4096);
        let back = committed(&half, msg.store_host).expect("committable");
        assert_eq!((&*back.topic, back.queue_id), ("Orders", 3));
        assert_eq!(back.sys_flag & TYPE_MASK, TYPE_COMMIT);
        assert_eq!(back.prepared_transaction_offset, 4096);
        let p = properties::parse(&back.properties);
        for gone in [REAL_TOPIC, REAL_QID, TRAN_MSG] {
            assert_eq!(properties::get(&p, gone), None, "{gone}");
        }
        assert_eq!(properties::get(&p, PGROUP), Some("PG"));
        assert_eq!(properties::get(&p, UNIQ_KEY), Some("U1"));
        assert_eq!(&back.body[..], b"payload");
        assert_eq!(back.flag, 7);
    }

    #[test]
    fn only_transactional_sends_are_prepared_and_only_remove_ops_resolve() {
        assert!(!is_prepared(&properties::parse("TAGS\u{1}A"), 0));
        assert!(!is_prepared(
            &properties::parse("TRAN_MSG\u{1}false"),
            TYPE_COMMIT
        ));
        assert!(is_prepared(&[], TYPE_PREPARED));
        let host = "127.0.0.1:10911".parse().expect("addr");
        let op = stored(&op_message(42, host), 0, 0);
        assert_eq!(resolved_by(&op), Some(42));
        let mut other = op_message(42, host);
        other.properties = "TAGS\u{1}x".into();
        assert_eq!(resolved_by(&stored(&other, 0, 0)), None);
        let mut r = Resolved::default();
        assert!(r.insert(3) && r.insert(9) && !r.insert(3));
        r.prune_below(5);
        assert!(!r.contains(3) && r.contains(9));
    }
}
