//! Direct-I/O files (O_DIRECT through io_uring) and a seeded fault injector over them.
//!
//! Every commitlog write and fdatasync goes through [`DmaFile`], so tests can make any of them
//! fail (EIO) or come up short from a seed, the way Redpanda's file sanitizer does.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile as GDmaFile, OpenOptions};

pub const ALIGN: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

pub fn align_up(v: u64) -> u64 {
    (v + ALIGN - 1) & !(ALIGN - 1)
}

/// An aligned buffer of fixed capacity that records are encoded into directly and that is then
/// written as it is: the commitlog's bytes are copied once, from the request into this buffer.
pub struct AlignedBuf {
    buf: DmaBuffer,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of at least `capacity` bytes, rounded up to [`ALIGN`].
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = align_up(capacity.max(1) as u64) as usize;
        Self {
            buf: glommio::allocate_dma_buffer_global(capacity),
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn remaining(&self) -> usize {
        self.capacity() - self.len
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf.as_bytes()[..self.len]
    }

    /// Appends `n` bytes written by `fill`, which gets exactly those `n` bytes.
    pub fn append_with<R>(&mut self, n: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        debug_assert!(n <= self.remaining(), "append past the buffer's capacity");
        let start = self.len;
        let r = fill(&mut self.buf.as_bytes_mut()[start..start + n]);
        self.len += n;
        r
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.append_with(bytes.len(), |dst| dst.copy_from_slice(bytes));
    }

    /// Ends appends: zero-pads to the next [`ALIGN`] boundary, ready for one DMA write.
    pub fn freeze(mut self) -> SharedBuf {
        let capacity = self.capacity();
        let padded = align_up(self.len as u64) as usize;
        let len = self.len;
        let bytes = self.buf.as_bytes_mut();
        bytes[len..padded].fill(0);
        self.buf.trim_to_size(padded);
        SharedBuf {
            buf: Rc::new(self.buf),
            len,
            capacity,
        }
    }
}

/// A frozen [`AlignedBuf`]: written with [`DmaFile::write_shared`] and kept for reads of recent
/// data without a copy on the write path. Shared within one shard only.
#[derive(Clone)]
pub struct SharedBuf {
    buf: Rc<DmaBuffer>,
    len: usize,
    /// The allocation's size, which is what this buffer costs in memory.
    capacity: usize,
}

impl SharedBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf.as_bytes()[..self.len]
    }
}

/// A seeded schedule of injected faults, shared by every file of a store.
#[derive(Debug)]
pub struct FaultInjector {
    state: Cell<u64>,
    /// Chance per operation, in parts per thousand.
    pub write_eio_per_mille: u32,
    pub short_write_per_mille: u32,
    pub sync_eio_per_mille: u32,
    /// Each fdatasync first waits this long: a stalled device, for flush timeouts.
    pub sync_stall: Cell<std::time::Duration>,
    injected: Cell<u64>,
}

impl FaultInjector {
    pub fn new(
        seed: u64,
        write_eio_per_mille: u32,
        short_write_per_mille: u32,
        sync_eio_per_mille: u32,
    ) -> Self {
        Self {
            state: Cell::new(seed | 1),
            write_eio_per_mille,
            short_write_per_mille,
            sync_eio_per_mille,
            sync_stall: Cell::new(std::time::Duration::ZERO),
            injected: Cell::new(0),
        }
    }

    fn roll(&self, per_mille: u32) -> bool {
        // xorshift64*: deterministic per seed, no dependency.
        let mut x = self.state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        let hit = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % 1000 < per_mille as u64;
        if hit {
            self.injected.set(self.injected.get() + 1);
        }
        hit
    }

    /// Waits out `sync_stall` before a flush (an fdatasync, or an O_DSYNC write).
    async fn stall_flush(&self) {
        let stall = self.sync_stall.get();
        if !stall.is_zero() {
            super::sleep(stall).await;
        }
    }

