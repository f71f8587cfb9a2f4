//! Command line: `produce`, `consume`, `e2e`, `plot`, `plan`, `calibrate`, `floor`, `stalls`. Exit status 0 = clean run,
//! 1 = the run had errors (its last line says so), 2 = it could not run.

use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::consume::ConsumeOptions;
use crate::hist::Percentiles;
use crate::plan::Calibration;
use crate::produce::{ProduceOptions, ProduceOutcome, Rate};
use crate::ramp::{Slo, Step};
use crate::report::{self, Summary, SummaryInput};
use crate::route::{self, QueueSet};
use crate::util::{err, parse_bytes, parse_duration, utc_timestamp, Error, Result, SizeDist};

#[derive(Parser, Debug)]
#[command(
    name = "rocketcore-bench",
    version,
    about = "Open-loop RocketMQ load generator with HDR histograms"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Send messages (SEND_MESSAGE_V2, or SEND_BATCH_MESSAGE with --batch > 1).
    Produce(ProduceArgs),
    /// Pull messages (HEART_BEAT, then PULL_MESSAGE per queue).
    Consume(ConsumeArgs),
    /// Produce and consume together; latency = delivery time - intended send time.
    E2e(E2eArgs),
    /// Draw several JSON summaries or .hgrm files on one latency-by-percentile chart.
    Plot(PlotArgs),
    /// Capacity plan for a workload file from a calibration file.
    Plan(PlanArgs),
    /// Measure disk bandwidth and per-shard rate at an SLO; write a calibration file.
    Calibrate(CalibrateArgs),
    /// This machine's loopback floor: a do-nothing TCP echo at a fixed rate, for comparing a
    /// broker's fixed-rate send latency with it in the same session.
    Floor(FloorArgs),
    /// How often this machine takes a CPU away from a thread that wants it: one pinned thread per
    /// CPU spins on the clock; for each bound L, the share of time a thread pinned there would wait
    /// at least L. Above 1 %, nothing pinned there can have p99 below L.
    Stalls(StallsArgs),
}

#[derive(Args, Debug)]
pub struct StallsArgs {
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub duration: Duration,
    /// Gaps between two clock reads shorter than this are the loop's own cost.
    #[arg(long, default_value = "20us", value_parser = parse_duration_arg)]
    pub min_gap: Duration,
    /// Latency bounds to report the waiting share for (comma-separated durations).
    #[arg(long, default_value = "100us,300us,1ms,2ms", value_delimiter = ',', value_parser = parse_duration_arg)]
    pub bounds: Vec<Duration>,
}

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Requests per second (one connection; a writer and a reader thread, requests pipelined).
    #[arg(long, default_value_t = 4000.0)]
    pub rate: f64,
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub warmup: Duration,
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub duration: Duration,
    /// Bytes per request: about a SEND_MESSAGE_V2 frame with a 1 KiB body.
    #[arg(long, default_value_t = 1300)]
    pub request_bytes: usize,
    /// Bytes per response: about a send response frame.
    #[arg(long, default_value_t = 300)]
    pub response_bytes: usize,
}

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// NameServer address, host:port.
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    /// Topic, or a comma-separated list of topics (A,B,C). Sends are spread over every (topic, queue) pair;
    /// consume and e2e read all of them.
    #[arg(long, default_value = "BenchTopic")]
    pub topic: String,
    /// Generate N topics from each --topic name: NAME-0 … NAME-(N-1).
    #[arg(long, value_name = "N")]
    pub topics: Option<usize>,
    /// Queues per topic per broker: use at most this many of each topic's queues on each broker
    /// (default: all of the route's queues).
    #[arg(long, value_name = "N")]
    pub queues: Option<usize>,
    /// Per-request timeout.
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg)]
    pub timeout: Duration,
}

