//! The CommitLog of one log: fixed-size preallocated segments written with O_DIRECT, a group
//! commit flusher, and a tail cache of recently written bytes.
//!
//! Appends are synchronous and only touch memory: each record lands in the pending region of its
//! segment. The flusher task takes every pending byte at once, writes it with one DMA write per
//! segment and one fdatasync, and advances the durable offset. The partial last page stays in
//! memory and is written again with the next flush.

pub mod segment;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes};

use crate::error::StoreError;
use crate::flush::{Durability, Notify};
use crate::message::record::BLANK_MAGIC;
use crate::runtime::dma::{align_down, align_up, FaultInjector, ALIGN};
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
    /// Recently flushed chunks: (physical start, bytes); each record lies wholly in one chunk.
    tail: VecDeque<(u64, Bytes)>,
    tail_bytes: usize,
}

pub struct CommitLog {
    cfg: CommitLogConfig,
    state: RefCell<WriteState>,
    segments: Segments,
    pub durability: Durability,
    flush_requested: Notify,
    pending_freed: Notify,
    stopping: Cell<bool>,
    flusher_done: Notify,
    flusher_running: Cell<bool>,
}

pub struct Appended {
    pub physical_offset: u64,
    pub end: u64,
    /// Durability attempt sequence at append time, for [`Durability::wait`].
    pub since: u64,
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
            segments: Segments::new(cfg.dir.clone(), faults),
            state: RefCell::new(WriteState {
                write_pos: end,
                regions,
                tail: VecDeque::new(),
                tail_bytes: 0,
            }),
            durability: Durability::new(end),
            cfg,
            flush_requested: Notify::default(),
            pending_freed: Notify::default(),
            stopping: Cell::new(false),
            flusher_done: Notify::default(),
            flusher_running: Cell::new(false),
        })
    }

    pub fn config(&self) -> &CommitLogConfig {
        &self.cfg
    }

    pub fn write_pos(&self) -> u64 {
        self.state.borrow().write_pos
    }

    fn pending_bytes(&self) -> usize {
        let st = self.state.borrow();
        st.regions.iter().map(|r| r.data.len()).sum()
    }

    /// Waits while too many bytes are pending, so a slow disk slows appenders instead of
    /// growing memory.
    pub async fn reserve(&self, len: usize) {
        while self.pending_bytes() + len > self.cfg.max_pending_bytes && self.pending_bytes() > 0 {
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
        if self.cfg.flush_mode == FlushMode::Sync || pending >= self.cfg.flush_threshold_bytes {
            self.flush_requested.notify_all();
        }
        Ok(Appended {
            physical_offset: phys,
            end,
            since: self.durability.attempt_seq(),
        })
    }

    /// Waits until `a` is durable (SYNC_FLUSH), failing if the flush covering it failed.
    pub async fn wait_durable(&self, a: &Appended, timeout: Duration) -> Result<(), StoreError> {
        match crate::runtime::timeout(timeout, self.durability.wait(a.end, a.since)).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(StoreError::FlushFailed(e)),
            None => Err(StoreError::FlushTimeout),
        }
    }

    /// The flusher: runs until [`CommitLog::stop`], then writes what is left.
    pub async fn run_flusher(self: Rc<Self>) {
        self.flusher_running.set(true);
        loop {
            let stopping = self.stopping.get();
            if self.pending_bytes() == 0 || self.write_pos() == self.durability.durable() {
                if stopping {
                    break;
                }
                let wait = self.flush_requested.notified();
                match self.cfg.flush_mode {
                    FlushMode::Sync => wait.await,
                    FlushMode::Async => {
                        crate::runtime::timeout(self.cfg.flush_interval, wait).await;
                    }
                }
                continue;
            }
            if self.cfg.flush_mode == FlushMode::Async && !stopping {
                // Let appends coalesce until the interval ends or the buffer fills.
                if self.pending_bytes() < self.cfg.flush_threshold_bytes {
                    crate::runtime::timeout(
                        self.cfg.flush_interval,
                        self.flush_requested.notified(),
                    )
                    .await;
                }
            }
            if let Err(e) = self.flush_once().await {
                tracing::error!(dir = %self.cfg.dir.display(), error = %e, "commitlog flush failed; will retry");
                if stopping {
                    break;
                }
                // Back off so a failing disk is not hammered; appenders see the error meanwhile.
                crate::runtime::sleep(Duration::from_millis(10)).await;
            }
        }
        self.flusher_running.set(false);
        self.flusher_done.notify_all();
    }

    /// One group commit: every pending byte, one write per segment, one fdatasync per segment.
    pub async fn flush_once(&self) -> Result<(), StoreError> {
        let (end, jobs) = {
            let st = self.state.borrow();
            let jobs: Vec<(u64, u64, usize, bool)> = st
                .regions
                .iter()
                .map(|r| (r.segment_start, r.base, r.data.len(), r.sealed))
                .collect();
            (st.write_pos, jobs)
        };
        for (segment_start, base, len, sealed) in jobs {
            let file = match self
                .segments
                .file(segment_start, self.cfg.segment_bytes)
                .await
            {
                Ok(f) => f,
                Err(e) => return Err(self.fail(end, e)),
            };
            let padded = align_up(len as u64) as usize;
            let mut buf = vec![0u8; padded];
            {
                let st = self.state.borrow();
                let Some(r) = st.regions.iter().find(|r| r.segment_start == segment_start) else {
                    continue;
                };
                buf[..len].copy_from_slice(&r.data[..len]);
            }
            let pos = base - segment_start;
            let result = async {
                file.write_all_at(&buf, pos).await?;
                file.fdatasync().await
            }
            .await;
            if let Err(e) = result {
                return Err(self.fail(
                    end,
                    StoreError::Io {
                        context: format!("segment {segment_start}"),
                        source: e,
                    },
                ));
            }
            self.finish_region(
                segment_start,
                base,
                len,
                sealed,
                Bytes::from(buf).slice(..len),
            );
        }
        self.durability.flushed_ok(end);
        self.pending_freed.notify_all();
        Ok(())
    }

    fn fail(&self, end: u64, e: StoreError) -> StoreError {
        self.durability.flush_failed(end, e.to_string());
        e
    }

    /// Drops the written pages of a region, keeping a partial last page, and caches the bytes.
    fn finish_region(
        &self,
        segment_start: u64,
        base: u64,
        len: usize,
        sealed: bool,
        written: Bytes,
    ) {
        let mut st = self.state.borrow_mut();
        if let Some(idx) = st
            .regions
            .iter()
            .position(|r| r.segment_start == segment_start)
        {
            if sealed && st.regions[idx].data.len() == len {
                st.regions.remove(idx);
            } else {
                let r = &mut st.regions[idx];
                let keep_from = align_down(len as u64) as usize;
                r.data.drain(..keep_from);
                r.base += keep_from as u64;
                debug_assert_eq!(r.base % ALIGN, 0);
            }
        }
        st.tail_bytes += written.len();
        st.tail.push_back((base, written));
        while st.tail_bytes > self.cfg.tail_cache_bytes && st.tail.len() > 1 {
            if let Some((_, b)) = st.tail.pop_front() {
                st.tail_bytes -= b.len();
            }
        }
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
        let data = file
            .read_at(phys - segment_start, size)
            .await
            .map_err(|e| StoreError::Io {
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

    fn read_memory(&self, phys: u64, size: usize) -> Option<Bytes> {
        let st = self.state.borrow();
        let end = phys + size as u64;
        for r in &st.regions {
            if r.base <= phys && end <= r.base + r.data.len() as u64 {
                let from = (phys - r.base) as usize;
                return Some(Bytes::copy_from_slice(&r.data[from..from + size]));
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
        while self.flusher_running.get() {
            self.flusher_done.notified().await;
        }
        if self.pending_bytes() > 0 && self.write_pos() > self.durability.durable() {
            let _ = self.flush_once().await;
        }
        self.segments.close_all().await;
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

    pub fn cached_segments(&self) -> BTreeMap<u64, ()> {
        self.segments.open_starts()
    }
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
