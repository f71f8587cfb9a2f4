//! Consumer offsets per group and queue (`topic@group` → queueId → next offset to consume),
//! persisted atomically in RocketMQ's consumerOffset.json shape.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

#[derive(Debug, Default, Serialize, Deserialize)]
struct OffsetFile {
    #[serde(rename = "offsetTable")]
    offset_table: BTreeMap<String, BTreeMap<String, i64>>,
}

pub struct ConsumerOffsets {
    path: PathBuf,
    table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Bumped on every change; the file holds `persisted_version`.
    version: u64,
    persisted_version: u64,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    pub fn load(path: PathBuf) -> Result<Self, StoreError> {
        let mut table = BTreeMap::new();
        if let Some(file) = crate::persist::load_json::<OffsetFile>(&path)? {
            for (k, queues) in file.offset_table {
                let mut m = BTreeMap::new();
                for (q, off) in queues {
                    let q: i32 = q.parse().map_err(|_| StoreError::BadMetadata {
                        file: path.display().to_string(),
                        reason: format!("queue id `{q}` is not a number"),
                    })?;
                    m.insert(q, off);
                }
                table.insert(k, m);
            }
        }
        Ok(Self {
            path,
            table,
            version: 0,
            persisted_version: 0,
        })
    }

    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.table
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, offset);
        self.version += 1;
    }

    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table
            .get(&key(topic, group))
            .and_then(|m| m.get(&queue_id))
            .copied()
    }

    pub fn remove_topic(&mut self, topic: &str) {
        let prefix = format!("{topic}@");
        self.table.retain(|k, _| !k.starts_with(&prefix));
        self.version += 1;
    }

    /// The groups with an offset on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        self.table
            .keys()
            .filter_map(|k| k.rsplit_once('@'))
            .filter(|(t, _)| *t == topic)
            .map(|(_, g)| g.to_string())
            .collect()
    }

    /// The topics `group` has an offset on.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        self.table
            .keys()
            .filter_map(|k| k.rsplit_once('@'))
            .filter(|(_, g)| *g == group)
            .map(|(t, _)| t.to_string())
            .collect()
    }

    /// Gives `dest` the offsets `src` has on `topic` (CLONE_GROUP_OFFSET), replacing its own.
    pub fn clone_group(&mut self, src: &str, dest: &str, topic: &str) {
        if let Some(m) = self.table.get(&key(topic, src)).cloned() {
            self.table.insert(key(topic, dest), m);
            self.version += 1;
        }
    }

    /// Forgets every offset `group` committed, on any topic.
    pub fn remove_group(&mut self, group: &str) {
        self.table
            .retain(|k, _| k.rsplit_once('@').is_none_or(|(_, g)| g != group));
        self.version += 1;
    }

    /// The file path, its new JSON and the version it captures, if anything changed.
    pub fn snapshot(&self) -> Result<Option<(PathBuf, Vec<u8>, u64)>, StoreError> {
        if self.version == self.persisted_version {
            return Ok(None);
        }
        let file = OffsetFile {
            offset_table: self
                .table
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        m.iter().map(|(q, o)| (q.to_string(), *o)).collect(),
                    )
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::BadMetadata {
            file: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some((self.path.clone(), json, self.version)))
    }

    pub fn mark_persisted(&mut self, version: u64) {
        self.persisted_version = self.persisted_version.max(version);
    }

    pub fn persist(&mut self) -> Result<(), StoreError> {
        if let Some((path, json, version)) = self.snapshot()? {
            crate::persist::write_atomic(&path, &json)?;
            self.mark_persisted(version);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_topics_are_found_by_either_side_of_the_key_and_clones_copy_every_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = ConsumerOffsets::load(dir.path().join("o.json")).expect("load");
        o.commit("G", "T", 0, 1);
        o.commit("G", "T", 3, 9);
        o.commit("H", "T", 0, 2);
        o.commit("G", "U", 0, 3);
        assert_eq!(o.groups_of_topic("T"), ["G", "H"]);
        assert_eq!(o.topics_of_group("G"), ["T", "U"]);
        o.clone_group("G", "K", "T");
        assert_eq!(
            (o.query("K", "T", 0), o.query("K", "T", 3)),
            (Some(1), Some(9))
        );
        assert_eq!(o.query("K", "U", 0), None, "only the named topic is cloned");
        o.clone_group("Nobody", "K", "T");
        assert_eq!(
            o.query("K", "T", 3),
            Some(9),
            "cloning nothing changes nothing"
        );
    }

    #[test]
    fn removing_a_group_keeps_other_groups_even_with_a_shared_suffix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = ConsumerOffsets::load(dir.path().join("o.json")).expect("load");
        o.commit("G", "T", 0, 1);
        o.commit("G", "%RETRY%G", 0, 2);
        o.commit("XG", "T", 0, 3);
        o.commit("G_X", "T", 0, 4);
        o.remove_group("G");
        assert_eq!(o.query("G", "T", 0), None);
        assert_eq!(o.query("G", "%RETRY%G", 0), None);
        assert_eq!(o.query("XG", "T", 0), Some(3));
        assert_eq!(o.query("G_X", "T", 0), Some(4));
    }

    #[test]
    fn offsets_survive_a_persist_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("consumerOffset.json");
        let mut o = ConsumerOffsets::load(path.clone()).expect("load");
        o.commit("G", "T", 3, 42);
        o.persist().expect("persist");
        let o2 = ConsumerOffsets::load(path).expect("reload");
        assert_eq!(o2.query("G", "T", 3), Some(42));
        assert_eq!(o2.query("G", "T", 2), None);
    }

    #[test]
    fn a_corrupt_offsets_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("consumerOffset.json");
        std::fs::write(&path, b"{not json").expect("write");
        let err = ConsumerOffsets::load(path).err().expect("must fail");
        assert!(err.to_string().contains("consumerOffset.json"));
    }
}
