//! The emulated GPU engine. On the emulated device nothing executes: a
//! GEM_EXECBUFFER2 is validated, its buffers are marked busy with a fence,
//! and the fence signals after a configurable "execution" time. Fenced
//! virtio commands that carried the submission complete when it signals.

use std::time::{Duration, Instant};

use vgpu_backend::Fence;

/// Submissions in flight on the emulated engine.
#[derive(Debug, Default)]
pub struct EmulatedEngine {
    delay: Duration,
    pending: Vec<(Instant, Fence)>,
}

impl EmulatedEngine {
    /// An engine whose submissions take `delay`.
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            pending: Vec::new(),
        }
    }

    /// Starts a submission; its fence signals when it is done.
    pub fn submit(&mut self) -> Fence {
        if self.delay.is_zero() {
            return Fence::signaled();
        }
        let fence = Fence::new();
        self.pending
            .push((Instant::now() + self.delay, fence.clone()));
        fence
    }

    /// Signals every submission that is done by `now`; true if any was.
    pub fn poll(&mut self, now: Instant) -> bool {
        let before = self.pending.len();
        self.pending.retain(|(due, fence)| {
            if *due <= now {
                fence.signal();
                false
            } else {
                true
            }
        });
        self.pending.len() != before
    }

    /// When the next submission finishes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(due, _)| *due).min()
    }

    /// Signals everything (device reset: nothing will ever run).
    pub fn finish_all(&mut self) {
        for (_, f) in self.pending.drain(..) {
            f.signal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_signal_when_due() {
        let mut e = EmulatedEngine::new(Duration::from_millis(5));
        let f = e.submit();
        assert!(!f.is_signaled());
        let t0 = Instant::now();
        assert!(!e.poll(t0));
        assert!(e.next_deadline().is_some());
        assert!(e.poll(t0 + Duration::from_millis(6)));
        assert!(f.is_signaled());
        assert!(EmulatedEngine::new(Duration::ZERO).submit().is_signaled());
    }
}
