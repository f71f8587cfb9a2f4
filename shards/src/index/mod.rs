//! Index of message keys (each KEYS token and UNIQ_KEY) for QUERY_MESSAGE and lookups by id.
//!
//! Keys hash as RocketMQ's IndexFile does: abs(Java hashCode of `topic#key`). The hash table
//! lives in memory; `(hash, commitlog offset, size)` entries are appended to `index/keys` on
//! each checkpoint and reloaded at startup. Hashes collide, so callers re-check the real key.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;

use crate::blocks::BlockVec;
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

/// One indexed key occurrence, chained to the previous one with the same hash (RocketMQ's
/// IndexFile shape: slot heads plus linked entries), 24 bytes in memory.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: i32,
    size: u32,
    phys: u64,
    prev: u32,
}

const NO_PREV: u32 = u32::MAX;
/// Heads are split over this many maps so no single rehash has to move all of them.
const SUBMAPS: usize = 256;

/// The map keys are already hashes; SipHash over them cost half of `add` on the batch path.
/// One multiply spreads the bits, and the fold brings the high product bits down, because the
/// low 8 bits of every key in one sub-map are the same (they chose the sub-map).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = n as u32 as u64;
    }
}

type Heads = HashMap<i32, u32, BuildHasherDefault<KeyHasher>>;

pub struct KeyIndex {
    path: PathBuf,
    heads: Vec<Heads>,
    log: BlockVec<Slot>,
    persisted: usize,
}

fn submap(hash: i32) -> usize {
    (hash as u32 as usize) % SUBMAPS
}

impl KeyIndex {
    pub fn load(path: PathBuf, keep_below: u64) -> Result<Self, StoreError> {
        let bytes = crate::persist::read_optional(&path)?.unwrap_or_default();
        let mut idx = Self {
            path,
            heads: (0..SUBMAPS).map(|_| Heads::default()).collect(),
            log: BlockVec::default(),
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
        debug_assert!(
            self.log.last().is_none_or(|l| l.phys <= e.phys),
            "index entries follow commitlog order"
        );
        let at = self.log.len() as u32;
        let prev = self.heads[submap(hash)].insert(hash, at).unwrap_or(NO_PREV);
        self.log.push(Slot {
            hash,
            size: e.size,
            phys: e.phys,
            prev,
        });
    }

    pub fn add(&mut self, topic: &str, key: &str, e: IndexEntry) {
        self.add_hash(key_hash(topic, key), e);
    }

    /// Candidate records for `topic#key` at or after `min_phys`, newest first.
    pub fn candidates(&self, topic: &str, key: &str, min_phys: u64) -> Vec<IndexEntry> {
        let hash = key_hash(topic, key);
        let mut out = Vec::new();
        let mut cur = self.heads[submap(hash)]
            .get(&hash)
            .copied()
            .unwrap_or(NO_PREV);
        while let Some(slot) = (cur != NO_PREV)
            .then(|| self.log.get(cur as usize))
            .flatten()
        {
            if slot.phys < min_phys {
                break; // older entries only point further back
            }
            out.push(IndexEntry {
                phys: slot.phys,
                size: slot.size,
            });
            cur = slot.prev;
        }
        out
    }

    /// The file path, the bytes of entries not yet in it, and the count they bring it to.
    pub fn unpersisted(&self) -> Option<(PathBuf, Vec<u8>, usize)> {
        if self.persisted == self.log.len() {
            return None;
        }
        let mut buf = Vec::with_capacity((self.log.len() - self.persisted) * ENTRY_BYTES);
        for slot in self.log.range(self.persisted, self.log.len()) {
            buf.extend_from_slice(&slot.hash.to_be_bytes());
            buf.extend_from_slice(&slot.phys.to_be_bytes());
            buf.extend_from_slice(&slot.size.to_be_bytes());
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
        let keep = self.log.partition_point(|s| s.phys < end);
        if keep == self.log.len() {
            return Ok(());
        }
        self.log.truncate(keep);
        // Chains only point backwards, so the kept entries stay consistent; rebuild the heads.
        for m in &mut self.heads {
            m.clear();
        }
        for i in 0..keep {
            if let Some(slot) = self.log.get(i) {
                self.heads[submap(slot.hash)].insert(slot.hash, i as u32);
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
