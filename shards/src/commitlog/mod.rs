//! The CommitLog of one log: fixed-size preallocated segments written with O_DIRECT, a group
//! commit flusher, and a tail cache of recently written bytes.
//!
//! Appends are synchronous and only touch memory: each record lands in the pending region of its
//! segment. Group commit is two tasks (see [`flusher`]): the writer takes every pending byte at
//! once and writes it with one DMA write per segment (SYNC_FLUSH: O_DSYNC, durable when it
//! completes); under ASYNC_FLUSH the syncer makes everything written so far durable with one
//! fdatasync per segment on an interval. The partial last page stays in memory and is written
//! again with the next write.

mod flusher;
pub mod segment;
pub mod stats;
pub mod warmer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes};

use crate::error::StoreError;
use crate::flush::{Durability, Notify, WaitError};
use crate::message::record::BLANK_MAGIC;
use crate::runtime::dma::{align_down, FaultInjector};
use segment::{segment_file_name, Segments};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// An append completes after the fdatasync that covers it.
    Sync,
    /// An append completes in memory; the flusher runs on an interval or when a buffer fills.
    Async,
}

#[derive(Debug, Clone)]
pub struct CommitLogConfig {
    pub dir: PathBuf,
    /// Physical offset of the first byte this log can hold: the log id sits in the high bits.
    pub base_offset: u64,
    pub segment_bytes: u64,
    pub flush_mode: FlushMode,
    pub flush_interval: Duration,
    /// ASYNC_FLUSH flushes early once this many bytes are pending.
    pub flush_threshold_bytes: usize,
    /// Appenders wait (backpressure) while this many bytes are not yet written.
    pub max_pending_bytes: usize,
    pub tail_cache_bytes: usize,
    /// Zero the current segment this far ahead of the write position (0: off). See [`warmer`].
    pub warm_ahead_bytes: u64,
}

/// The warmer's progress, shared with the flusher (see [`warmer`]).
#[derive(Default)]
struct WarmState {
    /// Everything below this offset in the current segment has been written (data or zeros).
    warmed_to: Cell<u64>,
    /// The zeroing write under way, as physical `[start, end)`.
    in_flight: Cell<Option<(u64, u64)>>,
    running: Cell<bool>,
    wake: Notify,
    done: Notify,
}

/// Bytes appended but not yet written, starting at an aligned position of one segment.
struct Region {
    segment_start: u64,
    /// Physical offset of `data[0]`; page aligned.
    base: u64,
    data: Vec<u8>,
    /// True once the segment rolled over: after its last write the region is dropped.
    sealed: bool,
}

struct WriteState {
    /// Physical offset of the next byte to append.
    write_pos: u64,
    regions: VecDeque<Region>,
    /// Chunks taken from regions and being written: readable from memory until they are on disk.
    inflight: Vec<Chunk>,
    /// Recently flushed chunks: (physical start, bytes); each record lies wholly in one chunk.
    tail: VecDeque<(u64, Bytes)>,
    tail_bytes: usize,
}

/// A region's bytes frozen for one write (no copy): `bytes` start at the aligned `base`.
#[derive(Clone)]
struct Chunk {
    segment_start: u64,
    base: u64,
    bytes: Bytes,
    sealed: bool,
}

pub struct CommitLog {
    cfg: CommitLogConfig,
    state: RefCell<WriteState>,
    segments: Segments,
    pub durability: Durability,
    flush_requested: Notify,
    /// Segment-file reads under way, and their wake-up when one ends (see `read`).
    disk_reads: Cell<usize>,
    disk_read_done: Notify,
    pending_freed: Notify,
    stopping: Cell<bool>,
    /// Wakes the syncer: a write completed (or the writer stopped).
    sync_requested: Notify,
    flusher_done: Notify,
    writer_running: Cell<bool>,
    syncer_running: Cell<bool>,
    /// End of the bytes written to segment files. ASYNC_FLUSH: `written_end - durable` awaits an
    /// fdatasync of the segments in `unsynced_segments`; SYNC_FLUSH (O_DSYNC): the two are equal.
    written_end: Cell<u64>,
    unsynced_segments: RefCell<std::collections::BTreeSet<u64>>,
    last_sync: Cell<std::time::Instant>,
    warm: WarmState,
    stats: RefCell<stats::FlushStats>,
}

