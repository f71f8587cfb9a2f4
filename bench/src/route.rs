//! Finding brokers and queues from a NameServer, as a 4.9 producer does (§8.1): the topic's route, or TBW102's
//! when the topic has none yet, so that the first send auto-creates it.

use rocketcore::remoting::codes::response;
use std::time::Duration;

use crate::proto::{
    self, BrokerRoute, DEFAULT_TOPIC, DEFAULT_TOPIC_QUEUE_NUMS, PERM_READ, PERM_WRITE,
};
use crate::rpc::RpcClient;
use crate::util::{err, Error, Result};

/// One topic's queues on one broker master: the queue ids the bench uses there.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSet {
    pub topic: String,
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

/// Writable queues for every topic; a topic without a route falls back to TBW102's (min(4, queues) per broker)
/// so that the broker auto-creates it. Returns the queue sets (in the order of `topics`) and the topics that
/// used the fallback.
pub fn for_produce(
    namesrv_addr: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<(Vec<QueueSet>, Vec<String>)> {
    let ns = RpcClient::connect(namesrv_addr, timeout)?;
    let mut sets = Vec::new();
    let mut fallback = Vec::new();
    for topic in topics {
        if let Some(routes) = fetch(&ns, topic, timeout)? {
            sets.extend(queue_sets(topic, &routes, PERM_WRITE, |r| r.write_queues));
            continue;
        }
        let Some(routes) = fetch(&ns, DEFAULT_TOPIC, timeout)? else {
            return err(format!(
                "topic {topic} has no route and neither has {DEFAULT_TOPIC}: create the topic first or enable autoCreateTopicEnable"
            ));
        };
        sets.extend(queue_sets(topic, &routes, PERM_WRITE, |r| {
            r.write_queues.min(DEFAULT_TOPIC_QUEUE_NUMS)
        }));
        fallback.push(topic.clone());
    }
    Ok((sets, fallback))
}

/// Readable queues for every topic, in the order of `topics`.
pub fn for_consume(
    namesrv_addr: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<QueueSet>> {
    let ns = RpcClient::connect(namesrv_addr, timeout)?;
    let mut sets = Vec::new();
    for topic in topics {
        match fetch(&ns, topic, timeout)? {
            Some(routes) => sets.extend(queue_sets(topic, &routes, PERM_READ, |r| r.read_queues)),
            None => {
                return Err(Error(format!(
                    "topic {topic} has no route on {namesrv_addr}: produce to it first"
                )))
            }
        }
    }
    Ok(sets)
}

/// The topics of `sets`, each once, in order of first appearance.
pub fn topics_of(sets: &[QueueSet]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sets {
        if !out.contains(&s.topic) {
            out.push(s.topic.clone());
        }
    }
    out
}

/// `sets` grouped by broker address (in order of first appearance): one connection serves all of a group.
pub fn by_broker(sets: &[QueueSet]) -> Vec<(String, Vec<QueueSet>)> {
    let mut out: Vec<(String, Vec<QueueSet>)> = Vec::new();
    for s in sets {
        match out.iter_mut().find(|(addr, _)| *addr == s.addr) {
            Some((_, group)) => group.push(s.clone()),
            None => out.push((s.addr.clone(), vec![s.clone()])),
        }
    }
    out
}

fn queue_sets(
    topic: &str,
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
                topic: topic.to_string(),
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

/// Narrows every set to at most `n` queues (`--queues`: per topic, per broker).
pub fn limit_queues(sets: &mut [QueueSet], n: Option<usize>) {
    if let Some(n) = n {
        for s in sets {
            s.queue_ids.truncate(n.max(1));
        }
    }
}
