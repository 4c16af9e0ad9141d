//! System memory: each object's pages live in a memfd of its own, created
//! when the object is first populated in system memory.
//!
//! When an object dies, is purged or moves out, its file is either closed
//! (its pages freed) or, if the region keeps a buffer cache, kept with its
//! pages for the next object of the same size, which gets it zeroed (by
//! the manager, before the first access, minus what that access
//! overwrites; see `ShmemFile::clean`): a new
//! 2D resource or blob then costs neither `memfd_create` nor page faults.
//! Files whose descriptor ever left the process (mapped into a guest,
//! exported) are never reused. The cache is bounded in bytes, dropped
//! first by every shrink, and shown by `vgpuctl stats`. A reused file keeps
//! the name it was created with in `/proc/<pid>/fd`.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{wrong_backing, Backing, Caching, MemoryRegion, RegionError, RegionInfo, Storage};
use crate::shmem::ShmemFile;
use crate::types::{MemoryClass, RegionId};

/// Files kept per size, at most.
const MAX_PER_SIZE: usize = 64;

/// The system-memory region.
#[derive(Debug)]
pub struct SystemRegion {
    info: RegionInfo,
    used: AtomicU64,
    cache: Mutex<FileCache>,
    cached: AtomicU64,
}

/// Freed files by size.
#[derive(Debug, Default)]
struct FileCache {
    limit: u64,
    bytes: u64,
    by_size: BTreeMap<u64, Vec<ShmemFile>>,
}

impl FileCache {
    fn take(&mut self, size: u64) -> Option<ShmemFile> {
        let files = self.by_size.get_mut(&size)?;
        let file = files.pop()?;
        if files.is_empty() {
            self.by_size.remove(&size);
        }
        self.bytes -= size;
        Some(file)
    }

    /// Keeps `file` if it fits, making room by dropping the size class
    /// holding the most bytes; returns what was not kept.
    fn put(&mut self, file: ShmemFile) -> Vec<ShmemFile> {
        let size = file.size();
        if size > self.limit {
            return vec![file];
        }
        let mut dropped = Vec::new();
        while self.bytes + size > self.limit {
            let Some((&largest, _)) = self
                .by_size
                .iter()
                .max_by_key(|(s, files)| **s * files.len() as u64)
            else {
                break;
            };
            if let Some(f) = self.take(largest) {
                dropped.push(f);
            }
        }
        let class = self.by_size.entry(size).or_default();
        if class.len() >= MAX_PER_SIZE {
            dropped.push(file);
            return dropped;
        }
        class.push(file);
        self.bytes += size;
        dropped
    }
}

impl SystemRegion {
    /// The system region (id 0), without a buffer cache.
    pub fn new() -> Self {
        Self::with_cache(0)
    }

    /// The system region keeping up to `cache_bytes` of freed files.
    pub fn with_cache(cache_bytes: u64) -> Self {
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
            cache: Mutex::new(FileCache {
                limit: cache_bytes,
                ..FileCache::default()
            }),
            cached: AtomicU64::new(0),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, FileCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
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
        let reused = {
            let mut cache = self.cache();
            let f = cache.take(size);
            self.cached.store(cache.bytes, Ordering::Relaxed);
            f
        };
        let file = match reused {
            // The previous object's bytes must never show: the manager
            // zeroes them (`ShmemFile::clean`) before the first access,
            // skipping what that access overwrites anyway.
            Some(f) => {
                f.mark_stale();
                f
            }
            None => self.create(size, name)?,
        };
        self.used.fetch_add(size, Ordering::Relaxed);
        Ok(Backing::Shmem(file))
    }

    fn free(&self, backing: Backing) {
        if let Backing::Shmem(file) = backing {
            self.used.fetch_sub(file.size(), Ordering::Relaxed);
            let dropped = {
                let mut cache = self.cache();
                let d = cache.put(file);
                self.cached.store(cache.bytes, Ordering::Relaxed);
                d
            };
            // Closing the last descriptor frees the pages.
            drop(dropped);
        }
    }

    fn discard(&self, backing: Backing) {
        if let Backing::Shmem(file) = backing {
            self.used.fetch_sub(file.size(), Ordering::Relaxed);
            drop(file);
        }
    }

    fn cached(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }

    fn trim(&self) -> u64 {
        let files: Vec<ShmemFile> = {
            let mut cache = self.cache();
            cache.bytes = 0;
            self.cached.store(0, Ordering::Relaxed);
            std::mem::take(&mut cache.by_size)
                .into_values()
                .flatten()
                .collect()
        };
        files
            .iter()
            .map(|f| f.allocated_bytes().unwrap_or(0))
            .sum::<u64>()
    }

    fn storage<'a>(&'a self, backing: &'a Backing) -> io::Result<Storage<'a>> {
        match backing {
            Backing::Shmem(file) => Ok(Storage {
                file,
                offset: 0,
                len: file.size(),
            }),
            _ => Err(wrong_backing(&self.info)),
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

impl SystemRegion {
    fn create(&self, size: u64, name: &str) -> Result<ShmemFile, RegionError> {
        ShmemFile::create(name, size).map_err(|source| RegionError::Io {
            op: "memfd_create",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PAGE: u64 = 4096;

    #[test]
    fn freed_files_are_reused_zeroed_and_shared_ones_never() {
        let r = SystemRegion::with_cache(16 * PAGE);
        let Backing::Shmem(f) = r.allocate(2 * PAGE, "a").unwrap() else {
            panic!()
        };
        f.write_at(0, &[9; 8192]).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f.fd());
        r.free(Backing::Shmem(f));
        assert_eq!(r.cached(), 2 * PAGE);
        let Backing::Shmem(g) = r.allocate(2 * PAGE, "b").unwrap() else {
            panic!()
        };
        assert_eq!(
            std::os::fd::AsRawFd::as_raw_fd(&g.fd()),
            fd,
            "the same file"
        );
        assert!(g.is_stale());
        g.clean(None).unwrap();
        let mut buf = [1u8; 8192];
        g.read_at(0, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == 0), "zeroed before reuse");
        assert_eq!(r.cached(), 0);
        r.discard(Backing::Shmem(g));
        assert_eq!(r.cached(), 0, "a shared file is not kept");
        // Bounded: a file larger than the cache is not kept; trimming frees.
        let big = r.allocate(32 * PAGE, "big").unwrap();
        r.free(big);
        assert_eq!(r.cached(), 0);
        for _ in 0..3 {
            let b = r.allocate(4 * PAGE, "c").unwrap();
            if let Backing::Shmem(f) = &b {
                f.write_at(0, &[1; 4096]).unwrap();
            }
            r.free(b);
        }
        assert_eq!(r.cached(), 4 * PAGE, "one file, reused each time");
        assert_eq!(r.trim(), PAGE, "the one written page is released");
        assert_eq!(r.cached(), 0);
        assert_eq!(r.used(), 0);
    }

    #[test]
    fn a_full_cache_makes_room_by_dropping_the_largest_class() {
        let r = SystemRegion::with_cache(8 * PAGE);
        let a: Vec<Backing> = (0..2).map(|_| r.allocate(2 * PAGE, "a").unwrap()).collect();
        let b = r.allocate(4 * PAGE, "b").unwrap();
        let c = r.allocate(4 * PAGE, "c").unwrap();
        for x in a {
            r.free(x);
        }
        r.free(b);
        assert_eq!(r.cached(), 8 * PAGE);
        r.free(c);
        assert_eq!(r.cached(), 8 * PAGE, "still within the limit");
    }
}