    pub fn injected(&self) -> u64 {
        self.injected.get()
    }
}

fn injected_eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO on {what}"))
}

/// A file opened for direct I/O.
pub struct DmaFile {
    file: GDmaFile,
    faults: Option<Rc<FaultInjector>>,
    /// Opened with O_DSYNC: a write completes only once its data is durable.
    dsync: bool,
}

thread_local! {
    /// Devices (st_dev) whose io_uring poll support this thread's executor has already probed.
    static PROBED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// One probe at a time per thread: an open that arrives during a probe waits for its
    /// answer instead of opening first or probing alongside it.
    static PROBE_LOCK: Rc<glommio::sync::Semaphore> = Rc::new(glommio::sync::Semaphore::new(1));
}

/// Distinguishes probe files, so one probe's cleanup never removes another's file.
static PROBE_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// glommio decides once per thread and device whether to send I/O through the io_uring poll
/// ring, by reading the first block of the first DMA file opened there. If that block was never
/// written (a new, preallocated segment), the read never reaches the device, the probe wrongly
/// answers "pollable", and every later read of real data fails with EOPNOTSUPP. So the first
/// DMA open on a device is a small file whose first block holds data: the probe sees the
/// device's real answer and glommio caches it for the thread.
async fn probe_device_once(dir: &Path) {
    let Ok(dev) = std::fs::metadata(dir).map(|m| m.dev()) else {
        return;
    };
    let probed = || PROBED_DEVICES.with(|p| p.borrow().contains(&dev));
    if probed() {
        return;
    }
    let lock = PROBE_LOCK.with(Rc::clone);
    let _permit = lock.acquire_permit(1).await;
    if probed() {
        return;
    }
    let probe = dir.join(format!(
        ".dma-probe-{}-{}",
        std::process::id(),
        PROBE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    if std::fs::write(&probe, vec![0xA5u8; ALIGN as usize]).is_ok() {
        if let Ok(f) = OpenOptions::new().read(true).dma_open(&probe).await {
            let _ = f.close().await;
        }
        let _ = std::fs::remove_file(&probe);
    }
    PROBED_DEVICES.with(|p| p.borrow_mut().push(dev));
}

impl DmaFile {
    pub async fn open_rw(path: &Path, faults: Option<Rc<FaultInjector>>) -> io::Result<Self> {
        Self::open_rw_with(path, faults, false).await
    }

    /// Opens for reading and writing; with `dsync`, O_DSYNC: every write returns only once its
    /// data (and the metadata needed to read it back) is durable, as if an fdatasync followed.
    pub async fn open_rw_with(
        path: &Path,
        faults: Option<Rc<FaultInjector>>,
        dsync: bool,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            probe_device_once(dir).await;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        if dsync {
            options.custom_flags(libc::O_DSYNC);
        }
        let file = options.dma_open(path).await.map_err(into_io)?;
        Ok(Self {
            file,
            faults,
            dsync,
        })
    }

    pub fn is_dsync(&self) -> bool {
        self.dsync
    }

    /// Writes `len` bytes (a multiple of [`ALIGN`]) at the aligned `pos`, filled by `fill`
    /// straight into the DMA buffer.
    pub async fn write_from(
        &self,
        pos: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<()> {
        let mut buf = self.file.alloc_dma_buffer(len);
        fill(buf.as_bytes_mut());
        self.write_rc(pos, Rc::new(buf)).await
    }

    /// Writes a frozen buffer (its data plus the zero padding to [`ALIGN`]) at the aligned
    /// `pos`, with no copy.
    pub async fn write_shared(&self, pos: u64, buf: &SharedBuf) -> io::Result<()> {
        self.write_rc(pos, buf.buf.clone()).await
    }

    async fn write_rc(&self, pos: u64, buf: Rc<DmaBuffer>) -> io::Result<()> {
        let len = buf.len();
        debug_assert_eq!(pos % ALIGN, 0, "unaligned DMA write position");
        debug_assert_eq!(len as u64 % ALIGN, 0, "unaligned DMA write length");
        let mut short = None;
        if let Some(f) = &self.faults {
            if f.roll(f.write_eio_per_mille) {
                return Err(injected_eio("write"));
            }
            if len > ALIGN as usize && f.roll(f.short_write_per_mille) {
                short = Some(align_down(len as u64 / 2).max(ALIGN) as usize);
            }
        }
        if let (true, Some(f)) = (self.dsync, &self.faults) {
            // An O_DSYNC write carries the fdatasync: its stalls and failures apply here.
            f.stall_flush().await;
        }
        let written = match short {
            // A short write lands only a prefix: write a copy of that prefix.
            Some(n) => {
                let mut prefix = glommio::allocate_dma_buffer_global(n);
                prefix.as_bytes_mut().copy_from_slice(&buf.as_bytes()[..n]);
                self.file.write_at(prefix, pos).await
            }
            None => self.file.write_rc_at(buf, pos).await,
        }
        .map_err(into_io)?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes at {pos}"),
            ));
        }
        if let (true, Some(f)) = (self.dsync, &self.faults) {
            // The data reached the file but the flush "failed": it must not count as durable.
            if f.roll(f.sync_eio_per_mille) {
                return Err(injected_eio("write (O_DSYNC flush)"));
            }
        }
        Ok(())
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        if let Some(f) = &self.faults {
            f.stall_flush().await;
            if f.roll(f.sync_eio_per_mille) {
                return Err(injected_eio("fdatasync"));
            }
        }
        self.file.fdatasync().await.map_err(into_io)
    }

    /// Reads up to `len` bytes at any position (glommio aligns the I/O underneath).
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let r = self.file.read_at(pos, len).await.map_err(into_io)?;
        Ok(r.to_vec())
    }

    pub async fn pre_allocate(&self, size: u64) -> io::Result<()> {
        self.file.pre_allocate(size, false).await.map_err(into_io)
    }

    pub async fn file_size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(into_io)
    }

    /// Frees and zeroes `[offset, offset+size)` (a torn tail must not resurface later).
    pub async fn punch_hole(&self, offset: u64, size: u64) -> io::Result<()> {
        self.file.deallocate(offset, size).await.map_err(into_io)
    }

    pub async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(into_io)
    }
}

