//! Store append benchmark: N concurrent appenders per shard on one log each, in-process (no
//! network), printing HDR latency percentiles and throughput.
//!
//! ```text
//! cargo run --release -p rocketcore-shards --example store_bench -- \
//!     --size 1024 --mode sync --appenders 64 --seconds 5 [--shards 2] [--rate 20000] [--dir PATH]
//! ```
//!
//! Closed loop by default: each appender puts its next message as soon as the previous one
//! completed (SYNC_FLUSH: after the fdatasync covering it). With `--rate N` (messages per second,
//! all shards together) it is open loop: each appender starts every put on a fixed schedule as
//! its own task (however many are still in flight) and a latency is measured from the moment the
//! message was due, so a stall is not hidden by the schedule slipping (coordinated omission). The last line is `RESULT key=value ...` for scripts.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use rocketcore_shards::commitlog::stats::FlushStats;
use rocketcore_shards::message::record::MessageInput;
use rocketcore_shards::placement::log_dir;
use rocketcore_shards::runtime::{self, run_pool, Lane, RuntimeConfig, Shard};
use rocketcore_shards::{FlushMode, Log, LogConfig};

#[derive(Parser, Debug, Clone)]
#[command(about = "rocketcore store append benchmark")]
struct Args {
    /// Message body size in bytes (a stored record adds ~110 bytes of header, topic, properties).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// sync (SYNC_FLUSH: complete after fdatasync) or async (ASYNC_FLUSH: complete in memory);
    /// none runs the same schedule with no put at all: with --rate, the latency this machine
    /// adds to an on-time task by itself (the floor under any put's percentiles).
    #[arg(long, default_value = "sync")]
    mode: String,
    /// Concurrent appenders per shard.
    #[arg(long, default_value_t = 64)]
    appenders: usize,
    /// Measured seconds (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Shards (one log each); more than one runs them all together with run_pool.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Fixed total rate in messages per second (open loop); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Directory for the store: must be on the disk under test, not tmpfs. Default: a temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Commitlog segment size in MiB (preallocated).
    #[arg(long, default_value_t = 1024)]
    segment_mb: u64,
    /// Pin each shard to its own core.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin: bool,
    /// Zero the segment this many MiB ahead of the writer (the store's segment warming); 0 = off.
    #[arg(long, default_value_t = 32)]
    warm_ahead_mb: u64,
    /// Tasks per shard that keep reading 32 records at random offsets of what was written
    /// (old data, with a small --tail-cache-mb), competing with the appenders for the shard.
    #[arg(long, default_value_t = 0)]
    readers: usize,
    /// Run appenders in the Writes lane and readers in the Reads lane (task-queue shares 1000 /
    /// 250); false runs both in the executor's default queue, for a before/after.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    lanes: bool,
    /// The log's tail cache in MiB (default: the store's default).
    #[arg(long)]
    tail_cache_mb: Option<usize>,
}

/// What one shard measured.
struct ShardReport {
    latency_us: Histogram<u64>,
    messages: u64,
    record_bytes: u64,
    payload_bytes: u64,
    elapsed: Duration,
    errors: u64,
    reads: u64,
    /// The log's write / fdatasync rounds while measuring (`FlushStats::summary`).
    flush: String,
}

