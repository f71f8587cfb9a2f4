//! Topic configs, persisted as RocketMQ's `config/topics.json`, with TBW102 auto-creation (§6.2).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rocketcore_shards::persist::{load_json, save_json};
use rocketcore_shards::StoreError;

pub const TBW102: &str = "TBW102";
pub const PERM_INHERIT: i32 = 1;
pub const PERM_WRITE: i32 = 2;
pub const PERM_READ: i32 = 4;

/// Topics clients may not send to (§3.1 step 2).
pub const SYSTEM_TOPICS: [&str; 6] = [
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    #[serde(default = "single_tag")]
    pub topic_filter_type: String,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub order: bool,
}

fn single_tag() -> String {
    "SINGLE_TAG".into()
}

impl TopicConfig {
    pub fn new(name: &str, queues: i32, perm: i32) -> Self {
        Self {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            topic_filter_type: single_tag(),
            topic_sys_flag: 0,
            order: false,
        }
    }

    pub fn queue_count(&self) -> i32 {
        self.read_queue_nums.max(self.write_queue_nums)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DataVersion {
    pub counter: i64,
    pub timestamp: i64,
}

#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TopicsFile {
    data_version: DataVersion,
    topic_config_table: BTreeMap<String, TopicConfig>,
}

pub struct TopicTable {
    path: PathBuf,
    pub data_version: DataVersion,
    pub topics: BTreeMap<String, TopicConfig>,
}

/// `^[%|a-zA-Z0-9_-]+$`, at most 127 bytes.
pub fn validate_topic_name(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("the topic name is empty".into());
    }
    if t.len() > 127 {
        return Err(format!(
            "the topic name is longer than 127 characters ({})",
            t.len()
        ));
    }
    if !rocketcore_shards::message::record::valid_topic(t) {
        return Err(format!(
            "the topic[{t}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    Ok(())
}

impl TopicTable {
    pub fn load(path: PathBuf) -> Result<Self, StoreError> {
        let file: TopicsFile = load_json(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            data_version: file.data_version,
            topics: file.topic_config_table,
        })
    }

    pub fn persist(&self) -> Result<(), StoreError> {
        let file = TopicsFile {
            data_version: self.data_version.clone(),
            topic_config_table: self.topics.clone(),
        };
        save_json(&self.path, &file)
    }

    pub fn get(&self, topic: &str) -> Option<&TopicConfig> {
        self.topics.get(topic)
    }

    /// Inserts or replaces; bumps the data version so the NameServer rebuilds routes.
    pub fn put(&mut self, tc: TopicConfig) -> Result<(), StoreError> {
        self.topics.insert(tc.topic_name.clone(), tc);
        self.bump();
        self.persist()
    }

    pub fn remove(&mut self, topic: &str) -> Result<bool, StoreError> {
        let removed = self.topics.remove(topic).is_some();
        if removed {
            self.bump();
            self.persist()?;
        }
        Ok(removed)
    }

    fn bump(&mut self) {
        self.data_version.counter += 1;
        self.data_version.timestamp = rocketcore_shards::store::now_ms();
    }

    /// Creates `topic` from `template` as the 4.9 broker does: min(requested, template write
    /// queues) queues, the template's perm without INHERIT. `None` if the template does not allow it.
    pub fn auto_create(
        &mut self,
        topic: &str,
        template: &str,
        requested: i32,
    ) -> Result<Option<TopicConfig>, StoreError> {
        let Some(t) = self.topics.get(template).cloned() else {
            return Ok(None);
        };
        if t.perm & PERM_INHERIT == 0 {
            return Ok(None);
        }
        let queues = requested.clamp(1, t.write_queue_nums.max(1));
        let mut tc = TopicConfig::new(topic, queues, t.perm & !PERM_INHERIT);
        tc.topic_filter_type = t.topic_filter_type.clone();
        self.put(tc.clone())?;
        Ok(Some(tc))
    }

    /// The JSON of TopicConfigSerializeWrapper (GET_ALL_TOPIC_CONFIG and REGISTER_BROKER).
    pub fn wrapper_json(&self) -> serde_json::Value {
        serde_json::json!({ "dataVersion": self.data_version, "topicConfigTable": self.topics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_rocketmq_rules() {
        assert!(validate_topic_name("Topic_A-1|%").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("bad topic").is_err());
        assert!(validate_topic_name(&"x".repeat(128)).is_err());
    }

    #[test]
    fn auto_create_takes_min_queue_count_and_drops_inherit_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("topics.json");
        let mut t = TopicTable::load(path.clone()).expect("load");
        t.put(TopicConfig::new(TBW102, 8, 7)).expect("put");
        let tc = t
            .auto_create("New", TBW102, 4)
            .expect("io")
            .expect("created");
        assert_eq!((tc.write_queue_nums, tc.perm), (4, 6));
        let again = TopicTable::load(path).expect("reload");
        assert_eq!(again.get("New"), Some(&tc));
        assert!(again.data_version.counter >= 2);
    }
}
