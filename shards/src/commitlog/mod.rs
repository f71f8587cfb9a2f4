//! The CommitLog of one log: fixed-size preallocated segments written with O_DIRECT, a group
//! commit flusher, and a tail cache of recently written bytes.
//!
//! Appends are synchronous and only touch memory: each record is encoded straight into an
//! aligned block, the buffer its DMA write is issued from, so the record is copied once. Group
//! commit is two tasks (see [`flusher`]): the writer writes full blocks as soon as they fill and
//! the open block whenever the write of its first page is done (SYNC_FLUSH: O_DSYNC, durable
//! when it completes), with several writes in flight; under ASYNC_FLUSH the syncer makes
//! everything written so far durable with one fdatasync per segment on an interval. The partial
//! last page is copied into the next block and written again with the bytes that follow it.
//!
//! Blocks are sized from the last round (see [`block_capacity`]), so memory follows the load:
//! before, a round grew one `Vec` by reallocation and was then copied into a DMA buffer, ~8 % of
//! the broker's CPU on SYNC_FLUSH batch sends (perf, 2026-11-22). A full block is followed by
//! the next at its end, a record may continue from one into the next, and blocks that do not
//! share a page are written concurrently.

mod flusher;
pub mod segment;
pub mod stats;
pub mod warmer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::StoreError;
use crate::flush::{Durability, Notify, WaitError};
use crate::message::record::BLANK_MAGIC;
use crate::runtime::dma::{align_down, align_up, AlignedBuf, FaultInjector, SharedBuf};
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

/// Bytes appended but not yet written, in one aligned buffer starting at an aligned position of
/// one segment. Blocks of one segment tile it: the next starts where a full one ends, so a
/// record may span blocks. Only the block a write round leaves open is followed by one that
/// starts at its partial last page, with a copy of that page.
struct Block {
    segment_start: u64,
    /// Physical offset of the buffer's first byte; page aligned.
    base: u64,
    buf: AlignedBuf,
    /// True once the segment rolled over: no append follows in this segment.
    sealed: bool,
}

impl Block {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }
}

struct WriteState {
    /// Physical offset of the next byte to append.
    write_pos: u64,
    /// Blocks taking appends, oldest first; only the last one may have room.
    regions: VecDeque<Block>,
    /// Chunks whose write failed, to be written again first by the next round.
    retry: Vec<Chunk>,
    /// Chunks taken by the writer and not yet advanced over, in offset order: readable from
    /// memory until they are on disk.
    inflight: VecDeque<flusher::Flying>,
    next_seq: u64,
    /// The first error of a failed write, until its chunks are restored.
    write_error: Option<StoreError>,
    /// End of the bytes taken by the writer so far.
    taken_end: u64,
    /// End of the open block when the writer last took it, and when: a take of the open block
    /// ends a round.
    open_taken_end: u64,
    open_taken_at: std::time::Instant,
    /// Recently written chunks, oldest first, for reads of recent data.
    tail: VecDeque<Chunk>,
    /// Memory the tail holds: its buffers' allocated sizes.
    tail_bytes: usize,
    /// Bytes appended between the last two takes of the open block: sizes the next block.
    last_round: usize,
    /// Largest block for this log's flush mode.
    max_block: usize,
}

/// A block frozen for one write and then kept in the tail cache: no copy on the way.
/// A chunk may overlap the one before it by the partial page it carried over; they agree on
/// those bytes, and the later one is written after the earlier.
#[derive(Clone)]
struct Chunk {
    segment_start: u64,
    base: u64,
    buf: SharedBuf,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// End of the chunk's write, zero padding included.
    fn padded_end(&self) -> u64 {
        align_up(self.end())
    }
}

/// Smallest block: a round of one small record should not pin much memory in the tail cache.
const MIN_BLOCK: usize = 16 * 1024;
/// Largest block under SYNC_FLUSH: a bigger round is several blocks, written concurrently. One
/// large O_DSYNC write beats several smaller concurrent ones on the disks measured (store_bench
/// SYNC 1024 appenders: 1 MiB blocks 235/269 MB/s vs one write per round 297/325; broker SYNC
/// batch-128 with 2 MiB blocks 4-7 % below 16 MiB in three interleaved pairs, 2026-11-22).
const MAX_SYNC_BLOCK: usize = 16 * 1024 * 1024;
/// Largest block under ASYNC_FLUSH, where a full block is written as soon as it fills: several
/// blocks in flight keep the disk busy (fio on the test VM: 2 MiB writes at depth 4 1498 MB/s,
/// 8 MiB at depth 1 1066 MB/s; store_bench ASYNC with 2 MiB blocks 1118 MB/s, data writes in
/// flight 93 % of the time).
const MAX_ASYNC_BLOCK: usize = 2 * 1024 * 1024;

