//! Messages as RocketMQ stores them: properties, tag and key hashes, the stored-record layout.

pub mod hash;
pub mod properties;
pub mod record;

pub use record::{MessageInput, StoredRecord};
