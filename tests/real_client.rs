//! End-to-end compatibility tests: the real `rocketmq-client-rust` 1.0.0 producer and push consumer
//! against a `rocketcore broker` child process (embedded NameServer), over 127.0.0.1 only.
//!
//! The tests take a process-wide lock so they run one at a time (each starts its own broker; on two
//! cores running them in parallel would only make every timeout tighter). Each test body runs under a
//! `tokio::time::timeout`, so a hang fails the test instead of stalling the run.
//!
//! Client facts these tests rely on (checked against the crate source):
//! * `SendResult.msg_id` is the client-generated UNIQ_KEY (for a batch: the members' UNIQ_KEYs joined
//!   by ',' in send order); `SendResult.offset_msg_id` is the broker's `msgId` response header.
//! * In the listener, `MessageExt.msg_id` is the *offset* message id decoded from the pulled record
//!   (store host + commit-log offset); the UNIQ_KEY is the `UNIQ_KEY` property.
//! * The push consumer runs each listener call on the client runtime's metadata-io blocking lane;
//!   its default queue depth (8 x cores) overflows under load and turns into RECONSUME_LATER +
//!   CONSUMER_SEND_MSG_BACK, i.e. redeliveries. The lane is widened in `ClientEnv::new`.
//! * `DefaultMQPushConsumer::shutdown` waits up to `await_termination_millis_when_shutdown` for
//!   in-flight listener calls, persists offsets (oneway UPDATE_CONSUMER_OFFSET), then sends
//!   UNREGISTER_CLIENT (a request/response call) on the same connection.
#![recursion_limit = "512"]

mod common;

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;
use std::time::Instant;

use common::BrokerProcess;
use rocketmq_client_rust::ArcMessageQueueListener;
use rocketmq_client_rust::BrokerAdmin;
use rocketmq_client_rust::ClientConfig;
use rocketmq_client_rust::ClientResult;
use rocketmq_client_rust::ClientRuntime;
use rocketmq_client_rust::ClientRuntimeConfig;
use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::ConsumeOrderlyContext;
use rocketmq_client_rust::ConsumeOrderlyStatus;
use rocketmq_client_rust::ConsumerAdmin;
use rocketmq_client_rust::DefaultMQAdminExt;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_client_rust::DefaultMQPushConsumer;
use rocketmq_client_rust::LocalTransactionState;
use rocketmq_client_rust::MQAdminReadExt;
use rocketmq_client_rust::MQAdminTopicStatsReadExt;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::MessageListenerConcurrently;
use rocketmq_client_rust::MessageQueueListener;
use rocketmq_client_rust::MessageSelector;
use rocketmq_client_rust::OffsetAdmin;
use rocketmq_client_rust::RouteAdmin;
use rocketmq_client_rust::SendResult;
use rocketmq_client_rust::SendStatus;
use rocketmq_client_rust::TelemetryHandle;
use rocketmq_client_rust::TopicAdmin;
use rocketmq_client_rust::TransactionListener;
use rocketmq_client_rust::TransactionMQProducer;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_protocol::protocol::subscription::subscription_group_config::SubscriptionGroupConfig;
use rocketmq_runtime::RuntimeConfig;
use rocketmq_runtime::RuntimeOwner;
use tokio::sync::watch;
use tokio::time::timeout;

/// `--set` pairs every test passes on top of the harness defaults.
const BROKER_SETS: &[(&str, &str)] = &[("autoCreateTopicEnable", "true")];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Serialises the tests (async mutex: held across awaits; not poisoned by a failed test).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start_broker(store: &std::path::Path) -> BrokerProcess {
    start_broker_with(store, &[])
}

/// A broker with `extra` settings on top of [`BROKER_SETS`].
fn start_broker_with(store: &std::path::Path, extra: &[(&str, &str)]) -> BrokerProcess {
    let sets: Vec<(&str, &str)> = BROKER_SETS.iter().chain(extra).copied().collect();
    tokio::task::block_in_place(|| BrokerProcess::start(store, &sets))
}

/// One application-owned client runtime (its own Tokio runtime) for all clients of a test.
struct ClientEnv {
    owner: Option<RuntimeOwner>,
    runtime: Arc<ClientRuntime>,
    label: String,
    next_instance: AtomicUsize,
}

impl ClientEnv {
    fn new(label: &str) -> Self {
        let mut config = RuntimeConfig {
            thread_name: format!("rc-e2e-{label}"),
            ..Default::default()
        };
        // The push consumer queues every listener call on this lane (clients.md trap).
        config.blocking_lane_policies.metadata_io.max_queue_depth = 65_536;
        config.blocking_lane_policies.metadata_io.queue_timeout = Duration::from_secs(120);
        let owner = RuntimeOwner::plan(config)
            .expect("valid client runtime config")
            .build()
            .expect("build client runtime");
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            TelemetryHandle::noop(),
        )
        .expect("create ClientRuntime");
        ClientEnv {
            owner: Some(owner),
            runtime,
            label: label.to_string(),
            next_instance: AtomicUsize::new(0),
        }
    }

    /// Loopback-only client identity; a unique instance name gives every client its own
    /// MQClientInstance (two consumers of one group must not share one).
    fn client_config(&self, namesrv: &str, role: &str) -> ClientConfig {
        let n = self.next_instance.fetch_add(1, Ordering::Relaxed);
        let mut config = ClientConfig::new();
        config.namesrv_addr = Some(namesrv.into());
        config.client_ip = Some("127.0.0.1".into());
        config.instance_name = format!("{}-{role}-{n}", self.label).into();
        config.vip_channel_enabled = false;
        config
    }

    /// A started producer. `retries` = extra attempts after a failed send (0: a send is attempted once,
    /// so every stored duplicate would be the broker's doing).
    async fn producer(&self, namesrv: &str, group: &str, retries: u32) -> DefaultMQProducer {
        let mut producer = DefaultMQProducer::builder(Arc::clone(&self.runtime))
            .client_config(self.client_config(namesrv, "producer"))
            .producer_group(group)
            .send_msg_timeout(10_000)
            .retry_times_when_send_failed(retries)
            .build();
        producer.start().await.expect("producer start");
        producer
    }

    /// A CLUSTERING push consumer, CONSUME_FROM_FIRST_OFFSET, not yet subscribed or started.
    fn push_consumer(
        &self,
        namesrv: &str,
        group: &str,
        queue_listener: Option<ArcMessageQueueListener>,
    ) -> DefaultMQPushConsumer {
        DefaultMQPushConsumer::builder(Arc::clone(&self.runtime))
            .client_config(self.client_config(namesrv, "consumer"))
            .consumer_group(group)
            .message_model(MessageModel::Clustering)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .message_queue_listener(queue_listener)
            .await_termination_millis_when_shutdown(10_000)
            .build()
    }

    /// A started CLUSTERING push consumer, CONSUME_FROM_FIRST_OFFSET.
    async fn consumer(
        &self,
        namesrv: &str,
        group: &str,
        topic: &str,
        sub_expression: &str,
        listener: Collector,
        queue_listener: Option<ArcMessageQueueListener>,
    ) -> DefaultMQPushConsumer {
        let mut consumer = self.push_consumer(namesrv, group, queue_listener);
        consumer
            .subscribe(topic, sub_expression)
            .await
            .expect("subscribe");
        consumer.register_message_listener_concurrently(listener);
        consumer.start().await.expect("consumer start");
        consumer
    }

    /// A started push consumer (as [`ClientEnv::consumer`]) that has received every expected
    /// msgId within `limit`; it keeps running.
    #[allow(clippy::too_many_arguments)]
    async fn consume_all(
        &self,
        namesrv: &str,
        group: &str,
        topic: &str,
        sub_expression: &str,
        expected: impl IntoIterator<Item = String>,
        limit: Duration,
        what: &str,
    ) -> (Arc<Received>, DefaultMQPushConsumer) {
        let received = Received::new(expected);
        let consumer = self
            .consumer(
                namesrv,
                group,
                topic,
                sub_expression,
                Collector::new(0, &received),
                None,
            )
            .await;
        received.wait_all_expected(limit, what).await;
        (received, consumer)
    }

    /// A started admin client, as mqadmin uses one.
    async fn admin(&self, namesrv: &str) -> DefaultMQAdminExt {
        let mut admin = DefaultMQAdminExt::new(Arc::clone(&self.runtime));
        admin.set_namesrv_addr(namesrv);
        admin.client_config_mut().instance_name = format!("{}-admin", self.label).into();
        admin.start().await.expect("admin start");
        admin
    }

    async fn shutdown(mut self) {
        let _ = timeout(Duration::from_secs(30), self.runtime.shutdown()).await;
        if let Some(owner) = self.owner.take() {
            let _ = timeout(Duration::from_secs(30), owner.shutdown_tasks()).await;
            owner.shutdown_background();
        }
    }
}

