//! The RocketMQ 4.x remoting codec: frames, JSON and ROCKETMQ headers, extFields.

mod binary_header;
pub mod codes;
pub mod command;
pub mod error;
pub mod frame;
pub mod json_header;

pub use command::{ExtFields, RemotingCommand, SerializeType};
pub use error::Error;
