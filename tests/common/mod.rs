//! Shared helpers for end-to-end tests: run the `rocketcore` broker (with its embedded NameServer)
//! as a child process.
//!
//! Contract with the binary: `rocketcore broker --set key=value ...` prints exactly one line
//! `rocketcore ready namesrv=127.0.0.1:<port> broker=127.0.0.1:<port>` on stdout once both the
//! NameServer and the broker serve, and exits with status 0 on SIGTERM.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the broker may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many of the broker's last stderr/stdout lines are kept for failure reports.
const LOG_TAIL_LINES: usize = 300;

/// The `--set` pairs every test broker gets (before the test's own pairs, which may override them).
pub fn default_sets(store_dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "storePathRootDir".to_string(),
            store_dir.display().to_string(),
        ),
        ("listenPort".to_string(), "0".to_string()),
        ("namesrvListenPort".to_string(), "0".to_string()),
        (
            "shards".to_string(),
            std::env::var("RC_TEST_SHARDS").unwrap_or_else(|_| "2".to_string()),
        ),
        ("flushDiskType".to_string(), "SYNC_FLUSH".to_string()),
        // Tests must not depend on how full the host's disk is.
        ("diskMaxUsedSpaceRatio".to_string(), "95".to_string()),
    ]
}

/// A running `rocketcore broker` child process.
pub struct BrokerProcess {
    /// `None` once the process has been waited for (after `stop_clean`/`kill9`).
    pub child: Option<Child>,
    /// `127.0.0.1:<port>` of the embedded NameServer.
    pub namesrv_addr: String,
    /// `127.0.0.1:<port>` of the broker.
    pub broker_addr: String,
    pub store_dir: PathBuf,
    pid: u32,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl BrokerProcess {
    /// Spawns the broker on `store_dir` and waits (bounded) for its ready line.
    ///
    /// `extra_sets` are passed as further `--set key=value` arguments after the defaults.
    pub fn start(store_dir: &Path, extra_sets: &[(&str, &str)]) -> BrokerProcess {
        std::fs::create_dir_all(store_dir).expect("create broker store dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rocketcore"));
        cmd.arg("broker");
        for (k, v) in default_sets(store_dir) {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        for (k, v) in extra_sets {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rocketcore broker");
        let pid = child.id();
        let log_tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));

        // stdout: forward every line to the channel (the first `rocketcore ready` line is what we
        // wait for); keep draining until EOF so the broker never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let tail = Arc::clone(&log_tail);
        let out_reader = std::thread::Builder::new()
            .name(format!("broker-{pid}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    push_tail(&tail, format!("[stdout] {line}"));
                    // The receiver is dropped once the ready line was seen; later lines are kept
                    // in the tail only.
                    let _ = line_tx.send(line);
                }
            })
            .expect("spawn stdout reader");

        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::clone(&log_tail);
        let err_reader = std::thread::Builder::new()
            .name(format!("broker-{pid}-stderr"))
            .spawn(move || drain_lines(stderr, &tail, "[stderr]"))
            .expect("spawn stderr reader");