/// Bounded wait until `group` has committed every queue of `topic` to its end (backlog 0): by
/// then it has consumed everything it was going to be given.
async fn wait_backlog_zero(
    admin: &DefaultMQAdminExt,
    group: &str,
    topic: &str,
    broker_addr: &str,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = MQAdminReadExt::examine_consume_stats(
            admin,
            group.into(),
            Some(topic.into()),
            None,
            Some(broker_addr.into()),
            None,
        )
        .await
        .expect("consume stats");
        if stats.compute_total_diff() == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: offsets never committed to the end: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn shutdown_producer(producer: Arc<DefaultMQProducer>) {
    let producer =
        Arc::try_unwrap(producer).unwrap_or_else(|_| panic!("producer still shared at shutdown"));
    shutdown_owned_producer(producer).await;
}

async fn shutdown_owned_producer(mut producer: DefaultMQProducer) {
    timeout(Duration::from_secs(30), producer.shutdown())
        .await
        .expect("producer shutdown timed out");
}

async fn shutdown_consumer(mut consumer: DefaultMQPushConsumer) {
    timeout(Duration::from_secs(30), consumer.shutdown())
        .await
        .expect("consumer shutdown timed out");
}

// ---------------------------------------------------------------------------------------------
// Producing
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    tag: String,
    key: String,
    body: String,
}

fn spec(prefix: &str, i: usize) -> Spec {
    Spec {
        tag: if i.is_multiple_of(2) { "TagA" } else { "TagB" }.to_string(),
        key: format!("{prefix}-key-{i}"),
        body: format!("{prefix}-body-{i}"),
    }
}

fn build_message(topic: &str, s: &Spec) -> Message {
    Message::builder()
        .topic(topic)
        .tags(s.tag.as_str())
        .key(s.key.as_str())
        .body_slice(s.body.as_bytes())
        .build_unchecked()
}

fn check_send_result(r: &SendResult) {
    assert_eq!(r.send_status, SendStatus::SendOk, "send result: {r:?}");
    assert!(
        r.offset_msg_id.as_deref().is_some_and(|s| !s.is_empty()),
        "send result without offsetMsgId: {r:?}"
    );
    assert!(
        r.message_queue.is_some(),
        "send result without a queue: {r:?}"
    );
}

/// One synchronous send; returns the UNIQ_KEY msgId.
async fn send_one(producer: &DefaultMQProducer, topic: &str, s: &Spec) -> ClientResult<String> {
    let result = producer
        .send(build_message(topic, s))
        .await?
        .expect("a synchronous send returns a SendResult");
    check_send_result(&result);
    let id = result
        .msg_id
        .as_ref()
        .expect("send result without msgId")
        .to_string();
    assert!(
        !id.is_empty() && !id.contains(','),
        "unexpected msgId {id:?}"
    );
    Ok(id)
}

/// One SEND_BATCH_MESSAGE; returns the members' msgIds in order.
async fn send_batch(producer: &DefaultMQProducer, topic: &str, specs: &[Spec]) -> Vec<String> {
    let messages: Vec<Message> = specs.iter().map(|s| build_message(topic, s)).collect();
    let result = producer.send_batch(messages).await.expect("batch send");
    check_send_result(&result);
    let ids: Vec<String> = result
        .msg_id
        .as_ref()
        .expect("batch send result without msgId")
        .as_str()
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), specs.len(), "batch msgId list {ids:?}");
    ids
}

/// Sends `specs` as synchronous single sends from `concurrency` tasks sharing one producer.
/// Panics on any failed send. Returns msgId -> spec.
async fn send_all(
    producer: &Arc<DefaultMQProducer>,
    topic: &str,
    specs: Vec<Spec>,
    concurrency: usize,
) -> HashMap<String, Spec> {
    let specs = Arc::new(specs);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let producer = Arc::clone(producer);
        let specs = Arc::clone(&specs);
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for s in specs.iter().skip(worker).step_by(concurrency) {
                let id = send_one(&producer, &topic, s)
                    .await
                    .unwrap_or_else(|e| panic!("send {s:?} failed: {e}"));
                sent.push((id, s.clone()));
            }
            sent
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        for (id, s) in task.await.expect("sender task") {
            assert!(
                all.insert(id.clone(), s).is_none(),
                "client produced msgId {id} twice"
            );
        }
    }
    all
}

