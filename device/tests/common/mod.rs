//! Helpers the binary-driving tests share.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses its own subset; tests may panic

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use vhost::vhost_user::Frontend;

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

/// Waits up to `timeout` for `child` to exit; its status, if it did.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A vhost-user frontend connected to `path` (retrying for 10 s while the
/// daemon starts).
pub fn connect(path: &Path) -> Frontend {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Frontend::connect(path, 2) {
            Ok(f) => return f,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("connect: {e}"),
        }
    }
}
