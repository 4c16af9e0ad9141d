//! The i915, xe and generic DRM uapi this driver uses: structures laid out
//! as the kernel's (`include/uapi/drm/{drm,i915_drm,xe_drm}.h`), their
//! ioctl numbers (as `u32` requests) and constants. Every struct is
//! [`Pod`]: `#[repr(C)]` without padding, so an ioctl argument is exactly
//! its bytes. [`c_layout_checks`] (in `check`) emits C static assertions of
//! every size, offset and number here, which a test compiles against the
//! headers installed on the machine.

mod check;

pub use check::c_layout_checks;

use rustix::ioctl::{opcode, Opcode};

const DRM: u8 = b'd';
const COMMAND_BASE: u8 = 0x40;

/// Plain old data: an integer, or a uapi struct, whose bytes are its
/// value (what an ioctl argument or a user pointer's target is).
///
/// # Safety
///
/// Implementors are primitive integers or `#[repr(C)]` structs of them
/// with no padding bytes, so every byte is initialized and every bit
/// pattern is a valid value.
pub unsafe trait Pod: Copy + Default + Send + 'static {
    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Pod` types have no padding: all `size_of` bytes are
        // initialized, and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }

    /// The value's bytes, writable.
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`; any bytes written leave a valid value
        // (every bit pattern is one), and the slice borrows `self` mutably.
        unsafe {
            std::slice::from_raw_parts_mut((self as *mut Self).cast::<u8>(), size_of::<Self>())
        }
    }

    /// The value in the first `size_of::<Self>()` bytes of `bytes`, if
    /// there are that many.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        let mut v = Self::default();
        v.as_bytes_mut()
            .copy_from_slice(bytes.get(..size_of::<Self>())?);
        Some(v)
    }

    /// Every whole value in `bytes`, in order.
    fn read_all(bytes: &[u8]) -> Vec<Self> {
        bytes
            .chunks_exact(size_of::<Self>())
            .filter_map(Self::read_from)
            .collect()
    }
}

macro_rules! pod_int {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive integer: no padding, every bit pattern valid.
        unsafe impl Pod for $t {}
    )*};
}
pod_int!(u8, u16, u32, u64, i32, i64);

macro_rules! uapi_struct {
    ($(#[$m:meta])* $name:ident = $c:literal { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        ///
        /// Fields as in the kernel header (documented there).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        impl $name {
            /// The C struct this mirrors.
            pub const C_NAME: &'static str = $c;
            /// `(field, offset)` pairs, for the layout check.
            pub fn c_fields() -> Vec<(&'static str, usize)> {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field))),*]
            }
        }
        // No padding: the fields fill the struct.
        const _: () = assert!(
            0 $(+ size_of::<$ty>())* == size_of::<$name>(),
            concat!(stringify!($name), " has padding")
        );
        // SAFETY: `#[repr(C)]`, fields of `Pod` types only (integers,
        // arrays of them, other uapi structs), no padding (asserted above).
        unsafe impl Pod for $name {}
    };
}

