//! The Linux i915 uapi structures and numbers the i915 native context
//! carries inside its requests (`include/uapi/drm/i915_drm.h`).
//!
//! The guest's Mesa fills these exactly as it would for the kernel; the
//! host reads them from the request payload. Pointers in them
//! (`next_extension`, `regions`, `relocs_ptr`) are guest addresses and are
//! never followed: the payload layout replaces them.

use zerocopy::little_endian::{U16, U32, U64};

use crate::macros::wire_struct;

/// `I915_GEM_CREATE_EXT_MEMORY_REGIONS`.
pub const I915_GEM_CREATE_EXT_MEMORY_REGIONS: u32 = 0;
/// `I915_GEM_CREATE_EXT_PROTECTED_CONTENT`.
pub const I915_GEM_CREATE_EXT_PROTECTED_CONTENT: u32 = 1;
/// `I915_GEM_CREATE_EXT_SET_PAT`.
pub const I915_GEM_CREATE_EXT_SET_PAT: u32 = 2;
/// `I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS`.
pub const I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS: u32 = 1;

/// `I915_MEMORY_CLASS_SYSTEM`.
pub const I915_MEMORY_CLASS_SYSTEM: u16 = 0;
/// `I915_MEMORY_CLASS_DEVICE`.
pub const I915_MEMORY_CLASS_DEVICE: u16 = 1;

/// `I915_MADV_WILLNEED`.
pub const I915_MADV_WILLNEED: u32 = 0;
/// `I915_MADV_DONTNEED`.
pub const I915_MADV_DONTNEED: u32 = 1;
/// `__I915_MADV_PURGED` (kernel-internal state, reported, never requested).
pub const I915_MADV_PURGED: u32 = 2;

/// `I915_MMAP_OFFSET_GTT`.
pub const I915_MMAP_OFFSET_GTT: u32 = 0;
/// `I915_MMAP_OFFSET_WC`.
pub const I915_MMAP_OFFSET_WC: u32 = 1;
/// `I915_MMAP_OFFSET_WB`.
pub const I915_MMAP_OFFSET_WB: u32 = 2;
/// `I915_MMAP_OFFSET_UC`.
pub const I915_MMAP_OFFSET_UC: u32 = 3;
/// `I915_MMAP_OFFSET_FIXED`.
pub const I915_MMAP_OFFSET_FIXED: u32 = 4;

/// `DRM_I915_QUERY_TOPOLOGY_INFO`.
pub const DRM_I915_QUERY_TOPOLOGY_INFO: u32 = 1;
/// `DRM_I915_QUERY_ENGINE_INFO`.
pub const DRM_I915_QUERY_ENGINE_INFO: u32 = 2;
/// `DRM_I915_QUERY_PERF_CONFIG`.
pub const DRM_I915_QUERY_PERF_CONFIG: u32 = 3;
/// `DRM_I915_QUERY_MEMORY_REGIONS`.
pub const DRM_I915_QUERY_MEMORY_REGIONS: u32 = 4;
/// `DRM_I915_QUERY_HWCONFIG_BLOB`.
pub const DRM_I915_QUERY_HWCONFIG_BLOB: u32 = 5;

/// `I915_EXEC_RING_MASK`: the engine selector bits of execbuffer flags.
pub const I915_EXEC_RING_MASK: u64 = 0x3f;

wire_struct! {
    /// `struct i915_user_extension`: the head of every extension.
    pub struct UserExtension {
        /// Guest pointer to the next extension (ignored: extensions are packed).
        pub next_extension: U64,
        /// `I915_GEM_CREATE_EXT_*` (or the context-create equivalents).
        pub name: U32,
        /// Must be zero.
        pub flags: U32,
        /// Reserved.
        pub rsvd: [U32; 4],
    }
}

