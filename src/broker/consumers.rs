//! Consumer and producer groups as heartbeats describe them (§3.4): members, subscriptions,
//! NOTIFY_CONSUMER_IDS_CHANGED when membership changes, and 120 s expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use std::sync::Arc;

use serde_json::Value;

use super::sql92::Filter;

use crate::net::Conn;
use crate::remoting::codes::request;
use crate::remoting::RemotingCommand;
use rocketcore_shards::message::hash::java_string_hash;

pub const CHANNEL_EXPIRY: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub topic: String,
    pub sub_string: String,
    /// Empty means every tag.
    pub codes: BTreeSet<i32>,
    pub sub_version: i64,
    /// An SQL92 subscription's compiled filter, or why it does not compile; `None` for TAG.
    pub sql: Option<Result<Arc<Filter>, String>>,
}

pub const SQL92: &str = "SQL92";

/// The tags of a TAG expression; none for `*` or empty, which match every tag.
fn tags_of(expr: &str) -> Vec<&str> {
    let expr = expr.trim();
    if expr == "*" {
        return Vec::new();
    }
    expr.split("||")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

impl Subscription {
    /// Parses a TAG expression: `*` or empty matches all; otherwise tags joined by `||`.
    pub fn from_expression(topic: &str, expr: &str, sub_version: i64) -> Self {
        let codes = tags_of(expr).into_iter().map(java_string_hash).collect();
        Self {
            topic: topic.into(),
            sub_string: expr.trim().into(),
            codes,
            sub_version,
            sql: None,
        }
    }

    /// A subscription of `expression_type` (`TAG` when absent, or `SQL92`, in any case);
    /// an SQL92 expression is compiled now and a compile error kept for the pulls to report.
    pub fn of_type(
        topic: &str,
        expr: &str,
        sub_version: i64,
        expression_type: Option<&str>,
    ) -> Self {
        match expression_type {
            Some(t) if t.eq_ignore_ascii_case(SQL92) => Self {
                topic: topic.into(),
                sub_string: expr.trim().into(),
                codes: BTreeSet::new(),
                sub_version,
                sql: Some(Filter::parse(expr).map(Arc::new)),
            },
            _ => Self::from_expression(topic, expr, sub_version),
        }
    }

    /// The SQL92 filter to apply to each record's properties, if this is a valid SQL92
    /// subscription.
    pub fn sql_filter(&self) -> Option<Arc<Filter>> {
        self.sql.as_ref().and_then(|r| r.as_ref().ok()).cloned()
    }

    /// SubscriptionData as Java writes it.
    pub fn to_json(&self) -> Value {
        let (kind, tags) = match self.sql {
            Some(_) => (SQL92, Vec::new()),
            None => ("TAG", tags_of(&self.sub_string)),
        };
        serde_json::json!({
            "classFilterMode": false,
            "codeSet": self.codes,
            "expressionType": kind,
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": tags,
            "topic": self.topic,
        })
    }

    /// The broker's check is on the tag hash only; clients re-check the exact tag. An SQL92
    /// subscription passes every tag here and is checked on the record's properties.
    pub fn matches(&self, tag_code: i64) -> bool {
        self.codes.is_empty() || self.codes.contains(&(tag_code as i32))
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub conn: Conn,
    pub last_heartbeat: Instant,
    /// The client's `language` and `version` from its last heartbeat's header.
    pub language: &'static str,
    pub version: i32,
}

impl Member {
    /// One entry of a ConsumerConnection / ProducerConnection `connectionSet`.
    fn connection_json(&self, client_id: &str) -> Value {
        serde_json::json!({
            "clientAddr": self.conn.peer.to_string(),
            "clientId": client_id,
            "language": self.language,
            "version": self.version,
        })
    }
}

/// Who sent a heartbeat: the header fields a connection list reports.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub language: &'static str,
    pub version: i32,
}

#[derive(Debug, Default)]
pub struct Group {
    pub members: BTreeMap<String, Member>,
    pub subscriptions: BTreeMap<String, Subscription>,
    pub consume_from_where: String,
    pub message_model: String,
    pub consume_type: String,
}

#[derive(Debug, Default)]
pub struct ConsumerManager {
    pub groups: BTreeMap<String, Group>,
    pub producers: BTreeMap<String, BTreeMap<String, Member>>,
}

/// A consumer entry of a heartbeat body.
#[derive(Debug, Clone)]
pub struct ConsumerData {
    pub group: String,
    pub consume_from_where: String,
    pub message_model: String,
    pub consume_type: String,
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub client_id: String,
    pub consumers: Vec<ConsumerData>,
    pub producer_groups: Vec<String>,
}

/// Enum fields arrive as names (Java) or ordinals (some SDKs).
fn enum_text(v: &Value, names: &[&str]) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| names.get(i as usize))
            .map(|s| s.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn int_of(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(0)
}

const CONSUME_FROM: [&str; 6] = [
    "CONSUME_FROM_LAST_OFFSET",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET",
    "CONSUME_FROM_MAX_OFFSET",
    "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP",
];

/// Parses HeartbeatData leniently (ordinals, string subVersion, missing optional fields).
pub fn parse_heartbeat(body: &[u8]) -> Result<Heartbeat, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("heartbeat body is not JSON: {e}"))?;
    let client_id = v["clientID"]
        .as_str()
        .ok_or("heartbeat has no clientID")?
        .to_string();
    let mut consumers = Vec::new();
    for c in v["consumerDataSet"].as_array().into_iter().flatten() {
        let Some(group) = c["groupName"].as_str() else {
            continue;
        };
        let subscriptions = c["subscriptionDataSet"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let topic = s["topic"].as_str()?;
                Some(Subscription::of_type(
                    topic,
                    s["subString"].as_str().unwrap_or("*"),
                    int_of(&s["subVersion"]),
                    s["expressionType"].as_str(),
                ))
            })
            .collect();
        consumers.push(ConsumerData {
            group: group.to_string(),
            consume_from_where: enum_text(&c["consumeFromWhere"], &CONSUME_FROM),
            message_model: enum_text(&c["messageModel"], &["BROADCASTING", "CLUSTERING"]),
            consume_type: enum_text(
                &c["consumeType"],
                &["CONSUME_ACTIVELY", "CONSUME_PASSIVELY", "CONSUME_POP"],
            ),
            subscriptions,
        });
    }
    let producer_groups = v["producerDataSet"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["groupName"].as_str().map(str::to_string))
        .collect();
    Ok(Heartbeat {
        client_id,
        consumers,
        producer_groups,
    })
}

