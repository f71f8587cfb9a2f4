//! An append-only file of fixed-size records with a bounded in-memory part.
//!
//! Consume queues and the key index grow with every stored message; keeping all their entries
//! in memory made the broker's resident memory grow about 50 bytes per message without bound.
//! Here only the records not yet in the file, plus the last `TAIL_KEEP` persisted ones, stay in
//! memory (`tail`); older records are read back a page at a time (`PAGE` records) with a
//! positioned read of the file, and one such page is cached. The files are written with buffered
//! I/O on each checkpoint, so a read-back usually hits the page cache; a miss blocks the shard
//! for one small read, which only lagging consumers and key lookups of old messages pay.
//!
//! Invariant: every record below `tail_start` is in the file (`tail_start <= persisted`).

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// Persisted records kept in memory after a checkpoint (the hot end of a queue).
pub const TAIL_KEEP: usize = 1024;
/// Records read back from the file at once for older offsets.
pub const PAGE: u64 = 1024;

/// A record with a fixed encoded size.
pub trait FixedRecord: Copy {
    const BYTES: usize;
    fn encode_into(&self, out: &mut Vec<u8>);
    /// `None` for bytes that are not a record (a blank filler, a torn append).
    fn decode(b: &[u8]) -> Option<Self>;
}

pub struct PagedRecords<T> {
    path: PathBuf,
    /// Records `[tail_start, tail_start + tail.len())`.
    tail: Vec<T>,
    tail_start: u64,
    /// Records `[0, persisted)` are in the file.
    persisted: u64,
    /// One page read back from the file: (first record number, records).
    cold: RefCell<Option<(u64, Vec<T>)>>,
    reader: RefCell<Option<File>>,
}

