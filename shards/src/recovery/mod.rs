//! Recovery: find where the commitlog's valid data ends, and tell a torn tail from corruption.
//!
//! # Fault model
//!
//! Survived (the store reopens with every acknowledged record, byte for byte):
//! - **Crash at any instant** (kill -9, power loss after a flush): the bytes after the last
//!   completed flush (an fdatasync, or under SYNC_FLUSH the O_DSYNC write itself) may be
//!   missing, zero, or partly written in any page order. Recovery keeps the longest prefix of
//!   whole valid records and zeroes the rest.
//!   Tests: `shards/tests/kill9.rs` (SIGKILL of 8 concurrent SYNC_FLUSH appenders, 24 times),
//!   `shards/tests/recovery.rs::given_a_torn_tail_*` (every cut point in the last records).
//! - **A segment file shorter than the segment size** (a crash between creating the file and
//!   preallocating it, or a truncated copy): its data ends where the file ends.
//!   Test: `recovery.rs::given_a_short_last_segment_file_*`.
//! - **A bit flip in the last record(s)**, with nothing valid after it: that record is dropped.
//!   Test: `recovery.rs::given_a_flipped_bit_in_the_last_record_*`.
//! - **EIO or short write on write/fdatasync** (or on an O_DSYNC write's flush): the append is
//!   never reported durable; the data stays in memory and the next flush writes it again from the
//!   same aligned position.
//!   Test: `shards/tests/faults.rs`.
//!
//! Refused (the shard stops with an error naming the file and offset, instead of dropping data):
//! - **A corrupt record below the last checkpointed durable offset that is followed by valid
//!   records**: silent truncation there would drop acknowledged messages.
//!   Test: `recovery.rs::given_a_flipped_bit_in_a_middle_record_*`.
//!
//! RocketMQ's record CRC covers only the body. A tear inside the topic or properties is caught
//! because unwritten bytes read as zeros (no valid topic or property holds NUL) or as invalid
//! UTF-8; stale bytes that happen to form valid text there would not be caught.
//!
//! Not detected at startup: corruption in segments older than the one holding the checkpoint
//! (only the newest segments are scanned, as RocketMQ scans its last files); such a record is
//! reported when a reader reaches it, and corruption of a record written after the checkpoint
//! that is followed by valid records (treated as a torn batch: the records after it are dropped;
//! they were never acknowledged as durable unless the checkpoint lagged).

use std::path::PathBuf;

use crate::commitlog::segment::{list, segment_file_name};
use crate::commitlog::CommitLogConfig;
use crate::error::StoreError;
use crate::message::record::{check, Check, StoredRecord, MAGIC_V1};
use crate::runtime::dma::{align_down, align_up, DmaFile, ALIGN};

