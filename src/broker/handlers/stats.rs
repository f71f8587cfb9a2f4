//! Queue statistics for operators (§3.10): GET_TOPIC_STATS_INFO (`mqadmin topicStatus`: each
//! queue's min and max offsets) and GET_CONSUME_STATS (`mqadmin consumerProgress`: each queue's
//! broker offset against the group's committed offset, i.e. its backlog).
//!
//! Both bodies map message queues to values, and fastjson writes a `Map<MessageQueue, _>` with
//! the queue *objects* as keys (§1.8): `{{"brokerName":"b","queueId":0,"topic":"T"}:{…}}`. That is
//! not JSON, but it is what Java tools read, and what RocketMQ clients accept.

use std::fmt::Write;
use std::rc::Rc;

use super::{names_on_every_shard, required, Reject, Reply};
use crate::broker::queue_ops::{execute, QueueOp, QueueReply, ShardOp};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::response as rs;
use crate::remoting::command::parse_bool;
use crate::remoting::RemotingCommand;

/// A queue as fastjson writes it, fields in alphabetical order.
pub(super) fn push_queue_key(out: &mut String, broker: &str, topic: &str, queue_id: i32) {
    let _ = write!(
        out,
        "{{\"brokerName\":{},\"queueId\":{queue_id},\"topic\":{}}}",
        serde_json::Value::from(broker),
        serde_json::Value::from(topic)
    );
}

pub(super) async fn value(
    ctx: &Rc<ShardCtx>,
    topic: &str,
    queue_id: i32,
    op: QueueOp,
) -> Result<i64, Reject> {
    let log = ctx
        .shared
        .log_of(topic, queue_id)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    match execute(ctx, log, op).await {
        QueueReply::Value(v) => Ok(v),
        QueueReply::Offset(o) => Ok(o.unwrap_or(0).max(0)),
        QueueReply::NoOffset { .. } => Ok(0),
        QueueReply::Failed(e) => Err(Reject::new(rs::SYSTEM_ERROR, e)),
        other => Err(Reject::unexpected(other)),
    }
}

