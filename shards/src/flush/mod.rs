//! Small single-shard synchronisation primitives for group commit and long polling.
//! They are `!Send` by design: everything here lives and is awaited on one shard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

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
/// Invariant: `durable` only grows, and only after the fdatasync that covers it returned OK.
#[derive(Default)]
pub struct Durability {
    durable: Cell<u64>,
    attempt_seq: Cell<u64>,
    /// (attempt sequence, end it tried to make durable, error text) of recent failed flushes.
    failures: RefCell<VecDeque<(u64, u64, String)>>,
    pub changed: Notify,
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

    pub fn flushed_ok(&self, end: u64) {
        debug_assert!(end >= self.durable.get(), "durable offset went backwards");
        self.attempt_seq.set(self.attempt_seq.get() + 1);
        self.durable.set(end);
        self.changed.notify_all();
    }

    pub fn flush_failed(&self, end: u64, error: String) {
        self.attempt_seq.set(self.attempt_seq.get() + 1);
        let mut f = self.failures.borrow_mut();
        if f.len() == FAILURES_KEPT {
            f.pop_front();
        }
        f.push_back((self.attempt_seq.get(), end, error));
        drop(f);
        self.changed.notify_all();
    }

    /// Waits until `end` is durable. Fails if a flush that covered `end` failed after `since`
    /// (the attempt sequence read when the data was appended): that data was not made durable.
    pub async fn wait(&self, end: u64, since: u64) -> Result<(), String> {
        loop {
            if self.durable.get() >= end {
                return Ok(());
            }
            if let Some((_, _, e)) = self
                .failures
                .borrow()
                .iter()
                .find(|(seq, upto, _)| *seq > since && *upto >= end)
            {
                return Err(e.clone());
            }
            self.changed.notified().await;
        }
    }
}
