//! Messages as RocketMQ stores them: properties, tag and key hashes, the stored-record layout.

pub mod hash;
pub mod properties;
pub mod record;
pub mod shared_str;

pub use record::{MessageInput, StoredRecord};
pub use shared_str::SharedStr;
