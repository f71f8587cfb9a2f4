//! INVOKE_BROKER_TO_RESET_OFFSET (§3.10): `mqadmin resetOffsetByTime`, the operator's way to skip
//! a backlog or replay from a time while the group's consumers run.
//!
//! As RocketMQ 4.x does, the broker works out each write queue's new offset (the first message
//! stored at or after the time, or the end for -1; never forward unless forced) and tells every
//! online member of the group with a oneway RESET_CONSUMER_CLIENT_OFFSET. The members drop what
//! they hold, move to the new offsets and commit them. The broker does not commit them itself:
//! a member's in-flight commit could otherwise overwrite them in either order. With no member
//! online the answer is 206 CONSUMER_NOT_ONLINE, on which mqadmin falls back to writing the
//! offsets with UPDATE_CONSUMER_OFFSET.

use std::fmt::Write;
use std::rc::Rc;

use super::stats::{max_offset, push_queue_key, value, write_queue_nums};
use super::{required, required_int, Reject, Reply};
use crate::broker::queue_ops::{execute, QueueOp, QueueReply};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::{request as rq, response as rs};
use crate::remoting::command::parse_bool;
use crate::remoting::RemotingCommand;

/// The group's committed offset on a queue; `None` if it never committed one there.
async fn committed(
    ctx: &Rc<ShardCtx>,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>, Reject> {
    let log = ctx
        .shared
        .log_of(topic, queue_id)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    let op = QueueOp::QueryOffset {
        group: group.to_string(),
        topic: topic.to_string(),
        queue_id,
    };
    match execute(ctx, log, op).await {
        QueueReply::Offset(o) => Ok(o),
        QueueReply::NoOffset { .. } => Ok(None),
        QueueReply::Failed(e) => Err(Reject::new(rs::SYSTEM_ERROR, e)),
        other => Err(Reject::unexpected(other)),
    }
}

pub async fn reset_offset(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let topic = required(cmd, "topic")?;
    let group = required(cmd, "group")?;
    let timestamp = required_int(cmd, "timestamp")?;
    let force = cmd.field("isForce").is_some_and(parse_bool);
    let for_c = cmd.field("isC").is_some_and(parse_bool);
    let queues = write_queue_nums(ctx, topic).ok_or_else(|| {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("[reset-offset] reset offset failed, no topic in this broker. topic={topic}"),
        )
    })?;
    let mut table = Vec::with_capacity(queues.max(0) as usize);
    for q in 0..queues {
        let Some(current) = committed(ctx, group, topic, q).await? else {
            return Err(Reject::new(
                rs::SYSTEM_ERROR,
                format!("the consumer group <{group}> has no offset on {topic}:{q}"),
            ));
        };
        let target = if timestamp == -1 {
            max_offset(ctx, topic, q).await?
        } else {
            let op = QueueOp::SearchByTime {
                topic: topic.to_string(),
                queue_id: q,
                timestamp,
            };
            value(ctx, topic, q, op).await?
        }
        .max(0);
        table.push((
            q,
            if force || target < current {
                target
            } else {
                current
            },
        ));
    }
    let broker = &ctx.shared.cfg.broker_name;
    let body = offset_table_json(broker, topic, &table);
    let to_clients = if for_c {
        offset_list_for_c(broker, topic, &table)
    } else {
        body.clone()
    };
    let notice = RemotingCommand::request(rq::RESET_CONSUMER_CLIENT_OFFSET, 0)
        .with_field("topic", topic)
        .with_field("group", group)
        .with_field("timestamp", timestamp)
        .with_field("isForce", force)
        .with_body(to_clients.into_bytes());
    let told = lock(&ctx.shared.consumers).send_oneway_to_members(group, &notice);
    if told == 0 {
        return Err(Reject::new(
            rs::CONSUMER_NOT_ONLINE,
            format!(
                "Consumer not online, so can not reset offset, Group: {group} Topic: {topic} \
                 Timestamp: {timestamp}"
            ),
        ));
    }
    tracing::info!(
        group,
        topic,
        timestamp,
        force,
        members = told,
        "consumer offsets reset"
    );
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

/// ResetOffsetBody: `{"offsetTable":{queue:offset}}`, queue objects as keys (fastjson, §1.8).
fn offset_table_json(broker: &str, topic: &str, table: &[(i32, i64)]) -> String {
    let mut out = String::from("{\"offsetTable\":{");
    for (i, (q, offset)) in table.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_queue_key(&mut out, broker, topic, *q);
        let _ = write!(out, ":{offset}");
    }
    out.push_str("}}");
    out
}

/// ResetOffsetBodyForC, what C++ clients read: a list instead of a map.
fn offset_list_for_c(broker: &str, topic: &str, table: &[(i32, i64)]) -> String {
    let list: Vec<serde_json::Value> = table
        .iter()
        .map(|(q, offset)| {
            serde_json::json!({
                "brokerName": broker,
                "offset": offset,
                "queueId": q,
                "topic": topic,
            })
        })
        .collect();
    serde_json::json!({ "offsetTable": list }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_table_has_queue_objects_as_keys() {
        assert_eq!(
            offset_table_json("b", "T", &[(0, 5), (1, 7)]),
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:5,{"brokerName":"b","queueId":1,"topic":"T"}:7}}"#
        );
        let c: serde_json::Value =
            serde_json::from_str(&offset_list_for_c("b", "T", &[(1, 7)])).expect("json");
        assert_eq!(c["offsetTable"][0]["offset"], 7);
        assert_eq!(c["offsetTable"][0]["queueId"], 1);
    }
}
