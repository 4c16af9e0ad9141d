//! The buffer manager's errors. The device keeps each as the cause of its
//! own error and turns it into a virtio-gpu response in one place
//! (`vgpu_device`'s `GpuError::code`): `is_out_of_memory` →
//! ERR_OUT_OF_MEMORY; a purged or pinned object, a range outside an
//! object and an invalid size → ERR_INVALID_PARAMETER; everything else —
//! unknown object or owner ids included, which the device's own lookups
//! catch before they reach the manager — → ERR_UNSPEC.

use std::io;

use crate::types::{ObjectId, OwnerId, RegionId};

/// What went wrong in a buffer-manager operation.
#[derive(Debug, thiserror::Error)]
pub enum BoError {
    /// No live object has this id.
    #[error("no object {0}")]
    NoSuchObject(ObjectId),
    /// No owner has this id.
    #[error("no owner {0}")]
    NoSuchOwner(OwnerId),
    /// The object was purged: its contents are gone for good.
    #[error("object {0} was purged: its contents are gone")]
    Purged(ObjectId),
    /// The object is pinned and cannot be moved.
    #[error("object {0} is pinned and cannot move")]
    Pinned(ObjectId),
    /// Unpin of an object that is not pinned.
    #[error("object {0} is not pinned")]
    NotPinned(ObjectId),
    /// Size zero, not representable, or beyond what a region can ever hold.
    #[error("invalid object size {size}")]
    InvalidSize {
        /// The size asked for.
        size: u64,
    },
    /// A placement names a region the manager does not have.
    #[error("placement names {0}, which does not exist")]
    NoSuchRegion(RegionId),
    /// No place of the placement had room, even after eviction.
    #[error("no room for {size} bytes in any place of the placement (tried {tried:?})")]
    NoSpace {
        /// Bytes needed.
        size: u64,
        /// Regions tried.
        tried: Vec<RegionId>,
    },
    /// The owner's quota would be exceeded, even after purging its DONTNEED objects.
    #[error("{owner} quota exceeded: {used} of {quota} bytes used, {requested} more requested")]
    QuotaExceeded {
        /// The owner whose quota (or whose parent's quota) is exceeded.
        owner: OwnerId,
        /// The quota.
        quota: u64,
        /// Bytes in use.
        used: u64,
        /// Bytes requested.
        requested: u64,
    },
    /// A byte range outside the object.
    #[error("range {offset}+{len} is outside the {size}-byte object")]
    OutOfRange {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// Object size.
        size: u64,
    },
    /// A host system call failed.
    #[error("{op} failed")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

impl BoError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> BoError {
        move |source| BoError::Io { op, source }
    }

    /// Whether the guest should see this as "out of memory" (quota, no
    /// space, or the host refusing memory or file descriptors).
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            BoError::QuotaExceeded { .. } | BoError::NoSpace { .. } => true,
            BoError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOMEM) | Some(libc::ENOSPC) | Some(libc::EMFILE) | Some(libc::ENFILE)
            ),
            _ => false,
        }
    }
}

/// Result of buffer-manager operations.
pub type BoResult<T> = Result<T, BoError>;
