//! What the bench says on the wire, built on the project's codec: send headers (§3.1), batch bodies (§4.4),
//! routes (§3.9), heartbeats (§3.4), pull headers (§3.2) and the stored records a pull returns (§4.1).

use bytes::{BufMut, Bytes, BytesMut};
use rocketcore::remoting::codes::request;
use rocketcore::remoting::RemotingCommand;
use serde_json::Value;

use crate::util::{err, Error, Result};

pub const DEFAULT_TOPIC: &str = "TBW102";
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;
/// Property carrying the intended send time (µs since the epoch), read back by `e2e`.
pub const PROP_INTENDED_US: &str = "BENCH_INTENDED_US";
const NAME_SEP: char = '\u{1}';
const PROP_SEP: char = '\u{2}';

/// One message about to be sent.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub body: Bytes,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub uniq_key: String,
    pub intended_us: Option<u64>,
}

impl OutMessage {
    fn properties(&self, with_wait: bool) -> String {
        let mut out = Vec::with_capacity(128);
        self.put_properties(&mut out, with_wait);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the encoded properties straight into `out` (no string per message: on batch
    /// sends the load generator's per-message strings cost it ~15 % of its CPU, which the
    /// broker under test shares the machine with).
    fn put_properties(&self, out: &mut impl BufMut, with_wait: bool) {
        let mut first = true;
        let mut pair = |k: &str, v: &[u8]| {
            if !first {
                out.put_u8(PROP_SEP as u8);
            }
            first = false;
            out.put_slice(k.as_bytes());
            out.put_u8(NAME_SEP as u8);
            out.put_slice(v);
        };
        if let Some(k) = &self.keys {
            pair("KEYS", k.as_bytes());
        }
        pair("UNIQ_KEY", self.uniq_key.as_bytes());
        if with_wait {
            pair("WAIT", b"true");
        }
        if let Some(t) = &self.tags {
            pair("TAGS", t.as_bytes());
        }
        if let Some(v) = self.intended_us {
            let mut digits = [0u8; 20];
            pair(PROP_INTENDED_US, decimal(v, &mut digits));
        }
    }
}

/// `v` in decimal, written at the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[at..];
        }
    }
}

/// `key\u1value\u2key\u1value` without a trailing separator (4.9.1+ writers).
pub fn join_properties(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(PROP_SEP);
        }
        s.push_str(k);
        s.push(NAME_SEP);
        s.push_str(v);
    }
    s
}

/// Splits properties leniently (§4.3): skip short segments, split at the first U+0001.
pub fn parse_properties(s: &str) -> Vec<(&str, &str)> {
    s.split(PROP_SEP)
        .filter(|seg| seg.len() >= 3)
        .filter_map(|seg| seg.split_once(NAME_SEP))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect()
}

/// The fixed part of every send header.
#[derive(Debug, Clone)]
pub struct SendTarget {
    pub producer_group: String,
    pub topic: String,
    pub queue_id: i32,
    pub broker_name: String,
}

/// SEND_MESSAGE_V2 with the short header names a..n.
pub fn send_v2(t: &SendTarget, msg: &OutMessage, opaque: i32, born_ms: i64) -> RemotingCommand {
    let mut cmd =
        RemotingCommand::request(request::SEND_MESSAGE_V2, opaque).with_body(msg.body.clone());
    fill_send_header(&mut cmd, t, born_ms, &msg.properties(true), false);
    cmd
}

/// SEND_BATCH_MESSAGE: header V2 with m=true, `i` carries the batch-level WAIT; body per §4.4.
pub fn send_batch(
    t: &SendTarget,
    msgs: &[OutMessage],
    opaque: i32,
    born_ms: i64,
) -> RemotingCommand {
    let body = batch_body(msgs);
    let mut cmd = RemotingCommand::request(request::SEND_BATCH_MESSAGE, opaque).with_body(body);
    fill_send_header(
        &mut cmd,
        t,
        born_ms,
        &join_properties(&[("WAIT", "true")]),
        true,
    );
    cmd
}

