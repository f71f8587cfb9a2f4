//! Append throughput of 1 KiB messages on one log, ASYNC_FLUSH and SYNC_FLUSH, with N concurrent
//! appenders. The store lives in a temp dir under cargo's target tmp dir (the repo's filesystem,
//! not tmpfs); set ROCKETCORE_BENCH_DIR to measure another disk.
//!
//! `cargo bench -p rocketcore-shards --bench append`

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rocketcore_shards::message::record::MessageInput;
use rocketcore_shards::runtime::{run_local, spawn_joinable};
use rocketcore_shards::{FlushMode, Log, LogConfig};

const BODY_BYTES: usize = 1024;

fn bench_dir() -> PathBuf {
    std::env::var_os("ROCKETCORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

fn message(queue_id: i32) -> MessageInput {
    MessageInput {
        topic: "BenchTopic".into(),
        queue_id,
        flag: 0,
        body: Bytes::from(vec![b'x'; BODY_BYTES]),
        properties: "TAGS\u{1}bench".into(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "127.0.0.1:40000".parse().expect("literal address"),
        store_host: "127.0.0.1:10911".parse().expect("literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// Opens a fresh log, appends `iters` messages split over `appenders` tasks, and returns the
/// time the appends took (open and stop excluded).
fn timed_appends(mode: FlushMode, appenders: usize, iters: u64) -> Duration {
    let root = bench_dir();
    std::fs::create_dir_all(&root).expect("bench dir");
    let dir = tempfile::tempdir_in(root).expect("tempdir");
    let path = dir.path().to_path_buf();
    run_local(512 * 1024, move || async move {
        let mut cfg = LogConfig::new(path, 0);
        cfg.segment_bytes = 256 << 20;
        cfg.flush_mode = mode;
        cfg.limits.disk_max_used_space_ratio = 99;
        let log = Log::open(cfg).await.expect("open");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for a in 0..appenders {
            let n = iters / appenders as u64 + u64::from((a as u64) < iters % appenders as u64);
            let log: Rc<Log> = log.clone();
            tasks.push(spawn_joinable(async move {
                let m = message((a % 8) as i32);
                for _ in 0..n {
                    log.put(std::slice::from_ref(&m), true).await.expect("put");
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let took = started.elapsed();
        log.stop().await.expect("stop");
        took
    })
    .expect("executor")
}

fn append(c: &mut Criterion) {
    for (mode, name) in [(FlushMode::Async, "async"), (FlushMode::Sync, "sync")] {
        let mut g = c.benchmark_group(format!("append_1KiB_{name}"));
        g.throughput(Throughput::Bytes(BODY_BYTES as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(3));
        g.warm_up_time(Duration::from_millis(500));
        for appenders in [1usize, 16, 64, 256] {
            g.bench_with_input(
                BenchmarkId::from_parameter(appenders),
                &appenders,
                |b, &appenders| b.iter_custom(|iters| timed_appends(mode, appenders, iters)),
            );
        }
        g.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
