//! The stored record (§4.1): what the CommitLog holds and what a pull sends back byte for byte.
//!
//! `| TOTALSIZE | MAGIC | BODYCRC | QUEUEID | FLAG | QUEUEOFFSET | PHYSICALOFFSET | SYSFLAG |
//!  BORNTIMESTAMP | BORNHOST | STORETIMESTAMP | STOREHOST | RECONSUMETIMES | PREPARED_TX_OFFSET |
//!  bodyLen body | topicLen(1) topic | propsLen(2) props |`

use bytes::{Buf, BufMut, Bytes};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// 4.x writes only V1 (`0xDAA320A7`).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// End-of-segment blank (§5.2).
pub const BLANK_MAGIC: i32 = 0xCBD4_3194_u32 as i32;
pub const SYSFLAG_BORNHOST_V6: i32 = 0x10;
pub const SYSFLAG_STOREHOST_V6: i32 = 0x20;
pub const SYSFLAG_TRANSACTION_MASK: i32 = 0xC;
pub const MAX_TOPIC_BYTES: usize = 127;

/// Byte offsets of fixed fields that recovery and readers peek at.
pub const OFF_MAGIC: usize = 4;
pub const OFF_QUEUE_OFFSET: usize = 20;
pub const OFF_PHYSICAL_OFFSET: usize = 28;
pub const OFF_SYSFLAG: usize = 36;
pub const OFF_BORN_HOST: usize = 48;

/// CRC32 masked to 31 bits, as RocketMQ stores it.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// A message as a producer hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInput {
    pub topic: std::sync::Arc<str>,
    pub queue_id: i32,
    pub flag: i32,
    pub body: Bytes,
    /// Already encoded (§4.3); the broker has dropped WAIT and added CLUSTER.
    pub properties: super::SharedStr,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 20,
    }
}

impl MessageInput {
    /// A stored record as a message to store again, unchanged but for the store host (a delayed
    /// message falling due, a transaction's half message committed or put back).
    pub fn again(r: &StoredRecord, store_host: SocketAddr) -> MessageInput {
        MessageInput {
            topic: r.topic.as_str().into(),
            queue_id: r.queue_id,
            flag: r.flag,
            body: r.body.clone(),
            properties: r.properties.as_str().into(),
            sys_flag: r.sys_flag,
            born_timestamp: r.born_timestamp,
            born_host: r.born_host,
            store_host,
            reconsume_times: r.reconsume_times,
            prepared_transaction_offset: r.prepared_transaction_offset,
        }
    }

    pub fn encoded_len(&self) -> usize {
        4 + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + host_len(&self.born_host)
            + 8
            + host_len(&self.store_host)
            + 4
            + 8
            + 4
            + self.body.len()
            + 1
            + self.topic.len()
            + 2
            + self.properties.len()
    }

    fn effective_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= SYSFLAG_BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= SYSFLAG_STOREHOST_V6;
        }
        f
    }

    /// Appends the stored form. The caller has checked the topic and properties lengths.
    pub fn encode_into(
        &self,
        out: &mut impl BufMut,
        queue_offset: i64,
        physical_offset: i64,
        store_timestamp: i64,
    ) {
        debug_assert!(
            self.topic.len() <= MAX_TOPIC_BYTES && self.properties.len() <= i16::MAX as usize
        );
        out.put_i32(self.encoded_len() as i32);
        out.put_i32(MAGIC_V1);
        out.put_i32(body_crc(&self.body));
        out.put_i32(self.queue_id);
        out.put_i32(self.flag);
        out.put_i64(queue_offset);
        out.put_i64(physical_offset);
        out.put_i32(self.effective_sys_flag());
        out.put_i64(self.born_timestamp);
        put_host(out, &self.born_host);
        out.put_i64(store_timestamp);
        put_host(out, &self.store_host);
        out.put_i32(self.reconsume_times);
        out.put_i64(self.prepared_transaction_offset);
        out.put_i32(self.body.len() as i32);
        out.put_slice(&self.body);
        out.put_u8(self.topic.len() as u8);
        out.put_slice(self.topic.as_bytes());
        out.put_i16(self.properties.len() as i16);
        out.put_slice(self.properties.as_bytes());
    }
}

fn put_host(out: &mut impl BufMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(addr.port() as i32);
}