fn fill_send_header(
    cmd: &mut RemotingCommand,
    t: &SendTarget,
    born_ms: i64,
    props: &str,
    batch: bool,
) {
    cmd.set_field("a", &t.producer_group);
    cmd.set_field("b", &t.topic);
    cmd.set_field("c", DEFAULT_TOPIC);
    cmd.set_field("d", DEFAULT_TOPIC_QUEUE_NUMS);
    cmd.set_field("e", t.queue_id);
    cmd.set_field("f", 0);
    cmd.set_field("g", born_ms);
    cmd.set_field("h", 0);
    cmd.set_field("i", props);
    cmd.set_field("j", 0);
    cmd.set_field("k", false);
    cmd.set_field("m", batch);
    if !t.broker_name.is_empty() {
        cmd.set_field("n", &t.broker_name);
    }
}

/// §4.4: per message TOTALSIZE, magic 0, bodyCRC 0, FLAG, body len + body, props len (short) + props.
pub fn batch_body(msgs: &[OutMessage]) -> Bytes {
    let bodies: usize = msgs.iter().map(|m| m.body.len()).sum();
    let mut out = BytesMut::with_capacity(bodies + msgs.len() * 160);
    for m in msgs {
        let start = out.len();
        out.put_i32(0); // total, filled in below
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(m.body.len() as i32);
        out.put_slice(&m.body);
        let props_at = out.len();
        out.put_i16(0); // properties length, filled in below
        m.put_properties(&mut out, false);
        let props_len = out.len() - props_at - 2;
        out[props_at..props_at + 2].copy_from_slice(&(props_len as i16).to_be_bytes());
        let total = (out.len() - start) as i32;
        out[start..start + 4].copy_from_slice(&total.to_be_bytes());
    }
    out.freeze()
}

/// GET_ROUTEINFO_BY_TOPIC, asking for standard JSON (§1.8).
pub fn get_route(topic: &str, opaque: i32) -> RemotingCommand {
    RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, opaque)
        .with_field("topic", topic)
        .with_field("acceptStandardJsonOnly", true)
}

/// One broker group of a topic route, with its master address.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerRoute {
    pub broker_name: String,
    pub master_addr: Option<String>,
    pub read_queues: i32,
    pub write_queues: i32,
    pub perm: i32,
}

pub const PERM_WRITE: i32 = 2;
pub const PERM_READ: i32 = 4;

/// Parses a TopicRouteData body, accepting fastjson's bare numeric map keys.
pub fn parse_route(body: &[u8]) -> Result<Vec<BrokerRoute>> {
    let text = std::str::from_utf8(body).map_err(|_| Error("route body is not UTF-8".into()))?;
    let v: Value = serde_json::from_str(&quote_bare_keys(text))
        .map_err(|e| Error(format!("route body: {e}")))?;
    let mut masters = std::collections::HashMap::new();
    for bd in v
        .get("brokerDatas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = bd.get("brokerName").and_then(Value::as_str) else {
            continue;
        };
        let master = bd
            .get("brokerAddrs")
            .and_then(|a| a.get("0"))
            .and_then(Value::as_str);
        masters.insert(name.to_string(), master.map(str::to_string));
    }
    let mut routes = Vec::new();
    for qd in v
        .get("queueDatas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let int = |k: &str| qd.get(k).and_then(Value::as_i64).unwrap_or(0) as i32;
        let Some(name) = qd.get("brokerName").and_then(Value::as_str) else {
            continue;
        };
        routes.push(BrokerRoute {
            broker_name: name.to_string(),
            master_addr: masters.get(name).cloned().flatten(),
            read_queues: int("readQueueNums"),
            write_queues: int("writeQueueNums"),
            perm: int("perm"),
        });
    }
    if routes.is_empty() {
        return err("route has no queueDatas");
    }
    Ok(routes)
}