async fn send_batches(
    producer: &DefaultMQProducer,
    topic: &str,
    prefix: &str,
    batches: usize,
    per_batch: usize,
    sent: &mut HashMap<String, Spec>,
) {
    for b in 0..batches {
        let specs: Vec<Spec> = (0..per_batch)
            .map(|j| spec(&format!("{prefix}-batch{b}"), j))
            .collect();
        let ids = send_batch(producer, topic, &specs).await;
        for (id, s) in ids.into_iter().zip(specs) {
            assert!(
                sent.insert(id.clone(), s).is_none(),
                "client produced msgId {id} twice"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consuming
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Got {
    body: Vec<u8>,
    tag: Option<String>,
    keys: Option<String>,
    topic: String,
    offset_msg_id: String,
    queue_id: i32,
    queue_offset: i64,
    count: usize,
    consumers: Vec<usize>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Got>,
    deliveries: usize,
    per_consumer: HashMap<usize, usize>,
    /// Deliveries with reconsume_times > 0 (the client or broker retried the message).
    redeliveries: Vec<String>,
    /// Deliveries without a UNIQ_KEY property.
    without_uniq_key: usize,
    /// msgIds the test waits for, and how many of them were delivered.
    expected: HashSet<String>,
    expected_distinct: usize,
}

/// Everything the listeners of one test saw, keyed by UNIQ_KEY.
struct Received {
    inner: Mutex<Inner>,
    expected_tx: watch::Sender<usize>,
    deliveries_tx: watch::Sender<usize>,
}

impl Received {
    fn new(expected: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(Received {
            inner: Mutex::new(Inner {
                expected: expected.into_iter().collect(),
                ..Inner::default()
            }),
            expected_tx: watch::channel(0).0,
            deliveries_tx: watch::channel(0).0,
        })
    }

    /// Adds msgIds to wait for (also counting ones already delivered).
    fn add_expected(&self, ids: impl IntoIterator<Item = String>) {
        let mut g = self.lock();
        for id in ids {
            if g.expected.insert(id.clone()) && g.by_id.contains_key(&id) {
                g.expected_distinct += 1;
            }
        }
        let n = g.expected_distinct;
        drop(g);
        self.expected_tx.send_replace(n);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, consumer: usize, m: &MessageExt) {
        let uniq = m.message.property("UNIQ_KEY").map(str::to_string);
        let mut g = self.lock();
        g.deliveries += 1;
        self.deliveries_tx.send_replace(g.deliveries);
        *g.per_consumer.entry(consumer).or_default() += 1;
        if m.reconsume_times > 0 {
            let d = format!(
                "uniq={uniq:?} reconsumeTimes={} topic={} queue={} offset={}",
                m.reconsume_times,
                m.message.topic(),
                m.queue_id,
                m.queue_offset
            );
            g.redeliveries.push(d);
        }
        let id = match uniq {
            Some(u) => u,
            None => {
                g.without_uniq_key += 1;
                format!("offsetMsgId:{}", m.msg_id)
            }
        };
        if let Some(got) = g.by_id.get_mut(&id) {
            got.count += 1;
            got.consumers.push(consumer);
            return;
        }
        g.by_id.insert(
            id.clone(),
            Got {
                body: m.message.body_slice().to_vec(),
                tag: m.message.property("TAGS").map(str::to_string),
                keys: m.message.property("KEYS").map(str::to_string),
                topic: m.message.topic().to_string(),
                offset_msg_id: m.msg_id.to_string(),
                queue_id: m.queue_id,
                queue_offset: m.queue_offset,
                count: 1,
                consumers: vec![consumer],
            },
        );
        if g.expected.contains(&id) {
            g.expected_distinct += 1;
            let n = g.expected_distinct;
            drop(g);
            self.expected_tx.send_replace(n);
        }
    }

    /// Bounded wait until `target` deliveries in all (repeats included) have been seen.
    async fn wait_deliveries(&self, target: usize, limit: Duration, what: &str) {
        let mut rx = self.deliveries_tx.subscribe();
        let done = matches!(
            timeout(limit, rx.wait_for(|n| *n >= target)).await,
            Ok(Ok(_))
        );
        assert!(
            done,
            "{what}: {} of {target} deliveries within {limit:?}",
            self.deliveries()
        );
    }

    /// How many times each msgId was delivered.
    fn counts(&self) -> HashMap<String, usize> {
        self.lock()
            .by_id
            .iter()
            .map(|(id, g)| (id.clone(), g.count))
            .collect()
    }

    /// Bounded wait until every expected msgId has been delivered at least once.
    async fn wait_all_expected(&self, limit: Duration, what: &str) {
        let target = self.lock().expected.len();
        let mut rx = self.expected_tx.subscribe();
        let done = matches!(
            timeout(limit, rx.wait_for(|n| *n >= target)).await,
            Ok(Ok(_))
        );
        if !done {
            let g = self.lock();
            let missing: Vec<&String> = g
                .expected
                .iter()
                .filter(|id| !g.by_id.contains_key(*id))
                .take(10)
                .collect();
            panic!(
                "{what}: only {} of {target} expected messages consumed within {limit:?} (deliveries {}, \
                 redeliveries {}, per consumer {:?}); some missing: {missing:?}",
                g.expected_distinct,
                g.deliveries,
                g.redeliveries.len(),
                g.per_consumer
            );
        }
    }

    /// Every sent message delivered exactly once with its body/tag/key intact, nothing retried.
    /// Returns a list of problems (empty when all is well).
    fn exactly_once_problems(&self, sent: &HashMap<String, Spec>, topic: &str) -> Vec<String> {
        let g = self.lock();
        let mut problems = Vec::new();
        for (id, s) in sent {
            match g.by_id.get(id) {
                None => problems.push(format!("missing {id} ({s:?})")),
                Some(got) => {
                    if got.count != 1 {
                        problems.push(format!(
                            "{id} delivered {} times (consumers {:?}, queue {} offset {})",
                            got.count, got.consumers, got.queue_id, got.queue_offset
                        ));
                    }
                    if got.body != s.body.as_bytes() {
                        problems.push(format!(
                            "{id} body {:?} != sent {:?}",
                            String::from_utf8_lossy(&got.body),
                            s.body
                        ));
                    }
                    if got.tag.as_deref() != Some(s.tag.as_str()) {
                        problems.push(format!("{id} tag {:?} != sent {:?}", got.tag, s.tag));
                    }
                    if got.keys.as_deref() != Some(s.key.as_str()) {
                        problems.push(format!("{id} keys {:?} != sent {:?}", got.keys, s.key));
                    }
                    if got.topic != topic {
                        problems.push(format!("{id} topic {:?} != {topic:?}", got.topic));
                    }
                    if got.offset_msg_id.is_empty() {
                        problems.push(format!("{id} delivered without an offset msgId"));
                    }
                }
            }
        }
        if !g.redeliveries.is_empty() {
            problems.push(format!(
                "{} redeliveries (reconsumeTimes > 0), first: {:?}",
                g.redeliveries.len(),
                &g.redeliveries[..g.redeliveries.len().min(5)]
            ));
        }
        if g.without_uniq_key > 0 {
            problems.push(format!(
                "{} deliveries without a UNIQ_KEY property",
                g.without_uniq_key
            ));
        }
        problems
    }

    /// Delivered msgIds that were not in `sent`.
    fn unexpected(&self, sent: &HashMap<String, Spec>) -> Vec<(String, String, usize)> {
        let g = self.lock();
        g.by_id
            .iter()
            .filter(|(id, _)| !sent.contains_key(*id))
            .map(|(id, got)| {
                (
                    id.clone(),
                    String::from_utf8_lossy(&got.body).into_owned(),
                    got.count,
                )
            })
            .collect()
    }

    fn per_consumer(&self, consumer: usize) -> usize {
        self.lock()
            .per_consumer
            .get(&consumer)
            .copied()
            .unwrap_or(0)
    }

    fn deliveries(&self) -> usize {
        self.lock().deliveries
    }
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problems, first {}:\n{}",
        problems.len(),
        problems.len().min(25),
        problems
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The concurrent listener: records every message and acknowledges it.
struct Collector {
    consumer: usize,
    received: Arc<Received>,
}

impl Collector {
    fn new(consumer: usize, received: &Arc<Received>) -> Self {
        Collector {
            consumer,
            received: Arc::clone(received),
        }
    }
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            self.received.record(self.consumer, m);
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// (all queues of the topic, queues assigned to this consumer), as reported by the rebalance.
type QueueView = (HashSet<MessageQueue>, HashSet<MessageQueue>);

/// Latest queue assignment per consumer, reported by the client's rebalance.
#[derive(Default)]
struct Assignments {
    latest: Mutex<HashMap<usize, QueueView>>,
    changes: watch::Sender<u64>,
}

impl Assignments {
    /// Bounded wait until `n` consumers hold disjoint, non-empty queue sets covering all queues.
    async fn wait_split(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut rx = self.changes.subscribe();
        loop {
            if self.is_split(n) {
                return;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if timeout(remaining, rx.changed()).await.is_err() {
                let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
                let view: Vec<(usize, usize, Vec<i32>)> = latest
                    .iter()
                    .map(|(c, (all, mine))| {
                        (*c, all.len(), mine.iter().map(|q| q.queue_id()).collect())
                    })
                    .collect();
                panic!("queues not split between {n} consumers within {limit:?}: (consumer, all, mine) {view:?}");
            }
        }
    }

    fn is_split(&self, n: usize) -> bool {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.len() != n {
            return false;
        }
        let mut union = HashSet::new();
        let mut all_views = latest.values().map(|(all, _)| all);
        let all = all_views.next().expect("n > 0");
        if all.is_empty() || all_views.any(|other| other != all) {
            return false;
        }
        for (_, mine) in latest.values() {
            if mine.is_empty() {
                return false;
            }
            for q in mine {
                if !union.insert(q.clone()) {
                    return false; // overlap
                }
            }
        }
        &union == all
    }
}

struct QueueWatch {
    consumer: usize,
    topic: String,
    assignments: Arc<Assignments>,
}

impl MessageQueueListener for QueueWatch {
    fn message_queue_changed(
        &self,
        topic: &str,
        mq_all: &HashSet<MessageQueue>,
        mq_assigned: &HashSet<MessageQueue>,
    ) {
        if topic != self.topic {
            return;
        }
        self.assignments
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.consumer, (mq_all.clone(), mq_assigned.clone()));
        self.assignments.changes.send_modify(|v| *v += 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// 10,000 synchronous single sends (tags alternate TagA/TagB, keys) + 20 batches of 50 to an
/// auto-created topic; one push consumer receives every message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_send_10k_and_batches_consume_exactly_once() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(170), async {
        const TOPIC: &str = "RcE2eT1Topic";
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t1");
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t1_pg", 0).await);

        // The first send creates the topic (TOPIC_NOT_EXIST -> TBW102 route -> auto-create).
        let first = spec("t1", 0);
        let first_id = send_one(&producer, TOPIC, &first)
            .await
            .expect("first send");
        let specs: Vec<Spec> = (1..10_000).map(|i| spec("t1", i)).collect();
        let started = Instant::now();
        let mut sent = send_all(&producer, TOPIC, specs, 8).await;
        sent.insert(first_id, first);
        send_batches(&producer, TOPIC, "t1", 20, 50, &mut sent).await;
        eprintln!(
            "t1: sent {} messages in {:?}",
            sent.len(),
            started.elapsed()
        );
        assert_eq!(sent.len(), 11_000);

        let received = Received::new(sent.keys().cloned());
        let consumer = env
            .consumer(
                &broker.namesrv_addr,
                "rc_e2e_t1_cg",
                TOPIC,
                "*",
                Collector::new(0, &received),
                None,
            )
            .await;
        let started = Instant::now();
        received
            .wait_all_expected(Duration::from_secs(90), "t1")
            .await;
        eprintln!(
            "t1: consumed {} in {:?}",
            received.deliveries(),
            started.elapsed()
        );
        shutdown_consumer(consumer).await;
        shutdown_producer(producer).await;

        assert_no_problems("t1", &received.exactly_once_problems(&sent, TOPIC));
        let unexpected = received.unexpected(&sent);
        assert!(
            unexpected.is_empty(),
            "t1: unexpected messages {:?}",
            &unexpected[..unexpected.len().min(10)]
        );

        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t1 timed out");
}

/// Two consumers in one group split the queues and together receive everything exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_two_consumers_split_queues() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT2Topic";
        const GROUP: &str = "rc_e2e_t2_cg";
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t2");
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t2_pg", 0).await);

        // Create the topic with a message the consumers' tag expression excludes, so a queue that
        // moves between consumers during the initial rebalance carries nothing they would take.
        let warmup = Spec {
            tag: "Warmup".to_string(),
            key: "t2-warmup".to_string(),
            body: "t2-warmup".to_string(),
        };
        let warmup_id = send_one(&producer, TOPIC, &warmup)
            .await
            .expect("warmup send");

        let received = Received::new(Vec::<String>::new()); // msgIds not known yet: add_expected below
        let assignments = Arc::new(Assignments::default());
        let mut consumers = Vec::new();
        for idx in 0..2 {
            let queue_watch: ArcMessageQueueListener = Arc::new(QueueWatch {
                consumer: idx,
                topic: TOPIC.to_string(),
                assignments: Arc::clone(&assignments),
            });
            consumers.push(
                env.consumer(
                    &broker.namesrv_addr,
                    GROUP,
                    TOPIC,
                    "TagA || TagB",
                    Collector::new(idx, &received),
                    Some(queue_watch),
                )
                .await,
            );
        }
        assignments.wait_split(2, Duration::from_secs(60)).await;

        let specs: Vec<Spec> = (0..2_000).map(|i| spec("t2", i)).collect();
        let sent = send_all(&producer, TOPIC, specs, 4).await;
        received.add_expected(sent.keys().cloned());
        received
            .wait_all_expected(Duration::from_secs(60), "t2")
            .await;

        for consumer in consumers {
            shutdown_consumer(consumer).await;
        }
        shutdown_producer(producer).await;

        assert_no_problems("t2", &received.exactly_once_problems(&sent, TOPIC));
        let unexpected = received.unexpected(&sent);
        assert!(
            unexpected.is_empty(),
            "t2: unexpected messages (the Warmup-tagged {warmup_id} must be filtered): {:?}",
            &unexpected[..unexpected.len().min(10)]
        );
        let (a, b) = (received.per_consumer(0), received.per_consumer(1));
        assert!(
            a > 0 && b > 0,
            "t2: both consumers must receive messages: {a} + {b}"
        );
        assert_eq!(a + b, sent.len());

        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t2 timed out");
}

/// A consumer subscribed to "TagA" receives all TagA messages and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_tag_filter() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT3Topic";
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t3");
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t3_pg", 0).await);

        let first = spec("t3", 0);
        let first_id = send_one(&producer, TOPIC, &first)
            .await
            .expect("first send");
        let mut sent = send_all(
            &producer,
            TOPIC,
            (1..1_000).map(|i| spec("t3", i)).collect(),
            4,
        )
        .await;
        sent.insert(first_id, first);
        send_batches(&producer, TOPIC, "t3", 2, 50, &mut sent).await;
        let tag_a: HashMap<String, Spec> = sent
            .iter()
            .filter(|(_, s)| s.tag == "TagA")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(tag_a.len(), 550);

        let (received, consumer) = env
            .consume_all(
                &broker.namesrv_addr,
                "rc_e2e_t3_cg",
                TOPIC,
                "TagA",
                tag_a.keys().cloned(),
                Duration::from_secs(60),
                "t3",
            )
            .await;
        shutdown_consumer(consumer).await;
        shutdown_producer(producer).await;

        assert_no_problems("t3", &received.exactly_once_problems(&tag_a, TOPIC));
        let unexpected = received.unexpected(&tag_a);
        assert!(
            unexpected.is_empty(),
            "t3: a TagA subscriber received other messages: {:?}",
            &unexpected[..unexpected.len().min(10)]
        );

        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t3 timed out");
}

/// Clean stop + restart on the same store: the group resumes from its committed offsets and gets
/// exactly the messages sent after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_clean_restart_resumes_committed_offsets() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(150), async {
        const TOPIC: &str = "RcE2eT4Topic";
        const GROUP: &str = "rc_e2e_t4_cg";
        let store = common::temp_store();
        let env = ClientEnv::new("t4");

        // Phase A: produce and consume everything, then shut the consumer down cleanly (it persists
        // its offsets and unregisters) before stopping the broker with SIGTERM.
        let mut broker = start_broker(store.path());
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t4_pg", 0).await);
        let first = spec("t4a", 0);
        let first_id = send_one(&producer, TOPIC, &first).await.expect("first send");
        let mut sent_a = send_all(&producer, TOPIC, (1..300).map(|i| spec("t4a", i)).collect(), 4).await;
        sent_a.insert(first_id, first);
        send_batches(&producer, TOPIC, "t4a", 2, 50, &mut sent_a).await;

        let received_a = Received::new(sent_a.keys().cloned());
        let consumer = env
            .consumer(&broker.namesrv_addr, GROUP, TOPIC, "*", Collector::new(0, &received_a), None)
            .await;
        received_a.wait_all_expected(Duration::from_secs(60), "t4 before restart").await;
        shutdown_consumer(consumer).await;
        shutdown_producer(producer).await;
        assert_no_problems("t4 before restart", &received_a.exactly_once_problems(&sent_a, TOPIC));
        tokio::task::block_in_place(|| broker.stop_clean());
        drop(broker);

        // Phase B: same store, new ports, new clients.
        let mut broker = start_broker(store.path());
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t4_pg", 0).await);
        let sent_b = send_all(&producer, TOPIC, (0..300).map(|i| spec("t4b", i)).collect(), 4).await;
        let received_b = Received::new(sent_b.keys().cloned());
        let consumer = env
            .consumer(&broker.namesrv_addr, GROUP, TOPIC, "*", Collector::new(0, &received_b), None)
            .await;
        received_b.wait_all_expected(Duration::from_secs(60), "t4 after restart").await;
        shutdown_consumer(consumer).await;
        shutdown_producer(producer).await;

        assert_no_problems("t4 after restart", &received_b.exactly_once_problems(&sent_b, TOPIC));
        let old: Vec<_> = received_b
            .unexpected(&sent_b)
            .into_iter()
            .filter(|(id, _, _)| sent_a.contains_key(id))
            .collect();
        assert!(
            old.is_empty(),
            "t4: {} messages consumed before the clean stop were redelivered after restart, e.g. {:?}",
            old.len(),
            &old[..old.len().min(10)]
        );
        let unexpected = received_b.unexpected(&sent_b);
        assert!(unexpected.is_empty(), "t4: unexpected messages {:?}", &unexpected[..unexpected.len().min(10)]);

        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t4 timed out");
}

/// SIGKILL during SYNC_FLUSH sends; after restart every acknowledged message is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sigkill_keeps_acknowledged_messages() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(150), async {
        const TOPIC: &str = "RcE2eT5Topic";
        const KILL_AFTER_ACKS: usize = 2_000;
        const MAX_SENDS: usize = 200_000;
        let store = common::temp_store();
        let env = ClientEnv::new("t5");
        let mut broker = start_broker(store.path());
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t5_pg", 0).await);

        // Topic creation before the concurrent senders start.
        let first = spec("t5", 0);
        let first_id = send_one(&producer, TOPIC, &first)
            .await
            .expect("first send");

        let acked: Arc<Mutex<HashMap<String, Spec>>> =
            Arc::new(Mutex::new(HashMap::from([(first_id, first)])));
        let attempted_bodies: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
        let (ack_tx, mut ack_rx) = watch::channel(1usize);
        let ack_tx = Arc::new(ack_tx);
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(1));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (producer, acked, attempted, ack_tx, stop, next) = (
                Arc::clone(&producer),
                Arc::clone(&acked),
                Arc::clone(&attempted_bodies),
                Arc::clone(&ack_tx),
                Arc::clone(&stop),
                Arc::clone(&next),
            );
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= MAX_SENDS {
                        return None;
                    }
                    let s = spec("t5", i);
                    attempted.lock().unwrap().insert(s.body.clone());
                    match send_one(&producer, TOPIC, &s).await {
                        Ok(id) => {
                            acked.lock().unwrap().insert(id, s);
                            ack_tx.send_modify(|n| *n += 1);
                        }
                        // Expected once the broker is gone.
                        Err(e) => return Some(e.to_string()),
                    }
                }
                None
            }));
        }

        let reached = matches!(
            timeout(
                Duration::from_secs(60),
                ack_rx.wait_for(|n| *n >= KILL_AFTER_ACKS)
            )
            .await,
            Ok(Ok(_))
        );
        assert!(
            reached,
            "t5: fewer than {KILL_AFTER_ACKS} acknowledged sends within 60 s"
        );
        let status = tokio::task::block_in_place(|| broker.kill9());
        stop.store(true, Ordering::Release);
        eprintln!(
            "t5: broker SIGKILLed ({status}) after {} acks",
            *ack_rx.borrow()
        );
        drop(broker);
        for worker in workers {
            let outcome = timeout(Duration::from_secs(40), worker)
                .await
                .expect("t5: sender did not finish after the kill")
                .expect("sender task");
            if let Some(err) = outcome {
                eprintln!("t5: sender stopped on: {err}");
            }
        }
        let acked: HashMap<String, Spec> = std::mem::take(&mut *acked.lock().unwrap());
        let attempted: HashSet<String> = std::mem::take(&mut *attempted_bodies.lock().unwrap());
        assert!(acked.len() >= KILL_AFTER_ACKS);
        // The producer's broker is gone; its shutdown only has to finish, bounded.
        let mut producer =
            Arc::try_unwrap(producer).unwrap_or_else(|_| panic!("producer still shared"));
        let _ = timeout(Duration::from_secs(20), producer.shutdown()).await;

        let mut broker = start_broker(store.path());
        let (received, consumer) = env
            .consume_all(
                &broker.namesrv_addr,
                "rc_e2e_t5_cg",
                TOPIC,
                "*",
                acked.keys().cloned(),
                Duration::from_secs(60),
                "t5 after SIGKILL",
            )
            .await;
        shutdown_consumer(consumer).await;

        assert_no_problems("t5", &received.exactly_once_problems(&acked, TOPIC));
        // Sends that failed at the kill may or may not have been stored; if stored, they must be
        // intact messages we really attempted, delivered once.
        let extras = received.unexpected(&acked);
        let bad: Vec<_> = extras
            .iter()
            .filter(|(_, body, count)| !attempted.contains(body) || *count != 1)
            .collect();
        assert!(
            bad.is_empty(),
            "t5: corrupt or duplicated unacknowledged messages: {bad:?}"
        );
        eprintln!(
            "t5: {} acknowledged all consumed; {} unacknowledged were also stored",
            acked.len(),
            extras.len()
        );

        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t5 timed out");
}