impl Target {
    /// The run's topics: `--topic`'s comma-separated names, each expanded to NAME-0..N-1 by `--topics N`.
    pub fn topic_list(&self) -> Result<Vec<String>> {
        let names: Vec<&str> = self
            .topic
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if names.is_empty() {
            return err("--topic needs at least one topic name");
        }
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let expanded = match self.topics {
                Some(0) => return err("--topics must be at least 1"),
                Some(n) => (0..n).map(|i| format!("{name}-{i}")).collect(),
                None => vec![name.to_string()],
            };
            for t in expanded {
                if t.len() > 127 {
                    return err(format!("topic name too long (max 127): {t}"));
                }
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }
}

#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Directory for LABEL.hgrm, LABEL.json and LABEL.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run name in reports and file names.
    #[arg(long)]
    pub label: Option<String>,
    /// No per-second progress line.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Load {
    /// Message body size: 1024, 1KiB, uniform:100:2000, choice:100,1000.
    #[arg(long, default_value = "1024")]
    pub size: String,
    /// TCP connections (each a producer with its own window).
    #[arg(long, visible_alias = "producers", default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Messages per request; > 1 uses SEND_BATCH_MESSAGE.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long)]
    pub tags: Option<String>,
    /// Give every message a KEYS property.
    #[arg(long)]
    pub keys: bool,
    /// Messages per second (open loop, CO-corrected) or `max` (closed-loop saturation).
    #[arg(long, default_value = "1000")]
    pub rate: String,
    /// Measured time, after warm-up (default 10s unless --count).
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Measured messages, after warm-up.
    #[arg(long)]
    pub count: Option<u64>,
    /// Excluded from results.
    #[arg(long, default_value = "0s", value_parser = parse_duration_arg)]
    pub warmup: Duration,
    #[arg(long, default_value = "rocketcore-bench-pg")]
    pub producer_group: String,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub load: Load,
    #[command(flatten)]
    pub output: Output,
    /// Rate ramp FROM:TO:STEP (msg/s); each step runs --duration.
    #[arg(long)]
    pub ramp: Option<String>,
    /// Latency SLO for --ramp, e.g. p99=2ms.
    #[arg(long, default_value = "p99=2ms")]
    pub slo: String,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    #[arg(long, default_value = "rocketcore-bench-cg")]
    pub group: String,
    /// `first` (offset 0) or `last` (current end of each queue).
    #[arg(long, default_value = "first")]
    pub from: String,
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, default_value = "0s", value_parser = parse_duration_arg)]
    pub warmup: Duration,
}

#[derive(Args, Debug)]
pub struct E2eArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub load: Load,
    #[command(flatten)]
    pub output: Output,
    #[arg(long, default_value = "rocketcore-bench-e2e")]
    pub group: String,
    /// How long to wait for stragglers after the last send.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub drain: Duration,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// JSON summaries or .hgrm files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[arg(long, default_value = "latency.svg")]
    pub out: PathBuf,
    #[arg(long, default_value = "latency by percentile")]
    pub title: String,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    pub workload: PathBuf,
    #[arg(long, default_value = "calibration.toml")]
    pub calibration: PathBuf,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Directory on the disk that will hold the CommitLog (probed with O_DIRECT writes).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value = "256MiB")]
    pub probe_bytes: String,
    #[arg(long, default_value = "calibration.toml")]
    pub out: PathBuf,
    /// Skip the ramp and record this per-shard rate.
    #[arg(long)]
    pub shard_rate: Option<f64>,
    /// Shards (cores) the measured broker runs; the knee is divided by it.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    #[arg(long, default_value = "1000:20000:1000")]
    pub ramp: String,
    #[arg(long, default_value = "p99=2ms")]
    pub slo: String,
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub load: Load,
}

/// The consume run's headline latency.
pub const PULL_RTT: &str = "pull round trip";
/// The consume run's secondary latency (the e2e run's headline, measured from the intended send time).
pub const AGE_AT_DELIVERY: &str = "age at delivery";

fn parse_duration_arg(s: &str) -> std::result::Result<Duration, String> {
    parse_duration(s).map_err(|e| e.0)
}

