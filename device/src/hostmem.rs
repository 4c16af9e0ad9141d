//! The host-visible shared-memory region (virtio shmid 1): which ranges are
//! mapped, and the mapper that asks the VMM to map a file range there
//! (vhost-user SHMEM_MAP / SHMEM_UNMAP on the backend request channel).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vgpu_backend::PAGE_SIZE;
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Backend, VhostUserFrontendReqHandler};

/// Maps file ranges into the guest's host-visible region.
pub trait HostMemMapper: Send + Sync {
    /// Maps `len` bytes of `fd` at `fd_offset` at `shm_offset` of the region.
    fn map(&self, shm_offset: u64, fd: BorrowedFd<'_>, fd_offset: u64, len: u64) -> io::Result<()>;
    /// Unmaps `len` bytes at `shm_offset`.
    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()>;
}

/// The host-visible region id virtio-gpu uses.
pub const SHMID_HOST_VISIBLE: u8 = 1;

/// SHMEM_MAP / SHMEM_UNMAP through the vhost-user backend request channel.
pub struct VhostMapper {
    backend: Backend,
}

impl std::fmt::Debug for VhostMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VhostMapper")
    }
}

impl VhostMapper {
    /// Wraps the channel the frontend gave with SET_BACKEND_REQ_FD.
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }
}

impl HostMemMapper for VhostMapper {
    fn map(&self, shm_offset: u64, fd: BorrowedFd<'_>, fd_offset: u64, len: u64) -> io::Result<()> {
        let msg = VhostUserMMap {
            shmid: SHMID_HOST_VISIBLE,
            fd_offset,
            shm_offset,
            len,
            flags: VhostUserMMapFlags::WRITABLE.bits(),
            ..Default::default()
        };
        struct Raw(i32);
        impl AsRawFd for Raw {
            fn as_raw_fd(&self) -> i32 {
                self.0
            }
        }
        self.backend
            .shmem_map(&msg, &Raw(fd.as_raw_fd()))
            .map(|_| ())
    }

    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()> {
        let msg = VhostUserMMap {
            shmid: SHMID_HOST_VISIBLE,
            shm_offset,
            len,
            ..Default::default()
        };
        self.backend.shmem_unmap(&msg).map(|_| ())
    }
}

/// Why a range of the region cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostMemError {
    /// Offset not page aligned.
    #[error("offset {0:#x} is not page aligned")]
    Misaligned(u64),
    /// Range beyond the region.
    #[error("range {offset:#x}+{len:#x} is outside the {size:#x}-byte host-visible region")]
    OutOfRegion {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// Region size.
        size: u64,
    },
    /// Range overlaps a mapping.
    #[error("range {offset:#x}+{len:#x} overlaps the mapping at {other:#x}")]
    Overlaps {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// Start of the mapping in the way.
        other: u64,
    },
    /// The per-VM cap on mapped bytes.
    #[error("mapping {len} more bytes would exceed the {limit}-byte cap on mapped host memory")]
    OverLimit {
        /// Bytes asked for.
        len: u64,
        /// The cap.
        limit: u64,
    },
}

/// Bookkeeping of the region's mapped ranges.
#[derive(Debug, Clone)]
pub struct HostMemRegion {
    size: u64,
    limit: u64,
    mapped: BTreeMap<u64, u64>,
    mapped_bytes: u64,
}

impl HostMemRegion {
    /// A region of `size` bytes of which at most `limit` may be mapped.
    pub fn new(size: u64, limit: u64) -> Self {
        Self {
            size,
            limit,
            mapped: BTreeMap::new(),
            mapped_bytes: 0,
        }
    }

    /// Region size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes mapped now.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Claims `offset..offset+len` (len rounded up to pages).
    pub fn reserve(&mut self, offset: u64, len: u64) -> Result<u64, HostMemError> {
        if offset % PAGE_SIZE != 0 {
            return Err(HostMemError::Misaligned(offset));
        }
        let len = vgpu_backend::page_align(len).unwrap_or(u64::MAX);
        let end = offset.checked_add(len);
        if len == 0 || end.is_none_or(|e| e > self.size) {
            return Err(HostMemError::OutOfRegion {
                offset,
                len,
                size: self.size,
            });
        }
        if self.mapped_bytes.saturating_add(len) > self.limit {
            return Err(HostMemError::OverLimit {
                len,
                limit: self.limit,
            });
        }
        let end = offset + len;
        if let Some((&other, &olen)) = self.mapped.range(..end).next_back() {
            if other + olen > offset {
                return Err(HostMemError::Overlaps { offset, len, other });
            }
        }
        self.mapped.insert(offset, len);
        self.mapped_bytes += len;
        Ok(len)
    }

    /// Releases the range starting at `offset`.
    pub fn release(&mut self, offset: u64) {
        if let Some(len) = self.mapped.remove(&offset) {
            self.mapped_bytes -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_bounded_aligned_and_disjoint() {
        let mut r = HostMemRegion::new(16 * PAGE_SIZE, 12 * PAGE_SIZE);
        assert_eq!(r.reserve(0, 100), Ok(PAGE_SIZE));
        assert!(matches!(
            r.reserve(100, 1),
            Err(HostMemError::Misaligned(100))
        ));
        assert!(matches!(
            r.reserve(0, 1),
            Err(HostMemError::Overlaps { .. })
        ));
        assert!(matches!(
            r.reserve(15 * PAGE_SIZE, 2 * PAGE_SIZE),
            Err(HostMemError::OutOfRegion { .. })
        ));
        assert!(matches!(
            r.reserve(u64::MAX - 4095, PAGE_SIZE),
            Err(HostMemError::OutOfRegion { .. })
        ));
        assert_eq!(r.reserve(PAGE_SIZE, 4 * PAGE_SIZE), Ok(4 * PAGE_SIZE));
        assert!(matches!(
            r.reserve(8 * PAGE_SIZE, 8 * PAGE_SIZE),
            Err(HostMemError::OverLimit { .. })
        ));
        r.release(0);
        assert_eq!(r.mapped_bytes(), 4 * PAGE_SIZE);
        assert_eq!(r.reserve(0, PAGE_SIZE), Ok(PAGE_SIZE));
    }
}