/// Wraps unquoted numeric object keys (`{0:"a"}`) in quotes so a standard JSON parser accepts them.
pub fn quote_bare_keys(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut in_str = false;
    let mut escaped = false;
    // Open brackets: a key can only start right after `{`, or after `,` inside an object.
    let mut stack: Vec<char> = Vec::new();
    let mut expect_key = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if expect_key && (c.is_ascii_digit() || c == '-') {
            out.push('"');
            out.push(c);
            while let Some(&d) = chars.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                out.push(d);
                chars.next();
            }
            out.push('"');
            expect_key = false;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                expect_key = false;
            }
            '{' | '[' => {
                stack.push(c);
                expect_key = c == '{';
            }
            '}' | ']' => {
                stack.pop();
                expect_key = false;
            }
            ',' => expect_key = stack.last() == Some(&'{'),
            c if c.is_whitespace() => {}
            _ => expect_key = false,
        }
        out.push(c);
    }
    out
}

/// HEART_BEAT for one consumer group subscribed to every one of `topics` with `*` (and its retry topic).
pub fn heartbeat(client_id: &str, group: &str, topics: &[String], opaque: i32) -> RemotingCommand {
    let sub = |t: &str| {
        serde_json::json!({"classFilterMode": false, "codeSet": [], "expressionType": "TAG", "subString": "*",
            "subVersion": crate::util::wall_ms_now(), "tagsSet": [], "topic": t})
    };
    let mut subs: Vec<serde_json::Value> = topics.iter().map(|t| sub(t)).collect();
    subs.push(sub(&format!("%RETRY%{group}")));
    let body = serde_json::json!({
        "clientID": client_id,
        "consumerDataSet": [{
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "consumeType": "CONSUME_ACTIVELY",
            "groupName": group, "messageModel": "CLUSTERING", "unitMode": false,
            "subscriptionDataSet": subs,
        }],
        "producerDataSet": [{"groupName": "CLIENT_INNER_PRODUCER"}],
    });
    RemotingCommand::request(request::HEART_BEAT, opaque).with_body(body.to_string().into_bytes())
}

pub fn get_max_offset(topic: &str, queue_id: i32, opaque: i32) -> RemotingCommand {
    RemotingCommand::request(request::GET_MAX_OFFSET, opaque)
        .with_field("topic", topic)
        .with_field("queueId", queue_id)
}

/// PULL_MESSAGE with sysFlag 2 (long polling allowed), filtering by the heartbeat's subscription.
pub fn pull(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    suspend_ms: u64,
    opaque: i32,
) -> RemotingCommand {
    RemotingCommand::request(request::PULL_MESSAGE, opaque)
        .with_field("consumerGroup", group)
        .with_field("topic", topic)
        .with_field("queueId", queue_id)
        .with_field("queueOffset", offset)
        .with_field("maxMsgNums", 32)
        .with_field("sysFlag", 2)
        .with_field("commitOffset", 0)
        .with_field("suspendTimeoutMillis", suspend_ms)
        .with_field("subscription", "*")
        .with_field("subVersion", 0)
        .with_field("expressionType", "TAG")
}

/// What the bench needs from one pulled record.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledRecord {
    pub queue_offset: i64,
    pub born_ms: i64,
    pub store_ms: i64,
    pub body_len: usize,
    pub intended_us: Option<u64>,
}

/// Walks the concatenated stored records of a pull body (§4.1), IPv4 or IPv6 hosts.
pub fn parse_records(mut b: &[u8]) -> Result<Vec<PulledRecord>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (rec, rest) = parse_record(b)?;
        out.push(rec);
        b = rest;
    }
    Ok(out)
}

