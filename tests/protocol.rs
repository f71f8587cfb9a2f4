//! End-to-end over loopback with the project's codec: the frames real clients send, the bad
//! input they must be refused, and the answers the protocol reference documents.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::{temp_store, BrokerProcess};
use rocketcore::remoting::codes::{request as rq, response as rs};
use rocketcore::remoting::{frame, RemotingCommand, SerializeType};
use rocketcore_shards::message::record::decode;

struct Client {
    s: TcpStream,
    buf: BytesMut,
    opaque: i32,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Client {
            s,
            buf: BytesMut::new(),
            opaque: 0,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Reads the next response; `None` if the peer closed the connection.
    fn read(&mut self) -> Option<RemotingCommand> {
        self.read_where(|c| c.is_response())
    }

    /// Reads the next request the broker sends us (it calls clients too).
    fn read_request(&mut self) -> Option<RemotingCommand> {
        self.read_where(|c| !c.is_response())
    }

    /// The next frame `keep` accepts; others are dropped.
    fn read_where(&mut self, keep: impl Fn(&RemotingCommand) -> bool) -> Option<RemotingCommand> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(c) = frame::decode(&mut self.buf).expect("broker sent a valid frame") {
                if keep(&c) {
                    return Some(c);
                }
                continue;
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn call(&mut self, mut cmd: RemotingCommand) -> RemotingCommand {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        self.send_raw(&frame::encode_to_vec(&cmd));
        let r = self.read().expect("response");
        assert_eq!(r.opaque, cmd.opaque, "response echoes the opaque");
        r
    }
}

fn create_topic(c: &mut Client, topic: &str, queues: i32) {
    let r = c.call(
        RemotingCommand::request(rq::UPDATE_AND_CREATE_TOPIC, 0)
            .with_field("topic", topic)
            .with_field("readQueueNums", queues)
            .with_field("writeQueueNums", queues)
            .with_field("perm", 6)
            .with_field("topicFilterType", "SINGLE_TAG")
            .with_field("topicSysFlag", 0)
            .with_field("order", false)
            .with_field("defaultTopic", "TBW102"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
}

fn send_v2(topic: &str, queue: i32, body: &[u8], props: &str) -> RemotingCommand {
    RemotingCommand::request(rq::SEND_MESSAGE_V2, 0)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("c", "TBW102")
        .with_field("d", 4)
        .with_field("e", queue)
        .with_field("f", 0)
        .with_field("g", 1_700_000_000_000i64)
        .with_field("h", 0)
        .with_field("i", props)
        .with_field("j", 0)
        .with_field("k", false)
        .with_field("m", false)
        .with_body(body.to_vec())
}

fn pull(topic: &str, queue: i32, offset: u64, sys_flag: i32, suspend_ms: u64) -> RemotingCommand {
    RemotingCommand::request(rq::PULL_MESSAGE, 0)
        .with_field("consumerGroup", "CG")
        .with_field("topic", topic)
        .with_field("queueId", queue)
        .with_field("queueOffset", offset)
        .with_field("maxMsgNums", 32)
        .with_field("sysFlag", sys_flag)
        .with_field("commitOffset", 0)
        .with_field("suspendTimeoutMillis", suspend_ms)
        .with_field("subVersion", 0)
        .with_field("expressionType", "TAG")
}

fn records(body: &[u8]) -> Vec<rocketcore_shards::message::record::StoredRecord> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let size = i32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes")) as usize;
        out.push(decode(&body[at..at + size]).expect("a stored record"));
        at += size;
    }
    out
}

#[test]
fn given_sends_to_every_queue_when_pulling_should_return_the_stored_records_with_exact_ids() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Orders", 4);
    for q in 0..4 {
        for i in 0..3 {
            let body = format!("q{q}-m{i}");
            let r = c.call(send_v2(
                "Orders",
                q,
                body.as_bytes(),
                "TAGS\u{1}TagA\u{2}KEYS\u{1}k1\u{2}WAIT\u{1}true",
            ));
            assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
            assert_eq!(r.field("queueId"), Some(q.to_string().as_str()));
            assert_eq!(r.field("queueOffset"), Some(i.to_string().as_str()));
            assert_eq!(r.field("MSG_REGION"), Some("DefaultRegion"));
            let id = r.field("msgId").expect("msgId");
            assert_eq!(id.len(), 32, "{id}");
            // The id names the broker's address and the record's physical offset.
            let port = u16::from_str_radix(&id[12..16], 16).expect("hex port");
            assert_eq!(format!("127.0.0.1:{port}"), broker.broker_addr);
        }
        let r = c.call(pull("Orders", q, 0, 0, 0));
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        assert_eq!(r.field("nextBeginOffset"), Some("3"));
        assert_eq!(r.field("maxOffset"), Some("3"));
        let recs = records(&r.body);
        assert_eq!(recs.len(), 3);
        for (i, rec) in recs.iter().enumerate() {
            assert_eq!(rec.body.as_ref(), format!("q{q}-m{i}").as_bytes());
            assert_eq!(rec.topic, "Orders");
            assert_eq!(rec.queue_offset, i as i64);
            assert!(
                rec.properties.contains("TAGS\u{1}TagA") && rec.properties.contains("CLUSTER\u{1}")
            );
            assert!(!rec.properties.contains("WAIT"), "WAIT is not stored");
        }
    }
    // Offsets past the end and before the start get the documented codes.
    let r = c.call(pull("Orders", 0, 3, 0, 0));
    assert_eq!(
        (r.code, r.field("nextBeginOffset")),
        (rs::PULL_NOT_FOUND, Some("3"))
    );
    let r = c.call(pull("Orders", 0, 9, 0, 0));
    assert_eq!(
        (r.code, r.field("nextBeginOffset")),
        (rs::PULL_OFFSET_MOVED, Some("3"))
    );
    let r = c.call(pull("Orders", 7, 0, 0, 0));
    assert_eq!(r.code, rs::SYSTEM_ERROR);
}

#[test]
fn given_a_batch_when_sent_should_store_each_message_with_consecutive_offsets_and_joined_ids() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Batch", 1);
    let mut body = Vec::new();
    for i in 0..3 {
        let b = format!("batch-{i}");
        let p = format!("UNIQ_KEY\u{1}ID{i}");
        let total = 20 + b.len() + 2 + p.len();
        body.extend_from_slice(&(total as i32).to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&(b.len() as i32).to_be_bytes());
        body.extend_from_slice(b.as_bytes());
        body.extend_from_slice(&(p.len() as i16).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    let mut cmd = send_v2("Batch", 0, &body, "WAIT\u{1}true\u{2}UNIQ_KEY\u{1}BATCHID");
    cmd.code = rq::SEND_BATCH_MESSAGE;
    cmd.set_field("m", true);
    let r = c.call(cmd);
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.field("msgId").expect("ids").split(',').count(), 3);
    assert_eq!(r.field("queueOffset"), Some("0"));
    let recs = records(&c.call(pull("Batch", 0, 0, 0, 0)).body);
    let bodies: Vec<&[u8]> = recs.iter().map(|r| r.body.as_ref()).collect();
    assert_eq!(bodies, vec![&b"batch-0"[..], b"batch-1", b"batch-2"]);
    assert!(
        recs[2].properties.contains("UNIQ_KEY\u{1}ID2"),
        "a message keeps its own id"
    );
    assert!(!recs[2].properties.contains("BATCHID"));
    // A batch body whose lengths disagree is refused and stores nothing.
    let mut bad = send_v2("Batch", 0, &body[..body.len() - 3], "");
    bad.code = rq::SEND_BATCH_MESSAGE;
    assert_eq!(c.call(bad).code, rs::MESSAGE_ILLEGAL);
    let r = c.call(
        RemotingCommand::request(rq::GET_MAX_OFFSET, 0)
            .with_field("topic", "Batch")
            .with_field("queueId", 0),
    );
    assert_eq!(r.field("offset"), Some("3"));
}

#[test]
fn given_lenient_client_headers_should_be_served_and_answered_in_kind() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Lenient", 2);
    // JSON header ending in a newline, extFields as JSON numbers and booleans, language GO,
    // no serializeTypeCurrentRPC, ACL fields present.
    let header = br#"{"code":310,"language":"GO","version":317,"opaque":77,"flag":0,"extFields":{"a":"PG","b":"Lenient","c":"TBW102","d":4,"e":1,"f":0,"g":1700000000000,"h":0,"i":"TAGS\u0001x","j":0,"k":false,"m":false,"AccessKey":"ak","Signature":"s","OnsChannel":"ALIYUN"}}
"#;
    let mut f = Vec::new();
    f.extend_from_slice(&((4 + header.len() + 2) as i32).to_be_bytes());
    f.extend_from_slice(&(header.len() as u32).to_be_bytes());
    f.extend_from_slice(header);
    f.extend_from_slice(b"hi");
    c.send_raw(&f);
    let r = c.read().expect("response");
    assert_eq!((r.code, r.opaque), (rs::SUCCESS, 77), "{:?}", r.remark);
    assert_eq!(r.language_name(), "JAVA");
    assert_eq!(r.version, 409);
    // The binary ROCKETMQ header form is answered in the same form.
    let mut bin = send_v2("Lenient", 0, b"bin", "");
    bin.serialize_type = SerializeType::RocketMq;
    let r = c.call(bin);
    assert_eq!(
        (r.code, r.serialize_type),
        (rs::SUCCESS, SerializeType::RocketMq)
    );
    // batch=true on a plain SEND_MESSAGE is a batch.
    let r = c.call(RemotingCommand::request(rq::HEART_BEAT, 0).with_body(
        br#"{"clientID":"127.0.0.1@1","consumerDataSet":[{"groupName":"LG","consumeType":1,"messageModel":1,"consumeFromWhere":4,"subscriptionDataSet":[{"topic":"Lenient","subString":"*","subVersion":"12"}]}],"producerDataSet":[]}"#.to_vec(),
    ));
    assert_eq!((r.code, r.version), (rs::SUCCESS, 409));
    let r = c.call(
        RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP, 0)
            .with_field("consumerGroup", "LG"),
    );
    assert_eq!(r.code, rs::SUCCESS);
    assert!(String::from_utf8_lossy(&r.body).contains("127.0.0.1@1"));
}

