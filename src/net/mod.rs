//! Connections: serving remoting frames on a shard, and calling a remote peer.

pub mod client;
pub mod connection;

pub use connection::{serve_connection, Conn, Handler};