/// Runs the command line; returns the process exit status.
pub fn main_with(args: Vec<String>) -> i32 {
    let command = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli, &command) {
        Ok(clean) => i32::from(!clean),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Ok(true) for a clean run, Ok(false) for a run with errors.
fn dispatch(cli: Cli, command: &str) -> Result<bool> {
    match cli.cmd {
        Cmd::Produce(a) => produce_cmd(a, command),
        Cmd::Consume(a) => consume_cmd(a, command),
        Cmd::E2e(a) => e2e_cmd(a, command),
        Cmd::Plot(a) => plot_cmd(a),
        Cmd::Plan(a) => plan_cmd(a),
        Cmd::Calibrate(a) => calibrate_cmd(a, command),
        Cmd::Floor(a) => floor_cmd(a),
        Cmd::Stalls(a) => stalls_cmd(a),
    }
}

pub fn produce_options(load: &Load, target: &Target, quiet: bool) -> Result<ProduceOptions> {
    Ok(ProduceOptions {
        producer_group: load.producer_group.clone(),
        size: SizeDist::parse(&load.size)?,
        connections: load.connections,
        inflight: load.inflight,
        batch: load.batch,
        tags: load.tags.clone(),
        keys: load.keys,
        rate: Rate::parse(&load.rate)?,
        warmup: load.warmup,
        duration: load.duration.or(if load.count.is_some() {
            None
        } else {
            Some(Duration::from_secs(10))
        }),
        count: load.count,
        timeout: target.timeout,
        progress: !quiet,
        stamp_intended: false,
    })
}

fn produce_targets(target: &Target) -> Result<Vec<QueueSet>> {
    let topics = target.topic_list()?;
    let (mut sets, fallback) = route::for_produce(&target.namesrv, &topics, target.timeout)?;
    route::limit_queues(&mut sets, target.queues);
    if !fallback.is_empty() {
        eprintln!(
            "no route yet for {}: sending with defaultTopic=TBW102 so the broker auto-creates it",
            report::topic_list(&fallback)
        );
    }
    describe_sets(&sets);
    Ok(sets)
}

/// One stderr line per topic (a summary line past 8 topics): where its queues are.
fn describe_sets(sets: &[QueueSet]) {
    let topics = route::topics_of(sets);
    let pairs: usize = sets.iter().map(|s| s.queue_ids.len()).sum();
    if topics.len() > 8 {
        eprintln!(
            "{} topics on {} brokers, {pairs} (topic, queue) pairs",
            topics.len(),
            route::by_broker(sets).len()
        );
        return;
    }
    for t in &topics {
        let where_: Vec<String> = sets
            .iter()
            .filter(|s| &s.topic == t)
            .map(|s| format!("{}@{} x{} queues", s.broker_name, s.addr, s.queue_ids.len()))
            .collect();
        eprintln!("{t}: {}", where_.join(", "));
    }
}

fn settings_of(o: &ProduceOptions, topics: &[String]) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("topics".to_string(), topics.join(",")),
        ("size".to_string(), o.size.describe()),
        ("connections".to_string(), o.connections.to_string()),
        ("inflight".to_string(), o.inflight.to_string()),
        ("batch".to_string(), o.batch.to_string()),
        ("warmup".to_string(), format!("{:?}", o.warmup)),
        ("rate".to_string(), o.rate.describe()),
    ])
}

/// The summary of a produce run.
pub fn produce_summary(
    out: &ProduceOutcome,
    o: &ProduceOptions,
    label: &str,
    command: &str,
    started: u64,
) -> Summary {
    let rate = match o.rate {
        Rate::PerSec(r) => Some(r),
        Rate::Max => None,
    };
    let closed = rate.is_none();
    report::summarize(SummaryInput {
        label: label.to_string(),
        workload: "produce",
        rate,
        command: command.to_string(),
        started_unix_s: started,
        measured_secs: out.measured.as_secs_f64(),
        messages: out.stats.messages,
        bytes: out.stats.bytes,
        latency_kind: if closed {
            "send (from send time)".into()
        } else {
            "send (from intended)".into()
        },
        latency: &out.stats.corrected,
        uncorrected: if closed {
            None
        } else {
            Some(&out.stats.uncorrected)
        },
        errors: out.stats.errors.clone(),
        settings: settings_of(o, &out.topics),
    })
}

fn now_s() -> u64 {
    crate::util::wall_us_now() / 1_000_000
}

fn finish(
    summary: &Summary,
    output: &Output,
    latency: &crate::hist::LatencyHistogram,
) -> Result<bool> {
    if let Some(dir) = &output.out {
        for p in report::write_files(dir, summary, latency)? {
            eprintln!("wrote {}", p.display());
        }
    }
    print!("{}", report::console(summary));
    Ok(summary.error_total == 0)
}

