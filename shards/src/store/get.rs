//! Reading a queue from an offset (PULL_MESSAGE's store side, §3.2 "Store result mapping").

use bytes::Bytes;

use super::Log;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    /// Entries were scanned but none passed the filter.
    NoMatchedMessage,
    /// The queue does not exist or is empty.
    NoMessageInQueue,
    OffsetTooSmall,
    /// offset == max: the long-poll case.
    OffsetOverflowOne,
    OffsetOverflowBadly,
    /// Entries exist but their commitlog data is gone.
    MessageWasRemoving,
}

#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    /// Stored records, exactly as in the commitlog.
    pub records: Vec<Bytes>,
    pub next_begin_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
}

/// 4.9's in-memory batch caps: 256 KiB or 32 messages, and maxMsgNums.
pub const MAX_TRANSFER_BYTES: usize = 256 * 1024;
/// Lagging consumers read nearby records of a queue with one DMA read of at most this much.
pub const READ_AHEAD_BYTES: u64 = 1024 * 1024;

impl Log {
    /// Reads up to `max_msgs` records from `offset`, keeping those whose tag code passes `filter`.
    pub async fn get(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_msgs: usize,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetResult {
        let (min, max, entries) = {
            let queues = self.queues.borrow();
            match queues.get(&super::QueueRef(topic, queue_id)) {
                None => (0, 0, Vec::new()),
                Some(q) => {
                    let scan = (max_msgs * 20).max(800);
                    (
                        q.min_offset(),
                        q.max_offset(),
                        q.range(offset.max(q.min_offset()), scan),
                    )
                }
            }
        };
        let result = |status, next| GetResult {
            status,
            records: Vec::new(),
            next_begin_offset: next,
            min_offset: min,
            max_offset: max,
        };
        if max == 0 {
            return result(GetStatus::NoMessageInQueue, 0);
        }
        if offset < min {
            return result(GetStatus::OffsetTooSmall, min);
        }
        if offset == max {
            return result(GetStatus::OffsetOverflowOne, offset);
        }
        if offset > max {
            return result(GetStatus::OffsetOverflowBadly, max);
        }
        // Pick what passes the filter within the batch caps, then read it in runs.
        let mut picked = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0u64;
        for e in entries {
            if picked.len() >= max_msgs || bytes >= MAX_TRANSFER_BYTES {
                break;
            }
            scanned += 1;
            if filter(e.tag_code) {
                bytes += e.size as usize;
                picked.push(e);
            }
        }
        let mut records = Vec::with_capacity(picked.len());
        let mut missing = false;
        let mut i = 0;
        while i < picked.len() {
            let run = self.read_ahead_run(&picked[i..]);
            if run > 1 {
                let first = picked[i];
                let last = picked[i + run - 1];
                let span = (last.phys + last.size as u64 - first.phys) as u32;
                match self.read_record(first.phys, span).await {
                    Ok(block) => {
                        for e in &picked[i..i + run] {
                            let at = (e.phys - first.phys) as usize;
                            records.push(block.slice(at..at + e.size as usize));
                        }
                    }
                    Err(_) => missing = true,
                }
                i += run;
                continue;
            }
            match self.read_record(picked[i].phys, picked[i].size).await {
                Ok(rec) => records.push(rec),
                Err(_) => missing = true,
            }
            i += 1;
        }
        let next = offset + scanned;
        let status = if !records.is_empty() {
            GetStatus::Found
        } else if missing {
            GetStatus::MessageWasRemoving
        } else {
            GetStatus::NoMatchedMessage
        };
        GetResult {
            status,
            records,
            next_begin_offset: next,
            min_offset: min,
            max_offset: max,
        }
    }
}

impl Log {
    /// How many of `entries` (in commitlog order) one read-ahead should cover: records already
    /// in the segment file, in one segment, within [`READ_AHEAD_BYTES`]. 1 means read alone.
    fn read_ahead_run(&self, entries: &[crate::consume_queue::CqEntry]) -> usize {
        let Some(first) = entries.first() else {
            return 0;
        };
        let cl = self.commitlog();
        let written = cl.written_end();
        let segment = crate::commitlog::segment::segment_start(cl.config(), first.phys);
        // Unwritten or cached data is read from memory, record by record, without copying.
        if first.phys + first.size as u64 > written || cl.in_memory(first.phys, first.size as usize)
        {
            return 1;
        }
        let mut n = 0;
        for e in entries {
            let end = e.phys + e.size as u64;
            if end > written
                || end - first.phys > READ_AHEAD_BYTES
                || crate::commitlog::segment::segment_start(cl.config(), end - 1) != segment
            {
                break;
            }
            n += 1;
        }
        n.max(1)
    }
}