#[test]
fn given_bad_input_should_answer_with_the_documented_code_and_keep_serving() {
    let dir = temp_store();
    let broker = BrokerProcess::start(
        dir.path(),
        &[
            ("maxMessageSize", "1024"),
            ("autoCreateTopicEnable", "false"),
        ],
    );
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Small", 1);
    let r = c.call(send_v2("Small", 0, &vec![b'x'; 2048], ""));
    assert_eq!(r.code, rs::MESSAGE_ILLEGAL);
    assert!(r.remark.unwrap_or_default().contains("maxMessageSize"));
    let r = c.call(send_v2("bad topic!", 0, b"x", ""));
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("illegal"));
    let r = c.call(send_v2("Missing", 0, b"x", ""));
    assert_eq!(r.code, rs::TOPIC_NOT_EXIST);
    let r = c.call(RemotingCommand::request(9999, 0));
    assert_eq!(r.code, rs::REQUEST_CODE_NOT_SUPPORTED);
    assert!(r.remark.unwrap_or_default().contains("9999"));
    let r =
        c.call(RemotingCommand::request(rq::GET_TOPIC_STATS_INFO, 0).with_field("topic", "Nope"));
    assert_eq!(
        r.code,
        rs::TOPIC_NOT_EXIST,
        "stats of a topic that does not exist"
    );
    let r = c.call(RemotingCommand::request(rq::GET_CONSUME_STATS, 0));
    assert_eq!(r.code, rs::SYSTEM_ERROR, "consume stats without a group");
    for code in [rq::LOCK_BATCH_MQ, rq::UNLOCK_BATCH_MQ] {
        let r = c.call(RemotingCommand::request(code, 0).with_body(&b"{\"mqSet\":7}"[..]));
        assert_eq!(r.code, rs::SYSTEM_ERROR, "a malformed lock body is refused");
        assert!(r.remark.unwrap_or_default().contains("lock request body"));
    }
    let r = c.call(
        RemotingCommand::request(rq::GET_CONSUMER_CONNECTION_LIST, 0)
            .with_field("consumerGroup", "NobodyHere"),
    );
    assert_eq!(
        r.code,
        rs::CONSUMER_NOT_ONLINE,
        "a group with no member online"
    );
    assert!(r.remark.unwrap_or_default().contains("NobodyHere"));
    let r = c.call(
        RemotingCommand::request(rq::GET_SUBSCRIPTIONGROUP_CONFIG, 0).with_field("group", "NoSuch"),
    );
    assert_eq!(r.code, rs::SUBSCRIPTION_GROUP_NOT_EXIST);
    for body in [
        &b"not json"[..],
        br#"{"groupName":"a/b"}"#,
        br#"{"groupName":"G","retryQueueNums":-1}"#,
    ] {
        let r = c.call(
            RemotingCommand::request(rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, 0).with_body(body),
        );
        assert_eq!(
            r.code,
            rs::SYSTEM_ERROR,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(!r.remark.unwrap_or_default().is_empty());
    }
    // SQL92 needs enablePropertyFilter (off here): code 1, at the check and at a pull.
    let check = RemotingCommand::request(rq::CHECK_CLIENT_CONFIG, 0).with_body(
        &br#"{"clientId":"c","group":"G","subscriptionData":{"topic":"Small","subString":"a > 1","expressionType":"SQL92"}}"#[..],
    );
    let r = c.call(check);
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("SQL92"));
    let reset = |topic: &str| {
        RemotingCommand::request(rq::INVOKE_BROKER_TO_RESET_OFFSET, 0)
            .with_field("topic", topic)
            .with_field("group", "NobodyHere")
            .with_field("timestamp", 0)
            .with_field("isForce", "true")
    };
    let r = c.call(
        RemotingCommand::request(rq::CLONE_GROUP_OFFSET, 0)
            .with_field("srcGroup", "A")
            .with_field("destGroup", "not a group!")
            .with_field("topic", "Small"),
    );
    assert_eq!(r.code, rs::SYSTEM_ERROR, "a clone into a bad group name");
    assert!(r.remark.unwrap_or_default().contains("illegal"));
    let r = c.call(RemotingCommand::request(rq::QUERY_TOPIC_CONSUME_BY_WHO, 0));
    assert_eq!(r.code, rs::SYSTEM_ERROR, "consumed-by without a topic");
    let r = c.call(reset("Nope"));
    assert_eq!(
        r.code,
        rs::SYSTEM_ERROR,
        "a reset of a topic that does not exist"
    );
    assert!(r.remark.unwrap_or_default().contains("no topic"));
    let r = c.call(reset("Small"));
    assert_eq!(
        r.code,
        rs::SYSTEM_ERROR,
        "a reset for a group with no offsets"
    );
    assert!(r.remark.unwrap_or_default().contains("NobodyHere"));
    let r = c.call(RemotingCommand::request(
        rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        0,
    ));
    let all: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
    assert_eq!(
        all["subscriptionGroupTable"].as_object().map(|t| t.len()),
        Some(0),
        "nothing refused was stored: {all}"
    );
    let r = c.call(
        pull("Small", 0, 0, 4, 0)
            .with_field("subscription", "a > 1")
            .with_field("expressionType", "SQL92"),
    );
    assert_eq!(
        r.code,
        rs::SYSTEM_ERROR,
        "an SQL92 pull on a broker without property filtering"
    );
    let r = c.call(RemotingCommand::request(rq::PULL_MESSAGE, 0).with_field("topic", "Small"));
    assert_eq!(
        r.code,
        rs::SYSTEM_ERROR,
        "a missing field is an error, not a panic"
    );
    let r = c.call(
        RemotingCommand::request(rq::GET_MAX_OFFSET, 0)
            .with_field("topic", "Small")
            .with_field("queueId", 0),
    );
    assert_eq!(r.field("offset"), Some("0"), "nothing refused was stored");
    // Undecodable frames close that connection only.
    for garbage in [
        &[0xFFu8, 0xFF, 0xFF, 0xFF][..],
        &[0, 0, 0, 8, 7, 0, 0, 1, 0, 0, 0, 0],
        &[0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x'],
    ] {
        let mut bad = Client::connect(&broker.broker_addr);
        bad.send_raw(garbage);
        assert!(bad.read().is_none(), "connection closed after {garbage:?}");
    }
    // An oversized frame length is refused before any body is buffered.
    let mut big = Client::connect(&broker.broker_addr);
    big.send_raw(&(64 * 1024 * 1024i32).to_be_bytes());
    assert!(big.read().is_none());
    let mut again = Client::connect(&broker.broker_addr);
    assert_eq!(
        again.call(send_v2("Small", 0, b"ok", "")).code,
        rs::SUCCESS,
        "still serving"
    );
}

