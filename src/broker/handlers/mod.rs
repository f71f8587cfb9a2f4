//! Broker request handlers, grouped by area; `dispatch` maps request codes to them.

mod admin;
mod clients;
mod offsets;
mod pull;
mod query;
mod relay;
mod reset;
mod runtime;
mod send;
mod stats;
mod sub_groups;
mod transaction;

pub use send::push_offset_msg_id;

use std::collections::BTreeSet;
use std::rc::Rc;

use super::queue_ops::{execute_on_every_shard, QueueReply, ShardOp};
use super::ShardCtx;
use crate::net::{Conn, Handler};
use crate::remoting::codes::{request as rq, response as rs};
use crate::remoting::RemotingCommand;

/// A refusal: the response code a RocketMQ client expects plus a remark saying what was wrong.
#[derive(Debug)]
pub struct Reject {
    pub code: i32,
    pub remark: String,
}

impl Reject {
    pub fn new(code: i32, remark: impl Into<String>) -> Self {
        Self {
            code,
            remark: remark.into(),
        }
    }
}

impl Reject {
    /// A store reply of the wrong kind for the operation sent: a bug, reported to the client
    /// rather than panicking the shard.
    pub fn unexpected(reply: crate::broker::queue_ops::QueueReply) -> Self {
        Reject::new(
            rs::SYSTEM_ERROR,
            format!("unexpected store reply {reply:?}"),
        )
    }
}

impl From<crate::remoting::Error> for Reject {
    fn from(e: crate::remoting::Error) -> Self {
        Reject::new(rs::SYSTEM_ERROR, e.to_string())
    }
}

pub type Reply = Result<RemotingCommand, Reject>;

pub struct BrokerHandler {
    pub ctx: Rc<ShardCtx>,
}

impl Handler for BrokerHandler {
    async fn handle(self: &Rc<Self>, cmd: RemotingCommand, conn: &Conn) -> Option<RemotingCommand> {
        let reply = dispatch(&self.ctx, &cmd, conn).await;
        Some(reply.unwrap_or_else(|r| RemotingCommand::error_to(&cmd, r.code, r.remark)))
    }

    fn closed(self: &Rc<Self>, conn: &Conn) {
        clients::connection_closed(&self.ctx, conn);
    }
}

