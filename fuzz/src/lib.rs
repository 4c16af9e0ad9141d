//! What the fuzz targets share: a device over in-memory guest memory with
//! a fake display and host-visible region ([`Rig`], from
//! `vgpu_device::testutils`), structure-aware guest operations, and the
//! invariants checked after every input ([`Rig::finish`]).
//!
//! The targets: `decode` (request/response decoding), `dispatch` (sequences
//! of well-formed and malformed commands through the dispatcher), `native`
//! (native-context request streams executed against the buffer manager),
//! `native_gpu` (the same streams on a fake i915 kernel, so GEM contexts and
//! GEM_EXECBUFFER2 take the forwarding path: handle and relocation
//! translation, flag filtering, kernel fences), `admin` (the admin
//! protocol).

use arbitrary::Arbitrary;
use vgpu_proto::native::{self, CcmdBuilder, I915Request, MemoryClassInstance};
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::cmd;

// The device rig the targets run on lives in vgpu-device behind its
// `test-utils` feature, shared with the device's own tests.
pub use vgpu_device::testutils::{
    FakeMapper, NullDisplay, Rig, BM, GPU_BM, GPU_KERNEL, GUEST_RAM, HOSTMEM, MEM,
};

/// A size: mostly small, sometimes the edges.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Size {
    /// Pages.
    Pages(u8),
    /// Bytes.
    Bytes(u16),
    /// Anything.
    Any(u64),
    /// 2^63.
    Huge,
}

impl Size {
    /// The value.
    pub fn get(self) -> u64 {
        match self {
            Size::Pages(p) => u64::from(p) * 4096,
            Size::Bytes(b) => u64::from(b),
            Size::Any(v) => v,
            Size::Huge => 1 << 63,
        }
    }
}

/// A guest memory range for backing entries: inside, at the edge, outside.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Entry {
    page: u16,
    len: Size,
}

impl Entry {
    fn mem(self) -> MemEntry {
        MemEntry::new(u64::from(self.page) * 4096, self.len.get() as u32)
    }
}

/// A guest operation.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// RESOURCE_CREATE_2D.
    Create2d { id: u8, format: u8, w: u16, h: u16 },
    /// RESOURCE_CREATE_3D.
    Create3d {
        id: u8,
        target: u8,
        format: u8,
        bind: u32,
        w: u16,
        h: u16,
        depth: u8,
        layers: u8,
    },
    /// RESOURCE_ATTACH_BACKING.
    Attach { id: u8, entries: Vec<Entry> },
    /// RESOURCE_DETACH_BACKING.
    Detach { id: u8 },
    /// TRANSFER_TO_HOST_2D.
    Transfer2d {
        id: u8,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        offset: u64,
    },
    /// TRANSFER_{TO,FROM}_HOST_3D.
    Transfer3d {
        ctx: u8,
        id: u8,
        to_host: bool,
        b: [u32; 6],
        level: u8,
        offset: u64,
        stride: u32,
        layer_stride: u32,
    },
    /// SET_SCANOUT.
    SetScanout { scanout: u8, id: u8, r: [u32; 4] },
    /// SET_SCANOUT_BLOB.
    SetScanoutBlob {
        scanout: u8,
        id: u8,
        r: [u32; 4],
        format: u8,
        w: u32,
        h: u32,
        stride: u32,
        offset: u32,
    },
    /// RESOURCE_FLUSH.
    Flush { id: u8, r: [u32; 4] },
    /// RESOURCE_UNREF.
    Unref { id: u8 },
    /// RESOURCE_ASSIGN_UUID.
    Uuid { id: u8 },
    /// GET_CAPSET_INFO, GET_CAPSET, GET_EDID, GET_DISPLAY_INFO.
    Query { kind: u8, a: u32, b: u32 },
    /// RESOURCE_CREATE_BLOB.
    CreateBlob {
        ctx: u8,
        id: u8,
        mem: u8,
        flags: u8,
        blob_id: u8,
        size: Size,
        entries: Vec<Entry>,
    },
    /// RESOURCE_MAP_BLOB.
    Map { id: u8, offset: Size },
    /// RESOURCE_UNMAP_BLOB.
    Unmap { id: u8 },
    /// CTX_CREATE.
    CtxCreate { ctx: u8, capset: u8, name: u8 },
    /// CTX_DESTROY.
    CtxDestroy { ctx: u8 },
    /// CTX_ATTACH_RESOURCE / CTX_DETACH_RESOURCE.
    CtxResource { ctx: u8, id: u8, attach: bool },
    /// SUBMIT_3D of raw bytes.
    Submit3d { ctx: u8, stream: Vec<u8> },
    /// SUBMIT_3D of well-formed native-context requests.
    Native { ctx: u8, reqs: Vec<NativeOp> },
    /// UPDATE_CURSOR / MOVE_CURSOR.
    Cursor {
        id: u8,
        scanout: u8,
        x: u32,
        y: u32,
        hot: (u32, u32),
        move_only: bool,
    },
    /// Any bytes.
    Raw { bytes: Vec<u8> },
}

