//! `calibrate`: the disk probe (sequential O_DIRECT writes of 1 MiB, like CommitLog appends; falls back to
//! buffered writes + fsync where the filesystem refuses O_DIRECT, e.g. tmpfs) and the calibration file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use crate::plan::Calibration;
use crate::util::{Error, Result};

const BLOCK_BYTES: usize = 1 << 20;
const ALIGN: usize = 4096;

/// Measures sequential write bandwidth in `dir` with `total_bytes`; returns (MB/s, description).
pub fn disk_probe(dir: &Path, total_bytes: usize) -> Result<(f64, String)> {
    let path = dir.join(format!(".rocketcore-bench-probe-{}", std::process::id()));
    let result = probe_file(&path, total_bytes);
    let _ = std::fs::remove_file(&path);
    result
}

fn probe_file(path: &Path, total_bytes: usize) -> Result<(f64, String)> {
    let blocks = total_bytes.div_ceil(BLOCK_BYTES).max(1);
    let direct = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let (mut file, mode) = match direct {
        Ok(f) => (f, "O_DIRECT"),
        Err(_) => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            (f, "buffered+fsync (O_DIRECT refused)")
        }
    };
    let buf = AlignedBuf::new(BLOCK_BYTES)?;
    let start = Instant::now();
    for _ in 0..blocks {
        file.write_all(buf.as_slice())
            .map_err(|e| Error(format!("probe write {}: {e}", path.display())))?;
    }
    file.sync_all()?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let bytes = (blocks * BLOCK_BYTES) as f64;
    let mbps = bytes / secs / 1e6;
    let what = format!(
        "{mode}, {blocks} x 1 MiB sequential writes in {}",
        path.parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    Ok((mbps, what))
}

/// A zeroed, 4 KiB-aligned buffer, as O_DIRECT needs.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Result<Self> {
        let layout = std::alloc::Layout::from_size_align(len, ALIGN)
            .map_err(|e| Error(format!("layout: {e}")))?;
        // SAFETY: layout has a non-zero size; the pointer is checked for null before use.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error("out of memory for the probe buffer".into()));
        }
        debug_assert_eq!(ptr as usize % ALIGN, 0);
        Ok(Self { ptr, layout })
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live, initialised (zeroed) allocation of layout.size() bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

pub fn to_toml(c: &Calibration) -> Result<String> {
    let body = toml::to_string(c).map_err(|e| Error(format!("calibration: {e}")))?;
    Ok(format!(
        "# written by rocketcore-bench calibrate; read by rocketcore-bench plan\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_probe_measures_a_positive_bandwidth_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mbps, what) = disk_probe(dir.path(), 4 << 20).expect("probe runs");
        assert!(mbps > 0.0, "{what}");
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(99),
            0
        );
    }

    #[test]
    fn a_calibration_file_round_trips() {
        let c = Calibration {
            shard_msgs_per_sec_at_slo: 12_000.0,
            message_size_bytes: 1024.0,
            slo: "p99=2ms".into(),
            disk_write_mb_per_sec: 640.5,
            disk_probe: "O_DIRECT".into(),
            date: "2026-01-01T00:00:00Z".into(),
            command: "rocketcore-bench calibrate".into(),
        };
        let back = crate::plan::parse_calibration(&to_toml(&c).expect("writes")).expect("reads");
        assert_eq!(back, c);
    }
}
