//! The DRM native-context protocol the guest's Mesa driver speaks inside
//! SUBMIT_3D, wire-compatible with virglrenderer's "vdrm" framing and its
//! i915 context, plus two vgpu extensions.
//!
//! # Framing (all little-endian)
//!
//! | struct | layout | notes |
//! |---|---|---|
//! | capset DRM (id 6) | `{wire_format_version, version_major, version_minor, version_patchlevel, context_type, pad}` then the union `u`: for i915 (`context_type` 3) `u.intel` = `{pci_bus u8, pci_dev u8, pci_func u8, pci_revision_id u8, pci_domain u16, pci_device_id u16}`; the union is 136 bytes, the capset 160 | [`CapsetDrmI915`] |
//! | request header | `{cmd u32, len u32, seqno u32, rsp_off u32}` | `len` covers the whole request, ≥ 16, multiple of 4 |
//! | response header | `{len u32}` | written at `rsp_off` of the response memory |
//! | shared blob header | `{seqno u32, rsp_mem_offset u32}`, i915 adds `banned_ctx_mask u64` | blob_id 0 of the context; `seqno` is written after the response |
//!
//! A SUBMIT_3D stream is a sequence of requests back to back
//! ([`CcmdIter`]). A framing error (bad `len`, misaligned `rsp_off`,
//! leftover bytes) ends the stream; errors inside a well-framed request are
//! answered in its response and the stream continues.
//!
//! # Commands
//!
//! Responses carry `ret`: 0 or a positive errno (virglrenderer's
//! convention). "i915" marks commands with virglrenderer's numbers and
//! layouts (`src/drm/i915/i915_proto.h`); "vgpu" marks this project's
//! extensions.
//!
//! | # | command | origin | request after the header | response |
//! |---|---|---|---|---|
//! | 1 | IOCTL_SIMPLE | i915 | `cmd u32, pad u32`, then `_IOC_SIZE(cmd)` bytes (≤ 128) | `{len, ret i32}` + the argument for read ioctls |
//! | 2 | GETPARAM | i915 | `param u32, value u32` | `{len, pad, ret i32, value u32}` |
//! | 3 | QUERYPARAM | i915 | `query_id u32, length u32, flags u32, pad u32` | `{len, pad, ret i32, length i32}` + `length` bytes |
//! | 4 | GEM_CREATE | i915 | `size u64, blob_id u32, pad u32` | none |
//! | 5 | GEM_CREATE_EXT | i915 | `size u64, blob_id u32, gem_flags u32, ext_size u32, pad u32`, then `ext_size` bytes of packed extensions: MEMORY_REGIONS (48 bytes + `num_regions` × `{class u16, instance u16}`), PROTECTED_CONTENT (40), SET_PAT (40) | none |
//! | 6 | GEM_CONTEXT_CREATE | i915 | `flags u32, params_size u32`, then packed setparams (56 bytes + `param.size` bytes each) | `{len, pad, ret i32, ctx_id u32}` |
//! | 7 | GEM_EXECBUFFER2 | i915 | `flags u64, context_id u64, buffer_count u32, batch_start_offset u32, batch_len u32, relocs_count u32`, then `buffer_count` × exec_object2 (56 bytes; `handle` = resource id), then `relocs_count` × relocation_entry (32 bytes) | `{len, ret i32}` |
//! | 8 | GEM_SET_MMAP_MODE | i915 | `res_id u32, flags u32` (`I915_MMAP_OFFSET_*`) | none |
//! | 9 | GEM_BUSY | i915 | `res_id u32, pad u32` | `{len, pad, ret i32, busy i32}` |
//! | 0x100 | GEM_MADVISE | vgpu | `res_id u32, blob_id u32, madv u32, pad u32`; exactly one of `res_id`/`blob_id` non-zero; `madv` WILLNEED 0 / DONTNEED 1 | `{len, pad, ret i32, retained u32}` |
//! | 0x101 | GEM_CLOSE | vgpu | `blob_id u32, pad u32` | `{len, ret i32}` |
//!
//! ## The vgpu extensions
//!
//! virglrenderer's i915 context has no madvise: the host kernel's i915
//! purges on its own. vgpu owns placement and purging in userspace, so the
//! guest needs to say which buffers it can lose:
//!
//! * **GEM_MADVISE** follows i915/panfrost semantics. DONTNEED makes the
//!   object first in line for purging under host memory pressure; WILLNEED
//!   takes it back. `retained` = 0 means the contents were purged: the
//!   object is dead for good (any later use or mapping fails) and the guest
//!   must free it. An object may be named by resource id (after
//!   RESOURCE_CREATE_BLOB) or by blob id (before it).
//! * **GEM_CLOSE** frees an object created by GEM_CREATE(_EXT) that never
//!   became a resource (the kernel's GEM_CLOSE on a handle); objects that
//!   became resources are freed by RESOURCE_UNREF.
//!
//! Both live at [`VGPU_CCMD_EXT_BASE`] (0x100) and above, a range of their
//! own, so that commands virglrenderer adds to the i915 set later (10, 11, …)
//! cannot collide with them: an older vgpu answers such a command with
//! `EINVAL`, never with the wrong meaning.
//!
//! A request with an unknown command number gets the two-word response
//! `{len = 8, ret = EINVAL}` at its `rsp_off` ([`ErrorRsp`]).

mod builder;
mod framing;
mod i915;
mod i915_uapi;

pub use builder::*;
pub use framing::*;
pub use i915::*;
pub use i915_uapi::*;