#[test]
fn given_a_parked_pull_when_a_message_arrives_should_answer_with_it() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Poll", 1);
    let addr = broker.broker_addr.clone();
    let waiter = std::thread::spawn(move || {
        let mut p = Client::connect(&addr);
        p.call(pull("Poll", 0, 0, 2, 15_000))
    });
    let r = c.call(send_v2("Poll", 0, b"wake", ""));
    assert_eq!(r.code, rs::SUCCESS);
    let r = waiter.join().expect("waiter");
    assert_eq!(
        r.code,
        rs::SUCCESS,
        "a held pull is answered on arrival, not after its timeout"
    );
    assert_eq!(records(&r.body)[0].body.as_ref(), b"wake");
}

#[test]
fn given_a_new_group_when_querying_offsets_should_follow_the_new_group_rule_then_commits() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Offs", 1);
    let q = || {
        RemotingCommand::request(rq::QUERY_CONSUMER_OFFSET, 0)
            .with_field("consumerGroup", "G")
            .with_field("topic", "Offs")
            .with_field("queueId", 0)
    };
    let r = c.call(q());
    assert_eq!((r.code, r.field("offset")), (rs::SUCCESS, Some("0")));
    let r = c.call(
        RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET, 0)
            .with_field("consumerGroup", "G")
            .with_field("topic", "Offs")
            .with_field("queueId", 0)
            .with_field("commitOffset", 42),
    );
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(c.call(q()).field("offset"), Some("42"));
    let r = c.call(
        RemotingCommand::request(rq::QUERY_CONSUMER_OFFSET, 0)
            .with_field("consumerGroup", "G")
            .with_field("topic", "Nope")
            .with_field("queueId", 0),
    );
    assert_eq!(r.code, rs::TOPIC_NOT_EXIST);
}

