//! The i915 native context: command numbers, request and response layouts
//! (virglrenderer `src/drm/i915/i915_proto.h`, plus vgpu's extensions), and
//! the decoder from a framed request to a typed [`I915Request`].
//!
//! The module-level documentation of [`crate::native`] lists every command
//! with its number and layout.

use zerocopy::little_endian::{I32, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::framing::{CcmdReq, CcmdRsp, RawCcmd};
use super::i915_uapi::*;
use crate::macros::{u32_enum, wire_struct};

/// `EINVAL`, the errno a malformed request is answered with.
pub const EINVAL: i32 = 22;
/// `ENOENT`.
pub const ENOENT: i32 = 2;
/// `ENOMEM`.
pub const ENOMEM: i32 = 12;
/// `EBUSY`.
pub const EBUSY: i32 = 16;
/// `EPERM`.
pub const EPERM: i32 = 1;
/// `ENOSPC`.
pub const ENOSPC: i32 = 28;
/// `EIO`.
pub const EIO: i32 = 5;
/// `ENOTTY` (an ioctl the host does not offer).
pub const ENOTTY: i32 = 25;

/// First command number of vgpu's own extensions. They live in a range of
/// their own, far above the i915 set, so that commands virglrenderer adds
/// later (10, 11, …) can never be mistaken for them.
pub const VGPU_CCMD_EXT_BASE: u32 = 0x100;

u32_enum! {
    /// Command numbers of the i915 native context.
    pub enum I915Command {
        /// `I915_CCMD_IOCTL_SIMPLE`: an allow-listed fixed-size ioctl.
        IoctlSimple = 1,
        /// `I915_CCMD_GETPARAM`.
        GetParam = 2,
        /// `I915_CCMD_QUERYPARAM` (DRM_IOCTL_I915_QUERY, one item).
        QueryParam = 3,
        /// `I915_CCMD_GEM_CREATE`.
        GemCreate = 4,
        /// `I915_CCMD_GEM_CREATE_EXT`.
        GemCreateExt = 5,
        /// `I915_CCMD_GEM_CONTEXT_CREATE`.
        GemContextCreate = 6,
        /// `I915_CCMD_GEM_EXECBUFFER2`.
        GemExecbuffer2 = 7,
        /// `I915_CCMD_GEM_SET_MMAP_MODE`.
        GemSetMmapMode = 8,
        /// `I915_CCMD_GEM_BUSY`.
        GemBusy = 9,
        /// vgpu extension: guest madvise of an object.
        GemMadvise = 0x100,
        /// vgpu extension: drop an object that never became a resource.
        GemClose = 0x101,
    }
}

impl I915Command {
    /// Whether this command is one of vgpu's extensions (not in virglrenderer).
    pub const fn is_vgpu_extension(self) -> bool {
        self.value() >= VGPU_CCMD_EXT_BASE
    }
}

wire_struct! {
    /// `i915_ccmd_ioctl_simple_req`; `_IOC_SIZE(cmd)` payload bytes follow.
    pub struct IoctlSimpleReq {
        /// Header.
        pub hdr: CcmdReq,
        /// The DRM ioctl request number.
        pub cmd: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_ioctl_simple_rsp`; for `_IOC_READ` ioctls the payload follows.
    pub struct IoctlSimpleRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// 0 or a positive errno.
        pub ret: I32,
    }
}

wire_struct! {
    /// `i915_ccmd_getparam_req`.
    pub struct GetParamReq {
        /// Header.
        pub hdr: CcmdReq,
        /// `I915_PARAM_*`.
        pub param: U32,
        /// Unused on request.
        pub value: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_getparam_rsp`.
    pub struct GetParamRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// Padding.
        pub pad: U32,
        /// 0 or a positive errno.
        pub ret: I32,
        /// The parameter's value.
        pub value: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_queryparam_req`.
    pub struct QueryParamReq {
        /// Header.
        pub hdr: CcmdReq,
        /// `DRM_I915_QUERY_*`.
        pub query_id: U32,
        /// Bytes of result wanted (0: ask for the size).
        pub length: U32,
        /// Query flags.
        pub flags: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_queryparam_rsp`; `length` result bytes follow.
    pub struct QueryParamRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// Padding.
        pub pad: U32,
        /// 0 or a positive errno.
        pub ret: I32,
        /// Result length (negative: a per-item error, as the kernel reports it).
        pub length: I32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_create_req` (no response: a failure surfaces when the
    /// guest turns `blob_id` into a resource).
    pub struct GemCreateReq {
        /// Header.
        pub hdr: CcmdReq,
        /// Size in bytes.
        pub size: U64,
        /// Context-local id the object is filed under.
        pub blob_id: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_create_ext_req`; `ext_size` bytes of packed extensions
    /// follow (no response).
    pub struct GemCreateExtReq {
        /// Header.
        pub hdr: CcmdReq,
        /// Size in bytes.
        pub size: U64,
        /// Context-local id the object is filed under.
        pub blob_id: U32,
        /// `I915_GEM_CREATE_EXT_FLAG_*`.
        pub gem_flags: U32,
        /// Bytes of extensions that follow.
        pub ext_size: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_context_create_req`; `params_size` bytes of packed
    /// setparam extensions follow.
    pub struct GemContextCreateReq {
        /// Header.
        pub hdr: CcmdReq,
        /// `I915_CONTEXT_CREATE_FLAGS_*`.
        pub flags: U32,
        /// Bytes of setparam extensions that follow.
        pub params_size: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_context_create_rsp`.
    pub struct GemContextCreateRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// Padding.
        pub pad: U32,
        /// 0 or a positive errno.
        pub ret: I32,
        /// New GEM context id.
        pub ctx_id: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_execbuffer2_req`; `buffer_count` exec objects, then
    /// `relocs_count` relocation entries follow.
    pub struct GemExecbuffer2Req {
        /// Header.
        pub hdr: CcmdReq,
        /// `I915_EXEC_*`.
        pub flags: U64,
        /// GEM context id.
        pub context_id: U64,
        /// Exec objects that follow.
        pub buffer_count: U32,
        /// Batch start offset.
        pub batch_start_offset: U32,
        /// Batch length.
        pub batch_len: U32,
        /// Relocation entries that follow (the sum of the objects' counts).
        pub relocs_count: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_execbuffer2_rsp`.
    pub struct GemExecbuffer2Rsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// 0 or a positive errno.
        pub ret: I32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_set_mmap_mode_req` (no response).
    pub struct GemSetMmapModeReq {
        /// Header.
        pub hdr: CcmdReq,
        /// Resource.
        pub res_id: U32,
        /// `I915_MMAP_OFFSET_*`.
        pub flags: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_busy_req`.
    pub struct GemBusyReq {
        /// Header.
        pub hdr: CcmdReq,
        /// Resource.
        pub res_id: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `i915_ccmd_gem_busy_rsp`.
    pub struct GemBusyRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// Padding.
        pub pad: U32,
        /// 0 or a positive errno.
        pub ret: I32,
        /// Non-zero while the object is busy.
        pub busy: I32,
    }
}

wire_struct! {
    /// vgpu extension `GEM_MADVISE` request: exactly one of `res_id` and
    /// `blob_id` names the object.
    pub struct GemMadviseReq {
        /// Header.
        pub hdr: CcmdReq,
        /// Resource id, or 0.
        pub res_id: U32,
        /// Context-local blob id, or 0.
        pub blob_id: U32,
        /// `I915_MADV_WILLNEED` or `I915_MADV_DONTNEED`.
        pub madv: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// vgpu extension `GEM_MADVISE` response.
    pub struct GemMadviseRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// Padding.
        pub pad: U32,
        /// 0 or a positive errno.
        pub ret: I32,
        /// 1 while the contents exist; 0 once purged (they are gone for good).
        pub retained: U32,
    }
}

wire_struct! {
    /// vgpu extension `GEM_CLOSE` request.
    pub struct GemCloseReq {
        /// Header.
        pub hdr: CcmdReq,
        /// Context-local blob id of an object not (yet) a resource.
        pub blob_id: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// vgpu extension `GEM_CLOSE` response; also the response vgpu writes for
    /// a request it cannot decode at all (an unknown command number).
    pub struct GemCloseRsp {
        /// Header.
        pub hdr: CcmdRsp,
        /// 0 or a positive errno.
        pub ret: I32,
    }
}

/// The generic two-word response `{len, ret}` vgpu writes for an unknown
/// command.
pub type ErrorRsp = GemCloseRsp;

/// Largest payload an IOCTL_SIMPLE request may carry (virglrenderer's bound).
pub const MAX_IOCTL_SIMPLE_PAYLOAD: usize = 128;
/// Most placements one GEM_CREATE_EXT may list.
pub const MAX_MEMORY_REGIONS: u32 = 16;
/// Largest data block of one context setparam (virglrenderer's bound).
pub const MAX_SETPARAM_SIZE: u32 = 128;

/// One GEM_CREATE_EXT extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateExtension<'a> {
    /// MEMORY_REGIONS with its placements in order of preference.
    MemoryRegions {
        /// The extension struct.
        ext: GemCreateExtMemoryRegions,
        /// The `num_regions` placements.
        regions: &'a [MemoryClassInstance],
    },
    /// PROTECTED_CONTENT.
    ProtectedContent(GemCreateExtProtectedContent),
    /// SET_PAT.
    SetPat(GemCreateExtSetPat),
}

/// One GEM_CONTEXT_CREATE setparam with the data that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextSetParam<'a> {
    /// The setparam struct.
    pub setparam: GemContextCreateExtSetparam,
    /// `param.size` bytes of data.
    pub data: &'a [u8],
}

/// A decoded i915 native-context request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum I915Request<'a> {
    /// IOCTL_SIMPLE with its ioctl argument.
    IoctlSimple {
        /// Fixed part.
        req: IoctlSimpleReq,
        /// `_IOC_SIZE(req.cmd)` bytes.
        payload: &'a [u8],
    },
    /// GETPARAM.
    GetParam(GetParamReq),
    /// QUERYPARAM.
    QueryParam(QueryParamReq),
    /// GEM_CREATE.
    GemCreate(GemCreateReq),
    /// GEM_CREATE_EXT with its extensions in order.
    GemCreateExt {
        /// Fixed part.
        req: GemCreateExtReq,
        /// Extensions.
        extensions: Vec<CreateExtension<'a>>,
    },
    /// GEM_CONTEXT_CREATE with its setparams in order.
    GemContextCreate {
        /// Fixed part.
        req: GemContextCreateReq,
        /// Setparams.
        params: Vec<ContextSetParam<'a>>,
    },
    /// GEM_EXECBUFFER2 with its objects and relocations.
    GemExecbuffer2 {
        /// Fixed part.
        req: GemExecbuffer2Req,
        /// Exec objects (handles are guest resource ids).
        buffers: &'a [ExecObject2],
        /// All relocations, object by object.
        relocs: &'a [RelocationEntry],
    },
    /// GEM_SET_MMAP_MODE.
    GemSetMmapMode(GemSetMmapModeReq),
    /// GEM_BUSY.
    GemBusy(GemBusyReq),
    /// GEM_MADVISE (vgpu extension).
    GemMadvise(GemMadviseReq),
    /// GEM_CLOSE (vgpu extension).
    GemClose(GemCloseReq),
}

/// Why an i915 request could not be decoded. Every variant is answered with
/// `EINVAL` in the request's response (when it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcmdError {
    /// Not an i915 (or vgpu extension) command number.
    #[error("unknown i915 native-context command {cmd}")]
    UnknownCommand {
        /// The number.
        cmd: u32,
    },
    /// `len` does not match the command's layout.
    #[error("{cmd:?} has len {len}, its layout needs {expected}")]
    BadLength {
        /// The command.
        cmd: I915Command,
        /// Length of the request.
        len: usize,
        /// Length its fields call for.
        expected: usize,
    },
    /// IOCTL_SIMPLE argument larger than allowed.
    #[error("IOCTL_SIMPLE ioctl {ioctl:#x} has a {size}-byte argument, limit {MAX_IOCTL_SIMPLE_PAYLOAD}")]
    IoctlTooLarge {
        /// The ioctl number.
        ioctl: u32,
        /// Its argument size.
        size: usize,
    },
    /// An extension's head or body runs past `ext_size` / `params_size`.
    #[error("{cmd:?} extension at offset {offset} runs past the {size} extension bytes")]
    ExtensionTruncated {
        /// The command.
        cmd: I915Command,
        /// Offset of the extension.
        offset: usize,
        /// Total extension bytes.
        size: usize,
    },
    /// An extension name the command does not know.
    #[error("{cmd:?} has unknown extension {name}")]
    UnknownExtension {
        /// The command.
        cmd: I915Command,
        /// The name.
        name: u32,
    },
    /// The same create extension twice.
    #[error("GEM_CREATE_EXT repeats extension {name}")]
    DuplicateExtension {
        /// The name.
        name: u32,
    },
    /// More placements than allowed, or none.
    #[error(
        "GEM_CREATE_EXT lists {num_regions} memory regions (1..={MAX_MEMORY_REGIONS} allowed)"
    )]
    BadRegionCount {
        /// What the guest asked for.
        num_regions: u32,
    },
    /// A setparam data size that is not a multiple of 4 or too large.
    #[error(
        "GEM_CONTEXT_CREATE setparam size {size} (multiple of 4, at most {MAX_SETPARAM_SIZE})"
    )]
    BadSetparamSize {
        /// The size.
        size: u32,
    },
    /// The objects' relocation counts do not add up to `relocs_count`.
    #[error("GEM_EXECBUFFER2 objects need {sum} relocations, relocs_count is {declared}")]
    RelocCountMismatch {
        /// `relocs_count`.
        declared: u32,
        /// Sum over the objects.
        sum: u64,
    },
    /// GEM_MADVISE must name its object by exactly one of res_id / blob_id.
    #[error("GEM_MADVISE names res_id {res_id} and blob_id {blob_id}: exactly one must be set")]
    MadviseTarget {
        /// res_id given.
        res_id: u32,
        /// blob_id given.
        blob_id: u32,
    },
}

