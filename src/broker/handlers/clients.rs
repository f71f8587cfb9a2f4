//! HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP, GET_CONSUMER_CONNECTION_LIST /
//! GET_PRODUCER_CONNECTION_LIST, LOCK_BATCH_MQ / UNLOCK_BATCH_MQ and connection close (§3.4,
//! §3.5, §3.10).

use std::rc::Rc;

use super::{required, Reject, Reply};
use crate::broker::consumers::{parse_heartbeat, ClientInfo, SQL92};
use crate::broker::queue_locks::{LockBatchBody, LockBatchReply};
use crate::broker::sql92::Filter;
use crate::broker::topics::{TopicConfig, PERM_READ, PERM_WRITE};
use crate::broker::{lock, ShardCtx};
use crate::net::Conn;
use crate::remoting::codes::response as rs;
use crate::remoting::RemotingCommand;

pub fn heartbeat(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand, conn: &Conn) -> Reply {
    let hb = parse_heartbeat(&cmd.body).map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    let shared = &ctx.shared;
    let mut created_topic = false;
    for c in &hb.consumers {
        let g = lock(&shared.groups)
            .find_or_create(&c.group, shared.runtime.auto_create_group())
            .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
        let Some(g) = g else {
            return Err(Reject::new(
                rs::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{}] does not exist", c.group),
            ));
        };
        let retry = format!("%RETRY%{}", c.group);
        let mut topics = lock(&shared.topics);
        if topics.get(&retry).is_none() && g.retry_queue_nums > 0 {
            topics
                .put(TopicConfig::new(
                    &retry,
                    g.retry_queue_nums,
                    PERM_READ | PERM_WRITE,
                ))
                .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
            created_topic = true;
        }
    }
    if created_topic {
        shared.request_registration();
    }
    let changed = {
        let mut consumers = lock(&shared.consumers);
        let client = ClientInfo {
            language: cmd.language_name(),
            version: cmd.version,
        };
        let changed = consumers.heartbeat(&hb, conn, client);
        for g in &changed {
            consumers.notify(g);
        }
        changed
    };
    if !changed.is_empty() {
        tracing::info!(client = %hb.client_id, groups = ?changed, "consumer group membership changed");
    }
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

/// GET_CONSUMER_CONNECTION_LIST (`mqadmin consumerConnection`): the group's online members and
/// their subscriptions; 206 CONSUMER_NOT_ONLINE when none is online, as the Java broker answers.
pub fn consumer_connections(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?;
    let body = lock(&ctx.shared.consumers)
        .consumer_connection(group)
        .ok_or_else(|| {
            Reject::new(
                rs::CONSUMER_NOT_ONLINE,
                format!("the consumer group[{group}] not online"),
            )
        })?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.to_string().into_bytes()))
}

/// GET_PRODUCER_CONNECTION_LIST (`mqadmin producerConnection`): the group's online producers.
pub fn producer_connections(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "producerGroup")?;
    let body = lock(&ctx.shared.consumers)
        .producer_connection(group)
        .ok_or_else(|| {
            Reject::new(
                rs::SYSTEM_ERROR,
                format!("the producer group[{group}] not exist"),
            )
        })?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.to_string().into_bytes()))
}

/// CHECK_CLIENT_CONFIG: a consumer with a non-TAG subscription asks before it starts whether the
/// broker can filter with it. SQL92 needs `enablePropertyFilter` (else code 1) and an
/// expression that compiles (else 23 with the reason), as in RocketMQ.
pub fn check_client_config(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let body: serde_json::Value = serde_json::from_slice(&cmd.body)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, format!("the check body is not JSON: {e}")))?;
    let sub = &body["subscriptionData"];
    let kind = sub["expressionType"].as_str().unwrap_or("TAG");
    if kind.eq_ignore_ascii_case("TAG") {
        return Ok(RemotingCommand::response_to(cmd, rs::SUCCESS));
    }
    if !kind.eq_ignore_ascii_case(SQL92) {
        return Err(Reject::new(
            rs::SUBSCRIPTION_PARSE_FAILED,
            format!("unknown expression type {kind}"),
        ));
    }
    if !ctx.shared.runtime.property_filter() {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            "The broker does not support consumer to filter message by SQL92",
        ));
    }
    Filter::parse(sub["subString"].as_str().unwrap_or(""))
        .map_err(|e| Reject::new(rs::SUBSCRIPTION_PARSE_FAILED, e))?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

pub fn unregister(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let client = required(cmd, "clientID")?;
    let mut consumers = lock(&ctx.shared.consumers);
    for g in consumers.unregister(
        client,
        cmd.field("consumerGroup"),
        cmd.field("producerGroup"),
    ) {
        consumers.notify(&g);
    }
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

pub fn consumer_list(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?;
    let ids = lock(&ctx.shared.consumers).member_ids(group);
    if ids.is_empty() {
        return Err(Reject::new(rs::SYSTEM_ERROR, "no consumer for this group"));
    }
    let body = serde_json::json!({ "consumerIdList": ids }).to_string();
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

fn lock_body(cmd: &RemotingCommand) -> Result<LockBatchBody, Reject> {
    serde_json::from_slice(&cmd.body)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, format!("bad lock request body: {e}")))
}

/// LOCK_BATCH_MQ: the queues of the body now held by its client (orderly consumers).
pub fn lock_batch(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let req = lock_body(cmd)?;
    let granted = lock(&ctx.shared.queue_locks).lock(
        &req.consumer_group,
        &req.client_id,
        &req.mq_set,
        std::time::Instant::now(),
    );
    let body = serde_json::to_vec(&LockBatchReply {
        lock_ok_mq_set: &granted,
    })
    .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body))
}

/// UNLOCK_BATCH_MQ: frees the body's queues its client holds.
pub fn unlock_batch(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let req = lock_body(cmd)?;
    lock(&ctx.shared.queue_locks).unlock(&req.consumer_group, &req.client_id, &req.mq_set);
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

pub fn connection_closed(ctx: &Rc<ShardCtx>, conn: &Conn) {
    let mut consumers = lock(&ctx.shared.consumers);
    for g in consumers.remove_where(|m| m.conn.id == conn.id) {
        consumers.notify(&g);
    }
}
