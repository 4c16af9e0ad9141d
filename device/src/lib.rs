//! # vgpu-device: the vhost-user virtio-gpu daemon
//!
//! What a VMM (QEMU, crosvm) attaches to. The layers, top to bottom:
//!
//! * [`daemon`] — accepts VMM connections one after another; each gets a
//!   fresh backend, and everything it held is freed when it goes.
//! * [`vhost`] — the `vhost-user-backend` implementation: features,
//!   config space, the queue loop, fence timelines.
//! * [`gpu`] — the virtio-gpu device: resources, scanouts, cursor, blobs,
//!   contexts, host-visible mappings; errors mapped to responses in one place.
//! * [`context`] — 3D contexts, including the i915 native context run
//!   against the buffer manager.
//! * [`display`], [`hostmem`], [`guest_io`], [`edid`], [`engine`] — the
//!   display channel, the host-visible region, guest-memory copies, EDID,
//!   the emulated engine.
//!
//! Data flows one way: virtqueue → `vgpu-proto` decode → [`gpu`] dispatch →
//! `vgpu-backend` buffer manager → host memory.

#![deny(missing_docs)]

pub mod admin;
pub mod cli;
pub mod config;
pub(crate) mod context;
pub mod ctl_cli;
pub mod daemon;
pub mod display;
pub mod edid;
pub(crate) mod engine;
pub mod gpu;
pub mod guest_io;
pub mod hostmem;
pub(crate) mod resource;
pub mod sandbox;
pub mod screens;
pub mod service;
pub mod socket_activation;
#[cfg(feature = "test-utils")]
pub mod testutils;
pub(crate) mod timer;
pub mod vhost;
