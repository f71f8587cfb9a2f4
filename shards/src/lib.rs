//! rocketcore's per-core store engine.
//!
//! A shard owns logs; a log is a direct-I/O commitlog plus the consume queues, key index and
//! consumer offsets of the queues placed on it. Everything a log touches lives on one core.

pub mod commitlog;
pub mod consume_queue;
pub mod error;
pub mod flush;
pub mod index;
pub mod message;
pub mod offsets;
pub mod paged;
pub mod persist;
pub mod placement;
pub mod recovery;
pub mod retention;
pub mod runtime;
pub mod store;

pub use commitlog::FlushMode;
pub use error::StoreError;
pub use store::{GetResult, GetStatus, Log, LogConfig, PutResult, PutStatus, StoreLimits};
