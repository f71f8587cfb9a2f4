//! Requests the broker relays to one client and answers with the client's own answer (§3.10):
//! GET_CONSUMER_RUNNING_INFO (`mqadmin consumerStatus`: a consumer's subscriptions, queues and
//! rates) and CONSUME_MESSAGE_DIRECTLY (a console's "resend to this client": the client consumes
//! one stored message and reports the result).

use std::rc::Rc;
use std::time::Duration;

use super::query::{phys_of_offset_msg_id, record_at};
use super::{required, Reject, Reply};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::{request as rq, response as rs};
use crate::remoting::RemotingCommand;

/// How long the client has to answer (RocketMQ's callClient timeout).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` to `client` of `group` and turns its answer into the answer to `cmd`.
async fn relay(
    ctx: &Rc<ShardCtx>,
    cmd: &RemotingCommand,
    group: &str,
    client: &str,
    request: RemotingCommand,
) -> Reply {
    let conn = lock(&ctx.shared.consumers).member_conn(group, client);
    let conn = conn.ok_or_else(|| {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("The Consumer <{group}> <{client}> not online"),
        )
    })?;
    let answer = conn.call(request, CLIENT_TIMEOUT).await.map_err(|e| {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("invoke the consumer <{group}> <{client}> failed: {e}"),
        )
    })?;
    let mut resp = RemotingCommand::response_to(cmd, answer.code).with_body(answer.body);
    if let Some(remark) = answer.remark {
        resp = resp.with_remark(remark);
    }
    Ok(resp)
}

pub async fn consumer_running_info(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?;
    let client = required(cmd, "clientId")?;
    let request = RemotingCommand::request(rq::GET_CONSUMER_RUNNING_INFO, 0)
        .with_field("consumerGroup", group)
        .with_field("clientId", client)
        .with_field("jstackEnable", cmd.field("jstackEnable").unwrap_or("false"));
    relay(ctx, cmd, group, client, request).await
}

pub async fn consume_message_directly(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let group = required(cmd, "consumerGroup")?;
    let client = required(cmd, "clientId")?;
    let msg_id = required(cmd, "msgId")?;
    let phys = phys_of_offset_msg_id(msg_id).ok_or_else(|| {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("{msg_id} is not an offset message id"),
        )
    })?;
    let record = record_at(ctx, phys).await?;
    let mut request = RemotingCommand::request(rq::CONSUME_MESSAGE_DIRECTLY, 0)
        .with_field("consumerGroup", group)
        .with_field("clientId", client)
        .with_field("msgId", msg_id)
        .with_body(record);
    if let Some(b) = cmd.field("brokerName") {
        request = request.with_field("brokerName", b);
    }
    relay(ctx, cmd, group, client, request).await
}
