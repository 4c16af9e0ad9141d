//! Memory regions and the driver that provides them.
//!
//! A [`MemoryRegion`] hands out room for an object's bytes (a [`Backing`])
//! and says where those bytes live as a file descriptor and offset
//! ([`Storage`]) — which is all the manager needs to read and write them,
//! copy them between regions, punch them, release them to swap, and map
//! them into the guest (SHMEM_MAP of the fd range).
//!
//! A [`MemoryDriver`] is the set of regions of one host GPU. Today:
//! [`EmulatedDriver`] — system memory plus an *emulated* device-local pool
//! standing in for Intel LMEM on hosts without an Intel GPU. The Intel
//! i915 / xe drivers implement the same trait: regions by memory class and
//! instance (`DRM_I915_QUERY_MEMORY_REGIONS`), CPU mapping by fd + offset
//! (GEM mmap offsets, PRIME fds), and madvise passed through to the kernel
//! ([`MemoryRegion::madvise`]).
//!
//! Regions never evict: a full region answers [`RegionError::NoSpace`] and
//! the manager decides what to evict (policy lives in `placement`).

mod device;
mod system;

use std::fmt;
use std::io;
use std::sync::Arc;
use vm_memory::VolatileSlice;

pub use device::{EmulatedDeviceRegion, PoolRange, DEFAULT_DEVICE_POOL_SIZE};
pub use system::SystemRegion;

use crate::shmem::ShmemFile;
use crate::types::{Madv, MemoryClass, RegionId};

/// What a region is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Index in the manager.
    pub id: RegionId,
    /// Memory class (i915 `I915_MEMORY_CLASS_*`).
    pub class: MemoryClass,
    /// Instance within the class.
    pub instance: u16,
    /// Name for logs and the admin socket.
    pub name: String,
    /// Bytes the region can hold, `None` when bounded only by the host
    /// (system memory: quotas and the shrinker bound it instead).
    pub capacity: Option<u64>,
    /// Whether the region is emulated (no real device memory behind it).
    pub emulated: bool,
}

/// How CPU and guest mappings of a region are cached (virtio-gpu MAP_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Cached, coherent.
    Cached,
    /// Write-combined (device memory through a BAR).
    WriteCombined,
}

/// Room for one object's bytes, as a region handed it out.
#[derive(Debug)]
pub enum Backing {
    /// The object's own memfd (system memory), created lazily on populate.
    Shmem(ShmemFile),
    /// A range of a region's pool file (emulated device memory).
    Pool(PoolRange),
    /// A GEM object of a host GPU driver.
    Gem(crate::intel::GemBuffer),
}

/// Where a backing's bytes are: `len` bytes of `file` starting at `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Storage<'a> {
    /// The buffer (a memfd, the device pool's file, a GEM object).
    pub file: &'a dyn crate::buffer::BufferIo,
    /// Offset of the object's first byte.
    pub offset: u64,
    /// Object size.
    pub len: u64,
}

impl Storage<'_> {
    /// The object's first byte in this process's mapping of its file, for
    /// copies without a system call; `None` if the file could not be
    /// mapped. Valid for `len` bytes while the caller holds the object (its
    /// lock, or `BufferManager::with_storage`). Never turn it into a Rust
    /// reference: the guest may map the same pages.
    pub fn mapped(&self) -> Option<std::ptr::NonNull<u8>> {
        let base = self.file.mapping()?;
        let offset = usize::try_from(self.offset).ok()?;
        // SAFETY: `offset..offset+len` lies inside the file (the region
        // handed this range out), which the mapping covers whole.
        Some(unsafe { base.add(offset) })
    }

    /// A volatile view of `len` bytes at `at` (an offset within the
    /// object), for copies without a system call: `None` if the file could
    /// not be mapped or the range is not inside the object. Tied to this
    /// storage's lifetime, i.e. to the caller holding the object (its lock,
    /// or `BufferManager::with_storage`), so it cannot outlive the mapping
    /// or see the object move. Volatile accesses never create references,
    /// so a guest writing the same pages at the same time is fine.
    pub fn slice(&self, at: u64, len: usize) -> Option<VolatileSlice<'_>> {
        let end = at.checked_add(u64::try_from(len).ok()?)?;
        if end > self.len {
            return None;
        }
        let base = self.mapped()?;
        let at = usize::try_from(at).ok()?;
        // SAFETY: `base..base+self.len` is this object's bytes in a mapping
        // of its file that lives as long as the file, which `self` borrows;
        // `at + len <= self.len` was checked above; the object cannot move
        // while `self` exists (see above).
        Some(unsafe { VolatileSlice::new(base.as_ptr().add(at), len) })
    }
}

/// Why a region could not hand out room.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// The region is full (eviction may help).
    #[error("region full: {size} bytes wanted, {free} free")]
    NoSpace {
        /// Bytes wanted.
        size: u64,
        /// Bytes free (possibly fragmented).
        free: u64,
    },
    /// The host refused (memfd, file descriptors, memory).
    #[error("{op} failed")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// A region of memory objects can be placed in.
pub trait MemoryRegion: Send + Sync + fmt::Debug {
    /// What the region is.
    fn info(&self) -> &RegionInfo;

