//! Faults on the write path: a seeded injector makes DMA writes fail with EIO or come up short,
//! and fdatasync fail with EIO (see the fault model in src/recovery/mod.rs).
//!
//! Proven for several seeds, with concurrent SYNC_FLUSH appenders:
//! - a put that returned Ok has its bytes in the segment file at that moment (the write covering
//!   it completed and the fdatasync after it returned OK), and survives a reopen without faults;
//! - a put whose flush failed returns an error (never Ok), and the store keeps serving reads.

mod common;

use std::cell::RefCell;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use common::{config, message, run};
use rocketcore_shards::message::record::decode;
use rocketcore_shards::runtime::dma::FaultInjector;
use rocketcore_shards::{FlushMode, Log, PutStatus, StoreError};

const TOPIC: &str = "F";
const APPENDERS: usize = 4;
const PUTS_PER_APPENDER: usize = 60;

fn fault_body(appender: usize, i: usize) -> Vec<u8> {
    let mut b = format!("a{appender}-{i:05}|").into_bytes();
    b.resize(
        b.len() + (i * 37 + appender * 11) % 700,
        b'a' + (i % 26) as u8,
    );
    b
}

/// What the appenders saw: bodies acknowledged as durable, and how many puts failed.
#[derive(Default)]
struct Outcome {
    acked: Vec<Vec<u8>>,
    failed: usize,
}

/// The bytes of `[phys, phys+size)` as the segment file holds them right now.
fn bytes_on_disk(dir: &Path, phys: u64, size: u32) -> Vec<u8> {
    let start = phys / common::SEGMENT * common::SEGMENT;
    let f = std::fs::File::open(common::segment_path(dir, start)).expect("open segment");
    let mut buf = vec![0u8; size as usize];
    f.read_exact_at(&mut buf, phys - start)
        .expect("read segment");
    buf
}

async fn appender(log: Rc<Log>, dir: std::path::PathBuf, id: usize, outcome: Rc<RefCell<Outcome>>) {
    for i in 0..PUTS_PER_APPENDER {
        let body = fault_body(id, i);
        match log.put(&[message(TOPIC, 0, &body, "")], true).await {
            Ok(r) => {
                let (_, phys, size) = r.appended[0];
                let stored = log
                    .read_record(phys, size)
                    .await
                    .expect("read back an acked record");
                assert_eq!(
                    bytes_on_disk(&dir, phys, size),
                    stored.to_vec(),
                    "acked record {id}/{i} is not on disk"
                );
                outcome.borrow_mut().acked.push(body);
            }
            Err(StoreError::FlushFailed(_)) => outcome.borrow_mut().failed += 1,
            Err(e) => panic!("unexpected error from put: {e}"),
        }
    }
}

/// Reads the whole queue while faults are injected; every record found must decode.
async fn reader(log: Rc<Log>) -> usize {
    let mut seen = 0;
    for _ in 0..50 {
        let mut off = log.min_offset(TOPIC, 0);
        loop {
            let r = log.get(TOPIC, 0, off, 32, &|_| true).await;
            if r.records.is_empty() {
                break;
            }
            for rec in &r.records {
                let d = decode(rec).expect("a record read during faults decodes");
                assert!(d.body.starts_with(b"a"), "unexpected body");
            }
            seen += r.records.len();
            off = r.next_begin_offset;
        }
        futures_lite::future::yield_now().await;
    }
    seen
}

fn run_with_faults(dir: &Path, seed: u64) -> (Outcome, u64) {
    let dir = dir.to_path_buf();
    run(move || async move {
        let faults = Rc::new(FaultInjector::new(seed, 60, 60, 60));
        let mut cfg = config(&dir, FlushMode::Sync);
        cfg.faults = Some(faults.clone());
        let log = Log::open(cfg).await.expect("open with faults");
        let outcome = Rc::new(RefCell::new(Outcome::default()));
        let mut tasks = Vec::new();
        for id in 0..APPENDERS {
            tasks.push(rocketcore_shards::runtime::spawn_joinable(appender(
                log.clone(),
                dir.clone(),
                id,
                outcome.clone(),
            )));
        }
        let read = rocketcore_shards::runtime::spawn_joinable(reader(log.clone()));
        for t in tasks {
            t.await.expect("appender finished");
        }
        let seen = read.await.expect("reader finished");
        assert!(seen > 0, "the reader saw nothing");
        // A clean stop may itself hit a fault; what was acked is durable regardless.
        let _ = log.stop().await;
        let injected = faults.injected();
        (
            Rc::try_unwrap(outcome)
                .ok()
                .expect("appenders done")
                .into_inner(),
            injected,
        )
    })
}

