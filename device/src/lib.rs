//! # vgpu-device: the vhost-user virtio-gpu daemon
//!
//! Virtqueues, command dispatch, contexts, fences, the display channel and
//! the admin socket. Built in the device issue; empty until then.

#![deny(missing_docs)]