    /// Room for `size` (page-aligned) bytes, named `name` for admins. Never
    /// evicts. Allocates no page yet: pages appear when written.
    fn allocate(&self, size: u64, name: &str) -> Result<Backing, RegionError>;

    /// Gives the room and every page of it back (a region may keep the
    /// file for reuse, zeroed before it is handed out again).
    fn free(&self, backing: Backing);

    /// Gives back a backing whose file descriptor left this process (mapped
    /// into a guest, exported): it is never reused for another object.
    fn discard(&self, backing: Backing) {
        self.free(backing);
    }

    /// Bytes of freed objects' files kept (with their pages) for reuse.
    fn cached(&self) -> u64 {
        0
    }

    /// Drops everything kept for reuse; the bytes released.
    fn trim(&self) -> u64 {
        0
    }

    /// Where the backing's bytes are. Panics never: a backing of another
    /// region kind is a manager bug reported as an error.
    fn storage<'a>(&'a self, backing: &'a Backing) -> io::Result<Storage<'a>>;

    /// Caching of mappings of this region.
    fn caching(&self) -> Caching;

    /// Whether resident pages can be released to swap (MADV_COLD /
    /// MADV_PAGEOUT). Device memory can only be purged or evicted.
    fn can_release(&self) -> bool;

    /// Bytes handed out and not yet freed.
    fn used(&self) -> u64;

    /// Kernel-tracked madvise (i915 `I915_GEM_MADVISE`): `Some(retained)`
    /// when the region's kernel driver tracks purgeability itself, `None`
    /// when vgpu's own state is the only truth (memfd-backed regions).
    fn madvise(&self, _backing: &Backing, _madv: Madv) -> Option<io::Result<bool>> {
        None
    }
    /// Whether the kernel still uses the buffer — work vgpu did not fence,
    /// such as another process's on an exported dma-buf. Memfd-backed
    /// regions: never.
    fn busy(&self, _backing: &Backing) -> bool {
        false
    }
    /// Waits up to `timeout` for the kernel to be done with the buffer
    /// before the CPU copies it; `TimedOut` if it is not.
    fn wait_idle(&self, _backing: &Backing, _timeout: std::time::Duration) -> io::Result<()> {
        Ok(())
    }
}

/// The regions of one host GPU.
pub trait MemoryDriver: Send + Sync + fmt::Debug {
    /// Driver name for logs, `vgpuctl stats` and `--print-capabilities`.
    fn name(&self) -> &str;
    /// The regions, system memory first (its id must be [`RegionId::SYSTEM`]).
    fn regions(&self) -> Vec<Arc<dyn MemoryRegion>>;
    /// The GPU kernel that executes work on these regions' buffers, for
    /// drivers of a real GPU.
    fn gpu_kernel(&self) -> Option<Arc<dyn crate::intel::GemKernel>> {
        None
    }
}

/// The driver for hosts without an Intel GPU: system memory plus an
/// emulated device-local pool with LMEM's memory model.
#[derive(Debug)]
pub struct EmulatedDriver {
    regions: Vec<Arc<dyn MemoryRegion>>,
}

impl EmulatedDriver {
    /// System memory and an emulated device pool of `device_bytes` (0: no
    /// device region, system memory only).
    pub fn new(device_bytes: u64) -> io::Result<Self> {
        Self::with_cache(device_bytes, 0)
    }

    /// As [`Self::new`], keeping up to `cache_bytes` of freed system-memory
    /// files for reuse (see [`SystemRegion::with_cache`]).
    pub fn with_cache(device_bytes: u64, cache_bytes: u64) -> io::Result<Self> {
        let mut regions: Vec<Arc<dyn MemoryRegion>> =
            vec![Arc::new(SystemRegion::with_cache(cache_bytes))];
        if device_bytes > 0 {
            regions.push(Arc::new(EmulatedDeviceRegion::new(
                RegionId::DEVICE,
                device_bytes,
            )?));
        }
        Ok(Self { regions })
    }
}

impl MemoryDriver for EmulatedDriver {
    fn name(&self) -> &str {
        "emulated"
    }

    fn regions(&self) -> Vec<Arc<dyn MemoryRegion>> {
        self.regions.clone()
    }
}

pub(crate) fn wrong_backing(region: &RegionInfo) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("backing does not belong to region {}", region.name),
    )
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;
    use crate::shmem::ShmemFile;

    #[test]
    fn storage_slices_stay_inside_their_object() {
        let file = ShmemFile::create("slice-test", 3 * 4096).unwrap();
        file.write_at(4096 + 10, b"vgpu").unwrap();
        // An object of two pages starting at the file's second page.
        let storage = Storage {
            file: &file,
            offset: 4096,
            len: 2 * 4096,
        };
        let view = storage.slice(10, 4).unwrap();
        let mut got = [0u8; 4];
        view.read_slice(&mut got, 0).unwrap();
        assert_eq!(&got, b"vgpu");
        assert!(storage.slice(2 * 4096 - 4, 4).is_some(), "up to the end");
        assert!(storage.slice(2 * 4096 - 4, 5).is_none(), "past the object");
        assert!(storage.slice(u64::MAX, 1).is_none(), "overflowing");
    }
}
