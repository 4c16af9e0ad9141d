//! The i915, xe and generic DRM uapi this driver uses: structures laid out
//! as the kernel's (`include/uapi/drm/{drm,i915_drm,xe_drm}.h`) and their
//! ioctl numbers. [`c_layout_checks`] emits C static assertions of every
//! size, offset and number below, which a test compiles against the
//! headers installed on the machine.

use rustix::ioctl::{opcode, Opcode};

const DRM: u8 = b'd';
const COMMAND_BASE: u8 = 0x40;

macro_rules! uapi_struct {
    ($(#[$m:meta])* $name:ident = $c:literal { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        ///
        /// Fields as in the kernel header (documented there).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default)]
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
    I915GetParam = "drm_i915_getparam" { param: i32, value: u64 }
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

const fn nr(n: u8) -> u8 {
    COMMAND_BASE + n
}

/// `DRM_IOCTL_GEM_CLOSE`.
pub const DRM_IOCTL_GEM_CLOSE: Opcode = opcode::write::<GemClose>(DRM, 0x09);
/// `DRM_IOCTL_PRIME_HANDLE_TO_FD`.
pub const DRM_IOCTL_PRIME_HANDLE_TO_FD: Opcode = opcode::read_write::<PrimeHandle>(DRM, 0x2d);
/// `DRM_IOCTL_I915_GETPARAM`.
pub const DRM_IOCTL_I915_GETPARAM: Opcode = opcode::read_write::<I915GetParam>(DRM, nr(0x06));
/// `DRM_IOCTL_I915_QUERY`.
pub const DRM_IOCTL_I915_QUERY: Opcode = opcode::read_write::<I915Query>(DRM, nr(0x39));
/// `DRM_IOCTL_I915_GEM_CREATE_EXT`.
pub const DRM_IOCTL_I915_GEM_CREATE_EXT: Opcode =
    opcode::read_write::<I915GemCreateExt>(DRM, nr(0x3c));
/// `DRM_IOCTL_I915_GEM_MMAP_OFFSET`.
pub const DRM_IOCTL_I915_GEM_MMAP_OFFSET: Opcode =
    opcode::read_write::<I915GemMmapOffset>(DRM, nr(0x24));
/// `DRM_IOCTL_I915_GEM_MADVISE`.
pub const DRM_IOCTL_I915_GEM_MADVISE: Opcode = opcode::read_write::<I915GemMadvise>(DRM, nr(0x26));
/// `DRM_IOCTL_I915_GEM_BUSY`.
pub const DRM_IOCTL_I915_GEM_BUSY: Opcode = opcode::read_write::<I915GemBusy>(DRM, nr(0x17));
/// `DRM_IOCTL_I915_GEM_WAIT`.
pub const DRM_IOCTL_I915_GEM_WAIT: Opcode = opcode::read_write::<I915GemWait>(DRM, nr(0x2c));
/// `DRM_IOCTL_I915_GEM_EXECBUFFER2_WR`.
pub const DRM_IOCTL_I915_GEM_EXECBUFFER2_WR: Opcode =
    opcode::read_write::<I915GemExecbuffer2>(DRM, nr(0x29));
/// `DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT`.
pub const DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT: Opcode =
    opcode::read_write::<I915GemContextCreateExt>(DRM, nr(0x2d));
/// `DRM_IOCTL_I915_GEM_CONTEXT_DESTROY`.
pub const DRM_IOCTL_I915_GEM_CONTEXT_DESTROY: Opcode =
    opcode::write::<I915GemContextDestroy>(DRM, nr(0x2e));
/// `DRM_IOCTL_XE_DEVICE_QUERY`.
pub const DRM_IOCTL_XE_DEVICE_QUERY: Opcode = opcode::read_write::<XeDeviceQuery>(DRM, nr(0x00));
/// `DRM_IOCTL_XE_GEM_CREATE`.
pub const DRM_IOCTL_XE_GEM_CREATE: Opcode = opcode::read_write::<XeGemCreate>(DRM, nr(0x01));
/// `DRM_IOCTL_XE_GEM_MMAP_OFFSET`.
pub const DRM_IOCTL_XE_GEM_MMAP_OFFSET: Opcode =
    opcode::read_write::<XeGemMmapOffset>(DRM, nr(0x02));

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

/// C source asserting, against `<drm/i915_drm.h>` and `<drm/xe_drm.h>`,
/// every struct size, field offset, ioctl number and constant above.
pub fn c_layout_checks() -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <fcntl.h>\n#include <drm/drm.h>\n#include <drm/i915_drm.h>\n#include <drm/xe_drm.h>\n",
    );
    let mut n = 0;
    let mut check = |expr: String| {
        n += 1;
        c.push_str(&format!(
            "_Static_assert({expr}, \"check {n}: {}\");\n",
            expr.replace('"', "'")
        ));
    };
    macro_rules! layout {
        ($($t:ty),*) => {$(
            check(format!("sizeof(struct {}) == {}", <$t>::C_NAME, std::mem::size_of::<$t>()));
            for (field, offset) in <$t>::c_fields() {
                let cfield = match (<$t>::C_NAME, field) {
                    ("drm_i915_memory_region_info", "region") => "region",
                    (_, "next_extension") => "base.next_extension",
                    (_, "name") => "base.name",
                    (_, "ext_flags") => "base.flags",
                    (_, "ext_rsvd") => "base.rsvd",
                    ("drm_i915_gem_execbuffer2", "dr1") => "DR1",
                    ("drm_i915_gem_execbuffer2", "dr4") => "DR4",
                    (_, f) => f,
                };
                check(format!("offsetof(struct {}, {cfield}) == {offset}", <$t>::C_NAME));
            }
        )*};
    }
    layout!(
        I915GetParam,
        XeQueryConfig,
        GemClose,
        PrimeHandle,
        I915Query,
        I915QueryItem,
        I915QueryMemoryRegions,
        I915MemoryRegionInfo,
        I915GemCreateExt,
        I915CreateExtMemoryRegions,
        I915MemoryClassInstance,
        I915GemMmapOffset,
        I915GemMadvise,
        I915GemBusy,
        I915GemWait,
        I915ExecObject2,
        I915RelocationEntry,
        I915ContextParam,
        I915ContextCreateExtSetparam,
        I915GemExecbuffer2,
        I915GemContextCreateExt,
        I915GemContextDestroy,
        XeDeviceQuery,
        XeQueryMemRegions,
        XeMemRegion,
        XeGemCreate,
        XeGemMmapOffset
    );
    for (name, value) in [
        ("DRM_IOCTL_GEM_CLOSE", u64::from(DRM_IOCTL_GEM_CLOSE)),
        (
            "DRM_IOCTL_PRIME_HANDLE_TO_FD",
            u64::from(DRM_IOCTL_PRIME_HANDLE_TO_FD),
        ),
        (
            "DRM_IOCTL_I915_GETPARAM",
            u64::from(DRM_IOCTL_I915_GETPARAM),
        ),
        ("DRM_IOCTL_I915_QUERY", u64::from(DRM_IOCTL_I915_QUERY)),
        (
            "DRM_IOCTL_I915_GEM_CREATE_EXT",
            u64::from(DRM_IOCTL_I915_GEM_CREATE_EXT),
        ),
        (
            "DRM_IOCTL_I915_GEM_MMAP_OFFSET",
            u64::from(DRM_IOCTL_I915_GEM_MMAP_OFFSET),
        ),
        (
            "DRM_IOCTL_I915_GEM_MADVISE",
            u64::from(DRM_IOCTL_I915_GEM_MADVISE),
        ),
        (
            "DRM_IOCTL_I915_GEM_BUSY",
            u64::from(DRM_IOCTL_I915_GEM_BUSY),
        ),
        (
            "DRM_IOCTL_I915_GEM_WAIT",
            u64::from(DRM_IOCTL_I915_GEM_WAIT),
        ),
        (
            "DRM_IOCTL_I915_GEM_EXECBUFFER2_WR",
            u64::from(DRM_IOCTL_I915_GEM_EXECBUFFER2_WR),
        ),
        (
            "DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT",
            u64::from(DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT),
        ),
        (
            "DRM_IOCTL_I915_GEM_CONTEXT_DESTROY",
            u64::from(DRM_IOCTL_I915_GEM_CONTEXT_DESTROY),
        ),
        (
            "DRM_IOCTL_XE_DEVICE_QUERY",
            u64::from(DRM_IOCTL_XE_DEVICE_QUERY),
        ),
        (
            "DRM_IOCTL_XE_GEM_CREATE",
            u64::from(DRM_IOCTL_XE_GEM_CREATE),
        ),
        (
            "DRM_IOCTL_XE_GEM_MMAP_OFFSET",
            u64::from(DRM_IOCTL_XE_GEM_MMAP_OFFSET),
        ),
        ("DRM_I915_QUERY_MEMORY_REGIONS", I915_QUERY_MEMORY_REGIONS),
        ("I915_PARAM_CHIPSET_ID", I915_PARAM_CHIPSET_ID as u64),
        (
            "DRM_XE_DEVICE_QUERY_CONFIG",
            u64::from(DRM_XE_DEVICE_QUERY_CONFIG),
        ),
        (
            "DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID",
            DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID as u64,
        ),
        (
            "I915_GEM_CREATE_EXT_MEMORY_REGIONS",
            u64::from(I915_GEM_CREATE_EXT_MEMORY_REGIONS),
        ),
        (
            "I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS",
            u64::from(I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS),
        ),
        ("I915_MMAP_OFFSET_WB", I915_MMAP_OFFSET_WB),
        ("I915_MMAP_OFFSET_FIXED", I915_MMAP_OFFSET_FIXED),
        ("I915_MADV_WILLNEED", u64::from(I915_MADV_WILLNEED)),
        ("I915_MADV_DONTNEED", u64::from(I915_MADV_DONTNEED)),
        (
            "I915_MEMORY_CLASS_SYSTEM",
            u64::from(I915_MEMORY_CLASS_SYSTEM),
        ),
        (
            "I915_MEMORY_CLASS_DEVICE",
            u64::from(I915_MEMORY_CLASS_DEVICE),
        ),
        ("I915_EXEC_RING_MASK", I915_EXEC_RING_MASK),
        ("I915_EXEC_CONSTANTS_MASK", I915_EXEC_CONSTANTS_MASK),
        ("I915_EXEC_GEN7_SOL_RESET", I915_EXEC_GEN7_SOL_RESET),
        ("I915_EXEC_SECURE", I915_EXEC_SECURE),
        ("I915_EXEC_IS_PINNED", I915_EXEC_IS_PINNED),
        ("I915_EXEC_NO_RELOC", I915_EXEC_NO_RELOC),
        ("I915_EXEC_HANDLE_LUT", I915_EXEC_HANDLE_LUT),
        ("I915_EXEC_BSD_MASK", I915_EXEC_BSD_MASK),
        ("I915_EXEC_FENCE_IN", I915_EXEC_FENCE_IN),
        ("I915_EXEC_FENCE_OUT", I915_EXEC_FENCE_OUT),
        ("I915_EXEC_BATCH_FIRST", I915_EXEC_BATCH_FIRST),
        ("I915_EXEC_FENCE_ARRAY", I915_EXEC_FENCE_ARRAY),
        ("I915_EXEC_FENCE_SUBMIT", I915_EXEC_FENCE_SUBMIT),
        ("I915_EXEC_USE_EXTENSIONS", I915_EXEC_USE_EXTENSIONS),
        ("EXEC_OBJECT_PAD_TO_SIZE", EXEC_OBJECT_PAD_TO_SIZE),
        ("EXEC_OBJECT_CAPTURE", EXEC_OBJECT_CAPTURE),
        (
            "I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS",
            u64::from(I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS),
        ),
        (
            "I915_CONTEXT_CREATE_EXT_SETPARAM",
            u64::from(I915_CONTEXT_CREATE_EXT_SETPARAM),
        ),
        (
            "DRM_XE_DEVICE_QUERY_MEM_REGIONS",
            u64::from(DRM_XE_DEVICE_QUERY_MEM_REGIONS),
        ),
        (
            "DRM_XE_MEM_REGION_CLASS_SYSMEM",
            u64::from(DRM_XE_MEM_REGION_CLASS_SYSMEM),
        ),
        (
            "DRM_XE_MEM_REGION_CLASS_VRAM",
            u64::from(DRM_XE_MEM_REGION_CLASS_VRAM),
        ),
        (
            "DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM",
            u64::from(DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM),
        ),
        (
            "DRM_XE_GEM_CPU_CACHING_WB",
            u64::from(DRM_XE_GEM_CPU_CACHING_WB),
        ),
        (
            "DRM_XE_GEM_CPU_CACHING_WC",
            u64::from(DRM_XE_GEM_CPU_CACHING_WC),
        ),
        ("DRM_CLOEXEC", u64::from(DRM_CLOEXEC)),
        ("DRM_RDWR", u64::from(DRM_RDWR)),
    ] {
        check(format!("(unsigned long long)({name}) == {value}ULL"));
    }
    c
}