pub struct Appended {
    pub physical_offset: u64,
    pub end: u64,
    /// Durability attempt sequence at append time, for [`Durability::wait`].
    pub since: u64,
    /// ASYNC_FLUSH: the buffer is past the flush threshold and the writer has not taken it yet.
    /// The caller should yield, so the writer can start on it while appends go on into the next.
    pub filled_buffer: bool,
}

impl CommitLog {
    /// Opens a log whose valid data ends at `end` (found by recovery); `tail_page` holds the bytes
    /// from `align_down(end)` to `end` so the partial page can be rewritten.
    pub fn new(
        cfg: CommitLogConfig,
        end: u64,
        tail_page: Vec<u8>,
        faults: Option<Rc<FaultInjector>>,
    ) -> Rc<Self> {
        debug_assert_eq!(
            tail_page.len() as u64,
            end - align_down(end).max(cfg.base_offset)
        );
        let segment_start = segment::segment_start(&cfg, end);
        let mut regions = VecDeque::new();
        if !tail_page.is_empty() {
            regions.push_back(Region {
                segment_start,
                base: align_down(end),
                data: tail_page,
                sealed: false,
            });
        }
        Rc::new(Self {
            segments: Segments::new(cfg.dir.clone(), faults, cfg.flush_mode == FlushMode::Sync),
            state: RefCell::new(WriteState {
                write_pos: end,
                regions,
                inflight: Vec::new(),
                tail: VecDeque::new(),
                tail_bytes: 0,
            }),
            durability: Durability::new(end),
            cfg,
            flush_requested: Notify::default(),
            pending_freed: Notify::default(),
            disk_reads: Cell::new(0),
            disk_read_done: Notify::default(),
            stopping: Cell::new(false),
            sync_requested: Notify::default(),
            flusher_done: Notify::default(),
            writer_running: Cell::new(false),
            syncer_running: Cell::new(false),
            written_end: Cell::new(end),
            unsynced_segments: RefCell::new(std::collections::BTreeSet::new()),
            last_sync: Cell::new(std::time::Instant::now()),
            warm: WarmState::default(),
            stats: RefCell::new(stats::FlushStats::new()),
        })
    }

    pub fn config(&self) -> &CommitLogConfig {
        &self.cfg
    }

    pub fn write_pos(&self) -> u64 {
        self.state.borrow().write_pos
    }

    /// Bytes not yet written: in regions and in writes under way.
    fn pending_bytes(&self) -> usize {
        let st = self.state.borrow();
        st.regions.iter().map(|r| r.data.len()).sum::<usize>()
            + st.inflight.iter().map(|c| c.bytes.len()).sum::<usize>()
    }

    /// Waits while too many bytes are pending, so a slow disk slows appenders instead of
    /// growing memory.
    pub async fn reserve(&self, len: usize) {
        loop {
            let pending = self.pending_bytes();
            if pending + len <= self.cfg.max_pending_bytes || pending == 0 {
                return;
            }
            self.flush_requested.notify_all();
            self.pending_freed.notified().await;
        }
    }

