//! The ROCKETMQ binary header form (serialize type 1, §1.5).

use bytes::{Buf, BufMut, Bytes};

use super::command::{ExtFields, RemotingCommand, SerializeType};
use super::error::Error;

const FIXED_LEN: usize = 2 + 1 + 2 + 4 + 4;

pub fn decode(mut h: &[u8], body: Bytes) -> Result<RemotingCommand, Error> {
    if h.len() < FIXED_LEN + 4 + 4 {
        return Err(Error::Binary("header shorter than its fixed fields"));
    }
    let code = h.get_i16() as i32;
    let language = h.get_u8();
    let version = h.get_i16() as i32;
    let opaque = h.get_i32();
    let flag = h.get_i32();
    let remark = read_string(&mut h, 4)?;
    let ext_len = read_len(&mut h, 4)?;
    let mut ext = &h[..ext_len];
    let mut ext_fields = ExtFields::new();
    while ext.has_remaining() {
        let key = read_string(&mut ext, 2)?;
        let value = read_string(&mut ext, 4)?;
        if let (Some(k), Some(v)) = (key, value) {
            ext_fields.insert(k, v);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body,
        serialize_type: SerializeType::RocketMq,
    })
}

fn read_len(h: &mut &[u8], width: usize) -> Result<usize, Error> {
    if h.remaining() < width {
        return Err(Error::Binary("truncated length"));
    }
    let len = if width == 2 {
        h.get_u16() as usize
    } else {
        h.get_i32() as i64 as usize
    };
    if len > h.remaining() {
        return Err(Error::Binary("length runs past the header"));
    }
    Ok(len)
}

/// A zero length reads as null, as Java's decoder does.
fn read_string(h: &mut &[u8], width: usize) -> Result<Option<String>, Error> {
    let len = read_len(h, width)?;
    if len == 0 {
        return Ok(None);
    }
    let s = std::str::from_utf8(&h[..len])
        .map_err(|_| Error::Binary("string is not UTF-8"))?
        .to_string();
    h.advance(len);
    Ok(Some(s))
}

pub fn encode(cmd: &RemotingCommand, out: &mut Vec<u8>) {
    out.put_i16(cmd.code as i16);
    out.put_u8(cmd.language);
    out.put_i16(cmd.version as i16);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    let remark = cmd.remark.as_deref().unwrap_or("");
    out.put_i32(remark.len() as i32);
    out.put_slice(remark.as_bytes());
    let ext_len: usize = cmd
        .ext_fields
        .iter()
        .map(|(k, v)| 2 + k.len() + 4 + v.len())
        .sum();
    out.put_i32(ext_len as i32);
    for (k, v) in &cmd.ext_fields {
        out.put_u16(k.len() as u16);
        out.put_slice(k.as_bytes());
        out.put_i32(v.len() as i32);
        out.put_slice(v.as_bytes());
    }
}
