//! The shard runtime: N pinned single-threaded executors joined by a channel mesh.
//!
//! This is the only module that names glommio's executor types; the rest of the
//! code sees [`Shard`], [`run_pool`], [`run_local`], [`spawn`] and [`dma`].

pub mod dma;

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};

/// Per-executor io_uring registered memory. The locked-memory limit on our hosts can be as low
/// as 8 MiB for the whole process, so keep this modest; larger DMA buffers fall back to the heap.
pub const DEFAULT_IO_MEMORY_BYTES: usize = 512 * 1024;
const MESH_CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub shards: usize,
    pub io_memory_bytes: usize,
    /// Pin each shard to its own core (production); tests on busy machines may turn it off.
    pub pin: bool,
    /// How long an idle pinned shard polls for new work before it parks. Parking costs a
    /// membarrier IPI and an io_uring wait, and waking costs an eventfd write from the waker;
    /// at moderate request rates that round trip dominates per-request CPU and latency.
    /// Zero parks at once. Ignored for unpinned shards (glommio only spins when pinned).
    pub spin_before_park: Duration,
    pub name: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shards: available_cores(),
            io_memory_bytes: DEFAULT_IO_MEMORY_BYTES,
            pin: true,
            spin_before_park: Duration::ZERO,
            name: "shard".into(),
        }
    }
}

/// Freed heap memory below this is kept for reuse instead of going back to the kernel.
const RETAINED_FREE_BYTES: i32 = 256 * 1024 * 1024;
/// Allocations up to this size come from the heap, not a fresh mapping each: the largest
/// commitlog block (16 MiB) fits. 32 MiB is glibc's ceiling for this setting.
const LARGEST_HEAP_ALLOCATION: i32 = 32 * 1024 * 1024;

/// Keeps freed block memory in the process. Every commitlog block is a fresh aligned allocation
/// (glommio's DMA buffers cannot be reused once trimmed to a write's length), and with glibc's
/// defaults a freed block of a few MiB goes back to the kernel, so the next block's pages fault
/// in zeroed while records are copied into them: on store_bench SYNC_FLUSH with 1024 appenders
/// 224 k page faults and 4.4 us of CPU per append, vs 26 k and 2.7 us with these settings
/// (2026-11-22). Resident memory then stays at its peak instead of shrinking after a burst;
/// the peak is still bounded by the tail cache and the blocks in flight.
fn retain_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes the allocator's tuning parameters; it is called once,
        // before the shard threads start allocating.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, LARGEST_HEAP_ALLOCATION);
            libc::mallopt(libc::M_TRIM_THRESHOLD, RETAINED_FREE_BYTES);
        }
    });
}

pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// One shard's view of the pool: who it is, and how to reach the others.
///
/// The mesh is one bounded inbox per shard (`async_channel`, lock-free, wakes across threads).
/// glommio's own channel mesh was used first; with two shards under the real-client tests the
/// process intermittently aborted with glibc heap-corruption reports, which stopped when shards
/// stopped exchanging messages through it, and stop with this inbox.
pub struct Shard<M: Send + 'static> {
    id: usize,
    count: usize,
    senders: Vec<async_channel::Sender<M>>,
    inbox: RefCell<Option<async_channel::Receiver<M>>>,
    shutdown: async_channel::Receiver<()>,
}

impl<M: Send + 'static> Shard<M> {
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Sends `msg` to shard `to`; waits while that shard's inbox is full (backpressure).
    pub async fn send_to(&self, to: usize, msg: M) -> Result<(), M> {
        debug_assert!(
            to < self.count && to != self.id,
            "mesh send to self or out of range"
        );
        match self.senders.get(to) {
            Some(tx) => tx.send(msg).await.map_err(|e| e.into_inner()),
            None => Err(msg),
        }
    }

    /// Starts the receive loop, calling `handle` for every message in arrival order.
    pub fn serve(&self, handle: impl Fn(M) + 'static) {
        let Some(inbox) = self.inbox.borrow_mut().take() else {
            return;
        };
        spawn(async move {
            while let Ok(msg) = inbox.recv().await {
                handle(msg);
            }
        });
    }

    /// Resolves when the pool is asked to stop.
    pub async fn shutdown_requested(&self) {
        let _ = self.shutdown.recv().await;
    }
}

/// Asks every shard of a pool to stop; the shards' own futures then clean up and return.
#[derive(Clone)]
pub struct StopHandle(async_channel::Sender<()>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.close();
    }
}

