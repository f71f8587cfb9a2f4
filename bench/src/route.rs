//! Finding brokers and queues from a NameServer, as a 4.9 producer does (§8.1): the topic's route, or TBW102's
//! when the topic has none yet, so that the first send auto-creates it.

use rocketcore::remoting::codes::response;
use std::time::Duration;

use crate::proto::{
    self, BrokerRoute, DEFAULT_TOPIC, DEFAULT_TOPIC_QUEUE_NUMS, PERM_READ, PERM_WRITE,
};
use crate::rpc::RpcClient;
use crate::util::{err, Error, Result};

/// A broker master and the queue ids the bench uses on it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSet {
    pub broker_name: String,
    pub addr: String,
    pub queue_ids: Vec<i32>,
}

/// The topic's route, or `None` when the NameServer answers TOPIC_NOT_EXIST.
pub fn fetch(
    namesrv: &RpcClient,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<BrokerRoute>>> {
    let resp = namesrv.call(proto::get_route(topic, 0), timeout)?;
    match resp.code {
        response::SUCCESS => proto::parse_route(&resp.body).map(Some),
        response::TOPIC_NOT_EXIST => Ok(None),
        code => err(format!(
            "GET_ROUTEINFO_BY_TOPIC {topic} from {}: code {code} {}",
            namesrv.addr(),
            resp.remark.unwrap_or_default()
        )),
    }
}

/// Writable queues for `topic`; falls back to TBW102 (min(4, queues) per broker) so the broker auto-creates it.
/// Returns the queue sets and whether the fallback was used.
pub fn for_produce(
    namesrv_addr: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(Vec<QueueSet>, bool)> {
    let ns = RpcClient::connect(namesrv_addr, timeout)?;
    if let Some(routes) = fetch(&ns, topic, timeout)? {
        return Ok((queue_sets(&routes, PERM_WRITE, |r| r.write_queues), false));
    }
    let Some(routes) = fetch(&ns, DEFAULT_TOPIC, timeout)? else {
        return err(format!(
            "topic {topic} has no route and neither has {DEFAULT_TOPIC}: create the topic first or enable autoCreateTopicEnable"
        ));
    };
    let sets = queue_sets(&routes, PERM_WRITE, |r| {
        r.write_queues.min(DEFAULT_TOPIC_QUEUE_NUMS)
    });
    Ok((sets, true))
}

/// Readable queues for `topic`.
pub fn for_consume(namesrv_addr: &str, topic: &str, timeout: Duration) -> Result<Vec<QueueSet>> {
    let ns = RpcClient::connect(namesrv_addr, timeout)?;
    match fetch(&ns, topic, timeout)? {
        Some(routes) => Ok(queue_sets(&routes, PERM_READ, |r| r.read_queues)),
        None => Err(Error(format!(
            "topic {topic} has no route on {namesrv_addr}: produce to it first"
        ))),
    }
}

fn queue_sets(
    routes: &[BrokerRoute],
    perm: i32,
    count: impl Fn(&BrokerRoute) -> i32,
) -> Vec<QueueSet> {
    let mut sets: Vec<QueueSet> = routes
        .iter()
        .filter(|r| r.perm & perm != 0)
        .filter_map(|r| {
            let addr = r.master_addr.clone()?;
            let n = count(r).max(0);
            Some(QueueSet {
                broker_name: r.broker_name.clone(),
                addr,
                queue_ids: (0..n).collect(),
            })
        })
        .filter(|s| !s.queue_ids.is_empty())
        .collect();
    sets.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    sets
}

/// Narrows every set to at most `n` queues (`--queues`).
pub fn limit_queues(sets: &mut [QueueSet], n: Option<usize>) {
    if let Some(n) = n {
        for s in sets {
            s.queue_ids.truncate(n.max(1));
        }
    }
}
