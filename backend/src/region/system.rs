//! System memory: each object's pages live in a memfd of its own, created
//! when the object is first populated in system memory and dropped (with
//! its pages) when the object dies, is purged, or moves out.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{wrong_backing, Backing, Caching, MemoryRegion, RegionError, RegionInfo, Storage};
use crate::shmem::ShmemFile;
use crate::types::{MemoryClass, RegionId};

/// The system-memory region.
#[derive(Debug)]
pub struct SystemRegion {
    info: RegionInfo,
    used: AtomicU64,
}

impl SystemRegion {
    /// The system region (id 0).
    pub fn new() -> Self {
        Self {
            info: RegionInfo {
                id: RegionId::SYSTEM,
                class: MemoryClass::System,
                instance: 0,
                name: "system".into(),
                capacity: None,
                emulated: false,
            },
            used: AtomicU64::new(0),
        }
    }
}

impl Default for SystemRegion {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRegion for SystemRegion {
    fn info(&self) -> &RegionInfo {
        &self.info
    }

    fn allocate(&self, size: u64, name: &str) -> Result<Backing, RegionError> {
        let file = ShmemFile::create(name, size).map_err(|source| RegionError::Io {
            op: "memfd_create",
            source,
        })?;
        self.used.fetch_add(size, Ordering::Relaxed);
        Ok(Backing::Shmem(file))
    }

    fn free(&self, backing: Backing) {
        if let Backing::Shmem(file) = backing {
            self.used.fetch_sub(file.size(), Ordering::Relaxed);
            // Closing the last descriptor frees the pages (the VMM's
            // mappings, if any, were removed before the object was unpinned).
            drop(file);
        }
    }

    fn storage<'a>(&'a self, backing: &'a Backing) -> io::Result<Storage<'a>> {
        match backing {
            Backing::Shmem(file) => Ok(Storage {
                file,
                offset: 0,
                len: file.size(),
            }),
            Backing::Pool(_) => Err(wrong_backing(&self.info)),
        }
    }

    fn caching(&self) -> Caching {
        Caching::Cached
    }

    fn can_release(&self) -> bool {
        true
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}