wire_struct! {
    /// `struct drm_i915_gem_memory_class_instance`.
    pub struct MemoryClassInstance {
        /// `I915_MEMORY_CLASS_*`.
        pub memory_class: U16,
        /// Instance within the class.
        pub memory_instance: U16,
    }
}

impl MemoryClassInstance {
    /// A class/instance pair.
    pub fn new(memory_class: u16, memory_instance: u16) -> Self {
        Self {
            memory_class: memory_class.into(),
            memory_instance: memory_instance.into(),
        }
    }
}

wire_struct! {
    /// `struct drm_i915_gem_create_ext_memory_regions`; in the payload
    /// `num_regions` class/instance pairs follow it.
    pub struct GemCreateExtMemoryRegions {
        /// Extension head (`name` = MEMORY_REGIONS).
        pub base: UserExtension,
        /// Must be zero.
        pub pad: U32,
        /// Number of placements, in order of preference.
        pub num_regions: U32,
        /// Guest pointer (ignored: the pairs follow in the payload).
        pub regions: U64,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_create_ext_protected_content` (with the C
    /// compiler's tail padding spelled out).
    pub struct GemCreateExtProtectedContent {
        /// Extension head.
        pub base: UserExtension,
        /// Must be zero.
        pub flags: U32,
        /// Tail padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_create_ext_set_pat`.
    pub struct GemCreateExtSetPat {
        /// Extension head.
        pub base: UserExtension,
        /// PAT index.
        pub pat_index: U32,
        /// Reserved.
        pub rsvd: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_context_param`.
    pub struct GemContextParam {
        /// GEM context id.
        pub ctx_id: U32,
        /// Size of the data `value` points at (0: `value` is the value).
        pub size: U32,
        /// `I915_CONTEXT_PARAM_*`.
        pub param: U64,
        /// Value or guest pointer (the data follows in the payload).
        pub value: U64,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_context_create_ext_setparam`; in the payload
    /// `param.size` bytes of data follow it.
    pub struct GemContextCreateExtSetparam {
        /// Extension head.
        pub base: UserExtension,
        /// The parameter.
        pub param: GemContextParam,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_exec_object2`.
    pub struct ExecObject2 {
        /// Object: a resource id from the guest, a host handle on the host.
        pub handle: U32,
        /// Relocations of this object (they follow the objects in the payload).
        pub relocation_count: U32,
        /// Guest pointer (ignored).
        pub relocs_ptr: U64,
        /// Alignment.
        pub alignment: U64,
        /// Presumed or pinned GPU address.
        pub offset: U64,
        /// `EXEC_OBJECT_*`.
        pub flags: U64,
        /// Reserved.
        pub rsvd1: U64,
        /// Reserved.
        pub rsvd2: U64,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_relocation_entry`.
    pub struct RelocationEntry {
        /// Target object.
        pub target_handle: U32,
        /// Delta added to the target address.
        pub delta: U32,
        /// Offset in the object to patch.
        pub offset: U64,
        /// Address the guest assumed.
        pub presumed_offset: U64,
        /// Read domains.
        pub read_domains: U32,
        /// Write domain.
        pub write_domain: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_query_memory_regions` without its flexible array;
    /// `num_regions` [`MemoryRegionInfo`] follow.
    pub struct QueryMemoryRegions {
        /// Number of regions that follow.
        pub num_regions: U32,
        /// Reserved.
        pub rsvd: [U32; 3],
    }
}

wire_struct! {
    /// `struct drm_i915_memory_region_info`.
    pub struct MemoryRegionInfo {
        /// Class and instance.
        pub region: MemoryClassInstance,
        /// Reserved.
        pub rsvd0: U32,
        /// Usable size.
        pub probed_size: U64,
        /// Free size.
        pub unallocated_size: U64,
        /// CPU-visible part of `probed_size`.
        pub probed_cpu_visible_size: U64,
        /// Free CPU-visible size.
        pub unallocated_cpu_visible_size: U64,
        /// Reserved.
        pub rsvd1: [U64; 6],
    }
}
