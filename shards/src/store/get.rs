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
            match queues.get(&(topic.to_string(), queue_id)) {
                None => (0, 0, Vec::new()),
                Some(q) => {
                    let scan = (max_msgs * 20).max(800);
                    (
                        q.min_offset(),
                        q.max_offset(),
                        q.range(offset.max(q.min_offset()), scan).to_vec(),
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
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0u64;
        let mut missing = false;
        for e in entries {
            if records.len() >= max_msgs || bytes >= MAX_TRANSFER_BYTES {
                break;
            }
            scanned += 1;
            if !filter(e.tag_code) {
                continue;
            }
            match self.read_record(e.phys, e.size).await {
                Ok(rec) => {
                    bytes += rec.len();
                    records.push(rec);
                }
                Err(_) => missing = true,
            }
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
