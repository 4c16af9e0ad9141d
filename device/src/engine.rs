//! The GPU engine as the device sees it: submissions in flight and the
//! fences that say when each is done.
//!
//! * On the emulated device nothing executes: a GEM_EXECBUFFER2 is
//!   validated, its buffers are marked busy with a fence, and the fence
//!   signals after a configurable "execution" time.
//! * On a host GPU the kernel executes it and answers with an out-fence
//!   (a sync_file, readable once the GPU is done); the engine holds it and
//!   signals the matching [`Fence`] when it becomes readable.
//!
//! The queue layer polls the engine when its timer fires (the next
//! emulated deadline) and when [`Engine::wakeup_fd`] becomes readable: an
//! epoll set holding every outstanding kernel out-fence, which the queue
//! layer registers once in its own event loop, so a finished GPU job wakes
//! the device at once and nothing is polled while jobs run. Should the
//! epoll set be unavailable (`epoll_create` failed), outstanding kernel
//! fences are polled every [`KERNEL_FENCE_POLL`] instead. Fenced virtio
//! commands that carried a submission complete when its fence signals.
//!
//! Must not: touch buffers or queues; it only turns time and kernel
//! fences into signaled [`Fence`]s.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{epoll, poll, PollFd, PollFlags, Timespec};
use vgpu_backend::Fence;

/// How often outstanding kernel fences are checked when they cannot sit
/// in the epoll set.
pub const KERNEL_FENCE_POLL: Duration = Duration::from_micros(500);

/// Kernel submissions one VM may have in flight (each holds a sync_file
/// descriptor of the daemon until it signals).
pub const MAX_KERNEL_FENCES: usize = 1024;

/// How long a submission beyond [`MAX_KERNEL_FENCES`] waits for the oldest
/// one before it is refused (the guest is throttled, as i915 throttles a
/// client that runs too far ahead of the GPU).
pub const THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// Submissions in flight.
#[derive(Debug)]
pub struct Engine {
    delay: Duration,
    pending: Vec<(Instant, Fence)>,
    /// Kernel out-fences in submission order, and whether each sits in
    /// `wakeup` (one that could not be added is polled on the timer).
    kernel: Vec<(OwnedFd, Fence, bool)>,
    /// Epoll set of the fds in `kernel`: readable while any of them is.
    wakeup: Option<OwnedFd>,
    /// Fences that signal once all their parts have.
    joins: Vec<(Vec<Fence>, Fence)>,
    max_kernel: usize,
}

