//! The DRM device node, for the `drm` crate's KMS calls and the virtgpu
//! ioctls.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// `/dev/dri/card0`, opened read-write.
#[derive(Debug)]
pub struct Card(File);

impl Card {
    /// Opens the first card.
    pub fn open() -> io::Result<Self> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/dri/card0")
            .map(Card)
    }
}

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl drm::Device for Card {}
impl drm::control::Device for Card {}
