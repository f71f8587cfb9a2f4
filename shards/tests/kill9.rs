//! kill -9: a child process runs `APPENDERS` concurrent appenders with SYNC_FLUSH, appender `q`
//! putting numbered records to queue `q` and printing `acked q N` after each put returns; the
//! parent SIGKILLs it at random moments, many times, and checks that every acknowledged record
//! of every queue is still there, in order, byte for byte.
//!
//! Concurrent appenders make group-commit rounds of several records with several waiters, and
//! recovery rebuilds eight consume queues from one interleaved commitlog; one sequential appender
//! made rounds of one record and one queue. (Mutation check, 2026-11-22: advancing the durable
//! offset to the append position instead of the written end fails this test within 3 rounds.)
//!
//! The child is this test binary run again (`current_exe()`) with `CHILD_ENV` naming the store
//! directory, filtered to this one test. It reopens the store (recovering the crash left by the
//! previous kill) and continues each queue's numbering from the records it finds.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, message, run};
use rocketcore_shards::message::record::decode;
use rocketcore_shards::{FlushMode, Log};

const CHILD_ENV: &str = "ROCKETCORE_KILL9_CHILD";
const TEST_NAME: &str =
    "given_sync_appenders_killed_at_random_moments_when_reopened_should_keep_every_acked_record";
const KILLS: usize = 24;
/// A child left alone stops by itself, so a parent that died cannot leave it running.
const CHILD_MAX_RECORDS: u64 = 20_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);
const TOPIC: &str = "T";
/// Concurrent appenders in the child, one queue each.
const APPENDERS: usize = 8;

/// The body of record `n` of queue `q`: both numbers, then 0..1200 bytes of a pattern that
/// depends on them, so records vary in size and segments (64 KiB in these tests) roll often, at
/// varying positions.
fn record_body(q: usize, n: u64) -> Vec<u8> {
    let mut b = format!("queue-{q}-record-{n:010}|").into_bytes();
    let extra = (n.wrapping_mul(7919).wrapping_add(q as u64 * 131) % 1200) as usize;
    b.extend((0..extra).map(|i| (n as usize + q + i * 31) as u8));
    b
}

fn record_props(q: usize, n: u64) -> String {
    format!("KEYS\u{1}k{q}-{n}\u{2}TAGS\u{1}t{}", n % 7)
}

/// The child: reopen, report what was found in each queue, append until killed.
fn child(dir: PathBuf) {
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("child: open");
        let found: Vec<u64> = (0..APPENDERS)
            .map(|q| log.max_offset(TOPIC, q as i32))
            .collect();
        let list: Vec<String> = found.iter().map(u64::to_string).collect();
        println!("\nfound {}", list.join(","));
        let started = Instant::now();
        let appenders = found.iter().enumerate().map(|(q, &first)| {
            let log = &log;
            async move {
                let mut next = first;
                while next < first + CHILD_MAX_RECORDS && started.elapsed() < CHILD_MAX_TIME {
                    let body = record_body(q, next);
                    let m = message(TOPIC, q as i32, &body, &record_props(q, next));
                    let r = log.put(&[m], true).await.expect("child: put");
                    assert_eq!(
                        r.appended[0].0, next,
                        "child: queue offset differs from the record number"
                    );
                    // One line per completed append; println! flushes the line to the pipe
                    // before returning.
                    println!("\nacked {q} {next}");
                    next += 1;
                }
            }
        });
        rocketcore_shards::runtime::join_all(appenders).await;
        eprintln!("child: reached its limit without being killed");
        std::process::exit(3);
    })
}

/// xorshift64*: the kill schedule is reproducible from the seed printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

fn spawn_child(dir: &Path) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let out = BufReader::new(child.stdout.take().expect("child stdout"));
    (child, out)
}

enum Line {
    /// Records found in each queue at open.
    Found(Vec<u64>),
    /// Queue and record number.
    Acked(usize, u64),
}

/// The next report of the child; libtest's own lines are skipped.
fn next_report(out: &mut BufReader<ChildStdout>) -> Option<Line> {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read child stdout") == 0 {
            return None;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("acked"), Some(q), Some(n)) => {
                if let (Ok(q), Ok(n)) = (q.parse(), n.parse()) {
                    return Some(Line::Acked(q, n));
                }
            }
            (Some("found"), Some(list), None) => {
                let found: Result<Vec<u64>, _> = list.split(',').map(str::parse).collect();
                if let Ok(found) = found {
                    return Some(Line::Found(found));
                }
            }
            _ => {}
        }
    }
}

