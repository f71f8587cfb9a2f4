//! Subscription groups, persisted as `config/subscriptionGroup.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rocketcore_shards::persist::{load_json, save_json};
use rocketcore_shards::StoreError;

use super::topics::DataVersion;

/// Group names follow the topic-name rule: `^[%|a-zA-Z0-9_-]+$`, here at most 255 bytes.
pub fn validate_group_name(g: &str) -> Result<(), String> {
    if g.is_empty() || g.len() > 255 {
        return Err(format!(
            "the group name must be 1 to 255 characters, not {}",
            g.len()
        ));
    }
    if !g
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"%|_-".contains(&b))
    {
        return Err(format!(
            "the group[{g}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    Ok(())
}

/// A group's settings as `subscriptionGroup.json` and UPDATE_AND_CREATE_SUBSCRIPTIONGROUP carry
/// them. Missing fields take RocketMQ's defaults; fields this broker does not act on
/// (consumeMessageOrderly, groupRetryPolicy, attributes, …) are kept as sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    pub retry_queue_nums: i32,
    pub retry_max_times: i32,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        Self::new("")
    }
}

impl SubscriptionGroupConfig {
    pub fn new(name: &str) -> Self {
        Self {
            group_name: name.into(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            other: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GroupsFile {
    subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    data_version: DataVersion,
}

pub struct SubscriptionGroups {
    path: PathBuf,
    pub groups: BTreeMap<String, SubscriptionGroupConfig>,
    data_version: DataVersion,
}

impl SubscriptionGroups {
    pub fn load(path: PathBuf) -> Result<Self, StoreError> {
        let file: GroupsFile = load_json(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            groups: file.subscription_group_table,
            data_version: file.data_version,
        })
    }

    /// The group's config, created with defaults when `auto_create` is on.
    pub fn find_or_create(
        &mut self,
        name: &str,
        auto_create: bool,
    ) -> Result<Option<SubscriptionGroupConfig>, StoreError> {
        if let Some(g) = self.groups.get(name) {
            return Ok(Some(g.clone()));
        }
        if !auto_create {
            return Ok(None);
        }
        let g = SubscriptionGroupConfig::new(name);
        self.put(g.clone())?;
        Ok(Some(g))
    }

    /// Creates or replaces a group's config (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
    pub fn put(&mut self, g: SubscriptionGroupConfig) -> Result<(), StoreError> {
        self.groups.insert(g.group_name.clone(), g);
        self.changed()
    }

    /// Removes a group's config; false if there was none.
    pub fn remove(&mut self, name: &str) -> Result<bool, StoreError> {
        if self.groups.remove(name).is_none() {
            return Ok(false);
        }
        self.changed().map(|()| true)
    }

    fn changed(&mut self) -> Result<(), StoreError> {
        self.data_version.counter += 1;
        self.data_version.timestamp = rocketcore_shards::store::now_ms();
        self.persist()
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG's body: every group, no forbidden topics, and the data
    /// version (with 5.x's `stateVersion`, which 4.x readers ignore).
    pub fn wrapper_json(&self) -> serde_json::Value {
        serde_json::json!({
            "subscriptionGroupTable": self.groups,
            "forbiddenTable": {},
            "dataVersion": {
                "counter": self.data_version.counter,
                "timestamp": self.data_version.timestamp,
                "stateVersion": 0,
            },
        })
    }

    fn persist(&self) -> Result<(), StoreError> {
        let file = GroupsFile {
            subscription_group_table: self.groups.clone(),
            data_version: self.data_version.clone(),
        };
        save_json(&self.path, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_as_clients_send_it_parses_and_keeps_what_we_do_not_act_on() {
        let body = r#"{"groupName":"G1","consumeEnable":false,"consumeFromMinEnable":true,
            "consumeBroadcastEnable":true,"consumeMessageOrderly":true,"retryQueueNums":1,
            "retryMaxTimes":5,"groupRetryPolicy":{"type":"CUSTOMIZED","exponentialRetryPolicy":null,
            "customizedRetryPolicy":null},"brokerId":0,"whichBrokerWhenConsumeSlowly":1,
            "notifyConsumerIdsChangedEnable":true,"groupSysFlag":0,"consumeTimeoutMinute":15,
            "subscriptionDataSet":null,"attributes":{}}"#;
        let g: SubscriptionGroupConfig = serde_json::from_str(body).expect("parses");
        assert_eq!(
            (g.group_name.as_str(), g.consume_enable, g.retry_max_times),
            ("G1", false, 5)
        );
        assert_eq!(g.other["consumeMessageOrderly"], serde_json::json!(true));
        let back: serde_json::Value = serde_json::to_value(&g).expect("serializes");
        let sent: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(back, sent, "every field sent comes back");
    }

    #[test]
    fn missing_fields_take_rocketmqs_defaults() {
        let g: SubscriptionGroupConfig =
            serde_json::from_str(r#"{"groupName":"G2"}"#).expect("parses");
        assert_eq!(g, SubscriptionGroupConfig::new("G2"));
    }

    #[test]
    fn group_names_follow_the_topic_charset() {
        assert!(validate_group_name("CID_a-1|%").is_ok());
        assert!(validate_group_name(&"g".repeat(255)).is_ok());
        for bad in ["", "a b", "g/1", "é", &"g".repeat(256)] {
            assert!(validate_group_name(bad).is_err(), "{bad:?}");
        }
    }
}
