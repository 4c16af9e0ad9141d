//! The emulated device-local region: a fixed-capacity pool standing in for
//! Intel LMEM on hosts without one. It is one memfd, carved into ranges by
//! a range allocator, so a
//! range can be mapped into the guest exactly like real device memory
//! (SHMEM_MAP of the pool fd at the range's offset).
//!
//! Nothing here is real device memory: pages come from host RAM like any
//! memfd. What is emulated faithfully is the *model*: a hard capacity that
//! forces eviction, and contents that must be copied out to system memory
//! before the range is reused.
//!
//! Ranges are handed out best-fit, in whole pages, by `range-alloc` (the
//! range allocator wgpu uses), so the whole pool can always be used.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use range_alloc::RangeAllocator;

use super::{wrong_backing, Backing, Caching, MemoryRegion, RegionError, RegionInfo, Storage};
use crate::shmem::ShmemFile;
use crate::types::{MemoryClass, RegionId, PAGE_SIZE};

/// Default capacity of the emulated device pool.
pub const DEFAULT_DEVICE_POOL_SIZE: u64 = 256 << 20;

/// A range of the pool, in pages.
#[derive(Clone, Copy)]
pub struct PoolRange {
    first: u32,
    pages: u32,
}

impl PoolRange {
    /// Byte offset in the pool file.
    pub fn offset(&self) -> u64 {
        u64::from(self.first) * PAGE_SIZE
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        u64::from(self.pages) * PAGE_SIZE
    }

    /// Whether the range is empty (never: ranges are at least a page).
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }
}

impl std::fmt::Debug for PoolRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolRange({:#x}+{:#x})", self.offset(), self.len())
    }
}

/// The emulated device-local region.
#[derive(Debug)]
pub struct EmulatedDeviceRegion {
    info: RegionInfo,
    pool: ShmemFile,
    allocator: Mutex<RangeAllocator<u32>>,
    used: AtomicU64,
}

