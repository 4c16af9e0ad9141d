//! Adaptive polling of the control queue after a batch, in the manner of
//! KVM's halt-polling: when the guest's next command tends to come within
//! a few tens of microseconds of the last answer, the worker waits for it
//! by watching the avail ring instead of sleeping in epoll — no kick, no
//! wake-up of a sleeping (possibly idle, possibly other) CPU.
//!
//! The window adapts to how long the worker actually slept: a wake-up
//! that came within the largest window (polling would have caught it)
//! doubles the window, from [`START`]; a sleep longer than that halves it,
//! down to nothing. So a queue whose commands come further apart — a real
//! guest's display loop, an idle VM — is not polled at all, and the CPU a
//! poll may cost is at most the largest window per sleep. The policy is
//! pure (time passed in); the worker does the watching.
//!
//! Owns: the window and its counters. Must not: touch rings or memory.

use std::time::{Duration, Instant};

/// The first window after a short sleep.
pub const START: Duration = Duration::from_micros(10);
/// The largest window by default (`--poll-us`).
pub const DEFAULT_MAX: Duration = Duration::from_micros(50);

/// What polling did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollCounts {
    /// Windows polled.
    pub polls: u64,
    /// Of those, the ones that found work.
    pub hits: u64,
    /// Time spent watching, in total.
    pub spent: Duration,
}

/// The adaptive window.
#[derive(Debug, Clone)]
pub struct AdaptivePoll {
    max: Duration,
    window: Duration,
    slept_at: Option<Instant>,
    counts: PollCounts,
}

impl AdaptivePoll {
    /// A policy whose window never exceeds `max` (zero: never polls).
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            window: Duration::ZERO,
            slept_at: None,
            counts: PollCounts::default(),
        }
    }

    /// How long to watch the queue now (zero: go to sleep).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The worker goes back to epoll at `now`.
    pub fn sleeping(&mut self, now: Instant) {
        self.slept_at = Some(now);
    }

    /// A kick woke the worker at `now`: adapt the window to the sleep.
    pub fn woke(&mut self, now: Instant) {
        let Some(at) = self.slept_at.take() else {
            return;
        };
        if self.max.is_zero() {
            return;
        }
        if now.saturating_duration_since(at) <= self.max {
            self.window = if self.window.is_zero() {
                START.min(self.max)
            } else {
                (self.window * 2).min(self.max)
            };
        } else {
            self.window /= 2;
            if self.window < START {
                self.window = Duration::ZERO;
            }
        }
    }

    /// A window was watched for `spent`; `hit` if work came.
    pub fn polled(&mut self, hit: bool, spent: Duration) {
        self.counts.polls += 1;
        self.counts.hits += u64::from(hit);
        self.counts.spent += spent;
    }

    /// The counters so far.
    pub fn counts(&self) -> PollCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn short_sleeps_grow_the_window_long_ones_shrink_it_to_nothing() {
        let t0 = Instant::now();
        let mut p = AdaptivePoll::new(us(50));
        assert_eq!(p.window(), Duration::ZERO, "starts off");
        // A kick with no sleep noted (the first one) changes nothing.
        p.woke(t0);
        assert_eq!(p.window(), Duration::ZERO);
        let mut at = t0;
        let mut sleep = |p: &mut AdaptivePoll, gap: u64| {
            p.sleeping(at);
            at += us(gap);
            p.woke(at);
            p.window()
        };
        assert_eq!(sleep(&mut p, 20), us(10), "a short sleep: the first window");
        assert_eq!(sleep(&mut p, 20), us(20));
        assert_eq!(sleep(&mut p, 5), us(40));
        assert_eq!(sleep(&mut p, 50), us(50), "capped at the largest window");
        assert_eq!(sleep(&mut p, 30), us(50));
        assert_eq!(sleep(&mut p, 51), us(25), "a long sleep halves it");
        assert_eq!(sleep(&mut p, 1000), Duration::from_nanos(12_500));
        assert_eq!(sleep(&mut p, 1000), Duration::ZERO, "below the start: off");
        assert_eq!(
            sleep(&mut p, 1000),
            Duration::ZERO,
            "an idle queue stays off"
        );
    }

    #[test]
    fn a_zero_maximum_never_polls() {
        let t0 = Instant::now();
        let mut p = AdaptivePoll::new(Duration::ZERO);
        for i in 0..10 {
            p.sleeping(t0 + us(i));
            p.woke(t0 + us(i));
            assert_eq!(p.window(), Duration::ZERO);
        }
    }

    #[test]
    fn counts_add_up() {
        let mut p = AdaptivePoll::new(us(50));
        p.polled(true, us(3));
        p.polled(false, us(50));
        assert_eq!(
            p.counts(),
            PollCounts {
                polls: 2,
                hits: 1,
                spent: us(53)
            }
        );
    }
}