fn get_host(buf: &mut &[u8], v6: bool) -> Option<SocketAddr> {
    let ip = if v6 {
        if buf.remaining() < 20 {
            return None;
        }
        let mut o = [0u8; 16];
        buf.copy_to_slice(&mut o);
        IpAddr::from(o)
    } else {
        if buf.remaining() < 8 {
            return None;
        }
        let mut o = [0u8; 4];
        buf.copy_to_slice(&mut o);
        IpAddr::V4(Ipv4Addr::from(o))
    };
    Some(SocketAddr::new(ip, buf.get_i32() as u16))
}

/// A record decoded from stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub total_size: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    pub properties: String,
}

/// What the bytes at a position in a segment are.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// A whole record whose size, magic, CRC and position agree.
    Record(StoredRecord),
    /// The end-of-segment blank: the rest of the segment is unused.
    Blank,
    /// Zeros where a record would start: the end of the written data.
    End,
    /// Not a valid record (torn or corrupt), with the reason.
    Invalid(&'static str),
}

/// Validates the record starting at `buf[0]`, which should sit at `expected_phys`.
pub fn check(buf: &[u8], expected_phys: i64) -> Check {
    if buf.len() < 8 {
        return if buf.iter().all(|b| *b == 0) {
            Check::End
        } else {
            Check::Invalid("truncated size")
        };
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let magic = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if size == 0 && magic == 0 {
        return Check::End;
    }
    if magic == BLANK_MAGIC {
        return Check::Blank;
    }
    if magic != MAGIC_V1 {
        return Check::Invalid("bad magic");
    }
    if size < 91 || size as usize > buf.len() {
        return Check::Invalid("bad size");
    }
    match decode(&buf[..size as usize]) {
        None => Check::Invalid("fields overrun the record"),
        Some(r) if r.physical_offset != expected_phys => Check::Invalid("physical offset mismatch"),
        Some(r) if body_crc(&r.body) != r.body_crc => Check::Invalid("body CRC mismatch"),
        // The CRC covers only the body: a tear inside topic or properties is caught here, since
        // unwritten bytes read as zeros and no valid topic or property holds a NUL.
        Some(r) if !valid_topic(&r.topic) => Check::Invalid("bad topic"),
        Some(r) if r.properties.contains('\0') => Check::Invalid("NUL in properties"),
        Some(r) => Check::Record(r),
    }
}

/// RocketMQ's topic charset `^[%|a-zA-Z0-9_-]+$`, at most 127 bytes.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOPIC_BYTES
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%|_-".contains(&b))
}