/// Largest record recovery will look for: RocketMQ's 4 MiB body limit plus 64 KiB of header.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;
const READ_WINDOW: usize = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct RecoveredLog {
    /// Physical offset just past the last valid record.
    pub end: u64,
    /// Bytes from `align_down(end)` to `end`, rewritten by the next flush.
    pub tail_page: Vec<u8>,
    /// Where a torn or corrupt tail was cut, and why.
    pub truncated: Option<(u64, &'static str)>,
}

/// Reads a segment through a sliding window.
pub struct SegmentReader {
    file: DmaFile,
    pub start: u64,
    size: u64,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl SegmentReader {
    pub async fn open(dir: &std::path::Path, start: u64, size: u64) -> Result<Self, StoreError> {
        let path = dir.join(segment_file_name(start));
        let file = DmaFile::open_rw(&path, None)
            .await
            .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        Ok(Self {
            file,
            start,
            size,
            buf: Vec::new(),
            buf_pos: 0,
        })
    }

    /// Bytes at `[pos, pos+len)` of the segment (fewer at its end).
    pub async fn bytes(&mut self, pos: u64, len: usize) -> Result<&[u8], StoreError> {
        let len = len.min((self.size - pos.min(self.size)) as usize);
        if pos < self.buf_pos || pos + len as u64 > self.buf_pos + self.buf.len() as u64 {
            let from = align_down(pos);
            let want =
                align_up((pos - from) + len.max(READ_WINDOW) as u64).min(self.size - from) as usize;
            self.buf =
                self.file.read_at(from, want).await.map_err(|e| {
                    StoreError::io(format!("read segment {} at {from}", self.start), e)
                })?;
            self.buf_pos = from;
        }
        let at = (pos - self.buf_pos) as usize;
        let end = (at + len).min(self.buf.len());
        Ok(&self.buf[at.min(end)..end])
    }

    pub async fn close(self) {
        let _ = self.file.close().await;
    }
}

enum Step {
    Record(Box<StoredRecord>, u64),
    SegmentEnd,
    DataEnd,
    Bad(&'static str),
}

async fn step(r: &mut SegmentReader, pos: u64) -> Result<Step, StoreError> {
    if pos + 8 > r.size {
        return Ok(Step::SegmentEnd);
    }
    let head = r.bytes(pos, 8).await?;
    // A segment file shorter than its configured size (a crash between creating it and
    // preallocating it) ends where the file ends: nothing was written past it.
    let Some(&[a, b, c, d]) = head.get(..4) else {
        return Ok(Step::DataEnd);
    };
    let size = i32::from_be_bytes([a, b, c, d]);
    let want = (size.max(8) as usize).min(MAX_RECORD_BYTES);
    let phys = r.start + pos;
    let bytes = r.bytes(pos, want).await?;
    Ok(match check(bytes, phys as i64) {
        Check::Record(rec) => Step::Record(Box::new(rec), size as u64),
        Check::Blank => Step::SegmentEnd,
        Check::End => Step::DataEnd,
        Check::Invalid(why) => Step::Bad(why),
    })
}

/// Is there a whole valid record somewhere in `(pos, pos + MAX_RECORD_BYTES]` of this segment?
async fn valid_record_after(r: &mut SegmentReader, pos: u64) -> Result<bool, StoreError> {
    let limit = (pos + MAX_RECORD_BYTES as u64).min(r.size.saturating_sub(8));
    let magic = MAGIC_V1.to_be_bytes();
    let mut q = pos + 1;
    while q <= limit {
        let window = r.bytes(q, 64 * 1024 + 8).await?.to_vec();
        if window.len() < 8 {
            break;
        }
        for i in 0..window.len() - 7 {
            if window[i + 4..i + 8] == magic {
                let at = q + i as u64;
                if let Step::Record(..) = step(r, at).await? {
                    return Ok(true);
                }
            }
        }
        q += (window.len() - 7) as u64;
    }
    Ok(false)
}

/// Scans from the segment holding `checkpoint` (the last durable offset recorded) to the end.
/// Calls `on_record` for every valid record at or after `dispatch_from`.
pub async fn recover_commitlog(
    cfg: &CommitLogConfig,
    checkpoint: u64,
    dispatch_from: u64,
    mut on_record: impl FnMut(u64, &StoredRecord),
) -> Result<RecoveredLog, StoreError> {
    let segs = list(&cfg.dir)?;
    if segs.is_empty() {
        return Ok(RecoveredLog {
            end: cfg.base_offset,
            tail_page: Vec::new(),
            truncated: None,
        });
    }
    let scan_from = checkpoint.min(dispatch_from).max(cfg.base_offset);
    let first = segs
        .iter()
        .rev()
        .find(|s| **s <= scan_from)
        .copied()
        .unwrap_or(segs[0]);
    let mut end = first;
    let mut truncated = None;
    'segments: for &start in segs.iter().filter(|s| **s >= first) {
        if start != end {
            // The previous segment ended early: later files are leftovers of a torn roll.
            break;
        }
        let mut r = SegmentReader::open(&cfg.dir, start, cfg.segment_bytes).await?;
        let mut pos = 0u64;
        loop {
            match step(&mut r, pos).await? {
                Step::Record(rec, size) => {
                    if start + pos >= dispatch_from {
                        on_record(start + pos, &rec);
                    }
                    pos += size;
                    end = start + pos;
                }
                Step::SegmentEnd => {
                    end = start + cfg.segment_bytes;
                    r.close().await;
                    continue 'segments;
                }
                Step::DataEnd => {
                    r.close().await;
                    break 'segments;
                }
                Step::Bad(why) => {
                    let phys = start + pos;
                    if phys < checkpoint && valid_record_after(&mut r, pos).await? {
                        return Err(StoreError::Corruption {
                            file: cfg.dir.join(segment_file_name(start)).display().to_string(),
                            offset: pos,
                            reason: why.to_string(),
                        });
                    }
                    truncated = Some((phys, why));
                    r.close().await;
                    break 'segments;
                }
            }
        }
    }
    // Whatever follows the end is torn or stale: later segments go, the rest of this one is zeroed.
    for &start in segs.iter().filter(|s| **s > end) {
        {
            let path: PathBuf = cfg.dir.join(segment_file_name(start));
            std::fs::remove_file(&path)
                .map_err(|e| StoreError::io(format!("remove {}", path.display()), e))?;
        }
    }
    let tail_page = zero_after(cfg, end).await?;
    Ok(RecoveredLog {
        end,
        tail_page,
        truncated,
    })
}

/// Punches out everything after `end` in its segment and returns the partial page before it.
async fn zero_after(cfg: &CommitLogConfig, end: u64) -> Result<Vec<u8>, StoreError> {
    let seg_start = crate::commitlog::segment::segment_start(cfg, end);
    let path = cfg.dir.join(segment_file_name(seg_start));
    if !path.exists() {
        return Ok(Vec::new());
    }
    let pos = end - seg_start;
    let file = DmaFile::open_rw(&path, None)
        .await
        .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
    let hole_from = align_up(pos);
    if hole_from < cfg.segment_bytes {
        file.punch_hole(hole_from, cfg.segment_bytes - hole_from)
            .await
            .map_err(|e| StoreError::io(format!("punch {}", path.display()), e))?;
        file.pre_allocate(cfg.segment_bytes)
            .await
            .map_err(|e| StoreError::io(format!("preallocate {}", path.display()), e))?;
    }
    let page_from = align_down(pos);
    let mut page = if pos > page_from {
        file.read_at(page_from, (pos - page_from) as usize)
            .await
            .map_err(|e| StoreError::io(format!("read {}", path.display()), e))?
    } else {
        Vec::new()
    };
    page.truncate((pos - page_from) as usize);
    debug_assert!(page.len() < ALIGN as usize);
    let _ = file.close().await;
    Ok(page)
}