/// A native-context request.
#[derive(Arbitrary, Debug, Clone)]
pub enum NativeOp {
    /// GETPARAM.
    GetParam(u8),
    /// QUERYPARAM.
    QueryParam { id: u8, len: u16 },
    /// GEM_CREATE.
    Create { size: Size, blob_id: u8 },
    /// GEM_CREATE_EXT in system, device or both.
    CreateExt {
        size: Size,
        blob_id: u8,
        regions: u8,
    },
    /// GEM_SET_MMAP_MODE.
    MmapMode { res: u8, flags: u8 },
    /// GEM_BUSY.
    Busy { res: u8 },
    /// GEM_MADVISE by resource or blob id.
    Madvise { id: u8, by_blob: bool, madv: u8 },
    /// GEM_CLOSE.
    Close { blob_id: u8 },
    /// GEM_CONTEXT_CREATE.
    ContextCreate { flags: u8 },
    /// GEM_EXECBUFFER2 with these resources and relocations
    /// (object index, target resource).
    Exec {
        ctx: u8,
        flags: u32,
        batch_len: u16,
        res: Vec<u8>,
        relocs: Vec<(u8, u8)>,
    },
    /// IOCTL_SIMPLE: one of the allow-listed ioctls (or, past them, one
    /// outside the list), its first u32 a small resource / context / VM
    /// id, a small context parameter at offset 8, the rest as given.
    Ioctl {
        which: u8,
        first: u8,
        second: u32,
        param: u8,
        rest: [u32; 2],
    },
    /// Raw bytes in the stream.
    Raw(Vec<u8>),
}

/// IOCTL_SIMPLE's allow-list, then one ioctl outside it (GEM_CREATE).
const SIMPLE_IOCTLS: [u32; 13] = [
    native::DRM_IOCTL_I915_REG_READ,
    native::DRM_IOCTL_I915_GEM_GET_APERTURE,
    native::DRM_IOCTL_I915_GEM_SET_TILING,
    native::DRM_IOCTL_I915_GEM_GET_TILING,
    native::DRM_IOCTL_I915_GEM_SET_DOMAIN,
    native::DRM_IOCTL_I915_GET_RESET_STATS,
    native::DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
    native::DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
    native::DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
    native::DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
    native::DRM_IOCTL_I915_GEM_VM_CREATE,
    native::DRM_IOCTL_I915_GEM_VM_DESTROY,
    0xC010_645B,
];

/// The argument bytes of a fuzzed IOCTL_SIMPLE.
fn ioctl_arg(request: u32, first: u8, second: u32, param: u8, rest: [u32; 2]) -> Vec<u8> {
    let mut arg = Vec::with_capacity(24);
    arg.extend_from_slice(&u32::from(first % 6).to_le_bytes());
    arg.extend_from_slice(&second.to_le_bytes());
    arg.extend_from_slice(&u64::from(param % 16).to_le_bytes());
    arg.extend_from_slice(&rest[0].to_le_bytes());
    arg.extend_from_slice(&rest[1].to_le_bytes());
    arg.resize(native::ioc_size(request), 0);
    arg
}

fn rect(r: [u32; 4]) -> Rect {
    Rect::new(r[0], r[1], r[2], r[3])
}

fn id(v: u8) -> u32 {
    u32::from(v % 10)
}

