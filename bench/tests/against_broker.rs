//! A short end-to-end run against a real rocketcore broker started by the test.
//!
//! The broker binary is found, in order, at `$ROCKETCORE_BIN`, or beside this test's own executable
//! (`<target>/<profile>/rocketcore`, which `cargo test --workspace` builds because the root package has
//! integration tests). Without either the test fails: run it through `cargo test --workspace`,
//! build `rocketcore` first, or set ROCKETCORE_BIN.

mod common;

use common::cli;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn broker_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROCKETCORE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    // <target>/<profile>/deps/against_broker-HASH → <target>/<profile>/rocketcore
    let candidate = exe.parent()?.parent()?.join("rocketcore");
    candidate.is_file().then_some(candidate)
}

struct Broker {
    child: Child,
    namesrv: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(bin: &PathBuf, store: &std::path::Path) -> Broker {
    let mut child = Command::new(bin)
        .args(["broker", "--set"])
        .arg(format!("storePathRootDir={}", store.display()))
        .args(["--set", "listenPort=0", "--set", "namesrvListenPort=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("rocketcore ready ") {
                let ns = rest
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("namesrv="))
                    .map(str::to_string);
                let _ = tx.send(ns);
            }
        }
    });
    let mut broker = Broker {
        child,
        namesrv: String::new(),
    };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(ns)) => broker.namesrv = ns,
        other => panic!("broker did not print its ready line within 30 s: {other:?}"),
    }
    broker
}

#[test]
fn given_a_rocketcore_broker_when_producing_consuming_and_e2e_then_every_run_is_clean() {
    let bin = broker_binary()
        .expect("no rocketcore binary: run `cargo test --workspace`, or set ROCKETCORE_BIN");
    let store = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let out_s = out.path().to_str().unwrap_or_default();
    let broker = start_broker(&bin, store.path());
    let ns = broker.namesrv.as_str();
    assert_eq!(
        cli(&[
            "produce",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2E",
            "--rate",
            "500",
            "--count",
            "500",
            "--quiet",
            "--out",
            out_s,
            "--label",
            "p"
        ]),
        0
    );
    assert_eq!(
        cli(&[
            "produce",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2E",
            "--rate",
            "1000",
            "--batch",
            "10",
            "--count",
            "500",
            "--quiet"
        ]),
        0
    );
    assert_eq!(
        cli(&[
            "consume",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2E",
            "--from",
            "first",
            "--count",
            "1000",
            "--duration",
            "20s",
            "--quiet",
            "--out",
            out_s,
            "--label",
            "c"
        ]),
        0
    );
    let consumed = std::fs::read_to_string(out.path().join("c.json")).expect("consume summary");
    let consumed = rocketcore_bench::report::Summary::from_json(&consumed).expect("parses");
    assert!(consumed.messages >= 1000, "consumed {}", consumed.messages);
    assert_eq!(
        cli(&[
            "e2e",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2E",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--quiet",
            "--drain",
            "10s"
        ]),
        0
    );
}
