//! The xe kernel driver through its ioctls (see [`super::uapi`]), issued on
//! a [`DrmDevice`]: a real render node, or in tests the fake kernel. xe
//! has no buffer madvise: vgpu's own purge policy applies (a purge closes
//! the object), and busy/wait poll the object's dma-buf, whose readiness
//! reflects the GPU's fences.
//!
//! ## Object sizes, and what is charged
//!
//! xe wants an object's size to be a multiple of its region's page
//! (`min_page_size` in DRM_XE_DEVICE_QUERY_MEM_REGIONS): the CPU page for
//! system memory, and 64 KiB for VRAM on parts with 64K VRAM pages
//! (`XE_VRAM_FLAGS_NEED64K`: DG2, Battlemage and later), where
//! `xe_gem_create_ioctl` answers anything else with EINVAL. A guest may ask
//! for a 4 KiB device-memory blob, so [`XeKernel::create`] rounds the size
//! up to the region's page: that blob is a 64 KiB GEM object.
//!
//! Which size counts where:
//!
//! * **The region is charged the real size** (the rounded one): vgpu's
//!   `used` of the region, its capacity check and therefore placement and
//!   eviction, and the region's `used` in `vgpuctl stats`. That is what the
//!   kernel takes from VRAM, and it has to be: with the guest's size vgpu
//!   would think a 4 MiB VRAM region holds 1024 4-KiB blobs when the kernel
//!   has room for 64, place objects the kernel then refuses with ENOSPC,
//!   and evict too little to make room.
//! * **Everything else is the guest's size**: the object's size in the
//!   manager, the VM's charge and quota, residency and purged bytes, the
//!   mapping vgpu copies through and the range the VMM maps for the guest
//!   (the padding is never reachable, so it holds nothing anyone reads).
//!   The VM's charge is the manager's per-object accounting, the same for
//!   every driver, so a guest's quota does not depend on which GPU the host
//!   has; the padding it does not see is under 64 KiB per device object,
//!   bounded by the per-VM resource limit, and shows in the region's
//!   `used`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use rustix::event::{PollFlags, Timespec};
use rustix::io::Errno;

use super::drm::{call, gem_close, prime_export, DrmDevice, RenderNode};
use super::uapi::*;
use super::{parse_region_reply, GemKernel, GemObject, KernelRegion, MIN_PAGE};
use crate::types::{Madv, MemoryClass};

/// An xe render node.
#[derive(Debug)]
pub struct XeKernel {
    dev: Arc<dyn DrmDevice>,
    discrete: bool,
}

impl XeKernel {
    /// Over an xe device.
    pub fn new(dev: Arc<dyn DrmDevice>) -> io::Result<Self> {
        let mut k = Self {
            dev,
            discrete: false,
        };
        k.discrete = k.regions()?.iter().any(|r| r.class == MemoryClass::Device);
        Ok(k)
    }

    /// Over an open xe render node.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Self::new(Arc::new(RenderNode::new(fd)))
    }

    fn dev(&self) -> &dyn DrmDevice {
        &*self.dev
    }

    /// Parses a DRM_XE_DEVICE_QUERY_MEM_REGIONS reply.
    pub fn parse_regions(data: &[u8]) -> io::Result<Vec<KernelRegion>> {
        let head = size_of::<XeQueryMemRegions>();
        let each = size_of::<XeMemRegion>();
        parse_region_reply(data, head, each, |b| {
            let class = match b.u16_at(0) {
                DRM_XE_MEM_REGION_CLASS_SYSMEM => MemoryClass::System,
                DRM_XE_MEM_REGION_CLASS_VRAM => MemoryClass::Device,
                _ => return None,
            };
            let (total, used) = (b.u64_at(8), b.u64_at(16));
            Some(KernelRegion {
                class,
                instance: b.u16_at(2),
                size: total,
                free: Some(total.saturating_sub(used)),
                page: u64::from(b.u32_at(4)).max(MIN_PAGE),
            })
        })
    }

    /// Polls the object's dma-buf for write access (no fence pending) for
    /// up to `timeout`; whether it is idle.
    fn idle(&self, handle: u32, timeout: Option<&Timespec>) -> Result<bool, Errno> {
        let dmabuf = prime_export(self.dev(), handle)?;
        self.dev
            .poll_dmabuf(dmabuf.as_fd(), PollFlags::OUT, timeout)
    }
}

