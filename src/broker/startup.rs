//! Starting and stopping a broker: shards, logs, listeners, the embedded NameServer,
//! registration, periodic work and a clean shutdown on SIGTERM/SIGINT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rocketcore_shards::placement::{log_dir, logs_of_shard, Placement};
use rocketcore_shards::retention::{run_once, RetentionPolicy};
use rocketcore_shards::runtime::{run_pool, sleep, spawn, RuntimeConfig, Shard, TcpListener};
use rocketcore_shards::{FlushMode, Log, LogConfig, StoreLimits};

use super::consumers::ConsumerManager;
use super::groups::SubscriptionGroups;
use super::handlers::BrokerHandler;
use super::queue_ops::{serve_mesh, MeshCall};
use super::register::{register_once, registration_loop, unregister};
use super::schedule;
use super::topics::{TopicConfig, TopicTable, TBW102};
use super::{lock, BrokerShared, ShardCtx};
use crate::config::{BrokerConfig, FlushDiskType};
use crate::namesrv::RouteInfo;
use crate::net::serve_connection;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("another broker holds the store lock {0}")]
    Locked(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("shard runtime: {0}")]
    Runtime(String),
    #[error("{0}")]
    Shard(String),
}

type Channel<T> = (async_channel::Sender<T>, async_channel::Receiver<T>);

/// Startup rendezvous between shards: shard 0 binds first and publishes the ports.
struct Rendezvous {
    ports: Channel<(u16, Option<u16>)>,
    bound: Channel<Result<(), String>>,
    failure: Mutex<Option<String>>,
}

pub fn run(cfg: BrokerConfig) -> Result<(), StartError> {
    let root = cfg.store_path_root_dir.clone();
    let store_err = |reason: String| StartError::Store {
        path: root.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(root.join("config")).map_err(|e| store_err(e.to_string()))?;
    let _lock = lock_store(&root)?;
    let mut topics = TopicTable::load(root.join("config").join("topics.json"))
        .map_err(|e| store_err(e.to_string()))?;
    if cfg.auto_create_topic_enable && topics.get(TBW102).is_none() {
        topics
            .put(TopicConfig::new(TBW102, cfg.default_topic_queue_nums, 7))
            .map_err(|e| store_err(e.to_string()))?;
    }
    let groups = SubscriptionGroups::load(root.join("config").join("subscriptionGroup.json"))
        .map_err(|e| store_err(e.to_string()))?;
    let placement = Placement::load(&root).map_err(|e| store_err(e.to_string()))?;
    let delay_progress = schedule::DelayProgress::load(&root).map_err(store_err)?;
    let (register_now, register_wake) = async_channel::bounded(1);
    let shards = cfg.shards.max(1);
    let shared = Arc::new(BrokerShared {
        topics: Mutex::new(topics),
        groups: Mutex::new(groups),
        consumers: Mutex::new(ConsumerManager::default()),
        queue_locks: Mutex::new(Default::default()),
        delay_progress: Mutex::new(delay_progress),
        transactions: Mutex::new(Default::default()),
        placement: Mutex::new(placement),
        counters: super::counters::Counters::new(shards),
        runtime: super::runtime_config::RuntimeConfig::new(&cfg),
        boot_ms: rocketcore_shards::store::now_ms(),
        shards,
        store_host: OnceLock::new(),
        namesrv_addrs: OnceLock::new(),
        register_now,
        register_wake,
        cfg,
    });
    let rt = RuntimeConfig {
        shards,
        io_memory_bytes: shared.cfg.shard_io_memory,
        pin: shared.cfg.pin_shards,
        spin_before_park: shared.cfg.shard_spin_before_park,
        name: "rocketcore".into(),
    };
    let rendezvous = Arc::new(Rendezvous {
        ports: async_channel::unbounded(),
        bound: async_channel::unbounded(),
        failure: Mutex::new(None),
    });
    let routes = Arc::new(Mutex::new(RouteInfo::default()));
    block_signals();
    let (stop, join) = {
        let shared = shared.clone();
        let rendezvous = rendezvous.clone();
        run_pool::<MeshCall, _, _, ()>(&rt, move |shard| {
            shard_main(shard, shared.clone(), rendezvous.clone(), routes.clone())
        })
        .map_err(|e| StartError::Runtime(e.to_string()))?
    };
    {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                wait_for_signal();
                tracing::info!("shutting down");
                stop.stop();
            })
            .map_err(|e| StartError::Runtime(e.to_string()))?;
    }
    join.join()
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    let failure = lock(&rendezvous.failure).take();
    match failure {
        Some(f) => Err(StartError::Shard(f)),
        None => Ok(()),
    }
}

fn fail(rv: &Rendezvous, msg: String) {
    tracing::error!("{msg}");
    let mut f = lock(&rv.failure);
    if f.is_none() {
        *f = Some(msg);
    }
}