/// An offset message id (§4.5) with `delta` added to its commit-log offset: the last 16 hex
/// digits are the offset.
fn shifted_offset_msg_id(id: &str, delta: u64) -> String {
    let (host, offset) = id.split_at(id.len() - 16);
    let offset = u64::from_str_radix(offset, 16).expect("hex offset in an offset message id");
    format!("{host}{:016X}", offset + delta)
}

/// Lookups the way `mqadmin queryMsgById` / `queryMsgByKey` and a producer's viewMessage /
/// queryMessage make them: by offset message id (VIEW_MESSAGE_BY_ID) and by key (QUERY_MESSAGE),
/// over queues on both shards' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_view_by_id_and_query_by_key() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT7Topic";
        const KEYS: usize = 20;
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t7");
        let mut producer = env.producer(&broker.namesrv_addr, "rc_e2e_t7_pg", 0).await;

        // Every key is carried by two messages; sends rotate over the topic's queues, which
        // sit on both shards' logs.
        let mut sent: Vec<(Spec, SendResult)> = Vec::new();
        for i in 0..2 * KEYS {
            let s = Spec {
                tag: "TagA".to_string(),
                key: format!("t7-key-{}", i % KEYS),
                body: format!("t7-body-{i}"),
            };
            let r = producer
                .send(build_message(TOPIC, &s))
                .await
                .expect("send")
                .expect("a synchronous send returns a SendResult");
            check_send_result(&r);
            sent.push((s, r));
        }
        let queues: HashSet<i32> = sent
            .iter()
            .filter_map(|(_, r)| r.message_queue.as_ref().map(|q| q.queue_id()))
            .collect();
        assert!(
            queues.len() > 1,
            "t7: all sends went to one queue: {queues:?}"
        );

        for (s, r) in &sent {
            let id = r.offset_msg_id.as_deref().expect("offsetMsgId");
            let m = producer.view_message(TOPIC, id).await.expect("view by id");
            assert_eq!(
                m.message.body_slice(),
                s.body.as_bytes(),
                "t7: body of {id}"
            );
            assert_eq!(
                m.message.property("KEYS"),
                Some(s.key.as_str()),
                "t7: keys of {id}"
            );
            assert_eq!(m.msg_id.to_string(), id, "t7: the record names its own id");
        }
        // An id whose offset is inside a record, not at its start, finds nothing.
        let inside = shifted_offset_msg_id(sent[0].1.offset_msg_id.as_deref().expect("id"), 1);
        assert!(
            producer.view_message(TOPIC, &inside).await.is_err(),
            "t7: {inside} is not a record start"
        );

        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64
            + 60_000;
        for k in 0..KEYS {
            let key = format!("t7-key-{k}");
            let result = producer
                .query_message(TOPIC, &key, 32, 0, end)
                .await
                .expect("query by key");
            let mut got: Vec<Vec<u8>> = result
                .message_list()
                .iter()
                .map(|m| m.message.body_slice().to_vec())
                .collect();
            got.sort();
            let mut want: Vec<Vec<u8>> = sent
                .iter()
                .filter(|(s, _)| s.key == key)
                .map(|(s, _)| s.body.as_bytes().to_vec())
                .collect();
            want.sort();
            assert_eq!(got, want, "t7: messages with key {key}");
        }
        assert!(
            producer
                .query_message(TOPIC, "t7-no-such-key", 32, 0, end)
                .await
                .is_err(),
            "t7: a key nobody sent finds nothing"
        );
        assert!(
            producer
                .query_message(TOPIC, "t7-key-0", 32, 0, 1_000)
                .await
                .is_err(),
            "t7: nothing was stored before 1970 + 1 s"
        );

        shutdown_owned_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t7 timed out");
}

