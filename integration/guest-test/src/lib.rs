//! # vgpu-guest-test
//!
//! The program the real-VM runs start inside the guest (built static, put
//! in the initramfs by `integration/build-guest-image.sh`). It uses only
//! the Linux DRM, KMS and virtgpu uapi, prints `PASS|FAIL|SKIP name:
//! detail` lines and a final `N passed, N failed` line.
//!
//! The library part is what the host side shares with it: the screen
//! [`pattern`] the host checks in QEMU's screendump, and the [`protocol`]
//! lines the two exchange over the serial console.

#![deny(missing_docs)]

pub mod pattern;
pub mod protocol;