#[test]
fn given_the_embedded_namesrv_should_route_created_topics_and_refuse_unknown_ones() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut ns = Client::connect(&broker.namesrv_addr);
    let r = ns.call(
        RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", "TBW102"),
    );
    assert_eq!(r.code, rs::SUCCESS);
    let route: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        broker.broker_addr.as_str()
    );
    assert_eq!(route["queueDatas"][0]["perm"], 7);
    let r = ns.call(
        RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", "Unknown"),
    );
    assert_eq!(r.code, rs::TOPIC_NOT_EXIST);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Routed", 3);
    // Creation registers with the NameServer before it answers.
    let r = ns.call(
        RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", "Routed"),
    );
    assert_eq!(r.code, rs::SUCCESS);
    let route: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 3);
    assert_eq!(route["queueDatas"][0]["topicSynFlag"], 0);
    let r = ns.call(RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, 0));
    let info: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert!(info["clusterAddrTable"]["DefaultCluster"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let r = ns.call(
        RemotingCommand::request(rq::PUT_KV_CONFIG, 0)
            .with_field("namespace", "N")
            .with_field("key", "k")
            .with_field("value", "v"),
    );
    assert_eq!(r.code, rs::SUCCESS);
    let r = ns.call(
        RemotingCommand::request(rq::GET_KV_CONFIG, 0)
            .with_field("namespace", "N")
            .with_field("key", "k"),
    );
    assert_eq!(r.field("value"), Some("v"));
}

#[test]
fn given_a_deleted_topic_should_drop_its_queues_and_route_and_start_empty_when_recreated() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Gone", 4);
    for q in 0..4 {
        assert_eq!(c.call(send_v2("Gone", q, b"x", "")).code, rs::SUCCESS);
    }
    let r =
        c.call(RemotingCommand::request(rq::DELETE_TOPIC_IN_BROKER, 0).with_field("topic", "Gone"));
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(c.call(pull("Gone", 0, 0, 0, 0)).code, rs::TOPIC_NOT_EXIST);
    let mut ns = Client::connect(&broker.namesrv_addr);
    let r = ns
        .call(RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", "Gone"));
    assert_eq!(r.code, rs::TOPIC_NOT_EXIST, "the route is gone too");
    create_topic(&mut c, "Gone", 4);
    for q in 0..4 {
        let r = c.call(
            RemotingCommand::request(rq::GET_MAX_OFFSET, 0)
                .with_field("topic", "Gone")
                .with_field("queueId", q),
        );
        assert_eq!(r.field("offset"), Some("0"), "queue {q} starts empty");
    }
}

#[test]
fn given_lookups_by_offset_and_key_should_find_records_and_refuse_bad_input_with_a_remark() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Lookups", 2);
    let mut offsets = Vec::new();
    for q in 0..2 {
        let props = format!("KEYS\u{1}order-7 other\u{2}UNIQ_KEY\u{1}UNIQ{q}");
        let r = c.call(send_v2(
            "Lookups",
            q,
            format!("body-{q}").as_bytes(),
            &props,
        ));
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        let id = r.field("msgId").expect("msgId");
        offsets.push(i64::from_str_radix(&id[16..], 16).expect("hex offset"));
    }
    let view = |offset: String| {
        RemotingCommand::request(rq::VIEW_MESSAGE_BY_ID, 0).with_field("offset", offset)
    };
    for (q, off) in offsets.iter().enumerate() {
        let r = c.call(view(off.to_string()));
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        let rec = decode(&r.body).expect("one stored record");
        assert_eq!(rec.body.as_ref(), format!("body-{q}").as_bytes());
        assert_eq!(rec.physical_offset, *off);
    }
    for bad in [
        (-1i64).to_string(),
        (offsets[0] + 1).to_string(),
        (0xFFFFi64 << 48).to_string(),
        i64::MAX.to_string(),
        "not-a-number".to_string(),
    ] {
        let r = c.call(view(bad.clone()));
        assert_eq!(r.code, rs::SYSTEM_ERROR, "offset {bad}");
        assert!(
            r.remark.is_some_and(|m| !m.is_empty()),
            "offset {bad}: a remark says why"
        );
    }

    let query = |key: &str, max: &str| {
        RemotingCommand::request(rq::QUERY_MESSAGE, 0)
            .with_field("topic", "Lookups")
            .with_field("key", key)
            .with_field("maxNum", max)
            .with_field("beginTimestamp", 0)
            .with_field("endTimestamp", i64::MAX)
    };
    let r = c.call(query("order-7", "32"));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert!(r.field("indexLastUpdateTimestamp").is_some());
    let mut bodies: Vec<Vec<u8>> = records(&r.body).iter().map(|m| m.body.to_vec()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        vec![b"body-0".to_vec(), b"body-1".to_vec()],
        "one key of several"
    );
    let r = c.call(query("order-7", "1"));
    assert_eq!(records(&r.body).len(), 1, "maxNum caps the answer");
    let r = c.call(query("UNIQ1", "32").with_field("_UNIQUE_KEY_QUERY", "true"));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(records(&r.body)[0].body.as_ref(), b"body-1");
    for (key, max) in [("nobody", "32"), ("order-7", "0")] {
        let r = c.call(query(key, max));
        assert_eq!(r.code, rs::QUERY_NOT_FOUND, "{key} {max}");
    }
    let r = c.call(query("order-7", "many"));
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    let r = c.call(RemotingCommand::request(rq::QUERY_MESSAGE, 0).with_field("topic", "Lookups"));
    assert_eq!(
        r.code,
        rs::SYSTEM_ERROR,
        "a missing field is an error, not a panic"
    );
    // Still serving.
    let r = c.call(view(offsets[1].to_string()));
    assert_eq!(r.code, rs::SUCCESS);
}

