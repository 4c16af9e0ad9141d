//! The i915 kernel driver through its ioctls (see [`super::uapi`]), issued
//! on a [`DrmDevice`]: a real render node, or in tests the fake kernel.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use rustix::io::Errno;

use super::drm::{call, gem_close, prime_export, DrmDevice, RenderNode};
use super::uapi::*;
use super::{parse_region_reply, ContextParam, GemKernel, GemObject, GpuExec, KernelRegion};
use crate::types::{Madv, MemoryClass};

/// The `DRM_IOCTL_I915_*` requests [`GemKernel::ioctl_simple`] runs: their
/// arguments hold no pointers (with the checks of [`simple_is_pointer_free`]).
pub const SIMPLE_IOCTLS: [u32; 12] = [
    DRM_IOCTL_I915_REG_READ,
    DRM_IOCTL_I915_GEM_GET_APERTURE,
    DRM_IOCTL_I915_GEM_SET_TILING,
    DRM_IOCTL_I915_GEM_GET_TILING,
    DRM_IOCTL_I915_GEM_SET_DOMAIN,
    DRM_IOCTL_I915_GET_RESET_STATS,
    DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
    DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
    DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
    DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
    DRM_IOCTL_I915_GEM_VM_CREATE,
    DRM_IOCTL_I915_GEM_VM_DESTROY,
];

/// Context parameters passed by value (`value` is never a pointer).
const PLAIN_CONTEXT_PARAMS: [u64; 12] = [
    I915_CONTEXT_PARAM_BAN_PERIOD,
    I915_CONTEXT_PARAM_NO_ZEROMAP,
    I915_CONTEXT_PARAM_GTT_SIZE,
    I915_CONTEXT_PARAM_NO_ERROR_CAPTURE,
    I915_CONTEXT_PARAM_BANNABLE,
    I915_CONTEXT_PARAM_PRIORITY,
    I915_CONTEXT_PARAM_RECOVERABLE,
    I915_CONTEXT_PARAM_VM,
    I915_CONTEXT_PARAM_PERSISTENCE,
    I915_CONTEXT_PARAM_RINGSIZE,
    I915_CONTEXT_PARAM_PROTECTED_CONTENT,
    I915_CONTEXT_PARAM_LOW_LATENCY,
];

/// Whether the kernel follows no pointer from `payload` as the argument of
/// `request`: one of [`SIMPLE_IOCTLS`], of exactly its size, a context
/// parameter passed by value, no VM-control extension chain.
pub fn simple_is_pointer_free(request: u32, payload: &[u8]) -> bool {
    if !SIMPLE_IOCTLS.contains(&request) || payload.len() != ioc_size(request) {
        return false;
    }
    match request {
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM | DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM => {
            I915ContextParam::read_from(payload)
                .is_some_and(|p| PLAIN_CONTEXT_PARAMS.contains(&p.param))
        }
        DRM_IOCTL_I915_GEM_VM_CREATE | DRM_IOCTL_I915_GEM_VM_DESTROY => {
            I915GemVmControl::read_from(payload).is_some_and(|v| v.extensions == 0)
        }
        _ => true,
    }
}

/// An i915 render node.
#[derive(Debug)]
pub struct I915Kernel {
    dev: Arc<dyn DrmDevice>,
    discrete: bool,
}

impl I915Kernel {
    /// Over an i915 device.
    pub fn new(dev: Arc<dyn DrmDevice>) -> io::Result<Self> {
        let mut k = Self {
            dev,
            discrete: false,
        };
        k.discrete = k.regions()?.iter().any(|r| r.class == MemoryClass::Device);
        Ok(k)
    }

    /// Over an open i915 render node.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Self::new(Arc::new(RenderNode::new(fd)))
    }

    fn dev(&self) -> &dyn DrmDevice {
        &*self.dev
    }

    /// Runs one DRM_I915_QUERY item: first for the length, then the data.
    fn query_item(&self, id: u64) -> Result<Vec<u8>, Errno> {
        let mut item = I915QueryItem {
            query_id: id,
            ..Default::default()
        };
        let mut q = I915Query {
            num_items: 1,
            flags: 0,
            items_ptr: &mut item as *mut I915QueryItem as u64,
        };
        // SAFETY: I915_QUERY takes a drm_i915_query whose items_ptr points
        // at one live item; data_ptr is 0, so only the length is written.
        unsafe { call(self.dev(), DRM_IOCTL_I915_QUERY, &mut q) }?;
        if item.length < 0 {
            return Err(Errno::from_raw_os_error(-item.length));
        }
        let mut data = vec![0u8; item.length as usize];
        item.data_ptr = data.as_mut_ptr() as u64;
        q.items_ptr = &mut item as *mut I915QueryItem as u64;
        // SAFETY: as above, with data_ptr pointing at `length` writable bytes.
        unsafe { call(self.dev(), DRM_IOCTL_I915_QUERY, &mut q) }?;
        if item.length < 0 {
            return Err(Errno::from_raw_os_error(-item.length));
        }
        data.truncate(item.length as usize);
        Ok(data)
    }

    /// Parses a DRM_I915_QUERY_MEMORY_REGIONS reply.
    pub fn parse_regions(data: &[u8]) -> io::Result<Vec<KernelRegion>> {
        let head = size_of::<I915QueryMemoryRegions>();
        let each = size_of::<I915MemoryRegionInfo>();
        parse_region_reply(data, head, each, |b| {
            let class = match b.u16_at(0) {
                I915_MEMORY_CLASS_SYSTEM => MemoryClass::System,
                I915_MEMORY_CLASS_DEVICE => MemoryClass::Device,
                _ => return None,
            };
            let free = b.u64_at(16);
            Some(KernelRegion {
                class,
                instance: b.u16_at(2),
                size: b.u64_at(8),
                // u64::MAX: unknown (no CAP_PERFMON).
                free: (free != u64::MAX).then_some(free),
                // Not reported: GEM_CREATE_EXT rounds up and says so.
                page: super::MIN_PAGE,
            })
        })
    }
}