/// An orderly consumer (MessageListenerOrderly, CLUSTERING) consumes only the queues it has
/// locked on the broker (LOCK_BATCH_MQ): it receives every message, each key's in send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_orderly_consumer_locks_its_queues_and_keeps_each_keys_order() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT8Topic";
        const KEYS: usize = 8;
        const PER_KEY: usize = 25;
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t8");
        let producer = env.producer(&broker.namesrv_addr, "rc_e2e_t8_pg", 0).await;
        // Each key's messages go to one queue (chosen by key), interleaved with other keys'.
        for seq in 0..PER_KEY {
            for k in 0..KEYS {
                let msg = Message::builder()
                    .topic(TOPIC)
                    .tags("TagA")
                    .key(format!("order-{k}").as_str())
                    .body_slice(format!("{k}:{seq}").as_bytes())
                    .build_unchecked();
                let by_key =
                    |mqs: &[MessageQueue], _: &Message, k: &usize| mqs.get(k % mqs.len()).cloned();
                let r = producer
                    .send_with_selector(msg, by_key, k)
                    .await
                    .expect("send")
                    .expect("a synchronous send returns a SendResult");
                check_send_result(&r);
            }
        }

        let seen: Arc<Mutex<HashMap<usize, Vec<usize>>>> = Arc::default();
        let all_seen = Arc::new(tokio::sync::Notify::new());
        let listener = {
            let (seen, all_seen) = (Arc::clone(&seen), Arc::clone(&all_seen));
            move |msgs: &[&MessageExt],
                  _: &mut ConsumeOrderlyContext|
                  -> ClientResult<ConsumeOrderlyStatus> {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                for m in msgs {
                    let body = String::from_utf8_lossy(m.message.body_slice()).to_string();
                    let (k, seq) = body.split_once(':').expect("body k:seq");
                    let (k, seq) = (k.parse().expect("key"), seq.parse().expect("seq"));
                    seen.entry(k).or_default().push(seq);
                }
                if seen.values().map(Vec::len).sum::<usize>() >= KEYS * PER_KEY {
                    all_seen.notify_one();
                }
                Ok(ConsumeOrderlyStatus::Success)
            }
        };
        let mut consumer = env.push_consumer(&broker.namesrv_addr, "rc_e2e_t8_cg", None);
        consumer.subscribe(TOPIC, "*").await.expect("subscribe");
        consumer.register_message_listener_orderly(listener);
        consumer.start().await.expect("consumer start");
        timeout(Duration::from_secs(60), all_seen.notified())
            .await
            .unwrap_or_else(|_| {
                let n: usize = seen
                    .lock()
                    .map(|s| s.values().map(Vec::len).sum())
                    .unwrap_or(0);
                panic!(
                    "t8: the orderly consumer got {n} of {} messages",
                    KEYS * PER_KEY
                )
            });
        shutdown_consumer(consumer).await;
        {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            for k in 0..KEYS {
                let want: Vec<usize> = (0..PER_KEY).collect();
                assert_eq!(
                    seen.get(&k),
                    Some(&want),
                    "t8: key {k} in send order, once each"
                );
            }
        }
        shutdown_owned_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t8 timed out");
}

