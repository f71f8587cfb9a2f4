//! PULL_MESSAGE with long polling and tag filtering (§3.2, §6.5, §6.6).

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use rocketcore_shards::GetStatus;

use super::{int_field, required, required_int, Reject, Reply};
use crate::broker::consumers::{Subscription, SQL92};
use crate::broker::queue_ops::{execute, PullOp, QueueOp, QueueReply};
use crate::broker::topics::PERM_READ;
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::response as rs;
use crate::remoting::RemotingCommand;

const FLAG_COMMIT_OFFSET: i64 = 1;
const FLAG_SUSPEND: i64 = 2;
const FLAG_SUBSCRIPTION: i64 = 4;
/// Stay well inside the client's 30 s pull RPC timeout whatever it asks for.
const MAX_SUSPEND: Duration = Duration::from_secs(20);
const SHORT_POLL: Duration = Duration::from_secs(1);

pub async fn handle(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let cfg = &ctx.shared.cfg;
    let group = required(cmd, "consumerGroup")?;
    let topic = required(cmd, "topic")?;
    let queue_id = required_int(cmd, "queueId")? as i32;
    let offset = required_int(cmd, "queueOffset")?;
    let max_msgs = required_int(cmd, "maxMsgNums")?.clamp(1, 1024) as usize;
    let sys_flag = required_int(cmd, "sysFlag")?;
    if ctx.shared.runtime.broker_permission() & PERM_READ == 0 {
        return Err(Reject::new(
            rs::NO_PERMISSION,
            format!(
                "the broker[{}] pulling message is forbidden",
                cfg.broker_name
            ),
        ));
    }
    let tc = lock(&ctx.shared.topics).get(topic).cloned();
    let Some(tc) = tc else {
        return Err(Reject::new(
            rs::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!"),
        ));
    };
    if tc.perm & PERM_READ == 0 {
        return Err(Reject::new(
            rs::NO_PERMISSION,
            format!("the topic[{topic}] pulling message is forbidden"),
        ));
    }
    if queue_id < 0 || queue_id >= tc.read_queue_nums {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
                tc.read_queue_nums
            ),
        ));
    }
    let group_cfg = lock(&ctx.shared.groups)
        .find_or_create(group, ctx.shared.runtime.auto_create_group())
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    match group_cfg {
        None => {
            return Err(Reject::new(
                rs::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{group}] does not exist"),
            ))
        }
        Some(g) if !g.consume_enable => {
            return Err(Reject::new(
                rs::NO_PERMISSION,
                format!("subscription group no permission, {group}"),
            ))
        }
        Some(_) => {}
    }
    // Filter with the header's expression when the client sends one, else with the heartbeat's.
    // With neither (a pull racing the first heartbeat) deliver everything: clients re-check tags.
    let header_expr = cmd
        .field("subscription")
        .filter(|_| sys_flag & FLAG_SUBSCRIPTION != 0);
    let from_header = header_expr.is_some();
    let subscription = match header_expr {
        Some(expr) => {
            let version = int_field("subVersion", cmd.field("subVersion"))?.unwrap_or(0);
            let kind = cmd.field("expressionType");
            Some(Subscription::of_type(topic, expr, version, kind))
        }
        None => lock(&ctx.shared.consumers).subscription(group, topic),
    };
    let sql = cmd
        .field("expressionType")
        .is_some_and(|t| t.eq_ignore_ascii_case(SQL92))
        || subscription.as_ref().is_some_and(|s| s.sql.is_some());
    if sql && !ctx.shared.runtime.property_filter() {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            "The broker does not support consumer to filter message by SQL92",
        ));
    }
    if let Some(Err(why)) = subscription.as_ref().and_then(|s| s.sql.as_ref()) {
        // RocketMQ's codes: a bad expression in the pull itself, or none usable from the
        // heartbeat.
        return Err(if from_header {
            Reject::new(
                rs::SUBSCRIPTION_PARSE_FAILED,
                format!("parse the consumer's subscription failed: {why}"),
            )
        } else {
            Reject::new(
                rs::FILTER_DATA_NOT_EXIST,
                format!("The broker's consumer filter data is not exist! Your expression may be wrong: {why}"),
            )
        });
    }
    let commit_offset = if sys_flag & FLAG_COMMIT_OFFSET != 0 {
        int_field("commitOffset", cmd.field("commitOffset"))?.filter(|o| *o >= 0)
    } else {
        None
    };
    let suspend = (sys_flag & FLAG_SUSPEND != 0).then(|| {
        if cfg.long_polling_enable {
            let ms = cmd
                .field("suspendTimeoutMillis")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(15_000);
            Duration::from_millis(ms).min(MAX_SUSPEND)
        } else {
            SHORT_POLL
        }
    });
    let log = ctx
        .shared
        .log_of(topic, queue_id)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    let op = PullOp {
        group: group.to_string(),
        topic: topic.to_string(),
        queue_id,
        offset: offset.max(0) as u64,
        max_msgs,
        commit_offset,
        suspend,
        subscription,
    };
    let r = match execute(ctx, log, QueueOp::Pull(op)).await {
        QueueReply::Get(r) => r,
        QueueReply::Failed(e) => return Err(Reject::new(rs::SYSTEM_ERROR, e)),
        other => return Err(Reject::unexpected(other)),
    };
    let (code, next) = match r.status {
        GetStatus::Found => (rs::SUCCESS, r.next_begin_offset),
        GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
            (rs::PULL_RETRY_IMMEDIATELY, r.next_begin_offset)
        }
        GetStatus::NoMessageInQueue if offset != 0 => (rs::PULL_OFFSET_MOVED, 0),
        GetStatus::NoMessageInQueue => (rs::PULL_NOT_FOUND, 0),
        GetStatus::OffsetOverflowOne => (rs::PULL_NOT_FOUND, r.next_begin_offset),
        GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
            (rs::PULL_OFFSET_MOVED, r.next_begin_offset)
        }
    };
    let mut resp = RemotingCommand::response_to(cmd, code)
        .with_field("suggestWhichBrokerId", 0)
        .with_field("nextBeginOffset", next)
        .with_field("minOffset", r.min_offset)
        .with_field("maxOffset", r.max_offset);
    if code == rs::SUCCESS {
        ctx.shared
            .counters
            .add_get(ctx.shard.id(), r.records.len() as u64);
        let mut body = BytesMut::with_capacity(r.records.iter().map(|b| b.len()).sum());
        for rec in &r.records {
            body.extend_from_slice(rec);
        }
        resp = resp.with_body(body.freeze());
    } else {
        resp = resp.with_remark(format!("{:?}", r.status));
    }
    Ok(resp)
}
