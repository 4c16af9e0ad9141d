//! Helpers shared by the buffer-manager tests.
#![allow(dead_code)]

use std::sync::Arc;

use vgpu_backend::region::{
    Backing, Caching, MemoryDriver, MemoryRegion, RegionError, RegionInfo, Storage, SystemRegion,
};
use vgpu_backend::*;

pub const PAGE: u64 = PAGE_SIZE;

/// A manager with an emulated device pool of `pages` pages.
pub fn manager(pages: u64) -> BufferManager {
    BufferManager::emulated(pages * PAGE).expect("manager")
}

/// Fills `len` bytes at `offset` with `byte`.
pub fn fill(bm: &BufferManager, id: ObjectId, offset: u64, len: u64, byte: u8) {
    bm.write(id, offset, &vec![byte; len as usize])
        .expect("write");
}

/// The object's whole contents.
pub fn contents(bm: &BufferManager, id: ObjectId) -> BoResult<Vec<u8>> {
    let mut buf = vec![0u8; bm.size(id)? as usize];
    bm.read(id, 0, &mut buf)?;
    Ok(buf)
}

/// Whether this host has swap (writeback can only free memory with swap).
pub fn host_has_swap() -> bool {
    std::fs::read_to_string("/proc/swaps")
        .map(|s| s.lines().count() > 1)
        .unwrap_or(false)
}

/// Memfds this process holds for objects of the owner named `owner`
/// (tests run in parallel: count only your own).
pub fn memfd_count(owner: &str) -> usize {
    let prefix = format!("/memfd:vgpu:{owner}:");
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0)
}

/// Checks every owner's counters against the sum over its objects.
pub fn check_accounting(bm: &BufferManager) {
    let stats = bm.stats();
    let objects = bm.list_objects(ObjectFilter::default());
    for owner in &stats.owners {
        let mine: Vec<&ObjectInfo> = objects
            .iter()
            .filter(|o| owner_within(&stats, o.owner, owner.id))
            .collect();
        let populated: u64 = mine
            .iter()
            .filter(|o| o.region.is_some())
            .map(|o| o.size)
            .sum();
        // The scratch reservations of the VMs in the subtree are charged
        // on top of the populated objects.
        let scratch: u64 = stats
            .owners
            .iter()
            .filter(|o| owner_within(&stats, o.id, owner.id))
            .map(|o| o.scratch_reserved)
            .sum();
        assert_eq!(
            owner.charged,
            populated + scratch,
            "charged of {}",
            owner.name
        );
        for (r, placed) in owner.placed.iter().enumerate() {
            let sum: u64 = mine
                .iter()
                .filter(|o| o.region == Some(RegionId(r as u8)))
                .map(|o| o.size)
                .sum();
            assert_eq!(*placed, sum, "placed in region {r} of {}", owner.name);
            assert!(
                owner.resident[r] <= *placed,
                "measured residency {} above the {} B placed in region {r} of {}",
                owner.resident[r],
                placed,
                owner.name
            );
        }
        let purgeable: u64 = mine
            .iter()
            .filter(|o| o.region.is_some() && o.madv == Madv::DontNeed)
            .map(|o| o.size)
            .sum();
        assert_eq!(owner.purgeable, purgeable, "purgeable of {}", owner.name);
        let pinned: u64 = mine
            .iter()
            .filter(|o| o.region.is_some() && o.pinned > 0)
            .map(|o| o.size)
            .sum();
        assert_eq!(owner.pinned, pinned, "pinned of {}", owner.name);
        assert_eq!(
            owner.objects,
            mine.len() as u64,
            "objects of {}",
            owner.name
        );
    }
    for region in &stats.regions {
        let sum: u64 = objects
            .iter()
            .filter(|o| o.region == Some(region.info.id))
            .map(|o| o.size)
            .sum();
        assert_eq!(region.placed, sum, "placed in {}", region.info.name);
        assert!(region.resident <= sum, "resident of {}", region.info.name);
        if region.info.id != RegionId::SYSTEM {
            assert_eq!(
                region.used, sum,
                "device region hands out exactly what objects hold"
            );
        }
    }
}