/// Delayed delivery: a message sent with delay level 1 reaches the consumer no sooner than 1 s
/// after it was sent, on its own topic; a message the listener asks to reconsume later comes
/// back no sooner than 10 s later (level 3, RocketMQ's first retry delay), with reconsumeTimes 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_delay_level_and_retry_backoff() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT9Topic";
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t9");
        let producer = env.producer(&broker.namesrv_addr, "rc_e2e_t9_pg", 0).await;

        type Arrival = (String, i32, String, Instant);
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let listener = {
            let (arrivals, arrived) = (Arc::clone(&arrivals), Arc::clone(&arrived));
            move |msgs: &[&MessageExt],
                  _: &ConsumeConcurrentlyContext|
                  -> ClientResult<ConsumeConcurrentlyStatus> {
                let mut later = false;
                let mut a = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                for m in msgs {
                    let body = String::from_utf8_lossy(m.message.body_slice()).to_string();
                    later |= body == "retry-me" && m.reconsume_times == 0;
                    a.push((
                        body,
                        m.reconsume_times,
                        m.message.topic().to_string(),
                        Instant::now(),
                    ));
                }
                arrived.notify_one();
                Ok(if later {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                })
            }
        };
        let mut consumer = env.push_consumer(&broker.namesrv_addr, "rc_e2e_t9_cg", None);
        consumer.subscribe(TOPIC, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(listener);
        consumer.start().await.expect("consumer start");

        let send = |body: &'static str, level: Option<i32>| {
            let mut b = Message::builder()
                .topic(TOPIC)
                .tags("TagA")
                .body_slice(body.as_bytes());
            if let Some(level) = level {
                b = b.delay_level(level);
            }
            b.build_unchecked()
        };
        let wait_for = |n: usize| {
            let (arrivals, arrived) = (Arc::clone(&arrivals), Arc::clone(&arrived));
            async move {
                loop {
                    let notified = arrived.notified();
                    if arrivals.lock().map(|a| a.len()).unwrap_or(0) >= n {
                        return;
                    }
                    notified.await;
                }
            }
        };
        // Once a first message has arrived the consumer is pulling, so an undelayed message
        // would arrive within milliseconds.
        let r = producer.send(send("warm-up", None)).await.expect("send");
        check_send_result(&r.expect("a synchronous send returns a SendResult"));
        timeout(Duration::from_secs(60), wait_for(1))
            .await
            .expect("t9: the warm-up message did not arrive");
        let sent_at = Instant::now();
        for (body, level) in [("delayed", Some(1)), ("retry-me", None)] {
            let r = producer
                .send(send(body, level))
                .await
                .expect("send")
                .expect("a synchronous send returns a SendResult");
            check_send_result(&r);
        }
        // The warm-up and "delayed" once, "retry-me" twice.
        timeout(Duration::from_secs(60), wait_for(4))
            .await
            .unwrap_or_else(|_| panic!("t9: arrivals {:?}", arrivals.lock().map(|a| a.clone())));
        shutdown_consumer(consumer).await;

        let a = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let find = |body: &str, times: i32| {
            a.iter()
                .find(|(b, t, _, _)| b == body && *t == times)
                .unwrap_or_else(|| panic!("t9: no {body} with reconsumeTimes {times} in {a:?}"))
                .clone()
        };
        let (_, _, topic, at) = find("delayed", 0);
        assert_eq!(topic, TOPIC, "t9: delivered on its own topic");
        let waited = at - sent_at;
        assert!(
            waited >= Duration::from_millis(990),
            "t9: delay level 1 took only {waited:?}"
        );
        let (_, _, _, first) = find("retry-me", 0);
        let (_, _, topic, again) = find("retry-me", 1);
        assert_eq!(topic, TOPIC, "t9: a retry is restored to its own topic");
        let backoff = again - first;
        assert!(
            backoff >= Duration::from_millis(9_900),
            "t9: first retry after only {backoff:?}"
        );
        assert_eq!(a.len(), 4, "t9: nothing delivered twice: {a:?}");

        shutdown_owned_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t9 timed out");
}

/// What `mqadmin topicStatus` and `consumerProgress` read, through the real admin client: each
/// queue's offsets (GET_TOPIC_STATS_INFO) and a group's backlog (GET_CONSUME_STATS), in the
/// fastjson form with queue objects as map keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_admin_topic_status_and_consumer_progress() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT10Topic";
        const GROUP: &str = "rc_e2e_t10_cg";
        const N: usize = 60;
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t10");
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t10_pg", 0).await);
        let sent = send_all(
            &producer,
            TOPIC,
            (0..N).map(|i| spec("t10", i)).collect(),
            2,
        )
        .await;

        let mut admin = env.admin(&broker.namesrv_addr).await;

        let stats = MQAdminTopicStatsReadExt::topic_stats_at(
            &admin,
            broker.broker_addr.as_str().into(),
            TOPIC.into(),
        )
        .await
        .expect("topic stats");
        let table = stats.get_offset_table();
        assert!(!table.is_empty(), "t10: no queues in the topic stats");
        let total: i64 = table.values().map(|o| o.get_max_offset()).sum();
        assert_eq!(
            total, N as i64,
            "t10: max offsets add up to the messages sent"
        );
        for (mq, o) in table {
            assert_eq!(mq.topic().as_str(), TOPIC);
            assert_eq!(o.get_min_offset(), 0, "t10: {mq:?}");
            assert_eq!(
                o.get_last_update_timestamp() > 0,
                o.get_max_offset() > 0,
                "t10: {mq:?}"
            );
        }

        // Before anyone consumed, the whole topic is the group's backlog.
        let stats_request = || {
            (
                GROUP.into(),
                Some(TOPIC.into()),
                None,
                Some(broker.broker_addr.as_str().into()),
                None,
            )
        };
        let (g, t, c, b, to) = stats_request();
        let before = MQAdminReadExt::examine_consume_stats(&admin, g, t, c, b, to)
            .await
            .expect("consume stats");
        assert_eq!(
            before.compute_total_diff(),
            N as i64,
            "t10: backlog before consuming"
        );

        let (_received, consumer) = env
            .consume_all(
                &broker.namesrv_addr,
                GROUP,
                TOPIC,
                "*",
                sent.keys().cloned(),
                Duration::from_secs(60),
                "t10",
            )
            .await;
        // Shutdown commits the consumer's offsets before it unregisters.
        shutdown_consumer(consumer).await;
        let (g, t, c, b, to) = stats_request();
        let after = MQAdminReadExt::examine_consume_stats(&admin, g, t, c, b, to)
            .await
            .expect("consume stats");
        assert_eq!(
            after.compute_total_diff(),
            0,
            "t10: backlog after consuming everything"
        );
        let consumed: i64 = after
            .get_offset_table()
            .values()
            .map(|o| o.get_consumer_offset())
            .sum();
        assert_eq!(
            consumed, N as i64,
            "t10: committed offsets add up to the messages sent"
        );
        assert!(
            after
                .get_offset_table()
                .values()
                .all(|o| (o.get_consumer_offset() > 0) == (o.get_last_timestamp() > 0)),
            "t10: a consumed queue reports when its last consumed message was stored"
        );

        admin.shutdown().await;
        shutdown_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t10 timed out");
}