async fn dispatch(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand, conn: &Conn) -> Reply {
    match cmd.code {
        rq::SEND_MESSAGE | rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE => {
            send::handle(ctx, cmd, conn.peer).await
        }
        rq::PULL_MESSAGE => pull::handle(ctx, cmd).await,
        rq::QUERY_CONSUMER_OFFSET => offsets::query(ctx, cmd).await,
        rq::UPDATE_CONSUMER_OFFSET => offsets::update(ctx, cmd).await,
        rq::GET_MAX_OFFSET => offsets::max(ctx, cmd).await,
        rq::GET_MIN_OFFSET => offsets::min(ctx, cmd).await,
        rq::SEARCH_OFFSET_BY_TIMESTAMP => offsets::search_by_time(ctx, cmd).await,
        rq::GET_EARLIEST_MSG_STORETIME => offsets::earliest_time(ctx, cmd).await,
        rq::HEART_BEAT => clients::heartbeat(ctx, cmd, conn),
        rq::CHECK_CLIENT_CONFIG => clients::check_client_config(ctx, cmd),
        rq::UNREGISTER_CLIENT => clients::unregister(ctx, cmd),
        rq::GET_CONSUMER_LIST_BY_GROUP => clients::consumer_list(ctx, cmd),
        rq::GET_CONSUMER_CONNECTION_LIST => clients::consumer_connections(ctx, cmd),
        rq::GET_PRODUCER_CONNECTION_LIST => clients::producer_connections(ctx, cmd),
        rq::LOCK_BATCH_MQ => clients::lock_batch(ctx, cmd),
        rq::UNLOCK_BATCH_MQ => clients::unlock_batch(ctx, cmd),
        rq::CONSUMER_SEND_MSG_BACK => send::send_back(ctx, cmd).await,
        rq::END_TRANSACTION => transaction::end(ctx, cmd).await,
        rq::UPDATE_AND_CREATE_TOPIC => admin::create_topic(ctx, cmd).await,
        rq::DELETE_TOPIC_IN_BROKER => admin::delete_topic(ctx, cmd).await,
        rq::GET_ALL_TOPIC_CONFIG => admin::all_topic_config(ctx, cmd),
        rq::QUERY_MESSAGE => query::by_key(ctx, cmd).await,
        rq::GET_TOPIC_STATS_INFO => stats::topic_stats(ctx, cmd).await,
        rq::GET_CONSUME_STATS => stats::consume_stats(ctx, cmd).await,
        rq::GET_BROKER_CONSUME_STATS => stats::broker_consume_stats(ctx, cmd).await,
        rq::VIEW_MESSAGE_BY_ID => query::view_by_id(ctx, cmd).await,
        rq::GET_BROKER_RUNTIME_INFO => runtime::runtime_info(ctx, cmd).await,
        rq::GET_BROKER_CONFIG => runtime::broker_config(ctx, cmd),
        rq::UPDATE_BROKER_CONFIG => runtime::update_broker_config(ctx, cmd).await,
        rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => sub_groups::create_or_update(ctx, cmd),
        rq::GET_SUBSCRIPTIONGROUP_CONFIG => sub_groups::get_one(ctx, cmd),
        rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => sub_groups::get_all(ctx, cmd),
        rq::DELETE_SUBSCRIPTIONGROUP => sub_groups::delete(ctx, cmd).await,
        rq::INVOKE_BROKER_TO_RESET_OFFSET => reset::reset_offset(ctx, cmd).await,
        rq::GET_CONSUMER_RUNNING_INFO => relay::consumer_running_info(ctx, cmd).await,
        rq::CONSUME_MESSAGE_DIRECTLY => relay::consume_message_directly(ctx, cmd).await,
        rq::QUERY_TOPIC_CONSUME_BY_WHO => sub_groups::consumed_by(ctx, cmd).await,
        rq::CLONE_GROUP_OFFSET => sub_groups::clone_offsets(ctx, cmd).await,
        other => Err(Reject::new(
            rs::REQUEST_CODE_NOT_SUPPORTED,
            format!("request code {other} not supported"),
        )),
    }
}

/// A header field under its long (V1) or short (V2) name.
fn field<'a>(cmd: &'a RemotingCommand, long: &str, short: &str) -> Option<&'a str> {
    cmd.field(long).or_else(|| cmd.field(short))
}

fn required<'a>(cmd: &'a RemotingCommand, name: &'static str) -> Result<&'a str, Reject> {
    cmd.field(name)
        .ok_or_else(|| Reject::new(rs::SYSTEM_ERROR, format!("missing header field `{name}`")))
}

fn int_field(name: &'static str, v: Option<&str>) -> Result<Option<i64>, Reject> {
    match v {
        None => Ok(None),
        Some(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            Reject::new(
                rs::SYSTEM_ERROR,
                format!("header field `{name}` is not a number: `{s}`"),
            )
        }),
    }
}

fn required_int(cmd: &RemotingCommand, name: &'static str) -> Result<i64, Reject> {
    int_field(name, Some(required(cmd, name)?)).map(|o| o.unwrap_or(0))
}

/// Names from every shard's logs, deduplicated and sorted.
pub(super) async fn names_on_every_shard(
    ctx: &Rc<ShardCtx>,
    op: impl Fn() -> ShardOp,
) -> Result<BTreeSet<String>, Reject> {
    let replies = execute_on_every_shard(ctx, op)
        .await
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    let mut names = BTreeSet::new();
    for r in replies {
        match r {
            QueueReply::Names(n) => names.extend(n),
            other => return Err(Reject::unexpected(other)),
        }
    }
    Ok(names)
}