impl<T: FixedRecord> PagedRecords<T> {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            tail: Vec::new(),
            tail_start: 0,
            persisted: 0,
            cold: RefCell::new(None),
            reader: RefCell::new(None),
        }
    }

    /// Reads the file front to back, calling `keep(n, record)` for each record, and stops at
    /// the first undecodable record or the first one `keep` refuses; the file is cut there.
    /// Only the last `TAIL_KEEP` kept records stay in memory.
    pub fn load(path: PathBuf, mut keep: impl FnMut(u64, &T) -> bool) -> Result<Self, StoreError> {
        let mut q = Self::new(path);
        let file = match File::open(&q.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(q),
            Err(e) => return Err(StoreError::io(format!("open {}", q.path.display()), e)),
        };
        let file_len = file
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {}", q.path.display()), e))?
            .len();
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
        let mut buf = vec![0u8; T::BYTES];
        let mut n = 0u64;
        loop {
            match reader.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(StoreError::io(format!("read {}", q.path.display()), e)),
            }
            let Some(r) = T::decode(&buf).filter(|r| keep(n, r)) else {
                break;
            };
            if q.tail.len() == 2 * TAIL_KEEP {
                q.tail.drain(..TAIL_KEEP);
                q.tail_start += TAIL_KEEP as u64;
            }
            q.tail.push(r);
            n += 1;
        }
        q.persisted = n;
        if n * T::BYTES as u64 != file_len {
            q.cut_file()?;
        }
        Ok(q)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.tail_start + self.tail.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn last(&self) -> Option<T> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn push(&mut self, r: T) {
        self.tail.push(r);
    }

    /// Record `i`, from memory or read back from the file. A read error is logged and reads as
    /// absent: callers treat it like a record that is gone, and nothing is written from it.
    pub fn get(&self, i: u64) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        if i >= self.tail_start {
            return self.tail.get((i - self.tail_start) as usize).copied();
        }
        debug_assert!(
            self.tail_start <= self.persisted,
            "only persisted records leave memory"
        );
        let page = i / PAGE * PAGE;
        if let Some((start, recs)) = self.cold.borrow().as_ref() {
            if *start == page {
                return recs.get((i - page) as usize).copied();
            }
        }
        match self.read_page(page) {
            Ok(recs) => {
                let r = recs.get((i - page) as usize).copied();
                *self.cold.borrow_mut() = Some((page, recs));
                r
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), record = i, error = %e, "cannot read back a persisted record");
                None
            }
        }
    }

    /// Records `[from, end)`: one positioned read for the part below the tail, the rest copied
    /// from memory. Stops early (and logs) if the file cannot be read.
    pub fn range(&self, from: u64, end: u64) -> Vec<T> {
        let end = end.min(self.len());
        if from >= end {
            return Vec::new();
        }
        let mut out = Vec::with_capacity((end - from) as usize);
        let cold_end = end.min(self.tail_start);
        if from < cold_end {
            match self.read_records(from, (cold_end - from) as usize) {
                Ok(recs) => out.extend(recs),
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), record = from, error = %e, "cannot read back persisted records");
                    return out;
                }
            }
        }
        if end > self.tail_start {
            let tail_from = (from.max(self.tail_start) - self.tail_start) as usize;
            let tail_end = (end - self.tail_start) as usize;
            out.extend_from_slice(&self.tail[tail_from..tail_end]);
        }
        out
    }

    fn read_page(&self, page: u64) -> Result<Vec<T>, StoreError> {
        self.read_records(page, (self.tail_start - page).min(PAGE) as usize)
    }

    fn read_records(&self, first: u64, count: usize) -> Result<Vec<T>, StoreError> {
        debug_assert!(
            first + count as u64 <= self.persisted,
            "read back only persisted records"
        );
        let mut bytes = vec![0u8; count * T::BYTES];
        let mut reader = self.reader.borrow_mut();
        if reader.is_none() {
            *reader = Some(
                File::open(&self.path)
                    .map_err(|e| StoreError::io(format!("open {}", self.path.display()), e))?,
            );
        }
        if let Some(f) = reader.as_ref() {
            f.read_exact_at(&mut bytes, first * T::BYTES as u64)
                .map_err(|e| StoreError::io(format!("read {}", self.path.display()), e))?;
        }
        bytes
            .chunks_exact(T::BYTES)
            .map(T::decode)
            .collect::<Option<Vec<T>>>()
            .ok_or_else(|| StoreError::Corruption {
                file: self.path.display().to_string(),
                offset: first * T::BYTES as u64,
                reason: "an undecodable record below the persisted count".into(),
            })
    }

    /// The first record number in `[lo, len)` for which `pred` is false (records are ordered so
    /// that `pred` holds for a prefix), reading back at most log2(len) pages.
    pub fn partition_point(&self, lo: u64, pred: impl Fn(&T) -> bool) -> u64 {
        let (mut lo, mut hi) = (lo.min(self.len()), self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(r) if pred(&r) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Drops records `[n, len)`, in memory and in the file.
    pub fn truncate(&mut self, n: u64) -> Result<(), StoreError> {
        if n >= self.len() {
            return Ok(());
        }
        if n >= self.tail_start {
            self.tail.truncate((n - self.tail_start) as usize);
        } else {
            self.tail.clear();
            self.tail_start = n;
        }
        *self.cold.borrow_mut() = None;
        if self.persisted > n {
            self.persisted = n;
            self.cut_file()?;
        }
        Ok(())
    }

    fn cut_file(&self) -> Result<(), StoreError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| StoreError::io(format!("open {}", self.path.display()), e))?;
        f.set_len(self.persisted * T::BYTES as u64)
            .map_err(|e| StoreError::io(format!("truncate {}", self.path.display()), e))
    }

    /// The encoded records not yet in the file, and the count they bring it to.
    pub fn unpersisted(&self) -> Option<(Vec<u8>, u64)> {
        if self.persisted >= self.len() {
            return None;
        }
        let from = (self.persisted - self.tail_start) as usize;
        let mut buf = Vec::with_capacity((self.tail.len() - from) * T::BYTES);
        for r in &self.tail[from..] {
            r.encode_into(&mut buf);
        }
        debug_assert_eq!(buf.len(), (self.tail.len() - from) * T::BYTES);
        Some((buf, self.len()))
    }

    /// Records up to `count` reached the file: all but the last `TAIL_KEEP` may leave memory.
    pub fn mark_persisted(&mut self, count: u64) {
        self.persisted = self.persisted.max(count.min(self.len()));
        let persisted_in_tail = (self.persisted - self.tail_start) as usize;
        if self.tail.len() >= 2 * TAIL_KEEP && persisted_in_tail > TAIL_KEEP {
            let drop = persisted_in_tail.min(self.tail.len() - TAIL_KEEP);
            self.tail.drain(..drop);
            self.tail_start += drop as u64;
        }
        debug_assert!(self.tail_start <= self.persisted);
    }

    /// Appends the records not yet in the file and syncs it (on the calling thread).
    pub fn persist(&mut self) -> Result<(), StoreError> {
        if let Some((bytes, count)) = self.unpersisted() {
            crate::persist::append_and_sync(&self.path, &bytes)?;
            self.mark_persisted(count);
        }
        Ok(())
    }

    /// Records held in memory (for tests and memory accounting).
    pub fn in_memory(&self) -> usize {
        self.tail.len() + self.cold.borrow().as_ref().map_or(0, |(_, r)| r.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct R(u64);

    impl FixedRecord for R {
        const BYTES: usize = 8;
        fn encode_into(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
        }
        fn decode(b: &[u8]) -> Option<Self> {
            let v = u64::from_be_bytes(b.try_into().ok()?);
            (v != u64::MAX).then_some(R(v))
        }
    }

    #[test]
    fn memory_stays_bounded_while_every_record_stays_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = PagedRecords::<R>::new(dir.path().join("r"));
        let n = 20 * TAIL_KEEP as u64 + 7;
        for i in 0..n {
            q.push(R(i * 3));
            if i % 500 == 0 {
                q.persist().expect("persist");
            }
        }
        q.persist().expect("persist");
        assert!(
            q.in_memory() <= 2 * TAIL_KEEP,
            "{} in memory",
            q.in_memory()
        );
        for i in (0..n).rev().step_by(97) {
            assert_eq!(q.get(i), Some(R(i * 3)));
        }
        assert!(q.in_memory() <= 2 * TAIL_KEEP + PAGE as usize);
        assert_eq!(q.partition_point(0, |r| r.0 < 3000), 1000);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn load_truncate_and_read_back_agree_with_a_plain_vector(
            n in 0u64..5000,
            persist_every in 200u64..3000,
            cut in 0u64..6000,
            keep_below in 0u64..16000,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("r");
            let mut q = PagedRecords::<R>::new(path.clone());
            let mut model = Vec::new();
            for i in 0..n {
                q.push(R(i * 3));
                model.push(R(i * 3));
                if i % persist_every == 0 {
                    q.persist().expect("persist");
                }
            }
            q.truncate(cut).expect("truncate");
            model.truncate(cut as usize);
            prop_assert_eq!(q.len(), model.len() as u64);
            for (i, r) in model.iter().enumerate().step_by(61) {
                prop_assert_eq!(q.get(i as u64), Some(*r));
            }
            let (a, b) = (model.len() as u64 / 3, model.len() as u64 / 3 + 900);
            let want_range = &model[a as usize..(b as usize).min(model.len())];
            prop_assert_eq!(q.range(a, b), want_range);
            q.persist().expect("persist");
            let loaded = PagedRecords::<R>::load(path, |_, r| r.0 < keep_below).expect("load");
            let want: Vec<R> = model.iter().copied().take_while(|r| r.0 < keep_below).collect();
            prop_assert_eq!(loaded.len(), want.len() as u64);
            for (i, r) in want.iter().enumerate().step_by(53) {
                prop_assert_eq!(loaded.get(i as u64), Some(*r));
            }
            prop_assert!(loaded.in_memory() <= 2 * TAIL_KEEP + PAGE as usize);
        }
    }
}