fn log_config(cfg: &BrokerConfig, log_id: u16) -> LogConfig {
    let mut lc = LogConfig::new(log_dir(&cfg.store_path_root_dir, log_id), log_id);
    lc.segment_bytes = cfg.maped_file_size_commit_log;
    lc.flush_mode = match cfg.flush_disk_type {
        FlushDiskType::SyncFlush => FlushMode::Sync,
        FlushDiskType::AsyncFlush => FlushMode::Async,
    };
    lc.flush_interval = cfg.flush_interval_commit_log;
    lc.sync_flush_timeout = cfg.sync_flush_timeout;
    lc.tail_cache_bytes = cfg.tail_cache_bytes / cfg.shards.max(1);
    lc.index_slots = cfg.max_hash_slot_num;
    lc.delay_levels_ms = cfg.message_delay_level_ms.clone();
    if !cfg.warm_maped_file_enable {
        lc.warm_ahead_bytes = 0;
    }
    lc.limits = StoreLimits {
        max_message_size: cfg.max_message_size,
        disk_max_used_space_ratio: cfg.disk_max_used_space_ratio,
        disk_capacity_bytes: None,
    };
    lc
}

async fn shard_main(
    shard: Rc<Shard<MeshCall>>,
    shared: Arc<BrokerShared>,
    rv: Arc<Rendezvous>,
    routes: Arc<Mutex<RouteInfo>>,
) {
    let id = shard.id();
    let n = shard.count();
    let mut logs = HashMap::new();
    let mut open_error = None;
    for log_id in logs_of_shard(&shared.cfg.store_path_root_dir, id, n) {
        match Log::open(log_config(&shared.cfg, log_id)).await {
            Ok(l) => {
                logs.insert(log_id, l);
            }
            Err(e) => {
                open_error = Some(format!("shard {id}: cannot open log {log_id}: {e}"));
                break;
            }
        }
    }
    let ctx = Rc::new(ShardCtx {
        shard: shard.clone(),
        shared: shared.clone(),
        logs: std::cell::RefCell::new(logs),
    });
    let bound = match open_error {
        Some(e) => Err(e),
        None => bind_listeners(&ctx, &rv, &routes).await,
    };
    if id != 0 {
        let _ = rv.bound.0.send(bound.clone()).await;
    }
    if let Err(e) = &bound {
        fail(&rv, e.clone());
    }
    serve_mesh(&ctx);
    if bound.is_ok() {
        schedule::start_timers(&ctx);
        super::transactions::start_checker(&ctx);
    }
    for log in ctx.logs.borrow().values() {
        spawn(retention_loop(log.clone(), shared.clone()));
    }
    if id == 0 {
        let mut all_ok = bound.is_ok();
        for _ in 1..n {
            if let Ok(Err(_)) | Err(_) = rv.bound.1.recv().await {
                all_ok = false;
            }
        }
        if all_ok {
            all_ok = announce(&shared, &rv).await;
        }
        if !all_ok {
            // One shard failing to start stops them all: exit rather than serve partially.
            stop_everything(&ctx).await;
            std::process::exit(1);
        }
        spawn(registration_loop(shared.clone()));
        spawn(consumer_expiry(shared.clone()));
        spawn(schedule::persist_loop(shared.clone()));
        spawn(sample_counters(shared.clone()));
    }
    ctx.shard.shutdown_requested().await;
    if id == 0 {
        unregister(&shared).await;
    }
    stop_everything(&ctx).await;
    if id == 0 {
        let root = shared.cfg.store_path_root_dir.clone();
        if let Err(e) = lock(&shared.delay_progress).persist_current(&root) {
            tracing::error!(error = %e, "cannot write delayOffset.json at stop");
        }
    }
}

async fn stop_everything(ctx: &Rc<ShardCtx>) {
    let logs: Vec<Rc<Log>> = ctx.logs.borrow().values().cloned().collect();
    for log in logs {
        if let Err(e) = log.stop().await {
            tracing::error!(log = log.id(), error = %e, "log did not stop cleanly");
        }
    }
}

/// Registers with the NameServer and prints the ready line tests and scripts wait for.
async fn announce(shared: &Arc<BrokerShared>, rv: &Rendezvous) -> bool {
    let mut last = String::new();
    for _ in 0..50 {
        match register_once(shared).await {
            Ok(()) => {
                let ns = shared
                    .namesrv_addrs
                    .get()
                    .map(|a| a.join(";"))
                    .unwrap_or_default();
                println!(
                    "rocketcore ready namesrv={ns} broker={}",
                    shared.store_host()
                );
                use std::io::Write;
                let _ = std::io::stdout().flush();
                tracing::info!(namesrv = %ns, broker = %shared.store_host(), shards = shared.shards, "broker ready");
                return true;
            }
            Err(e) => last = e,
        }
        sleep(Duration::from_millis(200)).await;
    }
    fail(
        rv,
        format!("could not register with the NameServer: {last}"),
    );
    false
}