#[test]
fn given_a_delayed_message_pending_at_a_clean_stop_should_be_delivered_once_after_restart() {
    let dir = temp_store();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Later", 1);
    // Level 2: due 5 s after it is stored, long after the stop below.
    let r = c.call(send_v2("Later", 0, b"after-restart", "DELAY\u{1}2"));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(
        r.field("queueId"),
        Some("0"),
        "the answer names the queue asked for"
    );
    let r = c.call(pull("Later", 0, 0, 0, 0));
    assert_eq!(r.code, rs::PULL_NOT_FOUND, "not delivered before it is due");
    broker.stop_clean();

    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    // A held pull (sysFlag 2) is answered when the message arrives.
    let r = c.call(pull("Later", 0, 0, 2, 20_000));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let recs = records(&r.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].body.as_ref(), b"after-restart");
    assert_eq!((recs[0].topic.as_str(), recs[0].queue_id), ("Later", 0));
    assert!(
        !recs[0].properties.contains("DELAY\u{1}"),
        "delivered without DELAY"
    );
    let r = c.call(pull("Later", 0, 1, 0, 0));
    assert_eq!(r.code, rs::PULL_NOT_FOUND, "delivered once");
}

/// Sends a transaction's prepared message; returns its (half queue offset, physical offset).
fn send_half(c: &mut Client, body: &[u8], uniq: &str) -> (i64, i64) {
    let props = format!("TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PG\u{2}UNIQ_KEY\u{1}{uniq}");
    let r = c.call(send_v2("Tx", 0, body, &props).with_field("f", 4));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(
        r.field("queueId"),
        Some("0"),
        "the answer names the queue asked for"
    );
    let id = r.field("msgId").expect("msgId");
    let phys = i64::from_str_radix(&id[16..], 16).expect("hex offset");
    let queue_offset = r
        .field("queueOffset")
        .expect("queueOffset")
        .parse()
        .expect("a number");
    (queue_offset, phys)
}

