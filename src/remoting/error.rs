//! Errors of the remoting layer: a frame or header that cannot be decoded.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("frame length {length} exceeds the {limit}-byte limit")]
    FrameTooLarge { length: usize, limit: usize },
    #[error("frame length {0} is too small to hold a header length")]
    FrameTooSmall(usize),
    #[error("header length {header_len} does not fit in a frame of {frame_len} bytes")]
    HeaderOverflow { header_len: usize, frame_len: usize },
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    Json(String),
    #[error("malformed ROCKETMQ binary header: {0}")]
    Binary(&'static str),
    #[error("header field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("header field `{field}` has a bad value `{value}`")]
    BadField { field: &'static str, value: String },
}
