//! Whole workloads against the fake broker through the command line: route fallback to TBW102, batches,
//! report files, e2e delivery, the plot subcommand, and the ramp's knee.

mod common;

use common::{cli, summary, FakeBroker, Faults};
use std::sync::atomic::Ordering;

#[test]
fn given_a_topic_without_route_when_producing_batches_then_tbw102_is_used_and_every_message_lands()
{
    let broker = FakeBroker::start(Faults::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    let code = cli(&[
        "produce",
        "--namesrv",
        &broker.addr,
        "--topic",
        "NewTopic",
        "--rate",
        "2000",
        "--count",
        "400",
        "--batch",
        "8",
        "--connections",
        "2",
        "--size",
        "uniform:10:300",
        "--tags",
        "TagA",
        "--keys",
        "--warmup",
        "100ms",
        "--quiet",
        "--out",
        out,
        "--label",
        "batch",
    ]);
    assert_eq!(code, 0);
    let lookups = broker
        .route_lookups
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    assert_eq!(lookups, vec!["NewTopic".to_string(), "TBW102".to_string()]);
    let s = summary(dir.path(), "batch");
    assert_eq!(s.messages, 400, "measured messages, warm-up excluded");
    assert!(broker.messages.load(Ordering::Relaxed) >= 400);
    assert_eq!(
        broker.messages.load(Ordering::Relaxed) % 8,
        0,
        "whole batches only"
    );
    assert!(s.mode.starts_with("open-loop 2000"));
    for ext in ["hgrm", "json", "svg"] {
        assert!(dir.path().join(format!("batch.{ext}")).exists(), "{ext}");
    }
    let svg = std::fs::read_to_string(dir.path().join("batch.svg")).unwrap_or_default();
    assert!(
        svg.contains("<svg") && svg.contains("99.9%"),
        "plot has percentile labels"
    );
}

#[test]
fn given_a_producer_and_consumer_when_running_e2e_then_every_message_is_delivered_with_a_latency() {
    let broker = FakeBroker::start(Faults::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    let code = cli(&[
        "e2e",
        "--namesrv",
        &broker.addr,
        "--topic",
        "E2eTopic",
        "--rate",
        "500",
        "--duration",
        "1s",
        "--connections",
        "2",
        "--quiet",
        "--out",
        out,
        "--label",
        "e2e",
        "--drain",
        "5s",
    ]);
    assert_eq!(code, 0);
    let s = summary(dir.path(), "e2e");
    assert!((450..=500).contains(&s.messages), "{}", s.messages);
    assert_eq!(s.error_total, 0);
    assert!(s.latency.count == s.messages && s.latency.max_ms > 0.0);
    assert!(s.other_latencies.contains_key("send (from intended)"));
}

#[test]
fn given_messages_in_queues_when_consuming_from_first_then_all_are_read() {
    let broker = FakeBroker::start(Faults::default());
    assert_eq!(
        cli(&[
            "produce",
            "--namesrv",
            &broker.addr,
            "--rate",
            "max",
            "--count",
            "300",
            "--quiet"
        ]),
        0
    );
    // Through the library this time (the CLI path, with routes, is in tests/topics_and_pull_rtt.rs).
    let sets = vec![rocketcore_bench::route::QueueSet {
        topic: "BenchTopic".into(),
        broker_name: "fake-a".into(),
        addr: broker.addr.clone(),
        queue_ids: (0..4).collect(),
    }];
    let opts = rocketcore_bench::consume::ConsumeOptions {
        from_first: true,
        count: Some(300),
        duration: Some(std::time::Duration::from_secs(10)),
        ..Default::default()
    };
    let (stats, _) = rocketcore_bench::consume::run(&sets, &opts).expect("consumes");
    assert_eq!(stats.messages, 300);
    assert_eq!(stats.bytes, 300 * 1024);
    assert_eq!(stats.error_total(), 0);
}

#[test]
fn given_two_summaries_when_plotting_then_one_chart_has_both_lines() {
    let broker = FakeBroker::start(Faults::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    for (label, rate) in [("slow", "200"), ("fast", "400")] {
        let code = cli(&[
            "produce",
            "--namesrv",
            &broker.addr,
            "--rate",
            rate,
            "--duration",
            "300ms",
            "--quiet",
            "--out",
            out,
            "--label",
            label,
        ]);
        assert_eq!(code, 0);
    }
    let chart = dir.path().join("both.svg");
    let a = dir.path().join("slow.json");
    let b = dir.path().join("fast.hgrm");
    let code = cli(&[
        "plot",
        a.to_str().unwrap_or_default(),
        b.to_str().unwrap_or_default(),
        "--out",
        chart.to_str().unwrap_or_default(),
    ]);
    assert_eq!(code, 0);
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(
        svg.contains("slow (open-loop 200 msg/s)"),
        "legend names the JSON run"
    );
    assert!(svg.contains("\nfast\n"), "legend names the hgrm file");
    // One line per run, each in its own colour (plus its legend swatch), and no third.
    let lines_in = |color: &str| svg.matches(&format!("stroke=\"{color}\"")).count();
    assert!(
        lines_in("#1F77B4") >= 1 && lines_in("#D62728") >= 1,
        "two coloured lines"
    );
    assert_eq!(lines_in("#2CA02C"), 0, "no third line");
}

#[test]
fn given_a_ramp_with_an_slo_then_the_knee_is_the_highest_rate_meeting_it() {
    let broker = FakeBroker::start(Faults::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().unwrap_or_default();
    let code = cli(&[
        "produce",
        "--namesrv",
        &broker.addr,
        "--ramp",
        "100:300:100",
        "--slo",
        "p99=1s",
        "--duration",
        "300ms",
        "--quiet",
        "--out",
        out,
        "--label",
        "r",
    ]);
    assert_eq!(code, 0);
    for step in ["r-100", "r-200", "r-300"] {
        assert!(dir.path().join(format!("{step}.json")).exists(), "{step}");
    }
    assert!(dir.path().join("r.svg").exists());
}
