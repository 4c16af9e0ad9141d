//! Why a virtio-gpu request could not be decoded, and which error response
//! the device answers it with.

use super::consts::{CommandType, ErrorCode};
use super::wire::CtrlHdr;

/// A structural problem with the bytes of a request.
///
/// Every variant names the numbers that were wrong so that a log line is
/// enough to understand what the guest sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a `ctrl_hdr`.
    #[error("request of {len} bytes is shorter than the 24-byte ctrl_hdr")]
    HeaderTruncated {
        /// Bytes present.
        len: usize,
    },
    /// More bytes than any valid request can have.
    #[error("request of {len} bytes exceeds the {max}-byte limit")]
    RequestTooLarge {
        /// Bytes offered.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `ctrl_hdr.type` is not a command.
    #[error("unknown command type {type_:#06x}")]
    UnknownCommand {
        /// The type the guest sent.
        type_: u32,
    },
    /// Fewer bytes than the command (with its trailing data) needs.
    #[error("{command:?} needs {need} bytes, the request has {have}")]
    Truncated {
        /// The command.
        command: CommandType,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// More bytes than the command (with its trailing data) has.
    #[error("{command:?} is {expected} bytes, the request has {have}")]
    TrailingBytes {
        /// The command.
        command: CommandType,
        /// Bytes the command occupies.
        expected: usize,
        /// Bytes present.
        have: usize,
    },
    /// `nr_entries` above the hard cap.
    #[error("{command:?} nr_entries {nr_entries} exceeds the limit of {max}")]
    TooManyEntries {
        /// The command.
        command: CommandType,
        /// What the guest asked for.
        nr_entries: u32,
        /// The cap.
        max: u32,
    },
    /// SUBMIT_3D `size` above the hard cap.
    #[error("SUBMIT_3D size {size} exceeds the limit of {max}")]
    SubmitTooLarge {
        /// What the guest asked for.
        size: u32,
        /// The cap.
        max: u32,
    },
    /// CTX_CREATE `nlen` longer than the debug-name field.
    #[error("CTX_CREATE nlen {nlen} exceeds the 64-byte debug name")]
    DebugNameTooLong {
        /// What the guest asked for.
        nlen: u32,
    },
    /// `FLAG_INFO_RING_IDX` with a ring beyond the context's 64.
    #[error("ring_idx {ring_idx} is beyond the 64 rings of a context")]
    RingIndexOutOfRange {
        /// What the guest asked for.
        ring_idx: u8,
    },
}

impl DecodeError {
    /// The response the device answers this error with.
    ///
    /// Malformed structure (truncation, unknown types, extra bytes) is
    /// `ERR_UNSPEC`, as QEMU and crosvm answer it; a well-formed request
    /// carrying an out-of-range value is `ERR_INVALID_PARAMETER`.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::HeaderTruncated { .. }
            | DecodeError::RequestTooLarge { .. }
            | DecodeError::UnknownCommand { .. }
            | DecodeError::Truncated { .. }
            | DecodeError::TrailingBytes { .. } => ErrorCode::Unspec,
            DecodeError::TooManyEntries { .. }
            | DecodeError::SubmitTooLarge { .. }
            | DecodeError::DebugNameTooLong { .. }
            | DecodeError::RingIndexOutOfRange { .. } => ErrorCode::InvalidParameter,
        }
    }
}

/// A request that failed to decode, with its header when one was present
/// (the error response must still echo the fence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct RequestError {
    /// The request's header, if the request was at least that long.
    pub hdr: Option<CtrlHdr>,
    /// What was wrong.
    pub error: DecodeError,
}

impl RequestError {
    /// The response the device answers with.
    pub fn error_code(&self) -> ErrorCode {
        self.error.error_code()
    }
}