impl Op {
    /// The request bytes this operation sends.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Op::Create2d {
                id: i,
                format,
                w,
                h,
            } => {
                let mut b =
                    cmd::create_2d(id(*i), Format::B8G8R8X8Unorm, u32::from(*w), u32::from(*h))
                        .to_bytes();
                // Any format number, valid or not (offset of `format`).
                b[28..32].copy_from_slice(&u32::from(*format % 140).to_le_bytes());
                b
            }
            Op::Create3d {
                id: i,
                target,
                format,
                bind,
                w,
                h,
                depth,
                layers,
            } => Command::ResourceCreate3d(ResourceCreate3d {
                hdr: cmd::hdr(CommandType::ResourceCreate3d),
                resource_id: id(*i).into(),
                target: u32::from(*target % 10).into(),
                format: u32::from(*format % 140).into(),
                bind: (*bind).into(),
                width: u32::from(*w).into(),
                height: u32::from(*h).into(),
                depth: u32::from(*depth).into(),
                array_size: u32::from(*layers).into(),
                last_level: 0.into(),
                nr_samples: 0.into(),
                flags: 0.into(),
                padding: 0.into(),
            })
            .to_bytes(),
            Op::Attach { id: i, entries } => {
                let e: Vec<MemEntry> = entries.iter().map(|e| e.mem()).collect();
                cmd::attach_backing(id(*i), &e).to_bytes()
            }
            Op::Detach { id: i } => cmd::detach_backing(id(*i)).to_bytes(),
            Op::Transfer2d {
                id: i,
                x,
                y,
                w,
                h,
                offset,
            } => cmd::transfer_2d(id(*i), Rect::new(*x, *y, *w, *h), *offset).to_bytes(),
            Op::Transfer3d {
                ctx,
                id: i,
                to_host,
                b,
                level,
                offset,
                stride,
                layer_stride,
            } => {
                let c = TransferHost3d {
                    hdr: cmd::ctx_hdr(
                        if *to_host {
                            CommandType::TransferToHost3d
                        } else {
                            CommandType::TransferFromHost3d
                        },
                        u32::from(*ctx % 4),
                    ),
                    box_: Box3d {
                        x: b[0].into(),
                        y: b[1].into(),
                        z: b[2].into(),
                        w: b[3].into(),
                        h: b[4].into(),
                        d: b[5].into(),
                    },
                    offset: (*offset).into(),
                    resource_id: id(*i).into(),
                    level: u32::from(*level).into(),
                    stride: (*stride).into(),
                    layer_stride: (*layer_stride).into(),
                };
                if *to_host {
                    Command::TransferToHost3d(c)
                } else {
                    Command::TransferFromHost3d(c)
                }
                .to_bytes()
            }
            Op::SetScanout { scanout, id: i, r } => {
                cmd::set_scanout(u32::from(*scanout % 20), id(*i), rect(*r)).to_bytes()
            }
            Op::SetScanoutBlob {
                scanout,
                id: i,
                r,
                format,
                w,
                h,
                stride,
                offset,
            } => Command::SetScanoutBlob(SetScanoutBlob {
                hdr: cmd::hdr(CommandType::SetScanoutBlob),
                r: rect(*r),
                scanout_id: u32::from(*scanout % 20).into(),
                resource_id: id(*i).into(),
                width: (*w).into(),
                height: (*h).into(),
                format: u32::from(*format % 140).into(),
                padding: 0.into(),
                strides: [(*stride).into(), 0.into(), 0.into(), 0.into()],
                offsets: [(*offset).into(), 0.into(), 0.into(), 0.into()],
            })
            .to_bytes(),
            Op::Flush { id: i, r } => cmd::flush(id(*i), rect(*r)).to_bytes(),
            Op::Unref { id: i } => cmd::unref(id(*i)).to_bytes(),
            Op::Uuid { id: i } => Command::ResourceAssignUuid(ResourceAssignUuid {
                hdr: cmd::hdr(CommandType::ResourceAssignUuid),
                resource_id: id(*i).into(),
                padding: 0.into(),
            })
            .to_bytes(),
            Op::Query { kind, a, b } => match kind % 4 {
                0 => Command::GetCapsetInfo(GetCapsetInfo {
                    hdr: cmd::hdr(CommandType::GetCapsetInfo),
                    capset_index: (*a).into(),
                    padding: 0.into(),
                }),
                1 => Command::GetCapset(GetCapset {
                    hdr: cmd::hdr(CommandType::GetCapset),
                    capset_id: (*a).into(),
                    capset_version: (*b).into(),
                }),
                2 => Command::GetEdid(GetEdid {
                    hdr: cmd::hdr(CommandType::GetEdid),
                    scanout: (*a).into(),
                    padding: 0.into(),
                }),
                _ => Command::GetDisplayInfo(cmd::hdr(CommandType::GetDisplayInfo)),
            }
            .to_bytes(),
            Op::CreateBlob {
                ctx,
                id: i,
                mem,
                flags,
                blob_id,
                size,
                entries,
            } => {
                let e: Vec<MemEntry> = entries.iter().map(|e| e.mem()).collect();
                let mut b = cmd::create_blob(
                    u32::from(*ctx % 4),
                    id(*i),
                    BlobMem::Guest,
                    u32::from(*flags % 8),
                    u64::from(*blob_id % 8),
                    size.get(),
                    &e,
                )
                .to_bytes();
                // Any blob_mem, valid or not (offset of `blob_mem`).
                b[28..32].copy_from_slice(&u32::from(*mem % 5).to_le_bytes());
                b
            }
            Op::Map { id: i, offset } => cmd::map_blob(id(*i), offset.get()).to_bytes(),
            Op::Unmap { id: i } => cmd::unmap_blob(id(*i)).to_bytes(),
            Op::CtxCreate { ctx, capset, name } => {
                let capset = match capset % 4 {
                    0 => 0,
                    1 => VIRTIO_GPU_CAPSET_DRM,
                    2 => u32::from(*capset),
                    _ => VIRTIO_GPU_CAPSET_DRM | (u32::from(*capset) << 8),
                };
                cmd::ctx_create(
                    u32::from(*ctx % 4),
                    capset,
                    &"n".repeat(usize::from(*name % 70)),
                )
                .to_bytes()
            }
            Op::CtxDestroy { ctx } => Command::CtxDestroy(CtxDestroy {
                hdr: cmd::ctx_hdr(CommandType::CtxDestroy, u32::from(*ctx % 4)),
            })
            .to_bytes(),
            Op::CtxResource { ctx, id: i, attach } => {
                let c = CtxResource {
                    hdr: cmd::ctx_hdr(
                        if *attach {
                            CommandType::CtxAttachResource
                        } else {
                            CommandType::CtxDetachResource
                        },
                        u32::from(*ctx % 4),
                    ),
                    resource_id: id(*i).into(),
                    padding: 0.into(),
                };
                if *attach {
                    Command::CtxAttachResource(c)
                } else {
                    Command::CtxDetachResource(c)
                }
                .to_bytes()
            }
            Op::Submit3d { ctx, stream } => cmd::submit_3d(u32::from(*ctx % 4), stream).to_bytes(),
            Op::Native { ctx, reqs } => {
                cmd::submit_3d(u32::from(*ctx % 4), &native_stream(reqs)).to_bytes()
            }
            Op::Cursor {
                id: i,
                scanout,
                x,
                y,
                hot,
                move_only,
            } => {
                let c = UpdateCursor {
                    hdr: cmd::hdr(if *move_only {
                        CommandType::MoveCursor
                    } else {
                        CommandType::UpdateCursor
                    }),
                    pos: CursorPos {
                        scanout_id: u32::from(*scanout % 20).into(),
                        x: (*x).into(),
                        y: (*y).into(),
                        padding: 0.into(),
                    },
                    resource_id: id(*i).into(),
                    hot_x: hot.0.into(),
                    hot_y: hot.1.into(),
                    padding: 0.into(),
                };
                if *move_only {
                    Command::MoveCursor(c)
                } else {
                    Command::UpdateCursor(c)
                }
                .to_bytes()
            }
            Op::Raw { bytes } => bytes.clone(),
        }
    }
}

