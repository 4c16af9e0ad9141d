//! The typed virtio-gpu command and its decoder and encoder.
//!
//! [`Command::decode`] turns the guest-readable bytes of one request into a
//! [`Command`] that borrows its trailing data (mem entries, the SUBMIT_3D
//! stream) from those bytes. Every count and length is checked against a
//! hard cap *and* against the bytes present before anything is looked at,
//! with checked arithmetic, and the decoder never panics on any input
//! (a property test feeds it arbitrary bytes).
//!
//! A request that arrives split over several descriptors is first gathered
//! with [`RequestBuffer`], which bounds the total before copying.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::consts::{CommandType, VIRTIO_GPU_FLAG_INFO_RING_IDX, VIRTIO_GPU_MAX_RINGS};
use super::error::{DecodeError, RequestError};
use super::wire::*;

/// Most mem entries one ATTACH_BACKING or RESOURCE_CREATE_BLOB may carry
/// (QEMU's limit; 16384 entries of one 4 KiB page each are 64 MiB).
pub const MAX_MEM_ENTRIES: u32 = 16384;
/// Most bytes one SUBMIT_3D command stream may carry.
pub const MAX_SUBMIT_3D_BYTES: u32 = 4 << 20;
/// Most bytes any request may have: the largest command with its largest
/// trailing data.
pub const MAX_REQUEST_BYTES: usize = {
    let submit = size_of::<CmdSubmit>() + MAX_SUBMIT_3D_BYTES as usize;
    let backing =
        size_of::<ResourceCreateBlob>() + MAX_MEM_ENTRIES as usize * size_of::<MemEntry>();
    if submit > backing {
        submit
    } else {
        backing
    }
};

/// Access to the `ctrl_hdr` every command struct starts with.
pub trait WireCommand: Copy + FromBytes + IntoBytes + Immutable + KnownLayout {
    /// The header.
    fn hdr(&self) -> &CtrlHdr;
    /// The header, mutably.
    fn hdr_mut(&mut self) -> &mut CtrlHdr;
}

impl WireCommand for CtrlHdr {
    fn hdr(&self) -> &CtrlHdr {
        self
    }
    fn hdr_mut(&mut self) -> &mut CtrlHdr {
        self
    }
}

macro_rules! impl_wire_command {
    ($($ty:ty),* $(,)?) => {$(
        impl WireCommand for $ty {
            fn hdr(&self) -> &CtrlHdr {
                &self.hdr
            }
            fn hdr_mut(&mut self) -> &mut CtrlHdr {
                &mut self.hdr
            }
        }
    )*};
}

impl_wire_command!(
    ResourceCreate2d,
    ResourceUnref,
    SetScanout,
    ResourceFlush,
    TransferToHost2d,
    ResourceAttachBacking,
    ResourceDetachBacking,
    GetCapsetInfo,
    GetCapset,
    GetEdid,
    ResourceAssignUuid,
    ResourceCreateBlob,
    SetScanoutBlob,
    CtxCreate,
    CtxDestroy,
    CtxResource,
    ResourceCreate3d,
    TransferHost3d,
    CmdSubmit,
    ResourceMapBlob,
    ResourceUnmapBlob,
    UpdateCursor,
);

