//! The i915 kernel driver through its ioctls (see [`super::uapi`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use rustix::io::Errno;
use rustix::ioctl::{ioctl, Opcode, Updater};

use super::uapi::*;
use super::{parse_region_reply, ContextParam, GemKernel, GpuExec, KernelRegion};
use crate::types::{Madv, MemoryClass};

/// Runs an update-style ioctl.
///
/// # Safety
///
/// `OP` must take a `T`, and every pointer inside `value` must be valid for
/// what the kernel reads and writes through it during the call.
pub(crate) unsafe fn update<const OP: Opcode, T>(
    fd: BorrowedFd<'_>,
    value: &mut T,
) -> Result<(), Errno> {
    loop {
        // SAFETY: forwarded to the caller.
        match unsafe { ioctl(fd, Updater::<OP, T>::new(value)) } {
            Err(Errno::INTR | Errno::AGAIN) => continue,
            r => return r,
        }
    }
}

/// `DRM_IOCTL_GEM_CLOSE`.
pub(crate) fn gem_close(fd: BorrowedFd<'_>, handle: u32) {
    let mut c = GemClose { handle, pad: 0 };
    // SAFETY: GEM_CLOSE takes a drm_gem_close (no pointers).
    let _ = unsafe { update::<DRM_IOCTL_GEM_CLOSE, _>(fd, &mut c) };
}

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD` (read-write, close-on-exec).
pub(crate) fn prime_export(fd: BorrowedFd<'_>, handle: u32) -> Result<OwnedFd, Errno> {
    let mut p = PrimeHandle {
        handle,
        flags: DRM_CLOEXEC | DRM_RDWR,
        fd: -1,
    };
    // SAFETY: PRIME_HANDLE_TO_FD takes a drm_prime_handle (no pointers).
    unsafe { update::<DRM_IOCTL_PRIME_HANDLE_TO_FD, _>(fd, &mut p) }?;
    if p.fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(p.fd) })
}

/// Maps `size` bytes of the DRM file at the fake offset `offset`.
pub(crate) fn map_offset(fd: BorrowedFd<'_>, offset: u64, size: u64) -> Result<NonNull<u8>, Errno> {
    let len = usize::try_from(size).map_err(|_| Errno::INVAL)?;
    // SAFETY: a fresh shared mapping chosen by the kernel at the offset it
    // gave for this object; it replaces no existing memory.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            fd,
            offset,
        )
    }?;
    NonNull::new(p.cast::<u8>()).ok_or(Errno::NOMEM)
}

/// Unmaps what [`map_offset`] mapped.
pub(crate) fn unmap(ptr: NonNull<u8>, size: u64) {
    // SAFETY: the caller unmaps a mapping it made with `map_offset` and
    // no longer uses.
    let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), size as usize) };
}

/// An i915 render node.
#[derive(Debug)]
pub struct I915Kernel {
    fd: OwnedFd,
    discrete: bool,
}

impl I915Kernel {
    /// Over an open i915 render node.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        let mut k = Self {
            fd,
            discrete: false,
        };
        k.discrete = k.regions()?.iter().any(|r| r.class == MemoryClass::Device);
        Ok(k)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
        unsafe { update::<DRM_IOCTL_I915_QUERY, _>(self.fd(), &mut q) }?;
        if item.length < 0 {
            return Err(Errno::from_raw_os_error(-item.length));
        }
        let mut data = vec![0u8; item.length as usize];
        item.data_ptr = data.as_mut_ptr() as u64;
        q.items_ptr = &mut item as *mut I915QueryItem as u64;
        // SAFETY: as above, with data_ptr pointing at `length` writable bytes.
        unsafe { update::<DRM_IOCTL_I915_QUERY, _>(self.fd(), &mut q) }?;
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
        };
        // SAFETY: GETPARAM takes a drm_i915_getparam whose value points at
        // a live int the kernel writes.
        unsafe { update::<DRM_IOCTL_I915_GETPARAM, _>(self.fd(), &mut g) }?;
        Ok(value)
    }

    fn query(&self, query_id: u64) -> Result<Vec<u8>, Errno> {
        self.query_item(query_id)
    }

    fn create(&self, size: u64, region: &KernelRegion) -> Result<u32, Errno> {
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
            // Device objects are CPU-mapped by vgpu: ask for the
            // CPU-visible part of small-BAR parts.
            flags: if region.class == MemoryClass::Device {
                I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS
            } else {
                0
            },
            extensions: &mut ext as *mut I915CreateExtMemoryRegions as u64,
        };
        // SAFETY: GEM_CREATE_EXT takes a drm_i915_gem_create_ext whose
        // extension chain (one memory-regions extension pointing at one
        // class/instance) lives across the call.
        unsafe { update::<DRM_IOCTL_I915_GEM_CREATE_EXT, _>(self.fd(), &mut c) }?;
        Ok(c.handle)
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
        unsafe { update::<DRM_IOCTL_I915_GEM_MMAP_OFFSET, _>(self.fd(), &mut m) }?;
        map_offset(self.fd(), m.offset, size)
    }

    fn munmap(&self, ptr: NonNull<u8>, size: u64) {
        unmap(ptr, size);
    }

    fn export(&self, handle: u32) -> Result<OwnedFd, Errno> {
        prime_export(self.fd(), handle)
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
        unsafe { update::<DRM_IOCTL_I915_GEM_MADVISE, _>(self.fd(), &mut m) }?;
        Ok(Some(m.retained != 0))
    }

    fn busy(&self, handle: u32) -> Result<bool, Errno> {
        let mut b = I915GemBusy { handle, busy: 0 };
        // SAFETY: GEM_BUSY takes a drm_i915_gem_busy (no pointers).
        unsafe { update::<DRM_IOCTL_I915_GEM_BUSY, _>(self.fd(), &mut b) }?;
        Ok(b.busy != 0)
    }

    fn wait(&self, handle: u32, timeout_ns: i64) -> Result<(), Errno> {
        let mut w = I915GemWait {
            bo_handle: handle,
            flags: 0,
            timeout_ns,
        };
        // SAFETY: GEM_WAIT takes a drm_i915_gem_wait (no pointers).
        unsafe { update::<DRM_IOCTL_I915_GEM_WAIT, _>(self.fd(), &mut w) }
    }

    fn close(&self, handle: u32) {
        gem_close(self.fd(), handle);
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
        unsafe { update::<DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT, _>(self.fd(), &mut c) }?;
        Ok(c.ctx_id)
    }

    fn context_destroy(&self, ctx: u32) {
        let mut d = I915GemContextDestroy {
            ctx_id: ctx,
            pad: 0,
        };
        // SAFETY: GEM_CONTEXT_DESTROY takes a drm_i915_gem_context_destroy
        // (no pointers); the ioctl only writes nothing back.
        let _ = unsafe { update::<DRM_IOCTL_I915_GEM_CONTEXT_DESTROY, _>(self.fd(), &mut d) };
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
        unsafe { update::<DRM_IOCTL_I915_GEM_EXECBUFFER2_WR, _>(self.fd(), &mut eb) }?;
        let fd = (eb.rsvd2 >> 32) as i32;
        if fd < 0 {
            return Err(Errno::BADF);
        }
        // SAFETY: with I915_EXEC_FENCE_OUT the kernel created this sync_file
        // descriptor for us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
