//! A fake NameServer + broker on one 127.0.0.1 port, speaking through rocketcore's codec. It knows only what
//! the bench asks: routes (a topic has none until something was stored in it, then QUEUES queues, as if
//! auto-created; TBW102 points at itself), sends (single and batch, stored per (topic, queue)), heartbeats,
//! GET_MAX_OFFSET and pulls (held until a message arrives or the suspend time ends).
//!
//! Faults it injects, each chosen by the test: a stall of a known length before answering one chosen send
//! (a GC pause or a disk hiccup as a client sees it), a non-OK answer code for every Nth send, and a delay of a
//! known length before every pull answer.
#![allow(dead_code)]

use bytes::{Buf, BytesMut};
use rocketcore::remoting::codes::{request, response};
use rocketcore::remoting::{frame, RemotingCommand};
use rocketcore_bench::proto;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub const QUEUES: i32 = 4;

#[derive(Default, Clone)]
pub struct Faults {
    /// Stall this long before answering the send with this 0-based sequence number.
    pub stall_at: Option<(u64, Duration)>,
    /// Answer every Nth send (1-based) with this code instead of SUCCESS.
    pub fail_every: Option<(u64, i32)>,
    /// Hold every pull answer this long before writing it.
    pub pull_delay: Option<Duration>,
}

#[derive(Default)]
struct Store {
    /// (topic, queue id) → stored records (§4.1 bytes).
    queues: HashMap<(String, i32), Vec<Vec<u8>>>,
}

impl Store {
    fn len(&self, topic: &str, q: i32) -> usize {
        self.queues.get(&(topic.to_string(), q)).map_or(0, Vec::len)
    }
    fn has_topic(&self, topic: &str) -> bool {
        self.queues.keys().any(|(t, _)| t == topic)
    }
}

pub struct FakeBroker {
    pub addr: String,
    pub sends: Arc<AtomicU64>,
    pub messages: Arc<AtomicU64>,
    pub route_lookups: Arc<Mutex<Vec<String>>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

struct Shared {
    addr: String,
    faults: Faults,
    sends: Arc<AtomicU64>,
    messages: Arc<AtomicU64>,
    route_lookups: Arc<Mutex<Vec<String>>>,
    store: Mutex<Store>,
    arrived: Condvar,
}

impl FakeBroker {
    pub fn start(faults: Faults) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let shared = Arc::new(Shared {
            addr: addr.clone(),
            faults,
            sends: Arc::default(),
            messages: Arc::default(),
            route_lookups: Arc::default(),
            store: Mutex::default(),
            arrived: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let fb = FakeBroker {
            addr,
            sends: Arc::clone(&shared.sends),
            messages: Arc::clone(&shared.messages),
            route_lookups: Arc::clone(&shared.route_lookups),
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
        };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&shared);
                std::thread::spawn(move || serve(conn, s));
            }
        });
        fb
    }
}

