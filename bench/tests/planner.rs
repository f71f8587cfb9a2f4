//! The capacity planner on a worked example, with the arithmetic written out here by hand.

use rocketcore_bench::plan::{parse_calibration, parse_workload, plan};

const WORKLOAD: &str = r#"
messages_per_sec = 20000
message_size_bytes = 1024
retention_hours = 72
consumer_groups = 2
replicas = 2
slo = "p99=5ms"
headroom = 0.3
record_overhead_bytes = 200
"#;

const CALIBRATION: &str = r#"
shard_msgs_per_sec_at_slo = 10000.0
message_size_bytes = 1024.0
slo = "p99=5ms"
disk_write_mb_per_sec = 500.0
"#;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-6 * b.abs().max(1.0))
}

#[test]
fn given_the_worked_example_then_every_line_matches_the_hand_arithmetic() {
    let p = plan(
        &parse_workload(WORKLOAD).expect("workload"),
        &parse_calibration(CALIBRATION).expect("calibration"),
    );
    let text = p.render();
    // stored record = 1024 + 200 = 1224 B
    assert!(close(p.get("stored record size"), 1224.0), "{text}");
    // payload = 20000 × 1024 / 1e6 = 20.48 MB/s
    assert!(close(p.get("producer payload"), 20.48), "{text}");
    // stored stream = 20000 × 1224 / 1e6 = 24.48 MB/s per replica
    assert!(close(p.get("stored stream per replica"), 24.48), "{text}");
    // same size as calibrated: 10000 msg/s per shard; with 30 % headroom 7000; ceil(20000/7000) = 3 cores
    assert!(
        close(p.get("shard capacity at this size"), 10_000.0),
        "{text}"
    );
    assert!(close(p.get("shard rate with headroom"), 7_000.0), "{text}");
    assert!(close(p.get("shards (cores) per replica"), 3.0), "{text}");
    assert!(close(p.get("cores, all replicas"), 6.0), "{text}");
    // disk write = 24.48 / 0.7 = 34.971428… MB/s; one 500 MB/s disk is enough
    assert!(close(p.get("disk write per broker"), 24.48 / 0.7), "{text}");
    assert!(close(p.get("disks per broker (bandwidth)"), 1.0), "{text}");
    // retained = 24.48 MB/s × 259200 s = 6 345 216 MB = 6345.216 GB; / 0.75 = 8460.288 GB; × 2 = 16920.576 GB
    assert!(
        close(p.get("retained data per replica"), 6345.216),
        "{text}"
    );
    assert!(close(p.get("disk size per broker"), 8460.288), "{text}");
    assert!(close(p.get("disk size, all replicas"), 16920.576), "{text}");
    // out = 24.48 × (2 groups + 1 replica) / 0.7 = 104.914… MB/s → × 8 / 1000 = 0.8393… Gbit/s
    assert!(close(p.get("master network in"), 24.48 / 0.7), "{text}");
    assert!(
        close(p.get("master network out"), 24.48 * 3.0 / 0.7),
        "{text}"
    );
    assert!(
        close(
            p.get("master NIC (larger direction)"),
            24.48 * 3.0 / 0.7 * 8.0 / 1000.0
        ),
        "{text}"
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Every line shows its formula with the numbers in it.
    assert!(text.contains("ceil(20000 / 7000)"), "{text}");
}

#[test]
fn given_larger_messages_than_calibrated_then_shard_capacity_scales_down_by_bytes() {
    let w = WORKLOAD.replace("message_size_bytes = 1024", "message_size_bytes = 4096");
    let p = plan(
        &parse_workload(&w).expect("workload"),
        &parse_calibration(CALIBRATION).expect("calibration"),
    );
    // 10000 × (1224 / 4296) = 2849.16… msg/s; × 0.7 = 1994.41…; ceil(20000 / 1994.41) = 11
    assert!(
        close(
            p.get("shard capacity at this size"),
            10_000.0 * 1224.0 / 4296.0
        ),
        "{}",
        p.render()
    );
    assert!(
        close(p.get("shards (cores) per replica"), 11.0),
        "{}",
        p.render()
    );
}

#[test]
fn given_a_stricter_slo_than_calibrated_then_the_plan_warns() {
    let w = WORKLOAD.replace("p99=5ms", "p99=1ms");
    let p = plan(
        &parse_workload(&w).expect("workload"),
        &parse_calibration(CALIBRATION).expect("calibration"),
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}