fn into_io(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many first opens on one thread at once, in a directory this thread has not probed: the
    /// probe runs once and every open succeeds. Before, each open ran its own probe on one
    /// shared file name, and one open's cleanup could delete the file under another's open
    /// (glommio panicked on the vanished path; found by `bench/fio-compare.sh`, 2026-11-22).
    #[test]
    fn concurrent_first_opens_on_one_thread_share_one_probe() {
        // Each round is a fresh executor thread, which has probed nothing yet.
        for step_us in [10u64, 15, 20, 25, 30, 40, 50, 60] {
            first_opens_race(step_us);
        }
    }

    fn first_opens_race(step_us: u64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let opened = crate::runtime::run_local(
            crate::runtime::DEFAULT_IO_MEMORY_BYTES,
            move || async move {
                let opens = (0..32).map(|i| {
                    let path = root.join(format!("f{i}"));
                    crate::runtime::spawn_joinable(async move {
                        // Staggered start times, so later opens arrive while earlier probes
                        // wait on their I/O. Only how often the race is exercised depends on
                        // timing; what is checked does not.
                        crate::runtime::sleep(std::time::Duration::from_micros(step_us * i)).await;
                        DmaFile::open_rw(&path, None).await.is_ok()
                    })
                });
                let mut ok = 0;
                for o in opens.collect::<Vec<_>>() {
                    if o.await == Some(true) {
                        ok += 1;
                    }
                }
                ok
            },
        )
        .expect("executor");
        assert_eq!(opened, 32, "stagger {step_us} us");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".dma-probe"))
            .collect();
        assert!(leftovers.is_empty(), "probe files left: {leftovers:?}");
    }
}