/// One decoded virtio-gpu request.
///
/// Each variant holds the command's wire struct (header included) and, where
/// the spec has trailing data, a slice of the request bytes that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// GET_DISPLAY_INFO.
    GetDisplayInfo(CtrlHdr),
    /// RESOURCE_CREATE_2D.
    ResourceCreate2d(ResourceCreate2d),
    /// RESOURCE_UNREF.
    ResourceUnref(ResourceUnref),
    /// SET_SCANOUT.
    SetScanout(SetScanout),
    /// RESOURCE_FLUSH.
    ResourceFlush(ResourceFlush),
    /// TRANSFER_TO_HOST_2D.
    TransferToHost2d(TransferToHost2d),
    /// RESOURCE_ATTACH_BACKING with its mem entries.
    ResourceAttachBacking {
        /// The fixed part.
        cmd: ResourceAttachBacking,
        /// The `nr_entries` entries.
        entries: &'a [MemEntry],
    },
    /// RESOURCE_DETACH_BACKING.
    ResourceDetachBacking(ResourceDetachBacking),
    /// GET_CAPSET_INFO.
    GetCapsetInfo(GetCapsetInfo),
    /// GET_CAPSET.
    GetCapset(GetCapset),
    /// GET_EDID.
    GetEdid(GetEdid),
    /// RESOURCE_ASSIGN_UUID.
    ResourceAssignUuid(ResourceAssignUuid),
    /// RESOURCE_CREATE_BLOB with its mem entries.
    ResourceCreateBlob {
        /// The fixed part.
        cmd: ResourceCreateBlob,
        /// The `nr_entries` entries.
        entries: &'a [MemEntry],
    },
    /// SET_SCANOUT_BLOB.
    SetScanoutBlob(SetScanoutBlob),
    /// CTX_CREATE (`nlen` already checked; see [`CtxCreate::debug_name`]).
    CtxCreate(CtxCreate),
    /// CTX_DESTROY.
    CtxDestroy(CtxDestroy),
    /// CTX_ATTACH_RESOURCE.
    CtxAttachResource(CtxResource),
    /// CTX_DETACH_RESOURCE.
    CtxDetachResource(CtxResource),
    /// RESOURCE_CREATE_3D.
    ResourceCreate3d(ResourceCreate3d),
    /// TRANSFER_TO_HOST_3D.
    TransferToHost3d(TransferHost3d),
    /// TRANSFER_FROM_HOST_3D.
    TransferFromHost3d(TransferHost3d),
    /// SUBMIT_3D with its command stream.
    Submit3d {
        /// The fixed part.
        cmd: CmdSubmit,
        /// The `size` bytes of command stream.
        data: &'a [u8],
    },
    /// RESOURCE_MAP_BLOB.
    ResourceMapBlob(ResourceMapBlob),
    /// RESOURCE_UNMAP_BLOB.
    ResourceUnmapBlob(ResourceUnmapBlob),
    /// UPDATE_CURSOR (cursor queue).
    UpdateCursor(UpdateCursor),
    /// MOVE_CURSOR (cursor queue).
    MoveCursor(UpdateCursor),
}

/// Calls `$m!(Variant, WireStruct)` for every variant without trailing data.
macro_rules! fixed_variants {
    ($m:ident, $($args:tt)*) => {
        $m!($($args)*;
            GetDisplayInfo(CtrlHdr),
            ResourceCreate2d(ResourceCreate2d),
            ResourceUnref(ResourceUnref),
            SetScanout(SetScanout),
            ResourceFlush(ResourceFlush),
            TransferToHost2d(TransferToHost2d),
            ResourceDetachBacking(ResourceDetachBacking),
            GetCapsetInfo(GetCapsetInfo),
            GetCapset(GetCapset),
            GetEdid(GetEdid),
            ResourceAssignUuid(ResourceAssignUuid),
            SetScanoutBlob(SetScanoutBlob),
            CtxCreate(CtxCreate),
            CtxDestroy(CtxDestroy),
            CtxAttachResource(CtxResource),
            CtxDetachResource(CtxResource),
            ResourceCreate3d(ResourceCreate3d),
            TransferToHost3d(TransferHost3d),
            TransferFromHost3d(TransferHost3d),
            ResourceMapBlob(ResourceMapBlob),
            ResourceUnmapBlob(ResourceUnmapBlob),
            UpdateCursor(UpdateCursor),
            MoveCursor(UpdateCursor),
        )
    };
}

impl<'a> Command<'a> {
    /// The command's header.
    pub fn hdr(&self) -> &CtrlHdr {
        macro_rules! arms {
            ($self:ident; $($variant:ident($ty:ty),)*) => {
                match $self {
                    $(Command::$variant(c) => c.hdr(),)*
                    Command::ResourceAttachBacking { cmd, .. } => &cmd.hdr,
                    Command::ResourceCreateBlob { cmd, .. } => &cmd.hdr,
                    Command::Submit3d { cmd, .. } => &cmd.hdr,
                }
            };
        }
        fixed_variants!(arms, self)
    }

    /// The command's type.
    pub fn command_type(&self) -> CommandType {
        macro_rules! arms {
            ($self:ident; $($variant:ident($ty:ty),)*) => {
                match $self {
                    $(Command::$variant(_) => CommandType::$variant,)*
                    Command::ResourceAttachBacking { .. } => CommandType::ResourceAttachBacking,
                    Command::ResourceCreateBlob { .. } => CommandType::ResourceCreateBlob,
                    Command::Submit3d { .. } => CommandType::Submit3d,
                }
            };
        }
        fixed_variants!(arms, self)
    }

