//! Topic administration used by mqadmin (§3.10).

use std::rc::Rc;

use super::{required, required_int, Reject, Reply};
use crate::broker::queue_ops::{execute_on_every_shard, ShardOp};
use crate::broker::topics::{validate_topic_name, TopicConfig, SYSTEM_TOPICS};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::response as rs;
use crate::remoting::command::parse_bool;
use crate::remoting::RemotingCommand;

pub async fn create_topic(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let topic = required(cmd, "topic")?;
    validate_topic_name(topic).map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    if SYSTEM_TOPICS.contains(&topic) {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            format!("The topic[{topic}] is conflict with system topic."),
        ));
    }
    let read = required_int(cmd, "readQueueNums")?;
    let write = required_int(cmd, "writeQueueNums")?;
    let perm = required_int(cmd, "perm")?;
    if !(1..=1024).contains(&read) || !(1..=1024).contains(&write) || !(0..=7).contains(&perm) {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            "queue numbers must be 1..=1024 and perm 0..=7",
        ));
    }
    let tc = TopicConfig {
        topic_name: topic.to_string(),
        read_queue_nums: read as i32,
        write_queue_nums: write as i32,
        perm: perm as i32,
        topic_filter_type: cmd
            .field("topicFilterType")
            .unwrap_or("SINGLE_TAG")
            .to_string(),
        topic_sys_flag: cmd
            .field("topicSysFlag")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        order: cmd.field("order").is_some_and(parse_bool),
    };
    let count = tc.queue_count();
    lock(&ctx.shared.topics)
        .put(tc)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    {
        let mut p = lock(&ctx.shared.placement);
        if p.place_topic(topic, count, ctx.shared.shards) {
            p.save(&ctx.shared.cfg.store_path_root_dir)
                .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
        }
    }
    // As the Java broker does, the route is registered before the answer, so a client that
    // asks the NameServer next finds it.
    if let Err(e) = crate::broker::register::register_once(&ctx.shared).await {
        tracing::warn!(error = %e, "registration after topic creation failed; the periodic one will retry");
    }
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

/// Removes the topic's config and route; its stored data ages out with retention.
pub async fn delete_topic(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let topic = required(cmd, "topic")?;
    lock(&ctx.shared.topics)
        .remove(topic)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    {
        let mut p = lock(&ctx.shared.placement);
        if p.remove_topic(topic) {
            p.save(&ctx.shared.cfg.store_path_root_dir)
                .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
        }
    }
    let op = || ShardOp::RemoveTopic {
        topic: topic.to_string(),
    };
    execute_on_every_shard(ctx, op)
        .await
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    if let Err(e) = crate::broker::register::register_once(&ctx.shared).await {
        tracing::warn!(error = %e, "registration after topic deletion failed; the periodic one will retry");
    }
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

pub fn all_topic_config(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let body = lock(&ctx.shared.topics).wrapper_json().to_string();
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}