fn produce_cmd(a: ProduceArgs, command: &str) -> Result<bool> {
    let opts = produce_options(&a.load, &a.target, a.output.quiet)?;
    let sets = produce_targets(&a.target)?;
    if let Some(ramp) = &a.ramp {
        return ramp_cmd(&sets, &opts, ramp, &Slo::parse(&a.slo)?, &a.output, command)
            .map(|(clean, _)| clean);
    }
    let label = a.output.label.clone().unwrap_or_else(|| "produce".into());
    let started = now_s();
    let out = crate::produce::run(&sets, &opts)?;
    let summary = produce_summary(&out, &opts, &label, command, started);
    finish(&summary, &a.output, &out.stats.corrected)
}

/// Runs every ramp step; returns (no step had errors, knee).
fn ramp_cmd(
    sets: &[QueueSet],
    base: &ProduceOptions,
    ramp: &str,
    slo: &Slo,
    output: &Output,
    command: &str,
) -> Result<(bool, Option<f64>)> {
    let rates = crate::ramp::parse_ramp(ramp)?;
    let label = output.label.clone().unwrap_or_else(|| "ramp".into());
    let mut steps: Vec<Step> = Vec::new();
    let mut consecutive_misses = 0;
    for rate in rates {
        let mut o = base.clone();
        o.rate = Rate::PerSec(rate);
        eprintln!("-- ramp step {rate} msg/s");
        let started = now_s();
        let out = crate::produce::run(sets, &o)?;
        let summary = produce_summary(&out, &o, &format!("{label}-{rate:.0}"), command, started);
        if let Some(dir) = &output.out {
            report::write_files(dir, &summary, &out.stats.corrected)?;
        }
        let miss = slo.miss(&summary);
        consecutive_misses = if miss.is_some() {
            consecutive_misses + 1
        } else {
            0
        };
        steps.push(Step {
            rate,
            summary,
            miss,
        });
        // Past saturation every further step only misses by more; two in a row is enough evidence.
        if consecutive_misses >= 2 {
            eprintln!("two consecutive steps missed the SLO: stopping the ramp");
            break;
        }
    }
    if let Some(dir) = &output.out {
        let series: Vec<_> = steps
            .iter()
            .map(|s| crate::plot::Series::from_summary(&s.summary))
            .collect();
        let path = dir.join(format!("{label}.svg"));
        crate::plot::draw(
            &path,
            &format!("{label}: ramp, SLO {}", slo.describe()),
            &series,
        )?;
        eprintln!("wrote {}", path.display());
    }
    print!("{}", crate::ramp::table(&steps, slo));
    let errors: u64 = steps.iter().map(|s| s.summary.error_total).sum();
    if errors == 0 {
        println!("OK: ramp finished, no errors");
    } else {
        println!("FAILED: {errors} errors across the ramp steps (see the table)");
    }
    Ok((errors == 0, crate::ramp::knee(&steps)))
}

fn consume_cmd(a: ConsumeArgs, command: &str) -> Result<bool> {
    let from_first = match a.from.as_str() {
        "first" => true,
        "last" => false,
        other => return err(format!("--from must be first or last, got {other}")),
    };
    let topics = a.target.topic_list()?;
    let mut sets = route::for_consume(&a.target.namesrv, &topics, a.target.timeout)?;
    route::limit_queues(&mut sets, a.target.queues);
    describe_sets(&sets);
    let o = ConsumeOptions {
        group: a.group.clone(),
        from_first,
        duration: a.duration.or(if a.count.is_some() {
            None
        } else {
            Some(Duration::from_secs(10))
        }),
        count: a.count,
        warmup: a.warmup,
        timeout: a.target.timeout,
        progress: !a.output.quiet,
        ..ConsumeOptions::default()
    };
    let started = now_s();
    let (stats, window) = crate::consume::run(&sets, &o)?;
    let mut summary = report::summarize(SummaryInput {
        label: a.output.label.clone().unwrap_or_else(|| "consume".into()),
        workload: "consume",
        rate: None,
        command: command.to_string(),
        started_unix_s: started,
        measured_secs: window.as_secs_f64(),
        messages: stats.messages,
        bytes: stats.bytes,
        latency_kind: PULL_RTT.into(),
        latency: &stats.pull_rtt,
        uncorrected: None,
        errors: stats.errors.clone(),
        settings: BTreeMap::from([
            ("group".into(), a.group),
            ("from".into(), a.from),
            ("topics".into(), topics.join(",")),
        ]),
    });
    summary
        .other_latencies
        .insert(AGE_AT_DELIVERY.into(), Percentiles::of(&stats.corrected));
    summary.notes.push(format!(
        "{PULL_RTT}: PULL_MESSAGE written -> answer read, one per pull that returned messages (count = pulls); \
         this is the consume latency (and the .hgrm)"
    ));
    summary.notes.push(format!(
        "{AGE_AT_DELIVERY}: delivery time - message born time, one per message: for a backlog this is \
         mostly how old the backlog was, not how fast the broker serves it"
    ));
    finish(&summary, &a.output, &stats.pull_rtt)
}

