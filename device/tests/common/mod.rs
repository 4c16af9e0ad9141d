//! Helpers the binary-driving tests share.

#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits (bounded, 10 s) until `path` exists; panics naming it otherwise.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