fn sigkill(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain syscall on the pid of a child we have not reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 failed: {}", std::io::Error::last_os_error());
    let status = child.wait().expect("wait for child");
    assert!(
        !status.success(),
        "the child exited before it was killed: {status}"
    );
}

type Stored = (u64, Vec<u8>, String);

/// Every record of every queue, as (number, body, properties), read by a fresh open of `dir`.
fn read_all(dir: &Path) -> Vec<Vec<Stored>> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("parent: open");
        let mut queues = Vec::new();
        for q in 0..APPENDERS {
            let mut out = Vec::new();
            let mut off = 0;
            loop {
                let r = log.get(TOPIC, q as i32, off, 32, &|_| true).await;
                if r.records.is_empty() {
                    break;
                }
                for rec in &r.records {
                    let d = decode(rec).expect("stored record decodes");
                    out.push((d.queue_offset as u64, d.body.to_vec(), d.properties));
                }
                off = r.next_begin_offset;
            }
            queues.push(out);
        }
        log.stop().await.expect("parent: stop");
        queues
    })
}

/// Each queue `q` holds records 0..n for some n > `acked_max[q]`, each exactly as written.
/// Returns the records held in all.
fn assert_holds_every_acked_record(dir: &Path, acked_max: &[Option<u64>], round: usize) -> u64 {
    let queues = read_all(dir);
    let mut held = 0;
    for (q, (records, acked)) in queues.iter().zip(acked_max).enumerate() {
        for (i, (n, body, props)) in records.iter().enumerate() {
            assert_eq!(
                *n, i as u64,
                "round {round}: queue {q} record {i} has queue offset {n}"
            );
            assert!(
                *body == record_body(q, i as u64),
                "round {round}: queue {q} record {i} body differs"
            );
            assert_eq!(
                *props,
                record_props(q, i as u64),
                "round {round}: queue {q} record {i} properties differ"
            );
        }
        let n = records.len() as u64;
        if let Some(max) = acked {
            assert!(
                n > *max,
                "round {round}: queue {q} acked up to {max} but only {n} records survived"
            );
        }
        held += n;
    }
    held
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("ls") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn given_sync_appenders_killed_at_random_moments_when_reopened_should_keep_every_acked_record() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return child(PathBuf::from(dir));
    }
    let seed = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    eprintln!("kill9 seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    let store = tempfile::tempdir().expect("tempdir");
    let mut acked_max: Vec<Option<u64>> = vec![None; APPENDERS];
    for round in 0..KILLS {
        let (mut child, mut out) = spawn_child(store.path());
        let found = match next_report(&mut out) {
            Some(Line::Found(found)) if found.len() == APPENDERS => found,
            _ => panic!("round {round}: the child did not report what it found"),
        };
        for (q, (found, acked)) in found.iter().zip(&acked_max).enumerate() {
            if let Some(max) = acked {
                assert!(
                    found > max,
                    "round {round}: child found {found} records in queue {q}, but {max} was acked"
                );
            }
        }
        // Kill after 0..480 more acks (0: right after it opened, while recovery's writes settle).
        let kill_after = if rng.below(5) == 0 {
            0
        } else {
            1 + rng.below(480)
        };
        for _ in 0..kill_after {
            match next_report(&mut out) {
                Some(Line::Acked(q, n)) if q < APPENDERS => {
                    assert!(
                        acked_max[q].is_none_or(|max| n > max),
                        "round {round}: queue {q} acked {n} out of order"
                    );
                    acked_max[q] = Some(n);
                }
                Some(Line::Acked(q, _)) => panic!("round {round}: ack for unknown queue {q}"),
                Some(Line::Found(_)) => panic!("round {round}: child reported twice"),
                None => panic!("round {round}: child stopped before it was killed"),
            }
        }
        sigkill(&mut child);
        // The parent checks a copy, so the next child recovers the crash itself.
        let check = tempfile::tempdir().expect("tempdir");
        copy_dir(store.path(), check.path());
        let held = assert_holds_every_acked_record(check.path(), &acked_max, round);
        eprintln!(
            "round {round}: killed after {kill_after} acks, acked max {acked_max:?}, {held} held"
        );
    }
    let segments = std::fs::read_dir(store.path().join("commitlog"))
        .expect("ls")
        .count();
    let held = assert_holds_every_acked_record(store.path(), &acked_max, KILLS);
    assert!(held > 500, "too few records to exercise rolls: {held}");
    assert!(
        segments >= 3,
        "expected several 64 KiB segments, found {segments}"
    );
}