impl CcmdError {
    /// The (positive) errno the response carries.
    pub fn errno(&self) -> i32 {
        EINVAL
    }
}

/// `_IOC_SIZE` of an ioctl request number.
pub const fn ioc_size(ioctl: u32) -> usize {
    ((ioctl >> 16) & 0x3fff) as usize
}

/// `_IOC_DIR` bit for ioctls that copy their argument back to userspace.
pub const IOC_READ: u32 = 2;

/// Whether an ioctl copies its argument back (`_IOC_DIR & _IOC_READ`).
pub const fn ioc_reads(ioctl: u32) -> bool {
    (ioctl >> 30) & IOC_READ != 0
}

/// Reads a fixed-size request as virglrenderer does: a shorter request (an
/// older guest) reads as if zero-extended, bytes past the struct (a newer
/// guest's fields) are ignored.
fn read_fixed<T: FromBytes + IntoBytes + KnownLayout + Immutable>(bytes: &[u8]) -> T {
    let mut value = T::new_zeroed();
    let n = bytes.len().min(size_of::<T>());
    value.as_mut_bytes()[..n].copy_from_slice(&bytes[..n]);
    value
}

/// Reads `T` at the front, then checks that exactly `tail(&T)` bytes follow.
fn read_with_tail<T: FromBytes + KnownLayout + Immutable>(
    cmd: I915Command,
    bytes: &[u8],
    tail: impl FnOnce(&T) -> Option<usize>,
) -> Result<(T, &[u8]), CcmdError> {
    let (fixed, rest) = T::read_from_prefix(bytes).map_err(|_| CcmdError::BadLength {
        cmd,
        len: bytes.len(),
        expected: size_of::<T>(),
    })?;
    let want = tail(&fixed);
    let expected = want
        .and_then(|t| t.checked_add(size_of::<T>()))
        .unwrap_or(usize::MAX);
    if want != Some(rest.len()) {
        return Err(CcmdError::BadLength {
            cmd,
            len: bytes.len(),
            expected,
        });
    }
    Ok((fixed, rest))
}