impl FakeBroker {
    /// Messages stored per (topic, queue id).
    pub fn stored(&self) -> BTreeMap<(String, i32), usize> {
        self.shared
            .store
            .lock()
            .map(|st| {
                st.queues
                    .iter()
                    .map(|(k, v)| (k.clone(), v.len()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(mut conn: TcpStream, s: Arc<Shared>) {
    let _ = conn.set_nodelay(true);
    let writer = Arc::new(Mutex::new(conn.try_clone().expect("clone")));
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Ok(Some(req)) = frame::decode(&mut buf) {
            if req.code == request::PULL_MESSAGE {
                // Pulls may be held: answer from their own thread so sends are not blocked behind them.
                let (s, w) = (Arc::clone(&s), Arc::clone(&writer));
                std::thread::spawn(move || {
                    let resp = pull(&s, &req);
                    if let Some(d) = s.faults.pull_delay {
                        std::thread::sleep(d);
                    }
                    reply(&w, &resp)
                });
            } else {
                let resp = handle(&s, &req);
                reply(&writer, &resp);
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn reply(w: &Mutex<TcpStream>, resp: &RemotingCommand) {
    let bytes = frame::encode_to_vec(resp);
    if let Ok(mut w) = w.lock() {
        let _ = w.write_all(&bytes);
    }
}

fn handle(s: &Shared, req: &RemotingCommand) -> RemotingCommand {
    match req.code {
        request::GET_ROUTEINFO_BY_TOPIC => route(s, req),
        request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => send(s, req),
        request::HEART_BEAT => RemotingCommand::response_to(req, response::SUCCESS),
        request::GET_MAX_OFFSET => {
            let q = req
                .field("queueId")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let topic = req.field("topic").unwrap_or_default();
            let n = s.store.lock().map(|st| st.len(topic, q)).unwrap_or(0);
            RemotingCommand::response_to(req, response::SUCCESS).with_field("offset", n)
        }
        _ => RemotingCommand::response_to(req, response::REQUEST_CODE_NOT_SUPPORTED),
    }
}

fn route(s: &Shared, req: &RemotingCommand) -> RemotingCommand {
    let topic = req.field("topic").unwrap_or_default().to_string();
    if let Ok(mut l) = s.route_lookups.lock() {
        l.push(topic.clone());
    }
    // TBW102 is inheritable (perm 7); an auto-created topic is read-write (6).
    let (queues, perm) = if topic == "TBW102" {
        (8, 7)
    } else if s.store.lock().is_ok_and(|st| st.has_topic(&topic)) {
        (QUEUES, 6)
    } else {
        return RemotingCommand::response_to(req, response::TOPIC_NOT_EXIST);
    };
    // Bare numeric keys, as an old fastjson NameServer writes them.
    let body = format!(
        r#"{{"brokerDatas":[{{"brokerAddrs":{{0:"{}"}},"brokerName":"fake-a","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"fake-a","perm":{perm},"readQueueNums":{queues},"writeQueueNums":{queues},"topicSysFlag":0}}]}}"#,
        s.addr
    );
    RemotingCommand::response_to(req, response::SUCCESS).with_body(body.into_bytes())
}

fn send(s: &Shared, req: &RemotingCommand) -> RemotingCommand {
    let seq = s.sends.fetch_add(1, Ordering::Relaxed);
    if let Some((at, stall)) = s.faults.stall_at {
        if seq == at {
            std::thread::sleep(stall);
        }
    }
    if let Some((every, code)) = s.faults.fail_every {
        if (seq + 1).is_multiple_of(every) {
            return RemotingCommand::response_to(req, code).with_remark("injected");
        }
    }
    let q: i32 = req.field("e").and_then(|v| v.parse().ok()).unwrap_or(0);
    let born: i64 = req.field("g").and_then(|v| v.parse().ok()).unwrap_or(0);
    let topic = req.field("b").unwrap_or_default().to_string();
    let bodies = if req.field("m") == Some("true") {
        split_batch(&req.body)
    } else {
        vec![(
            req.body.to_vec(),
            req.field("i").unwrap_or_default().to_string(),
        )]
    };
    let mut st = s.store.lock().expect("store");
    let queue = st.queues.entry((topic.clone(), q)).or_default();
    let first = queue.len();
    for (body, props) in &bodies {
        let rec = proto::encode_record(queue.len() as i64, born, body, &topic, props);
        queue.push(rec);
    }
    drop(st);
    s.messages.fetch_add(bodies.len() as u64, Ordering::Relaxed);
    s.arrived.notify_all();
    RemotingCommand::response_to(req, response::SUCCESS)
        .with_field("msgId", "7F00000100002A9F0000000000000000")
        .with_field("queueId", q)
        .with_field("queueOffset", first)
        .with_field("MSG_REGION", "DefaultRegion")
        .with_field("TRACE_ON", "true")
}

/// §4.4 batch body → (body, properties) per message.
fn split_batch(mut b: &[u8]) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    while b.len() >= 20 {
        let total = (&b[0..4]).get_i32() as usize;
        let body_len = (&b[16..20]).get_i32() as usize;
        let body = b[20..20 + body_len].to_vec();
        let p_at = 20 + body_len;
        let plen = (&b[p_at..p_at + 2]).get_i16() as usize;
        let props = String::from_utf8_lossy(&b[p_at + 2..p_at + 2 + plen]).into_owned();
        out.push((body, props));
        b = &b[total..];
    }
    out
}

fn pull(s: &Shared, req: &RemotingCommand) -> RemotingCommand {
    let q: i32 = req
        .field("queueId")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let topic = req.field("topic").unwrap_or_default().to_string();
    let offset: usize = req
        .field("queueOffset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let suspend = Duration::from_millis(
        req.field("suspendTimeoutMillis")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let st = s.store.lock().expect("store");
    let (st, _) = s
        .arrived
        .wait_timeout_while(st, suspend, |st| st.len(&topic, q) <= offset)
        .expect("wait");
    let recs = st
        .queues
        .get(&(topic.clone(), q))
        .map(|v| &v[offset.min(v.len())..])
        .unwrap_or(&[]);
    let recs = &recs[..recs.len().min(32)];
    let next = offset + recs.len();
    let code = if recs.is_empty() {
        response::PULL_NOT_FOUND
    } else {
        response::SUCCESS
    };
    let body: Vec<u8> = recs.concat();
    RemotingCommand::response_to(req, code)
        .with_field("nextBeginOffset", next)
        .with_field("minOffset", 0)
        .with_field("maxOffset", st.len(&topic, q))
        .with_field("suggestWhichBrokerId", 0)
        .with_body(body)
}

/// Runs the `rocketcore-bench` command line in-process; returns its exit code.
pub fn cli(args: &[&str]) -> i32 {
    let mut v = vec!["rocketcore-bench".to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    rocketcore_bench::cli::main_with(v)
}

/// The JSON summary a run wrote as `<dir>/<label>.json`.
pub fn summary(dir: &std::path::Path, label: &str) -> rocketcore_bench::report::Summary {
    let text = std::fs::read_to_string(dir.join(format!("{label}.json"))).expect("summary exists");
    rocketcore_bench::report::Summary::from_json(&text).expect("summary parses")
}