impl GemKernel for I915Kernel {
    fn driver(&self) -> &str {
        "i915"
    }

    fn discrete(&self) -> bool {
        self.discrete
    }

    fn regions(&self) -> io::Result<Vec<KernelRegion>> {
        let data = self.query_item(I915_QUERY_MEMORY_REGIONS)?;
        Self::parse_regions(&data)
    }

    fn device_id(&self) -> Option<u32> {
        u32::try_from(self.getparam(I915_PARAM_CHIPSET_ID).ok()?).ok()
    }

    fn getparam(&self, param: i32) -> Result<i32, Errno> {
        let mut value: i32 = 0;
        let mut g = I915GetParam {
            param,
            value: &mut value as *mut i32 as u64,
            ..Default::default()
        };
        // SAFETY: GETPARAM takes a drm_i915_getparam whose value points at
        // a live int the kernel writes.
        unsafe { call(self.dev(), DRM_IOCTL_I915_GETPARAM, &mut g) }?;
        Ok(value)
    }

    fn query(&self, query_id: u64) -> Result<Vec<u8>, Errno> {
        self.query_item(query_id)
    }

    /// i915 rounds the size up to the placement's page itself (64K for
    /// device memory on DG2 and later) and writes back what it made.
    fn create(&self, size: u64, region: &KernelRegion) -> Result<GemObject, Errno> {
        let mut ci = I915MemoryClassInstance {
            memory_class: match region.class {
                MemoryClass::System => I915_MEMORY_CLASS_SYSTEM,
                MemoryClass::Device => I915_MEMORY_CLASS_DEVICE,
            },
            memory_instance: region.instance,
        };
        let mut ext = I915CreateExtMemoryRegions {
            name: I915_GEM_CREATE_EXT_MEMORY_REGIONS,
            num_regions: 1,
            regions: &mut ci as *mut I915MemoryClassInstance as u64,
            ..Default::default()
        };
        let mut c = I915GemCreateExt {
            size,
            handle: 0,
            // No NEEDS_CPU_ACCESS: i915 takes it only with system memory
            // among the placements (to spill there), and vgpu places in
            // exactly one region. On small-BAR parts the kernel moves a
            // device object to the CPU-visible part when the CPU faults it.
            flags: 0,
            extensions: &mut ext as *mut I915CreateExtMemoryRegions as u64,
        };
        // SAFETY: GEM_CREATE_EXT takes a drm_i915_gem_create_ext whose
        // extension chain (one memory-regions extension pointing at one
        // class/instance) lives across the call.
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_CREATE_EXT, &mut c) }?;
        Ok(GemObject {
            handle: c.handle,
            size: c.size,
        })
    }

    fn mmap(&self, handle: u32, size: u64, _region: &KernelRegion) -> Result<NonNull<u8>, Errno> {
        let mut m = I915GemMmapOffset {
            handle,
            // Discrete parts only accept FIXED (the kernel picks WB for
            // system memory and WC for device memory); integrated ones WB.
            flags: if self.discrete {
                I915_MMAP_OFFSET_FIXED
            } else {
                I915_MMAP_OFFSET_WB
            },
            ..Default::default()
        };
        // SAFETY: GEM_MMAP_OFFSET takes a drm_i915_gem_mmap_offset (no pointers).
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_MMAP_OFFSET, &mut m) }?;
        self.dev.mmap(m.offset, size)
    }

    fn munmap(&self, ptr: NonNull<u8>, size: u64) {
        // SAFETY: the caller unmaps a mapping `mmap` made and no longer
        // uses (GemBuffer's drop).
        unsafe { self.dev.munmap(ptr, size) };
    }

    fn export(&self, handle: u32) -> Result<OwnedFd, Errno> {
        prime_export(self.dev(), handle)
    }

    fn madvise(&self, handle: u32, madv: Madv) -> Result<Option<bool>, Errno> {
        let mut m = I915GemMadvise {
            handle,
            madv: match madv {
                Madv::WillNeed => I915_MADV_WILLNEED,
                Madv::DontNeed | Madv::Purged => I915_MADV_DONTNEED,
            },
            retained: 0,
        };
        // SAFETY: GEM_MADVISE takes a drm_i915_gem_madvise (no pointers).
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_MADVISE, &mut m) }?;
        Ok(Some(m.retained != 0))
    }

    fn busy(&self, handle: u32) -> Result<bool, Errno> {
        let mut b = I915GemBusy { handle, busy: 0 };
        // SAFETY: GEM_BUSY takes a drm_i915_gem_busy (no pointers).
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_BUSY, &mut b) }?;
        Ok(b.busy != 0)
    }

    fn wait(&self, handle: u32, timeout_ns: i64) -> Result<(), Errno> {
        let mut w = I915GemWait {
            bo_handle: handle,
            flags: 0,
            timeout_ns,
        };
        // SAFETY: GEM_WAIT takes a drm_i915_gem_wait (no pointers).
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_WAIT, &mut w) }
    }

    fn close(&self, handle: u32) {
        gem_close(self.dev(), handle);
    }

    fn context_create(&self, params: &[ContextParam]) -> Result<u32, Errno> {
        // One SETPARAM extension per parameter, chained; the vector is not
        // resized after the links are taken.
        let mut exts = Vec::with_capacity(params.len());
        for p in params {
            let (size, value) = match p.data.len() {
                0 => (0, p.value),
                n => (
                    u32::try_from(n).map_err(|_| Errno::INVAL)?,
                    p.data.as_ptr() as u64,
                ),
            };
            exts.push(I915ContextCreateExtSetparam {
                name: I915_CONTEXT_CREATE_EXT_SETPARAM,
                param: I915ContextParam {
                    ctx_id: 0,
                    size,
                    param: p.param,
                    value,
                },
                ..Default::default()
            });
        }
        for i in (0..exts.len().saturating_sub(1)).rev() {
            let next = &mut exts[i + 1] as *mut I915ContextCreateExtSetparam as u64;
            exts[i].next_extension = next;
        }
        let mut c = I915GemContextCreateExt {
            ctx_id: 0,
            flags: if exts.is_empty() {
                0
            } else {
                I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS
            },
            extensions: exts
                .first_mut()
                .map_or(0, |e| e as *mut I915ContextCreateExtSetparam as u64),
        };
        // SAFETY: GEM_CONTEXT_CREATE_EXT takes a
        // drm_i915_gem_context_create_ext whose extension chain lives in
        // `exts` across the call; a parameter with data points at its
        // `size` bytes in `params`, which outlive the call.
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT, &mut c) }?;
        Ok(c.ctx_id)
    }

    fn context_destroy(&self, ctx: u32) {
        let mut d = I915GemContextDestroy {
            ctx_id: ctx,
            pad: 0,
        };
        // SAFETY: GEM_CONTEXT_DESTROY takes a drm_i915_gem_context_destroy
        // (no pointers); the ioctl only writes nothing back.
        let _ = unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_CONTEXT_DESTROY, &mut d) };
    }

    /// Runs `request` when [`simple_is_pointer_free`] says so; EINVAL for
    /// anything else (vgpu never lets the kernel follow a guest's pointer).
    fn ioctl_simple(&self, request: u32, payload: &mut [u8]) -> Result<(), Errno> {
        if !simple_is_pointer_free(request, payload) {
            return Err(Errno::INVAL);
        }
        // SAFETY: the argument holds no pointer the kernel follows
        // (checked just above), and is exactly `_IOC_SIZE` bytes.
        unsafe { self.dev.ioctl(request, payload) }
    }

    fn execbuffer(&self, exec: &mut GpuExec) -> Result<OwnedFd, Errno> {
        exec.link_relocations()?;
        let count = u32::try_from(exec.objects.len()).map_err(|_| Errno::INVAL)?;
        let mut eb = I915GemExecbuffer2 {
            buffers_ptr: exec.objects.as_mut_ptr() as u64,
            buffer_count: count,
            batch_start_offset: exec.batch_start,
            batch_len: exec.batch_len,
            flags: exec.flags | I915_EXEC_FENCE_OUT,
            rsvd1: u64::from(exec.context),
            ..Default::default()
        };
        // SAFETY: EXECBUFFER2_WR takes a drm_i915_gem_execbuffer2 whose
        // buffers_ptr points at `count` live exec objects, each relocs_ptr
        // at its live relocations (linked just above, nothing moved since);
        // the kernel writes offsets back into them and the fence into rsvd2.
        unsafe { call(self.dev(), DRM_IOCTL_I915_GEM_EXECBUFFER2_WR, &mut eb) }?;
        let fd = (eb.rsvd2 >> 32) as i32;
        if fd < 0 {
            return Err(Errno::BADF);
        }
        // SAFETY: with I915_EXEC_FENCE_OUT the kernel created this sync_file
        // descriptor for us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
