//! kill -9: a child process appends numbered records with SYNC_FLUSH and prints `acked N` after
//! each put returns; the parent SIGKILLs it at random moments, many times, and checks that every
//! acknowledged record is still there, in order, byte for byte.
//!
//! The child is this test binary run again (`current_exe()`) with `CHILD_ENV` naming the store
//! directory, filtered to this one test. It reopens the store (recovering the crash left by the
//! previous kill) and continues numbering from the records it finds.

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
    "given_a_sync_appender_killed_at_random_moments_when_reopened_should_keep_every_acked_record";
const KILLS: usize = 24;
/// A child left alone stops by itself, so a parent that died cannot leave it running.
const CHILD_MAX_RECORDS: u64 = 20_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);
const TOPIC: &str = "T";

/// The body of record `n`: its number, then 0..1200 bytes of a pattern that depends on `n`, so
/// records vary in size and segments (64 KiB in these tests) roll often, at varying positions.
fn record_body(n: u64) -> Vec<u8> {
    let mut b = format!("record-{n:010}|").into_bytes();
    let extra = (n.wrapping_mul(7919) % 1200) as usize;
    b.extend((0..extra).map(|i| (n as usize + i * 31) as u8));
    b
}

fn record_props(n: u64) -> String {
    format!("KEYS\u{1}k{n}\u{2}TAGS\u{1}t{}", n % 7)
}

/// The child: reopen, report what was found, append until killed.
fn child(dir: PathBuf) {
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("child: open");
        let mut next = log.max_offset(TOPIC, 0);
        println!("\nfound {next} crashed_before={}", log.crashed_before());
        let started = Instant::now();
        let limit = next + CHILD_MAX_RECORDS;
        while next < limit && started.elapsed() < CHILD_MAX_TIME {
            let m = message(TOPIC, 0, &record_body(next), &record_props(next));
            let r = log.put(&[m], true).await.expect("child: put");
            assert_eq!(
                r.appended[0].0, next,
                "child: queue offset differs from the record number"
            );
            // One line per completed append; println! flushes the line to the pipe before returning.
            println!("\nacked {next}");
            next += 1;
        }
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
    Found(u64),
    Acked(u64),
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
        match (words.next(), words.next().and_then(|n| n.parse().ok())) {
            (Some("acked"), Some(n)) => return Some(Line::Acked(n)),
            (Some("found"), Some(n)) => return Some(Line::Found(n)),
            _ => continue,
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

/// Every record in the store, as (number, body, properties), read by a fresh open of `dir`.
fn read_all(dir: &Path) -> Vec<(u64, Vec<u8>, String)> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .expect("parent: open");
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            let r = log.get(TOPIC, 0, off, 32, &|_| true).await;
            if r.records.is_empty() {
                break;
            }
            for rec in &r.records {
                let d = decode(rec).expect("stored record decodes");
                out.push((d.queue_offset as u64, d.body.to_vec(), d.properties));
            }
            off = r.next_begin_offset;
        }
        log.stop().await.expect("parent: stop");
        out
    })
}

/// The store holds records 0..n for some n > `acked_max`, each exactly as written.
fn assert_holds_every_acked_record(dir: &Path, acked_max: Option<u64>, round: usize) -> u64 {
    let records = read_all(dir);
    for (i, (n, body, props)) in records.iter().enumerate() {
        assert_eq!(
            *n, i as u64,
            "round {round}: record {i} has queue offset {n}"
        );
        assert!(
            *body == record_body(i as u64),
            "round {round}: record {i} body differs"
        );
        assert_eq!(
            *props,
            record_props(i as u64),
            "round {round}: record {i} properties differ"
        );
    }
    let held = records.len() as u64;
    if let Some(max) = acked_max {
        assert!(
            held > max,
            "round {round}: acked up to {max} but only {held} records survived"
        );
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
fn given_a_sync_appender_killed_at_random_moments_when_reopened_should_keep_every_acked_record() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return child(PathBuf::from(dir));
    }
    let seed = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    eprintln!("kill9 seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    let store = tempfile::tempdir().expect("tempdir");
    let mut acked_max: Option<u64> = None;
    for round in 0..KILLS {
        let (mut child, mut out) = spawn_child(store.path());
        let found = match next_report(&mut out) {
            Some(Line::Found(n)) => n,
            _ => panic!("round {round}: the child did not report what it found"),
        };
        if let Some(max) = acked_max {
            assert!(
                found > max,
                "round {round}: child found {found} records, but {max} was acked"
            );
        }
        // Kill after 0..120 more acks (0: right after it opened, while recovery's writes settle).
        let kill_after = if rng.below(5) == 0 {
            0
        } else {
            1 + rng.below(120)
        };
        for _ in 0..kill_after {
            match next_report(&mut out) {
                Some(Line::Acked(n)) => acked_max = Some(n),
                Some(Line::Found(_)) => panic!("round {round}: child reported twice"),
                None => panic!("round {round}: child stopped before it was killed"),
            }
        }
        sigkill(&mut child);
        // The parent checks a copy, so the next child recovers the crash itself.
        let check = tempfile::tempdir().expect("tempdir");
        copy_dir(store.path(), check.path());
        let held = assert_holds_every_acked_record(check.path(), acked_max, round);
        eprintln!(
            "round {round}: killed after {kill_after} acks, acked max {acked_max:?}, {held} held"
        );
    }
    let segments = std::fs::read_dir(store.path().join("commitlog"))
        .expect("ls")
        .count();
    let held = assert_holds_every_acked_record(store.path(), acked_max, KILLS);
    assert!(held > 500, "too few records to exercise rolls: {held}");
    assert!(
        segments >= 3,
        "expected several 64 KiB segments, found {segments}"
    );
}