/// A SUBMIT_3D stream of native-context requests.
pub fn native_stream(reqs: &[NativeOp]) -> Vec<u8> {
    let mut b = CcmdBuilder::new(0x4000 - 16, 1);
    let all = [
        MemoryClassInstance::new(native::I915_MEMORY_CLASS_DEVICE, 0),
        MemoryClassInstance::new(native::I915_MEMORY_CLASS_SYSTEM, 0),
    ];
    for r in reqs {
        let objs: Vec<native::ExecObject2>;
        let relocs: Vec<native::RelocationEntry>;
        let arg: Vec<u8>;
        let req: I915Request<'_> = match r {
            NativeOp::GetParam(p) => native::getparam(u32::from(*p)),
            NativeOp::QueryParam { id: q, len } => {
                native::queryparam(u32::from(*q), u32::from(*len))
            }
            NativeOp::Create { size, blob_id } => {
                native::gem_create(size.get(), u32::from(*blob_id % 8))
            }
            NativeOp::CreateExt {
                size,
                blob_id,
                regions,
            } => {
                let r: &[MemoryClassInstance] = match regions % 3 {
                    0 => &all[..1],
                    1 => &all[1..],
                    _ => &all,
                };
                native::gem_create_ext(size.get(), u32::from(*blob_id % 8), 0, r)
            }
            NativeOp::MmapMode { res, flags } => {
                native::gem_set_mmap_mode(id(*res), u32::from(*flags))
            }
            NativeOp::Busy { res } => native::gem_busy(id(*res)),
            NativeOp::Madvise {
                id: i,
                by_blob,
                madv,
            } => {
                if *by_blob {
                    native::gem_madvise_blob(u32::from(*i % 8), u32::from(*madv % 4))
                } else {
                    native::gem_madvise_resource(id(*i), u32::from(*madv % 4))
                }
            }
            NativeOp::Close { blob_id } => native::gem_close(u32::from(*blob_id % 8)),
            NativeOp::ContextCreate { flags } => native::gem_context_create(u32::from(*flags)),
            NativeOp::Exec {
                ctx,
                flags,
                batch_len,
                res,
                relocs: rel,
            } => {
                let mut o: Vec<native::ExecObject2> = res
                    .iter()
                    .take(8)
                    .map(|r| native::exec_object(id(*r)))
                    .collect();
                // Relocations in object order, counted per object.
                let mut rel: Vec<(usize, u8)> = rel
                    .iter()
                    .take(16)
                    .filter(|_| !o.is_empty())
                    .map(|(i, t)| (usize::from(*i) % o.len().max(1), *t))
                    .collect();
                rel.sort_by_key(|(i, _)| *i);
                for (i, _) in &rel {
                    let n = o[*i].relocation_count.get();
                    o[*i].relocation_count = (n + 1).into();
                }
                relocs = rel
                    .iter()
                    .map(|(_, t)| native::RelocationEntry {
                        target_handle: id(*t).into(),
                        ..native::RelocationEntry::default()
                    })
                    .collect();
                objs = o;
                native::gem_execbuffer2(
                    u64::from(*ctx % 4),
                    u64::from(*flags),
                    u32::from(*batch_len),
                    &objs,
                    &relocs,
                )
            }
            NativeOp::Ioctl {
                which,
                first,
                second,
                param,
                rest,
            } => {
                let request = SIMPLE_IOCTLS[usize::from(*which) % SIMPLE_IOCTLS.len()];
                arg = ioctl_arg(request, *first, *second, *param, *rest);
                native::ioctl_simple(request, &arg)
            }
            NativeOp::Raw(bytes) => {
                b.push_raw(bytes);
                continue;
            }
        };
        if b.push(&req).is_err() {
            break;
        }
    }
    b.take_stream()
}