fn end_tx(group: &str, (queue_offset, phys): (i64, i64), outcome: i32) -> RemotingCommand {
    RemotingCommand::request(rq::END_TRANSACTION, 0)
        .with_field("producerGroup", group)
        .with_field("tranStateTableOffset", queue_offset)
        .with_field("commitLogOffset", phys)
        .with_field("commitOrRollback", outcome)
        .with_field("fromTransactionCheck", false)
        .with_field("msgId", "m")
}

fn producer_heartbeat(c: &mut Client) {
    let body =
        br#"{"clientID":"tx-test","producerDataSet":[{"groupName":"PG"}],"consumerDataSet":[]}"#;
    let r = c.call(RemotingCommand::request(rq::HEART_BEAT, 0).with_body(&body[..]));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
}

fn bodies_from(c: &mut Client, offset: u64) -> Vec<Vec<u8>> {
    let r = c.call(pull("Tx", 0, offset, 0, 0));
    if r.code != rs::SUCCESS {
        return Vec::new();
    }
    records(&r.body).iter().map(|m| m.body.to_vec()).collect()
}

#[test]
fn given_transactions_should_deliver_only_commits_check_unanswered_ones_and_survive_a_restart() {
    const COMMIT: i32 = 8;
    const ROLLBACK: i32 = 12;
    let dir = temp_store();
    // First without checks (the default 60 s interval), so what is resolved before the restart
    // is known only from the op queue afterwards.
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Tx", 1);
    let a = send_half(&mut c, b"commit-me", "UA");
    let b = send_half(&mut c, b"roll-me", "UB");
    let ask = send_half(&mut c, b"ask-me", "UC");
    assert!(
        bodies_from(&mut c, 0).is_empty(),
        "nothing visible before a commit"
    );

    for (h, outcome) in [(a, COMMIT), (b, ROLLBACK)] {
        let r = c.call(end_tx("PG", h, outcome));
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    }
    let r = c.call(pull("Tx", 0, 0, 0, 0));
    let got = records(&r.body);
    assert_eq!(got.len(), 1, "only the commit is delivered");
    assert_eq!(got[0].body.as_ref(), b"commit-me");
    assert_eq!(
        got[0].sys_flag & 0x0C,
        COMMIT,
        "stored as a committed message"
    );
    assert_eq!(got[0].prepared_transaction_offset, a.1);
    // A repeated answer does not deliver twice.
    let r = c.call(end_tx("PG", a, COMMIT));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(bodies_from(&mut c, 0).len(), 1);
    // Bad answers are refused with a remark and change nothing.
    for (cmd, says) in [
        (end_tx("PG", ask, 5), "commitOrRollback"),
        (end_tx("Other", ask, COMMIT), "producer group"),
        (end_tx("PG", (ask.0, ask.1 + 1), COMMIT), "Find prepared"),
        (
            end_tx("PG", (ask.0 + 1, ask.1), COMMIT),
            "state table offset",
        ),
    ] {
        let r = c.call(cmd);
        assert_eq!(r.code, rs::SYSTEM_ERROR);
        let remark = r.remark.unwrap_or_default();
        assert!(remark.contains(says), "{remark}");
    }
    assert_eq!(bodies_from(&mut c, 0).len(), 1);
    broker.stop_clean();

    // After the restart, with checks every 500 ms: the broker asks a producer of the group about
    // the unanswered one first (the resolved ones before it are not asked about), which commits.
    let sets = [
        ("transactionCheckInterval", "500"),
        ("transactionTimeOut", "500"),
    ];
    let _broker = BrokerProcess::start(dir.path(), &sets);
    let mut c = Client::connect(&_broker.broker_addr);
    producer_heartbeat(&mut c);
    send_half(&mut c, b"later", "UD");
    let check = c.read_request().expect("a transaction check");
    assert_eq!(check.code, rq::CHECK_TRANSACTION_STATE);
    assert_eq!(
        check.field("msgId"),
        Some("UC"),
        "resolved ones are not asked about"
    );
    let shown = decode(&check.body).expect("the message as a stored record");
    assert_eq!(
        (shown.topic.as_str(), shown.body.as_ref()),
        ("Tx", &b"ask-me"[..])
    );
    let copy = (
        check
            .field("tranStateTableOffset")
            .expect("offset")
            .parse()
            .expect("a number"),
        check
            .field("commitLogOffset")
            .expect("offset")
            .parse()
            .expect("a number"),
    );
    let r = c.call(end_tx("PG", copy, COMMIT));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(bodies_from(&mut c, 1), vec![b"ask-me".to_vec()]);
    let check = c.read_request().expect("a transaction check");
    assert_eq!(
        check.field("msgId"),
        Some("UD"),
        "then the next unanswered one"
    );
    assert_eq!(bodies_from(&mut c, 0).len(), 2, "nothing delivered twice");
}

