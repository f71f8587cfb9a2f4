//! Route tables: which brokers exist, in which clusters, serving which topics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueData {
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    pub topic_sys_flag: i32,
}

#[derive(Debug, Clone, Default)]
pub struct BrokerData {
    pub cluster: String,
    pub addrs: BTreeMap<i64, String>,
}

#[derive(Debug, Default)]
pub struct RouteInfo {
    /// topic → brokerName → queue data.
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    brokers: BTreeMap<String, BrokerData>,
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// broker address → (brokerName, last registration, data version text).
    live: HashMap<String, (String, Instant, String)>,
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
}

pub struct Registration<'a> {
    pub cluster: &'a str,
    pub broker_name: &'a str,
    pub broker_addr: &'a str,
    pub broker_id: i64,
    pub data_version: String,
    pub topics: Vec<(String, QueueData)>,
}

impl RouteInfo {
    pub fn register(&mut self, r: Registration<'_>) {
        self.clusters
            .entry(r.cluster.to_string())
            .or_default()
            .insert(r.broker_name.to_string());
        let bd = self.brokers.entry(r.broker_name.to_string()).or_default();
        bd.cluster = r.cluster.to_string();
        // The same address under another id means a role switch: drop the old id.
        bd.addrs
            .retain(|id, a| a != r.broker_addr || *id == r.broker_id);
        bd.addrs.insert(r.broker_id, r.broker_addr.to_string());
        let first = !self.live.contains_key(r.broker_addr);
        let changed = self
            .live
            .get(r.broker_addr)
            .is_none_or(|(_, _, v)| *v != r.data_version);
        if r.broker_id == 0 && (first || changed) {
            let names: BTreeSet<String> = r.topics.iter().map(|(t, _)| t.clone()).collect();
            for (topic, qd) in r.topics {
                self.topics
                    .entry(topic)
                    .or_default()
                    .insert(r.broker_name.to_string(), qd);
            }
            // Topics this broker no longer has lose its queue data.
            for (topic, per_broker) in self.topics.iter_mut() {
                if !names.contains(topic) {
                    per_broker.remove(r.broker_name);
                }
            }
            self.topics.retain(|_, m| !m.is_empty());
        }
        self.live.insert(
            r.broker_addr.to_string(),
            (r.broker_name.to_string(), Instant::now(), r.data_version),
        );
    }

    pub fn unregister(&mut self, broker_name: &str, broker_addr: &str) {
        self.live.remove(broker_addr);
        let now_empty = match self.brokers.get_mut(broker_name) {
            Some(bd) => {
                bd.addrs.retain(|_, a| a != broker_addr);
                bd.addrs.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.brokers.remove(broker_name);
            for names in self.clusters.values_mut() {
                names.remove(broker_name);
            }
            self.clusters.retain(|_, n| !n.is_empty());
            for per_broker in self.topics.values_mut() {
                per_broker.remove(broker_name);
            }
            self.topics.retain(|_, m| !m.is_empty());
        }
    }

    /// Drops brokers silent for longer than `limit`; returns their addresses.
    pub fn expire(&mut self, limit: Duration) -> Vec<String> {
        let dead: Vec<(String, String)> = self
            .live
            .iter()
            .filter(|(_, (_, t, _))| t.elapsed() > limit)
            .map(|(a, (n, _, _))| (n.clone(), a.clone()))
            .collect();
        for (name, addr) in &dead {
            self.unregister(name, addr);
        }
        dead.into_iter().map(|(_, a)| a).collect()
    }

    /// The TopicRouteData JSON, or `None` when no broker serves the topic.
    pub fn route(&self, topic: &str) -> Option<Value> {
        let per_broker = self.topics.get(topic)?;
        let queue_datas: Vec<Value> = per_broker
            .iter()
            .map(|(name, q)| {
                json!({"brokerName": name, "perm": q.perm, "readQueueNums": q.read_queue_nums,
                       "topicSynFlag": q.topic_sys_flag, "topicSysFlag": q.topic_sys_flag,
                       "writeQueueNums": q.write_queue_nums})
            })
            .collect();
        let broker_datas: Vec<Value> = per_broker
            .keys()
            .filter_map(|name| self.brokers.get(name).map(|bd| broker_json(name, bd)))
            .collect();
        Some(
            json!({"brokerDatas": broker_datas, "filterServerTable": {}, "queueDatas": queue_datas}),
        )
    }

    pub fn cluster_info(&self) -> Value {
        let brokers: serde_json::Map<String, Value> = self
            .brokers
            .iter()
            .map(|(n, bd)| (n.clone(), broker_json(n, bd)))
            .collect();
        let clusters: serde_json::Map<String, Value> = self
            .clusters
            .iter()
            .map(|(c, names)| (c.clone(), json!(names)))
            .collect();
        json!({"brokerAddrTable": brokers, "clusterAddrTable": clusters})
    }

    pub fn topic_list(&self, cluster: Option<&str>) -> Value {
        let names: Vec<&String> = match cluster {
            None => self.topics.keys().collect(),
            Some(c) => {
                let members = self.clusters.get(c);
                self.topics
                    .iter()
                    .filter(|(_, pb)| pb.keys().any(|b| members.is_some_and(|m| m.contains(b))))
                    .map(|(t, _)| t)
                    .collect()
            }
        };
        json!({ "topicList": names })
    }

    /// `mqadmin wipeWritePerm` / `addWritePerm`: takes the write permission off every topic the
    /// broker serves (`allow` false), or gives read and write back (`allow` true), as RocketMQ
    /// does. Returns how many topics it touched. A broker's next registration with a new data
    /// version (a topic change) replaces this, as in RocketMQ 4.x.
    pub fn set_write_perm(&mut self, broker_name: &str, allow: bool) -> usize {
        const PERM_READ: i32 = 4;
        const PERM_WRITE: i32 = 2;
        let mut touched = 0;
        for qd in self
            .topics
            .values_mut()
            .filter_map(|per_broker| per_broker.get_mut(broker_name))
        {
            qd.perm = if allow {
                PERM_READ | PERM_WRITE
            } else {
                qd.perm & !PERM_WRITE
            };
            touched += 1;
        }
        touched
    }

    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster {
            None => {
                self.topics.remove(topic);
            }
            Some(c) => {
                if let (Some(members), Some(pb)) =
                    (self.clusters.get(c), self.topics.get_mut(topic))
                {
                    pb.retain(|b, _| !members.contains(b));
                }
                self.topics.retain(|_, m| !m.is_empty());
            }
        }
    }
}

