//! Subscription groups, persisted as `config/subscriptionGroup.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rocketcore_shards::persist::{load_json, save_json};
use rocketcore_shards::StoreError;

use super::topics::DataVersion;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
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
        self.groups.insert(name.to_string(), g.clone());
        self.data_version.counter += 1;
        self.data_version.timestamp = rocketcore_shards::store::now_ms();
        self.persist()?;
        Ok(Some(g))
    }

    fn persist(&self) -> Result<(), StoreError> {
        let file = GroupsFile {
            subscription_group_table: self.groups.clone(),
            data_version: self.data_version.clone(),
        };
        save_json(&self.path, &file)
    }
}
