//! rocketcore: a RocketMQ 4.x-compatible broker and NameServer, thread-per-core on io_uring.

pub mod broker;
pub mod config;
pub mod namesrv;
pub mod net;
pub mod remoting;
pub mod tuning;