    /// Decodes one request from the bytes the guest made readable.
    ///
    /// The bytes must be exactly one request: fewer is `Truncated`, more is
    /// `TrailingBytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Command<'a>, RequestError> {
        let (hdr, _) = CtrlHdr::read_from_prefix(bytes).map_err(|_| RequestError {
            hdr: None,
            error: DecodeError::HeaderTruncated { len: bytes.len() },
        })?;
        let fail = |error| RequestError {
            hdr: Some(hdr),
            error,
        };
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(fail(DecodeError::RequestTooLarge {
                len: bytes.len(),
                max: MAX_REQUEST_BYTES,
            }));
        }
        if hdr.flags.get() & VIRTIO_GPU_FLAG_INFO_RING_IDX != 0
            && hdr.ring_idx >= VIRTIO_GPU_MAX_RINGS
        {
            return Err(fail(DecodeError::RingIndexOutOfRange {
                ring_idx: hdr.ring_idx,
            }));
        }
        let type_ = hdr.type_.get();
        let command = CommandType::from_u32(type_)
            .ok_or_else(|| fail(DecodeError::UnknownCommand { type_ }))?;
        decode_body(command, bytes).map_err(fail)
    }

    /// Appends the command's bytes to `out`.
    ///
    /// The header's type is taken from the variant, and the counts of
    /// trailing data (`nr_entries`, `size`) from the slices carried, so a
    /// command built by hand always encodes consistently. Build raw bytes
    /// yourself to send an inconsistent request on purpose.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let type_ = self.command_type().value();
        macro_rules! arms {
            ($self:ident; $($variant:ident($ty:ty),)*) => {
                match *$self {
                    $(Command::$variant(c) => put(out, c, type_),)*
                    Command::ResourceAttachBacking { mut cmd, entries } => {
                        cmd.nr_entries = count(entries.len()).into();
                        put(out, cmd, type_);
                        out.extend_from_slice(entries.as_bytes());
                    }
                    Command::ResourceCreateBlob { mut cmd, entries } => {
                        cmd.nr_entries = count(entries.len()).into();
                        put(out, cmd, type_);
                        out.extend_from_slice(entries.as_bytes());
                    }
                    Command::Submit3d { mut cmd, data } => {
                        cmd.size = count(data.len()).into();
                        put(out, cmd, type_);
                        out.extend_from_slice(data);
                    }
                }
            };
        }
        fixed_variants!(arms, self)
    }

    /// The command's bytes in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put<T: WireCommand>(out: &mut Vec<u8>, mut cmd: T, type_: u32) {
    cmd.hdr_mut().type_ = type_.into();
    out.extend_from_slice(cmd.as_bytes());
}

/// Reads a command struct that must be exactly the request.
fn exact<T: FromBytes + KnownLayout + Immutable>(
    command: CommandType,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let expected = size_of::<T>();
    match bytes.len().cmp(&expected) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            command,
            need: expected,
            have: bytes.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes {
            command,
            expected,
            have: bytes.len(),
        }),
        std::cmp::Ordering::Equal => {
            T::read_from_bytes(bytes).map_err(|_| DecodeError::Truncated {
                command,
                need: expected,
                have: bytes.len(),
            })
        }
    }
}

/// Reads a command struct followed by exactly `trailing_len(struct)` bytes.
/// `trailing_len` checks its caps first and returns the trailing byte count.
fn with_trailing<T: FromBytes + KnownLayout + Immutable>(
    command: CommandType,
    bytes: &[u8],
    trailing_len: impl FnOnce(&T) -> Result<usize, DecodeError>,
) -> Result<(T, &[u8]), DecodeError> {
    let fixed = size_of::<T>();
    let (cmd, rest) = T::read_from_prefix(bytes).map_err(|_| DecodeError::Truncated {
        command,
        need: fixed,
        have: bytes.len(),
    })?;
    let trailing = trailing_len(&cmd)?;
    let need = fixed.checked_add(trailing).ok_or(DecodeError::Truncated {
        command,
        need: usize::MAX,
        have: bytes.len(),
    })?;
    match rest.len().cmp(&trailing) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            command,
            need,
            have: bytes.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes {
            command,
            expected: need,
            have: bytes.len(),
        }),
        std::cmp::Ordering::Equal => Ok((cmd, rest)),
    }
}

