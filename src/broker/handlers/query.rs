//! Message lookups (§3.8): by offset message id (VIEW_MESSAGE_BY_ID, `mqadmin queryMsgById`) and
//! by key or UNIQ_KEY (QUERY_MESSAGE, `mqadmin queryMsgByKey` / `queryMsgByUniqueKey`), over the
//! logs' key indexes.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::{required, required_int, Reject, Reply};
use crate::broker::queue_ops::{execute, QueueOp, QueueReply};
use crate::broker::ShardCtx;
use crate::remoting::codes::response as rs;
use crate::remoting::RemotingCommand;

/// The ext field a client sets for a UNIQ_KEY lookup (Java's `MixAll.UNIQUE_MSG_QUERY_FLAG`).
const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";
/// Java's `defaultQueryMaxNum`: a UNIQ_KEY lookup returns at most this many records.
const UNIQUE_KEY_MAX: usize = 32;
/// Java's `maxMsgsNumBatch`: the most records one QUERY_MESSAGE returns.
const QUERY_MAX: usize = 64;

/// VIEW_MESSAGE_BY_ID: the record at the physical offset of an offset message id. The log id
/// sits in the offset's top 16 bits, so the record is read on the shard that owns that log.
pub async fn view_by_id(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let offset = required_int(cmd, "offset")?;
    let phys = u64::try_from(offset).map_err(|_| {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("no message at offset {offset}: offsets are not negative"),
        )
    })?;
    let rec = record_at(ctx, phys).await?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(rec))
}

/// The whole record starting at physical offset `phys`, read on the shard that owns its log (the
/// log id sits in the offset's top 16 bits).
pub async fn record_at(ctx: &Rc<ShardCtx>, phys: u64) -> Result<Bytes, Reject> {
    let log_id = rocketcore_shards::store::log_of_offset(phys);
    match execute(ctx, log_id, QueueOp::ReadAt { phys }).await {
        QueueReply::Record(rec) => Ok(rec),
        QueueReply::Failed(e) => Err(Reject::new(
            rs::SYSTEM_ERROR,
            format!("no message at offset {phys}: {e}"),
        )),
        other => Err(Reject::unexpected(other)),
    }
}

/// The physical offset an offset message id names: its last 16 hex digits (after the store
/// host's address and port, 32 digits in all for IPv4, 56 for IPv6).
pub fn phys_of_offset_msg_id(id: &str) -> Option<u64> {
    let id = id.trim();
    if !matches!(id.len(), 32 | 56) || !id.is_ascii() {
        return None;
    }
    u64::from_str_radix(&id[id.len() - 16..], 16).ok()
}

/// QUERY_MESSAGE: the records of `topic` whose KEYS or UNIQ_KEY hold `key`, stored between
/// `beginTimestamp` and `endTimestamp`, from every log holding a queue of the topic, each
/// log's newest first. None found is QUERY_NOT_FOUND, which clients treat as "no message".
pub async fn by_key(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let topic = required(cmd, "topic")?.to_string();
    let key = required(cmd, "key")?.to_string();
    let max_num = required_int(cmd, "maxNum")?;
    let begin_ms = required_int(cmd, "beginTimestamp")?;
    let end_ms = required_int(cmd, "endTimestamp")?;
    let max = if cmd.field(UNIQUE_KEY_QUERY) == Some("true") {
        UNIQUE_KEY_MAX
    } else {
        max_num.clamp(0, QUERY_MAX as i64) as usize
    };
    let mut found: Vec<Bytes> = Vec::new();
    for log_id in ctx.shared.logs_of_topic(&topic) {
        if found.len() >= max {
            break;
        }
        let op = QueueOp::QueryKey {
            topic: topic.clone(),
            key: key.clone(),
            max: max - found.len(),
            begin_ms,
            end_ms,
        };
        match execute(ctx, log_id, op).await {
            QueueReply::Records(records) => found.extend(records),
            QueueReply::Failed(e) => return Err(Reject::new(rs::SYSTEM_ERROR, e)),
            other => return Err(Reject::unexpected(other)),
        }
    }
    if found.is_empty() {
        return Err(Reject::new(
            rs::QUERY_NOT_FOUND,
            format!("no message of topic {topic} with key {key} in that time range"),
        ));
    }
    let mut body = BytesMut::with_capacity(found.iter().map(Bytes::len).sum());
    for rec in &found {
        body.extend_from_slice(rec);
    }
    // The index is updated as each record is appended, so it is current as of now; Java
    // reports its index file's last update, which clients only log.
    let last_phys = found
        .iter()
        .filter_map(|r| rocketcore_shards::message::record::decode(r))
        .map(|r| r.physical_offset)
        .max()
        .unwrap_or(0);
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS)
        .with_field(
            "indexLastUpdateTimestamp",
            rocketcore_shards::store::now_ms(),
        )
        .with_field("indexLastUpdatePhyoffset", last_phys)
        .with_body(body.freeze()))
}
