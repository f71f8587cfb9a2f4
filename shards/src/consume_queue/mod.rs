//! ConsumeQueue: per queue, 20-byte entries (commitlog offset, size, tag code), §5.3.
//!
//! Entries are appended to the queue's file on each checkpoint; only the unpersisted ones and
//! the most recent persisted ones stay in memory, older ones are read back (`crate::paged`). The file always starts at logical offset 0; the minimum
//! offset rises when retention deletes the commitlog data older entries point to.

use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::paged::{FixedRecord, PagedRecords};

pub const ENTRY_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub phys: u64,
    pub size: u32,
    pub tag_code: i64,
}

impl CqEntry {
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[..8].copy_from_slice(&(self.phys as i64).to_be_bytes());
        b[8..12].copy_from_slice(&(self.size as i32).to_be_bytes());
        b[12..].copy_from_slice(&self.tag_code.to_be_bytes());
        b
    }

    /// `None` for a blank filler or an impossible entry.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let phys = i64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let size = i32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
        let tag_code = i64::from_be_bytes(b.get(12..20)?.try_into().ok()?);
        if phys < 0 || size <= 0 || size == i32::MAX {
            return None;
        }
        Some(Self {
            phys: phys as u64,
            size: size as u32,
            tag_code,
        })
    }
}

impl FixedRecord for CqEntry {
    const BYTES: usize = ENTRY_BYTES;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }
    fn decode(b: &[u8]) -> Option<Self> {
        CqEntry::decode(b)
    }
}

pub struct ConsumeQueue {
    entries: PagedRecords<CqEntry>,
    /// Logical offset of the first entry whose commitlog data still exists.
    min_offset: u64,
}

impl ConsumeQueue {
    pub fn new(path: PathBuf) -> Self {
        Self {
            entries: PagedRecords::new(path),
            min_offset: 0,
        }
    }

    /// Loads the file, keeping only entries that point below `keep_below` (the rest is
    /// re-dispatched from the commitlog).
    pub fn load(path: PathBuf, keep_below: u64) -> Result<Self, StoreError> {
        Ok(Self {
            entries: PagedRecords::load(path, |_, e: &CqEntry| e.phys < keep_below)?,
            min_offset: 0,
        })
    }

    pub fn path(&self) -> &Path {
        self.entries.path()
    }

    pub fn push(&mut self, e: CqEntry) {
        debug_assert!(
            self.entries.last().is_none_or(|l| l.phys < e.phys),
            "CQ entries must follow commitlog order"
        );
        self.entries.push(e);
    }

    /// The next logical offset (RocketMQ's maxOffset).
    pub fn max_offset(&self) -> u64 {
        self.entries.len()
    }

    pub fn min_offset(&self) -> u64 {
        self.min_offset
    }

    pub fn get(&self, offset: u64) -> Option<CqEntry> {
        if offset < self.min_offset {
            return None;
        }
        self.entries.get(offset)
    }

    /// Up to `max` entries from logical offset `from`.
    pub fn range(&self, from: u64, max: usize) -> Vec<CqEntry> {
        self.entries.range(from, from.saturating_add(max as u64))
    }

    /// Drops entries pointing at or past `end` (a truncated commitlog).
    pub fn truncate_from_phys(&mut self, end: u64) -> Result<(), StoreError> {
        let keep = self.entries.partition_point(0, |e| e.phys < end);
        self.entries.truncate(keep)
    }

    /// Raises the minimum past entries whose commitlog data was deleted.
    pub fn set_commitlog_min(&mut self, commitlog_min: u64) {
        let first = self
            .entries
            .partition_point(self.min_offset, |e| e.phys < commitlog_min);
        self.min_offset = self.min_offset.max(first);
    }

    /// The bytes of entries not yet in the file, and the count they bring it to.
    pub fn unpersisted(&self) -> Option<(Vec<u8>, u64)> {
        self.entries.unpersisted()
    }

    pub fn mark_persisted(&mut self, count: u64) {
        self.entries.mark_persisted(count);
    }

    /// Appends the entries not yet in the file and syncs it (on the calling thread).
    pub fn persist(&mut self) -> Result<(), StoreError> {
        self.entries.persist()
    }

    /// Entries held in memory (bounded; see [`crate::paged`]).
    pub fn entries_in_memory(&self) -> usize {
        self.entries.in_memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_round_trip(phys in 0u64..i64::MAX as u64, size in 1u32..i32::MAX as u32, tag in any::<i64>()) {
            let e = CqEntry { phys, size, tag_code: tag };
            prop_assert_eq!(CqEntry::decode(&e.encode()), Some(e));
        }

        #[test]
        fn a_queue_persists_and_loads_the_same_entries(n in 0usize..200, cut in 0u64..5000) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("q");
            let mut q = ConsumeQueue::new(path.clone());
            for i in 0..n as u64 { q.push(CqEntry { phys: i * 25, size: 25, tag_code: i as i64 - 3 }); }
            q.persist().expect("persist");
            let loaded = ConsumeQueue::load(path.clone(), u64::MAX).expect("load");
            prop_assert_eq!(loaded.range(0, n), q.range(0, n));
            let cut_loaded = ConsumeQueue::load(path, cut).expect("load");
            prop_assert_eq!(cut_loaded.max_offset(), (cut.div_ceil(25)).min(n as u64));
        }
    }

    #[test]
    fn the_blank_filler_entry_is_not_an_entry() {
        let mut b = [0u8; 20];
        b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(CqEntry::decode(&b), None);
    }
}