fn e2e_cmd(a: E2eArgs, command: &str) -> Result<bool> {
    let p = produce_options(&a.load, &a.target, a.output.quiet)?;
    let sets = produce_targets(&a.target)?;
    let c = ConsumeOptions {
        group: a.group.clone(),
        from_first: false,
        timeout: a.target.timeout,
        ..ConsumeOptions::default()
    };
    let started = now_s();
    let out = crate::e2e::run(&sets, &p, &c, a.drain)?;
    let mut errors = out.delivered.errors.clone();
    for (k, v) in &out.produced.stats.errors {
        *errors.entry(format!("send: {k}")).or_insert(0) += v;
    }
    let missing = out
        .produced
        .stats
        .messages
        .saturating_sub(out.delivered.messages);
    if missing > 0 {
        errors.insert(format!("undelivered after {:?} drain", a.drain), missing);
    }
    let rate = match p.rate {
        Rate::PerSec(r) => Some(r),
        Rate::Max => None,
    };
    let mut summary = report::summarize(SummaryInput {
        label: a.output.label.clone().unwrap_or_else(|| "e2e".into()),
        workload: "e2e",
        rate,
        command: command.to_string(),
        started_unix_s: started,
        measured_secs: out
            .produced
            .measured
            .as_secs_f64()
            .max(out.delivered_window.as_secs_f64()),
        messages: out.delivered.messages,
        bytes: out.delivered.bytes,
        latency_kind: "e2e (deliver-intended)".into(),
        latency: &out.delivered.corrected,
        uncorrected: None,
        errors,
        settings: settings_of(&p, &out.produced.topics),
    });
    summary.other_latencies.insert(
        "e2e (deliver-born ms)".into(),
        Percentiles::of(&out.delivered.uncorrected),
    );
    summary.other_latencies.insert(
        "send (from intended)".into(),
        Percentiles::of(&out.produced.stats.corrected),
    );
    summary
        .other_latencies
        .insert(PULL_RTT.into(), Percentiles::of(&out.delivered.pull_rtt));
    summary.notes.push(format!(
        "{PULL_RTT}: PULL_MESSAGE written -> answer read; the consumer is caught up, so the broker holds \
         each pull (long polling) until a message arrives and this includes that wait"
    ));
    finish(&summary, &a.output, &out.delivered.corrected)
}

fn plot_cmd(a: PlotArgs) -> Result<bool> {
    let series = a
        .inputs
        .iter()
        .map(|p| crate::plot::Series::from_file(p))
        .collect::<Result<Vec<_>>>()?;
    crate::plot::draw(&a.out, &a.title, &series)?;
    println!("wrote {} ({} lines)", a.out.display(), series.len());
    Ok(true)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error(format!("read {}: {e}", path.display())))
}

fn plan_cmd(a: PlanArgs) -> Result<bool> {
    let w = crate::plan::parse_workload(&read(&a.workload)?)?;
    let c = crate::plan::parse_calibration(&read(&a.calibration)?)?;
    println!(
        "capacity plan for {} with calibration {} ({}, {})",
        a.workload.display(),
        a.calibration.display(),
        c.slo,
        c.date
    );
    print!("{}", crate::plan::plan(&w, &c).render());
    Ok(true)
}

