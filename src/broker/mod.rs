//! The broker: request handlers over the shards' logs, control-plane state shared by shards,
//! registration with the NameServer, and startup/shutdown.

pub mod consumers;
pub mod counters;
pub mod groups;
pub mod handlers;
pub mod queue_locks;
pub mod queue_ops;
pub(crate) mod register;
pub mod runtime_config;
pub mod schedule;
pub mod sql92;
mod startup;
pub mod topics;
pub mod transactions;

pub use startup::{block_signals, run, wait_for_signal, StartError};

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rocketcore_shards::placement::{shard_of_log, Placement};
use rocketcore_shards::runtime::Shard;
use rocketcore_shards::Log;

use crate::config::BrokerConfig;
use consumers::ConsumerManager;
use groups::SubscriptionGroups;
use queue_ops::MeshCall;
use topics::TopicTable;

/// Control-plane state every shard reads: changed rarely, under short locks, never on the
/// per-record path (appends and reads touch only the owning shard's logs).
pub struct BrokerShared {
    pub cfg: BrokerConfig,
    pub topics: Mutex<TopicTable>,
    pub groups: Mutex<SubscriptionGroups>,
    pub consumers: Mutex<ConsumerManager>,
    pub queue_locks: Mutex<queue_locks::QueueLocks>,
    pub delay_progress: Mutex<schedule::DelayProgress>,
    /// Half-message offsets whose transaction has ended.
    pub transactions: Mutex<transactions::Resolved>,
    pub placement: Mutex<Placement>,
    pub counters: counters::Counters,
    /// The keys UPDATE_BROKER_CONFIG may change; read these, not `cfg`, for them.
    pub runtime: runtime_config::RuntimeConfig,
    /// When this broker started, ms since the epoch.
    pub boot_ms: i64,
    pub shards: usize,
    /// brokerIP1:listenPort, known once the listener is bound.
    pub store_host: OnceLock<SocketAddr>,
    /// NameServer addresses to register with, known once the embedded one is bound.
    pub namesrv_addrs: OnceLock<Vec<String>>,
    /// Wakes the registration loop after a topic change.
    pub register_now: async_channel::Sender<()>,
    pub register_wake: async_channel::Receiver<()>,
}

/// A poisoned lock means a handler panicked mid-update; the data is still the last consistent
/// state we wrote, so keep serving with it rather than failing every later request.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BrokerShared {
    pub fn store_host(&self) -> SocketAddr {
        self.store_host
            .get()
            .copied()
            .unwrap_or_else(|| SocketAddr::from((self.cfg.broker_ip1, self.cfg.listen_port)))
    }

    pub fn request_registration(&self) {
        let _ = self.register_now.try_send(());
    }

    /// The log holding `(topic, queue)`, placing the queue on first use.
    pub fn log_of(&self, topic: &str, queue_id: i32) -> Result<u16, String> {
        let mut p = lock(&self.placement);
        if let Some(l) = p.log_of(topic, queue_id) {
            return Ok(l);
        }
        p.place_topic(topic, queue_id + 1, self.shards);
        p.save(&self.cfg.store_path_root_dir)
            .map_err(|e| e.to_string())?;
        p.log_of(topic, queue_id)
            .ok_or_else(|| format!("no placement for {topic}:{queue_id}"))
    }

    /// The logs holding any queue of `topic` (none if it was never placed).
    pub fn logs_of_topic(&self, topic: &str) -> Vec<u16> {
        lock(&self.placement).logs_of_topic(topic)
    }

    pub fn owner_shard(&self, log_id: u16) -> usize {
        shard_of_log(log_id, self.shards)
    }
}

/// One shard's view: its logs, the mesh to the others, and the shared control plane.
pub struct ShardCtx {
    pub shard: Rc<Shard<MeshCall>>,
    pub shared: Arc<BrokerShared>,
    pub logs: RefCell<HashMap<u16, Rc<Log>>>,
}

impl ShardCtx {
    pub fn log(&self, id: u16) -> Option<Rc<Log>> {
        self.logs.borrow().get(&id).cloned()
    }
}
