//! Segment files: named by their 20-digit starting physical offset, preallocated to full size.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::CommitLogConfig;
use crate::error::StoreError;
use crate::runtime::dma::{DmaFile, FaultInjector};

pub fn segment_file_name(start: u64) -> String {
    format!("{start:020}")
}

pub fn segment_start(cfg: &CommitLogConfig, phys: u64) -> u64 {
    debug_assert!(phys >= cfg.base_offset, "offset below this log's base");
    cfg.base_offset + (phys - cfg.base_offset) / cfg.segment_bytes * cfg.segment_bytes
}

/// Segment starts found in `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(format!("list {}", dir.display()), e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(start) = name.parse::<u64>() {
                out.push(start);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Open segment files of one log, opened on first use.
pub struct Segments {
    dir: PathBuf,
    faults: Option<Rc<FaultInjector>>,
    /// Open segments with O_DSYNC (SYNC_FLUSH): each write is durable when it completes.
    dsync: bool,
    open: RefCell<BTreeMap<u64, Rc<DmaFile>>>,
}

impl Segments {
    pub fn new(dir: PathBuf, faults: Option<Rc<FaultInjector>>, dsync: bool) -> Self {
        Self {
            dir,
            faults,
            dsync,
            open: RefCell::new(BTreeMap::new()),
        }
    }

    /// Whether segment files are opened with O_DSYNC (writes durable on completion).
    pub fn dsync(&self) -> bool {
        self.dsync
    }

    /// The file for the segment at `start`, created and preallocated to `size` if new.
    pub async fn file(&self, start: u64, size: u64) -> Result<Rc<DmaFile>, StoreError> {
        if let Some(f) = self.open.borrow().get(&start) {
            return Ok(f.clone());
        }
        let path = self.dir.join(segment_file_name(start));
        let file = DmaFile::open_rw_with(&path, self.faults.clone(), self.dsync)
            .await
            .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        let current = file
            .file_size()
            .await
            .map_err(|e| StoreError::io(format!("stat {}", path.display()), e))?;
        if current < size {
            file.pre_allocate(size)
                .await
                .map_err(|e| StoreError::io(format!("preallocate {}", path.display()), e))?;
        }
        let file = Rc::new(file);
        // Another task may have opened it meanwhile; keep the first.
        let kept = self.open.borrow_mut().entry(start).or_insert(file).clone();
        Ok(kept)
    }

    /// Forgets and deletes the segment at `start` (retention).
    pub async fn remove(&self, start: u64) -> Result<(), StoreError> {
        let f = self.open.borrow_mut().remove(&start);
        if let Some(f) = f {
            if let Ok(f) = Rc::try_unwrap(f) {
                let _ = f.close().await;
            }
        }
        let path = self.dir.join(segment_file_name(start));
        std::fs::remove_file(&path)
            .map_err(|e| StoreError::io(format!("delete {}", path.display()), e))
    }

    pub async fn close_all(&self) {
        let files: Vec<_> = std::mem::take(&mut *self.open.borrow_mut())
            .into_values()
            .collect();
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                let _ = f.close().await;
            }
        }
    }
}
