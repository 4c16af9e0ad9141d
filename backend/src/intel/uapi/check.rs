//! [`c_layout_checks`]: C static assertions of every uapi struct, ioctl
//! number and constant of [`super`], compiled by a test against the kernel
//! headers installed on the machine.

use super::*;

/// C source asserting, against `<drm/i915_drm.h>` and `<drm/xe_drm.h>`,
/// every struct size, field offset, ioctl number and constant of the uapi.
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
                    // Padding C leaves implicit.
                    (_, f) if f.starts_with('_') => continue,
                    ("i915_user_extension", f) => f,
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
        I915UserExtension,
        I915EngineClassInstance,
        I915ContextParamEngines,
        I915ContextParamSseu,
        I915RegRead,
        I915GemGetAperture,
        I915GemSetTiling,
        I915GemGetTiling,
        I915GemSetDomain,
        I915ResetStats,
        I915GemContextCreate,
        I915GemVmControl,
        XeDeviceQuery,
        XeQueryMemRegions,
        XeMemRegion,
        XeGemCreate,
        XeGemMmapOffset
    );
    // (C expression, Rust value): the name itself where both agree.
    macro_rules! values {
        ($($name:ident),* $(,)?) => { [$((stringify!($name).to_string(), $name as i128)),*] };
    }
    let same = values!(
        DRM_IOCTL_GEM_CLOSE,
        DRM_IOCTL_PRIME_HANDLE_TO_FD,
        DRM_IOCTL_I915_GETPARAM,
        DRM_IOCTL_I915_GEM_SET_DOMAIN,
        DRM_IOCTL_I915_GEM_BUSY,
        DRM_IOCTL_I915_GEM_SET_TILING,
        DRM_IOCTL_I915_GEM_GET_TILING,
        DRM_IOCTL_I915_GEM_GET_APERTURE,
        DRM_IOCTL_I915_GEM_MMAP_OFFSET,
        DRM_IOCTL_I915_GEM_MADVISE,
        DRM_IOCTL_I915_GEM_EXECBUFFER2,
        DRM_IOCTL_I915_GEM_EXECBUFFER2_WR,
        DRM_IOCTL_I915_GEM_WAIT,
        DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
        DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT,
        DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
        DRM_IOCTL_I915_REG_READ,
        DRM_IOCTL_I915_GET_RESET_STATS,
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
        DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
        DRM_IOCTL_I915_QUERY,
        DRM_IOCTL_I915_GEM_VM_CREATE,
        DRM_IOCTL_I915_GEM_VM_DESTROY,
        DRM_IOCTL_I915_GEM_CREATE_EXT,
        DRM_IOCTL_XE_DEVICE_QUERY,
        DRM_IOCTL_XE_GEM_CREATE,
        DRM_IOCTL_XE_GEM_MMAP_OFFSET,
        I915_PARAM_CHIPSET_ID,
        I915_PARAM_REVISION,
        I915_PARAM_CS_TIMESTAMP_FREQUENCY,
        DRM_XE_DEVICE_QUERY_CONFIG,
        DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID,
        DRM_XE_QUERY_CONFIG_FLAGS,
        DRM_XE_QUERY_CONFIG_FLAG_HAS_VRAM,
        DRM_XE_QUERY_CONFIG_MIN_ALIGNMENT,
        DRM_XE_QUERY_CONFIG_VA_BITS,
        DRM_XE_QUERY_CONFIG_MAX_EXEC_QUEUE_PRIORITY,
        I915_GEM_CREATE_EXT_MEMORY_REGIONS,
        I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS,
        I915_MMAP_OFFSET_GTT,
        I915_MMAP_OFFSET_WC,
        I915_MMAP_OFFSET_WB,
        I915_MMAP_OFFSET_UC,
        I915_MMAP_OFFSET_FIXED,
        I915_MADV_WILLNEED,
        I915_MADV_DONTNEED,
        I915_MEMORY_CLASS_SYSTEM,
        I915_MEMORY_CLASS_DEVICE,
        I915_EXEC_RING_MASK,
        I915_EXEC_DEFAULT,
        I915_EXEC_RENDER,
        I915_EXEC_BSD,
        I915_EXEC_BLT,
        I915_EXEC_VEBOX,
        I915_EXEC_CONSTANTS_MASK,
        I915_EXEC_GEN7_SOL_RESET,
        I915_EXEC_SECURE,
        I915_EXEC_IS_PINNED,
        I915_EXEC_NO_RELOC,
        I915_EXEC_HANDLE_LUT,
        I915_EXEC_BSD_MASK,
        I915_EXEC_FENCE_IN,
        I915_EXEC_FENCE_OUT,
        I915_EXEC_BATCH_FIRST,
        I915_EXEC_FENCE_ARRAY,
        I915_EXEC_FENCE_SUBMIT,
        I915_EXEC_USE_EXTENSIONS,
        I915_EXEC_CONTEXT_ID_MASK,
        EXEC_OBJECT_PAD_TO_SIZE,
        EXEC_OBJECT_CAPTURE,
        I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS,
        I915_CONTEXT_CREATE_FLAGS_SINGLE_TIMELINE,
        I915_CONTEXT_CREATE_EXT_SETPARAM,
        I915_CONTEXT_PARAM_BAN_PERIOD,
        I915_CONTEXT_PARAM_NO_ZEROMAP,
        I915_CONTEXT_PARAM_GTT_SIZE,
        I915_CONTEXT_PARAM_NO_ERROR_CAPTURE,
        I915_CONTEXT_PARAM_BANNABLE,
        I915_CONTEXT_PARAM_PRIORITY,
        I915_CONTEXT_PARAM_SSEU,
        I915_CONTEXT_PARAM_RECOVERABLE,
        I915_CONTEXT_PARAM_VM,
        I915_CONTEXT_PARAM_ENGINES,
        I915_CONTEXT_PARAM_PERSISTENCE,
        I915_CONTEXT_PARAM_RINGSIZE,
        I915_CONTEXT_PARAM_PROTECTED_CONTENT,
        I915_CONTEXT_PARAM_LOW_LATENCY,
        I915_CONTEXT_MAX_USER_PRIORITY,
        I915_CONTEXT_DEFAULT_PRIORITY,
        I915_CONTEXT_MIN_USER_PRIORITY,
        I915_CONTEXT_SSEU_FLAG_ENGINE_INDEX,
        I915_ENGINE_CLASS_RENDER,
        I915_ENGINE_CLASS_COPY,
        I915_ENGINE_CLASS_VIDEO,
        I915_ENGINE_CLASS_VIDEO_ENHANCE,
        I915_TILING_NONE,
        I915_TILING_X,
        I915_TILING_Y,
        I915_BIT_6_SWIZZLE_NONE,
        I915_REG_READ_8B_WA,
        DRM_XE_DEVICE_QUERY_MEM_REGIONS,
        DRM_XE_MEM_REGION_CLASS_SYSMEM,
        DRM_XE_MEM_REGION_CLASS_VRAM,
        DRM_XE_GEM_CREATE_FLAG_DEFER_BACKING,
        DRM_XE_GEM_CREATE_FLAG_SCANOUT,
        DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM,
        DRM_XE_GEM_CPU_CACHING_WB,
        DRM_XE_GEM_CPU_CACHING_WC,
        DRM_CLOEXEC,
        DRM_RDWR,
    );
    let renamed = [
        (
            "DRM_I915_QUERY_MEMORY_REGIONS",
            I915_QUERY_MEMORY_REGIONS as i128,
        ),
        (
            "DRM_I915_QUERY_TOPOLOGY_INFO",
            I915_QUERY_TOPOLOGY_INFO as i128,
        ),
        // Negative enum values in C, the u16 fields' bit patterns here.
        (
            "(__u16)I915_ENGINE_CLASS_INVALID",
            I915_ENGINE_CLASS_INVALID as i128,
        ),
        (
            "(__u16)I915_ENGINE_CLASS_INVALID_NONE",
            I915_ENGINE_CLASS_INVALID_NONE as i128,
        ),
    ]
    .map(|(name, v)| (name.to_string(), v));
    for (name, value) in same.into_iter().chain(renamed) {
        check(format!("(long long)({name}) == {value}LL"));
    }
    c
}
