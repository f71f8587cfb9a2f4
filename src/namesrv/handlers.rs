//! NameServer request handlers.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::routes::{QueueData, Registration, RouteInfo};
use crate::remoting::codes::{request as rq, response as rs};
use crate::remoting::RemotingCommand;

pub fn handle(routes: &Arc<Mutex<RouteInfo>>, cmd: &RemotingCommand) -> RemotingCommand {
    let Ok(mut ri) = routes.lock() else {
        return RemotingCommand::error_to(cmd, rs::SYSTEM_ERROR, "route table unavailable");
    };
    match cmd.code {
        rq::REGISTER_BROKER => register(&mut ri, cmd),
        rq::UNREGISTER_BROKER => match (cmd.field("brokerName"), cmd.field("brokerAddr")) {
            (Some(n), Some(a)) => {
                ri.unregister(n, a);
                RemotingCommand::response_to(cmd, rs::SUCCESS)
            }
            _ => missing(cmd, "brokerName and brokerAddr"),
        },
        rq::GET_ROUTEINFO_BY_TOPIC => {
            let Some(topic) = cmd.field("topic") else {
                return missing(cmd, "topic");
            };
            match ri.route(topic) {
                Some(route) => json_body(cmd, &route),
                None => RemotingCommand::error_to(
                    cmd,
                    rs::TOPIC_NOT_EXIST,
                    format!("No topic route info in name server for the topic: {topic}"),
                ),
            }
        }
        rq::GET_BROKER_CLUSTER_INFO => json_body(cmd, &ri.cluster_info()),
        rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => json_body(cmd, &ri.topic_list(None)),
        rq::GET_TOPICS_BY_CLUSTER => match cmd.field("cluster") {
            Some(c) => json_body(cmd, &ri.topic_list(Some(c))),
            None => missing(cmd, "cluster"),
        },
        rq::DELETE_TOPIC_IN_NAMESRV => match cmd.field("topic") {
            Some(t) => {
                ri.delete_topic(t, cmd.field("clusterName"));
                RemotingCommand::response_to(cmd, rs::SUCCESS)
            }
            None => missing(cmd, "topic"),
        },
        rq::PUT_KV_CONFIG => match (cmd.field("namespace"), cmd.field("key"), cmd.field("value")) {
            (Some(ns), Some(k), Some(v)) => {
                ri.kv
                    .entry(ns.to_string())
                    .or_default()
                    .insert(k.to_string(), v.to_string());
                RemotingCommand::response_to(cmd, rs::SUCCESS)
            }
            _ => missing(cmd, "namespace, key and value"),
        },
        rq::GET_KV_CONFIG => match (cmd.field("namespace"), cmd.field("key")) {
            (Some(ns), Some(k)) => match ri.kv.get(ns).and_then(|m| m.get(k)) {
                Some(v) => RemotingCommand::response_to(cmd, rs::SUCCESS).with_field("value", v),
                None => RemotingCommand::error_to(
                    cmd,
                    rs::QUERY_NOT_FOUND,
                    format!("No config item, Namespace: {ns} Key: {k}"),
                ),
            },
            _ => missing(cmd, "namespace and key"),
        },
        rq::GET_KVLIST_BY_NAMESPACE => match cmd.field("namespace") {
            Some(ns) => match ri.kv.get(ns) {
                Some(table) => json_body(cmd, &serde_json::json!({ "table": table })),
                None => RemotingCommand::error_to(
                    cmd,
                    rs::QUERY_NOT_FOUND,
                    format!("No config item, Namespace: {ns}"),
                ),
            },
            None => missing(cmd, "namespace"),
        },
        rq::WIPE_WRITE_PERM_OF_BROKER | rq::ADD_WRITE_PERM_OF_BROKER => {
            let Some(name) = cmd.field("brokerName") else {
                return missing(cmd, "brokerName");
            };
            let allow = cmd.code == rq::ADD_WRITE_PERM_OF_BROKER;
            let n = ri.set_write_perm(name, allow);
            let count_field = if allow {
                "addTopicCount"
            } else {
                "wipeTopicCount"
            };
            tracing::info!(broker = name, topics = n, allow, "write permission changed");
            RemotingCommand::response_to(cmd, rs::SUCCESS).with_field(count_field, n)
        }
        rq::DELETE_KV_CONFIG => match (cmd.field("namespace"), cmd.field("key")) {
            (Some(ns), Some(k)) => {
                if let Some(m) = ri.kv.get_mut(ns) {
                    m.remove(k);
                }
                RemotingCommand::response_to(cmd, rs::SUCCESS)
            }
            _ => missing(cmd, "namespace and key"),
        },
        other => RemotingCommand::error_to(
            cmd,
            rs::REQUEST_CODE_NOT_SUPPORTED,
            format!("request code {other} not supported"),
        ),
    }
}

fn missing(cmd: &RemotingCommand, what: &str) -> RemotingCommand {
    RemotingCommand::error_to(
        cmd,
        rs::SYSTEM_ERROR,
        format!("missing header field(s): {what}"),
    )
}

fn json_body(cmd: &RemotingCommand, v: &Value) -> RemotingCommand {
    RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(v.to_string().into_bytes())
}

fn register(ri: &mut RouteInfo, cmd: &RemotingCommand) -> RemotingCommand {
    let (Some(cluster), Some(name), Some(addr)) = (
        cmd.field("clusterName"),
        cmd.field("brokerName"),
        cmd.field("brokerAddr"),
    ) else {
        return missing(cmd, "clusterName, brokerName and brokerAddr");
    };
    let broker_id = match cmd.optional_i64("brokerId") {
        Ok(id) => id.unwrap_or(0),
        Err(e) => return RemotingCommand::error_to(cmd, rs::SYSTEM_ERROR, e.to_string()),
    };
    if cmd.bool_field("compressed") {
        return RemotingCommand::error_to(
            cmd,
            rs::SYSTEM_ERROR,
            "compressed registration bodies are not supported; register uncompressed",
        );
    }
    let crc = cmd.optional_i64("bodyCrc32").ok().flatten().unwrap_or(0);
    if crc != 0 && crc != (crc32fast::hash(&cmd.body) & 0x7FFF_FFFF) as i64 {
        return RemotingCommand::error_to(cmd, rs::SYSTEM_ERROR, "crc32 not match");
    }
    let body: Value = if cmd.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&cmd.body) {
            Ok(v) => v,
            Err(e) => {
                return RemotingCommand::error_to(
                    cmd,
                    rs::SYSTEM_ERROR,
                    format!("bad registration body: {e}"),
                )
            }
        }
    };
    let wrapper = &body["topicConfigSerializeWrapper"];
    let data_version = wrapper["dataVersion"].to_string();
    let mut topics = Vec::new();
    if let Some(table) = wrapper["topicConfigTable"].as_object() {
        for (topic, tc) in table {
            let int = |k: &str, d: i64| {
                tc[k]
                    .as_i64()
                    .or_else(|| tc[k].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(d) as i32
            };
            topics.push((
                topic.clone(),
                QueueData {
                    read_queue_nums: int("readQueueNums", 16),
                    write_queue_nums: int("writeQueueNums", 16),
                    perm: int("perm", 6),
                    topic_sys_flag: int("topicSysFlag", 0),
                },
            ));
        }
    }
    ri.register(Registration {
        cluster,
        broker_name: name,
        broker_addr: addr,
        broker_id,
        data_version,
        topics,
    });
    RemotingCommand::response_to(cmd, rs::SUCCESS)
}