fn entries_len(command: CommandType, nr_entries: u32) -> Result<usize, DecodeError> {
    if nr_entries > MAX_MEM_ENTRIES {
        return Err(DecodeError::TooManyEntries {
            command,
            nr_entries,
            max: MAX_MEM_ENTRIES,
        });
    }
    usize::try_from(nr_entries)
        .ok()
        .and_then(|n| n.checked_mul(size_of::<MemEntry>()))
        .ok_or(DecodeError::TooManyEntries {
            command,
            nr_entries,
            max: MAX_MEM_ENTRIES,
        })
}

fn mem_entries(command: CommandType, bytes: &[u8]) -> Result<&[MemEntry], DecodeError> {
    <[MemEntry]>::ref_from_bytes(bytes).map_err(|_| DecodeError::Truncated {
        command,
        need: bytes.len().next_multiple_of(size_of::<MemEntry>()),
        have: bytes.len(),
    })
}

fn decode_body(command: CommandType, bytes: &[u8]) -> Result<Command<'_>, DecodeError> {
    use CommandType as T;
    Ok(match command {
        T::GetDisplayInfo => Command::GetDisplayInfo(exact(command, bytes)?),
        T::ResourceCreate2d => Command::ResourceCreate2d(exact(command, bytes)?),
        T::ResourceUnref => Command::ResourceUnref(exact(command, bytes)?),
        T::SetScanout => Command::SetScanout(exact(command, bytes)?),
        T::ResourceFlush => Command::ResourceFlush(exact(command, bytes)?),
        T::TransferToHost2d => Command::TransferToHost2d(exact(command, bytes)?),
        T::ResourceDetachBacking => Command::ResourceDetachBacking(exact(command, bytes)?),
        T::GetCapsetInfo => Command::GetCapsetInfo(exact(command, bytes)?),
        T::GetCapset => Command::GetCapset(exact(command, bytes)?),
        T::GetEdid => Command::GetEdid(exact(command, bytes)?),
        T::ResourceAssignUuid => Command::ResourceAssignUuid(exact(command, bytes)?),
        T::SetScanoutBlob => Command::SetScanoutBlob(exact(command, bytes)?),
        T::CtxDestroy => Command::CtxDestroy(exact(command, bytes)?),
        T::CtxAttachResource => Command::CtxAttachResource(exact(command, bytes)?),
        T::CtxDetachResource => Command::CtxDetachResource(exact(command, bytes)?),
        T::ResourceCreate3d => Command::ResourceCreate3d(exact(command, bytes)?),
        T::TransferToHost3d => Command::TransferToHost3d(exact(command, bytes)?),
        T::TransferFromHost3d => Command::TransferFromHost3d(exact(command, bytes)?),
        T::ResourceMapBlob => Command::ResourceMapBlob(exact(command, bytes)?),
        T::ResourceUnmapBlob => Command::ResourceUnmapBlob(exact(command, bytes)?),
        T::UpdateCursor => Command::UpdateCursor(exact(command, bytes)?),
        T::MoveCursor => Command::MoveCursor(exact(command, bytes)?),
        T::CtxCreate => {
            let cmd: CtxCreate = exact(command, bytes)?;
            let nlen = cmd.nlen.get();
            if usize::try_from(nlen).map_or(true, |n| n > CTX_DEBUG_NAME_LEN) {
                return Err(DecodeError::DebugNameTooLong { nlen });
            }
            Command::CtxCreate(cmd)
        }
        T::ResourceAttachBacking => {
            let (cmd, rest) = with_trailing(command, bytes, |c: &ResourceAttachBacking| {
                entries_len(command, c.nr_entries.get())
            })?;
            Command::ResourceAttachBacking {
                cmd,
                entries: mem_entries(command, rest)?,
            }
        }
        T::ResourceCreateBlob => {
            let (cmd, rest) = with_trailing(command, bytes, |c: &ResourceCreateBlob| {
                entries_len(command, c.nr_entries.get())
            })?;
            Command::ResourceCreateBlob {
                cmd,
                entries: mem_entries(command, rest)?,
            }
        }
        T::Submit3d => {
            let (cmd, data) = with_trailing(command, bytes, |c: &CmdSubmit| {
                let size = c.size.get();
                if size > MAX_SUBMIT_3D_BYTES {
                    return Err(DecodeError::SubmitTooLarge {
                        size,
                        max: MAX_SUBMIT_3D_BYTES,
                    });
                }
                usize::try_from(size).map_err(|_| DecodeError::SubmitTooLarge {
                    size,
                    max: MAX_SUBMIT_3D_BYTES,
                })
            })?;
            Command::Submit3d { cmd, data }
        }
    })
}

