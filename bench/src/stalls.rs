//! How often this machine takes a CPU away from a thread that wants it: one thread per CPU, pinned,
//! reads the monotonic clock in a tight loop, and every gap between two reads longer than
//! `min_gap` is time the thread could not run (hypervisor preemption, interrupts, kernel threads).
//!
//! The number that matters for a latency target L is, per CPU, the share of time spent inside a
//! gap with at least L still to go: Σ max(0, gap − L) / elapsed. A thread pinned to that CPU that
//! becomes ready at a random moment waits at least L with that probability, so if the share is
//! above 1 %, no request served by a thread pinned there can have p99 below L, whatever it does.

use std::time::{Duration, Instant};

use crate::hist::{new_histogram, record_us, LatencyHistogram};
use crate::util::{Error, Result};

#[derive(Debug, Clone)]
pub struct StallOptions {
    pub duration: Duration,
    /// Gaps shorter than this are the loop's own cost and not recorded.
    pub min_gap: Duration,
    /// The latency bounds to report the waiting share for.
    pub bounds: Vec<Duration>,
}

/// One CPU's stalls.
#[derive(Debug)]
pub struct CpuStalls {
    pub cpu: usize,
    /// Every gap ≥ `min_gap`, in microseconds.
    pub gaps: LatencyHistogram,
    /// Per bound: Σ max(0, gap − bound), in nanoseconds.
    pub excess_ns: Vec<u128>,
    pub elapsed: Duration,
}

impl CpuStalls {
    /// The share of time a thread pinned here waits at least `bounds[i]` when it becomes ready.
    pub fn waiting_share(&self, i: usize) -> f64 {
        let total = self.elapsed.as_nanos().max(1) as f64;
        self.excess_ns.get(i).copied().unwrap_or(0) as f64 / total
    }
}

/// Adds one gap to the running sums; separate from the loop so it can be tested.
fn account(
    gap: Duration,
    bounds: &[Duration],
    excess_ns: &mut [u128],
    gaps: &mut LatencyHistogram,
) {
    record_us(gaps, gap.as_micros() as u64);
    for (b, e) in bounds.iter().zip(excess_ns.iter_mut()) {
        *e += gap.saturating_sub(*b).as_nanos();
    }
}

fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it for cpu < CPU_SETSIZE (checked),
    // and sched_setaffinity(0, …) only reads the set.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(Error(format!("stalls: cpu {cpu} is beyond CPU_SETSIZE")));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(Error(format!(
                "stalls: pin to cpu {cpu}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

fn spin(cpu: usize, o: &StallOptions) -> Result<CpuStalls> {
    pin_to(cpu)?;
    let mut gaps = new_histogram();
    let mut excess_ns = vec![0u128; o.bounds.len()];
    let start = Instant::now();
    let end = start + o.duration;
    let mut last = start;
    loop {
        let now = Instant::now();
        let gap = now.duration_since(last);
        if gap >= o.min_gap {
            account(gap, &o.bounds, &mut excess_ns, &mut gaps);
        }
        last = now;
        if now >= end {
            return Ok(CpuStalls {
                cpu,
                gaps,
                excess_ns,
                elapsed: now.duration_since(start),
            });
        }
    }
}

/// Spins on every CPU this process may use, all at once, for `duration`.
pub fn run(o: &StallOptions) -> Result<Vec<CpuStalls>> {
    if o.duration.is_zero() || o.min_gap.is_zero() {
        return Err(Error(
            "stalls: --duration and --min-gap must be positive".into(),
        ));
    }
    let cpus = allowed_cpus()?;
    let handles: Vec<_> = cpus
        .into_iter()
        .map(|cpu| {
            let o = o.clone();
            std::thread::Builder::new()
                .name(format!("stalls-{cpu}"))
                .spawn(move || spin(cpu, &o))
                .map_err(|e| Error(format!("stalls: spawn a thread for cpu {cpu}: {e}")))
        })
        .collect::<Result<_>>()?;
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| Error("stalls: a spinning thread panicked".into()))?
        })
        .collect()
}

fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: sched_getaffinity fills the zeroed set; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(Error(format!(
                "stalls: read this process's CPUs: {}",
                std::io::Error::last_os_error()
            )));
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        if cpus.is_empty() {
            return Err(Error("stalls: this process may run on no CPU".into()));
        }
        Ok(cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiting_share_counts_only_the_part_of_each_gap_beyond_the_bound() {
        let bounds = [Duration::from_micros(300), Duration::from_millis(1)];
        let mut excess = vec![0u128; 2];
        let mut gaps = new_histogram();
        for us in [100, 500, 2_000] {
            account(Duration::from_micros(us), &bounds, &mut excess, &mut gaps);
        }
        // 300 µs: 0 + 200 + 1700; 1 ms: 0 + 0 + 1000.
        assert_eq!(excess, [1_900_000, 1_000_000]);
        let s = CpuStalls {
            cpu: 0,
            gaps,
            excess_ns: excess,
            elapsed: Duration::from_millis(100),
        };
        assert!((s.waiting_share(0) - 0.019).abs() < 1e-9);
        assert!((s.waiting_share(1) - 0.010).abs() < 1e-9);
        assert_eq!(s.gaps.len(), 3);
    }

    #[test]
    fn a_short_run_reports_every_cpu_it_may_use() {
        let o = StallOptions {
            duration: Duration::from_millis(30),
            min_gap: Duration::from_micros(20),
            bounds: vec![Duration::from_micros(300)],
        };
        let out = run(&o).expect("stalls run");
        assert_eq!(out.len(), allowed_cpus().expect("cpus").len());
        for c in &out {
            assert!(c.elapsed >= o.duration, "{:?}", c.elapsed);
            assert!(c.waiting_share(0) < 1.0);
        }
    }

    #[test]
    fn a_zero_duration_is_a_clear_error() {
        let o = StallOptions {
            duration: Duration::ZERO,
            min_gap: Duration::from_micros(20),
            bounds: vec![],
        };
        assert!(run(&o).is_err());
    }
}