impl ConsumerManager {
    /// Records a heartbeat; returns the groups whose member set changed.
    pub fn heartbeat(&mut self, hb: &Heartbeat, conn: &Conn, client: ClientInfo) -> Vec<String> {
        let member = Member {
            conn: conn.clone(),
            last_heartbeat: Instant::now(),
            language: client.language,
            version: client.version,
        };
        let mut changed = Vec::new();
        for c in &hb.consumers {
            let g = self.groups.entry(c.group.clone()).or_default();
            let member = member.clone();
            let new_member = g
                .members
                .insert(hb.client_id.clone(), member)
                .is_none_or(|old| old.conn.id != conn.id);
            g.consume_from_where = c.consume_from_where.clone();
            g.message_model = c.message_model.clone();
            g.consume_type = c.consume_type.clone();
            for s in &c.subscriptions {
                g.subscriptions.insert(s.topic.clone(), s.clone());
            }
            if new_member {
                changed.push(c.group.clone());
            }
        }
        for p in &hb.producer_groups {
            self.producers
                .entry(p.clone())
                .or_default()
                .insert(hb.client_id.clone(), member.clone());
        }
        changed
    }

    pub fn unregister(
        &mut self,
        client_id: &str,
        consumer_group: Option<&str>,
        producer_group: Option<&str>,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        if let Some(g) = consumer_group {
            if let Some(group) = self.groups.get_mut(g) {
                if group.members.remove(client_id).is_some() {
                    changed.push(g.to_string());
                }
            }
        }
        if let Some(p) = producer_group {
            if let Some(m) = self.producers.get_mut(p) {
                m.remove(client_id);
            }
        }
        changed
    }

    /// Removes every member on a closed connection (or silent too long).
    pub fn remove_where(&mut self, dead: impl Fn(&Member) -> bool) -> Vec<String> {
        let mut changed = Vec::new();
        for (name, g) in self.groups.iter_mut() {
            let before = g.members.len();
            g.members.retain(|_, m| !dead(m));
            if g.members.len() != before {
                changed.push(name.clone());
            }
        }
        for m in self.producers.values_mut() {
            m.retain(|_, m| !dead(m));
        }
        changed
    }

    pub fn expire(&mut self) -> Vec<String> {
        self.remove_where(|m| m.last_heartbeat.elapsed() > CHANNEL_EXPIRY)
    }

    /// The connection of `client_id` in `group`, if it is online.
    pub fn member_conn(&self, group: &str, client_id: &str) -> Option<Conn> {
        self.groups
            .get(group)?
            .members
            .get(client_id)
            .map(|m| m.conn.clone())
    }