/// Gathers a request that arrives split over several descriptors into one
/// buffer, refusing to grow past [`MAX_REQUEST_BYTES`] (or a smaller limit)
/// *before* copying anything.
///
/// Copying the request out of guest memory once, then decoding the copy, is
/// also what protects the device against a guest that rewrites a request
/// while it is being read (double fetch).
#[derive(Debug, Clone)]
pub struct RequestBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

impl Default for RequestBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestBuffer {
    /// An empty buffer limited to [`MAX_REQUEST_BYTES`].
    pub fn new() -> Self {
        Self::with_limit(MAX_REQUEST_BYTES)
    }

    /// An empty buffer with a smaller limit.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit: limit.min(MAX_REQUEST_BYTES),
        }
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends one segment.
    pub fn push(&mut self, segment: &[u8]) -> Result<(), DecodeError> {
        self.grow(segment.len())?.copy_from_slice(segment);
        Ok(())
    }

    /// Appends `len` zero bytes and returns them for a reader to fill (for
    /// example a guest-memory read), after checking the limit.
    pub fn grow(&mut self, len: usize) -> Result<&mut [u8], DecodeError> {
        let start = self.bytes.len();
        let end = start
            .checked_add(len)
            .filter(|end| *end <= self.limit)
            .ok_or(DecodeError::RequestTooLarge {
                len: start.saturating_add(len),
                max: self.limit,
            })?;
        self.bytes.resize(end, 0);
        Ok(&mut self.bytes[start..end])
    }

    /// Gives back the last `len` bytes (a reader filled fewer than it asked for).
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }

    /// The gathered bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decodes the gathered bytes.
    pub fn decode(&self) -> Result<Command<'_>, RequestError> {
        Command::decode(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio_gpu::consts::ErrorCode;

    #[test]
    fn request_buffer_enforces_its_limit_before_copying() {
        let mut buf = RequestBuffer::with_limit(40);
        buf.push(&[0; 24]).unwrap();
        assert_eq!(
            buf.push(&[0; 17]),
            Err(DecodeError::RequestTooLarge { len: 41, max: 40 })
        );
        assert_eq!(buf.len(), 24);
        buf.push(&[0; 16]).unwrap();
        assert_eq!(
            buf.grow(usize::MAX).map(|_| ()),
            Err(DecodeError::RequestTooLarge {
                len: usize::MAX,
                max: 40
            })
        );
    }

    #[test]
    fn split_request_decodes_like_a_contiguous_one() {
        let entries = [MemEntry::new(0x1000, 4096), MemEntry::new(0x3000, 8192)];
        let cmd = Command::ResourceAttachBacking {
            cmd: ResourceAttachBacking {
                hdr: CtrlHdr::with_type(CommandType::ResourceAttachBacking.value()),
                resource_id: 7.into(),
                nr_entries: 2.into(),
            },
            entries: &entries,
        };
        let bytes = cmd.to_bytes();
        let mut buf = RequestBuffer::new();
        buf.push(&bytes[..32]).unwrap();
        buf.push(&bytes[32..40]).unwrap();
        buf.push(&bytes[40..]).unwrap();
        assert_eq!(buf.decode().unwrap(), cmd);
    }

    #[test]
    fn ring_idx_beyond_64_is_an_invalid_parameter() {
        let mut hdr = CtrlHdr::with_type(CommandType::GetDisplayInfo.value());
        hdr.flags = (VIRTIO_GPU_FLAG_INFO_RING_IDX).into();
        hdr.ring_idx = 64;
        let err = Command::decode(hdr.as_bytes()).unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::InvalidParameter);
        assert_eq!(err.hdr, Some(hdr));
        hdr.ring_idx = 63;
        assert!(Command::decode(hdr.as_bytes()).is_ok());
        // Without the flag ring_idx carries no meaning and is not checked.
        hdr.flags = 0.into();
        hdr.ring_idx = 200;
        assert!(Command::decode(hdr.as_bytes()).is_ok());
    }
}
