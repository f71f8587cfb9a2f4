//! Cross-shard appends: shard 0 sends append requests over the mesh to shard 1, which owns the
//! log; they land on shard 1's log, in the order shard 0 sent them.

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use common::{body, message};
use rocketcore_shards::message::record::MessageInput;
use rocketcore_shards::placement::{log_dir, shard_of_log};
use rocketcore_shards::runtime::{run_pool, RuntimeConfig, Shard};
use rocketcore_shards::{FlushMode, Log};

const TOPIC: &str = "X";
const OWNER: usize = 1;
const MESSAGES: usize = 200;

/// (queue offset, physical offset) of an append, or the error's text.
type PutReply = Result<(u64, u64), String>;

enum Request {
    Append(MessageInput, async_channel::Sender<PutReply>),
    ReadAll(async_channel::Sender<Vec<Vec<u8>>>),
}

/// The owner: opens its log, serves requests one at a time in arrival order, stops on request.
async fn owner(shard: Rc<Shard<Request>>, root: PathBuf) -> Result<usize, String> {
    let log_id = shard.id() as u16;
    assert_eq!(shard_of_log(log_id, shard.count()), shard.id());
    let mut cfg = common::config(&log_dir(&root, log_id), FlushMode::Sync);
    cfg.log_id = log_id;
    let log = Log::open(cfg).await.map_err(|e| e.to_string())?;
    // The mesh delivers in order; this queue keeps that order into the single worker. It is
    // bounded by the sender, which has at most MESSAGES requests in flight.
    let (tx, rx) = async_channel::unbounded::<Request>();
    shard.serve(move |req| {
        let _ = tx.try_send(req);
    });
    let served = Rc::new(Cell::new(0usize));
    let (worker_log, worker_served) = (log.clone(), served.clone());
    rocketcore_shards::runtime::spawn(async move {
        while let Ok(req) = rx.recv().await {
            match req {
                Request::Append(m, reply) => {
                    let r = worker_log
                        .put(&[m], true)
                        .await
                        .map(|r| (r.appended[0].0, r.appended[0].1));
                    let _ = reply.send(r.map_err(|e| e.to_string())).await;
                    worker_served.set(worker_served.get() + 1);
                }
                Request::ReadAll(reply) => {
                    let _ = reply.send(common::bodies(&worker_log, TOPIC).await).await;
                }
            }
        }
    });
    shard.shutdown_requested().await;
    log.stop().await.map_err(|e| e.to_string())?;
    Ok(served.get())
}

/// Tells the test thread the sender is finished, also when it panics.
struct DoneGuard(async_channel::Sender<()>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// The sender: pipelines every append to the owner, then checks replies and the stored order.
async fn sender(shard: Rc<Shard<Request>>) -> Result<usize, String> {
    let mut replies = Vec::new();
    for i in 0..MESSAGES {
        let (tx, rx) = async_channel::bounded(1);
        let m = message(TOPIC, 0, &body(i), "");
        shard
            .send_to(OWNER, Request::Append(m, tx))
            .await
            .map_err(|_| "mesh closed".to_string())?;
        replies.push(rx);
    }
    for (i, rx) in replies.into_iter().enumerate() {
        let (qoff, phys) = rx.recv().await.map_err(|e| e.to_string())??;
        if qoff != i as u64 {
            return Err(format!("append {i} landed at queue offset {qoff}"));
        }
        if phys >> 48 != OWNER as u64 {
            return Err(format!(
                "append {i} has physical offset {phys:#x}, outside log {OWNER}"
            ));
        }
    }
    let (tx, rx) = async_channel::bounded(1);
    shard
        .send_to(OWNER, Request::ReadAll(tx))
        .await
        .map_err(|_| "mesh closed".to_string())?;
    let stored = rx.recv().await.map_err(|e| e.to_string())?;
    let want: Vec<Vec<u8>> = (0..MESSAGES).map(body).collect();
    if stored != want {
        return Err(format!(
            "stored {} bodies, not the {} sent in order",
            stored.len(),
            want.len()
        ));
    }
    Ok(stored.len())
}

#[test]
fn given_appends_sent_from_shard_a_when_shard_b_owns_the_queue_should_land_on_b_in_order() {
    let root = tempfile::tempdir().expect("tempdir");
    let root_path = root.path().to_path_buf();
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    let config = RuntimeConfig {
        shards: 2,
        pin: false,
        io_memory_bytes: 256 * 1024,
        ..RuntimeConfig::default()
    };
    let (stop, join) = run_pool(&config, move |shard: Rc<Shard<Request>>| {
        let root = root_path.clone();
        let done = done_tx.clone();
        async move {
            if shard.id() == OWNER {
                owner(shard, root).await
            } else {
                let _done = DoneGuard(done);
                sender(shard).await
            }
        }
    })
    .expect("start pool");
    done_rx
        .recv_blocking()
        .expect("the sender shard reports when it is done");
    stop.stop();
    let results = join.join().expect("shards joined");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], Ok(MESSAGES), "sender");
    assert_eq!(results[1], Ok(MESSAGES), "owner");
    // And the data is on disk in the owner's log, readable by a fresh open.
    let dir = log_dir(root.path(), OWNER as u16);
    let stored = common::run(move || async move {
        let mut cfg = common::config(&dir, FlushMode::Sync);
        cfg.log_id = OWNER as u16;
        let log = Log::open(cfg).await.expect("reopen owner log");
        let b = common::bodies(&log, TOPIC).await;
        let first = log.entry(TOPIC, 0, 0).map(|e| e.phys >> 48);
        log.stop().await.expect("stop");
        (b, first)
    });
    assert_eq!(stored.0, (0..MESSAGES).map(body).collect::<Vec<_>>());
    assert_eq!(stored.1, Some(OWNER as u64));
}
