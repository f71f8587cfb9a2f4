//! Direct-I/O files (O_DIRECT through io_uring) and a seeded fault injector over them.
//!
//! Every commitlog write and fdatasync goes through [`DmaFile`], so tests can make any of them
//! fail (EIO) or come up short from a seed, the way Redpanda's file sanitizer does.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaFile as GDmaFile, OpenOptions};

pub const ALIGN: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

pub fn align_up(v: u64) -> u64 {
    (v + ALIGN - 1) & !(ALIGN - 1)
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
}

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
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return;
    }
    let probe = dir.join(format!(
        ".dma-probe-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
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
    /// straight into the DMA buffer: one copy from the caller's memory.
    pub async fn write_from(
        &self,
        pos: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<()> {
        debug_assert_eq!(pos % ALIGN, 0, "unaligned DMA write position");
        debug_assert_eq!(len as u64 % ALIGN, 0, "unaligned DMA write length");
        let mut buf = self.file.alloc_dma_buffer(len);
        fill(buf.as_bytes_mut());
        if let Some(f) = &self.faults {
            if f.roll(f.write_eio_per_mille) {
                return Err(injected_eio("write"));
            }
            if len > ALIGN as usize && f.roll(f.short_write_per_mille) {
                let short = align_down(len as u64 / 2).max(ALIGN) as usize;
                buf.trim_to_size(short);
            }
        }
        if let (true, Some(f)) = (self.dsync, &self.faults) {
            // An O_DSYNC write carries the fdatasync: its stalls and failures apply here.
            f.stall_flush().await;
        }
        let written = self.file.write_at(buf, pos).await.map_err(into_io)?;
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