impl Engine {
    /// An engine whose emulated submissions take `delay`.
    pub fn new(delay: Duration) -> Self {
        let wakeup = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| {
                log::warn!(
                    "no epoll set for GPU out-fences ({e}); polling them every {KERNEL_FENCE_POLL:?}"
                )
            })
            .ok();
        Self {
            delay,
            pending: Vec::new(),
            kernel: Vec::new(),
            wakeup,
            joins: Vec::new(),
            max_kernel: MAX_KERNEL_FENCES,
        }
    }

    /// The same engine with another cap on kernel fences in flight.
    pub fn with_kernel_fence_limit(mut self, max: usize) -> Self {
        self.max_kernel = max.max(1);
        self
    }

    /// An fd that is readable while a tracked kernel out-fence has
    /// signaled and [`Engine::poll`] has not yet seen it; `None` when
    /// kernel fences must be polled on [`Engine::next_deadline`] instead.
    pub fn wakeup_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wakeup.as_ref().map(|fd| fd.as_fd())
    }

    /// Starts an emulated submission; its fence signals when it is done.
    pub fn submit(&mut self) -> Fence {
        if self.delay.is_zero() {
            return Fence::signaled();
        }
        let fence = Fence::new();
        self.pending
            .push((Instant::now() + self.delay, fence.clone()));
        fence
    }

    /// Tracks a kernel submission's out-fence (a sync_file); the returned
    /// fence signals when it becomes readable.
    pub fn track(&mut self, out_fence: OwnedFd) -> Fence {
        let fence = Fence::new();
        if readable(&out_fence) {
            fence.signal();
            return fence;
        }
        let watched = match &self.wakeup {
            Some(set) => epoll::add(
                set,
                &out_fence,
                epoll::EventData::new_u64(0),
                epoll::EventFlags::IN,
            )
            .map_err(|e| {
                // E.g. the user's epoll watch limit: poll this one instead.
                log::warn!("GPU out-fence not added to the epoll set ({e}); polling it");
            })
            .is_ok(),
            None => false,
        };
        self.kernel.push((out_fence, fence.clone(), watched));
        fence
    }

    /// A fence that signals once every one of `parts` has (a SUBMIT_3D
    /// with several submissions completes when the last of them does,
    /// whatever engine or context each ran on).
    pub fn join(&mut self, parts: Vec<Fence>) -> Fence {
        let mut open: Vec<Fence> = parts.into_iter().filter(|f| !f.is_signaled()).collect();
        match open.len() {
            0 => Fence::signaled(),
            1 => open.pop().unwrap_or_else(Fence::signaled),
            _ => {
                let joined = Fence::new();
                self.joins.push((open, joined.clone()));
                joined
            }
        }
    }

    /// Room for one more kernel submission: when [`MAX_KERNEL_FENCES`]
    /// are in flight, waits up to [`THROTTLE_WAIT`] for the oldest.
    /// False if there is still no room (the submission must be refused).
    pub fn throttle(&mut self) -> bool {
        if self.kernel.len() < self.max_kernel {
            return true;
        }
        if let Some((oldest, _, _)) = self.kernel.first() {
            let wait = Timespec {
                tv_sec: i64::try_from(THROTTLE_WAIT.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(THROTTLE_WAIT.subsec_nanos()),
            };
            let mut p = [PollFd::new(oldest, PollFlags::IN)];
            let _ = poll(&mut p, Some(&wait));
        }
        self.poll(Instant::now());
        self.kernel.len() < self.max_kernel
    }

    /// Kernel submissions whose out-fence has not signaled yet.
    pub fn kernel_in_flight(&self) -> usize {
        self.kernel.len()
    }

    /// Signals every submission that is done by `now`; true if any was.
    pub fn poll(&mut self, now: Instant) -> bool {
        let before = self.pending.len() + self.kernel.len() + self.joins.len();
        self.pending.retain(|(due, fence)| {
            if *due <= now {
                fence.signal();
                false
            } else {
                true
            }
        });
        if !self.kernel.is_empty() {
            let done = signaled(self.kernel.iter().map(|(fd, _, _)| fd));
            let mut done = done.into_iter();
            let set = self.wakeup.as_ref();
            self.kernel.retain(|(fd, fence, watched)| {
                if done.next().unwrap_or(false) {
                    fence.signal();
                    if *watched {
                        unwatch(set, fd);
                    }
                    false
                } else {
                    true
                }
            });
        }
        self.joins.retain(|(parts, joined)| {
            if parts.iter().all(Fence::is_signaled) {
                joined.signal();
                false
            } else {
                true
            }
        });
        self.pending.len() + self.kernel.len() + self.joins.len() != before
    }

    /// When the engine next needs polling.
    pub fn next_deadline(&self) -> Option<Instant> {
        let emulated = self.pending.iter().map(|(due, _)| *due).min();
        let kernel = self
            .kernel
            .iter()
            .any(|(_, _, watched)| !watched)
            .then(|| Instant::now() + KERNEL_FENCE_POLL);
        match (emulated, kernel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Signals everything (device reset: the guest waits for nothing).
    /// Kernel work still runs; the buffer manager keeps its buffers busy
    /// through the kernel's own tracking.
    pub fn finish_all(&mut self) {
        for (_, f) in self.pending.drain(..) {
            f.signal();
        }
        for (fd, f, watched) in self.kernel.drain(..) {
            f.signal();
            if watched {
                unwatch(self.wakeup.as_ref(), &fd);
            }
        }
        for (_, f) in self.joins.drain(..) {
            f.signal();
        }
    }
}

/// Takes `fd` out of the wakeup set before it is closed.
fn unwatch(set: Option<&OwnedFd>, fd: &OwnedFd) {
    if let Some(set) = set {
        // Closing the fd would drop it from the set too; deleting first
        // keeps the set exact even if the kernel still holds the file.
        let _ = epoll::delete(set, fd);
    }
}

/// Whether a sync_file (or any pollable fd) has signaled.
fn readable(fd: &OwnedFd) -> bool {
    signaled(std::iter::once(fd))
        .first()
        .copied()
        .unwrap_or(true)
}

/// Which of `fds` have signaled, in one `poll` call. An fd in error
/// (POLLERR, POLLNVAL) counts as signaled: waiting on it could never end.
/// A failed `poll` (EINTR, ENOMEM) says nothing has: the next poll asks
/// again, and no fence completes while the GPU may still be running.
fn signaled<'a>(fds: impl Iterator<Item = &'a OwnedFd>) -> Vec<bool> {
    let mut polled: Vec<PollFd<'_>> = fds.map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    match poll(&mut polled, Some(&Timespec::default())) {
        Ok(0) | Err(_) => vec![false; polled.len()],
        Ok(_) => polled.iter().map(|p| !p.revents().is_empty()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_signal_when_due() {
        let mut e = Engine::new(Duration::from_millis(5));
        let f = e.submit();
        assert!(!f.is_signaled());
        let t0 = Instant::now();
        assert!(!e.poll(t0));
        assert!(e.next_deadline().is_some());
        assert!(e.poll(t0 + Duration::from_millis(6)));
        assert!(f.is_signaled());
        assert!(Engine::new(Duration::ZERO).submit().is_signaled());
    }

    #[test]
    fn kernel_fences_signal_when_their_fd_becomes_readable() {
        let mut e = Engine::new(Duration::ZERO);
        let (fd, ours) = out_fence();
        let f = e.track(fd);
        assert!(!f.is_signaled());
        assert!(!e.poll(Instant::now()));
        assert!(e.next_deadline().is_none(), "kernel fences wake the loop");
        assert!(!wakes(&e), "nothing signaled yet");
        let (second, second_ours) = out_fence();
        let g = e.track(second);
        signal(&second_ours);
        assert!(wakes(&e), "a signaled out-fence wakes the loop");
        assert!(e.poll(Instant::now()));
        assert!(!wakes(&e), "seen fences leave the wakeup set");
        assert!(!f.is_signaled() && g.is_signaled(), "only the signaled one");
        signal(&ours);
        assert!(e.poll(Instant::now()));
        assert!(f.is_signaled());
        assert!(e.next_deadline().is_none());
        assert!(!wakes(&e));
    }

    #[test]
    fn without_a_wakeup_set_kernel_fences_are_polled() {
        let mut e = Engine::new(Duration::ZERO);
        e.wakeup = None;
        let (fd, ours) = out_fence();
        let f = e.track(fd);
        let polled = e.next_deadline().expect("kernel fences need polling");
        assert!(polled <= Instant::now() + KERNEL_FENCE_POLL);
        signal(&ours);
        assert!(e.poll(Instant::now()));
        assert!(f.is_signaled());
        assert!(e.next_deadline().is_none());
    }

    #[test]
    fn finish_all_empties_the_wakeup_set() {
        let mut e = Engine::new(Duration::ZERO);
        let (fd, ours) = out_fence();
        let f = e.track(fd);
        e.finish_all();
        assert!(f.is_signaled());
        signal(&ours);
        assert!(!wakes(&e), "a finished fence no longer wakes the loop");
    }

    #[test]
    fn a_joined_fence_signals_after_all_its_parts() {
        let mut e = Engine::new(Duration::from_millis(5));
        let emulated = e.submit();
        let (fd, ours) = out_fence();
        let kernel = e.track(fd);
        let joined = e.join(vec![emulated.clone(), kernel.clone(), Fence::signaled()]);
        assert!(!joined.is_signaled());
        e.poll(Instant::now() + Duration::from_millis(6));
        assert!(
            emulated.is_signaled() && !joined.is_signaled(),
            "the kernel part runs"
        );
        signal(&ours);
        assert!(e.poll(Instant::now()));
        assert!(joined.is_signaled());
        assert!(e.join(vec![Fence::signaled()]).is_signaled());
        let one = Fence::new();
        let same = e.join(vec![one.clone()]);
        one.signal();
        assert!(same.is_signaled(), "a single part is its own join");
    }

    #[test]
    fn kernel_submissions_beyond_the_limit_are_throttled() {
        let mut e = Engine::new(Duration::ZERO).with_kernel_fence_limit(2);
        let mut ours = Vec::new();
        for _ in 0..2 {
            assert!(e.throttle());
            let (fd, mine) = out_fence();
            ours.push(mine);
            e.track(fd);
        }
        assert_eq!(e.kernel_in_flight(), 2);
        // The oldest finishes while the third submission waits for room.
        let oldest = ours.remove(0);
        let signaler = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            signal(&oldest);
        });
        assert!(e.throttle(), "room once the oldest signaled");
        signaler.join().expect("signaler");
        assert_eq!(e.kernel_in_flight(), 1);
        e.track(out_fence().0);
        // Nothing finishes: refused after THROTTLE_WAIT.
        assert!(!e.throttle());
    }

    #[test]
    fn fences_the_epoll_set_refuses_are_polled_not_completed_early() {
        let mut e = Engine::new(Duration::ZERO);
        // An fd that is no epoll set makes every epoll_ctl fail, as a full
        // watch limit would.
        e.wakeup = Some(out_fence().0);
        let (fd, ours) = out_fence();
        let f = e.track(fd);
        assert!(!f.is_signaled(), "still running");
        assert!(
            e.next_deadline().is_some(),
            "the unwatched fence needs the timer"
        );
        assert!(!e.poll(Instant::now()));
        signal(&ours);
        assert!(e.poll(Instant::now()));
        assert!(f.is_signaled());
        assert!(e.next_deadline().is_none());
    }

    /// A stand-in for a kernel out-fence: the fd to track and a copy that
    /// signals it.
    fn out_fence() -> (OwnedFd, OwnedFd) {
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
        let signaler = fd.try_clone().expect("dup");
        (fd, signaler)
    }

    fn signal(fd: &OwnedFd) {
        rustix::io::write(fd, &1u64.to_ne_bytes()).expect("signal");
    }

    fn wakes(e: &Engine) -> bool {
        let fd = e.wakeup_fd().expect("epoll set");
        let mut p = [PollFd::new(&fd, PollFlags::IN)];
        poll(&mut p, Some(&Timespec::default())).expect("poll") == 1
    }
}
