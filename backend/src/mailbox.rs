//! `Mailbox`: messages for a thread that sleeps in `poll`/`epoll`, with an
//! eventfd that becomes readable when one arrives. The pressure monitor's
//! control channel and the purge notices to a VM's device are mailboxes.
//!
//! Owns: the queue (a mutex held only to push or take everything) and the
//! eventfd. Senders never block on the receiver.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use rustix::event::EventfdFlags;

/// A queue of `T` with an eventfd to wait on.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    queue: Mutex<Vec<T>>,
    wake: OwnedFd,
}

impl<T> Mailbox<T> {
    /// An empty mailbox.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            queue: Mutex::new(Vec::new()),
            wake: rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    /// Queues `message` and makes the eventfd readable.
    pub fn send(&self, message: T) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        // A full counter (never, in practice) still leaves it readable.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Everything queued, oldest first; clears the eventfd.
    pub fn drain(&self) -> Vec<T> {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut buf);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The eventfd to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{PollFd, PollFlags};

    fn readable(m: &Mailbox<u32>) -> bool {
        let mut fds = [PollFd::from_borrowed_fd(m.fd(), PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).unwrap_or(0) == 1
    }

    #[test]
    fn messages_arrive_in_order_and_wake_the_reader_once_drained() {
        let m = Mailbox::new().unwrap();
        assert!(!readable(&m));
        m.send(1);
        m.send(2);
        assert!(readable(&m));
        assert_eq!(m.drain(), vec![1, 2]);
        assert!(!readable(&m), "drained");
        assert!(m.drain().is_empty());
    }
}