fn owner_within(stats: &ManagerStats, mut o: OwnerId, ancestor: OwnerId) -> bool {
    loop {
        if o == ancestor {
            return true;
        }
        match stats
            .owners
            .iter()
            .find(|s| s.id == o)
            .and_then(|s| s.parent)
        {
            Some(p) => o = p,
            None => return false,
        }
    }
}

/// A driver whose device region always fails in the given way.
#[derive(Debug)]
pub struct FailingDriver {
    pub regions: Vec<Arc<dyn MemoryRegion>>,
}

#[derive(Debug)]
pub struct FailingRegion {
    info: RegionInfo,
    io_error: bool,
}

impl FailingDriver {
    /// `io_error`: the region fails like a host refusing memory; otherwise
    /// it is always full.
    pub fn new(io_error: bool) -> Self {
        Self {
            regions: vec![
                Arc::new(SystemRegion::new()),
                Arc::new(FailingRegion {
                    info: RegionInfo {
                        id: RegionId::DEVICE,
                        class: MemoryClass::Device,
                        instance: 0,
                        name: "failing".into(),
                        capacity: Some(0),
                        emulated: true,
                    },
                    io_error,
                }),
            ],
        }
    }
}

impl MemoryDriver for FailingDriver {
    fn name(&self) -> &str {
        "failing"
    }
    fn regions(&self) -> Vec<Arc<dyn MemoryRegion>> {
        self.regions.clone()
    }
}

impl MemoryRegion for FailingRegion {
    fn info(&self) -> &RegionInfo {
        &self.info
    }
    fn allocate(&self, size: u64, _name: &str) -> Result<Backing, RegionError> {
        if self.io_error {
            Err(RegionError::Io {
                op: "allocating",
                source: std::io::Error::from_raw_os_error(libc_enomem()),
            })
        } else {
            Err(RegionError::NoSpace { size, free: 0 })
        }
    }
    fn free(&self, _backing: Backing) {}
    fn storage<'a>(&'a self, _backing: &'a Backing) -> std::io::Result<Storage<'a>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn caching(&self) -> Caching {
        Caching::WriteCombined
    }
    fn can_release(&self) -> bool {
        false
    }
    fn used(&self) -> u64 {
        0
    }
}

fn libc_enomem() -> i32 {
    12
}

/// A guest mapping of an object, as the VMM makes it: the object's file
/// range mapped shared in this process (or, once remapped, the VM's
/// scratch file).
#[derive(Debug)]
pub struct GuestMap {
    ptr: std::ptr::NonNull<u8>,
    /// Length in bytes.
    pub len: usize,
    /// Remapped over the VM's scratch file.
    pub scratch: bool,
}

impl GuestMap {
    pub fn new(fd: std::os::fd::BorrowedFd<'_>, offset: u64, len: u64) -> Self {
        let len = len as usize;
        // SAFETY: a fresh shared mapping at an address the kernel picks.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                fd,
                offset,
            )
        }
        .expect("guest mapping");
        Self {
            ptr: std::ptr::NonNull::new(ptr.cast()).unwrap(),
            len,
            scratch: false,
        }
    }

    /// What the guest does: write through the mapping.
    pub fn write(&self, offset: usize, len: usize, byte: u8) {
        assert!(offset + len <= self.len);
        // SAFETY: inside our own live mapping.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), byte, len) };
    }

    /// The device's remap: the same guest range over the scratch file.
    pub fn remap(&mut self, fd: std::os::fd::BorrowedFd<'_>) {
        // SAFETY: MAP_FIXED over exactly our own mapping.
        unsafe {
            rustix::mm::mmap(
                self.ptr.as_ptr().cast(),
                self.len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::FIXED,
                fd,
                0,
            )
        }
        .expect("remap");
        self.scratch = true;
    }
}

impl Drop for GuestMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
