//! Errors of the store layer. Each carries enough context to act on (file, offset, limit).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("I/O error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("record of {size} bytes exceeds the {limit}-byte limit")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("message illegal: {0}")]
    MessageIllegal(String),
    #[error("corrupt commitlog: {file} at offset {offset}: {reason}; valid records follow, refusing to drop them")]
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("disk full: {used_ratio:.1}% used exceeds diskMaxUsedSpaceRatio {limit_percent}%; appends refused until retention frees space")]
    DiskFull { used_ratio: f64, limit_percent: u32 },
    #[error("flush failed, the message was not made durable: {0}")]
    FlushFailed(String),
    #[error("flush did not complete within syncFlushTimeout")]
    FlushTimeout,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("store is shutting down")]
    ShuttingDown,
    #[error("bad store metadata {file}: {reason}")]
    BadMetadata { file: String, reason: String },
}

impl StoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        std::io::Error::other(e.to_string())
    }
}