/// What `mqadmin clusterList` / `brokerStatus`, `getBrokerConfig`, `consumerConnection`,
/// `producerConnection` and `updateSubGroup` / `deleteSubGroup` read and change, through the real
/// admin client: GET_BROKER_RUNTIME_INFO, GET_BROKER_CONFIG, GET_CONSUMER_CONNECTION_LIST,
/// GET_PRODUCER_CONNECTION_LIST and the subscription-group requests (200, 201, 207, 352).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_admin_broker_status_connections_and_subscription_groups() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT11Topic";
        const GROUP: &str = "rc_e2e_t11_cg";
        const PRODUCER_GROUP: &str = "rc_e2e_t11_pg";
        const N: usize = 40;
        let started_ms = now_ms();
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t11");
        let producer = Arc::new(env.producer(&broker.namesrv_addr, PRODUCER_GROUP, 0).await);
        let sent = send_all(
            &producer,
            TOPIC,
            (0..N).map(|i| spec("t11", i)).collect(),
            2,
        )
        .await;
        let (_received, consumer) = env
            .consume_all(
                &broker.namesrv_addr,
                GROUP,
                TOPIC,
                "TagA || TagB",
                sent.keys().cloned(),
                Duration::from_secs(60),
                "t11",
            )
            .await;
        let admin = env.admin(&broker.namesrv_addr).await;
        let addr = || broker.broker_addr.as_str().into();

        // clusterList / brokerStatus.
        let kv = MQAdminReadExt::fetch_broker_runtime_stats(&admin, addr())
            .await
            .expect("runtime stats")
            .table;
        let get = |k: &str| {
            kv.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| panic!("t11: runtime info has no {k}: {kv:?}"))
        };
        assert_eq!(get("brokerVersionDesc"), "V4_9_8");
        assert_eq!(
            get("msgPutTotalTodayNow"),
            N.to_string(),
            "t11: messages stored"
        );
        let got: usize = get("msgGetTotalTodayNow").parse().expect("a count");
        assert!(got >= N, "t11: {got} messages delivered, {N} consumed");
        let earliest: i64 = get("earliestMessageTimeStamp").parse().expect("a time");
        assert!(
            (started_ms..=now_ms()).contains(&earliest),
            "t11: the oldest message was stored at {earliest}, the test began at {started_ms}"
        );
        let ratio: f64 = get("commitLogDiskRatio").parse().expect("a ratio");
        assert!((0.0..=1.0).contains(&ratio), "t11: disk ratio {ratio}");
        for k in ["putTps", "getTransferedTps"] {
            let rates: Vec<f64> = get(k)
                .split(' ')
                .map(|r| r.parse().expect("a rate"))
                .collect();
            assert_eq!(rates.len(), 3, "t11: {k}");
        }

        // getBrokerConfig: the configuration the broker runs with.
        let cfg = BrokerAdmin::get_broker_config(&admin, addr())
            .await
            .expect("broker config");
        let cfg_get = |k: &str| {
            cfg.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.to_string())
        };
        let port = broker.broker_addr.rsplit(':').next().map(str::to_string);
        assert_eq!(cfg_get("listenPort"), port, "t11: listenPort");
        assert_eq!(cfg_get("autoCreateTopicEnable").as_deref(), Some("true"));
        assert_eq!(cfg_get("brokerIP1").as_deref(), Some("127.0.0.1"));
        assert_eq!(cfg_get("namesrvAddr"), Some(broker.namesrv_addr.clone()));

        // consumerConnection: the one member, what it subscribes to and how it consumes.
        let cc =
            MQAdminReadExt::examine_consumer_connection_info(&admin, GROUP.into(), Some(addr()))
                .await
                .expect("consumer connection");
        let conns: Vec<_> = cc.get_connection_set().iter().collect();
        assert_eq!(conns.len(), 1, "t11: {cc:?}");
        assert!(
            conns[0].get_client_addr().starts_with("127.0.0.1:"),
            "t11: {:?}",
            conns[0]
        );
        assert!(
            conns[0].get_client_id().contains("t11-consumer"),
            "t11: {:?}",
            conns[0]
        );
        assert_eq!(cc.get_message_model(), Some(MessageModel::Clustering));
        assert_eq!(
            cc.get_consume_from_where(),
            Some(ConsumeFromWhere::ConsumeFromFirstOffset)
        );
        let sub = cc
            .get_subscription_table()
            .iter()
            .find(|(t, _)| t.as_str() == TOPIC)
            .map(|(_, s)| s.clone())
            .expect("t11: the topic's subscription");
        let tags: Vec<&str> = sub.tags_set.iter().map(|t| t.as_str()).collect();
        assert_eq!(tags, ["TagA", "TagB"], "t11: {sub:?}");
        assert_eq!(sub.code_set.len(), 2, "t11: {sub:?}");

        // consumerStatus: the broker relays GET_CONSUMER_RUNNING_INFO to the consumer itself.
        let client_id = conns[0].get_client_id();
        let info =
            ConsumerAdmin::get_consumer_running_info(&admin, GROUP.into(), client_id, false, None)
                .await
                .expect("consumer running info");
        assert!(
            info.subscription_set
                .iter()
                .any(|s| s.topic.as_str() == TOPIC),
            "t11: the consumer reports its subscription: {info:?}"
        );
        let nobody = ConsumerAdmin::get_consumer_running_info(
            &admin,
            GROUP.into(),
            "nobody".into(),
            false,
            None,
        )
        .await;
        assert!(nobody.is_err(), "t11: a client that is not online");

        // producerConnection.
        let pc = MQAdminReadExt::examine_producer_connection_info(
            &admin,
            PRODUCER_GROUP.into(),
            TOPIC.into(),
        )
        .await
        .expect("producer connection");
        assert_eq!(pc.connection_set().len(), 1, "t11: {pc:?}");

        // Once the consumer is gone, its group is not online.
        shutdown_consumer(consumer).await;
        let gone =
            MQAdminReadExt::examine_consumer_connection_info(&admin, GROUP.into(), Some(addr()))
                .await;
        assert!(gone.is_err(), "t11: {gone:?}");

        // Who consumes the topic: the group is offline now, and found by its committed offsets.
        let who = TopicAdmin::query_topic_consume_by_who(&admin, TOPIC.into())
            .await
            .expect("consumed by");
        assert!(
            who.get_group_list().iter().any(|g| g.as_str() == GROUP),
            "t11: {who:?}"
        );

        // cloneGroupOffset: a new group starts where the old one stopped (backlog 0).
        const CLONE: &str = "rc_e2e_t11_clone_cg";
        OffsetAdmin::clone_group_offset(&admin, GROUP.into(), CLONE.into(), TOPIC.into(), true)
            .await
            .expect("clone offsets");
        let cloned = MQAdminReadExt::examine_consume_stats(
            &admin,
            CLONE.into(),
            Some(TOPIC.into()),
            None,
            Some(addr()),
            None,
        )
        .await
        .expect("consume stats of the clone");
        let committed: i64 = cloned
            .get_offset_table()
            .values()
            .map(|o| o.get_consumer_offset())
            .sum();
        assert_eq!(
            (committed, cloned.compute_total_diff()),
            (N as i64, 0),
            "t11: the clone has the source's offsets"
        );

        // brokerConsumeStats: every subscription group's stats on this broker.
        let all = ConsumerAdmin::fetch_consume_stats_in_broker(&admin, addr(), false, 5_000)
            .await
            .expect("broker consume stats");
        let ours: Vec<_> = all
            .consume_stats_list
            .iter()
            .filter_map(|m| m.iter().find(|(g, _)| g.as_str() == GROUP).map(|(_, v)| v))
            .flatten()
            .collect();
        let committed: i64 = ours
            .iter()
            .flat_map(|s| s.get_offset_table().iter())
            .filter(|(mq, _)| mq.topic().as_str() == TOPIC)
            .map(|(_, o)| o.get_consumer_offset())
            .sum();
        assert_eq!(committed, N as i64, "t11: the group's offsets on the topic");
        assert_eq!(
            all.total_diff, 0,
            "t11: nothing left to consume on this broker"
        );

        // wipeWritePerm / addWritePerm on the NameServer, seen in the topic's route.
        let perm = || async {
            let route = TopicAdmin::examine_topic_route_info(&admin, TOPIC.into())
                .await
                .expect("route")
                .expect("t11: the topic has a route");
            route.queue_datas[0].perm
        };
        let ns = || broker.namesrv_addr.as_str().into();
        let wiped = BrokerAdmin::wipe_write_perm_of_broker(&admin, ns(), "broker-a".into())
            .await
            .expect("wipe write permission");
        assert!(wiped >= 1, "t11: {wiped} topics wiped");
        assert_eq!(perm().await, 4, "t11: read only after wipeWritePerm");
        let added = BrokerAdmin::add_write_perm_of_broker(&admin, ns(), "broker-a".into())
            .await
            .expect("add write permission");
        assert_eq!(added, wiped);
        assert_eq!(perm().await, 6, "t11: read and write after addWritePerm");

        // updateBrokerConfig brokerPermission=4: read only, on the broker and in its routes, then
        // back to 6. Keys that cannot change at runtime are refused.
        let set_perm = |p: &'static str| {
            BrokerAdmin::update_broker_config(
                &admin,
                addr(),
                HashMap::from([("brokerPermission".into(), p.into())]),
            )
        };
        set_perm("4").await.expect("make the broker read only");
        let cfg = BrokerAdmin::get_broker_config(&admin, addr())
            .await
            .expect("broker config");
        let value = |k: &str| {
            cfg.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(value("brokerPermission").as_deref(), Some("4"));
        assert_eq!(perm().await, 4, "t11: the routes say read only");
        let refused = send_one(&producer, TOPIC, &spec("t11-ro", 0)).await;
        assert!(
            refused.is_err(),
            "t11: a send to a read-only broker: {refused:?}"
        );
        set_perm("6").await.expect("make the broker writable again");
        assert_eq!(perm().await, 6, "t11: the routes say read and write again");
        send_one(&producer, TOPIC, &spec("t11-rw", 0))
            .await
            .expect("a send once writable again");
        let fixed = BrokerAdmin::update_broker_config(
            &admin,
            addr(),
            HashMap::from([("listenPort".into(), "1".into())]),
        )
        .await;
        assert!(fixed.is_err(), "t11: listenPort cannot change at runtime");

        // NameServer KV config, listed by namespace.
        RouteAdmin::create_and_update_kv_config(&admin, "T11NS".into(), "k".into(), "v".into())
            .await
            .expect("put kv");
        let kvs = RouteAdmin::get_kv_list_by_namespace(&admin, "T11NS".into())
            .await
            .expect("kv list")
            .table;
        assert!(
            kvs.iter()
                .any(|(k, v)| k.as_str() == "k" && v.as_str() == "v"),
            "t11: {kvs:?}"
        );

        // updateSubGroup, read back one and all, deleteSubGroup.
        const NEW_GROUP: &str = "rc_e2e_t11_admin_cg";
        let mut g = SubscriptionGroupConfig::new(NEW_GROUP.into());
        g.set_retry_max_times(5);
        g.set_consume_enable(false);
        ConsumerAdmin::create_and_update_subscription_group_config(&admin, addr(), g)
            .await
            .expect("create the group");
        let back =
            ConsumerAdmin::examine_subscription_group_config(&admin, addr(), NEW_GROUP.into())
                .await
                .expect("read the group back");
        assert_eq!((back.retry_max_times(), back.consume_enable()), (5, false));
        let all = ConsumerAdmin::get_all_subscription_group(&admin, addr(), 5_000)
            .await
            .expect("all groups");
        let names: HashSet<String> = all
            .get_subscription_group_table()
            .keys()
            .map(|k| k.to_string())
            .collect();
        assert!(
            names.contains(NEW_GROUP) && names.contains(GROUP),
            "t11: {names:?}"
        );
        ConsumerAdmin::delete_subscription_group(&admin, addr(), NEW_GROUP.into(), Some(true))
            .await
            .expect("delete the group");
        let deleted =
            ConsumerAdmin::examine_subscription_group_config(&admin, addr(), NEW_GROUP.into())
                .await;
        assert!(deleted.is_err(), "t11: {deleted:?}");
        let bad = SubscriptionGroupConfig::new("bad group".into());
        let refused =
            ConsumerAdmin::create_and_update_subscription_group_config(&admin, addr(), bad).await;
        assert!(
            refused.is_err(),
            "t11: a group name with a space is refused"
        );

        let mut admin = admin;
        admin.shutdown().await;
        shutdown_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t11 timed out");
}