async fn store_time_at(
    ctx: &Rc<ShardCtx>,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<i64, Reject> {
    if offset < 0 {
        return Ok(0);
    }
    let op = QueueOp::StoreTimeAt {
        topic: topic.to_string(),
        queue_id,
        offset: offset as u64,
    };
    value(ctx, topic, queue_id, op).await
}

pub(super) async fn max_offset(
    ctx: &Rc<ShardCtx>,
    topic: &str,
    queue_id: i32,
) -> Result<i64, Reject> {
    let op = QueueOp::MaxOffset {
        topic: topic.to_string(),
        queue_id,
    };
    value(ctx, topic, queue_id, op).await
}

pub(super) fn write_queue_nums(ctx: &Rc<ShardCtx>, topic: &str) -> Option<i32> {
    lock(&ctx.shared.topics)
        .get(topic)
        .map(|tc| tc.write_queue_nums)
}

/// GET_TOPIC_STATS_INFO: `{offsetTable:{queue:{lastUpdateTimestamp,maxOffset,minOffset}},
/// topicPutTps}` over the topic's write queues; an unknown topic is TOPIC_NOT_EXIST.
pub async fn topic_stats(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let topic = required(cmd, "topic")?;
    let queues = write_queue_nums(ctx, topic)
        .ok_or_else(|| Reject::new(rs::TOPIC_NOT_EXIST, format!("topic[{topic}] not exist")))?;
    let broker = &ctx.shared.cfg.broker_name;
    let mut body = String::from("{\"offsetTable\":{");
    for q in 0..queues {
        let min = value(
            ctx,
            topic,
            q,
            QueueOp::MinOffset {
                topic: topic.to_string(),
                queue_id: q,
            },
        )
        .await?;
        let max = max_offset(ctx, topic, q).await?;
        let last = if max > 0 {
            store_time_at(ctx, topic, q, max - 1).await?
        } else {
            0
        };
        if q > 0 {
            body.push(',');
        }
        push_queue_key(&mut body, broker, topic, q);
        let _ = write!(
            body,
            ":{{\"lastUpdateTimestamp\":{last},\"maxOffset\":{max},\"minOffset\":{min}}}"
        );
    }
    body.push_str("},\"topicPutTps\":0.0}");
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

/// GET_CONSUME_STATS: for `topic`, or else every topic the group's online members subscribe to,
/// `{consumeTps,offsetTable:{queue:{brokerOffset,consumerOffset,lastTimestamp,pullOffset}}}`.
/// The backlog of a queue is brokerOffset − consumerOffset. A group without a committed offset
/// on a queue counts from 0; topics that no longer exist are left out. `pullOffset` (5.x) is
/// not tracked and repeats the committed offset; `consumeTps` is not measured (0).
pub async fn consume_stats(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?.to_string();
    let topics = match cmd.field("topic").filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_string()],
        None => lock(&ctx.shared.consumers).subscribed_topics(&group),
    };
    let (body, _) = consume_stats_json(ctx, &group, &topics).await?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

/// One group's ConsumeStats over `topics` in fastjson's form, and its total backlog.
async fn consume_stats_json(
    ctx: &Rc<ShardCtx>,
    group: &str,
    topics: &[String],
) -> Result<(String, i64), Reject> {
    let broker = &ctx.shared.cfg.broker_name;
    let mut body = String::from("{\"consumeTps\":0.0,\"offsetTable\":{");
    let mut first = true;
    let mut backlog = 0;
    for topic in topics {
        let Some(queues) = write_queue_nums(ctx, topic) else {
            continue;
        };
        for q in 0..queues {
            let broker_offset = max_offset(ctx, topic, q).await?;
            let op = QueueOp::QueryOffset {
                group: group.to_string(),
                topic: topic.clone(),
                queue_id: q,
            };
            let consumer_offset = value(ctx, topic, q, op).await?;
            backlog += (broker_offset - consumer_offset).max(0);
            let last = if consumer_offset > 0 {
                store_time_at(ctx, topic, q, consumer_offset - 1).await?
            } else {
                0
            };
            if !first {
                body.push(',');
            }
            first = false;
            push_queue_key(&mut body, broker, topic, q);
            let _ = write!(
                body,
                ":{{\"brokerOffset\":{broker_offset},\"consumerOffset\":{consumer_offset},\
                 \"lastTimestamp\":{last},\"pullOffset\":{consumer_offset}}}"
            );
        }
    }
    body.push_str("}}");
    Ok((body, backlog))
}

/// GET_BROKER_CONSUME_STATS (`mqadmin brokerConsumeStats`): for every subscription group, its
/// ConsumeStats per topic it has committed offsets on (leaving out topics gone, non-order
/// topics when `isOrder`, and topics a running group no longer subscribes to, as RocketMQ
/// does), with the broker's total backlog. `totalInflightDiff` (5.x) equals it: pulls are not
/// tracked apart from commits.
pub async fn broker_consume_stats(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let only_order = cmd.field("isOrder").is_some_and(parse_bool);
    let groups: Vec<String> = lock(&ctx.shared.groups).groups.keys().cloned().collect();
    let mut list = String::new();
    let mut total = 0;
    for group in groups {
        let op = || ShardOp::OffsetTopicsOfGroup {
            group: group.clone(),
        };
        let mut entries = Vec::new();
        for topic in names_on_every_shard(ctx, op).await? {
            let order = lock(&ctx.shared.topics).get(&topic).map(|tc| tc.order);
            let Some(order) = order else { continue };
            if only_order && !order {
                continue;
            }
            {
                let consumers = lock(&ctx.shared.consumers);
                let running = !consumers.member_ids(&group).is_empty();
                if running && consumers.subscription(&group, &topic).is_none() {
                    continue;
                }
            }
            let (json, backlog) =
                consume_stats_json(ctx, &group, std::slice::from_ref(&topic)).await?;
            total += backlog;
            entries.push(json);
        }
        if entries.is_empty() {
            continue;
        }
        if !list.is_empty() {
            list.push(',');
        }
        let _ = write!(
            list,
            "{{{}:[{}]}}",
            serde_json::Value::from(group.as_str()),
            entries.join(",")
        );
    }
    let addr = ctx.shared.store_host().to_string();
    let body = format!(
        "{{\"brokerAddr\":{},\"consumeStatsList\":[{list}],\"totalDiff\":{total},\"totalInflightDiff\":{total}}}",
        serde_json::Value::from(addr)
    );
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}