#[test]
fn given_property_filtering_should_serve_sql92_pulls_and_refuse_bad_expressions() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[("enablePropertyFilter", "true")]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Sql", 1);
    for a in 0..4 {
        let r = c.call(send_v2(
            "Sql",
            0,
            format!("m{a}").as_bytes(),
            &format!("a\u{1}{a}"),
        ));
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    }
    let check = |expr: &str| {
        let body = serde_json::json!({"clientId": "c", "group": "G",
            "subscriptionData": {"topic": "Sql", "subString": expr, "expressionType": "SQL92"}});
        RemotingCommand::request(rq::CHECK_CLIENT_CONFIG, 0)
            .with_body(body.to_string().into_bytes())
    };
    assert_eq!(c.call(check("a > 1 AND a IS NOT NULL")).code, rs::SUCCESS);
    let r = c.call(check("a >"));
    assert_eq!(r.code, rs::SUBSCRIPTION_PARSE_FAILED);
    assert!(!r.remark.unwrap_or_default().is_empty());

    let sql_pull = |expr: &str, offset: u64| {
        pull("Sql", 0, offset, 4, 0)
            .with_field("subscription", expr)
            .with_field("expressionType", "SQL92")
    };
    let r = c.call(sql_pull("a > 1", 0));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let bodies: Vec<Vec<u8>> = records(&r.body).iter().map(|m| m.body.to_vec()).collect();
    assert_eq!(bodies, vec![b"m2".to_vec(), b"m3".to_vec()]);
    assert_eq!(r.field("nextBeginOffset"), Some("4"));
    let r = c.call(sql_pull("a = 9", 0));
    assert_eq!(r.code, rs::PULL_RETRY_IMMEDIATELY, "nothing matched");
    assert_eq!(
        r.field("nextBeginOffset"),
        Some("4"),
        "past what did not match"
    );
    let r = c.call(sql_pull("a >", 0));
    assert_eq!(r.code, rs::SUBSCRIPTION_PARSE_FAILED);
}