fn parse_record(b: &[u8]) -> Result<(PulledRecord, &[u8])> {
    let total = read_i32(b, 0)?;
    let total = usize::try_from(total)
        .map_err(|_| Error(format!("record TOTALSIZE {total} is negative")))?;
    if total < 91 || total > b.len() {
        return err(format!(
            "record TOTALSIZE {total} does not fit the {} bytes left",
            b.len()
        ));
    }
    let rec = &b[..total];
    let sys_flag = read_i32(rec, 36)?;
    let born_host = if sys_flag & 0x10 != 0 { 20 } else { 8 };
    let store_host = if sys_flag & 0x20 != 0 { 20 } else { 8 };
    let store_ts_at = 48 + born_host;
    let reconsume_at = store_ts_at + 8 + store_host;
    let body_len_at = reconsume_at + 4 + 8;
    let body_len = usize::try_from(read_i32(rec, body_len_at)?)
        .map_err(|_| Error("negative body length".into()))?;
    let topic_len_at = body_len_at + 4 + body_len;
    let topic_len = *rec
        .get(topic_len_at)
        .ok_or_else(|| Error("record cut inside its body".into()))? as usize;
    let props_len_at = topic_len_at + 1 + topic_len;
    let props_len = read_i16(rec, props_len_at)?.max(0) as usize;
    let props = rec
        .get(props_len_at + 2..props_len_at + 2 + props_len)
        .ok_or_else(|| Error("record cut inside its properties".into()))?;
    let props = String::from_utf8_lossy(props);
    let intended_us = parse_properties(&props)
        .into_iter()
        .find(|(k, _)| *k == PROP_INTENDED_US)
        .and_then(|(_, v)| v.parse().ok());
    let rec_out = PulledRecord {
        queue_offset: read_i64(rec, 20)?,
        born_ms: read_i64(rec, 40)?,
        store_ms: read_i64(rec, store_ts_at)?,
        body_len,
        intended_us,
    };
    Ok((rec_out, &b[total..]))
}

