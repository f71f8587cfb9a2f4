//! Index of message keys (each KEYS token and UNIQ_KEY) for QUERY_MESSAGE and lookups by id.
//!
//! Keys hash as RocketMQ's IndexFile does: abs(Java hashCode of `topic#key`). The hash table
//! lives in memory; `(hash, commitlog offset, size)` entries are appended to `index/keys` on
//! each checkpoint and reloaded at startup. Hashes collide, so callers re-check the real key.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::StoreError;
use crate::message::hash::{java_hash_continue, java_string_hash};

const ENTRY_BYTES: usize = 16;

pub fn key_hash(topic: &str, key: &str) -> i32 {
    let h = java_hash_continue(java_hash_continue(java_string_hash(topic), "#"), key);
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub phys: u64,
    pub size: u32,
}

pub struct KeyIndex {
    path: PathBuf,
    table: HashMap<i32, Vec<IndexEntry>>,
    log: Vec<(i32, IndexEntry)>,
    persisted: usize,
}

impl KeyIndex {
    pub fn load(path: PathBuf, keep_below: u64) -> Result<Self, StoreError> {
        let bytes = crate::persist::read_optional(&path)?.unwrap_or_default();
        let mut idx = Self {
            path,
            table: HashMap::new(),
            log: Vec::new(),
            persisted: 0,
        };
        for c in bytes.chunks_exact(ENTRY_BYTES) {
            let hash = i32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let phys = u64::from_be_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]);
            let size = u32::from_be_bytes([c[12], c[13], c[14], c[15]]);
            if phys >= keep_below {
                break;
            }
            idx.add_hash(hash, IndexEntry { phys, size });
        }
        idx.persisted = idx.log.len();
        if idx.persisted * ENTRY_BYTES != bytes.len() {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&idx.path) {
                f.set_len((idx.persisted * ENTRY_BYTES) as u64)
                    .map_err(|e| StoreError::io(format!("truncate {}", idx.path.display()), e))?;
            }
        }
        Ok(idx)
    }

    fn add_hash(&mut self, hash: i32, e: IndexEntry) {
        self.table.entry(hash).or_default().push(e);
        self.log.push((hash, e));
    }

    pub fn add(&mut self, topic: &str, key: &str, e: IndexEntry) {
        self.add_hash(key_hash(topic, key), e);
    }

    /// Candidate records for `topic#key`, newest first.
    pub fn candidates(&self, topic: &str, key: &str, min_phys: u64) -> Vec<IndexEntry> {
        let mut v: Vec<IndexEntry> = self
            .table
            .get(&key_hash(topic, key))
            .map(|v| v.iter().copied().filter(|e| e.phys >= min_phys).collect())
            .unwrap_or_default();
        v.reverse();
        v
    }

    /// The file path, the bytes of entries not yet in it, and the count they bring it to.
    pub fn unpersisted(&self) -> Option<(PathBuf, Vec<u8>, usize)> {
        if self.persisted == self.log.len() {
            return None;
        }
        let mut buf = Vec::with_capacity((self.log.len() - self.persisted) * ENTRY_BYTES);
        for (h, e) in &self.log[self.persisted..] {
            buf.extend_from_slice(&h.to_be_bytes());
            buf.extend_from_slice(&e.phys.to_be_bytes());
            buf.extend_from_slice(&e.size.to_be_bytes());
        }
        Some((self.path.clone(), buf, self.log.len()))
    }

    pub fn mark_persisted(&mut self, count: usize) {
        self.persisted = self.persisted.max(count.min(self.log.len()));
    }

    pub fn persist(&mut self) -> Result<(), StoreError> {
        if let Some((path, bytes, count)) = self.unpersisted() {
            crate::persist::append_and_sync(&path, &bytes)?;
            self.mark_persisted(count);
        }
        Ok(())
    }

    /// Forgets entries at or after `end` (commitlog truncated) — in memory and in the file.
    pub fn truncate_from_phys(&mut self, end: u64) -> Result<(), StoreError> {
        let keep = self.log.partition_point(|(_, e)| e.phys < end);
        if keep == self.log.len() {
            return Ok(());
        }
        for (h, e) in self.log.drain(keep..) {
            if let Some(v) = self.table.get_mut(&h) {
                v.retain(|x| x.phys != e.phys);
            }
        }
        if self.persisted > keep {
            self.persisted = keep;
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                f.set_len((keep * ENTRY_BYTES) as u64)
                    .map_err(|e| StoreError::io(format!("truncate {}", self.path.display()), e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_persist_and_reload(keys in proptest::collection::vec("[a-z0-9]{1,12}", 1..50)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("keys");
            let mut idx = KeyIndex::load(path.clone(), u64::MAX).expect("load");
            for (i, k) in keys.iter().enumerate() {
                idx.add("T", k, IndexEntry { phys: i as u64 * 100, size: 100 });
            }
            idx.persist().expect("persist");
            let again = KeyIndex::load(path, u64::MAX).expect("reload");
            for (i, k) in keys.iter().enumerate() {
                let c = again.candidates("T", k, 0);
                let want = IndexEntry { phys: i as u64 * 100, size: 100 };
                prop_assert!(c.contains(&want));
            }
        }
    }

    #[test]
    fn the_hash_is_never_negative() {
        assert!(key_hash("T", "k") >= 0);
    }
}