fn reopen_bodies(dir: &Path) -> Vec<Vec<u8>> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("reopen without faults");
        let b = common::bodies(&log, TOPIC).await;
        log.stop().await.expect("stop");
        b
    })
}

#[test]
fn given_injected_write_and_sync_faults_when_appending_with_sync_flush_should_ack_only_durable_records(
) {
    let mut total_failed = 0;
    for seed in [1u64, 7, 42, 0xDEAD_BEEF, 2024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (outcome, injected) = run_with_faults(dir.path(), seed);
        assert!(injected > 0, "seed {seed}: no fault was injected");
        total_failed += outcome.failed;
        let stored = reopen_bodies(dir.path());
        // Every acked record survives; failed ones may or may not (their retry may have landed).
        let stored_set: std::collections::HashSet<&Vec<u8>> = stored.iter().collect();
        for body in &outcome.acked {
            assert!(
                stored_set.contains(body),
                "seed {seed}: an acked record is missing after reopen"
            );
        }
        assert_eq!(
            stored_set.len(),
            stored.len(),
            "seed {seed}: a record is stored twice"
        );
        // Each appender's records are stored in the order it put them.
        for id in 0..APPENDERS {
            let prefix = format!("a{id}-");
            let mine: Vec<&Vec<u8>> = stored
                .iter()
                .filter(|b| b.starts_with(prefix.as_bytes()))
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: appender {id} out of order"
            );
        }
        assert!(outcome.acked.len() + outcome.failed == APPENDERS * PUTS_PER_APPENDER);
    }
    assert!(
        total_failed > 0,
        "no put failed under faults: the test proves nothing"
    );
}

#[test]
fn given_every_fdatasync_failing_when_appending_with_sync_flush_should_never_ack_and_keep_reads_working(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run(move || async move {
        let mut cfg = config(&d, FlushMode::Sync);
        cfg.faults = Some(Rc::new(FaultInjector::new(3, 0, 0, 1000)));
        let log = Log::open(cfg).await.expect("open");
        for i in 0..5 {
            let err = log
                .put(&[message(TOPIC, 0, &fault_body(0, i), "")], true)
                .await
                .err();
            assert!(
                matches!(err, Some(StoreError::FlushFailed(_))),
                "put {i} must fail, got {err:?}"
            );
        }
        // Reads are served from memory while the disk refuses to sync.
        let got = common::bodies(&log, TOPIC).await;
        assert_eq!(got, (0..5).map(|i| fault_body(0, i)).collect::<Vec<_>>());
        let _ = log.stop().await;
    });
}

#[test]
fn given_a_stalled_fdatasync_when_appending_with_sync_flush_should_answer_flush_timeout_then_recover(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run(move || async move {
        let mut cfg = config(&d, FlushMode::Sync);
        // Wide enough that an ordinary write + flush on a noisy machine stays inside it.
        cfg.sync_flush_timeout = std::time::Duration::from_millis(500);
        let faults = Rc::new(FaultInjector::new(5, 0, 0, 0));
        cfg.faults = Some(faults.clone());
        let log = Log::open(cfg).await.expect("open");
        log.put(&[message(TOPIC, 0, b"before", "")], true)
            .await
            .expect("put before the stall");
        // Each flush now takes 6x the timeout: the put is stored but not yet durable.
        faults
            .sync_stall
            .set(std::time::Duration::from_millis(3_000));
        let r = log
            .put(&[message(TOPIC, 0, b"stalled", "")], true)
            .await
            .expect("a stalled flush is a timeout status, not an error");
        assert_eq!(r.status, PutStatus::FlushDiskTimeout);
        faults.sync_stall.set(std::time::Duration::ZERO);
        let cl = log.commitlog();
        let (end, since) = (cl.write_pos(), cl.durability.attempt_seq());
        cl.durability
            .wait(end, since, std::time::Duration::from_secs(30))
            .await
            .expect("the stalled flush completes");
        // Once the device answers again, later puts are acknowledged as durable, and the
        // timed-out message is stored in order.
        let r = log
            .put(&[message(TOPIC, 0, b"after", "")], true)
            .await
            .expect("put after the stall");
        assert_eq!(r.status, PutStatus::Ok);
        let got = common::bodies(&log, TOPIC).await;
        assert_eq!(
            got,
            vec![b"before".to_vec(), b"stalled".to_vec(), b"after".to_vec()]
        );
        let _ = log.stop().await;
    });
}
