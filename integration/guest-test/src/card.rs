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
        Self::open_path("/dev/dri/card0")
    }

    /// A file of its own for one GPU context, as Mesa opens one per
    /// context: the render node, or the card where there is none. (The
    /// kernel takes CONTEXT_INIT once per file, before any 3D ioctl.)
    pub fn open_for_context() -> io::Result<Self> {
        Self::open_path("/dev/dri/renderD128").or_else(|_| Self::open())
    }

    fn open_path(path: &str) -> io::Result<Self> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
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