uapi_struct!(
    /// `drm_gem_close`.
    GemClose = "drm_gem_close" { handle: u32, pad: u32 }
);
uapi_struct!(
    /// `drm_prime_handle`.
    PrimeHandle = "drm_prime_handle" { handle: u32, flags: u32, fd: i32 }
);
uapi_struct!(
    /// `drm_i915_getparam`.
    I915GetParam = "drm_i915_getparam" {
        param: i32,
        /// Implicit in C (the pointer's alignment).
        _pad: u32,
        value: u64,
    }
);
uapi_struct!(
    /// `drm_xe_query_config` (header; the values follow).
    XeQueryConfig = "drm_xe_query_config" { num_params: u32, pad: u32 }
);
uapi_struct!(
    /// `drm_i915_query`.
    I915Query = "drm_i915_query" { num_items: u32, flags: u32, items_ptr: u64 }
);
uapi_struct!(
    /// `drm_i915_query_item`.
    I915QueryItem = "drm_i915_query_item" { query_id: u64, length: i32, flags: u32, data_ptr: u64 }
);
uapi_struct!(
    /// `drm_i915_query_memory_regions` (header; the regions follow).
    I915QueryMemoryRegions = "drm_i915_query_memory_regions" { num_regions: u32, rsvd: [u32; 3] }
);
uapi_struct!(
    /// `drm_i915_memory_region_info`.
    I915MemoryRegionInfo = "drm_i915_memory_region_info" {
        /// `region.memory_class`, `region.memory_instance`.
        region: [u16; 2],
        rsvd0: u32,
        probed_size: u64,
        unallocated_size: u64,
        /// `probed_cpu_visible_size`, `unallocated_cpu_visible_size`, reserved.
        rsvd1: [u64; 8],
    }
);
uapi_struct!(
    /// `drm_i915_gem_create_ext`.
    I915GemCreateExt = "drm_i915_gem_create_ext" { size: u64, handle: u32, flags: u32, extensions: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_create_ext_memory_regions` (with its `i915_user_extension` base).
    I915CreateExtMemoryRegions = "drm_i915_gem_create_ext_memory_regions" {
        /// `base.next_extension`.
        next_extension: u64,
        /// `base.name`.
        name: u32,
        /// `base.flags`.
        ext_flags: u32,
        /// `base.rsvd`.
        ext_rsvd: [u32; 4],
        pad: u32,
        num_regions: u32,
        regions: u64,
    }
);
uapi_struct!(
    /// `drm_i915_gem_memory_class_instance`.
    I915MemoryClassInstance = "drm_i915_gem_memory_class_instance" { memory_class: u16, memory_instance: u16 }
);
uapi_struct!(
    /// `drm_i915_gem_mmap_offset`.
    I915GemMmapOffset = "drm_i915_gem_mmap_offset" { handle: u32, pad: u32, offset: u64, flags: u64, extensions: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_madvise`.
    I915GemMadvise = "drm_i915_gem_madvise" { handle: u32, madv: u32, retained: u32 }
);
uapi_struct!(
    /// `drm_i915_gem_busy`.
    I915GemBusy = "drm_i915_gem_busy" { handle: u32, busy: u32 }
);
uapi_struct!(
    /// `drm_i915_gem_wait`.
    I915GemWait = "drm_i915_gem_wait" { bo_handle: u32, flags: u32, timeout_ns: i64 }
);
uapi_struct!(
    /// `drm_i915_gem_exec_object2`.
    I915ExecObject2 = "drm_i915_gem_exec_object2" {
        handle: u32,
        relocation_count: u32,
        relocs_ptr: u64,
        alignment: u64,
        offset: u64,
        flags: u64,
        rsvd1: u64,
        rsvd2: u64,
    }
);
uapi_struct!(
    /// `drm_i915_gem_relocation_entry`.
    I915RelocationEntry = "drm_i915_gem_relocation_entry" {
        target_handle: u32,
        delta: u32,
        offset: u64,
        presumed_offset: u64,
        read_domains: u32,
        write_domain: u32,
    }
);
uapi_struct!(
    /// `drm_i915_gem_context_param`.
    I915ContextParam = "drm_i915_gem_context_param" { ctx_id: u32, size: u32, param: u64, value: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_context_create_ext_setparam` (with its `i915_user_extension` base).
    I915ContextCreateExtSetparam = "drm_i915_gem_context_create_ext_setparam" {
        /// `base.next_extension`.
        next_extension: u64,
        /// `base.name`.
        name: u32,
        /// `base.flags`.
        ext_flags: u32,
        /// `base.rsvd`.
        ext_rsvd: [u32; 4],
        param: I915ContextParam,
    }
);
uapi_struct!(
    /// `drm_i915_gem_execbuffer2`.
    I915GemExecbuffer2 = "drm_i915_gem_execbuffer2" {
        buffers_ptr: u64,
        buffer_count: u32,
        batch_start_offset: u32,
        batch_len: u32,
        dr1: u32,
        dr4: u32,
        num_cliprects: u32,
        cliprects_ptr: u64,
        flags: u64,
        rsvd1: u64,
        rsvd2: u64,
    }
);
uapi_struct!(
    /// `drm_i915_gem_context_create_ext`.
    I915GemContextCreateExt = "drm_i915_gem_context_create_ext" { ctx_id: u32, flags: u32, extensions: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_context_destroy`.
    I915GemContextDestroy = "drm_i915_gem_context_destroy" { ctx_id: u32, pad: u32 }
);
uapi_struct!(
    /// `drm_xe_device_query`.
    XeDeviceQuery = "drm_xe_device_query" { extensions: u64, query: u32, size: u32, data: u64, reserved: [u64; 2] }
);
uapi_struct!(
    /// `drm_xe_query_mem_regions` (header; the regions follow).
    XeQueryMemRegions = "drm_xe_query_mem_regions" { num_mem_regions: u32, pad: u32 }
);
uapi_struct!(
    /// `drm_xe_mem_region`.
    XeMemRegion = "drm_xe_mem_region" {
        mem_class: u16,
        instance: u16,
        min_page_size: u32,
        total_size: u64,
        used: u64,
        cpu_visible_size: u64,
        cpu_visible_used: u64,
        reserved: [u64; 6],
    }
);
uapi_struct!(
    /// `drm_xe_gem_create`.
    XeGemCreate = "drm_xe_gem_create" {
        extensions: u64,
        size: u64,
        placement: u32,
        flags: u32,
        vm_id: u32,
        handle: u32,
        cpu_caching: u16,
        pad: [u16; 3],
        reserved: [u64; 2],
    }
);
uapi_struct!(
    /// `drm_xe_gem_mmap_offset`.
    XeGemMmapOffset = "drm_xe_gem_mmap_offset" { extensions: u64, handle: u32, flags: u32, offset: u64, reserved: [u64; 2] }
);

uapi_struct!(
    /// `i915_user_extension` (the head of every extension in a chain).
    I915UserExtension = "i915_user_extension" { next_extension: u64, name: u32, flags: u32, rsvd: [u32; 4] }
);
uapi_struct!(
    /// `i915_engine_class_instance`.
    I915EngineClassInstance = "i915_engine_class_instance" { engine_class: u16, engine_instance: u16 }
);
uapi_struct!(
    /// `i915_context_param_engines` (header; the engines follow).
    I915ContextParamEngines = "i915_context_param_engines" { extensions: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_context_param_sseu`.
    I915ContextParamSseu = "drm_i915_gem_context_param_sseu" {
        /// `engine.engine_class`, `engine.engine_instance`.
        engine: [u16; 2],
        flags: u32,
        slice_mask: u64,
        subslice_mask: u64,
        min_eus_per_subslice: u16,
        max_eus_per_subslice: u16,
        rsvd: u32,
    }
);
uapi_struct!(
    /// `drm_i915_reg_read`.
    I915RegRead = "drm_i915_reg_read" { offset: u64, val: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_get_aperture`.
    I915GemGetAperture = "drm_i915_gem_get_aperture" { aper_size: u64, aper_available_size: u64 }
);
uapi_struct!(
    /// `drm_i915_gem_set_tiling`.
    I915GemSetTiling = "drm_i915_gem_set_tiling" { handle: u32, tiling_mode: u32, stride: u32, swizzle_mode: u32 }
);
uapi_struct!(
    /// `drm_i915_gem_get_tiling`.
    I915GemGetTiling = "drm_i915_gem_get_tiling" { handle: u32, tiling_mode: u32, swizzle_mode: u32, phys_swizzle_mode: u32 }
);
uapi_struct!(
    /// `drm_i915_gem_set_domain`.
    I915GemSetDomain = "drm_i915_gem_set_domain" { handle: u32, read_domains: u32, write_domain: u32 }
);
uapi_struct!(
    /// `drm_i915_reset_stats`.
    I915ResetStats = "drm_i915_reset_stats" {
        ctx_id: u32,
        flags: u32,
        reset_count: u32,
        batch_active: u32,
        batch_pending: u32,
        pad: u32,
    }
);
uapi_struct!(
    /// `drm_i915_gem_context_create` (the legacy create, without extensions).
    I915GemContextCreate = "drm_i915_gem_context_create" { ctx_id: u32, pad: u32 }
);
uapi_struct!(
    /// `drm_i915_gem_vm_control`.
    I915GemVmControl = "drm_i915_gem_vm_control" { extensions: u64, flags: u32, vm_id: u32 }
);

/// `_IOC_SIZE(request)`: the size of the request's argument.
pub const fn ioc_size(request: u32) -> usize {
    ((request >> 16) & 0x3fff) as usize
}

/// Whether the kernel writes the argument back (`_IOC_READ` in the
/// request's direction).
pub const fn ioc_reads(request: u32) -> bool {
    request >> 30 & 2 != 0
}

/// Whether the kernel reads the argument (`_IOC_WRITE`).
pub const fn ioc_writes(request: u32) -> bool {
    request >> 30 & 1 != 0
}

/// An ioctl request number as the `u32` DRM and vgpu's traits use
/// (`Opcode` is `c_ulong` on some targets; DRM numbers fit in 32 bits).
#[allow(clippy::unnecessary_cast)]
const fn req(op: Opcode) -> u32 {
    op as u32
}

/// The platform's `Opcode` of a request number.
#[allow(clippy::unnecessary_cast)]
pub(crate) const fn opcode_of(request: u32) -> Opcode {
    request as Opcode
}

const fn nr(n: u8) -> u8 {
    COMMAND_BASE + n
}

macro_rules! ioctls {
    ($($(#[$m:meta])* $name:ident = $dir:ident $t:ty, $n:expr;)*) => {
        $(
            $(#[$m])*
            #[doc = concat!("`", stringify!($name), "`.")]
            pub const $name: u32 = req(opcode::$dir::<$t>(DRM, $n));
            // `ioc_size` decodes what `opcode` composed on this target.
            const _: () = assert!(ioc_size($name) == size_of::<$t>());
        )*
        /// Every request the Intel drivers issue, with its name (the
        /// daemon's system-call filter allows exactly these).
        pub const ISSUED: &[(u32, &str)] = &[$(($name, stringify!($name)),)*];
    };
}

ioctls! {
    DRM_IOCTL_GEM_CLOSE = write GemClose, 0x09;
    DRM_IOCTL_PRIME_HANDLE_TO_FD = read_write PrimeHandle, 0x2d;
    DRM_IOCTL_I915_GETPARAM = read_write I915GetParam, nr(0x06);
    DRM_IOCTL_I915_GEM_SET_DOMAIN = write I915GemSetDomain, nr(0x1f);
    DRM_IOCTL_I915_GEM_BUSY = read_write I915GemBusy, nr(0x17);
    DRM_IOCTL_I915_GEM_SET_TILING = read_write I915GemSetTiling, nr(0x21);
    DRM_IOCTL_I915_GEM_GET_TILING = read_write I915GemGetTiling, nr(0x22);
    DRM_IOCTL_I915_GEM_GET_APERTURE = read I915GemGetAperture, nr(0x23);
    DRM_IOCTL_I915_GEM_MMAP_OFFSET = read_write I915GemMmapOffset, nr(0x24);
    DRM_IOCTL_I915_GEM_MADVISE = read_write I915GemMadvise, nr(0x26);
    /// (The write-only variant: no out-fence can be returned.)
    DRM_IOCTL_I915_GEM_EXECBUFFER2 = write I915GemExecbuffer2, nr(0x29);
    DRM_IOCTL_I915_GEM_EXECBUFFER2_WR = read_write I915GemExecbuffer2, nr(0x29);
    DRM_IOCTL_I915_GEM_WAIT = read_write I915GemWait, nr(0x2c);
    DRM_IOCTL_I915_GEM_CONTEXT_CREATE = read_write I915GemContextCreate, nr(0x2d);
    DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT = read_write I915GemContextCreateExt, nr(0x2d);
    DRM_IOCTL_I915_GEM_CONTEXT_DESTROY = write I915GemContextDestroy, nr(0x2e);
    DRM_IOCTL_I915_REG_READ = read_write I915RegRead, nr(0x31);
    DRM_IOCTL_I915_GET_RESET_STATS = read_write I915ResetStats, nr(0x32);
    DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM = read_write I915ContextParam, nr(0x34);
    DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM = read_write I915ContextParam, nr(0x35);
    DRM_IOCTL_I915_QUERY = read_write I915Query, nr(0x39);
    DRM_IOCTL_I915_GEM_VM_CREATE = read_write I915GemVmControl, nr(0x3a);
    DRM_IOCTL_I915_GEM_VM_DESTROY = write I915GemVmControl, nr(0x3b);
    DRM_IOCTL_I915_GEM_CREATE_EXT = read_write I915GemCreateExt, nr(0x3c);
    DRM_IOCTL_XE_DEVICE_QUERY = read_write XeDeviceQuery, nr(0x00);
    DRM_IOCTL_XE_GEM_CREATE = read_write XeGemCreate, nr(0x01);
    DRM_IOCTL_XE_GEM_MMAP_OFFSET = read_write XeGemMmapOffset, nr(0x02);
}

/// `I915_PARAM_CHIPSET_ID`.
pub const I915_PARAM_CHIPSET_ID: i32 = 4;
/// `DRM_XE_DEVICE_QUERY_CONFIG`.
pub const DRM_XE_DEVICE_QUERY_CONFIG: u32 = 2;
/// `DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID`.
pub const DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID: usize = 0;
/// `DRM_I915_QUERY_MEMORY_REGIONS`.
pub const I915_QUERY_MEMORY_REGIONS: u64 = 4;
/// `I915_GEM_CREATE_EXT_MEMORY_REGIONS`.
pub const I915_GEM_CREATE_EXT_MEMORY_REGIONS: u32 = 0;
/// `I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS`.
pub const I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS: u32 = 1;
/// `I915_MMAP_OFFSET_WB`.
pub const I915_MMAP_OFFSET_WB: u64 = 2;
/// `I915_MMAP_OFFSET_FIXED` (the only mode on discrete parts).
pub const I915_MMAP_OFFSET_FIXED: u64 = 4;
/// `I915_MADV_WILLNEED`.
pub const I915_MADV_WILLNEED: u32 = 0;
/// `I915_MADV_DONTNEED`.
pub const I915_MADV_DONTNEED: u32 = 1;
/// `I915_MEMORY_CLASS_SYSTEM`.
pub const I915_MEMORY_CLASS_SYSTEM: u16 = 0;
/// `I915_MEMORY_CLASS_DEVICE`.
pub const I915_MEMORY_CLASS_DEVICE: u16 = 1;
/// `I915_EXEC_RING_MASK`.
pub const I915_EXEC_RING_MASK: u64 = 0x3f;
/// `I915_EXEC_CONSTANTS_MASK`.
pub const I915_EXEC_CONSTANTS_MASK: u64 = 3 << 6;
/// `I915_EXEC_GEN7_SOL_RESET`.
pub const I915_EXEC_GEN7_SOL_RESET: u64 = 1 << 8;
/// `I915_EXEC_SECURE`.
pub const I915_EXEC_SECURE: u64 = 1 << 9;
/// `I915_EXEC_IS_PINNED`.
pub const I915_EXEC_IS_PINNED: u64 = 1 << 10;
/// `I915_EXEC_NO_RELOC`.
pub const I915_EXEC_NO_RELOC: u64 = 1 << 11;
/// `I915_EXEC_HANDLE_LUT`.
pub const I915_EXEC_HANDLE_LUT: u64 = 1 << 12;
/// `I915_EXEC_BSD_MASK`.
pub const I915_EXEC_BSD_MASK: u64 = 3 << 13;
/// `I915_EXEC_FENCE_IN`.
pub const I915_EXEC_FENCE_IN: u64 = 1 << 16;
/// `I915_EXEC_FENCE_OUT`.
pub const I915_EXEC_FENCE_OUT: u64 = 1 << 17;
/// `I915_EXEC_BATCH_FIRST`.
pub const I915_EXEC_BATCH_FIRST: u64 = 1 << 18;
/// `I915_EXEC_FENCE_ARRAY`.
pub const I915_EXEC_FENCE_ARRAY: u64 = 1 << 19;
/// `I915_EXEC_FENCE_SUBMIT`.
pub const I915_EXEC_FENCE_SUBMIT: u64 = 1 << 20;
/// `I915_EXEC_USE_EXTENSIONS`.
pub const I915_EXEC_USE_EXTENSIONS: u64 = 1 << 21;
/// `EXEC_OBJECT_PAD_TO_SIZE`.
pub const EXEC_OBJECT_PAD_TO_SIZE: u64 = 1 << 5;
/// `EXEC_OBJECT_CAPTURE`: the highest exec-object flag.
pub const EXEC_OBJECT_CAPTURE: u64 = 1 << 7;
/// `I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS`.
pub const I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS: u32 = 1;
/// `I915_CONTEXT_CREATE_EXT_SETPARAM`.
pub const I915_CONTEXT_CREATE_EXT_SETPARAM: u32 = 0;
/// `DRM_XE_DEVICE_QUERY_MEM_REGIONS`.
pub const DRM_XE_DEVICE_QUERY_MEM_REGIONS: u32 = 1;
/// `DRM_XE_MEM_REGION_CLASS_SYSMEM`.
pub const DRM_XE_MEM_REGION_CLASS_SYSMEM: u16 = 0;
/// `DRM_XE_MEM_REGION_CLASS_VRAM`.
pub const DRM_XE_MEM_REGION_CLASS_VRAM: u16 = 1;
/// `DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM`.
pub const DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM: u32 = 1 << 2;
/// `DRM_XE_GEM_CPU_CACHING_WB`.
pub const DRM_XE_GEM_CPU_CACHING_WB: u16 = 1;
/// `DRM_XE_GEM_CPU_CACHING_WC`.
pub const DRM_XE_GEM_CPU_CACHING_WC: u16 = 2;
/// `DRM_CLOEXEC` (= `O_CLOEXEC`).
pub const DRM_CLOEXEC: u32 = 0o2000000;
/// `DRM_RDWR` (= `O_RDWR`).
pub const DRM_RDWR: u32 = 2;

/// `I915_PARAM_REVISION`.
pub const I915_PARAM_REVISION: i32 = 32;
/// `I915_PARAM_CS_TIMESTAMP_FREQUENCY`.
pub const I915_PARAM_CS_TIMESTAMP_FREQUENCY: i32 = 51;
/// `DRM_I915_QUERY_TOPOLOGY_INFO`.
pub const I915_QUERY_TOPOLOGY_INFO: u64 = 1;
/// `I915_MMAP_OFFSET_GTT`.
pub const I915_MMAP_OFFSET_GTT: u64 = 0;
/// `I915_MMAP_OFFSET_WC`.
pub const I915_MMAP_OFFSET_WC: u64 = 1;
/// `I915_MMAP_OFFSET_UC`.
pub const I915_MMAP_OFFSET_UC: u64 = 3;
/// `I915_CONTEXT_CREATE_FLAGS_SINGLE_TIMELINE`.
pub const I915_CONTEXT_CREATE_FLAGS_SINGLE_TIMELINE: u32 = 1 << 1;
/// `I915_CONTEXT_PARAM_BAN_PERIOD`.
pub const I915_CONTEXT_PARAM_BAN_PERIOD: u64 = 0x1;
/// `I915_CONTEXT_PARAM_NO_ZEROMAP`.
pub const I915_CONTEXT_PARAM_NO_ZEROMAP: u64 = 0x2;
/// `I915_CONTEXT_PARAM_GTT_SIZE`.
pub const I915_CONTEXT_PARAM_GTT_SIZE: u64 = 0x3;
/// `I915_CONTEXT_PARAM_NO_ERROR_CAPTURE`.
pub const I915_CONTEXT_PARAM_NO_ERROR_CAPTURE: u64 = 0x4;
/// `I915_CONTEXT_PARAM_BANNABLE`.
pub const I915_CONTEXT_PARAM_BANNABLE: u64 = 0x5;
/// `I915_CONTEXT_PARAM_PRIORITY`.
pub const I915_CONTEXT_PARAM_PRIORITY: u64 = 0x6;
/// `I915_CONTEXT_PARAM_SSEU` (data: `drm_i915_gem_context_param_sseu`).
pub const I915_CONTEXT_PARAM_SSEU: u64 = 0x7;
/// `I915_CONTEXT_PARAM_RECOVERABLE`.
pub const I915_CONTEXT_PARAM_RECOVERABLE: u64 = 0x8;
/// `I915_CONTEXT_PARAM_VM`.
pub const I915_CONTEXT_PARAM_VM: u64 = 0x9;
/// `I915_CONTEXT_PARAM_ENGINES` (data: `i915_context_param_engines`).
pub const I915_CONTEXT_PARAM_ENGINES: u64 = 0xa;
/// `I915_CONTEXT_PARAM_PERSISTENCE`.
pub const I915_CONTEXT_PARAM_PERSISTENCE: u64 = 0xb;
/// `I915_CONTEXT_PARAM_RINGSIZE`.
pub const I915_CONTEXT_PARAM_RINGSIZE: u64 = 0xc;
/// `I915_CONTEXT_PARAM_PROTECTED_CONTENT`.
pub const I915_CONTEXT_PARAM_PROTECTED_CONTENT: u64 = 0xd;
/// `I915_CONTEXT_PARAM_LOW_LATENCY`.
pub const I915_CONTEXT_PARAM_LOW_LATENCY: u64 = 0xe;
/// `I915_CONTEXT_MAX_USER_PRIORITY`.
pub const I915_CONTEXT_MAX_USER_PRIORITY: i64 = 1023;
/// `I915_CONTEXT_DEFAULT_PRIORITY`.
pub const I915_CONTEXT_DEFAULT_PRIORITY: i64 = 0;
/// `I915_CONTEXT_MIN_USER_PRIORITY`.
pub const I915_CONTEXT_MIN_USER_PRIORITY: i64 = -1023;
/// `I915_CONTEXT_SSEU_FLAG_ENGINE_INDEX`.
pub const I915_CONTEXT_SSEU_FLAG_ENGINE_INDEX: u32 = 1;
/// `I915_ENGINE_CLASS_RENDER`.
pub const I915_ENGINE_CLASS_RENDER: u16 = 0;
/// `I915_ENGINE_CLASS_COPY`.
pub const I915_ENGINE_CLASS_COPY: u16 = 1;
/// `I915_ENGINE_CLASS_VIDEO`.
pub const I915_ENGINE_CLASS_VIDEO: u16 = 2;
/// `I915_ENGINE_CLASS_VIDEO_ENHANCE`.
pub const I915_ENGINE_CLASS_VIDEO_ENHANCE: u16 = 3;
/// `I915_ENGINE_CLASS_INVALID` (an unused slot of an engine map).
pub const I915_ENGINE_CLASS_INVALID: u16 = u16::MAX;
/// `I915_ENGINE_CLASS_INVALID_NONE`.
pub const I915_ENGINE_CLASS_INVALID_NONE: u16 = u16::MAX;
/// `I915_EXEC_DEFAULT`.
pub const I915_EXEC_DEFAULT: u64 = 0;
/// `I915_EXEC_RENDER`.
pub const I915_EXEC_RENDER: u64 = 1;
/// `I915_EXEC_BSD`.
pub const I915_EXEC_BSD: u64 = 2;
/// `I915_EXEC_BLT`.
pub const I915_EXEC_BLT: u64 = 3;
/// `I915_EXEC_VEBOX`.
pub const I915_EXEC_VEBOX: u64 = 4;
/// `I915_EXEC_CONTEXT_ID_MASK`.
pub const I915_EXEC_CONTEXT_ID_MASK: u64 = 0xffff_ffff;
/// `I915_TILING_NONE`.
pub const I915_TILING_NONE: u32 = 0;
/// `I915_TILING_X`.
pub const I915_TILING_X: u32 = 1;
/// `I915_TILING_Y`.
pub const I915_TILING_Y: u32 = 2;
/// `I915_BIT_6_SWIZZLE_NONE`.
pub const I915_BIT_6_SWIZZLE_NONE: u32 = 0;
/// `I915_REG_READ_8B_WA`: in a REG_READ offset, read a 64-bit register
/// as two 32-bit halves.
pub const I915_REG_READ_8B_WA: u64 = 1;
/// The render ring's TIMESTAMP register (`RING_TIMESTAMP(RENDER_RING_BASE)`,
/// the one register i915's REG_READ allows); not in the uapi headers.
pub const I915_REG_RENDER_RING_TIMESTAMP: u64 = 0x2358;
/// `DRM_XE_QUERY_CONFIG_FLAGS`.
pub const DRM_XE_QUERY_CONFIG_FLAGS: usize = 1;
/// `DRM_XE_QUERY_CONFIG_FLAG_HAS_VRAM`.
pub const DRM_XE_QUERY_CONFIG_FLAG_HAS_VRAM: u64 = 1;
/// `DRM_XE_QUERY_CONFIG_MIN_ALIGNMENT`.
pub const DRM_XE_QUERY_CONFIG_MIN_ALIGNMENT: usize = 2;
/// `DRM_XE_QUERY_CONFIG_VA_BITS`.
pub const DRM_XE_QUERY_CONFIG_VA_BITS: usize = 3;
/// `DRM_XE_QUERY_CONFIG_MAX_EXEC_QUEUE_PRIORITY`.
pub const DRM_XE_QUERY_CONFIG_MAX_EXEC_QUEUE_PRIORITY: usize = 4;
/// `DRM_XE_GEM_CREATE_FLAG_DEFER_BACKING`.
pub const DRM_XE_GEM_CREATE_FLAG_DEFER_BACKING: u32 = 1;
/// `DRM_XE_GEM_CREATE_FLAG_SCANOUT`.
pub const DRM_XE_GEM_CREATE_FLAG_SCANOUT: u32 = 1 << 1;
