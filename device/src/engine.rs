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

/// How often outstanding kernel fences are checked when no epoll set
/// could be created for them.
pub const KERNEL_FENCE_POLL: Duration = Duration::from_micros(500);

/// Submissions in flight.
#[derive(Debug)]
pub struct Engine {
    delay: Duration,
    pending: Vec<(Instant, Fence)>,
    kernel: Vec<(OwnedFd, Fence)>,
    /// Epoll set of the fds in `kernel`: readable while any of them is.
    wakeup: Option<OwnedFd>,
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
        }
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
        if let Some(set) = &self.wakeup {
            let watched = epoll::add(
                set,
                &out_fence,
                epoll::EventData::new_u64(0),
                epoll::EventFlags::IN,
            );
            if let Err(e) = watched {
                // The fd cannot be watched (it is no pollable file): it
                // could never signal, so do not hold the guest on it.
                log::warn!("GPU out-fence cannot be waited for ({e}); completing it now");
                fence.signal();
                return fence;
            }
        }
        self.kernel.push((out_fence, fence.clone()));
        fence
    }

    /// Signals every submission that is done by `now`; true if any was.
    pub fn poll(&mut self, now: Instant) -> bool {
        let before = self.pending.len() + self.kernel.len();
        self.pending.retain(|(due, fence)| {
            if *due <= now {
                fence.signal();
                false
            } else {
                true
            }
        });
        if !self.kernel.is_empty() {
            let done = signaled(self.kernel.iter().map(|(fd, _)| fd));
            let mut done = done.into_iter();
            let set = self.wakeup.as_ref();
            self.kernel.retain(|(fd, fence)| {
                if done.next().unwrap_or(false) {
                    fence.signal();
                    unwatch(set, fd);
                    false
                } else {
                    true
                }
            });
        }
        self.pending.len() + self.kernel.len() != before
    }

    /// When the engine next needs polling.
    pub fn next_deadline(&self) -> Option<Instant> {
        let emulated = self.pending.iter().map(|(due, _)| *due).min();
        let kernel = (self.wakeup.is_none() && !self.kernel.is_empty())
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
        for (fd, f) in self.kernel.drain(..) {
            f.signal();
            unwatch(self.wakeup.as_ref(), &fd);
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

/// Which of `fds` have signaled, in one `poll` call. An fd in error counts
/// as signaled: waiting on it could never end.
fn signaled<'a>(fds: impl Iterator<Item = &'a OwnedFd>) -> Vec<bool> {
    let mut polled: Vec<PollFd<'_>> = fds.map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    match poll(&mut polled, Some(&Timespec::default())) {
        Ok(0) | Err(rustix::io::Errno::INTR) => vec![false; polled.len()],
        Ok(_) => polled.iter().map(|p| !p.revents().is_empty()).collect(),
        Err(_) => vec![true; polled.len()],
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
        use rustix::event::{eventfd, EventfdFlags};
        let mut e = Engine::new(Duration::ZERO);
        let fd = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
        let ours = fd.try_clone().expect("dup");
        let f = e.track(fd);
        assert!(!f.is_signaled());
        assert!(!e.poll(Instant::now()));
        assert!(e.next_deadline().is_none(), "kernel fences wake the loop");
        assert!(!wakes(&e), "nothing signaled yet");
        let second = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
        let second_ours = second.try_clone().expect("dup");
        let g = e.track(second);
        rustix::io::write(&second_ours, &1u64.to_ne_bytes()).expect("signal");
        assert!(wakes(&e), "a signaled out-fence wakes the loop");
        assert!(e.poll(Instant::now()));
        assert!(!wakes(&e), "seen fences leave the wakeup set");
        assert!(!f.is_signaled() && g.is_signaled(), "only the signaled one");
        rustix::io::write(&ours, &1u64.to_ne_bytes()).expect("signal");
        assert!(e.poll(Instant::now()));
        assert!(f.is_signaled());
        assert!(e.next_deadline().is_none());
        assert!(!wakes(&e));
    }

    #[test]
    fn without_a_wakeup_set_kernel_fences_are_polled() {
        use rustix::event::{eventfd, EventfdFlags};
        let mut e = Engine::new(Duration::ZERO);
        e.wakeup = None;
        let fd = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
        let ours = fd.try_clone().expect("dup");
        let f = e.track(fd);
        let polled = e.next_deadline().expect("kernel fences need polling");
        assert!(polled <= Instant::now() + KERNEL_FENCE_POLL);
        rustix::io::write(&ours, &1u64.to_ne_bytes()).expect("signal");
        assert!(e.poll(Instant::now()));
        assert!(f.is_signaled());
        assert!(e.next_deadline().is_none());
    }

    #[test]
    fn finish_all_empties_the_wakeup_set() {
        use rustix::event::{eventfd, EventfdFlags};
        let mut e = Engine::new(Duration::ZERO);
        let fd = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
        let ours = fd.try_clone().expect("dup");
        let f = e.track(fd);
        e.finish_all();
        assert!(f.is_signaled());
        rustix::io::write(&ours, &1u64.to_ne_bytes()).expect("signal");
        assert!(!wakes(&e), "a finished fence no longer wakes the loop");
    }

    fn wakes(e: &Engine) -> bool {
        let fd = e.wakeup_fd().expect("epoll set");
        let mut p = [PollFd::new(&fd, PollFlags::IN)];
        poll(&mut p, Some(&Timespec::default())).expect("poll") == 1
    }
}
