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

/// `_IOC_WRITE`: the kernel reads the argument.
const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: the kernel writes the argument back.
const IOC_READ_DIR: u32 = 2;
/// `DRM_COMMAND_BASE`: driver ioctls start here.
const DRM_COMMAND_BASE: u32 = 0x40;

/// `DRM_IOC(dir, DRM_COMMAND_BASE + nr, size)` with DRM's type `'d'`.
const fn drm_ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'd' as u32) << 8) | (DRM_COMMAND_BASE + nr)
}

/// `DRM_IOCTL_I915_GEM_SET_DOMAIN`: `DRM_IOW(0x1f, drm_i915_gem_set_domain)`.
pub const DRM_IOCTL_I915_GEM_SET_DOMAIN: u32 = drm_ioc(IOC_WRITE, 0x1f, size_of::<GemSetDomain>());
/// `DRM_IOCTL_I915_GEM_SET_TILING`: `DRM_IOWR(0x21, drm_i915_gem_set_tiling)`.
pub const DRM_IOCTL_I915_GEM_SET_TILING: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x21, size_of::<GemSetTiling>());
/// `DRM_IOCTL_I915_GEM_GET_TILING`: `DRM_IOWR(0x22, drm_i915_gem_get_tiling)`.
pub const DRM_IOCTL_I915_GEM_GET_TILING: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x22, size_of::<GemGetTiling>());
/// `DRM_IOCTL_I915_GEM_GET_APERTURE`: `DRM_IOR(0x23, drm_i915_gem_get_aperture)`.
pub const DRM_IOCTL_I915_GEM_GET_APERTURE: u32 =
    drm_ioc(IOC_READ_DIR, 0x23, size_of::<GemGetAperture>());
/// `DRM_IOCTL_I915_GEM_CONTEXT_CREATE`: `DRM_IOWR(0x2d, drm_i915_gem_context_create)`.
pub const DRM_IOCTL_I915_GEM_CONTEXT_CREATE: u32 = drm_ioc(
    IOC_WRITE | IOC_READ_DIR,
    0x2d,
    size_of::<GemContextCreate>(),
);
/// `DRM_IOCTL_I915_GEM_CONTEXT_DESTROY`: `DRM_IOW(0x2e, drm_i915_gem_context_destroy)`.
pub const DRM_IOCTL_I915_GEM_CONTEXT_DESTROY: u32 =
    drm_ioc(IOC_WRITE, 0x2e, size_of::<GemContextDestroy>());
/// `DRM_IOCTL_I915_REG_READ`: `DRM_IOWR(0x31, drm_i915_reg_read)`.
pub const DRM_IOCTL_I915_REG_READ: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x31, size_of::<RegRead>());
/// `DRM_IOCTL_I915_GET_RESET_STATS`: `DRM_IOWR(0x32, drm_i915_reset_stats)`.
pub const DRM_IOCTL_I915_GET_RESET_STATS: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x32, size_of::<ResetStats>());
/// `DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM`: `DRM_IOWR(0x34, drm_i915_gem_context_param)`.
pub const DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x34, size_of::<GemContextParam>());
/// `DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM`: `DRM_IOWR(0x35, drm_i915_gem_context_param)`.
pub const DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x35, size_of::<GemContextParam>());
/// `DRM_IOCTL_I915_GEM_VM_CREATE`: `DRM_IOWR(0x3a, drm_i915_gem_vm_control)`.
pub const DRM_IOCTL_I915_GEM_VM_CREATE: u32 =
    drm_ioc(IOC_WRITE | IOC_READ_DIR, 0x3a, size_of::<GemVmControl>());
/// `DRM_IOCTL_I915_GEM_VM_DESTROY`: `DRM_IOW(0x3b, drm_i915_gem_vm_control)`.
pub const DRM_IOCTL_I915_GEM_VM_DESTROY: u32 = drm_ioc(IOC_WRITE, 0x3b, size_of::<GemVmControl>());

