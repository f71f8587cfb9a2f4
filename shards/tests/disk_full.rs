//! Disk guard: with a small configured capacity (`limits.disk_capacity_bytes`) a store refuses
//! appends above `diskMaxUsedSpaceRatio` with DiskFull, keeps serving reads, and accepts appends
//! again once retention has deleted old segments; queue minimums move past the deleted data.

mod common;

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use common::{config, message, run, SEGMENT};
use rocketcore_shards::message::record::decode;
use rocketcore_shards::retention::{run_once, RetentionPolicy};
use rocketcore_shards::{FlushMode, GetStatus, Log, LogConfig, StoreError};

const TOPIC: &str = "D";
/// Eight 64 KiB segments of capacity, half of it usable: appends stop in the fifth segment.
const CAPACITY: u64 = 8 * SEGMENT;
const MAX_USED_PERCENT: u32 = 50;
const BATCH: usize = 8;

fn small_disk(dir: &std::path::Path) -> LogConfig {
    let mut c = config(dir, FlushMode::Sync);
    c.limits.disk_capacity_bytes = Some(CAPACITY);
    c.limits.disk_max_used_space_ratio = MAX_USED_PERCENT;
    c
}

fn full_body(i: usize) -> Vec<u8> {
    let mut b = format!("disk-{i:06}|").into_bytes();
    b.resize(1024, b'0' + (i % 10) as u8);
    b
}

fn batch(from: usize) -> Vec<rocketcore_shards::message::record::MessageInput> {
    (from..from + BATCH)
        .map(|i| message(TOPIC, 0, &full_body(i), &format!("KEYS\u{1}key{i}")))
        .collect()
}

/// Appends batches until the store says DiskFull; returns how many messages were stored.
async fn fill(log: &Log, from: usize) -> usize {
    let mut n = from;
    loop {
        match log.put(&batch(n), true).await {
            Ok(_) => n += BATCH,
            Err(StoreError::DiskFull {
                used_ratio,
                limit_percent,
            }) => {
                assert!(used_ratio > limit_percent as f64);
                return n;
            }
            Err(e) => panic!("unexpected error while filling: {e}"),
        }
        assert!(n < 10_000, "the store never became full");
    }
}

async fn body_at(log: &Log, offset: u64) -> Vec<u8> {
    let r = log.get(TOPIC, 0, offset, 1, &|_| true).await;
    assert_eq!(r.status, GetStatus::Found, "offset {offset}");
    decode(&r.records[0]).expect("decodes").body.to_vec()
}

async fn assert_reads_work(log: &Log, stored: usize) {
    let min = log.min_offset(TOPIC, 0);
    assert_eq!(log.max_offset(TOPIC, 0), stored as u64);
    for off in [min, (min + stored as u64) / 2, stored as u64 - 1] {
        assert_eq!(body_at(log, off).await, full_body(off as usize));
    }
}

#[test]
fn given_a_store_above_its_used_ratio_when_appending_should_refuse_with_disk_full_and_keep_serving_reads(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(small_disk(&d)).await.expect("open");
        let stored = fill(&log, 0).await;
        assert!(stored > 100, "only {stored} messages fit");
        // Refused again, the refusal names the ratio, and nothing was appended.
        let err = log.put(&batch(stored), true).await.expect_err("still full");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_reads_work(&log, stored).await;
        log.stop().await.expect("stop");
        // The guard holds across a restart too.
        let log = Log::open(small_disk(&d)).await.expect("reopen");
        assert!(matches!(
            log.put(&batch(stored), true).await,
            Err(StoreError::DiskFull { .. })
        ));
        assert_reads_work(&log, stored).await;
        log.stop().await.expect("stop");
    });
}

#[test]
fn given_a_full_store_when_retention_forces_out_the_oldest_segment_should_accept_appends_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run(move || async move {
        let log: Rc<Log> = Log::open(small_disk(&d)).await.expect("open");
        let stored = fill(&log, 0).await;
        // Nothing has expired, but above force_ratio the oldest segment goes anyway.
        let policy = RetentionPolicy {
            force_ratio: 55,
            ..RetentionPolicy::default()
        };
        let deleted = run_once(&log, &policy, SystemTime::now())
            .await
            .expect("retention");
        assert_eq!(
            deleted, 1,
            "exactly the oldest segment goes to get below 55%"
        );
        assert!(
            !common::segment_path(&d, 0).exists(),
            "segment 0 was not deleted"
        );
        let min = log.min_offset(TOPIC, 0);
        assert!(min > 0, "the queue minimum did not move");
        let first_kept = log.entry(TOPIC, 0, min).expect("entry at min");
        assert!(
            first_kept.phys >= SEGMENT,
            "the new minimum points into the deleted segment"
        );
        // Deleted data is gone: offsets below the minimum, keys and raw reads say so.
        assert_eq!(
            log.get(TOPIC, 0, 0, 1, &|_| true).await.status,
            GetStatus::OffsetTooSmall
        );
        assert!(log
            .query_by_key(TOPIC, "key0", 8, 0, i64::MAX)
            .await
            .is_empty());
        assert!(log.read_record(0, 100).await.is_err());
        assert_reads_work(&log, stored).await;
        // Appends work again, and fill the freed segment before the guard trips once more.
        let more = fill(&log, stored).await;
        assert!(
            more > stored,
            "no append was accepted after retention freed space"
        );
        assert_reads_work(&log, more).await;
        log.stop().await.expect("stop");
    });
}

#[test]
fn given_expired_segments_in_the_delete_window_when_retention_runs_should_free_them_and_survive_a_restart(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run(move || async move {
        let log = Log::open(small_disk(&d)).await.expect("open");
        let stored = fill(&log, 0).await;
        // fileReservedTime 0: every closed segment has expired; every hour is a deleteWhen hour.
        let policy = RetentionPolicy {
            file_reserved_time: Duration::ZERO,
            delete_when: (0..24).collect(),
            ..RetentionPolicy::default()
        };
        let deleted = run_once(&log, &policy, SystemTime::now())
            .await
            .expect("retention");
        assert!(deleted >= 4, "only {deleted} segments deleted");
        let segments = log.commitlog().segment_starts().expect("ls");
        assert_eq!(
            segments.len(),
            1,
            "only the segment being written stays: {segments:?}"
        );
        let min = log.min_offset(TOPIC, 0);
        assert!(min > 0 && min < stored as u64);
        assert_eq!(
            log.get(TOPIC, 0, min - 1, 1, &|_| true).await.status,
            GetStatus::OffsetTooSmall
        );
        log.put(&batch(stored), true)
            .await
            .expect("append after retention");
        log.stop().await.expect("stop");
        // After a restart the minimum stays where retention put it.
        let log = Log::open(small_disk(&d)).await.expect("reopen");
        assert_eq!(log.min_offset(TOPIC, 0), min);
        assert_eq!(
            log.get(TOPIC, 0, 0, 1, &|_| true).await.status,
            GetStatus::OffsetTooSmall
        );
        assert_reads_work(&log, stored + BATCH).await;
        log.stop().await.expect("stop");
    });
}