/// The start every native-context input gets: context 1 (DRM capset) and
/// its response blob (resource 9, blob_id 0), mapped.
pub fn native_prologue(rig: &mut Rig) {
    for c in [
        cmd::ctx_create(1, VIRTIO_GPU_CAPSET_DRM, "fuzz"),
        cmd::create_blob(
            1,
            9,
            BlobMem::Host3d,
            VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
            0,
            native::MESA_SHMEM_SIZE,
            &[],
        ),
        cmd::map_blob(9, 0),
    ] {
        let r = rig.request(&c.to_bytes());
        assert!(!matches!(r, Response::Error(_)), "prologue failed: {r:?}");
    }
}

/// One step of the native targets.
#[derive(Arbitrary, Debug)]
pub enum NativeStep {
    /// Well-formed requests.
    Native(Vec<NativeOp>),
    /// Raw bytes as a SUBMIT_3D stream.
    Raw(Vec<u8>),
    /// A device command.
    Device(Op),
}

/// Runs the native targets' input on `rig`, then checks it left nothing.
pub fn run_native(mut rig: Rig, steps: &[NativeStep]) {
    native_prologue(&mut rig);
    for step in steps.iter().take(32) {
        let bytes = match step {
            NativeStep::Native(reqs) => Op::Native {
                ctx: 1,
                reqs: reqs.clone(),
            }
            .bytes(),
            NativeStep::Raw(stream) => Op::Submit3d {
                ctx: 1,
                stream: stream.clone(),
            }
            .bytes(),
            NativeStep::Device(op) => op.bytes(),
        };
        let _ = rig.request(&bytes);
    }
    rig.finish();
}
