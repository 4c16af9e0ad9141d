//! Why a command failed. Every failure keeps its cause (the buffer
//! manager's, the guest-memory layer's, the host-visible region's, the
//! native context's), and [`GpuError::code`] is the one place a failure
//! becomes a virtio-gpu response — SUBMIT_3D included.

use std::io;

use vgpu_backend::BoError;
use vgpu_proto::virtio_gpu::ErrorCode;

use crate::context::{ContextError, SubmitError};
use crate::guest_io::{BackingError, CopyError};
use crate::hostmem::HostMemError;
use crate::resource::{BoundsError, ContextId, ResourceId, ScanoutId};

/// Why a command failed; [`GpuError::code`] is the response.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// Unknown, zero or reused resource id.
    #[error("invalid resource id {0}")]
    InvalidResource(ResourceId),
    /// Unknown, zero or reused context id.
    #[error("invalid context id {0}")]
    InvalidContext(ContextId),
    /// Scanout id beyond the device's.
    #[error("invalid scanout id {0}")]
    InvalidScanout(ScanoutId),
    /// A parameter the device's own checks refuse (the message says which
    /// and why).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A per-VM cap or a size no buffer can have.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The buffer manager refused or failed.
    #[error("buffer: {0}")]
    Buffer(#[from] BoError),
    /// A rectangle, offset or stride outside what it refers to.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    /// Guest pages a resource is backed by are unusable.
    #[error(transparent)]
    Backing(#[from] BackingError),
    /// A copy between guest memory and a host buffer failed.
    #[error("copy: {0}")]
    Copy(#[from] CopyError),
    /// A view of a host buffer's mapping refused a range.
    #[error("host buffer view: {0}")]
    View(#[from] vm_memory::volatile_memory::Error),
    /// The host-visible region refused a range.
    #[error(transparent)]
    HostMem(#[from] HostMemError),
    /// The frontend offers no host-visible region to map blobs into.
    #[error("the frontend offers no host-visible region (SHMEM)")]
    NoHostMem,
    /// The VMM refused or failed a SHMEM_MAP.
    #[error("SHMEM_MAP failed: {0}")]
    Map(#[source] io::Error),
    /// The display channel failed.
    #[error("display channel: {0}")]
    Display(#[source] io::Error),
    /// A SUBMIT_3D stream could not be run to its end (a framing error, or
    /// a response outside the response memory).
    #[error("native command stream: {0}")]
    Submit(#[from] SubmitError),
    /// A native context refused a request.
    #[error("context: {0}")]
    Context(#[from] ContextError),
    /// A failure the spec has no better code for (the message says what).
    #[error("{0}")]
    Unspec(String),
}

impl GpuError {
    /// The virtio-gpu error response: the only mapping from failures to
    /// response codes.
    pub fn code(&self) -> ErrorCode {
        match self {
            GpuError::InvalidResource(_) => ErrorCode::InvalidResourceId,
            GpuError::InvalidContext(_) => ErrorCode::InvalidContextId,
            GpuError::InvalidScanout(_) => ErrorCode::InvalidScanoutId,
            GpuError::InvalidParameter(_)
            | GpuError::Bounds(_)
            | GpuError::Backing(_)
            | GpuError::Copy(_)
            | GpuError::View(_)
            | GpuError::Submit(_)
            | GpuError::Context(ContextError::Refused(_)) => ErrorCode::InvalidParameter,
            GpuError::OutOfMemory(_) => ErrorCode::OutOfMemory,
            GpuError::Buffer(e) | GpuError::Context(ContextError::Buffer(e)) => buffer_code(e),
            GpuError::HostMem(HostMemError::OverLimit { .. }) => ErrorCode::OutOfMemory,
            GpuError::HostMem(_) => ErrorCode::InvalidParameter,
            GpuError::NoHostMem | GpuError::Map(_) | GpuError::Display(_) | GpuError::Unspec(_) => {
                ErrorCode::Unspec
            }
        }
    }
}

/// What a buffer-manager failure is to the guest.
fn buffer_code(e: &BoError) -> ErrorCode {
    match e {
        e if e.is_out_of_memory() => ErrorCode::OutOfMemory,
        BoError::Purged(_)
        | BoError::Pinned(_)
        | BoError::OutOfRange { .. }
        | BoError::InvalidSize { .. } => ErrorCode::InvalidParameter,
        _ => ErrorCode::Unspec,
    }
}

pub(super) type GpuResult<T> = Result<T, GpuError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_kept_and_mapped_in_one_place() {
        let size = GpuError::from(BoError::InvalidSize { size: 0 });
        assert_eq!(size.code(), ErrorCode::InvalidParameter);
        assert!(matches!(
            size,
            GpuError::Buffer(BoError::InvalidSize { .. })
        ));
        let io = |errno| BoError::Io {
            op: "test",
            source: io::Error::from_raw_os_error(errno),
        };
        assert_eq!(
            GpuError::from(io(libc::ENOMEM)).code(),
            ErrorCode::OutOfMemory
        );
        assert_eq!(GpuError::from(io(libc::EIO)).code(), ErrorCode::Unspec);
        let over = GpuError::from(HostMemError::OverLimit { len: 2, limit: 1 });
        assert_eq!(over.code(), ErrorCode::OutOfMemory);
        assert_eq!(
            GpuError::from(HostMemError::Misaligned(3)).code(),
            ErrorCode::InvalidParameter
        );
        let map = GpuError::Map(io::Error::other("refused"));
        assert!(
            std::error::Error::source(&map).is_some(),
            "the cause is kept"
        );
        assert_eq!(map.code(), ErrorCode::Unspec);
        let undelivered = SubmitError::Undelivered {
            cmd: 2,
            why: "outside the response memory".into(),
        };
        assert_eq!(
            GpuError::Submit(undelivered).code(),
            ErrorCode::InvalidParameter
        );
        assert_eq!(
            GpuError::from(ContextError::Buffer(BoError::InvalidSize { size: 0 })).code(),
            ErrorCode::InvalidParameter
        );
    }
}
