//! The queue loop's one-shot wake-up timer: a non-blocking timerfd
//! (`vmm_sys_util`'s [`TimerFd`], switched to non-blocking here).
//!
//! Non-blocking matters: the loop may see the timer's epoll event after
//! the timer was re-armed or disarmed by queue work in the same wake-up
//! (which resets the kernel's expiry count); reading it then must not block
//! the worker.
//!
//! Must not: know what it wakes the loop for.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use vmm_sys_util::timerfd::TimerFd;

/// The longest expiry the kernel takes (`TimerFd` converts whole seconds
/// to `time_t`; longer waits are as good as never).
const MAX_AFTER: Duration = Duration::from_secs(libc::time_t::MAX as u64);

/// A one-shot monotonic timer whose fd is readable once it has fired.
#[derive(Debug)]
pub struct WakeTimer {
    timer: TimerFd,
    armed: bool,
}

impl WakeTimer {
    /// A disarmed timer.
    pub fn new() -> io::Result<Self> {
        // TimerFd is CLOEXEC but blocking; `consume` must never block.
        let timer = TimerFd::new()?;
        let this = Self {
            timer,
            armed: false,
        };
        rustix::io::ioctl_fionbio(this.as_fd(), true)?;
        Ok(this)
    }

    /// Fires once after `after` (at least 1 ns: zero would disarm).
    pub fn arm(&mut self, after: Duration) -> io::Result<()> {
        let after = after.clamp(Duration::from_nanos(1), MAX_AFTER);
        self.timer.reset(after, None)?;
        self.armed = true;
        Ok(())
    }

    /// Cancels a pending expiry (nothing to do when not armed).
    pub fn disarm(&mut self) -> io::Result<()> {
        if self.armed {
            self.timer.clear()?;
            self.armed = false;
        }
        Ok(())
    }

    /// Whether an expiry is pending.
    #[cfg(test)]
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Consumes a fired expiry; never blocks. True if the timer had fired.
    pub fn consume(&mut self) -> bool {
        match self.timer.wait() {
            Ok(_) => {
                self.armed = false;
                true
            }
            // EAGAIN: re-armed or disarmed since the event was queued.
            Err(_) => false,
        }
    }
}

impl AsFd for WakeTimer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is the one `self.timer` owns (TimerFd holds it in
        // a `File`) and stays open while `self` lives; the borrow cannot
        // outlive `&self`. TimerFd implements only `AsRawFd`.
        unsafe { BorrowedFd::borrow_raw(self.timer.as_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{poll, PollFd, PollFlags};
    use rustix::time::Timespec;

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

    #[test]
    fn the_longest_wait_is_accepted_and_never_fires() {
        let mut t = WakeTimer::new().expect("timerfd");
        t.arm(Duration::MAX).expect("arm beyond time_t");
        assert!(t.is_armed());
        assert!(!fired(&t, Duration::from_millis(1)));
        assert!(!t.consume());
        t.disarm().expect("disarm");
        assert!(!t.is_armed());
    }
}