    pub fn member_ids(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The topics the online members of `group` subscribe to (its retry topic included).
    pub fn subscribed_topics(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|g| g.subscriptions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The groups with an online member subscribed to `topic`.
    pub fn groups_subscribing(&self, topic: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty() && g.subscriptions.contains_key(topic))
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn subscription(&self, group: &str, topic: &str) -> Option<Subscription> {
        self.groups
            .get(group)
            .and_then(|g| g.subscriptions.get(topic))
            .cloned()
    }

    /// Sends `cmd` oneway to one online producer of `group` (CHECK_TRANSACTION_STATE), the one
    /// that sent a heartbeat last; false if none could take it.
    pub fn send_oneway_to_a_producer(&self, group: &str, cmd: &RemotingCommand) -> bool {
        let Some(members) = self.producers.get(group) else {
            return false;
        };
        let mut by_recency: Vec<&Member> = members.values().collect();
        by_recency.sort_by_key(|m| std::cmp::Reverse(m.last_heartbeat));
        by_recency
            .into_iter()
            .any(|m| m.conn.send_oneway(cmd.clone()))
    }

    /// GET_CONSUMER_CONNECTION_LIST's body: the group's online members, what they subscribe to
    /// and how they consume. `None` when no member is online.
    pub fn consumer_connection(&self, group: &str) -> Option<Value> {
        let g = self.groups.get(group).filter(|g| !g.members.is_empty())?;
        let connections: Vec<Value> = g
            .members
            .iter()
            .map(|(id, m)| m.connection_json(id))
            .collect();
        let subscriptions: serde_json::Map<String, Value> = g
            .subscriptions
            .values()
            .map(|s| (s.topic.clone(), s.to_json()))
            .collect();
        Some(serde_json::json!({
            "connectionSet": connections,
            "subscriptionTable": subscriptions,
            "consumeType": g.consume_type,
            "messageModel": g.message_model,
            "consumeFromWhere": g.consume_from_where,
        }))
    }

    /// GET_PRODUCER_CONNECTION_LIST's body; `None` when no producer of the group is online.
    pub fn producer_connection(&self, group: &str) -> Option<Value> {
        let members = self.producers.get(group).filter(|m| !m.is_empty())?;
        let connections: Vec<Value> = members
            .iter()
            .map(|(id, m)| m.connection_json(id))
            .collect();
        Some(serde_json::json!({ "connectionSet": connections }))
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member of `group`.
    pub fn notify(&self, group: &str) {
        let cmd = RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED, 0)
            .with_field("consumerGroup", group);
        // A member whose outbound queue is full or closed is gone or stuck; it will rebalance
        // on its own 20 s timer.
        self.send_oneway_to_members(group, &cmd);
    }

    /// Sends `cmd` as a oneway request to every online member of `group`; returns how many it
    /// was queued for.
    pub fn send_oneway_to_members(&self, group: &str, cmd: &RemotingCommand) -> usize {
        self.groups.get(group).map_or(0, |g| {
            g.members
                .values()
                .filter(|m| m.conn.send_oneway(cmd.clone()))
                .count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_java_heartbeat_parses() {
        let body = br#"{"clientID":"10.0.0.5@12345#86328749322345",
 "consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"CG",
   "messageModel":"CLUSTERING","unitMode":false,"subscriptionDataSet":[
   {"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000123,
    "tagsSet":["TagA"],"topic":"TopicTest"}]}],
 "producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let hb = parse_heartbeat(body).expect("parses");
        assert_eq!(
            hb.consumers[0].subscriptions[0].codes,
            BTreeSet::from([2598919])
        );
        assert_eq!(hb.consumers[0].message_model, "CLUSTERING");
        assert_eq!(
            hb.producer_groups,
            vec!["CLIENT_INNER_PRODUCER".to_string()]
        );
    }

    #[test]
    fn ordinals_and_string_sub_versions_are_accepted() {
        let body = br#"{"clientID":"c","consumerDataSet":[{"groupName":"G","messageModel":1,"consumeFromWhere":4,
            "subscriptionDataSet":[{"topic":"T","subString":"a || b","subVersion":"17"}]}]}"#;
        let hb = parse_heartbeat(body).expect("parses");
        let c = &hb.consumers[0];
        assert_eq!(c.message_model, "CLUSTERING");
        assert_eq!(c.consume_from_where, "CONSUME_FROM_FIRST_OFFSET");
        assert_eq!(c.subscriptions[0].sub_version, 17);
        assert_eq!(c.subscriptions[0].codes.len(), 2);
        assert!(parse_heartbeat(b"{}").is_err());
        assert!(parse_heartbeat(b"nope").is_err());
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z*|% ]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            let keys = prop::sample::select(vec![
                "clientID",
                "consumerDataSet",
                "producerDataSet",
                "groupName",
                "subscriptionDataSet",
                "topic",
                "subString",
                "subVersion",
                "expressionType",
                "messageModel",
                "consumeFromWhere",
                "consumeType",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        /// Heartbeats of any shape (fields missing, of the wrong type, nested oddly) are parsed
        /// or refused, never a panic; whatever parses has a client id.
        #[test]
        fn any_heartbeat_shape_parses_or_is_refused(v in any_json()) {
            if let Ok(hb) = parse_heartbeat(v.to_string().as_bytes()) {
                proptest::prop_assert_eq!(Some(hb.client_id.as_str()), v["clientID"].as_str());
            }
        }

        #[test]
        fn any_bytes_as_a_heartbeat_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_heartbeat(&b);
        }
    }

    #[test]
    fn star_matches_everything_and_tags_match_by_hash() {
        let all = Subscription::from_expression("T", "*", 0);
        assert!(all.matches(0) && all.matches(12345));
        let a = Subscription::from_expression("T", "TagA", 0);
        assert!(a.matches(2598919));
        assert!(!a.matches(0));
    }
}
