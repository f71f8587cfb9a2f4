//! Small single-shard synchronisation primitives for group commit and long polling.
//! They are `!Send` by design: everything here lives and is awaited on one shard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Wakes every waiter when something changes; waiters re-check their own condition.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            seen: self.generation.get(),
        }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    seen: u64,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.seen {
            return Poll::Ready(());
        }
        self.notify.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// How far the commitlog is durable, and which flush attempts failed.
///
/// Invariant: `durable` only grows, and only after the flush that covers it (an fdatasync, or
/// an O_DSYNC write) returned OK.
///
/// Waiters sit in a queue ordered by the end they wait for, so a flush wakes exactly the
/// appends it covered, and none of them arms a timer: [`Durability::expire`], called on a
/// coarse tick, times out the ones past their deadline. (A timer per SYNC_FLUSH append, and
/// waking every waiter on every flush, took about a tenth of a shard's CPU at 200k appends/s.)
#[derive(Default)]
pub struct Durability {
    durable: Cell<u64>,
    attempt_seq: Cell<u64>,
    /// (attempt sequence, end it tried to make durable, error text) of recent failed flushes.
    failures: RefCell<VecDeque<(u64, u64, String)>>,
    waiters: RefCell<VecDeque<Waiter>>,
    /// Notified when the waiter queue goes from empty to not empty (the tick can sleep).
    pub first_waiter: Notify,
}

struct Waiter {
    end: u64,
    deadline: Instant,
    waker: Waker,
}

/// Why a wait for durability ended without the data being durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// A flush that covered the data failed: it was not made durable.
    Failed(String),
    /// The deadline passed first; the data may still become durable later.
    TimedOut,
}

const FAILURES_KEPT: usize = 256;

impl Durability {
    pub fn new(durable: u64) -> Self {
        let d = Self::default();
        d.durable.set(durable);
        d
    }

    pub fn durable(&self) -> u64 {
        self.durable.get()
    }

    pub fn attempt_seq(&self) -> u64 {
        self.attempt_seq.get()
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.borrow().is_empty()
    }

    pub fn flushed_ok(&self, end: u64) {
        debug_assert!(end >= self.durable.get(), "durable offset went backwards");
        self.attempt_seq.set(self.attempt_seq.get() + 1);
        self.durable.set(end);
        let mut woken = Vec::new();
        {
            let mut w = self.waiters.borrow_mut();
            while w.front().is_some_and(|x| x.end <= end) {
                if let Some(x) = w.pop_front() {
                    woken.push(x.waker);
                }
            }
        }
        // Wake outside the borrow: a waker may run code that registers again.
        woken.into_iter().for_each(Waker::wake);
    }

    pub fn flush_failed(&self, end: u64, error: String) {
        self.attempt_seq.set(self.attempt_seq.get() + 1);
        let mut f = self.failures.borrow_mut();
        if f.len() == FAILURES_KEPT {
            f.pop_front();
        }
        f.push_back((self.attempt_seq.get(), end, error));
        drop(f);
        // Rare: every waiter re-checks whether this failure covers it.
        let woken: Vec<Waiter> = self.waiters.borrow_mut().drain(..).collect();
        woken.into_iter().for_each(|x| x.waker.wake());
    }

    /// Wakes the waiters whose deadline is at or before `now`; they complete with `TimedOut`.
    pub fn expire(&self, now: Instant) {
        let mut woken = Vec::new();
        self.waiters.borrow_mut().retain(|x| {
            if x.deadline <= now {
                woken.push(x.waker.clone());
                false
            } else {
                true
            }
        });
        woken.into_iter().for_each(Waker::wake);
    }

    /// Waits until `end` is durable. Fails if a flush that covered `end` failed after `since`
    /// (the attempt sequence read when the data was appended): that data was not made durable.
    /// Times out only when [`Durability::expire`] runs after `timeout` has passed.
    pub fn wait(&self, end: u64, since: u64, timeout: Duration) -> DurableWait<'_> {
        DurableWait {
            d: self,
            end,
            since,
            timeout,
            deadline: None,
        }
    }

    fn failure_covering(&self, end: u64, since: u64) -> Option<String> {
        self.failures
            .borrow()
            .iter()
            .find(|(seq, upto, _)| *seq > since && *upto >= end)
            .map(|(_, _, e)| e.clone())
    }

    fn register(&self, end: u64, deadline: Instant, waker: Waker) {
        let mut w = self.waiters.borrow_mut();
        let was_empty = w.is_empty();
        let x = Waiter {
            end,
            deadline,
            waker,
        };
        // Appends register in offset order, so this is almost always a push at the back.
        if w.back().is_none_or(|b| b.end <= end) {
            w.push_back(x);
        } else {
            let at = w.partition_point(|b| b.end <= end);
            w.insert(at, x);
        }
        drop(w);
        if was_empty {
            self.first_waiter.notify_all();
        }
    }
}

