//! END_TRANSACTION (§3.3): a producer commits or rolls back its prepared message, after its
//! local transaction or when the broker asked (CHECK_TRANSACTION_STATE). See
//! `broker::transactions` for where half messages wait and how they are checked.

use std::rc::Rc;

use super::{required, required_int, Reject, Reply};
use crate::broker::queue_ops::put_one;
use crate::broker::transactions::{
    committed, resolve, HALF_TOPIC, PGROUP, TYPE_COMMIT, TYPE_ROLLBACK,
};
use crate::broker::ShardCtx;
use crate::remoting::codes::response as rs;
use crate::remoting::command::parse_bool;
use crate::remoting::RemotingCommand;
use rocketcore_shards::message::properties;
use rocketcore_shards::message::record::decode;

pub async fn end(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "producerGroup")?;
    let queue_offset = required_int(cmd, "tranStateTableOffset")?;
    let phys = required_int(cmd, "commitLogOffset")?;
    let outcome = required_int(cmd, "commitOrRollback")? as i32;
    let from_check = cmd.field("fromTransactionCheck").is_some_and(parse_bool);
    match outcome {
        TYPE_COMMIT | TYPE_ROLLBACK => {}
        0 => {
            // Unknown yet: the half message stays and the checker asks again later.
            tracing::debug!(group, queue_offset, from_check, "transaction state unknown");
            return Ok(RemotingCommand::response_to(cmd, rs::SUCCESS));
        }
        _ => {
            return Err(Reject::new(
                rs::SYSTEM_ERROR,
                format!("commitOrRollback field wrong: {outcome}"),
            ))
        }
    }
    let not_found = || {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("Find prepared transaction message failed at commitLogOffset {phys}"),
        )
    };
    if phys < 0 || queue_offset < 0 {
        return Err(not_found());
    }
    let stored = super::query::record_at(ctx, phys as u64)
        .await
        .map_err(|_| not_found())?;
    let half = decode(&stored)
        .filter(|r| r.topic == HALF_TOPIC)
        .ok_or_else(not_found)?;
    let props = properties::parse(&half.properties);
    if properties::get(&props, PGROUP) != Some(group) {
        return Err(Reject::new(rs::SYSTEM_ERROR, "The producer group wrong"));
    }
    if half.queue_offset != queue_offset {
        return Err(Reject::new(
            rs::SYSTEM_ERROR,
            "The transaction state table offset wrong",
        ));
    }
    let half_offset = queue_offset as u64;
    let commit = if outcome == TYPE_COMMIT {
        Some(committed(&half, ctx.shared.store_host()).ok_or_else(|| {
            Reject::new(
                rs::SYSTEM_ERROR,
                "the prepared message has no REAL_TOPIC / REAL_QID",
            )
        })?)
    } else {
        None
    };
    let put = async {
        if let Some(msg) = commit {
            put_one(ctx, msg, true).await?;
            ctx.shared.counters.add_put(ctx.shard.id(), 1);
        }
        Ok(())
    };
    // A late or repeated answer for a half message already ended does nothing: doing it again
    // could deliver the message twice.
    let ended = resolve(ctx, half_offset, put)
        .await
        .map_err(|(code, remark)| Reject::new(code, remark))?;
    tracing::debug!(
        group,
        half_offset,
        commit = outcome == TYPE_COMMIT,
        from_check,
        ended,
        "transaction answer"
    );
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}