    /// Appends one record of `len` bytes, written by `encode` given its physical offset.
    /// Rolls to the next segment (writing the end-of-segment blank) when it does not fit.
    pub fn append(
        &self,
        len: usize,
        encode: impl FnOnce(&mut Vec<u8>, u64),
    ) -> Result<Appended, StoreError> {
        let seg = self.cfg.segment_bytes;
        if len as u64 + 8 > seg {
            return Err(StoreError::RecordTooLarge {
                size: len,
                limit: seg as usize - 8,
            });
        }
        let mut st = self.state.borrow_mut();
        let mut seg_start = segment::segment_start(&self.cfg, st.write_pos);
        if st.write_pos + len as u64 + 8 > seg_start + seg {
            let remaining = seg_start + seg - st.write_pos;
            let region = region_for(&mut st, seg_start);
            region.data.put_i32(remaining as i32);
            region.data.put_i32(BLANK_MAGIC);
            region.sealed = true;
            st.write_pos = seg_start + seg;
            seg_start += seg;
        }
        let phys = st.write_pos;
        let region = region_for(&mut st, seg_start);
        let before = region.data.len();
        encode(&mut region.data, phys);
        debug_assert_eq!(
            region.data.len() - before,
            len,
            "record encoded to a different length"
        );
        debug_assert_eq!(
            region.base + before as u64,
            phys,
            "record does not start at the write position"
        );
        st.write_pos += len as u64;
        let end = st.write_pos;
        let pending: usize = st.regions.iter().map(|r| r.data.len()).sum();
        drop(st);
        let threshold = self.cfg.flush_threshold_bytes;
        let filled_buffer = self.cfg.flush_mode == FlushMode::Async && pending >= threshold;
        if self.cfg.flush_mode == FlushMode::Sync || pending >= threshold {
            self.flush_requested.notify_all();
        }
        Ok(Appended {
            physical_offset: phys,
            end,
            since: self.durability.attempt_seq(),
            filled_buffer,
        })
    }

    /// Waits until `a` is durable (SYNC_FLUSH), failing if the flush covering it failed.
    /// The timeout is enforced by [`CommitLog::run_deadline_tick`], to within one tick.
    pub async fn wait_durable(&self, a: &Appended, timeout: Duration) -> Result<(), StoreError> {
        match self.durability.wait(a.end, a.since, timeout).await {
            Ok(()) => Ok(()),
            Err(WaitError::Failed(e)) => Err(StoreError::FlushFailed(e)),
            Err(WaitError::TimedOut) => Err(StoreError::FlushTimeout),
        }
    }

    /// Times out durability waiters past their deadline; sleeps while there are none.
    pub async fn run_deadline_tick(self: Rc<Self>) {
        while !self.stopping.get() {
            if self.durability.has_waiters() {
                crate::runtime::sleep(DEADLINE_TICK).await;
                self.durability.expire(std::time::Instant::now());
            } else {
                let first = self.durability.first_waiter.notified();
                // Re-check after arming: a waiter may have come in between.
                if !self.durability.has_waiters() {
                    crate::runtime::timeout(DEADLINE_TICK * 100, first).await;
                }
            }
        }
    }

    fn fail(&self, end: u64, e: StoreError) -> StoreError {
        self.durability.flush_failed(end, e.to_string());
        e
    }

    /// Reads `[phys, phys+size)`: from pending memory, the tail cache, or the segment file.
    pub async fn read(&self, phys: u64, size: usize) -> Result<Bytes, StoreError> {
        if let Some(b) = self.read_memory(phys, size) {
            return Ok(b);
        }
        let segment_start = segment::segment_start(&self.cfg, phys);
        let file = self
            .segments
            .file(segment_start, self.cfg.segment_bytes)
            .await?;
        // Reads of old data queue in front of the group commit's fdatasync in the device:
        // with 64 reads in flight, SYNC_FLUSH appends fell from ~100k to under 1k per second
        // (store_bench --readers). Few reads in flight keep the device queue short: with 64
        // readers, 2 in flight gave 26-31k appends/s and 1 gave 46k (reads 53-60k vs 46k/s).
        while self.disk_reads.get() >= MAX_DISK_READS {
            self.disk_read_done.notified().await;
        }
        let data = {
            let _permit = DiskReadPermit::take(self);
            file.read_at(phys - segment_start, size).await
        };
        let data = data.map_err(|e| StoreError::Io {
            context: format!("read {phys}+{size}"),
            source: e,
        })?;
        if data.len() != size {
            return Err(StoreError::NotFound(format!(
                "short read at physical offset {phys}"
            )));
        }
        Ok(Bytes::from(data))
    }

    /// End of the bytes already written to segment files (readable with DMA reads).
    pub fn written_end(&self) -> u64 {
        self.written_end.get()
    }