fn calibrate_cmd(a: CalibrateArgs, command: &str) -> Result<bool> {
    let probe_bytes = parse_bytes(&a.probe_bytes)
        .ok_or_else(|| Error(format!("bad --probe-bytes {}", a.probe_bytes)))?;
    let (disk, what) = crate::calibrate::disk_probe(&a.dir, probe_bytes)?;
    println!("disk probe: {disk:.1} MB/s ({what})");
    let slo = Slo::parse(&a.slo)?;
    let size = SizeDist::parse(&a.load.size)?;
    let (shard_rate, clean) = match a.shard_rate {
        Some(r) => (r, true),
        None => {
            let opts = produce_options(&a.load, &a.target, true)?;
            let sets = produce_targets(&a.target)?;
            let output = Output {
                out: None,
                label: Some("calibrate".into()),
                quiet: true,
            };
            let (clean, knee) = ramp_cmd(&sets, &opts, &a.ramp, &slo, &output, command)?;
            let Some(knee) = knee else {
                return err(format!(
                    "no ramp step met {}: lower the ramp's FROM",
                    slo.describe()
                ));
            };
            println!(
                "per-shard rate = knee {knee:.0} / {} shards = {:.0} msg/s",
                a.shards,
                knee / a.shards.max(1) as f64
            );
            (knee / a.shards.max(1) as f64, clean)
        }
    };
    let cal = Calibration {
        shard_msgs_per_sec_at_slo: shard_rate,
        message_size_bytes: size.max() as f64,
        slo: a.slo.clone(),
        disk_write_mb_per_sec: disk,
        disk_probe: what,
        date: utc_timestamp(now_s()),
        command: command.to_string(),
    };
    report::write(&a.out, &crate::calibrate::to_toml(&cal)?)?;
    println!("wrote {}", a.out.display());
    Ok(clean)
}

fn floor_cmd(a: FloorArgs) -> Result<bool> {
    let o = crate::floor::FloorOptions {
        rate: a.rate,
        warmup: a.warmup,
        duration: a.duration,
        request_bytes: a.request_bytes,
        response_bytes: a.response_bytes,
    };
    let out = crate::floor::run(&o)?;
    let p = Percentiles::of(&out.latency);
    println!(
        "== floor: loopback TCP echo, {} B request / {} B response, {} req/s open loop, {} requests in {:.1} s",
        o.request_bytes,
        o.response_bytes,
        o.rate,
        out.requests,
        out.elapsed.as_secs_f64()
    );
    println!(
        "latency (ms, from intended)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
    );
    Ok(true)
}

fn stalls_cmd(a: StallsArgs) -> Result<bool> {
    let o = crate::stalls::StallOptions {
        duration: a.duration,
        min_gap: a.min_gap,
        bounds: a.bounds,
    };
    let out = crate::stalls::run(&o)?;
    println!(
        "== stalls: one pinned thread per CPU spinning on the clock for {:.1} s; gaps >= {} us",
        o.duration.as_secs_f64(),
        o.min_gap.as_micros()
    );
    for c in &out {
        let secs = c.elapsed.as_secs_f64().max(1e-9);
        let p = Percentiles::of(&c.gaps);
        let shares: Vec<String> = o
            .bounds
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    "wait>={}us {:.3}%",
                    b.as_micros(),
                    100.0 * c.waiting_share(i)
                )
            })
            .collect();
        println!(
            "cpu {} | gaps/s {:.0}  gap ms p50 {:.3} p99 {:.3} max {:.3} | {}",
            c.cpu,
            c.gaps.len() as f64 / secs,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            shares.join("  ")
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(args: &[&str]) -> Target {
        let mut v = vec!["rocketcore-bench", "produce"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).map(|c| c.cmd) {
            Ok(Cmd::Produce(p)) => p.target,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn topics_come_from_a_comma_list_and_or_a_count() {
        let list = |args: &[&str]| target(args).topic_list().unwrap_or_default();
        assert_eq!(list(&[]), ["BenchTopic"]);
        assert_eq!(list(&["--topic", "A, B,,A"]), ["A", "B"]);
        assert_eq!(
            list(&["--topic", "T", "--topics", "3"]),
            ["T-0", "T-1", "T-2"]
        );
        assert_eq!(
            list(&["--topic", "A,B", "--topics", "2"]),
            ["A-0", "A-1", "B-0", "B-1"]
        );
        assert!(target(&["--topic", " , "]).topic_list().is_err());
        assert!(target(&["--topics", "0"]).topic_list().is_err());
    }

    #[test]
    fn queues_are_documented_as_per_topic_per_broker() {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let help = cmd
            .find_subcommand_mut("produce")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("Queues per topic per broker"), "{help}");
    }
}