/// Capacity for a new block when the last round (between two takes of the open block) held
/// `last_round` bytes: half again the last round, so a steady load fills about one block per
/// round, up to `max_block`.
fn block_capacity(last_round: usize, max_block: usize) -> usize {
    align_up((last_round + last_round / 2).clamp(MIN_BLOCK, max_block) as u64) as usize
}

pub struct CommitLog {
    cfg: CommitLogConfig,
    state: RefCell<WriteState>,
    segments: Segments,
    pub durability: Durability,
    flush_requested: Notify,
    /// Segment-file reads under way, and their wake-up when one ends or reads may go on (see
    /// `read`).
    disk_reads: Cell<usize>,
    disk_read_done: Notify,
    /// SYNC_FLUSH: device time (µs) reads may still take while appends wait to be written (see
    /// [`ReadCredit`]).
    read_credit: ReadCredit,
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
            let mut buf = AlignedBuf::with_capacity(MIN_BLOCK.max(tail_page.len()));
            buf.extend_from_slice(&tail_page);
            regions.push_back(Block {
                segment_start,
                base: align_down(end),
                buf,
                sealed: false,
            });
        }
        Rc::new(Self {
            segments: Segments::new(cfg.dir.clone(), faults, cfg.flush_mode == FlushMode::Sync),
            state: RefCell::new(WriteState {
                write_pos: end,
                regions,
                retry: Vec::new(),
                inflight: VecDeque::new(),
                next_seq: 0,
                write_error: None,
                taken_end: end,
                open_taken_end: end,
                open_taken_at: std::time::Instant::now(),
                tail: VecDeque::new(),
                tail_bytes: 0,
                last_round: 0,
                max_block: match cfg.flush_mode {
                    FlushMode::Sync => MAX_SYNC_BLOCK,
                    FlushMode::Async => MAX_ASYNC_BLOCK,
                },
            }),
            durability: Durability::new(end),
            cfg,
            flush_requested: Notify::default(),
            pending_freed: Notify::default(),
            disk_reads: Cell::new(0),
            disk_read_done: Notify::default(),
            read_credit: ReadCredit::new(),
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

    /// Bytes not yet written: in blocks, in writes under way and in writes to retry.
    fn pending_bytes(&self) -> usize {
        let st = self.state.borrow();
        st.regions.iter().map(|r| r.buf.len()).sum::<usize>()
            + st.inflight
                .iter()
                .map(|f| &f.chunk)
                .chain(&st.retry)
                .map(|c| c.buf.len())
                .sum::<usize>()
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
        encode: impl FnOnce(&mut [u8], u64),
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
            let mut blank = [0u8; 8];
            blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
            blank[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
            put_bytes(&mut st, seg_start, &blank);
            if let Some(b) = st.regions.back_mut() {
                b.sealed = true;
            }
            // The rest of the segment stays unwritten: readers stop at the blank.
            st.write_pos = seg_start + seg;
            seg_start += seg;
        }
        let phys = st.write_pos;
        let block = block_for(&mut st, seg_start);
        if block.buf.remaining() >= len {
            block.buf.append_with(len, |dst| encode(dst, phys));
            st.write_pos += len as u64;
        } else {
            // The record continues in the next block: encode it aside (at most once per block).
            let mut record = vec![0u8; len];
            encode(&mut record, phys);
            put_bytes(&mut st, seg_start, &record);
        }
        let end = st.write_pos;
        // SYNC_FLUSH: every append wakes the writer. ASYNC_FLUSH: a full block (any but the
        // last) is written as soon as the writer sees it, the open one at the threshold.
        let filled_buffer = self.cfg.flush_mode == FlushMode::Async
            && (st.regions.len() > 1
                || st.regions.iter().map(|r| r.buf.len()).sum::<usize>()
                    >= self.cfg.flush_threshold_bytes);
        drop(st);
        if self.cfg.flush_mode == FlushMode::Sync || filled_buffer {
            self.flush_requested.notify_all();
        }
        self.read_credit.busy();
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
    async fn run_deadline_tick(self: Rc<Self>) {
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
        loop {
            let wake = self.disk_read_done.notified();
            if self.disk_reads.get() < MAX_DISK_READS && self.read_may_start() {
                break;
            }
            match self.read_credit.idle_deficit() {
                // Idle, in debt: credit comes with time, and nothing else may wake us.
                Some(d) => {
                    crate::runtime::timeout(d, wake).await;
                }
                _ => wake.await,
            }
        }
        let data = {
            let _permit = DiskReadPermit::take(self);
            let started = std::time::Instant::now();
            let data = file.read_at(phys - segment_start, size).await;
            self.read_credit.spend(started.elapsed());
            data
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

    /// Under SYNC_FLUSH a read of old data starts only with read credit (see [`ReadCredit`]):
    /// every append waits for the device, and a read in the device's queue delays the next write
    /// by its whole duration (store_bench SYNC, 64 appenders, 64 readers of old data: ~60k
    /// appends/s against ~100k without readers). ASYNC_FLUSH appends do not wait for the device,
    /// and reads go on as before.
    fn read_may_start(&self) -> bool {
        self.cfg.flush_mode != FlushMode::Sync || self.read_credit.available()
    }

    /// End of the bytes already written to segment files (readable with DMA reads).
    pub fn written_end(&self) -> u64 {
        self.written_end.get()
    }

    /// Whether `[phys, phys+size)` is served from memory (pending, in flight or tail cache).
    pub fn in_memory(&self, phys: u64, size: usize) -> bool {
        self.walk_memory(phys, size, |_| {})
    }

    fn read_memory(&self, phys: u64, size: usize) -> Option<Bytes> {
        let mut out = Vec::with_capacity(size);
        self.walk_memory(phys, size, |piece| out.extend_from_slice(piece))
            .then(|| Bytes::from(out))
    }

    /// Calls `f` with consecutive pieces of `[phys, phys+size)` held in memory (pending blocks,
    /// writes under way or to retry, the tail cache), in order; false if memory does not hold
    /// all of it (then some pieces may have been passed already).
    fn walk_memory(&self, phys: u64, size: usize, mut f: impl FnMut(&[u8])) -> bool {
        let st = self.state.borrow();
        let end = phys + size as u64;
        let mut pos = phys;
        while pos < end {
            let Some((base, bytes)) = piece_at(&st, pos) else {
                return false;
            };
            let from = (pos - base) as usize;
            let to = (end.min(base + bytes.len() as u64) - base) as usize;
            f(&bytes[from..to]);
            pos = base + to as u64;
        }
        true
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

/// Device time (µs) reads of old data may take under SYNC_FLUSH. While appends keep the device
/// busy, reads earn the Reads lane's share of the Writes lane's (250 / 1000) of the time each
/// write took, so the device is split the way the CPU is. While nothing waits to be written,
/// reads earn all of the time that passes. Reads spend what they take. Bounded both ways, so
/// neither a long idle spell nor one slow read decides for long.
///
/// "Nothing waits to be written" starts when the writer catches up with the appends and ends at
/// the next append. A bare "is anything pending" test let reads in at every round boundary,
/// in the moment between a write's end and the appends its waiters make next.
struct ReadCredit {
    micros: Cell<i64>,
    idle_since: Cell<Option<std::time::Instant>>,
}

/// The most read credit kept, and the most debt.
const READ_CREDIT_BOUND_US: i64 = 5_000;

impl ReadCredit {
    /// Nothing waits to be written yet.
    fn new() -> Self {
        Self {
            micros: Cell::new(0),
            idle_since: Cell::new(Some(std::time::Instant::now())),
        }
    }

    fn available(&self) -> bool {
        self.micros.get() + self.idle_micros() > 0
    }

    fn idle_micros(&self) -> i64 {
        self.idle_since.get().map_or(0, |t| micros(t.elapsed()))
    }

    /// Idle and in debt: how long until the debt is paid.
    fn idle_deficit(&self) -> Option<Duration> {
        self.idle_since.get()?;
        let owed = -(self.micros.get() + self.idle_micros());
        (owed > 0).then(|| Duration::from_micros(owed as u64))
    }

    fn add(&self, micros: i64) {
        let v = self.micros.get().saturating_add(micros);
        self.micros
            .set(v.clamp(-READ_CREDIT_BOUND_US, READ_CREDIT_BOUND_US));
    }

    /// A write took `took`: reads earn their share of it.
    fn earn(&self, took: Duration) {
        let share = crate::runtime::READ_SHARES as i64;
        let whole = crate::runtime::WRITE_SHARES as i64;
        self.add(micros(took).saturating_mul(share) / whole);
    }

    /// The writer leaves the device alone for `d` (backing off after a failure).
    fn earn_idle(&self, d: Duration) {
        self.add(micros(d));
    }

    fn spend(&self, took: Duration) {
        self.add(-micros(took));
    }

    /// The writer caught up with the appends.
    fn idle(&self) {
        if self.idle_since.get().is_none() {
            self.idle_since.set(Some(std::time::Instant::now()));
        }
    }

    /// An append: the idle time so far becomes credit.
    fn busy(&self) {
        if self.idle_since.get().is_some() {
            self.add(self.idle_micros());
            self.idle_since.set(None);
        }
    }
}

/// `d` in whole microseconds, saturating.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

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

/// A piece of memory holding the byte at `pos`: (its physical start, its bytes).
fn piece_at(st: &WriteState, pos: u64) -> Option<(u64, &[u8])> {
    let holds = |base: u64, end: u64| base <= pos && pos < end;
    if let Some(b) = st.regions.iter().find(|b| holds(b.base, b.end())) {
        return Some((b.base, b.buf.as_slice()));
    }
    if let Some(c) = st
        .inflight
        .iter()
        .map(|f| &f.chunk)
        .chain(&st.retry)
        .find(|c| holds(c.base, c.end()))
    {
        return Some((c.base, c.buf.as_slice()));
    }
    // Newest first; chunk ends only grow along the tail, so stop at the first that ends
    // before `pos`.
    st.tail
        .iter()
        .rev()
        .take_while(|c| c.end() > pos)
        .find(|c| c.base <= pos)
        .map(|c| (c.base, c.buf.as_slice()))
}

/// The block that takes the next bytes of segment `segment_start`, at the write position: the
/// last block if it has room, else a new one starting where the last one ends.
fn block_for(st: &mut WriteState, segment_start: u64) -> &mut Block {
    let pos = st.write_pos;
    let has_room = st
        .regions
        .back()
        .is_some_and(|b| b.segment_start == segment_start && !b.sealed && b.buf.remaining() > 0);
    if !has_room {
        debug_assert_eq!(
            pos % crate::runtime::dma::ALIGN,
            0,
            "the partial page at the write position is not in memory"
        );
        st.regions.push_back(Block {
            segment_start,
            base: pos,
            buf: AlignedBuf::with_capacity(block_capacity(st.last_round, st.max_block)),
            sealed: false,
        });
    }
    let b = st.regions.back_mut().expect("a block was just ensured");
    debug_assert_eq!(b.end(), pos, "block does not end at the write position");
    b
}

/// Appends `bytes` at the write position, across as many blocks as they need.
fn put_bytes(st: &mut WriteState, segment_start: u64, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let b = block_for(st, segment_start);
        let n = b.buf.remaining().min(bytes.len());
        b.buf.extend_from_slice(&bytes[..n]);
        st.write_pos += n as u64;
        bytes = &bytes[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, tail_cache_bytes: usize) -> CommitLogConfig {
        CommitLogConfig {
            dir: dir.to_path_buf(),
            base_offset: 0,
            segment_bytes: 4 << 20,
            flush_mode: FlushMode::Sync,
            flush_interval: Duration::from_millis(500),
            flush_threshold_bytes: 1 << 20,
            max_pending_bytes: 4 << 20,
            tail_cache_bytes,
            warm_ahead_bytes: 0,
        }
    }

    /// Under SYNC_FLUSH a read of old data needs credit: idle time, or its share of the time
    /// writes took, less what reads took; under ASYNC_FLUSH it never waits for credit.
    #[test]
    fn reads_of_old_data_yield_to_waiting_sync_appends_until_writes_earn_them_credit() {
        for mode in [FlushMode::Sync, FlushMode::Async] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut cfg = config(dir.path(), 1);
            cfg.flush_mode = mode;
            crate::runtime::run_local(1 << 20, move || async move {
                // No writer task: what is appended stays waiting to be written.
                let cl = CommitLog::new(cfg, 0, Vec::new(), None);
                cl.read_credit.add(-1);
                crate::runtime::sleep(Duration::from_millis(1)).await;
                assert!(cl.read_may_start(), "idle time is credit");
                assert_eq!(cl.read_credit.idle_deficit(), None);
                cl.append(100, |dst, _| dst.fill(7)).expect("append");
                cl.read_credit.add(-2 * READ_CREDIT_BOUND_US);
                assert_eq!(cl.read_may_start(), mode == FlushMode::Async, "{mode:?}");
                assert_eq!(cl.read_credit.idle_deficit(), None, "busy, not idle");
                // A 4 ms write earns reads 1 ms; a 2 ms read spends it and more.
                cl.read_credit.add(-cl.read_credit.micros.get());
                cl.read_credit.earn(Duration::from_millis(4));
                assert!(cl.read_may_start());
                cl.read_credit.spend(Duration::from_millis(2));
                assert_eq!(cl.read_may_start(), mode == FlushMode::Async, "{mode:?}");
                // Debt is bounded: one very slow read does not hold reads back for long.
                cl.read_credit.spend(Duration::from_secs(60));
                cl.read_credit.earn(Duration::from_millis(
                    4 * READ_CREDIT_BOUND_US as u64 / 1000 + 8,
                ));
                assert!(cl.read_may_start(), "debt past the bound was kept");
            })
            .expect("executor");
        }
    }

    /// Appends `n` records (record `i`: `base_len + i` bytes of `i % 251`), each waited on
    /// until durable; returns their offsets and bytes.
    async fn append_durable(cl: &CommitLog, n: u64, base_len: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for i in 0..n {
            let data = vec![(i % 251) as u8; base_len + i as usize];
            let a = cl
                .append(data.len(), |dst, _| dst.copy_from_slice(&data))
                .expect("append");
            cl.wait_durable(&a, Duration::from_secs(30))
                .await
                .expect("durable");
            out.push((a.physical_offset, data));
        }
        out
    }

    /// A disk that fails every write does not also starve reads of old data: with SYNC_FLUSH
    /// appends waiting on writes that keep failing, every old record still reads back.
    #[test]
    fn reads_of_old_data_finish_while_every_write_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), 1);
        let reopen = cfg.clone();
        let (old, end) = crate::runtime::run_local(1 << 20, move || async move {
            let cl = CommitLog::new(cfg, 0, Vec::new(), None);
            cl.start_tasks();
            let old = append_durable(&cl, 12, 5000).await;
            cl.stop().await;
            (old, cl.write_pos())
        })
        .expect("executor");
        let read = crate::runtime::run_local(1 << 20, move || async move {
            let tail_page = {
                let from = align_down(end);
                let (phys, data) = old.last().expect("records");
                data[(from - phys) as usize..].to_vec()
            };
            let faults = Rc::new(FaultInjector::new(5, 1000, 0, 0));
            let cl = CommitLog::new(reopen, end, tail_page, Some(faults.clone()));
            cl.start_tasks();
            let a = cl.append(300, |dst, _| dst.fill(9)).expect("append");
            let mut read = 0;
            for (phys, data) in &old {
                // A bound, so a starved read fails the test instead of hanging it.
                let got =
                    crate::runtime::timeout(Duration::from_secs(20), cl.read(*phys, data.len()))
                        .await
                        .expect("the read starved")
                        .expect("read");
                assert_eq!(&got[..], &data[..], "record at {phys}");
                read += 1;
            }
            assert!(faults.injected() > 0, "no write was attempted");
            assert!(
                cl.durability.durable() < a.end,
                "a failing write was taken as durable"
            );
            cl.stopping.set(true);
            cl.flush_requested.notify_all();
            read
        })
        .expect("executor");
        assert_eq!(read, 12);
    }

    /// SYNC_FLUSH appends that never let up do not starve reads of old data: each read
    /// completes (from the segment files) while the appenders are still going.
    #[test]
    fn reads_of_old_data_finish_while_sync_appends_never_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), 1);
        let (reads_done_early, reads) = crate::runtime::run_local(1 << 20, move || async move {
            let cl = CommitLog::new(cfg, 0, Vec::new(), None);
            cl.start_tasks();
            let old = append_durable(&cl, 40, 3000).await;
            let stop = Rc::new(Cell::new(false));
            let mut appenders = Vec::new();
            for _ in 0..8 {
                let (cl, stop) = (cl.clone(), stop.clone());
                appenders.push(crate::runtime::spawn_joinable(async move {
                    // A cap, so a starved reader fails the test instead of hanging it.
                    for _ in 0..4000 {
                        if stop.get() {
                            return true;
                        }
                        cl.reserve(200).await;
                        let a = cl.append(200, |dst, _| dst.fill(1)).expect("append");
                        cl.wait_durable(&a, Duration::from_secs(30))
                            .await
                            .expect("durable");
                    }
                    false
                }));
            }
            let mut reads = 0;
            for (phys, data) in &old {
                assert!(
                    !cl.in_memory(*phys, data.len()),
                    "record at {phys} still in memory"
                );
                let got = cl.read(*phys, data.len()).await.expect("read");
                assert_eq!(&got[..], &data[..], "record at {phys}");
                reads += 1;
            }
            stop.set(true);
            let mut early = true;
            for t in appenders {
                early &= t.await.expect("appender");
            }
            cl.stop().await;
            (early, reads)
        })
        .expect("executor");
        assert_eq!(reads, 40);
        assert!(
            reads_done_early,
            "the reads finished only after the appenders ran out"
        );
    }

    /// Record `i`: a size from 1 byte to 40 KiB (past [`MIN_BLOCK`], so records span blocks)
    /// and now and then over 1 MiB, filled with bytes derived from `i`.
    fn record(i: u64) -> Vec<u8> {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let len = match i % 7 {
            _ if i % 97 == 50 => MIN_BLOCK * 70 + (x % 4096) as usize,
            0 => 40 * 1024 - (x % 4096) as usize,
            1 | 2 => 5000 + (x % 9000) as usize,
            _ => 1 + (x % 1500) as usize,
        };
        (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
    }

    /// Appends in rounds of varying size, reading every record back at each stage: from
    /// pending blocks, from the tail cache or in-flight chunks, and (with a tiny tail cache)
    /// from the segment files, across segment ends; last, with failing and short writes, so
    /// rounds of several blocks are retried from the block that failed.
    #[test]
    fn every_record_reads_back_from_blocks_the_tail_and_disk() {
        for (tail_cache, faulty) in [(64 << 20, false), (1, false), (1, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = config(dir.path(), tail_cache);
            let checked = crate::runtime::run_local(1 << 20, move || async move {
                let faults = faulty.then(|| Rc::new(FaultInjector::new(7, 250, 150, 0)));
                let cl = CommitLog::new(cfg, 0, Vec::new(), faults.clone());
                let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
                let mut i = 0u64;
                for round in 0..40u64 {
                    for _ in 0..(round % 9) * 3 + 1 {
                        let data = record(i);
                        i += 1;
                        let a = cl
                            .append(data.len(), |dst, _| dst.copy_from_slice(&data))
                            .expect("append");
                        let got = cl.read(a.physical_offset, data.len()).await.expect("read");
                        assert_eq!(&got[..], &data[..], "pending record {i}");
                        written.push((a.physical_offset, data));
                    }
                    let mut attempts = 0;
                    while let Err(e) = cl.flush_once().await {
                        assert!(cl.durability.durable() < cl.write_pos(), "{e}");
                        attempts += 1;
                        assert!(attempts < 100, "flush never succeeded: {e}");
                    }
                    assert_eq!(cl.durability.durable(), cl.write_pos());
                }
                if let Some(f) = &faults {
                    assert!(f.injected() > 10, "only {} faults injected", f.injected());
                }
                for (n, (phys, data)) in written.iter().enumerate() {
                    let got = cl.read(*phys, data.len()).await.expect("read");
                    assert_eq!(&got[..], &data[..], "record {n} at {phys}");
                }
                // A range over several records and blocks reads as one.
                let (first, _) = written[written.len() - 6];
                let (last, data) = written.last().expect("records");
                let span = (last - first) as usize + data.len();
                let got = cl.read(first, span).await.expect("span read");
                assert_eq!(&got[got.len() - data.len()..], &data[..]);
                cl.stop().await;
                written.len()
            })
            .expect("executor");
            assert!(checked > 100, "only {checked} records checked");
        }
    }

    /// The writer task with several writes in flight, under both flush modes, with and
    /// without injected EIO and short writes: every append that was acknowledged durable is
    /// within the durable offset when acknowledged, and at the end every record reads back
    /// from the segment files. Fails if a chunk is advanced over before the chunks before it,
    /// if a carried page is written out of order, or if a failed chunk is not rewritten.
    #[test]
    fn the_writer_keeps_order_with_writes_in_flight_and_faults() {
        for (mode, faulty) in [
            (FlushMode::Sync, false),
            (FlushMode::Sync, true),
            (FlushMode::Async, false),
            (FlushMode::Async, true),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut cfg = config(dir.path(), 1);
            cfg.flush_mode = mode;
            cfg.flush_interval = Duration::from_millis(5);
            cfg.flush_threshold_bytes = 256 * 1024;
            let (acked, failed, checked) = crate::runtime::run_local(1 << 20, move || async move {
                let faults = faulty.then(|| Rc::new(FaultInjector::new(11, 200, 100, 100)));
                let cl = CommitLog::new(cfg, 0, Vec::new(), faults.clone());
                cl.start_tasks();
                let written = Rc::new(RefCell::new(Vec::<(u64, Vec<u8>)>::new()));
                let counts = Rc::new(Cell::new((0u32, 0u32)));
                let mut appenders = Vec::new();
                for a in 0..8u64 {
                    let (cl, written, counts) = (cl.clone(), written.clone(), counts.clone());
                    appenders.push(crate::runtime::spawn_joinable(async move {
                        for n in 0..60u64 {
                            let data = record(a * 1000 + n);
                            cl.reserve(data.len()).await;
                            let got = cl.append(data.len(), |dst, _| dst.copy_from_slice(&data));
                            let appended = got.expect("append");
                            written.borrow_mut().push((appended.physical_offset, data));
                            if mode == FlushMode::Async {
                                futures_lite::future::yield_now().await;
                                continue;
                            }
                            let waited = cl.wait_durable(&appended, Duration::from_secs(30)).await;
                            let (ok, bad) = counts.get();
                            match waited {
                                Ok(()) => {
                                    assert!(cl.durability.durable() >= appended.end);
                                    counts.set((ok + 1, bad));
                                }
                                Err(StoreError::FlushFailed(_)) => counts.set((ok, bad + 1)),
                                Err(e) => panic!("unexpected wait error: {e}"),
                            }
                        }
                    }));
                }
                for t in appenders {
                    assert!(
                        t.await.is_some(),
                        "an appender failed ({mode:?}, faults {faulty})"
                    );
                }
                cl.stop().await;
                // With faults, the final flush at stop may fail too; it is retried here.
                let mut attempts = 0;
                while cl.durability.durable() < cl.write_pos() {
                    attempts += 1;
                    assert!(faulty && attempts < 100, "stop left bytes unwritten");
                    let _ = cl.flush_once().await;
                }
                if let Some(f) = &faults {
                    assert!(f.injected() > 5, "only {} faults injected", f.injected());
                }
                let written = written.borrow().clone();
                for (phys, data) in &written {
                    let got = cl.read(*phys, data.len()).await.expect("read");
                    assert_eq!(&got[..], &data[..], "record at {phys}");
                }
                let (ok, bad) = counts.get();
                (ok, bad, written.len())
            })
            .expect("executor");
            assert_eq!(checked, 480);
            if mode == FlushMode::Sync {
                assert_eq!(acked + failed, 480);
                assert!(acked > 0, "no append was acknowledged");
                if faulty {
                    assert!(failed > 0, "faults never reached an appender");
                }
            }
        }
    }
}