pub struct DurableWait<'a> {
    d: &'a Durability,
    end: u64,
    since: u64,
    timeout: Duration,
    deadline: Option<Instant>,
}

impl Future for DurableWait<'_> {
    type Output = Result<(), WaitError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let d = self.d;
        if d.durable.get() >= self.end {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = d.failure_covering(self.end, self.since) {
            return Poll::Ready(Err(WaitError::Failed(e)));
        }
        let now = Instant::now();
        let timeout = self.timeout;
        let deadline = *self.deadline.get_or_insert(now + timeout);
        if now >= deadline {
            return Poll::Ready(Err(WaitError::TimedOut));
        }
        // A spurious poll may register twice; the extra entry goes at the next flush or tick.
        d.register(self.end, deadline, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(f: &mut Pin<Box<DurableWait<'_>>>, c: &Arc<Count>) -> Poll<Result<(), WaitError>> {
        let w = Waker::from(c.clone());
        f.as_mut().poll(&mut Context::from_waker(&w))
    }

    #[test]
    fn given_waiters_registered_out_of_order_when_a_flush_covers_some_should_wake_exactly_those() {
        let d = Durability::new(0);
        let long = Duration::from_secs(60);
        let ends = [30u64, 10, 50, 20, 40];
        let counts: Vec<Arc<Count>> = ends
            .iter()
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let mut futs: Vec<_> = ends.iter().map(|&e| Box::pin(d.wait(e, 0, long))).collect();
        for (f, c) in futs.iter_mut().zip(&counts) {
            assert!(poll(f, c).is_pending());
        }
        d.flushed_ok(30);
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, vec![1, 1, 0, 1, 0]);
        for (i, (f, c)) in futs.iter_mut().zip(&counts).enumerate() {
            let ready = matches!(poll(f, c), Poll::Ready(Ok(())));
            assert_eq!(ready, ends[i] <= 30, "end {}", ends[i]);
        }
        d.flushed_ok(50);
        assert!(futs
            .iter_mut()
            .zip(&counts)
            .all(|(f, c)| matches!(poll(f, c), Poll::Ready(Ok(())))));
    }

    #[test]
    fn given_a_failed_flush_when_waiting_should_fail_only_waiters_it_covered_and_expire_the_rest() {
        let d = Durability::new(0);
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let mut covered = Box::pin(d.wait(10, d.attempt_seq(), Duration::from_secs(60)));
        let mut beyond = Box::pin(d.wait(100, d.attempt_seq(), Duration::from_secs(60)));
        assert!(poll(&mut covered, &c).is_pending());
        assert!(poll(&mut beyond, &c).is_pending());
        d.flush_failed(50, "injected".into());
        assert_eq!(
            poll(&mut covered, &c),
            Poll::Ready(Err(WaitError::Failed("injected".into())))
        );
        assert!(poll(&mut beyond, &c).is_pending());
        // Its deadline is 1 ns after its first poll: past by the time `expire` runs.
        let mut late = Box::pin(d.wait(200, d.attempt_seq(), Duration::from_nanos(1)));
        let late_count = Arc::new(Count(AtomicUsize::new(0)));
        assert!(poll(&mut late, &late_count).is_pending());
        let before = c.0.load(Ordering::SeqCst);
        d.expire(Instant::now());
        assert_eq!(
            late_count.0.load(Ordering::SeqCst),
            1,
            "the expired waiter is woken"
        );
        assert_eq!(
            c.0.load(Ordering::SeqCst),
            before,
            "a waiter within its deadline is not"
        );
        assert_eq!(
            poll(&mut late, &late_count),
            Poll::Ready(Err(WaitError::TimedOut))
        );
        assert!(poll(&mut beyond, &c).is_pending());
    }
}