fn message(size: usize, queue_id: i32) -> MessageInput {
    MessageInput {
        topic: "BenchTopic".into(),
        queue_id,
        flag: 0,
        body: Bytes::from(vec![b'x'; size]),
        properties: "TAGS\u{1}bench".into(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "127.0.0.1:40000".parse().expect("literal address"),
        store_host: "127.0.0.1:10911".parse().expect("literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

struct Counters {
    latency_us: RefCell<Histogram<u64>>,
    messages: Cell<u64>,
    record_bytes: Cell<u64>,
    errors: Cell<u64>,
    measuring: Cell<bool>,
    running: Cell<bool>,
    /// Open loop: puts started and not yet completed.
    in_flight: Cell<u64>,
    /// Records read by `--readers` while measuring.
    reads: Cell<u64>,
}

/// Counts one completed put that was due at `due`.
fn record(c: &Counters, result: Result<u64, rocketcore_shards::StoreError>, due: Instant) {
    let done = Instant::now();
    if !c.measuring.get() {
        return;
    }
    match result {
        Ok(bytes) => {
            c.messages.set(c.messages.get() + 1);
            c.record_bytes.set(c.record_bytes.get() + bytes);
            let us = done.saturating_duration_since(due).as_micros() as u64;
            let _ = c.latency_us.borrow_mut().record(us.max(1));
        }
        Err(e) => {
            if c.errors.get() == 0 {
                eprintln!("first append error: {e}");
            }
            c.errors.set(c.errors.get() + 1);
        }
    }
}

/// One put (or nothing, with `--mode none`): the stored record bytes.
async fn put(
    log: &Log,
    msg: &MessageInput,
    none: bool,
) -> Result<u64, rocketcore_shards::StoreError> {
    if none {
        return Ok(0);
    }
    let r = log.put(std::slice::from_ref(msg), true).await?;
    Ok(r.appended.iter().map(|a| a.2 as u64).sum())
}

async fn appender(log: Rc<Log>, c: Rc<Counters>, args: Args, id: usize, per_appender_rate: f64) {
    let msg = message(args.size, (id % 8) as i32);
    let none = args.mode == "none";
    let Some(interval) =
        (per_appender_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / per_appender_rate))
    else {
        // Closed loop: the next put as soon as the previous one completed.
        while c.running.get() {
            let due = Instant::now();
            let result = put(&log, &msg, none).await;
            record(&c, result, due);
            if none {
                futures_lite::future::yield_now().await;
            }
        }
        return;
    };
    // Open loop: every put starts on schedule as its own task, however many are still in
    // flight, so a slow round delays only the puts that were due during it. Spread the
    // appenders' schedules over one interval so they do not fire in lockstep.
    let mut due = Instant::now() + interval.mul_f64(id as f64 / args.appenders as f64);
    while c.running.get() {
        let now = Instant::now();
        if due > now {
            runtime::sleep(due - now).await;
        }
        let (log, c2, msg) = (log.clone(), c.clone(), msg.clone());
        c.in_flight.set(c.in_flight.get() + 1);
        runtime::spawn(async move {
            let result = put(&log, &msg, none).await;
            record(&c2, result, due);
            c2.in_flight.set(c2.in_flight.get() - 1);
        });
        due += interval;
    }
}

/// Runs `work` in `lane`, or in the executor's default queue (`--lanes false`).
async fn in_lane(lane: Option<Lane>, work: impl std::future::Future<Output = ()> + 'static) {
    match lane {
        Some(lane) => {
            runtime::run_in(lane, work).await;
        }
        None => work.await,
    }
}

/// Reads 32 records at a random offset of a random queue, over and over.
async fn reader(log: Rc<Log>, c: Rc<Counters>, id: usize) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ id as u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while c.running.get() {
        let q = (next() % 8) as i32;
        let max = log.max_offset("BenchTopic", q);
        if max < 64 {
            runtime::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let r = log
            .get("BenchTopic", q, next() % (max - 32), 32, &|_| true)
            .await;
        if c.measuring.get() {
            c.reads.set(c.reads.get() + r.records.len() as u64);
        }
        // A read served from memory completes without waiting; give the queue a turn.
        futures_lite::future::yield_now().await;
    }
}

async fn run_shard(shard_id: usize, root: PathBuf, args: Args) -> Result<ShardReport, String> {
    let mut cfg = LogConfig::new(log_dir(&root, shard_id as u16), shard_id as u16);
    cfg.segment_bytes = args.segment_mb << 20;
    cfg.warm_ahead_bytes = args.warm_ahead_mb << 20;
    if let Some(mb) = args.tail_cache_mb {
        cfg.tail_cache_bytes = mb << 20;
    }
    cfg.flush_mode = if args.mode == "sync" {
        FlushMode::Sync
    } else {
        FlushMode::Async
    };
    let log = Log::open(cfg).await.map_err(|e| e.to_string())?;
    let c = Rc::new(Counters {
        latency_us: RefCell::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        ),
        messages: Cell::new(0),
        record_bytes: Cell::new(0),
        errors: Cell::new(0),
        measuring: Cell::new(false),
        running: Cell::new(true),
        in_flight: Cell::new(0),
        reads: Cell::new(0),
    });
    let per_appender_rate = args.rate as f64 / (args.shards * args.appenders) as f64;
    let mut tasks = Vec::new();
    let lane = |lane| args.lanes.then_some(lane);
    for id in 0..args.appenders {
        let work = appender(log.clone(), c.clone(), args.clone(), id, per_appender_rate);
        tasks.push(runtime::spawn_joinable(in_lane(lane(Lane::Writes), work)));
    }
    let mut reader_tasks = Vec::new();
    for id in 0..args.readers {
        let work = reader(log.clone(), c.clone(), id);
        reader_tasks.push(runtime::spawn_joinable(in_lane(lane(Lane::Reads), work)));
    }
    runtime::sleep(Duration::from_secs(1)).await;
    c.measuring.set(true);
    let started = Instant::now();
    let flush_before = log.commitlog().flush_stats();
    runtime::sleep(Duration::from_secs(args.seconds)).await;
    c.measuring.set(false);
    let flush = flush_rounds(flush_before, log.commitlog().flush_stats());
    let elapsed = started.elapsed();
    c.running.set(false);
    for t in tasks {
        t.await;
    }
    for t in reader_tasks {
        t.await;
    }
    while c.in_flight.get() > 0 {
        runtime::sleep(Duration::from_millis(1)).await;
    }
    log.stop().await.map_err(|e| e.to_string())?;
    let messages = c.messages.get();
    let report = ShardReport {
        latency_us: c.latency_us.borrow().clone(),
        messages,
        record_bytes: c.record_bytes.get(),
        payload_bytes: messages * args.size as u64,
        elapsed,
        errors: c.errors.get(),
        reads: c.reads.get(),
        flush,
    };
    Ok(report)
}

/// The group commit's rounds during the measured seconds only.
fn flush_rounds(before: FlushStats, mut after: FlushStats) -> String {
    let _ = after.write_us.subtract(&before.write_us);
    let _ = after.sync_us.subtract(&before.sync_us);
    let _ = after.round_bytes.subtract(&before.round_bytes);
    after.summary()
}

fn is_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    unsafe { libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as u64 == libc::TMPFS_MAGIC as u64 }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    if !["sync", "async", "none"].contains(&args.mode.as_str()) {
        return Err(format!(
            "--mode must be sync, async or none, not {}",
            args.mode
        ));
    }
    let temp;
    let root = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
            temp = tempfile::tempdir_in(d).map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    if is_tmpfs(&root) {
        return Err(format!(
            "{} is on tmpfs: pass --dir on the disk under test",
            root.display()
        ));
    }
    let config = RuntimeConfig {
        shards: args.shards.max(1),
        pin: args.pin,
        ..RuntimeConfig::default()
    };
    let shard_args = args.clone();
    let shard_root = root.clone();
    let (_stop, join) = run_pool(&config, move |shard: Rc<Shard<()>>| {
        let (args, root) = (shard_args.clone(), shard_root.clone());
        async move { run_shard(shard.id(), root, args).await }
    })
    .map_err(|e| e.to_string())?;
    let reports = join
        .join()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    print_summary(&args, &reports);
    drop(temp);
    Ok(())
}

fn print_summary(args: &Args, reports: &[ShardReport]) {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds");
    let (mut messages, mut record_bytes, mut payload_bytes, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut reads = 0u64;
    let mut secs = 0f64;
    for r in reports {
        let _ = hist.add(&r.latency_us);
        messages += r.messages;
        record_bytes += r.record_bytes;
        payload_bytes += r.payload_bytes;
        errors += r.errors;
        reads += r.reads;
        secs = secs.max(r.elapsed.as_secs_f64());
    }
    let secs = secs.max(1e-9);
    let mb = |b: u64| b as f64 / secs / 1e6;
    let q = |p: f64| hist.value_at_quantile(p);
    println!(
        "size={} mode={} appenders/shard={} shards={} rate={} seconds={:.1}",
        args.size, args.mode, args.appenders, args.shards, args.rate, secs
    );
    println!(
        "throughput: {:.0} msgs/s, {:.1} MB/s stored records, {:.1} MB/s payload, errors {}",
        messages as f64 / secs,
        mb(record_bytes),
        mb(payload_bytes),
        errors
    );
    println!(
        "latency us: p50 {} p99 {} p99.9 {} max {} (n={})",
        q(0.50),
        q(0.99),
        q(0.999),
        hist.max(),
        hist.len()
    );
    for (shard, r) in reports.iter().enumerate() {
        println!("flush rounds, shard {shard}:");
        for line in r.flush.lines() {
            println!("  {line}");
        }
    }
    println!(
        "RESULT mode={} size={} appenders={} shards={} rate={} msgs_per_s={:.0} record_mb_per_s={:.1} payload_mb_per_s={:.1} p50_us={} p99_us={} p999_us={} max_us={} errors={} readers={} lanes={} reads_per_s={:.0}",
        args.mode,
        args.size,
        args.appenders,
        args.shards,
        args.rate,
        messages as f64 / secs,
        mb(record_bytes),
        mb(payload_bytes),
        q(0.50),
        q(0.99),
        q(0.999),
        hist.max(),
        errors,
        args.readers,
        args.lanes,
        reads as f64 / secs
    );
}