fn read_i32(b: &[u8], at: usize) -> Result<i32> {
    let s = b
        .get(at..at + 4)
        .ok_or_else(|| Error(format!("record cut at byte {at}")))?;
    Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_i16(b: &[u8], at: usize) -> Result<i16> {
    let s = b
        .get(at..at + 2)
        .ok_or_else(|| Error(format!("record cut at byte {at}")))?;
    Ok(i16::from_be_bytes([s[0], s[1]]))
}

fn read_i64(b: &[u8], at: usize) -> Result<i64> {
    let s = b
        .get(at..at + 8)
        .ok_or_else(|| Error(format!("record cut at byte {at}")))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(i64::from_be_bytes(a))
}

/// Builds a §4.1 record with IPv4 hosts (for tests and fake servers).
pub fn encode_record(
    queue_offset: i64,
    born_ms: i64,
    body: &[u8],
    topic: &str,
    props: &str,
) -> Vec<u8> {
    let total = 91 + body.len() + topic.len() + props.len();
    let mut b = BytesMut::with_capacity(total);
    b.put_i32(total as i32);
    b.put_i32(0xDAA3_20A7_u32 as i32);
    b.put_i32(0);
    b.put_i32(0);
    b.put_i32(0);
    b.put_i64(queue_offset);
    b.put_i64(0);
    b.put_i32(0);
    b.put_i64(born_ms);
    b.put_slice(&[127, 0, 0, 1]);
    b.put_i32(1);
    b.put_i64(born_ms);
    b.put_slice(&[127, 0, 0, 1]);
    b.put_i32(2);
    b.put_i32(0);
    b.put_i64(0);
    b.put_i32(body.len() as i32);
    b.put_slice(body);
    b.put_u8(topic.len() as u8);
    b.put_slice(topic.as_bytes());
    b.put_i16(props.len() as i16);
    b.put_slice(props.as_bytes());
    b.to_vec()
}

/// A 32-hex-character message id, unique within this process (UNIQ_KEY shape, §4.5).
pub fn uniq_key(prefix: u64, counter: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(32);
    for v in [prefix, counter] {
        for shift in (0..16).rev() {
            s.push(HEX[((v >> (shift * 4)) & 15) as usize] as char);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &[u8]) -> OutMessage {
        OutMessage {
            body: Bytes::copy_from_slice(body),
            tags: Some("TagA".into()),
            keys: Some("k1".into()),
            uniq_key: uniq_key(1, 2),
            intended_us: Some(42),
        }
    }

    #[test]
    fn a_v2_send_uses_the_short_header_names() {
        let t = SendTarget {
            producer_group: "PG".into(),
            topic: "T".into(),
            queue_id: 3,
            broker_name: "b".into(),
        };
        let cmd = send_v2(&t, &msg(b"hello"), 9, 1_700_000_000_000);
        assert_eq!(cmd.code, 310);
        for (k, v) in [
            ("a", "PG"),
            ("b", "T"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "3"),
            ("g", "1700000000000"),
            ("m", "false"),
            ("n", "b"),
        ] {
            assert_eq!(cmd.field(k), Some(v), "{k}");
        }
        let props = cmd.field("i").unwrap_or_default();
        let props = parse_properties(props);
        assert!(props.contains(&("WAIT", "true")));
        assert!(props.contains(&("TAGS", "TagA")));
        assert!(props.contains(&(PROP_INTENDED_US, "42")));
        assert_eq!(&cmd.body[..], b"hello");
    }

    #[test]
    fn a_batch_body_is_records_back_to_back_with_m_true() {
        let t = SendTarget {
            producer_group: "PG".into(),
            topic: "T".into(),
            queue_id: 0,
            broker_name: String::new(),
        };
        let cmd = send_batch(&t, &[msg(b"ab"), msg(b"cde")], 1, 0);
        assert_eq!(cmd.code, 320);
        assert_eq!(cmd.field("m"), Some("true"));
        let b = &cmd.body[..];
        let first = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        assert_eq!(
            i32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            2,
            "body length"
        );
        assert_eq!(&b[20..22], b"ab");
        let plen = i16::from_be_bytes([b[22], b[23]]) as usize;
        assert_eq!(first, 24 + plen);
        let second =
            i32::from_be_bytes([b[first], b[first + 1], b[first + 2], b[first + 3]]) as usize;
        assert_eq!(first + second, b.len());
        let props = std::str::from_utf8(&b[24..24 + plen]).unwrap_or_default();
        assert!(!props.contains("WAIT"), "WAIT is batch-level, in header i");
    }

    #[test]
    fn hand_written_encodings_match_the_formatted_ones() {
        for (p, c) in [(0, 0), (1, 2), (u64::MAX, 0x0123_4567_89AB_CDEF)] {
            assert_eq!(uniq_key(p, c), format!("{p:016X}{c:016X}"));
        }
        for v in [0u64, 7, 10, 123_456, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(decimal(v, &mut buf), v.to_string().as_bytes());
        }
        let m = msg(b"x");
        assert_eq!(
            m.properties(true),
            join_properties(&[
                ("KEYS", "k1"),
                ("UNIQ_KEY", &uniq_key(1, 2)),
                ("WAIT", "true"),
                ("TAGS", "TagA"),
                (PROP_INTENDED_US, "42"),
            ])
        );
    }

    #[test]
    fn routes_parse_with_quoted_or_bare_broker_ids() {
        for body in [
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"b","cluster":"C"}],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":8,"writeQueueNums":8,"topicSysFlag":0}]}"#,
            r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"x:1"},"brokerName":"b","cluster":"C"}],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":8,"writeQueueNums":8}]}"#,
        ] {
            let r = parse_route(body.as_bytes()).expect("parses");
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].master_addr.as_deref(), Some("127.0.0.1:10911"));
            assert_eq!((r[0].read_queues, r[0].write_queues, r[0].perm), (8, 8, 6));
        }
    }

    #[test]
    fn bare_key_quoting_leaves_strings_alone() {
        assert_eq!(
            quote_bare_keys(r#"{0:"a,{1:x",12:3}"#),
            r#"{"0":"a,{1:x","12":3}"#
        );
        assert_eq!(quote_bare_keys(r#"[1,2,{"k":-1}]"#), r#"[1,2,{"k":-1}]"#);
    }

    #[test]
    fn pulled_records_parse_back() {
        let props = join_properties(&[("UNIQ_KEY", "X"), (PROP_INTENDED_US, "123456")]);
        let mut body = encode_record(5, 1_000, b"payload", "T", &props);
        body.extend(encode_record(6, 2_000, b"", "T", ""));
        let recs = parse_records(&body).expect("parses");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].queue_offset, 5);
        assert_eq!(recs[0].born_ms, 1_000);
        assert_eq!(recs[0].body_len, 7);
        assert_eq!(recs[0].intended_us, Some(123_456));
        assert_eq!(recs[1].intended_us, None);
        assert!(parse_records(&body[..body.len() - 1]).is_err());
    }
}
