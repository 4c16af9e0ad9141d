//! # vgpu-proto: the wire formats a vgpu guest speaks
//!
//! Pure data with safe decode and encode, no I/O and no `unsafe`:
//!
//! * [`virtio_gpu`] — every virtio-gpu control and cursor command of the
//!   current spec (2D, 3D/context, blob, cursor), every response, feature
//!   bits, header flags, formats, capset ids and the config space;
//!   [`virtio_gpu::Command::decode`] turns a request's bytes into a typed
//!   command, [`virtio_gpu::Response::encode`] writes the answer.
//! * [`native`] — the DRM native-context protocol (virglrenderer "vdrm"
//!   framing, the i915 context, vgpu's GEM_MADVISE / GEM_CLOSE extensions)
//!   and a guest-side builder for it.
//!
//! Structs are `#[repr(C)]`, made of little-endian alignment-1 fields, and
//! viewed with `zerocopy`; their layouts are tested against
//! `virtio-bindings`. The decoders never panic (property-tested on arbitrary
//! bytes), check every count against a hard cap and against the bytes
//! present before using it, and use checked arithmetic throughout.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod macros;
pub mod native;
pub mod virtio_gpu;