/// BrokerData with brokerAddrs keys quoted (the 4.9.4+ standard-JSON form every reader accepts).
/// `enableActingMaster` is a 5.x field that 4.x readers ignore and some 5.x-era clients require.
fn broker_json(name: &str, bd: &BrokerData) -> Value {
    let addrs: serde_json::Map<String, Value> = bd
        .addrs
        .iter()
        .map(|(id, a)| (id.to_string(), json!(a)))
        .collect();
    json!({"brokerAddrs": addrs, "brokerName": name, "cluster": bd.cluster, "enableActingMaster": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ri: &mut RouteInfo, version: &str, topics: &[&str]) {
        ri.register(Registration {
            cluster: "C",
            broker_name: "b",
            broker_addr: "127.0.0.1:10911",
            broker_id: 0,
            data_version: version.into(),
            topics: topics
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        QueueData {
                            read_queue_nums: 4,
                            write_queue_nums: 4,
                            perm: 6,
                            topic_sys_flag: 0,
                        },
                    )
                })
                .collect(),
        });
    }

    #[test]
    fn wiping_write_permission_touches_only_that_broker_and_adding_restores_read_write() {
        let mut ri = RouteInfo::default();
        reg(&mut ri, "1", &["T", "U"]);
        assert_eq!(ri.set_write_perm("other", false), 0);
        assert_eq!(ri.set_write_perm("b", false), 2);
        let perm = |ri: &RouteInfo| ri.route("T").expect("route")["queueDatas"][0]["perm"].clone();
        assert_eq!(perm(&ri), 4);
        // The same data version again (the 30 s re-registration) keeps the wipe.
        reg(&mut ri, "1", &["T", "U"]);
        assert_eq!(perm(&ri), 4);
        assert_eq!(ri.set_write_perm("b", true), 2);
        assert_eq!(perm(&ri), 6);
    }

    #[test]
    fn a_registered_topic_has_a_route_with_both_sys_flag_spellings() {
        let mut ri = RouteInfo::default();
        reg(&mut ri, "1", &["T"]);
        let r = ri.route("T").expect("route");
        assert_eq!(r["queueDatas"][0]["topicSynFlag"], 0);
        assert_eq!(r["queueDatas"][0]["topicSysFlag"], 0);
        assert_eq!(r["brokerDatas"][0]["brokerAddrs"]["0"], "127.0.0.1:10911");
        assert!(ri.route("U").is_none());
    }

    #[test]
    fn a_new_data_version_replaces_the_topic_set_and_unregister_removes_everything() {
        let mut ri = RouteInfo::default();
        reg(&mut ri, "1", &["T", "U"]);
        reg(&mut ri, "2", &["T"]);
        assert!(ri.route("U").is_none());
        ri.unregister("b", "127.0.0.1:10911");
        assert!(ri.route("T").is_none());
        assert_eq!(ri.cluster_info()["clusterAddrTable"], json!({}));
    }

    #[test]
    fn silent_brokers_expire() {
        let mut ri = RouteInfo::default();
        reg(&mut ri, "1", &["T"]);
        assert!(ri.expire(Duration::from_secs(120)).is_empty());
        assert_eq!(
            ri.expire(Duration::ZERO),
            vec!["127.0.0.1:10911".to_string()]
        );
        assert!(ri.route("T").is_none());
    }
}