async fn bind_listeners(
    ctx: &Rc<ShardCtx>,
    rv: &Rendezvous,
    routes: &Arc<Mutex<RouteInfo>>,
) -> Result<(), String> {
    let shared = &ctx.shared;
    let cfg = &shared.cfg;
    let ip = cfg.broker_ip1;
    let (port, fast_port) = if ctx.shard.id() == 0 {
        let main = bind(SocketAddr::from((ip, cfg.listen_port)))?;
        let port = main.local_addr().map_err(|e| e.to_string())?.port();
        let fast = if cfg.listen_port >= 2 {
            Some(bind(SocketAddr::from((ip, cfg.listen_port - 2)))?)
        } else {
            None
        };
        let fast_port = fast
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        let _ = shared.store_host.set(SocketAddr::from((ip, port)));
        if cfg.embedded_namesrv {
            let ns = bind(SocketAddr::from((ip, cfg.namesrv_listen_port)))?;
            let ns_port = ns.local_addr().map_err(|e| e.to_string())?.port();
            crate::namesrv::serve(ns, routes.clone());
            let mut addrs = vec![format!("{ip}:{ns_port}")];
            if let Some(extra) = &cfg.namesrv_addr {
                addrs.extend(
                    extra
                        .split(';')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                );
            }
            let _ = shared.namesrv_addrs.set(addrs);
        } else {
            let addrs: Vec<String> = cfg
                .namesrv_addr
                .iter()
                .flat_map(|a| a.split(';'))
                .map(|a| a.trim().to_string())
                .collect();
            if addrs.is_empty() {
                return Err("no NameServer: set namesrvAddr or keep embeddedNamesrv=true".into());
            }
            let _ = shared.namesrv_addrs.set(addrs);
        }
        for _ in 1..ctx.shard.count() {
            let _ = rv.ports.0.send((port, fast_port)).await;
        }
        accept_loop(ctx, main);
        if let Some(f) = fast {
            accept_loop(ctx, f);
        }
        (port, fast_port)
    } else {
        let (port, fast_port) = rv
            .ports
            .1
            .recv()
            .await
            .map_err(|_| "shard 0 did not publish its port".to_string())?;
        accept_loop(ctx, bind(SocketAddr::from((ip, port)))?);
        if let Some(fp) = fast_port {
            accept_loop(ctx, bind(SocketAddr::from((ip, fp)))?);
        }
        (port, fast_port)
    };
    tracing::debug!(shard = ctx.shard.id(), port, ?fast_port, "listening");
    Ok(())
}

fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| {
        StartError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        }
        .to_string()
    })
}

fn accept_loop(ctx: &Rc<ShardCtx>, listener: TcpListener) {
    let handler = Rc::new(BrokerHandler { ctx: ctx.clone() });
    spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => spawn(serve_connection(stream, handler.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}

async fn retention_loop(log: Rc<Log>, shared: Arc<BrokerShared>) {
    let cfg = &shared.cfg;
    let policy = RetentionPolicy {
        file_reserved_time: Duration::from_secs(cfg.file_reserved_time_hours * 3600),
        delete_when: cfg.delete_when.clone(),
        clean_ratio: cfg.disk_max_used_space_ratio,
        force_ratio: cfg.disk_max_used_space_ratio.max(85),
    };
    loop {
        sleep(Duration::from_secs(10)).await;
        match run_once(&log, &policy, SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                log = log.id(),
                deleted = n,
                "retention deleted commitlog segments"
            ),
            Err(e) => tracing::warn!(log = log.id(), error = %e, "retention pass failed"),
        }
    }
}

async fn sample_counters(shared: Arc<BrokerShared>) {
    loop {
        shared.counters.sample(
            std::time::Instant::now(),
            rocketcore_shards::store::now_ms(),
        );
        sleep(super::counters::SAMPLE_EVERY).await;
    }
}

async fn consumer_expiry(shared: Arc<BrokerShared>) {
    loop {
        sleep(Duration::from_secs(10)).await;
        let mut c = lock(&shared.consumers);
        for g in c.expire() {
            c.notify(&g);
        }
    }
}

/// An exclusive lock on `<store>/lock` so two brokers never share a store.
fn lock_store(root: &Path) -> Result<std::fs::File, StartError> {
    use std::os::fd::AsRawFd;
    let path = root.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StartError::Store {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    // SAFETY: flock on a valid open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(StartError::Locked(path.display().to_string()));
    }
    Ok(f)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM/SIGINT in this thread and every thread it starts, so only `sigwait` sees them.
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: a valid signal set; no old mask requested.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

pub fn wait_for_signal() {
    let set = signal_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: a valid signal set and out-parameter.
    unsafe {
        libc::sigwait(&set, &mut sig);
    }
}
