//! A fence: the moment the (real or emulated) GPU is done with the buffers
//! of a submission. An object with an unsignaled fence is *busy*: the
//! shrinker and eviction skip it, like TTM skips BOs with unsignaled
//! reservation fences.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A one-shot completion flag shared between the submitter and the objects
/// it uses. Cloning shares the same fence.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicBool>);

impl Fence {
    /// A new, unsignaled fence.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fence that is already signaled.
    pub fn signaled() -> Self {
        let f = Self::new();
        f.signal();
        f
    }

    /// Marks the work done.
    pub fn signal(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the work is done.
    pub fn is_signaled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_signal() {
        let f = Fence::new();
        let g = f.clone();
        assert!(!g.is_signaled());
        f.signal();
        assert!(g.is_signaled());
        assert!(Fence::signaled().is_signaled());
    }
}