    /// Whether `[phys, phys+size)` is served from memory (pending, in flight or tail cache).
    pub fn in_memory(&self, phys: u64, size: usize) -> bool {
        self.read_memory(phys, size).is_some()
    }

    fn read_memory(&self, phys: u64, size: usize) -> Option<Bytes> {
        let st = self.state.borrow();
        let end = phys + size as u64;
        for r in &st.regions {
            if r.base <= phys && end <= r.base + r.data.len() as u64 {
                let from = (phys - r.base) as usize;
                return Some(Bytes::copy_from_slice(&r.data[from..from + size]));
            }
        }
        for c in &st.inflight {
            if c.base <= phys && end <= c.base + c.bytes.len() as u64 {
                let from = (phys - c.base) as usize;
                return Some(c.bytes.slice(from..from + size));
            }
        }
        // The newest chunk that holds the whole range: partial pages are written again, so an
        // older chunk may hold only a prefix.
        for (base, bytes) in st.tail.iter().rev() {
            if *base <= phys && end <= base + bytes.len() as u64 {
                let from = (phys - base) as usize;
                return Some(bytes.slice(from..from + size));
            }
            if base + (bytes.len() as u64) < phys {
                break;
            }
        }
        None
    }

    /// Asks the flusher to write what is pending and stop; waits for it.
    pub async fn stop(&self) {
        self.stopping.set(true);
        self.flush_requested.notify_all();
        self.sync_requested.notify_all();
        self.durability.first_waiter.notify_all();
        while self.writer_running.get() || self.syncer_running.get() {
            self.flusher_done.notified().await;
        }
        self.wait_warmer_stopped().await;
        if self.write_pos() > self.durability.durable() {
            if let Err(e) = self.flush_once().await {
                tracing::error!(dir = %self.cfg.dir.display(), error = %e, "final commitlog flush failed");
            }
        }
        self.segments.close_all().await;
    }

    /// Write and fdatasync round latencies and sizes since the log opened.
    pub fn flush_stats(&self) -> stats::FlushStats {
        self.stats.borrow().clone()
    }

    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// Segment start offsets present on disk, oldest first.
    pub fn segment_starts(&self) -> Result<Vec<u64>, StoreError> {
        segment::list(&self.cfg.dir)
    }

    pub fn segment_path(&self, start: u64) -> PathBuf {
        self.cfg.dir.join(segment_file_name(start))
    }
}

/// How often durability waiters are checked against their deadline (`syncFlushTimeout`).
const DEADLINE_TICK: Duration = Duration::from_millis(10);

/// Segment-file reads in flight per log.
const MAX_DISK_READS: usize = 1;

/// One of the `MAX_DISK_READS` slots, given back even if the reading task is dropped.
struct DiskReadPermit<'a>(&'a CommitLog);

impl<'a> DiskReadPermit<'a> {
    fn take(log: &'a CommitLog) -> Self {
        debug_assert!(log.disk_reads.get() < MAX_DISK_READS);
        log.disk_reads.set(log.disk_reads.get() + 1);
        Self(log)
    }
}

impl Drop for DiskReadPermit<'_> {
    fn drop(&mut self) {
        self.0.disk_reads.set(self.0.disk_reads.get() - 1);
        self.0.disk_read_done.notify_all();
    }
}

fn region_for_chunk(regions: &mut VecDeque<Region>, segment_start: u64) -> Option<&mut Region> {
    regions
        .iter_mut()
        .find(|r| r.segment_start == segment_start)
}

fn region_for(st: &mut WriteState, segment_start: u64) -> &mut Region {
    let pos = st.write_pos;
    if st
        .regions
        .back()
        .is_none_or(|r| r.segment_start != segment_start)
    {
        st.regions.push_back(Region {
            segment_start,
            base: align_down(pos),
            data: Vec::new(),
            sealed: false,
        });
    }
    let r = st.regions.back_mut().expect("region was just ensured");
    debug_assert_eq!(
        r.base + r.data.len() as u64,
        pos,
        "region does not end at the write position"
    );
    r
}
