//! The queue loop's one-shot wake-up timer: a non-blocking timerfd.
//!
//! Non-blocking matters: the loop may see the timer's epoll event after
//! the timer was re-armed or disarmed by queue work in the same wake-up
//! (which resets the kernel's expiry count); reading it then must not block
//! the worker.
//!
//! Must not: know what it wakes the loop for.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

/// A one-shot monotonic timer whose fd is readable once it has fired.
#[derive(Debug)]
pub struct WakeTimer {
    fd: OwnedFd,
    armed: bool,
}

impl WakeTimer {
    /// A disarmed timer.
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd, armed: false })
    }

    /// Fires once after `after` (at least 1 ns: zero would disarm).
    pub fn arm(&mut self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        self.set(Timespec {
            tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(after.subsec_nanos()),
        })?;
        self.armed = true;
        Ok(())
    }

    /// Cancels a pending expiry (nothing to do when not armed).
    pub fn disarm(&mut self) -> io::Result<()> {
        if self.armed {
            self.set(Timespec::default())?;
            self.armed = false;
        }
        Ok(())
    }

    /// Whether an expiry is pending.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Consumes a fired expiry; never blocks. True if the timer had fired.
    pub fn consume(&mut self) -> bool {
        let mut count = [0u8; 8];
        match rustix::io::read(&self.fd, &mut count) {
            Ok(8) => {
                self.armed = false;
                true
            }
            // EAGAIN: re-armed or disarmed since the event was queued.
            _ => false,
        }
    }

    fn set(&self, value: Timespec) -> io::Result<()> {
        let spec = Itimerspec {
            it_interval: Timespec::default(),
            it_value: value,
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }
}

impl AsFd for WakeTimer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{poll, PollFd, PollFlags};

    fn fired(t: &WakeTimer, wait: Duration) -> bool {
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut p = [PollFd::new(t, PollFlags::IN)];
        poll(&mut p, Some(&ts)).expect("poll") == 1
    }

    #[test]
    fn fires_once_and_consumes_without_blocking() {
        let mut t = WakeTimer::new().expect("timerfd");
        assert!(
            !t.consume(),
            "a disarmed timer reads nothing and does not block"
        );
        t.arm(Duration::from_micros(100)).expect("arm");
        assert!(t.is_armed());
        assert!(fired(&t, Duration::from_millis(500)));
        assert!(t.consume());
        assert!(!t.is_armed());
        assert!(!t.consume(), "one expiry is consumed once");
    }

    // The queue loop's race: an expiry is queued in epoll, then queue work
    // re-arms or disarms the timer before the timer event is handled.
    #[test]
    fn reading_after_a_rearm_or_disarm_does_not_block() {
        let mut t = WakeTimer::new().expect("timerfd");
        t.arm(Duration::from_micros(1)).expect("arm");
        assert!(fired(&t, Duration::from_millis(500)));
        t.arm(Duration::from_secs(60)).expect("re-arm");
        assert!(
            !t.consume(),
            "the earlier expiry was reset, and reading returns at once"
        );
        assert!(t.is_armed(), "the new expiry is still pending");
        t.disarm().expect("disarm");
        assert!(!t.consume());
        assert!(!fired(&t, Duration::from_millis(1)));
    }
}
