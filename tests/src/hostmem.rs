//! The frontend's host-visible region (shmid 1): an address range reserved
//! in this process, into which SHMEM_MAP requests map the backend's file
//! ranges — so tests read and write blobs exactly where a guest would see
//! them through the BAR.
//!
//! As strict as QEMU 11.1: a SHMEM_MAP may not overlap a mapping already
//! there, and a SHMEM_UNMAP must name exactly one earlier SHMEM_MAP (its
//! offset and its length); anything else is refused with EINVAL. An access
//! to a range where nothing is mapped fails (QEMU leaves such a hole of the
//! BAR unassigned: reads see all-ones, writes are dropped) instead of
//! faulting: the list of mappings is held across every access, so a
//! concurrent SHMEM_UNMAP never pulls pages from under a copy.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::Mutex;

use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{HandlerResult, VhostUserFrontendReqHandler};

/// A reserved range of this process's address space.
#[derive(Debug)]
pub struct HostVisibleRegion {
    base: NonNull<u8>,
    size: usize,
    maps: Mutex<Vec<(u64, u64)>>,
}

// SAFETY: the region is a plain address range; all access goes through
// methods that copy bytes with explicit bounds checks.
unsafe impl Send for HostVisibleRegion {}
// SAFETY: as above; the mapping list is behind a mutex.
unsafe impl Sync for HostVisibleRegion {}

impl HostVisibleRegion {
    /// Reserves `size` bytes (inaccessible until something is mapped).
    pub fn new(size: u64) -> io::Result<Self> {
        let size =
            usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: an anonymous, inaccessible reservation at an address the
        // kernel picks; it replaces nothing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                size,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )?
        };
        let base = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Self {
            base,
            size,
            maps: Mutex::new(Vec::new()),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size as u64
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<usize> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.size as u64)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "range outside the host-visible region",
                )
            })?;
        let _ = end;
        usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn covered(maps: &[(u64, u64)], offset: u64, len: u64) -> bool {
        let mut maps = maps.to_vec();
        maps.sort_unstable();
        // Walk adjacent mappings from `offset` to `offset + len`.
        let (mut at, end) = (offset, offset.saturating_add(len));
        for (o, l) in maps {
            if o <= at && at < o + l {
                at = o + l;
            }
            if at >= end {
                return true;
            }
        }
        len == 0
    }

    /// Maps `len` bytes of `fd` at `fd_offset` at `offset` of the region.
    pub fn map(
        &self,
        offset: u64,
        fd: BorrowedFd<'_>,
        fd_offset: u64,
        len: u64,
        writable: bool,
    ) -> io::Result<()> {
        let at = self.check(offset, len)?;
        let len_usize =
            usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = offset.saturating_add(len);
        let mut maps = self.maps();
        let overlaps = maps.iter().any(|(o, l)| *o < end && offset < o + l);
        if overlaps || len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut prot = rustix::mm::ProtFlags::READ;
        if writable {
            prot |= rustix::mm::ProtFlags::WRITE;
        }
        // SAFETY: the target lies inside our own reservation (checked), so
        // MAP_FIXED replaces only memory this object owns.
        unsafe {
            rustix::mm::mmap(
                self.base.as_ptr().add(at).cast(),
                len_usize,
                prot,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::FIXED,
                fd,
                fd_offset,
            )?;
        }
        maps.push((offset, len));
        Ok(())
    }

    /// Unmaps the mapping made at `offset` with length `len` (back to an
    /// inaccessible reservation).
    pub fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        let at = self.check(offset, len)?;
        let mut maps = self.maps();
        let known = maps.contains(&(offset, len));
        if !known {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let len_usize =
            usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: inside our reservation (checked); replaces what we mapped.
        unsafe {
            rustix::mm::mmap_anonymous(
                self.base.as_ptr().add(at).cast(),
                len_usize,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE
                    | rustix::mm::MapFlags::FIXED
                    | rustix::mm::MapFlags::NORESERVE,
            )?;
        }
        maps.retain(|m| *m != (offset, len));
        Ok(())
    }

    /// Whether `offset..offset+len` is mapped.
    pub fn is_mapped(&self, offset: u64, len: u64) -> bool {
        Self::covered(&self.maps(), offset, len)
    }

    /// Reads from a mapped range (as the guest would through the BAR).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = self.check(offset, buf.len() as u64)?;
        let maps = self.maps();
        if !Self::covered(&maps, offset, buf.len() as u64) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "range not mapped"));
        }
        // SAFETY: the range is inside a live shared mapping (checked, and
        // the list stays locked so no unmap can race the copy); a
        // volatile-free byte copy is fine for a test observer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(at), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Writes into a mapped range.
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = self.check(offset, data.len() as u64)?;
        let maps = self.maps();
        if !Self::covered(&maps, offset, data.len() as u64) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "range not mapped"));
        }
        // SAFETY: as in `read` (the list is locked), for a writable mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(at), data.len())
        };
        Ok(())
    }

    /// The address of `offset` (to compare against guest RAM mappings).
    pub fn address_of(&self, offset: u64) -> usize {
        self.base.as_ptr() as usize + offset as usize
    }
}

impl Drop for HostVisibleRegion {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our reservation (and what was mapped in it).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

/// Answers the backend's SHMEM_MAP / SHMEM_UNMAP requests.
#[derive(Debug)]
pub struct ShmemHandler {
    /// The region requests map into.
    pub region: std::sync::Arc<HostVisibleRegion>,
    /// Every request seen, for assertions: `(map?, shm_offset, len)`.
    pub log: Mutex<Vec<(bool, u64, u64)>>,
    /// Answer SHMEM_UNMAP with an error (a VMM that cannot unmap).
    pub fail_unmaps: std::sync::atomic::AtomicBool,
    /// Requests refused because they did not fit what is mapped (an
    /// overlapping MAP, an UNMAP naming no earlier MAP exactly): a correct
    /// backend causes none.
    pub refused: std::sync::atomic::AtomicU64,
}

impl VhostUserFrontendReqHandler for ShmemHandler {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        if req.shmid != 1 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (offset, len, fd_offset, flags) = (req.shm_offset, req.len, req.fd_offset, req.flags);
        // SAFETY: the fd arrived with this request and lives for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) };
        let writable = flags & VhostUserMMapFlags::WRITABLE.bits() != 0;
        if let Err(e) = self.region.map(offset, fd, fd_offset, len, writable) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((true, offset, len));
        Ok(0)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        let (offset, len) = (req.shm_offset, req.len);
        if self.fail_unmaps.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if let Err(e) = self.region.unmap(offset, len) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((false, offset, len));
        Ok(0)
    }
}