fn slice_of<T: FromBytes + KnownLayout + Immutable + zerocopy::Unaligned>(
    cmd: I915Command,
    bytes: &[u8],
    total_len: usize,
) -> Result<&[T], CcmdError> {
    <[T]>::ref_from_bytes(bytes).map_err(|_| CcmdError::BadLength {
        cmd,
        len: total_len,
        expected: total_len.next_multiple_of(size_of::<T>()),
    })
}

impl<'a> I915Request<'a> {
    /// Decodes a framed request (see [`super::CcmdIter`]).
    pub fn decode(raw: RawCcmd<'a>) -> Result<I915Request<'a>, CcmdError> {
        let number = raw.hdr.cmd.get();
        let cmd = I915Command::from_u32(number).ok_or(CcmdError::UnknownCommand { cmd: number })?;
        let bytes = raw.bytes;
        let len = bytes.len();
        Ok(match cmd {
            I915Command::IoctlSimple => {
                let (req, payload) =
                    read_with_tail(cmd, bytes, |r: &IoctlSimpleReq| Some(ioc_size(r.cmd.get())))?;
                if payload.len() > MAX_IOCTL_SIMPLE_PAYLOAD {
                    return Err(CcmdError::IoctlTooLarge {
                        ioctl: req.cmd.get(),
                        size: payload.len(),
                    });
                }
                I915Request::IoctlSimple { req, payload }
            }
            I915Command::GetParam => I915Request::GetParam(read_fixed(bytes)),
            I915Command::QueryParam => I915Request::QueryParam(read_fixed(bytes)),
            I915Command::GemCreate => I915Request::GemCreate(read_fixed(bytes)),
            I915Command::GemSetMmapMode => I915Request::GemSetMmapMode(read_fixed(bytes)),
            I915Command::GemBusy => I915Request::GemBusy(read_fixed(bytes)),
            I915Command::GemClose => I915Request::GemClose(read_fixed(bytes)),
            I915Command::GemMadvise => {
                let req: GemMadviseReq = read_fixed(bytes);
                let (res_id, blob_id) = (req.res_id.get(), req.blob_id.get());
                if (res_id == 0) == (blob_id == 0) {
                    return Err(CcmdError::MadviseTarget { res_id, blob_id });
                }
                I915Request::GemMadvise(req)
            }
            I915Command::GemCreateExt => {
                let (req, payload) = read_with_tail(cmd, bytes, |r: &GemCreateExtReq| {
                    usize::try_from(r.ext_size.get()).ok()
                })?;
                I915Request::GemCreateExt {
                    req,
                    extensions: decode_create_extensions(payload)?,
                }
            }
            I915Command::GemContextCreate => {
                let (req, payload) = read_with_tail(cmd, bytes, |r: &GemContextCreateReq| {
                    usize::try_from(r.params_size.get()).ok()
                })?;
                I915Request::GemContextCreate {
                    req,
                    params: decode_setparams(payload)?,
                }
            }
            I915Command::GemExecbuffer2 => {
                let (req, payload) = read_with_tail(cmd, bytes, |r: &GemExecbuffer2Req| {
                    let objects = usize::try_from(r.buffer_count.get())
                        .ok()?
                        .checked_mul(size_of::<ExecObject2>())?;
                    let relocs = usize::try_from(r.relocs_count.get())
                        .ok()?
                        .checked_mul(size_of::<RelocationEntry>())?;
                    objects.checked_add(relocs)
                })?;
                let split = usize::try_from(req.buffer_count.get())
                    .ok()
                    .and_then(|n| n.checked_mul(size_of::<ExecObject2>()))
                    .filter(|n| *n <= payload.len())
                    .ok_or(CcmdError::BadLength {
                        cmd,
                        len,
                        expected: usize::MAX,
                    })?;
                let (objects, relocations) = payload.split_at(split);
                let buffers: &[ExecObject2] = slice_of(cmd, objects, len)?;
                let relocs: &[RelocationEntry] = slice_of(cmd, relocations, len)?;
                let sum: u64 = buffers
                    .iter()
                    .map(|b| u64::from(b.relocation_count.get()))
                    .sum();
                if sum != u64::from(req.relocs_count.get()) {
                    return Err(CcmdError::RelocCountMismatch {
                        declared: req.relocs_count.get(),
                        sum,
                    });
                }
                I915Request::GemExecbuffer2 {
                    req,
                    buffers,
                    relocs,
                }
            }
        })
    }

    /// The command.
    pub fn command(&self) -> I915Command {
        match self {
            I915Request::IoctlSimple { .. } => I915Command::IoctlSimple,
            I915Request::GetParam(_) => I915Command::GetParam,
            I915Request::QueryParam(_) => I915Command::QueryParam,
            I915Request::GemCreate(_) => I915Command::GemCreate,
            I915Request::GemCreateExt { .. } => I915Command::GemCreateExt,
            I915Request::GemContextCreate { .. } => I915Command::GemContextCreate,
            I915Request::GemExecbuffer2 { .. } => I915Command::GemExecbuffer2,
            I915Request::GemSetMmapMode(_) => I915Command::GemSetMmapMode,
            I915Request::GemBusy(_) => I915Command::GemBusy,
            I915Request::GemMadvise(_) => I915Command::GemMadvise,
            I915Request::GemClose(_) => I915Command::GemClose,
        }
    }

    /// Bytes of response the host writes at `rsp_off`, or `None` for
    /// commands without a response.
    pub fn response_len(&self) -> Option<usize> {
        response_len(self.command(), self.query_length(), self.ioctl())
    }

    fn query_length(&self) -> usize {
        match self {
            I915Request::QueryParam(q) => usize::try_from(q.length.get()).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    fn ioctl(&self) -> u32 {
        match self {
            I915Request::IoctlSimple { req, .. } => req.cmd.get(),
            _ => 0,
        }
    }

    /// Appends the request, framed with `seqno` and `rsp_off`, to `out`.
    /// Lengths and counts are computed from the data carried.
    pub fn encode(&self, seqno: u32, rsp_off: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let mut header = CcmdReq {
            cmd: self.command().value().into(),
            len: 0.into(),
            seqno: seqno.into(),
            rsp_off: rsp_off.into(),
        };
        match self {
            I915Request::IoctlSimple { req, payload } => {
                push_with(out, *req, &mut header, |r| &mut r.hdr);
                out.extend_from_slice(payload);
            }
            I915Request::GetParam(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::QueryParam(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::GemCreate(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::GemSetMmapMode(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::GemBusy(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::GemMadvise(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::GemClose(r) => push_with(out, *r, &mut header, |r| &mut r.hdr),
            I915Request::GemCreateExt { req, extensions } => {
                let mut payload = Vec::new();
                for ext in extensions {
                    match ext {
                        CreateExtension::MemoryRegions { ext, regions } => {
                            let mut ext = *ext;
                            ext.num_regions = count(regions.len()).into();
                            payload.extend_from_slice(ext.as_bytes());
                            payload.extend_from_slice(regions.as_bytes());
                        }
                        CreateExtension::ProtectedContent(e) => {
                            payload.extend_from_slice(e.as_bytes())
                        }
                        CreateExtension::SetPat(e) => payload.extend_from_slice(e.as_bytes()),
                    }
                }
                let mut req = *req;
                req.ext_size = count(payload.len()).into();
                push_with(out, req, &mut header, |r| &mut r.hdr);
                out.extend_from_slice(&payload);
            }
            I915Request::GemContextCreate { req, params } => {
                let mut payload = Vec::new();
                for p in params {
                    let mut setparam = p.setparam;
                    setparam.param.size = count(p.data.len()).into();
                    payload.extend_from_slice(setparam.as_bytes());
                    payload.extend_from_slice(p.data);
                }
                let mut req = *req;
                req.params_size = count(payload.len()).into();
                push_with(out, req, &mut header, |r| &mut r.hdr);
                out.extend_from_slice(&payload);
            }
            I915Request::GemExecbuffer2 {
                req,
                buffers,
                relocs,
            } => {
                let mut req = *req;
                req.buffer_count = count(buffers.len()).into();
                req.relocs_count = count(relocs.len()).into();
                push_with(out, req, &mut header, |r| &mut r.hdr);
                out.extend_from_slice(buffers.as_bytes());
                out.extend_from_slice(relocs.as_bytes());
            }
        }
        let len = count(out.len() - start);
        if let Some(field) = out.get_mut(start + 4..start + 8) {
            field.copy_from_slice(&len.to_le_bytes());
        }
    }
}

/// Bytes of response a command writes, `None` if it has none.
/// `query_length` is QUERYPARAM's `length`; `ioctl` IOCTL_SIMPLE's number.
pub fn response_len(cmd: I915Command, query_length: usize, ioctl: u32) -> Option<usize> {
    match cmd {
        I915Command::GemCreate | I915Command::GemCreateExt | I915Command::GemSetMmapMode => None,
        I915Command::IoctlSimple => {
            Some(size_of::<IoctlSimpleRsp>() + if ioc_reads(ioctl) { ioc_size(ioctl) } else { 0 })
        }
        I915Command::GetParam => Some(size_of::<GetParamRsp>()),
        I915Command::QueryParam => size_of::<QueryParamRsp>().checked_add(query_length),
        I915Command::GemContextCreate => Some(size_of::<GemContextCreateRsp>()),
        I915Command::GemExecbuffer2 => Some(size_of::<GemExecbuffer2Rsp>()),
        I915Command::GemBusy => Some(size_of::<GemBusyRsp>()),
        I915Command::GemMadvise => Some(size_of::<GemMadviseRsp>()),
        I915Command::GemClose => Some(size_of::<GemCloseRsp>()),
    }
}

fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn push_with<T: IntoBytes + Immutable>(
    out: &mut Vec<u8>,
    mut value: T,
    header: &mut CcmdReq,
    hdr: impl FnOnce(&mut T) -> &mut CcmdReq,
) {
    *hdr(&mut value) = *header;
    out.extend_from_slice(value.as_bytes());
}

fn decode_create_extensions(payload: &[u8]) -> Result<Vec<CreateExtension<'_>>, CcmdError> {
    let cmd = I915Command::GemCreateExt;
    let size = payload.len();
    let truncated = |offset| CcmdError::ExtensionTruncated { cmd, offset, size };
    let mut extensions = Vec::new();
    let mut seen = [false; 3];
    let mut offset = 0;
    while offset < size {
        let rest = &payload[offset..];
        let (head, _) = UserExtension::read_from_prefix(rest).map_err(|_| truncated(offset))?;
        let name = head.name.get();
        let (ext, used) = match name {
            I915_GEM_CREATE_EXT_MEMORY_REGIONS => {
                let (ext, tail) = GemCreateExtMemoryRegions::read_from_prefix(rest)
                    .map_err(|_| truncated(offset))?;
                let num_regions = ext.num_regions.get();
                if num_regions == 0 || num_regions > MAX_MEMORY_REGIONS {
                    return Err(CcmdError::BadRegionCount { num_regions });
                }
                let bytes = usize::try_from(num_regions)
                    .ok()
                    .and_then(|n| n.checked_mul(size_of::<MemoryClassInstance>()))
                    .filter(|n| *n <= tail.len())
                    .ok_or_else(|| truncated(offset))?;
                let regions = <[MemoryClassInstance]>::ref_from_bytes(&tail[..bytes])
                    .map_err(|_| truncated(offset))?;
                (
                    CreateExtension::MemoryRegions { ext, regions },
                    size_of::<GemCreateExtMemoryRegions>() + bytes,
                )
            }
            I915_GEM_CREATE_EXT_PROTECTED_CONTENT => {
                let (ext, _) = GemCreateExtProtectedContent::read_from_prefix(rest)
                    .map_err(|_| truncated(offset))?;
                (
                    CreateExtension::ProtectedContent(ext),
                    size_of::<GemCreateExtProtectedContent>(),
                )
            }
            I915_GEM_CREATE_EXT_SET_PAT => {
                let (ext, _) =
                    GemCreateExtSetPat::read_from_prefix(rest).map_err(|_| truncated(offset))?;
                (
                    CreateExtension::SetPat(ext),
                    size_of::<GemCreateExtSetPat>(),
                )
            }
            _ => return Err(CcmdError::UnknownExtension { cmd, name }),
        };
        let slot = usize::try_from(name).ok().and_then(|n| seen.get_mut(n));
        match slot {
            Some(seen) if !*seen => *seen = true,
            _ => return Err(CcmdError::DuplicateExtension { name }),
        }
        extensions.push(ext);
        offset += used;
    }
    Ok(extensions)
}

fn decode_setparams(payload: &[u8]) -> Result<Vec<ContextSetParam<'_>>, CcmdError> {
    let cmd = I915Command::GemContextCreate;
    let size = payload.len();
    let mut params = Vec::new();
    let mut offset = 0;
    while offset < size {
        let rest = &payload[offset..];
        let (setparam, tail) = GemContextCreateExtSetparam::read_from_prefix(rest)
            .map_err(|_| CcmdError::ExtensionTruncated { cmd, offset, size })?;
        let data_size = setparam.param.size.get();
        if data_size % 4 != 0 || data_size > MAX_SETPARAM_SIZE {
            return Err(CcmdError::BadSetparamSize { size: data_size });
        }
        let n = usize::try_from(data_size).unwrap_or(usize::MAX);
        let data = tail
            .get(..n)
            .ok_or(CcmdError::ExtensionTruncated { cmd, offset, size })?;
        params.push(ContextSetParam { setparam, data });
        offset += size_of::<GemContextCreateExtSetparam>() + n;
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(mut bytes: Vec<u8>, len: usize) -> Vec<u8> {
        bytes.resize(len, 0xee);
        bytes[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> I915Request<'_> {
        let (hdr, _) = CcmdReq::read_from_prefix(bytes).unwrap();
        I915Request::decode(RawCcmd { hdr, bytes }).unwrap()
    }

    #[test]
    fn fixed_requests_read_like_upstream_whatever_their_length() {
        // drm_context.c copies hdr->len bytes into a buffer of
        // MAX(struct size, len) and zero-fills the rest.
        let full = GetParamReq {
            hdr: CcmdReq {
                cmd: I915Command::GetParam.value().into(),
                ..CcmdReq::default()
            },
            param: 7.into(),
            value: 9.into(),
        };
        let older_guest = framed(full.as_bytes().to_vec(), 20);
        let I915Request::GetParam(got) = decode(&older_guest) else {
            panic!("not a GETPARAM")
        };
        assert_eq!((got.param.get(), got.value.get()), (7, 0));
        let newer_guest = framed(full.as_bytes().to_vec(), 32);
        let I915Request::GetParam(got) = decode(&newer_guest) else {
            panic!("not a GETPARAM")
        };
        assert_eq!((got.param.get(), got.value.get()), (7, 9));
        let header_only = framed(full.as_bytes().to_vec(), 16);
        let I915Request::GetParam(got) = decode(&header_only) else {
            panic!("not a GETPARAM")
        };
        assert_eq!(got.param.get(), 0);
    }
}