impl GemKernel for XeKernel {
    fn driver(&self) -> &str {
        "xe"
    }

    fn discrete(&self) -> bool {
        self.discrete
    }

    fn regions(&self) -> io::Result<Vec<KernelRegion>> {
        let mut q = XeDeviceQuery {
            query: DRM_XE_DEVICE_QUERY_MEM_REGIONS,
            ..Default::default()
        };
        // SAFETY: DEVICE_QUERY takes a drm_xe_device_query; with size 0 and
        // data 0 the kernel only writes the size.
        unsafe { call(self.dev(), DRM_IOCTL_XE_DEVICE_QUERY, &mut q) }?;
        let mut data = vec![0u8; q.size as usize];
        q.data = data.as_mut_ptr() as u64;
        // SAFETY: as above, with data pointing at `size` writable bytes.
        unsafe { call(self.dev(), DRM_IOCTL_XE_DEVICE_QUERY, &mut q) }?;
        Self::parse_regions(&data)
    }

    fn device_id(&self) -> Option<u32> {
        let mut q = XeDeviceQuery {
            query: DRM_XE_DEVICE_QUERY_CONFIG,
            ..Default::default()
        };
        // SAFETY: as in `regions`: first the size only.
        unsafe { call(self.dev(), DRM_IOCTL_XE_DEVICE_QUERY, &mut q) }.ok()?;
        let mut data = vec![0u8; q.size as usize];
        q.data = data.as_mut_ptr() as u64;
        // SAFETY: then the data, into `size` writable bytes.
        unsafe { call(self.dev(), DRM_IOCTL_XE_DEVICE_QUERY, &mut q) }.ok()?;
        let at = size_of::<XeQueryConfig>() + 8 * DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID;
        let v = u64::from_ne_bytes(data.get(at..at + 8)?.try_into().ok()?);
        Some((v & 0xffff) as u32)
    }

    /// The size rounded up to the region's page, which xe requires (see
    /// the module docs).
    fn create(&self, size: u64, region: &KernelRegion) -> Result<GemObject, Errno> {
        if region.instance >= 32 {
            return Err(Errno::INVAL);
        }
        let size = size
            .checked_next_multiple_of(region.page.max(MIN_PAGE))
            .ok_or(Errno::TOOBIG)?;
        let vram = region.class == MemoryClass::Device;
        let mut c = XeGemCreate {
            size,
            placement: 1 << region.instance,
            flags: if vram {
                DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM
            } else {
                0
            },
            // VRAM must be write-combined for the CPU; system memory WB.
            cpu_caching: if vram {
                DRM_XE_GEM_CPU_CACHING_WC
            } else {
                DRM_XE_GEM_CPU_CACHING_WB
            },
            ..Default::default()
        };
        // SAFETY: GEM_CREATE takes a drm_xe_gem_create (no extensions).
        unsafe { call(self.dev(), DRM_IOCTL_XE_GEM_CREATE, &mut c) }?;
        Ok(GemObject {
            handle: c.handle,
            size,
        })
    }

    fn mmap(&self, handle: u32, size: u64, _region: &KernelRegion) -> Result<NonNull<u8>, Errno> {
        let mut m = XeGemMmapOffset {
            handle,
            ..Default::default()
        };
        // SAFETY: GEM_MMAP_OFFSET takes a drm_xe_gem_mmap_offset (no pointers).
        unsafe { call(self.dev(), DRM_IOCTL_XE_GEM_MMAP_OFFSET, &mut m) }?;
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

    fn madvise(&self, _handle: u32, _madv: Madv) -> Result<Option<bool>, Errno> {
        Ok(None)
    }

    fn busy(&self, handle: u32) -> Result<bool, Errno> {
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        Ok(!self.idle(handle, Some(&zero))?)
    }

    fn wait(&self, handle: u32, timeout_ns: i64) -> Result<(), Errno> {
        let t = Timespec {
            tv_sec: timeout_ns.max(0) / 1_000_000_000,
            tv_nsec: timeout_ns.max(0) % 1_000_000_000,
        };
        match self.idle(handle, Some(&t))? {
            true => Ok(()),
            false => Err(Errno::TIME),
        }
    }

    fn close(&self, handle: u32) {
        gem_close(self.dev(), handle);
    }
}
