//! Consumer offsets and queue offset queries (§3.3, §6.4).

use std::rc::Rc;

use super::{required, required_int, Reject, Reply};
use crate::broker::queue_ops::{execute, QueueOp, QueueReply};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::response as rs;
use crate::remoting::RemotingCommand;

fn queue(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Result<(String, i32, u16), Reject> {
    let topic = required(cmd, "topic")?.to_string();
    let queue_id = required_int(cmd, "queueId")? as i32;
    if lock(&ctx.shared.topics).get(&topic).is_none() {
        return Err(Reject::new(
            rs::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!"),
        ));
    }
    let log = ctx
        .shared
        .log_of(&topic, queue_id)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    Ok((topic, queue_id, log))
}

fn value(cmd: &RemotingCommand, reply: QueueReply, field: &str) -> Reply {
    match reply {
        QueueReply::Value(v) => {
            Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_field(field, v))
        }
        QueueReply::Failed(e) => Err(Reject::new(rs::SYSTEM_ERROR, e)),
        other => Err(Reject::unexpected(other)),
    }
}

pub async fn query(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?.to_string();
    let (topic, queue_id, log) = queue(ctx, cmd)?;
    match execute(
        ctx,
        log,
        QueueOp::QueryOffset {
            group,
            topic,
            queue_id,
        },
    )
    .await
    {
        QueueReply::Offset(Some(o)) => {
            Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_field("offset", o))
        }
        // The 4.9 new-group rule: a young queue whose first message is still in memory is
        // consumed from the start, whatever consumeFromWhere says.
        QueueReply::NoOffset {
            min,
            first_in_memory,
        } if min == 0 && first_in_memory => {
            Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_field("offset", 0))
        }
        QueueReply::NoOffset { .. } | QueueReply::Offset(None) => Err(Reject::new(
            rs::QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
        )),
        QueueReply::Failed(e) => Err(Reject::new(rs::SYSTEM_ERROR, e)),
        other => Err(Reject::unexpected(other)),
    }
}

pub async fn update(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?.to_string();
    let offset = required_int(cmd, "commitOffset")?;
    let (topic, queue_id, log) = queue(ctx, cmd)?;
    match execute(
        ctx,
        log,
        QueueOp::CommitOffset {
            group,
            topic,
            queue_id,
            offset,
        },
    )
    .await
    {
        QueueReply::Done => Ok(RemotingCommand::response_to(cmd, rs::SUCCESS)),
        QueueReply::Failed(e) => Err(Reject::new(rs::SYSTEM_ERROR, e)),
        other => Err(Reject::unexpected(other)),
    }
}

pub async fn max(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let (topic, queue_id, log) = queue(ctx, cmd)?;
    value(
        cmd,
        execute(ctx, log, QueueOp::MaxOffset { topic, queue_id }).await,
        "offset",
    )
}

pub async fn min(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let (topic, queue_id, log) = queue(ctx, cmd)?;
    value(
        cmd,
        execute(ctx, log, QueueOp::MinOffset { topic, queue_id }).await,
        "offset",
    )
}

pub async fn search_by_time(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let timestamp = required_int(cmd, "timestamp")?;
    let (topic, queue_id, log) = queue(ctx, cmd)?;
    value(
        cmd,
        execute(
            ctx,
            log,
            QueueOp::SearchByTime {
                topic,
                queue_id,
                timestamp,
            },
        )
        .await,
        "offset",
    )
}

pub async fn earliest_time(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let (topic, queue_id, log) = queue(ctx, cmd)?;
    value(
        cmd,
        execute(ctx, log, QueueOp::EarliestTime { topic, queue_id }).await,
        "timestamp",
    )
}
