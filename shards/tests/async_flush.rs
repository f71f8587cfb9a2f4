//! ASYNC_FLUSH: a caller that puts in a loop never waits for the disk, so the store itself must
//! let the writer start on a full buffer while the loop goes on (filling and writing overlap).

mod common;

use common::{config, message, run};
use rocketcore_shards::runtime::{run_in, Lane};
use rocketcore_shards::FlushMode;

#[test]
fn given_a_put_loop_with_async_flush_when_the_buffer_passes_the_threshold_should_start_a_write_before_the_loop_ends(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run(move || async move {
        let mut cfg = config(&d, FlushMode::Async);
        cfg.segment_bytes = 64 << 20;
        cfg.max_pending_bytes = 4 << 20; // flush threshold: a quarter, 1 MiB
        cfg.flush_interval = std::time::Duration::from_secs(3600);
        let log = rocketcore_shards::Log::open(cfg).await.expect("open");
        let body = vec![b'x'; 1000];
        let log2 = log.clone();
        // Puts run in the Writes lane, as the broker's do; the loop awaits nothing but put.
        let rounds_during_loop = run_in(Lane::Writes, async move {
            for _ in 0..3000 {
                log2.put(&[message("T", 0, &body, "")], false)
                    .await
                    .expect("put");
            }
            log2.commitlog().flush_stats().round_bytes.len()
        })
        .await
        .expect("lane task");
        assert!(
            rounds_during_loop >= 1,
            "the writer took nothing while 3 MB were put: filling and writing do not overlap"
        );
        let _ = log.stop().await;
        assert_eq!(common::bodies(&log, "T").await.len(), 3000);
    });
}