/// Runs `main` on every shard of a new pool and blocks until all of them return.
/// Returns each shard's result in shard order.
pub fn run_pool<M, G, Fut, T>(
    config: &RuntimeConfig,
    main: G,
) -> std::io::Result<(StopHandle, PoolJoin<T>)>
where
    M: Send + 'static,
    G: Fn(Rc<Shard<M>>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    retain_freed_memory();
    let shards = config.shards.max(1);
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| async_channel::bounded::<M>(MESH_CHANNEL_CAPACITY))
        .unzip();
    let inboxes = std::sync::Arc::new(std::sync::Mutex::new(
        inboxes.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let next_id = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let placement = if config.pin {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        PoolPlacement::Unbound(shards)
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name(&config.name)
        .io_memory(config.io_memory_bytes)
        .preempt_timer(Duration::from_millis(5))
        .spin_before_park(config.spin_before_park)
        .on_all_shards(move || {
            let senders = senders.clone();
            let inboxes = inboxes.clone();
            let next_id = next_id.clone();
            let stop_rx = stop_rx.clone();
            let main = main.clone();
            async move {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let inbox = inboxes
                    .lock()
                    .ok()
                    .and_then(|mut v| v.get_mut(id).and_then(Option::take));
                debug_assert!(inbox.is_some(), "each shard takes its own inbox once");
                let shard = Rc::new(Shard {
                    id,
                    count: shards,
                    senders,
                    inbox: RefCell::new(inbox),
                    shutdown: stop_rx,
                });
                (id, main(shard).await)
            }
        })
        .map_err(to_io)?;
    Ok((StopHandle(stop_tx), PoolJoin(handles)))
}

pub struct PoolJoin<T>(glommio::PoolThreadHandles<(usize, T)>);

impl<T> PoolJoin<T> {
    /// Waits for every shard; results in shard order. A shard that panicked is an error.
    pub fn join(self) -> std::io::Result<Vec<T>> {
        let mut out = Vec::new();
        for r in self.0.join_all() {
            out.push(r.map_err(|e| std::io::Error::other(format!("shard thread failed: {e:?}")))?);
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }
}

/// Runs one future on a fresh single executor (tools, tests, recovery utilities).
pub fn run_local<G, Fut, T>(io_memory_bytes: usize, main: G) -> std::io::Result<T>
where
    G: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    retain_freed_memory();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(io_memory_bytes)
        .spawn(main)
        .map_err(to_io)?
        .join()
        .map_err(|e| std::io::Error::other(format!("executor failed: {e:?}")))
}

fn to_io<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Spawns a detached task on the current shard.
pub fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    glommio::spawn_local(fut).detach();
}

/// Runs the futures concurrently on this task and returns their outputs in order.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Spawns a task whose result the caller awaits.
pub fn spawn_joinable<F: Future + 'static>(fut: F) -> impl Future<Output = Option<F::Output>>
where
    F::Output: 'static,
{
    glommio::spawn_local(fut).detach()
}

/// A scheduling lane on a shard. When tasks of several lanes are runnable, glommio shares the
/// CPU between them by their shares, so a burst of one kind cannot starve the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Appends, group commits and segment warming: 1000 shares.
    Writes,
    /// Reads of stored data (pulls, lookups): 250 shares, so old-data reads get at most a fifth
    /// of a contended shard against writes.
    Reads,
}

pub const WRITE_SHARES: usize = 1000;
pub const READ_SHARES: usize = 250;

thread_local! {
    /// The current executor's lanes, created on first use (one executor per thread).
    static LANES: RefCell<Option<[glommio::TaskQueueHandle; 2]>> = const { RefCell::new(None) };
}

fn lane_queue(lane: Lane) -> glommio::TaskQueueHandle {
    LANES.with(|l| {
        let mut l = l.borrow_mut();
        let queues = l.get_or_insert_with(|| {
            let ex = glommio::executor();
            [
                ex.create_task_queue(
                    glommio::Shares::Static(WRITE_SHARES),
                    glommio::Latency::NotImportant,
                    "writes",
                ),
                ex.create_task_queue(
                    glommio::Shares::Static(READ_SHARES),
                    glommio::Latency::NotImportant,
                    "reads",
                ),
            ]
        });
        match lane {
            Lane::Writes => queues[0],
            Lane::Reads => queues[1],
        }
    })
}

/// Runs `fut` as a task in `lane` and waits for it; `None` if the task could not be spawned
/// or was cancelled.
pub async fn run_in<F>(lane: Lane, fut: F) -> Option<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match glommio::spawn_local_into(fut, lane_queue(lane)) {
        Ok(task) => task.detach().await,
        Err(e) => {
            tracing::error!(?lane, error = %e, "cannot spawn into a task queue");
            None
        }
    }
}

/// Spawns a detached task in `lane`.
pub fn spawn_in<F: Future<Output = ()> + 'static>(lane: Lane, fut: F) {
    match glommio::spawn_local_into(fut, lane_queue(lane)) {
        Ok(task) => {
            task.detach();
        }
        Err(e) => tracing::error!(?lane, error = %e, "cannot spawn into a task queue"),
    }
}

/// Runs blocking work (buffered-file fsyncs) on a short-lived thread of its own, so it never
/// stalls the shard's reactor. The result comes back over a channel; if the waiting task is
/// dropped (the shard shutting down), the thread finishes alone and nothing it touches belongs
/// to the executor. (glommio's own blocking pool is not used: a call in flight while an
/// executor shut down corrupted the heap in one CI run.)
pub async fn blocking<F, R>(f: F) -> std::io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = async_channel::bounded(1);
    std::thread::Builder::new()
        .name("rocketcore-io".into())
        .spawn(move || {
            let _ = tx.send_blocking(f());
        })?;
    rx.recv()
        .await
        .map_err(|_| std::io::Error::other("blocking I/O thread ended without a result"))
}

/// Monotonic time with the kernel tick's resolution (CLOCK_MONOTONIC_COARSE, 1-4 ms): for
/// per-request checks of slow-moving state, where reading the precise clock costs more.
pub fn coarse_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on Linux ≥ 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        return EPOCH.get_or_init(std::time::Instant::now).elapsed();
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Runs `fut` with a deadline; `None` if it did not finish in time.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
    use futures_lite::FutureExt;
    let deadline = async {
        sleep(d).await;
        None
    };
    async { Some(fut.await) }.or(deadline).await
}

pub use glommio::net::{TcpListener, TcpStream};