/// Decodes one whole record; `None` if its length fields disagree with its size.
pub fn decode(rec: &[u8]) -> Option<StoredRecord> {
    let mut b = rec;
    if b.remaining() < 36 + 4 {
        return None;
    }
    let total_size = b.get_i32();
    if total_size as usize != rec.len() {
        return None;
    }
    let _magic = b.get_i32();
    let body_crc = b.get_i32();
    let queue_id = b.get_i32();
    let flag = b.get_i32();
    let queue_offset = b.get_i64();
    let physical_offset = b.get_i64();
    let sys_flag = b.get_i32();
    if b.remaining() < 8 {
        return None;
    }
    let born_timestamp = b.get_i64();
    let born_host = get_host(&mut b, sys_flag & SYSFLAG_BORNHOST_V6 != 0)?;
    if b.remaining() < 8 {
        return None;
    }
    let store_timestamp = b.get_i64();
    let store_host = get_host(&mut b, sys_flag & SYSFLAG_STOREHOST_V6 != 0)?;
    if b.remaining() < 16 {
        return None;
    }
    let reconsume_times = b.get_i32();
    let prepared_transaction_offset = b.get_i64();
    let body_len = usize::try_from(b.get_i32()).ok()?;
    if b.remaining() < body_len + 1 {
        return None;
    }
    let body = Bytes::copy_from_slice(&b[..body_len]);
    b.advance(body_len);
    let topic_len = b.get_u8() as usize;
    if b.remaining() < topic_len + 2 {
        return None;
    }
    let topic = String::from_utf8(b[..topic_len].to_vec()).ok()?;
    b.advance(topic_len);
    let props_len = usize::try_from(b.get_i16()).ok()?;
    if b.remaining() != props_len {
        return None;
    }
    let properties = String::from_utf8(b[..props_len].to_vec()).ok()?;
    Some(StoredRecord {
        total_size,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

/// The properties of an encoded record, found without copying (SQL92 filtering reads them for
/// every candidate record); `None` if the length fields do not fit the record.
pub fn properties_of(rec: &[u8]) -> Option<&str> {
    let i32_at = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(rec.get(at..at + 4)?.try_into().ok()?))
    };
    let sys_flag = i32_at(OFF_SYSFLAG)?;
    let host_len = |v6: bool| if v6 { 20 } else { 8 };
    // born host, store timestamp, store host, reconsume times, prepared offset
    let at = OFF_BORN_HOST
        + host_len(sys_flag & SYSFLAG_BORNHOST_V6 != 0)
        + 8
        + host_len(sys_flag & SYSFLAG_STOREHOST_V6 != 0)
        + 4
        + 8;
    let body_len = usize::try_from(i32_at(at)?).ok()?;
    let topic_at = at.checked_add(4)?.checked_add(body_len)?;
    let topic_len = *rec.get(topic_at)? as usize;
    let props_at = topic_at + 1 + topic_len;
    let props_len = i16::from_be_bytes(rec.get(props_at..props_at + 2)?.try_into().ok()?);
    let props = rec.get(props_at + 2..props_at + 2 + usize::try_from(props_len).ok()?)?;
    std::str::from_utf8(props).ok()
}

/// Store timestamp of an encoded record, for timestamp search without a full decode.
pub fn store_timestamp_of(rec: &[u8]) -> Option<i64> {
    let sys_flag = i32::from_be_bytes(rec.get(OFF_SYSFLAG..OFF_SYSFLAG + 4)?.try_into().ok()?);
    let at = OFF_BORN_HOST
        + if sys_flag & SYSFLAG_BORNHOST_V6 != 0 {
            20
        } else {
            8
        };
    Some(i64::from_be_bytes(rec.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample(body: &[u8], props: &str) -> MessageInput {
        MessageInput {
            topic: "TopicTest".into(),
            queue_id: 3,
            flag: 7,
            body: Bytes::copy_from_slice(body),
            properties: props.into(),
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.1:5555".parse().expect("addr"),
            store_host: "127.0.0.1:10911".parse().expect("addr"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    #[test]
    fn the_v1_ipv4_size_is_91_plus_body_topic_and_properties() {
        let m = sample(b"hello", "TAGS\u{1}A");
        assert_eq!(m.encoded_len(), 91 + 5 + 9 + 6);
    }

    proptest! {
        #[test]
        fn encode_then_check_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            topic in "[a-zA-Z0-9_%|-]{1,127}",
            props in "[a-zA-Z\u{1}\u{2} ]{0,100}",
            v6 in any::<bool>(),
            qo in 0i64..i64::MAX, po in 0i64..i64::MAX, ts in any::<i64>(),
        ) {
            let mut m = sample(&body, &props);
            m.topic = topic.into();
            if v6 { m.born_host = "[::1]:9".parse().expect("addr"); }
            let mut buf = Vec::new();
            m.encode_into(&mut buf, qo, po, ts);
            prop_assert_eq!(buf.len(), m.encoded_len());
            prop_assert_eq!(store_timestamp_of(&buf), Some(ts));
        let decoded = decode(&buf).map(|r| r.properties);
        prop_assert_eq!(properties_of(&buf), decoded.as_deref());
            match check(&buf, po) {
                Check::Record(r) => {
                    prop_assert_eq!(r.body, m.body);
                    prop_assert_eq!(&*r.topic, &*m.topic);
                    prop_assert_eq!(r.properties, m.properties);
                    prop_assert_eq!(r.queue_offset, qo);
                    prop_assert_eq!(r.born_host, m.born_host);
                }
                other => prop_assert!(false, "not a record: {:?}", other),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_checker(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = check(&bytes, 0);
            let _ = decode(&bytes);
            let _ = properties_of(&bytes);
            let _ = store_timestamp_of(&bytes);
        }
    }

    #[test]
    fn a_flipped_body_bit_fails_the_crc() {
        let m = sample(b"payload", "");
        let mut buf = Vec::new();
        m.encode_into(&mut buf, 0, 0, 1);
        let body_at = buf.len() - 2 - 1 - m.topic.len() - m.body.len();
        buf[body_at] ^= 1;
        assert_eq!(check(&buf, 0), Check::Invalid("body CRC mismatch"));
    }
}
