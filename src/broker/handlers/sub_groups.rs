//! Subscription-group administration (§3.10): `mqadmin updateSubGroup` (200),
//! `deleteSubGroup` (207), reading one group (352) or all of them (201, also a slave's sync
//! call), which groups consume a topic (300) and `cloneGroupOffset` (314). Group changes are
//! persisted to `config/subscriptionGroup.json` before the answer.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::{names_on_every_shard, required, Reject, Reply};
use crate::broker::groups::{validate_group_name, SubscriptionGroupConfig};
use crate::broker::queue_ops::{execute_on_every_shard, ShardOp};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::response as rs;
use crate::remoting::command::parse_bool;
use crate::remoting::RemotingCommand;

pub fn create_or_update(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let g: SubscriptionGroupConfig = serde_json::from_slice(&cmd.body).map_err(|e| {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("the body is not a SubscriptionGroupConfig: {e}"),
        )
    })?;
    validate_group_name(&g.group_name).map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    if g.retry_queue_nums < 0 || g.retry_max_times < -1 || g.broker_id < 0 {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            "retryQueueNums and brokerId must be ≥ 0, retryMaxTimes ≥ -1",
        ));
    }
    tracing::info!(group = %g.group_name, "subscription group created or updated");
    lock(&ctx.shared.groups)
        .put(g)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

pub fn get_one(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let name = required(cmd, "group")?;
    let g = lock(&ctx.shared.groups).groups.get(name).cloned();
    let g = g.ok_or_else(|| {
        Reject::new(
            rs::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("the subscription group[{name}] does not exist"),
        )
    })?;
    let body = serde_json::to_vec(&g).map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body))
}

pub fn get_all(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let body = lock(&ctx.shared.groups).wrapper_json().to_string();
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

/// Removes the group's config; with `removeOffset` (4.x) or `cleanOffset` (5.x) also every
/// offset it committed, on every shard.
pub async fn delete(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let name = required(cmd, "groupName")?.to_string();
    let clean = ["removeOffset", "cleanOffset"]
        .iter()
        .any(|k| cmd.field(k).is_some_and(parse_bool));
    let existed = lock(&ctx.shared.groups)
        .remove(&name)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    if clean {
        let op = || ShardOp::RemoveGroupOffsets {
            group: name.clone(),
        };
        execute_on_every_shard(ctx, op)
            .await
            .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    }
    tracing::info!(group = %name, existed, offsets_removed = clean, "subscription group deleted");
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

/// QUERY_TOPIC_CONSUME_BY_WHO: the groups with a member online subscribed to the topic, and
/// the groups that committed offsets on it; `{"groupList":[…]}`.
pub async fn consumed_by(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let topic = required(cmd, "topic")?.to_string();
    let mut groups = names_on_every_shard(ctx, || ShardOp::OffsetGroupsOfTopic {
        topic: topic.clone(),
    })
    .await?;
    groups.extend(lock(&ctx.shared.consumers).groups_subscribing(&topic));
    let body = serde_json::json!({ "groupList": groups }).to_string();
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

/// CLONE_GROUP_OFFSET (`mqadmin cloneGroupOffset`): `destGroup` gets `srcGroup`'s committed
/// offsets on `topic`, or on every topic `srcGroup` has offsets on. Unless `offline`, a topic the
/// running source group no longer subscribes to is skipped, as RocketMQ does.
pub async fn clone_offsets(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let src = required(cmd, "srcGroup")?.to_string();
    let dest = required(cmd, "destGroup")?.to_string();
    validate_group_name(&dest).map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    let offline = cmd.field("offline").is_some_and(parse_bool);
    let topics: BTreeSet<String> = match cmd.field("topic").filter(|t| !t.is_empty()) {
        Some(t) => BTreeSet::from([t.to_string()]),
        None => {
            names_on_every_shard(ctx, || ShardOp::OffsetTopicsOfGroup { group: src.clone() })
                .await?
        }
    };
    let mut cloned = 0;
    for topic in topics {
        if lock(&ctx.shared.topics).get(&topic).is_none() {
            tracing::warn!(topic, "clone offsets: no such topic, skipped");
            continue;
        }
        if !offline {
            let consumers = lock(&ctx.shared.consumers);
            let subscribed = consumers.subscribed_topics(&src);
            if !subscribed.is_empty() && !subscribed.contains(&topic) {
                tracing::warn!(topic, group = %src, "clone offsets: the running group does not subscribe to it, skipped");
                continue;
            }
        }
        let op = || ShardOp::CloneGroupOffsets {
            src: src.clone(),
            dest: dest.clone(),
            topic: topic.clone(),
        };
        execute_on_every_shard(ctx, op)
            .await
            .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
        cloned += 1;
    }
    tracing::info!(src = %src, dest = %dest, topics = cloned, "consumer offsets cloned");
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}
