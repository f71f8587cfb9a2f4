#![allow(dead_code)]
//! Helpers shared by the store's integration tests.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rocketcore_shards::message::record::{decode, MessageInput};
use rocketcore_shards::{FlushMode, Log, LogConfig};

pub const SEGMENT: u64 = 64 * 1024;

pub fn config(dir: &Path, mode: FlushMode) -> LogConfig {
    let mut c = LogConfig::new(dir.to_path_buf(), 0);
    c.segment_bytes = SEGMENT;
    c.flush_mode = mode;
    c.flush_interval = Duration::from_millis(20);
    c
}

pub fn message(topic: &str, queue_id: i32, body: &[u8], props: &str) -> MessageInput {
    MessageInput {
        topic: topic.into(),
        queue_id,
        flag: 0,
        body: Bytes::copy_from_slice(body),
        properties: props.into(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "127.0.0.1:1234".parse().expect("addr"),
        store_host: "127.0.0.1:10911".parse().expect("addr"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// Non-empty properties, so that every byte of a record matters to validation.
pub const PROPS: &str = "KEYS\u{1}k";

pub fn body(i: usize) -> Vec<u8> {
    format!("message-{i:06}-{}", "x".repeat(i % 50)).into_bytes()
}

/// Runs `f` on a fresh executor and returns its result.
pub fn run<T: Send + 'static, F, Fut>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    rocketcore_shards::runtime::run_local(256 * 1024, f).expect("executor")
}

/// Bodies of every message in queue (topic, 0), in order.
pub async fn bodies(log: &Rc<Log>, topic: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let r = log.get(topic, 0, off, 32, &|_| true).await;
        if r.records.is_empty() {
            return out;
        }
        for rec in &r.records {
            out.push(decode(rec).expect("stored record decodes").body.to_vec());
        }
        off = r.next_begin_offset;
    }
}

/// Writes `n` messages with SYNC_FLUSH and stops the log cleanly.
pub fn write_clean(dir: &Path, n: usize) {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("open");
        for i in 0..n {
            log.put(&[message("T", 0, &body(i), PROPS)], true)
                .await
                .expect("put");
        }
        log.stop().await.expect("stop");
    });
}

pub fn segment_path(dir: &Path, start: u64) -> std::path::PathBuf {
    dir.join("commitlog").join(format!("{start:020}"))
}

/// Physical offsets and sizes of every record in queue (T, 0).
pub fn layout(dir: &Path) -> Vec<(u64, u32)> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("open");
        let n = log.max_offset("T", 0);
        let v = (0..n)
            .filter_map(|o| log.entry("T", 0, o))
            .map(|e| (e.phys, e.size))
            .collect();
        log.stop().await.expect("stop");
        v
    })
}
