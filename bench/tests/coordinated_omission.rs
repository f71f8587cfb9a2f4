//! A server that stalls once for a known time: latencies measured from the intended send time show the stall
//! across every message it delayed; latencies measured from the actual write show it on one message only.

mod common;

use common::{FakeBroker, Faults};
use rocketcore_bench::hist::Percentiles;
use rocketcore_bench::produce::{self, ProduceOptions, Rate};
use rocketcore_bench::route::QueueSet;
use std::time::Duration;

const STALL: Duration = Duration::from_millis(300);

fn run_against_stall(rate: Rate) -> (Percentiles, Percentiles, u64) {
    let broker = FakeBroker::start(Faults {
        stall_at: Some((200, STALL)),
        fail_every: None,
        ..Faults::default()
    });
    let targets = vec![QueueSet {
        topic: "CoTopic".into(),
        broker_name: "fake-a".into(),
        addr: broker.addr.clone(),
        queue_ids: vec![0, 1],
    }];
    let opts = ProduceOptions {
        rate,
        connections: 1,
        inflight: 1,
        size: rocketcore_bench::util::SizeDist::Fixed(100),
        duration: Some(Duration::from_millis(1500)),
        ..ProduceOptions::default()
    };
    let out = produce::run(&targets, &opts).expect("run completes");
    assert_eq!(out.stats.error_total(), 0, "{:?}", out.stats.errors);
    (
        Percentiles::of(&out.stats.corrected),
        Percentiles::of(&out.stats.uncorrected),
        out.stats.messages,
    )
}

#[test]
fn given_a_server_stall_when_open_loop_then_corrected_percentiles_show_it_and_uncorrected_do_not() {
    let (corrected, uncorrected, messages) = run_against_stall(Rate::PerSec(1000.0));
    let stall_ms = STALL.as_secs_f64() * 1000.0;
    // Open loop sends every intended message, stall or not.
    assert!((1400..=1500).contains(&messages), "sent {messages}");
    // ~300 of ~1500 sends were held back by the stall: 20 % of the distribution sits above 0 ms, up to 300.
    assert!(
        corrected.max_ms >= stall_ms * 0.95,
        "corrected {corrected:?}"
    );
    assert!(
        corrected.p999_ms >= stall_ms * 0.8,
        "corrected {corrected:?}"
    );
    assert!(
        corrected.p99_ms >= stall_ms * 0.7,
        "corrected {corrected:?}"
    );
    assert!(
        corrected.p90_ms >= stall_ms * 0.2,
        "corrected {corrected:?}"
    );
    // From the write time, only the one stalled request was slow: it is the max, and below p99.9.
    assert!(
        uncorrected.max_ms >= stall_ms * 0.95,
        "uncorrected {uncorrected:?}"
    );
    assert!(
        uncorrected.p999_ms < stall_ms / 10.0,
        "uncorrected {uncorrected:?}"
    );
    assert!(
        uncorrected.p99_ms < stall_ms / 10.0,
        "uncorrected {uncorrected:?}"
    );
}

#[test]
fn given_a_server_stall_when_closed_loop_then_the_stall_is_one_sample() {
    // Closed loop is the coordinated-omission trap: it waits with the server, so one stall is one sample.
    let (latency, _, messages) = run_against_stall(Rate::Max);
    assert!(messages > 200, "sent {messages}");
    assert!(latency.max_ms >= STALL.as_secs_f64() * 1000.0 * 0.95);
    assert!(
        latency.p99_ms < STALL.as_secs_f64() * 1000.0 / 10.0,
        "{latency:?}"
    );
}