impl EmulatedDeviceRegion {
    /// A pool of `capacity` bytes (rounded down to pages; at most 16 TiB).
    pub fn new(id: RegionId, capacity: u64) -> io::Result<Self> {
        let pages = u32::try_from(capacity / PAGE_SIZE)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device pool too large"))?;
        if pages == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "device pool smaller than a page",
            ));
        }
        let capacity = u64::from(pages) * PAGE_SIZE;
        let pool = ShmemFile::create("vgpu:device-pool (emulated LMEM)", capacity)?;
        Ok(Self {
            info: RegionInfo {
                id,
                class: MemoryClass::Device,
                instance: u16::from(id.0).saturating_sub(1),
                name: format!("device{}", u16::from(id.0).saturating_sub(1)),
                capacity: Some(capacity),
                emulated: true,
            },
            pool,
            allocator: Mutex::new(RangeAllocator::new(0..pages)),
            used: AtomicU64::new(0),
        })
    }

    /// The pool file (what the guest's host-visible region maps).
    pub fn pool(&self) -> &ShmemFile {
        &self.pool
    }

    fn allocator(&self) -> std::sync::MutexGuard<'_, RangeAllocator<u32>> {
        // A panic while holding this lock cannot leave the allocator
        // half-updated in a way we could repair; keep serving.
        self.allocator.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryRegion for EmulatedDeviceRegion {
    fn info(&self) -> &RegionInfo {
        &self.info
    }

    fn allocate(&self, size: u64, _name: &str) -> Result<Backing, RegionError> {
        let capacity = self.pool.size();
        let free = capacity.saturating_sub(self.used());
        let pages = u32::try_from(size.div_ceil(PAGE_SIZE))
            .ok()
            .filter(|p| *p > 0)
            .ok_or(RegionError::NoSpace { size, free })?;
        // `used` changes under the allocator's lock, so it always equals
        // what the allocator hands out (never above capacity in a stats
        // snapshot taken while another thread frees and allocates).
        let mut allocator = self.allocator();
        let range = allocator
            .allocate_range(pages)
            .map_err(|_| RegionError::NoSpace { size, free })?;
        self.used
            .fetch_add(u64::from(pages) * PAGE_SIZE, Ordering::Relaxed);
        drop(allocator);
        Ok(Backing::Pool(PoolRange {
            first: range.start,
            pages,
        }))
    }

    fn free(&self, backing: Backing) {
        if let Backing::Pool(range) = backing {
            // Pages go back to the host now; the range is reused later.
            if let Err(e) = self.pool.punch(range.offset(), range.len()) {
                log::warn!("punching freed device range {range:?} failed: {e}");
            }
            let mut allocator = self.allocator();
            allocator.free_range(range.first..range.first + range.pages);
            self.used.fetch_sub(range.len(), Ordering::Relaxed);
        }
    }

    fn storage<'a>(&'a self, backing: &'a Backing) -> io::Result<Storage<'a>> {
        match backing {
            Backing::Pool(range) => Ok(Storage {
                file: &self.pool,
                offset: range.offset(),
                len: range.len(),
            }),
            _ => Err(wrong_backing(&self.info)),
        }
    }

    fn caching(&self) -> Caching {
        Caching::WriteCombined
    }

    fn can_release(&self) -> bool {
        false
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_pool_can_be_handed_out() {
        for pages in [1u64, 2, 3, 7, 64, 1000] {
            let r = EmulatedDeviceRegion::new(RegionId::DEVICE, pages * PAGE_SIZE).unwrap();
            let whole = r.allocate(pages * PAGE_SIZE, "all").unwrap();
            r.free(whole);
            let singles: Vec<_> = (0..pages)
                .map(|_| r.allocate(PAGE_SIZE, "one").unwrap())
                .collect();
            assert!(r.allocate(PAGE_SIZE, "more").is_err());
            singles.into_iter().for_each(|b| r.free(b));
            assert_eq!(r.used(), 0);
        }
    }

    #[test]
    fn fills_up_frees_and_punches() {
        let r = EmulatedDeviceRegion::new(RegionId::DEVICE, 16 * PAGE_SIZE).unwrap();
        assert_eq!(r.info().capacity, Some(16 * PAGE_SIZE));
        let a = r.allocate(8 * PAGE_SIZE, "a").unwrap();
        let b = r.allocate(8 * PAGE_SIZE, "b").unwrap();
        assert!(matches!(
            r.allocate(PAGE_SIZE, "c"),
            Err(RegionError::NoSpace { .. })
        ));
        assert_eq!(r.used(), 16 * PAGE_SIZE);
        let s = r.storage(&a).unwrap();
        let (a_off, a_len) = (s.offset, s.len);
        s.file.write_at(s.offset, &[1; 4096]).unwrap();
        assert_eq!(r.pool().allocated_in(a_off, a_len).unwrap(), 4096);
        r.free(a);
        assert_eq!(
            r.pool().allocated_in(a_off, a_len).unwrap(),
            0,
            "freed pages are punched"
        );
        assert_eq!(r.used(), 8 * PAGE_SIZE);
        let c = r.allocate(8 * PAGE_SIZE, "c").unwrap();
        r.free(b);
        r.free(c);
        assert_eq!(r.used(), 0);
        assert!(r.allocate(0, "zero").is_err());
    }

    #[test]
    fn system_region_hands_out_sealed_files() {
        let s = SystemRegion::new();
        let b = s.allocate(3 * PAGE_SIZE, "vgpu:test").unwrap();
        assert_eq!(s.used(), 3 * PAGE_SIZE);
        let st = s.storage(&b).unwrap();
        assert_eq!((st.offset, st.len), (0, 3 * PAGE_SIZE));
        assert!(s.can_release());
        s.free(b);
        assert_eq!(s.used(), 0);
    }

    use super::super::SystemRegion;
}
