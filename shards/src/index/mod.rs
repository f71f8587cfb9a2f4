//! Index of message keys (each KEYS token and UNIQ_KEY) for QUERY_MESSAGE and lookups by id.
//!
//! Keys hash as RocketMQ's IndexFile does: abs(Java hashCode of `topic#key`). A fixed-size table
//! of slot heads lives in memory; `(hash, size, commitlog offset, previous entry)` entries are
//! appended to `index/entries` on each checkpoint and read back on demand. At startup the heads
//! are rebuilt by one pass over the file. Hashes collide, so callers re-check the real key.

use std::path::PathBuf;

use crate::error::StoreError;
use crate::message::hash::{java_hash_continue, java_string_hash};
use crate::paged::{FixedRecord, PagedRecords};

pub fn key_hash(topic: &str, key: &str) -> i32 {
    key_hash_after(topic_prefix(topic), key)
}

/// The Java hash of `topic + "#"`, the part of [`key_hash`] every key of a topic shares.
fn topic_prefix(topic: &str) -> i32 {
    java_hash_continue(java_string_hash(topic), "#")
}

fn key_hash_after(prefix: i32, key: &str) -> i32 {
    let h = java_hash_continue(prefix, key);
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

/// One indexed key occurrence, chained to the previous one in the same hash slot (RocketMQ's
/// IndexFile shape: slot heads plus linked entries). `prev` is an entry number plus one; 0 ends
/// the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: i32,
    size: u32,
    phys: u64,
    prev: u64,
}

const ENTRY_BYTES: usize = 24;

impl FixedRecord for Entry {
    const BYTES: usize = ENTRY_BYTES;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.phys.to_be_bytes());
        out.extend_from_slice(&self.prev.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Option<Self> {
        let hash = i32::from_be_bytes(b.get(0..4)?.try_into().ok()?);
        let size = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let phys = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        let prev = u64::from_be_bytes(b.get(16..24)?.try_into().ok()?);
        (size > 0).then_some(Self {
            hash,
            size,
            phys,
            prev,
        })
    }
}

/// RocketMQ's `maxHashSlotNum` is 5,000,000 4-byte slots; ours are 8 bytes (entry numbers do
/// not wrap after 4 G messages), so 2^21 slots keep the table at 16 MiB per log.
pub const DEFAULT_SLOTS: usize = 1 << 21;

/// The key index of one log: a fixed table of slot heads in memory (its size never changes, so
/// it is part of the store's fixed memory per shard) and the entries in an append-only file,
/// read back through [`PagedRecords`].
pub struct KeyIndex {
    heads: Vec<u64>,
    entries: PagedRecords<Entry>,
    /// The last topic added and its [`topic_prefix`]: a batch adds two keys per message, all
    /// of one topic.
    last_topic: (String, i32),
}

impl KeyIndex {
    pub fn load(path: PathBuf, keep_below: u64, slots: usize) -> Result<Self, StoreError> {
        let mut heads = vec![0u64; slots.max(1)];
        let n = heads.len();
        let entries = PagedRecords::load(path, |i, e: &Entry| {
            if e.phys >= keep_below || e.prev > i {
                return false;
            }
            heads[slot_of(e.hash, n)] = i + 1;
            true
        })?;
        Ok(Self {
            heads,
            entries,
            last_topic: (String::new(), topic_prefix("")),
        })
    }

    fn slot(&self, hash: i32) -> usize {
        slot_of(hash, self.heads.len())
    }

    fn add_hash(&mut self, hash: i32, e: IndexEntry) {
        debug_assert!(
            self.entries.last().is_none_or(|l| l.phys <= e.phys),
            "index entries follow commitlog order"
        );
        let slot = self.slot(hash);
        let number = self.entries.len();
        self.entries.push(Entry {
            hash,
            size: e.size,
            phys: e.phys,
            prev: self.heads[slot],
        });
        self.heads[slot] = number + 1;
    }

    pub fn add(&mut self, topic: &str, key: &str, e: IndexEntry) {
        if self.last_topic.0 != topic {
            self.last_topic = (topic.to_string(), topic_prefix(topic));
        }
        self.add_hash(key_hash_after(self.last_topic.1, key), e);
    }

    /// Candidate records for `topic#key` at or after `min_phys`, newest first.
    pub fn candidates(&self, topic: &str, key: &str, min_phys: u64) -> Vec<IndexEntry> {
        let hash = key_hash(topic, key);
        let mut out = Vec::new();
        let mut cur = self.heads[self.slot(hash)];
        while let Some(e) = cur.checked_sub(1).and_then(|i| self.entries.get(i)) {
            if e.phys < min_phys {
                break; // older entries only point further back
            }
            if e.hash == hash {
                out.push(IndexEntry {
                    phys: e.phys,
                    size: e.size,
                });
            }
            cur = e.prev;
        }
        out
    }

    /// The file path, the bytes of entries not yet in it, and the count they bring it to.
    pub fn unpersisted(&self) -> Option<(PathBuf, Vec<u8>, u64)> {
        self.entries
            .unpersisted()
            .map(|(bytes, count)| (self.entries.path().to_path_buf(), bytes, count))
    }

    pub fn mark_persisted(&mut self, count: u64) {
        self.entries.mark_persisted(count);
    }

    pub fn persist(&mut self) -> Result<(), StoreError> {
        self.entries.persist()
    }

    /// Forgets entries at or after `end` (commitlog truncated) — in memory and in the file.
    pub fn truncate_from_phys(&mut self, end: u64) -> Result<(), StoreError> {
        let keep = self.entries.partition_point(0, |e| e.phys < end);
        // Newest first: a head that names a dropped entry moves to that entry's predecessor,
        // which is either kept or dropped later in this loop.
        for i in (keep..self.entries.len()).rev() {
            if let Some(e) = self.entries.get(i) {
                let slot = self.slot(e.hash);
                if self.heads[slot] == i + 1 {
                    self.heads[slot] = e.prev;
                }
            }
        }
        self.entries.truncate(keep)
    }
}

fn slot_of(hash: i32, slots: usize) -> usize {
    (hash as u32 as usize) % slots
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
            let mut idx = KeyIndex::load(path.clone(), u64::MAX, 64).expect("load");
            for (i, k) in keys.iter().enumerate() {
                idx.add("T", k, IndexEntry { phys: i as u64 * 100, size: 100 });
            }
            idx.persist().expect("persist");
            let again = KeyIndex::load(path, u64::MAX, 64).expect("reload");
            for (i, k) in keys.iter().enumerate() {
                let c = again.candidates("T", k, 0);
                let want = IndexEntry { phys: i as u64 * 100, size: 100 };
                prop_assert!(c.contains(&want));
            }
        }
    }

    #[test]
    fn keys_added_under_alternating_topics_are_found_under_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx = KeyIndex::load(dir.path().join("keys"), u64::MAX, 1 << 10).expect("load");
        let e = |phys| IndexEntry { phys, size: 10 };
        idx.add("TopicA", "k", e(0));
        idx.add("TopicB", "k", e(10));
        idx.add("TopicA", "k2", e(20));
        idx.add("TopicB", "k2", e(30));
        assert_eq!(idx.candidates("TopicA", "k", 0), vec![e(0)]);
        assert_eq!(idx.candidates("TopicB", "k", 0), vec![e(10)]);
        assert_eq!(idx.candidates("TopicA", "k2", 0), vec![e(20)]);
        assert_eq!(idx.candidates("TopicB", "k2", 0), vec![e(30)]);
    }

    #[test]
    fn the_hash_is_never_negative() {
        assert!(key_hash("T", "k") >= 0);
    }
}