/// Requests the broker relays to one client and answers with the client's answer: the consumer's
/// connection gets the request (with the stored message for CONSUME_MESSAGE_DIRECTLY) and its
/// answer comes back to the asker unchanged.
#[test]
fn given_an_online_consumer_should_relay_running_info_and_direct_consume_requests_to_it() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut consumer = Client::connect(&broker.broker_addr);
    let mut admin = Client::connect(&broker.broker_addr);
    create_topic(&mut admin, "Relay", 1);
    let r = admin.call(send_v2("Relay", 0, b"direct", ""));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let offset_msg_id = r.field("msgId").expect("msgId").to_string();
    let hb = br#"{"clientID":"relay-test","consumerDataSet":[{"groupName":"RG","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"topic":"Relay","subString":"*","subVersion":1}]}],"producerDataSet":[]}"#;
    let r = consumer.call(RemotingCommand::request(rq::HEART_BEAT, 0).with_body(&hb[..]));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);

    let ask = |code: i32, opaque: i32| {
        RemotingCommand::request(code, opaque)
            .with_field("consumerGroup", "RG")
            .with_field("clientId", "relay-test")
            .with_field("msgId", offset_msg_id.as_str())
            .with_field("jstackEnable", "false")
    };
    for (code, answer) in [
        (rq::GET_CONSUMER_RUNNING_INFO, &b"{\"properties\":{}}"[..]),
        (
            rq::CONSUME_MESSAGE_DIRECTLY,
            &b"{\"consumeResult\":\"CR_SUCCESS\"}"[..],
        ),
    ] {
        admin.send_raw(&frame::encode_to_vec(&ask(code, 77)));
        let relayed = consumer.read_request().expect("the relayed request");
        assert_eq!(relayed.code, code);
        assert_eq!(relayed.field("consumerGroup"), Some("RG"));
        if code == rq::CONSUME_MESSAGE_DIRECTLY {
            let rec = decode(&relayed.body).expect("the stored message");
            assert_eq!(rec.body.as_ref(), b"direct");
        }
        let reply = RemotingCommand::response_to(&relayed, rs::SUCCESS).with_body(answer.to_vec());
        consumer.send_raw(&frame::encode_to_vec(&reply));
        let back = admin.read().expect("the client's answer");
        assert_eq!((back.code, back.opaque), (rs::SUCCESS, 77));
        assert_eq!(back.body.as_ref(), answer);
    }
    // A client that is not online, and an id that names no message.
    let r = admin.call(ask(rq::GET_CONSUMER_RUNNING_INFO, 0).with_field("clientId", "gone"));
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("not online"));
    let r = admin.call(ask(rq::CONSUME_MESSAGE_DIRECTLY, 0).with_field("msgId", "XYZ"));
    assert_eq!(r.code, rs::SYSTEM_ERROR);
}

/// CONSUMER_SEND_MSG_BACK follows the group's config when the client sends no limit: with
/// retryMaxTimes 0 the first failure goes to the group's DLQ, and a group without retry queues
/// drops it.
#[test]
fn given_group_retry_settings_a_sent_back_message_should_follow_them() {
    let dir = temp_store();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut c = Client::connect(&broker.broker_addr);
    create_topic(&mut c, "Back", 1);
    let r = c.call(send_v2("Back", 0, b"failing", ""));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let id = r.field("msgId").expect("msgId");
    let phys = i64::from_str_radix(&id[16..], 16).expect("hex offset");
    for settings in [
        serde_json::json!({"groupName": "NoRetry", "retryMaxTimes": 0}),
        serde_json::json!({"groupName": "NoQueues", "retryQueueNums": 0}),
    ] {
        let r = c.call(
            RemotingCommand::request(rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, 0)
                .with_body(settings.to_string().into_bytes()),
        );
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    }
    let back = |group: &str| {
        RemotingCommand::request(rq::CONSUMER_SEND_MSG_BACK, 0)
            .with_field("offset", phys)
            .with_field("group", group)
            .with_field("delayLevel", 0)
            .with_field("originMsgId", "x")
            .with_field("originTopic", "Back")
    };
    let max = |c: &mut Client, topic: &str, queue: i32| {
        let r = c.call(
            RemotingCommand::request(rq::GET_MAX_OFFSET, 0)
                .with_field("topic", topic)
                .with_field("queueId", queue),
        );
        r.field("offset").unwrap_or("0").to_string()
    };
    let topics = |c: &mut Client| {
        let r = c.call(RemotingCommand::request(rq::GET_ALL_TOPIC_CONFIG, 0));
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("topic configs");
        v["topicConfigTable"]
            .as_object()
            .map(|t| t.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let r = c.call(back("NoRetry"));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let dlq = max(&mut c, "%DLQ%NoRetry", 0);
    assert_eq!(dlq, "1", "retryMaxTimes 0: straight to the DLQ");
    let r = c.call(back("NoQueues"));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    // A group with the defaults (16 tries) retries: the retry waits for its delay, and its
    // retry topic exists.
    let r = c.call(back("Defaults"));
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let names = topics(&mut c);
    assert!(names.iter().any(|t| t == "%RETRY%Defaults"), "{names:?}");
    assert!(!names.iter().any(|t| t == "%DLQ%Defaults"), "{names:?}");
    assert!(
        !names.iter().any(|t| t.ends_with("%NoQueues")),
        "no retry queues: dropped, nowhere to go: {names:?}"
    );
}
