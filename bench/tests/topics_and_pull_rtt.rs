//! Several topics in one run (`--topic A,B` and `--topics N`), and the consume run's pull round-trip latency
//! (request written → answer read) against the fake broker.

mod common;

use common::{cli, summary, FakeBroker, Faults};
use rocketcore_bench::report;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn given_three_generated_topics_when_producing_then_every_topic_and_queue_gets_sends_and_consume_reads_them_all(
) {
    let broker = FakeBroker::start(Faults::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    let code = cli(&[
        "produce",
        "--namesrv",
        &broker.addr,
        "--topic",
        "Multi",
        "--topics",
        "3",
        "--queues",
        "3",
        "--rate",
        "max",
        "--count",
        "270",
        "--connections",
        "2",
        "--size",
        "100",
        "--quiet",
        "--out",
        out,
        "--label",
        "p",
    ]);
    assert_eq!(code, 0);
    let topics = ["Multi-0", "Multi-1", "Multi-2"];
    let lookups = broker
        .route_lookups
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let expected: Vec<String> = topics
        .iter()
        .flat_map(|t| [t.to_string(), "TBW102".to_string()])
        .collect();
    assert_eq!(
        lookups, expected,
        "each topic's route, each with its own TBW102 fallback"
    );
    let stored = broker.stored();
    let pairs: BTreeSet<(String, i32)> = stored.keys().cloned().collect();
    let want: BTreeSet<(String, i32)> = topics
        .iter()
        .flat_map(|t| (0..3).map(move |q| (t.to_string(), q)))
        .collect();
    assert_eq!(
        pairs, want,
        "every (topic, queue) pair, and only --queues 3 per topic"
    );
    assert!(stored.values().all(|&n| n > 0), "{stored:?}");
    assert_eq!(stored.values().sum::<usize>(), 270);
    for t in topics {
        let n: usize = stored
            .iter()
            .filter(|((topic, _), _)| topic == t)
            .map(|(_, n)| n)
            .sum();
        assert!((60..=120).contains(&n), "{t} got {n} of 270: not spread");
    }
    let p = summary(dir.path(), "p");
    assert_eq!(p.messages, 270);
    assert_eq!(
        p.settings.get("topics").map(String::as_str),
        Some("Multi-0,Multi-1,Multi-2")
    );
    assert!(
        report::console(&p).contains("topics (3): Multi-0, Multi-1, Multi-2"),
        "{}",
        report::console(&p)
    );

    // The topics now have routes: a comma-separated --topic reads all of them.
    let code = cli(&[
        "consume",
        "--namesrv",
        &broker.addr,
        "--topic",
        "Multi-0, Multi-1,Multi-2",
        "--from",
        "first",
        "--count",
        "270",
        "--duration",
        "10s",
        "--quiet",
        "--out",
        out,
        "--label",
        "c",
    ]);
    assert_eq!(code, 0);
    let c = summary(dir.path(), "c");
    assert_eq!(c.messages, 270, "every message of every topic");
    assert_eq!(c.bytes, 270 * 100);
    assert_eq!(
        c.settings.get("topics").map(String::as_str),
        Some("Multi-0,Multi-1,Multi-2")
    );
}

#[test]
fn given_two_topics_when_running_e2e_then_both_are_sent_to_and_every_message_is_delivered() {
    let broker = FakeBroker::start(Faults::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    let code = cli(&[
        "e2e",
        "--namesrv",
        &broker.addr,
        "--topic",
        "EA,EB",
        "--rate",
        "400",
        "--duration",
        "1s",
        "--quiet",
        "--out",
        out,
        "--label",
        "e",
    ]);
    assert_eq!(code, 0);
    let stored = broker.stored();
    for t in ["EA", "EB"] {
        let n: usize = stored
            .iter()
            .filter(|((topic, _), _)| topic == t)
            .map(|(_, n)| n)
            .sum();
        assert!(n >= 150, "{t} got {n}");
    }
    let s = summary(dir.path(), "e");
    assert_eq!(s.error_total, 0, "{:?}", s.errors);
    assert_eq!(s.messages as usize, stored.values().sum::<usize>());
    assert_eq!(s.settings.get("topics").map(String::as_str), Some("EA,EB"));
    assert!(s.other_latencies.contains_key("pull round trip"));
}

const PULL_DELAY: Duration = Duration::from_millis(80);
const BACKLOG_AGE: Duration = Duration::from_millis(500);

#[test]
fn given_a_backlog_and_slow_pull_answers_when_consuming_then_the_latency_is_the_pull_round_trip() {
    let broker = FakeBroker::start(Faults {
        pull_delay: Some(PULL_DELAY),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    let produce = [
        "produce",
        "--namesrv",
        &broker.addr,
        "--topic",
        "Backlog",
        "--rate",
        "max",
        "--count",
        "200",
        "--quiet",
    ];
    assert_eq!(cli(&produce), 0);
    // The backlog ages before anyone reads it.
    std::thread::sleep(BACKLOG_AGE);
    let code = cli(&[
        "consume",
        "--namesrv",
        &broker.addr,
        "--topic",
        "Backlog",
        "--from",
        "first",
        "--count",
        "200",
        "--duration",
        "10s",
        "--quiet",
        "--out",
        out,
        "--label",
        "c",
    ]);
    assert_eq!(code, 0);
    let s = summary(dir.path(), "c");
    assert_eq!(s.messages, 200);
    assert_eq!(s.latency_kind, "pull round trip");
    // 4 queues x 50 messages, at most 32 per answer: 2 answers with messages per queue.
    assert_eq!(
        s.latency.count, 8,
        "one value per pull that returned messages"
    );
    let delay_ms = PULL_DELAY.as_secs_f64() * 1000.0;
    let age_ms = BACKLOG_AGE.as_secs_f64() * 1000.0;
    assert!(s.latency.min_ms >= delay_ms * 0.99, "{:?}", s.latency);
    assert!(s.latency.p50_ms >= delay_ms * 0.99, "{:?}", s.latency);
    assert!(
        s.latency.max_ms < age_ms,
        "the round trip does not include the backlog's age: {:?}",
        s.latency
    );
    // The age at delivery is kept, labelled, as the secondary figure: it shows the backlog's age instead.
    let age = s.other_latencies.get("age at delivery").expect("age kept");
    assert_eq!(age.count, 200, "one value per message");
    assert!(age.p50_ms >= age_ms, "{age:?}");
    assert!(s.notes.iter().any(|n| n.starts_with("pull round trip:")));
    assert!(s.notes.iter().any(|n| n.starts_with("age at delivery:")));
    let table = report::console(&s);
    assert!(table.contains("\npull round trip "), "{table}");
    assert!(table.contains("\nage at delivery "), "{table}");
    assert!(table.contains("note: age at delivery"), "{table}");
    // The .hgrm is the pull round trip's distribution.
    let hgrm = std::fs::read_to_string(dir.path().join("c.hgrm")).expect("hgrm written");
    let parsed = rocketcore_bench::hist::parse_hgrm(&hgrm).expect("parses");
    assert_eq!(parsed.total_count, 8);
    assert!(
        (parsed.max_ms - s.latency.max_ms).abs() < 0.5,
        "{} vs {}",
        parsed.max_ms,
        s.latency.max_ms
    );
}
