//! Atomic small-file writes: temp file, fsync, rename, fsync the directory.

use std::io::Write;
use std::path::Path;

use crate::error::StoreError;

pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::io(ctx("no parent"), std::io::ErrorKind::InvalidInput.into()))?;
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(ctx("mkdir for"), e))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| StoreError::io(ctx("create temp for"), e))?;
        f.write_all(contents)
            .map_err(|e| StoreError::io(ctx("write temp for"), e))?;
        f.sync_all()
            .map_err(|e| StoreError::io(ctx("fsync temp for"), e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(ctx("rename onto"), e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a file that may not exist yet.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(format!("read {}", path.display()), e)),
    }
}

/// Appends `bytes` to `path` (created if missing) and syncs its data.
pub fn append_and_sync(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("mkdir {}", dir.display()), e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| StoreError::io(format!("append {}", path.display()), e))?;
    f.sync_data()
        .map_err(|e| StoreError::io(format!("fsync {}", path.display()), e))
}

/// Reads a JSON file that may not exist yet; a file that does not parse is an error naming it.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::BadMetadata {
                file: path.display().to_string(),
                reason: e.to_string(),
            }),
    }
}

/// Writes `value` as pretty JSON (the form RocketMQ's config files use), atomically.
pub fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| StoreError::BadMetadata {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &json)
}