/// `I915_CONTEXT_PARAM_GTT_SIZE`.
pub const I915_CONTEXT_PARAM_GTT_SIZE: u64 = 0x3;
/// `I915_CONTEXT_PARAM_BANNABLE`.
pub const I915_CONTEXT_PARAM_BANNABLE: u64 = 0x5;
/// `I915_CONTEXT_PARAM_PRIORITY`.
pub const I915_CONTEXT_PARAM_PRIORITY: u64 = 0x6;
/// `I915_CONTEXT_PARAM_SSEU`.
pub const I915_CONTEXT_PARAM_SSEU: u64 = 0x7;
/// `I915_CONTEXT_PARAM_RECOVERABLE`.
pub const I915_CONTEXT_PARAM_RECOVERABLE: u64 = 0x8;
/// `I915_CONTEXT_PARAM_VM`.
pub const I915_CONTEXT_PARAM_VM: u64 = 0x9;
/// `I915_CONTEXT_PARAM_ENGINES`.
pub const I915_CONTEXT_PARAM_ENGINES: u64 = 0xa;
/// `I915_CONTEXT_DEFAULT_PRIORITY`.
pub const I915_CONTEXT_DEFAULT_PRIORITY: i64 = 0;
/// `I915_CONTEXT_MAX_USER_PRIORITY`.
pub const I915_CONTEXT_MAX_USER_PRIORITY: i64 = 1023;
/// `I915_CONTEXT_MIN_USER_PRIORITY`.
pub const I915_CONTEXT_MIN_USER_PRIORITY: i64 = -1023;

/// `I915_TILING_NONE`.
pub const I915_TILING_NONE: u32 = 0;
/// `I915_TILING_X`.
pub const I915_TILING_X: u32 = 1;
/// `I915_TILING_Y`.
pub const I915_TILING_Y: u32 = 2;
/// `I915_BIT_6_SWIZZLE_NONE`.
pub const I915_BIT_6_SWIZZLE_NONE: u32 = 0;

/// `I915_GEM_DOMAIN_CPU`.
pub const I915_GEM_DOMAIN_CPU: u32 = 0x1;
/// `I915_GEM_GPU_DOMAINS`: RENDER, SAMPLER, COMMAND, INSTRUCTION, VERTEX.
pub const I915_GEM_GPU_DOMAINS: u32 = 0x3e;
/// `I915_GEM_DOMAIN_GTT`.
pub const I915_GEM_DOMAIN_GTT: u32 = 0x40;
/// `I915_GEM_DOMAIN_WC`.
pub const I915_GEM_DOMAIN_WC: u32 = 0x80;

