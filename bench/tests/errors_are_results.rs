//! Non-OK answers and timeouts are counted by code; such a run says so on its last line and exits non-zero.

mod common;

use common::{FakeBroker, Faults};
use rocketcore::remoting::codes::response;
use rocketcore_bench::produce::{self, ProduceOptions, Rate};
use rocketcore_bench::route::QueueSet;
use std::time::Duration;

fn targets(b: &FakeBroker) -> Vec<QueueSet> {
    vec![QueueSet {
        topic: "BenchTopic".into(),
        broker_name: "fake-a".into(),
        addr: b.addr.clone(),
        queue_ids: vec![0],
    }]
}

#[test]
fn given_busy_answers_when_producing_then_they_are_counted_by_code() {
    let broker = FakeBroker::start(Faults {
        stall_at: None,
        fail_every: Some((10, response::SYSTEM_BUSY)),
        ..Faults::default()
    });
    let opts = ProduceOptions {
        rate: Rate::Max,
        count: Some(200),
        duration: None,
        ..ProduceOptions::default()
    };
    let out = produce::run(&targets(&broker), &opts).expect("runs");
    assert_eq!(
        out.stats.errors.get("2 SYSTEM_BUSY"),
        Some(&20),
        "{:?}",
        out.stats.errors
    );
    assert_eq!(out.stats.messages, 180);
}

#[test]
fn given_a_stall_longer_than_the_timeout_then_it_counts_as_a_timeout() {
    let broker = FakeBroker::start(Faults {
        stall_at: Some((5, Duration::from_millis(600))),
        fail_every: None,
        ..Faults::default()
    });
    let opts = ProduceOptions {
        rate: Rate::PerSec(200.0),
        inflight: 4,
        duration: Some(Duration::from_millis(300)),
        timeout: Duration::from_millis(200),
        ..ProduceOptions::default()
    };
    let out = produce::run(&targets(&broker), &opts).expect("runs");
    assert!(
        out.stats.errors.get("timeout").copied().unwrap_or(0) >= 1,
        "{:?}",
        out.stats.errors
    );
}

#[test]
fn given_errors_when_run_from_the_command_line_then_the_last_line_says_failed_and_it_exits_1() {
    let broker = FakeBroker::start(Faults {
        stall_at: None,
        fail_every: Some((4, response::FLUSH_DISK_TIMEOUT)),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "rocketcore-bench",
        "produce",
        "--namesrv",
        &broker.addr,
        "--topic",
        "ErrTopic",
        "--rate",
        "max",
        "--count",
        "40",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap_or_default(),
        "--label",
        "errs",
    ];
    let code = rocketcore_bench::cli::main_with(args.iter().map(|s| s.to_string()).collect());
    assert_eq!(code, 1);
    let json = std::fs::read_to_string(dir.path().join("errs.json")).expect("summary written");
    let summary = rocketcore_bench::report::Summary::from_json(&json).expect("parses");
    assert_eq!(summary.errors.get("10 FLUSH_DISK_TIMEOUT"), Some(&10));
    let last = rocketcore_bench::report::console(&summary)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("FAILED: 10 errors"), "{last}");
}