/// `mqadmin resetOffsetByTime` while the group's consumer runs (INVOKE_BROKER_TO_RESET_OFFSET,
/// then RESET_CONSUMER_CLIENT_OFFSET to the member): resetting to before the first send makes
/// the running consumer receive every message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_reset_offset_by_time_replays_to_a_running_consumer() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(150), async {
        const TOPIC: &str = "RcE2eT12Topic";
        const GROUP: &str = "rc_e2e_t12_cg";
        const N: usize = 40;
        let store = common::temp_store();
        let mut broker = start_broker(store.path());
        let env = ClientEnv::new("t12");
        let started_ms = now_ms();
        let producer = Arc::new(env.producer(&broker.namesrv_addr, "rc_e2e_t12_pg", 0).await);
        let sent = send_all(
            &producer,
            TOPIC,
            (0..N).map(|i| spec("t12", i)).collect(),
            2,
        )
        .await;
        let (received, consumer) = env
            .consume_all(
                &broker.namesrv_addr,
                GROUP,
                TOPIC,
                "*",
                sent.keys().cloned(),
                Duration::from_secs(60),
                "t12",
            )
            .await;
        let admin = env.admin(&broker.namesrv_addr).await;

        // The reset needs the group's committed offset on every queue; the client commits
        // after consuming.
        wait_backlog_zero(&admin, GROUP, TOPIC, &broker.broker_addr, "t12").await;
        assert_eq!(
            received.deliveries(),
            N,
            "t12: each message once before the reset"
        );

        let table = OffsetAdmin::reset_offset_by_timestamp(
            &admin,
            None,
            TOPIC.into(),
            GROUP.into(),
            started_ms as u64,
            true,
        )
        .await
        .expect("reset offsets");
        assert!(!table.is_empty(), "t12: the reset names the topic's queues");
        assert!(
            table.values().all(|o| *o == 0),
            "t12: every queue goes back to its first message: {table:?}"
        );
        received
            .wait_deliveries(2 * N, Duration::from_secs(90), "t12 replay")
            .await;
        let counts = received.counts();
        for id in sent.keys() {
            assert!(
                counts.get(id).copied().unwrap_or(0) >= 2,
                "t12: {id} was not replayed: {counts:?}"
            );
        }

        let mut admin = admin;
        admin.shutdown().await;
        shutdown_consumer(consumer).await;
        shutdown_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t12 timed out");
}

/// The outcome a test transaction's local step reports, from the number in its body.
fn tx_outcome(body: &[u8]) -> LocalTransactionState {
    let n: usize = String::from_utf8_lossy(body)
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    match n % 3 {
        0 => LocalTransactionState::CommitMessage,
        1 => LocalTransactionState::RollbackMessage,
        _ => LocalTransactionState::Unknown,
    }
}

/// Commits, rolls back or leaves unknown by the body's number; every check commits and is
/// recorded by UNIQ_KEY.
struct TxListener {
    checked: Arc<Mutex<HashSet<String>>>,
}

impl TransactionListener for TxListener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        tx_outcome(msg.get_body().map(|b| &b[..]).unwrap_or_default())
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        if let Some(u) = msg.message.property("UNIQ_KEY") {
            self.checked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(u.to_string());
        }
        LocalTransactionState::CommitMessage
    }
}

/// Transactional messages with the real TransactionMQProducer: a committed message is delivered,
/// a rolled-back one never is, and one left unknown is delivered only after the broker asked the
/// producer (CHECK_TRANSACTION_STATE) and it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_transactions_commit_rollback_and_check() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(150), async {
        const TOPIC: &str = "RcE2eT13Topic";
        const N: usize = 30;
        let store = common::temp_store();
        let mut broker = start_broker_with(
            store.path(),
            &[
                ("transactionCheckInterval", "1000"),
                ("transactionTimeOut", "1000"),
            ],
        );
        let env = ClientEnv::new("t13");
        let checked = Arc::new(Mutex::new(HashSet::new()));
        let mut producer = TransactionMQProducer::builder(Arc::clone(&env.runtime))
            .client_config(env.client_config(&broker.namesrv_addr, "txproducer"))
            .producer_group("rc_e2e_t13_pg")
            .send_msg_timeout(10_000)
            .transaction_listener(TxListener {
                checked: Arc::clone(&checked),
            })
            .build();
        producer.start().await.expect("transaction producer start");

        let mut by_outcome: HashMap<&str, Vec<String>> = HashMap::new();
        for i in 0..N {
            let s = spec("t13", i);
            let r = producer
                .send_message_in_transaction::<(), _>(build_message(TOPIC, &s), None)
                .await
                .expect("transactional send");
            let sent = r.send_result.expect("a send result");
            assert_eq!(sent.send_status, SendStatus::SendOk, "t13: {sent:?}");
            let id = sent.msg_id.expect("a msgId").to_string();
            let kind = match tx_outcome(s.body.as_bytes()) {
                LocalTransactionState::CommitMessage => "commit",
                LocalTransactionState::RollbackMessage => "rollback",
                _ => "unknown",
            };
            by_outcome.entry(kind).or_default().push(id);
        }
        let expected: Vec<String> = ["commit", "unknown"]
            .iter()
            .flat_map(|k| by_outcome[k].clone())
            .collect();
        let (received, consumer) = env
            .consume_all(
                &broker.namesrv_addr,
                "rc_e2e_t13_cg",
                TOPIC,
                "*",
                expected.iter().cloned(),
                Duration::from_secs(90),
                "t13",
            )
            .await;
        let counts = received.counts();
        for id in &by_outcome["rollback"] {
            assert!(
                !counts.contains_key(id),
                "t13: rolled back {id} was delivered"
            );
        }
        let checked = checked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in &by_outcome["unknown"] {
            assert!(
                checked.contains(id),
                "t13: {id} was delivered without the producer being asked: {checked:?}"
            );
        }
        assert_eq!(
            received.deliveries(),
            expected.len(),
            "t13: each committed message once"
        );

        shutdown_consumer(consumer).await;
        producer.shutdown().await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t13 timed out");
}

/// SQL92 filtering with the real client (`MessageSelector::by_sql`, CHECK_CLIENT_CONFIG at
/// start): a push consumer gets exactly the messages whose user properties satisfy the
/// expression, numbers compared as numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sql92_filter_delivers_only_matching_messages() {
    let _serial = SERIAL.lock().await;
    timeout(Duration::from_secs(120), async {
        const TOPIC: &str = "RcE2eT14Topic";
        const N: usize = 40;
        let store = common::temp_store();
        let mut broker = start_broker_with(store.path(), &[("enablePropertyFilter", "true")]);
        let env = ClientEnv::new("t14");
        let producer = env.producer(&broker.namesrv_addr, "rc_e2e_t14_pg", 0).await;
        let mut wanted = Vec::new();
        let mut unwanted = Vec::new();
        for i in 0..N {
            let s = spec("t14", i);
            let region = if i % 2 == 0 { "east" } else { "west" };
            let msg = Message::builder()
                .topic(TOPIC)
                .tags(s.tag.as_str())
                .body_slice(s.body.as_bytes())
                .raw_property("region", region)
                .and_then(|b| b.raw_property("price", i.to_string()))
                .expect("user properties")
                .build_unchecked();
            let r = producer
                .send(msg)
                .await
                .expect("send")
                .expect("a send result");
            check_send_result(&r);
            let id = r.msg_id.expect("a msgId").to_string();
            if region == "east" && i > 10 {
                wanted.push(id);
            } else {
                unwanted.push(id);
            }
        }
        let received = Received::new(wanted.iter().cloned());
        let mut consumer = env.push_consumer(&broker.namesrv_addr, "rc_e2e_t14_cg", None);
        consumer
            .subscribe_with_selector(
                TOPIC,
                Some(MessageSelector::by_sql("region = 'east' AND price > 10")),
            )
            .await
            .expect("subscribe by SQL92");
        consumer.register_message_listener_concurrently(Collector::new(0, &received));
        consumer.start().await.expect("consumer start");
        received
            .wait_all_expected(Duration::from_secs(60), "t14")
            .await;
        // Once the group has committed to the end, everything it was given has been consumed.
        let admin = env.admin(&broker.namesrv_addr).await;
        wait_backlog_zero(&admin, "rc_e2e_t14_cg", TOPIC, &broker.broker_addr, "t14").await;
        let counts = received.counts();
        for id in &unwanted {
            assert!(
                !counts.contains_key(id),
                "t14: {id} does not match but was delivered"
            );
        }
        assert_eq!(wanted.len(), 14);
        assert_eq!(received.deliveries(), wanted.len(), "t14: each match once");

        let mut admin = admin;
        admin.shutdown().await;
        shutdown_consumer(consumer).await;
        shutdown_owned_producer(producer).await;
        env.shutdown().await;
        tokio::task::block_in_place(|| broker.stop_clean());
    })
    .await
    .expect("t14 timed out");
}
