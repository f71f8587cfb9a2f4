//! Subscription-group administration (§3.10): `mqadmin updateSubGroup` (200),
//! `deleteSubGroup` (207), and reading one group (352) or all of them (201, also a slave's sync
//! call). Changes are persisted to `config/subscriptionGroup.json` before the answer.

use std::rc::Rc;

use super::{required, Reject, Reply};
use crate::broker::groups::{validate_group_name, SubscriptionGroupConfig};
use crate::broker::queue_ops::{execute_on_every_shard, QueueOp};
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
        let op = || QueueOp::RemoveGroupOffsets {
            group: name.clone(),
        };
        execute_on_every_shard(ctx, op)
            .await
            .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    }
    tracing::info!(group = %name, existed, offsets_removed = clean, "subscription group deleted");
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}