        let mut broker = BrokerProcess {
            child: Some(child),
            namesrv_addr: String::new(),
            broker_addr: String::new(),
            store_dir: store_dir.to_path_buf(),
            pid,
            log_tail,
            readers: vec![out_reader, err_reader],
        };

        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            match line_rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some((namesrv, brk)) = parse_ready_line(&line) {
                        broker.namesrv_addr = namesrv;
                        broker.broker_addr = brk;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let tail = broker.log_tail_string();
                    broker.kill_now();
                    panic!(
                        "rocketcore broker (pid {pid}) printed no ready line within {:?}; output tail:\n{tail}",
                        READY_TIMEOUT
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed before the ready line: the process is exiting.
                    let status = broker.child.as_mut().and_then(|c| c.wait().ok());
                    broker.child = None;
                    broker.join_readers();
                    panic!(
                        "rocketcore broker (pid {pid}) exited before it was ready (status {status:?}); output \
                         tail:\n{}",
                        broker.log_tail_string()
                    );
                }
            }
        }
        assert!(
            broker.namesrv_addr.starts_with("127.0.0.1:")
                && broker.broker_addr.starts_with("127.0.0.1:"),
            "ready line must name loopback addresses: namesrv={} broker={}",
            broker.namesrv_addr,
            broker.broker_addr
        );
        broker
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGTERM, then a bounded wait. Panics unless the broker exits with status 0 in time.
    pub fn stop_clean(&mut self) -> ExitStatus {
        let Some(child) = self.child.take() else {
            panic!("broker (pid {}) is not running", self.pid);
        };
        // SAFETY: plain kill(2) on the pid of a child we own and have not yet reaped.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "kill(SIGTERM) failed: {}",
            std::io::Error::last_os_error()
        );
        let status = wait_bounded(child, STOP_TIMEOUT, self.pid);
        self.join_readers();
        match status {
            Some(status) => {
                assert!(
                    status.success(),
                    "broker (pid {}) exited with {status} after SIGTERM (expected 0); output tail:\n{}",
                    self.pid,
                    self.log_tail_string()
                );
                status
            }
            None => panic!(
                "broker (pid {}) did not exit within {:?} after SIGTERM (it was SIGKILLed); output tail:\n{}",
                self.pid,
                STOP_TIMEOUT,
                self.log_tail_string()
            ),
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("broker (pid {}) is not running", self.pid);
        };
        child.kill().expect("SIGKILL broker");
        let status = child.wait().expect("reap broker after SIGKILL");
        self.join_readers();
        status
    }

    /// The last lines the broker wrote to stdout/stderr.
    pub fn log_tail_string(&self) -> String {
        let tail = self.log_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        // The pipes reach EOF once the process is gone.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.kill_now();
        if std::thread::panicking() {
            eprintln!(
                "---- rocketcore broker (pid {}, store {}, {}) output tail ----\n{}\n---- end ----",
                self.pid,
                self.store_dir.display(),
                if was_running {
                    "killed on drop"
                } else {
                    "already stopped"
                },
                self.log_tail_string()
            );
        }
    }
}

/// Parses `rocketcore ready namesrv=127.0.0.1:<port> broker=127.0.0.1:<port>`.
pub fn parse_ready_line(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("rocketcore ready ")?;
    let mut namesrv = None;
    let mut broker = None;
    for token in rest.split_whitespace() {
        if let Some(v) = token.strip_prefix("namesrv=") {
            namesrv = Some(v.to_string());
        } else if let Some(v) = token.strip_prefix("broker=") {
            broker = Some(v.to_string());
        }
    }
    let valid = |a: &String| {
        a.parse::<std::net::SocketAddr>()
            .is_ok_and(|s| s.port() != 0)
    };
    match (namesrv, broker) {
        (Some(n), Some(b)) if valid(&n) && valid(&b) => Some((n, b)),
        _ => None,
    }
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    if tail.len() == LOG_TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

fn drain_lines(pipe: impl Read, tail: &Mutex<VecDeque<String>>, prefix: &str) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        push_tail(tail, format!("{prefix} {line}"));
    }
}

/// Waits for `child` on a helper thread; `None` (after SIGKILL + reap) if it outlives `timeout`.
fn wait_bounded(mut child: Child, timeout: Duration, pid: u32) -> Option<ExitStatus> {
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name(format!("broker-{pid}-wait"))
        .spawn(move || {
            let _ = tx.send(child.wait());
        })
        .expect("spawn waiter thread");
    match rx.recv_timeout(timeout) {
        Ok(status) => {
            let _ = waiter.join();
            Some(status.expect("wait for broker"))
        }
        Err(_) => {
            // SAFETY: the waiter thread has not reaped the child yet (it would have sent).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = rx.recv_timeout(Duration::from_secs(10));
            let _ = waiter.join();
            None
        }
    }
}

/// A fresh temporary directory for a broker store (removed when dropped).
pub fn temp_store() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rocketcore-e2e-")
        .tempdir()
        .expect("create temp store dir")
}

#[cfg(test)]
mod tests {
    use super::parse_ready_line;

    #[test]
    fn ready_line_parses() {
        assert_eq!(
            parse_ready_line("rocketcore ready namesrv=127.0.0.1:41001 broker=127.0.0.1:41002"),
            Some(("127.0.0.1:41001".to_string(), "127.0.0.1:41002".to_string()))
        );
        assert_eq!(
            parse_ready_line("rocketcore ready namesrv=127.0.0.1:0 broker=127.0.0.1:1"),
            None
        );
        assert_eq!(parse_ready_line("starting"), None);
    }
}
