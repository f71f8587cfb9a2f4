//! Queue placement: which log holds `(topic, queueId)`, recorded in `placement.json` so the
//! same store opened with a different shard count still finds every queue.
//!
//! A log belongs to shard `log_id % shards`. A shard writes new queues to its own primary log
//! (id = shard id) and keeps serving any older logs that map to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Placement {
    /// topic → queueId → log id.
    pub queues: BTreeMap<String, BTreeMap<i32, u16>>,
}

pub const PLACEMENT_FILE: &str = "placement.json";

pub fn log_dir(root: &Path, log_id: u16) -> PathBuf {
    root.join("logs").join(format!("{log_id:05}"))
}

/// Log ids with a directory under `root`.
pub fn existing_logs(root: &Path) -> Vec<u16> {
    let mut out: Vec<u16> = std::fs::read_dir(root.join("logs"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// The logs shard `shard` of `shards` serves: its primary plus older ones mapping to it.
pub fn logs_of_shard(root: &Path, shard: usize, shards: usize) -> Vec<u16> {
    let mut logs: Vec<u16> = existing_logs(root)
        .into_iter()
        .filter(|l| *l as usize % shards == shard)
        .collect();
    if !logs.contains(&(shard as u16)) {
        logs.push(shard as u16);
    }
    logs.sort_unstable();
    logs
}

pub fn shard_of_log(log_id: u16, shards: usize) -> usize {
    log_id as usize % shards.max(1)
}

impl Placement {
    pub fn load(root: &Path) -> Result<Self, StoreError> {
        let path = root.join(PLACEMENT_FILE);
        Ok(crate::persist::load_json(&path)?.unwrap_or_default())
    }

    pub fn save(&self, root: &Path) -> Result<(), StoreError> {
        crate::persist::save_json(&root.join(PLACEMENT_FILE), self)
    }

    pub fn log_of(&self, topic: &str, queue_id: i32) -> Option<u16> {
        self.queues
            .get(topic)
            .and_then(|q| q.get(&queue_id))
            .copied()
    }

    /// Places queues `0..count` of `topic` that have no log yet, spreading them over shards.
    /// Returns true if anything changed.
    pub fn place_topic(&mut self, topic: &str, count: i32, shards: usize) -> bool {
        let q = self.queues.entry(topic.to_string()).or_default();
        let mut changed = false;
        let offset = crate::message::hash::java_string_hash(topic).unsigned_abs() as usize;
        for qid in 0..count.max(0) {
            q.entry(qid).or_insert_with(|| {
                changed = true;
                ((offset + qid as usize) % shards.max(1)) as u16
            });
        }
        changed
    }

    /// The logs holding any queue of `topic`, each once, in id order.
    pub fn logs_of_topic(&self, topic: &str) -> Vec<u16> {
        let mut logs: Vec<u16> = self
            .queues
            .get(topic)
            .map(|q| q.values().copied().collect())
            .unwrap_or_default();
        logs.sort_unstable();
        logs.dedup();
        logs
    }

    pub fn remove_topic(&mut self, topic: &str) -> bool {
        self.queues.remove(topic).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_recorded_so_a_different_shard_count_finds_the_same_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Placement::default();
        assert!(p.place_topic("T", 8, 2));
        p.save(dir.path()).expect("save");
        let again = Placement::load(dir.path()).expect("load");
        assert_eq!(again, p);
        // Growing the topic on 3 shards keeps old assignments.
        let mut grown = again.clone();
        grown.place_topic("T", 10, 3);
        for q in 0..8 {
            assert_eq!(grown.log_of("T", q), p.log_of("T", q));
        }
        std::fs::create_dir_all(log_dir(dir.path(), 1)).expect("mkdir");
        std::fs::create_dir_all(log_dir(dir.path(), 0)).expect("mkdir");
        // One shard now serves both logs.
        assert_eq!(logs_of_shard(dir.path(), 0, 1), vec![0, 1]);
    }
}