wire_struct! {
    /// `struct drm_i915_gem_set_domain`.
    pub struct GemSetDomain {
        /// GEM handle (in IOCTL_SIMPLE: a resource id).
        pub handle: U32,
        /// Domains the CPU will read through.
        pub read_domains: U32,
        /// Domain it will write through (0 or `read_domains`).
        pub write_domain: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_set_tiling`.
    pub struct GemSetTiling {
        /// GEM handle (in IOCTL_SIMPLE: a resource id).
        pub handle: U32,
        /// `I915_TILING_*`.
        pub tiling_mode: U32,
        /// Row pitch of the tiled surface.
        pub stride: U32,
        /// Written back: `I915_BIT_6_SWIZZLE_*`.
        pub swizzle_mode: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_get_tiling`.
    pub struct GemGetTiling {
        /// GEM handle (in IOCTL_SIMPLE: a resource id).
        pub handle: U32,
        /// Written back: `I915_TILING_*`.
        pub tiling_mode: U32,
        /// Written back: `I915_BIT_6_SWIZZLE_*`.
        pub swizzle_mode: U32,
        /// Written back: the swizzling the hardware really does.
        pub phys_swizzle_mode: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_get_aperture`.
    pub struct GemGetAperture {
        /// Written back: total size of the aperture.
        pub aper_size: U64,
        /// Written back: what is not pinned.
        pub aper_available_size: U64,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_context_create` (the 8-byte form of
    /// CONTEXT_CREATE(_EXT); `pad` is where `_EXT` has `flags`).
    pub struct GemContextCreate {
        /// Written back: the new context's id.
        pub ctx_id: U32,
        /// Must be 0 (the `_EXT` flags).
        pub pad: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_context_destroy`.
    pub struct GemContextDestroy {
        /// The context.
        pub ctx_id: U32,
        /// Must be 0.
        pub pad: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_reg_read`.
    pub struct RegRead {
        /// Register offset; bit 0 is `I915_REG_READ_8B_WA`.
        pub offset: U64,
        /// Written back: the value.
        pub val: U64,
    }
}

wire_struct! {
    /// `struct drm_i915_reset_stats`.
    pub struct ResetStats {
        /// The context (0: the file's default).
        pub ctx_id: U32,
        /// Must be 0.
        pub flags: U32,
        /// Written back: GPU resets seen (privileged; 0 otherwise).
        pub reset_count: U32,
        /// Written back: batches of this context active at a hang.
        pub batch_active: U32,
        /// Written back: batches of this context queued at a hang.
        pub batch_pending: U32,
        /// Must be 0.
        pub pad: U32,
    }
}

wire_struct! {
    /// `struct drm_i915_gem_vm_control`.
    pub struct GemVmControl {
        /// Extension chain (must be 0 here).
        pub extensions: U64,
        /// Must be 0.
        pub flags: U32,
        /// The VM (written back by VM_CREATE).
        pub vm_id: U32,
    }
}

/// `I915_PARAM_*` numbers of GETPARAM that vgpu's emulated device answers.
pub mod param {
    /// `I915_PARAM_CHIPSET_ID`: the PCI device id.
    pub const CHIPSET_ID: u32 = 4;
    /// `I915_PARAM_HAS_GEM`.
    pub const HAS_GEM: u32 = 5;
    /// `I915_PARAM_HAS_EXECBUF2`.
    pub const HAS_EXECBUF2: u32 = 9;
    /// `I915_PARAM_HAS_LLC`: CPU and GPU share the last-level cache.
    pub const HAS_LLC: u32 = 17;
    /// `I915_PARAM_HAS_WAIT_TIMEOUT`.
    pub const HAS_WAIT_TIMEOUT: u32 = 19;
    /// `I915_PARAM_HAS_EXEC_NO_RELOC`.
    pub const HAS_EXEC_NO_RELOC: u32 = 25;
    /// `I915_PARAM_HAS_EXEC_HANDLE_LUT`.
    pub const HAS_EXEC_HANDLE_LUT: u32 = 26;
    /// `I915_PARAM_MMAP_VERSION`.
    pub const MMAP_VERSION: u32 = 30;
    /// `I915_PARAM_REVISION`: the PCI revision.
    pub const REVISION: u32 = 32;
    /// `I915_PARAM_HAS_EXEC_SOFTPIN`.
    pub const HAS_EXEC_SOFTPIN: u32 = 37;
    /// `I915_PARAM_MMAP_GTT_VERSION`.
    pub const MMAP_GTT_VERSION: u32 = 40;
    /// `I915_PARAM_HAS_EXEC_ASYNC`.
    pub const HAS_EXEC_ASYNC: u32 = 43;
    /// `I915_PARAM_HAS_EXEC_FENCE`.
    pub const HAS_EXEC_FENCE: u32 = 44;
    /// `I915_PARAM_HAS_EXEC_CAPTURE`.
    pub const HAS_EXEC_CAPTURE: u32 = 45;
    /// `I915_PARAM_HAS_EXEC_BATCH_FIRST`.
    pub const HAS_EXEC_BATCH_FIRST: u32 = 48;
    /// `I915_PARAM_HAS_EXEC_FENCE_ARRAY`.
    pub const HAS_EXEC_FENCE_ARRAY: u32 = 49;
    /// `I915_PARAM_HAS_CONTEXT_ISOLATION`.
    pub const HAS_CONTEXT_ISOLATION: u32 = 50;
    /// `I915_PARAM_CS_TIMESTAMP_FREQUENCY`: command-streamer timestamp Hz.
    pub const CS_TIMESTAMP_FREQUENCY: u32 = 51;
    /// `I915_PARAM_MMAP_GTT_COHERENT`.
    pub const MMAP_GTT_COHERENT: u32 = 52;
    /// `I915_PARAM_HAS_EXEC_SUBMIT_FENCE`.
    pub const HAS_EXEC_SUBMIT_FENCE: u32 = 53;
    /// `I915_PARAM_HAS_EXEC_TIMELINE_FENCES`.
    pub const HAS_EXEC_TIMELINE_FENCES: u32 = 55;
}
