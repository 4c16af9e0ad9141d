//! `VirtioGpu::process()` as a table: each row is a request (bytes built
//! with `vgpu_proto`'s encoders, through the real decoder) and the response
//! it must get — its type, and where it matters its bytes. Rows run in
//! order on one device, so earlier rows set up the state later ones need:
//! every command's success and its main errors (unknown resource, context
//! and scanout ids, invalid parameters, out of memory at each per-VM cap).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use vgpu_backend::BufferManager;
use vgpu_device::config::{DeviceConfig, Limits};
use vgpu_device::testutils::{Rig, HOSTMEM};
use vgpu_proto::native::{self, CcmdBuilder, I915Request};
use vgpu_proto::virtio_gpu::build::{self, ctx_hdr, hdr};
use vgpu_proto::virtio_gpu::*;
use zerocopy::{FromBytes, IntoBytes};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

// ---- requests ----------------------------------------------------------

fn display_info() -> Vec<u8> {
    Command::GetDisplayInfo(hdr(CommandType::GetDisplayInfo)).to_bytes()
}

fn edid(scanout: u32) -> Vec<u8> {
    Command::GetEdid(GetEdid {
        hdr: hdr(CommandType::GetEdid),
        scanout: scanout.into(),
        padding: 0.into(),
    })
    .to_bytes()
}

fn capset_info(index: u32) -> Vec<u8> {
    Command::GetCapsetInfo(GetCapsetInfo {
        hdr: hdr(CommandType::GetCapsetInfo),
        capset_index: index.into(),
        padding: 0.into(),
    })
    .to_bytes()
}

fn capset(id: u32, version: u32) -> Vec<u8> {
    Command::GetCapset(GetCapset {
        hdr: hdr(CommandType::GetCapset),
        capset_id: id.into(),
        capset_version: version.into(),
    })
    .to_bytes()
}

fn create_2d(id: u32, format: u32, w: u32, h: u32) -> Vec<u8> {
    Command::ResourceCreate2d(ResourceCreate2d {
        hdr: hdr(CommandType::ResourceCreate2d),
        resource_id: id.into(),
        format: format.into(),
        width: w.into(),
        height: h.into(),
    })
    .to_bytes()
}

fn image(id: u32, w: u32, h: u32) -> Vec<u8> {
    create_2d(id, Format::B8G8R8X8Unorm.value(), w, h)
}

fn unref(id: u32) -> Vec<u8> {
    build::unref(id).to_bytes()
}

fn attach(id: u32, entries: &[MemEntry]) -> Vec<u8> {
    build::attach_backing(id, entries).to_bytes()
}

fn detach(id: u32) -> Vec<u8> {
    build::detach_backing(id).to_bytes()
}

fn transfer_2d(id: u32, r: Rect, offset: u64) -> Vec<u8> {
    build::transfer_2d(id, r, offset).to_bytes()
}

fn set_scanout(scanout: u32, id: u32, r: Rect) -> Vec<u8> {
    build::set_scanout(scanout, id, r).to_bytes()
}

fn flush(id: u32, r: Rect) -> Vec<u8> {
    build::flush(id, r).to_bytes()
}

fn uuid(id: u32) -> Vec<u8> {
    Command::ResourceAssignUuid(ResourceAssignUuid {
        hdr: hdr(CommandType::ResourceAssignUuid),
        resource_id: id.into(),
        padding: 0.into(),
    })
    .to_bytes()
}

fn cursor(update: bool, scanout: u32, id: u32) -> Vec<u8> {
    let c = UpdateCursor {
        hdr: hdr(if update {
            CommandType::UpdateCursor
        } else {
            CommandType::MoveCursor
        }),
        pos: CursorPos {
            scanout_id: scanout.into(),
            x: 10.into(),
            y: 20.into(),
            padding: 0.into(),
        },
        resource_id: id.into(),
        hot_x: 1.into(),
        hot_y: 2.into(),
        padding: 0.into(),
    };
    if update {
        Command::UpdateCursor(c)
    } else {
        Command::MoveCursor(c)
    }
    .to_bytes()
}

fn ctx_create(ctx: u32, capset: u32) -> Vec<u8> {
    let mut debug_name = [0u8; CTX_DEBUG_NAME_LEN];
    debug_name[..5].copy_from_slice(b"table");
    Command::CtxCreate(CtxCreate {
        hdr: ctx_hdr(CommandType::CtxCreate, ctx),
        nlen: 5.into(),
        context_init: capset.into(),
        debug_name,
    })
    .to_bytes()
}

fn ctx_destroy(ctx: u32) -> Vec<u8> {
    Command::CtxDestroy(CtxDestroy {
        hdr: ctx_hdr(CommandType::CtxDestroy, ctx),
    })
    .to_bytes()
}

fn ctx_resource(attach: bool, ctx: u32, id: u32) -> Vec<u8> {
    let c = CtxResource {
        hdr: ctx_hdr(
            if attach {
                CommandType::CtxAttachResource
            } else {
                CommandType::CtxDetachResource
            },
            ctx,
        ),
        resource_id: id.into(),
        padding: 0.into(),
    };
    if attach {
        Command::CtxAttachResource(c)
    } else {
        Command::CtxDetachResource(c)
    }
    .to_bytes()
}

/// RESOURCE_CREATE_3D on `ctx`: `target`, `width` x `height`, `depth`.
fn create_3d(ctx: u32, id: u32, target: u32, w: u32, h: u32, depth: u32) -> Vec<u8> {
    Command::ResourceCreate3d(ResourceCreate3d {
        hdr: ctx_hdr(CommandType::ResourceCreate3d, ctx),
        resource_id: id.into(),
        target: target.into(),
        format: Format::B8G8R8X8Unorm.value().into(),
        bind: 0.into(),
        width: w.into(),
        height: h.into(),
        depth: depth.into(),
        array_size: 1.into(),
        last_level: 0.into(),
        nr_samples: 0.into(),
        flags: 0.into(),
        padding: 0.into(),
    })
    .to_bytes()
}

/// TRANSFER_{TO,FROM}_HOST_3D of `w` bytes at `x` of a buffer.
fn transfer_3d(to_host: bool, ctx: u32, id: u32, x: u32, w: u32) -> Vec<u8> {
    let c = TransferHost3d {
        hdr: ctx_hdr(
            if to_host {
                CommandType::TransferToHost3d
            } else {
                CommandType::TransferFromHost3d
            },
            ctx,
        ),
        box_: Box3d {
            x: x.into(),
            y: 0.into(),
            z: 0.into(),
            w: w.into(),
            h: 1.into(),
            d: 1.into(),
        },
        offset: 0.into(),
        resource_id: id.into(),
        level: 0.into(),
        stride: 0.into(),
        layer_stride: 0.into(),
    };
    if to_host {
        Command::TransferToHost3d(c)
    } else {
        Command::TransferFromHost3d(c)
    }
    .to_bytes()
}

fn submit(ctx: u32, stream: &[u8]) -> Vec<u8> {
    Command::Submit3d {
        cmd: CmdSubmit {
            hdr: ctx_hdr(CommandType::Submit3d, ctx),
            size: (stream.len() as u32).into(),
            padding: 0.into(),
        },
        data: stream,
    }
    .to_bytes()
}

/// SUBMIT_3D of native-context requests on `ctx`.
fn native(ctx: u32, requests: &[I915Request<'_>]) -> Vec<u8> {
    let mut b = CcmdBuilder::new((native::MESA_SHMEM_SIZE - 16) as usize, 1);
    for r in requests {
        b.push(r).unwrap();
    }
    submit(ctx, &b.take_stream())
}

fn create_blob(ctx: u32, id: u32, mem: u32, blob_id: u64, size: u64, e: &[MemEntry]) -> Vec<u8> {
    Command::ResourceCreateBlob {
        cmd: ResourceCreateBlob {
            hdr: ctx_hdr(CommandType::ResourceCreateBlob, ctx),
            resource_id: id.into(),
            blob_mem: mem.into(),
            blob_flags: VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE.into(),
            nr_entries: (e.len() as u32).into(),
            blob_id: blob_id.into(),
            size: size.into(),
        },
        entries: e,
    }
    .to_bytes()
}

const GUEST: u32 = VIRTIO_GPU_BLOB_MEM_GUEST;
const HOST3D: u32 = VIRTIO_GPU_BLOB_MEM_HOST3D;

fn map(id: u32, offset: u64) -> Vec<u8> {
    Command::ResourceMapBlob(ResourceMapBlob {
        hdr: hdr(CommandType::ResourceMapBlob),
        resource_id: id.into(),
        padding: 0.into(),
        offset: offset.into(),
    })
    .to_bytes()
}

fn unmap(id: u32) -> Vec<u8> {
    Command::ResourceUnmapBlob(ResourceUnmapBlob {
        hdr: hdr(CommandType::ResourceUnmapBlob),
        resource_id: id.into(),
        padding: 0.into(),
    })
    .to_bytes()
}

/// SET_SCANOUT_BLOB of a `w` x `h` B8G8R8X8 image at `stride`.
fn scanout_blob(scanout: u32, id: u32, w: u32, h: u32, stride: u32) -> Vec<u8> {
    Command::SetScanoutBlob(SetScanoutBlob {
        hdr: hdr(CommandType::SetScanoutBlob),
        r: Rect::new(0, 0, w, h),
        scanout_id: scanout.into(),
        resource_id: id.into(),
        width: w.into(),
        height: h.into(),
        format: Format::B8G8R8X8Unorm.value().into(),
        padding: 0.into(),
        strides: [stride.into(), 0.into(), 0.into(), 0.into()],
        offsets: [0.into(); 4],
    })
    .to_bytes()
}

// ---- the table ---------------------------------------------------------

/// What a row's response must be.
enum Want {
    /// OK_NODATA.
    Ok,
    /// This error.
    Err(ErrorCode),
    /// A response of this type whose decoded form passes the check.
    Is(ResponseType, fn(&Response)),
    /// Exactly these bytes.
    Bytes(Vec<u8>),
}

struct Row {
    what: String,
    request: Vec<u8>,
    want: Want,
}

fn row(what: impl Into<String>, request: Vec<u8>, want: Want) -> Row {
    Row {
        what: what.into(),
        request,
        want,
    }
}

fn run(rig: &mut Rig, rows: Vec<Row>) {
    for (i, r) in rows.into_iter().enumerate() {
        let bytes = rig.exchange(&r.request);
        let (h, response) = Response::decode(&bytes)
            .unwrap_or_else(|e| panic!("row {i} ({}): undecodable response: {e}", r.what));
        // A fenced request's fence and context come back; nothing else does.
        let request_hdr = CtrlHdr::read_from_prefix(&r.request).unwrap().0;
        let fenced = request_hdr.flags.get() & VIRTIO_GPU_FLAG_FENCE != 0;
        let echo = |v: u64| if fenced { v } else { 0 };
        assert_eq!(
            (h.fence_id.get(), u64::from(h.ctx_id.get())),
            (
                echo(request_hdr.fence_id.get()),
                echo(u64::from(request_hdr.ctx_id.get()))
            ),
            "row {i} ({}): the response header's fence and context",
            r.what
        );
        match r.want {
            Want::Ok => assert_eq!(response, Response::OkNoData, "row {i} ({})", r.what),
            Want::Err(code) => {
                assert_eq!(response, Response::Error(code), "row {i} ({})", r.what)
            }
            Want::Is(ty, check) => {
                assert_eq!(response.response_type(), ty, "row {i} ({})", r.what);
                check(&response);
            }
            Want::Bytes(want) => assert_eq!(bytes, want, "row {i} ({})", r.what),
        }
    }
}

fn rig(cfg: DeviceConfig) -> Rig {
    // Each test its own buffer manager: `finish` checks it is empty.
    let bm = BufferManager::emulated_with_cache(64 * MIB, MIB).unwrap();
    Rig::with(cfg, bm)
}

fn page(n: u64) -> MemEntry {
    MemEntry::new(MIB + n * PAGE, PAGE as u32)
}

fn no_check(_: &Response) {}

fn display_is_1280x800(r: &Response) {
    let Response::DisplayInfo(modes) = r else {
        unreachable!()
    };
    assert_eq!(
        (modes[0].r, modes[0].enabled.get()),
        (Rect::new(0, 0, 1280, 800), 1),
        "scanout 0"
    );
    assert_eq!(modes[1].enabled.get(), 0, "one scanout only");
}

fn edid_header(r: &Response) {
    let Response::Edid(bytes) = r else {
        unreachable!()
    };
    assert!(bytes.len() >= 128, "a base block at least");
    assert_eq!(
        bytes[..8],
        [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0],
        "EDID header"
    );
}

fn drm_capset_info(r: &Response) {
    assert_eq!(
        *r,
        Response::CapsetInfo {
            capset_id: VIRTIO_GPU_CAPSET_DRM,
            max_version: 0,
            max_size: size_of::<native::CapsetDrmI915>() as u32,
        }
    );
}

fn drm_capset(r: &Response) {
    let Response::Capset(data) = r else {
        unreachable!()
    };
    assert_eq!(data.len(), size_of::<native::CapsetDrmI915>());
}

fn uuid_v4(r: &Response) {
    let Response::ResourceUuid(u) = r else {
        unreachable!()
    };
    assert_eq!((u[6] >> 4, u[8] >> 6), (4, 0b10), "RFC 4122 version 4");
}

fn map_info(r: &Response) {
    let Response::MapInfo(info) = r else {
        unreachable!()
    };
    assert!(
        [
            VIRTIO_GPU_MAP_CACHE_CACHED,
            VIRTIO_GPU_MAP_CACHE_UNCACHED,
            VIRTIO_GPU_MAP_CACHE_WC
        ]
        .contains(info),
        "a caching the guest can use: {info}"
    );
}

/// Every command type, its success and its main errors, on one device
/// whose state the rows build up.
#[test]
fn every_command_succeeds_and_fails_as_the_spec_says() {
    use ErrorCode::*;
    let mut rig = rig(Rig::small_config());
    let full = Rect::new(0, 0, 64, 64);
    let entries = [MemEntry::new(MIB, (64 * 64 * 4) as u32)];
    let gem = [native::gem_create_ext(PAGE, 1, 0, &[])];
    let gem2 = [native::gem_create_ext(2 * PAGE, 2, 0, &[])];
    let getparam = [native::getparam(37)];
    let fenced_unref = {
        let mut h = hdr(CommandType::ResourceUnref);
        h.flags = VIRTIO_GPU_FLAG_FENCE.into();
        h.fence_id = 77.into();
        h.ctx_id = 3.into();
        Command::ResourceUnref(ResourceUnref {
            hdr: h,
            resource_id: 999.into(),
            padding: 0.into(),
        })
        .to_bytes()
    };
    let fenced_unref_answer = {
        let mut h = CtrlHdr::with_type(ResponseType::ErrInvalidResourceId.value());
        h.flags = VIRTIO_GPU_FLAG_FENCE.into();
        h.fence_id = 77.into();
        h.ctx_id = 3.into();
        h.as_bytes().to_vec()
    };
    let rows = vec![
        // Queries.
        row(
            "GET_DISPLAY_INFO",
            display_info(),
            Want::Is(ResponseType::OkDisplayInfo, display_is_1280x800),
        ),
        row(
            "GET_EDID of scanout 0",
            edid(0),
            Want::Is(ResponseType::OkEdid, edid_header),
        ),
        row(
            "GET_EDID of a scanout that does not exist",
            edid(1),
            Want::Err(InvalidParameter),
        ),
        row(
            "GET_CAPSET_INFO 0: the DRM capset",
            capset_info(0),
            Want::Is(ResponseType::OkCapsetInfo, drm_capset_info),
        ),
        row(
            "GET_CAPSET_INFO past the last",
            capset_info(1),
            Want::Err(InvalidParameter),
        ),
        row(
            "GET_CAPSET DRM v0",
            capset(VIRTIO_GPU_CAPSET_DRM, 0),
            Want::Is(ResponseType::OkCapset, drm_capset),
        ),
        row(
            "GET_CAPSET DRM v1",
            capset(VIRTIO_GPU_CAPSET_DRM, 1),
            Want::Err(InvalidParameter),
        ),
        row(
            "GET_CAPSET VIRGL",
            capset(VIRTIO_GPU_CAPSET_VIRGL, 0),
            Want::Err(InvalidParameter),
        ),
        // Malformed requests: the decoder's answers.
        row(
            "an unknown command type",
            hdr_bytes(0x0999),
            Want::Err(Unspec),
        ),
        row(
            "a truncated CREATE_2D",
            image(1, 64, 64)[..30].to_vec(),
            Want::Err(Unspec),
        ),
        row(
            "an error echoes the fence and context",
            fenced_unref,
            Want::Bytes(fenced_unref_answer),
        ),
        // 2D resources.
        row("CREATE_2D 1", image(1, 64, 64), Want::Ok),
        row(
            "CREATE_2D 1 again",
            image(1, 64, 64),
            Want::Err(InvalidResourceId),
        ),
        row(
            "CREATE_2D 0",
            image(0, 64, 64),
            Want::Err(InvalidResourceId),
        ),
        row(
            "CREATE_2D in format 999",
            create_2d(2, 999, 64, 64),
            Want::Err(InvalidParameter),
        ),
        row("CREATE_2D 0x0", image(2, 0, 0), Want::Err(InvalidParameter)),
        // Buffers are charged when first populated.
        row("CREATE_2D 2 of 128 MiB", image(2, 8192, 4096), Want::Ok),
        row("ATTACH_BACKING to 2", attach(2, &[page(64)]), Want::Ok),
        row(
            "TRANSFER_TO_HOST_2D into 2, past the VM's 64 MiB quota",
            transfer_2d(2, Rect::new(0, 0, 1, 1), 0),
            Want::Err(OutOfMemory),
        ),
        row("RESOURCE_UNREF 2", unref(2), Want::Ok),
        row(
            "CREATE_2D larger than any buffer",
            image(2, u32::MAX, u32::MAX),
            Want::Err(OutOfMemory),
        ),
        row("ATTACH_BACKING to 1", attach(1, &entries), Want::Ok),
        row(
            "ATTACH_BACKING to 1 again",
            attach(1, &entries),
            Want::Err(Unspec),
        ),
        row(
            "ATTACH_BACKING to 99",
            attach(99, &entries),
            Want::Err(InvalidResourceId),
        ),
        row("CREATE_2D 3", image(3, 64, 64), Want::Ok),
        row(
            "ATTACH_BACKING outside guest memory",
            attach(3, &[MemEntry::new(64 * MIB, PAGE as u32)]),
            Want::Err(InvalidParameter),
        ),
        row("TRANSFER_TO_HOST_2D", transfer_2d(1, full, 0), Want::Ok),
        row(
            "TRANSFER_TO_HOST_2D outside the image",
            transfer_2d(1, Rect::new(60, 0, 10, 1), 0),
            Want::Err(InvalidParameter),
        ),
        row(
            "TRANSFER_TO_HOST_2D past the backing",
            transfer_2d(1, full, PAGE),
            Want::Err(InvalidParameter),
        ),
        row(
            "TRANSFER_TO_HOST_2D of 99",
            transfer_2d(99, full, 0),
            Want::Err(InvalidResourceId),
        ),
        row(
            "TRANSFER_TO_HOST_2D without backing",
            transfer_2d(3, full, 0),
            Want::Err(InvalidParameter),
        ),
        row("SET_SCANOUT 0 to 1", set_scanout(0, 1, full), Want::Ok),
        row(
            "SET_SCANOUT 7",
            set_scanout(7, 1, full),
            Want::Err(InvalidScanoutId),
        ),
        row(
            "SET_SCANOUT to 99",
            set_scanout(0, 99, full),
            Want::Err(InvalidResourceId),
        ),
        row(
            "SET_SCANOUT larger than the image",
            set_scanout(0, 1, Rect::new(0, 0, 128, 128)),
            Want::Err(InvalidParameter),
        ),
        row("RESOURCE_FLUSH of the shown 1", flush(1, full), Want::Ok),
        row(
            "RESOURCE_FLUSH of 99",
            flush(99, full),
            Want::Err(InvalidResourceId),
        ),
        row(
            "RESOURCE_FLUSH outside the image",
            flush(1, Rect::new(0, 0, 65, 1)),
            Want::Err(InvalidParameter),
        ),
        row(
            "SET_SCANOUT 0 off",
            set_scanout(0, 0, Rect::new(0, 0, 0, 0)),
            Want::Ok,
        ),
        row("DETACH_BACKING of 1", detach(1), Want::Ok),
        row("DETACH_BACKING of 1 again", detach(1), Want::Err(Unspec)),
        row(
            "DETACH_BACKING of 99",
            detach(99),
            Want::Err(InvalidResourceId),
        ),
        row(
            "RESOURCE_ASSIGN_UUID",
            uuid(1),
            Want::Is(ResponseType::OkResourceUuid, uuid_v4),
        ),
        row(
            "RESOURCE_ASSIGN_UUID of 99",
            uuid(99),
            Want::Err(InvalidResourceId),
        ),
        row("RESOURCE_UNREF 3", unref(3), Want::Ok),
        row(
            "RESOURCE_UNREF 3 again",
            unref(3),
            Want::Err(InvalidResourceId),
        ),
        // The cursor (its commands go through `process` like the rest).
        row("CREATE_2D 4, a 64x64 cursor", image(4, 64, 64), Want::Ok),
        row("CREATE_2D 5, 32x32", image(5, 32, 32), Want::Ok),
        row("UPDATE_CURSOR to 4", cursor(true, 0, 4), Want::Ok),
        row(
            "UPDATE_CURSOR on scanout 9",
            cursor(true, 9, 4),
            Want::Err(InvalidScanoutId),
        ),
        row(
            "UPDATE_CURSOR to 99",
            cursor(true, 0, 99),
            Want::Err(InvalidResourceId),
        ),
        row(
            "UPDATE_CURSOR to a 32x32 image",
            cursor(true, 0, 5),
            Want::Err(InvalidParameter),
        ),
        row(
            "UPDATE_CURSOR hides it (resource 0)",
            cursor(true, 0, 0),
            Want::Ok,
        ),
        row("MOVE_CURSOR", cursor(false, 0, 0), Want::Ok),
        row(
            "MOVE_CURSOR on scanout 9",
            cursor(false, 9, 0),
            Want::Err(InvalidScanoutId),
        ),
        // Contexts.
        row(
            "CTX_CREATE 1 (DRM)",
            ctx_create(1, VIRTIO_GPU_CAPSET_DRM),
            Want::Ok,
        ),
        row(
            "CTX_CREATE 1 again",
            ctx_create(1, 0),
            Want::Err(InvalidContextId),
        ),
        row(
            "CTX_CREATE 0",
            ctx_create(0, 0),
            Want::Err(InvalidContextId),
        ),
        row(
            "CTX_CREATE of a capset not offered",
            ctx_create(2, 77),
            Want::Err(InvalidParameter),
        ),
        row("CTX_CREATE 2 (no capset)", ctx_create(2, 0), Want::Ok),
        row(
            "CTX_ATTACH_RESOURCE 1 to context 1",
            ctx_resource(true, 1, 1),
            Want::Ok,
        ),
        row(
            "CTX_ATTACH_RESOURCE to context 9",
            ctx_resource(true, 9, 1),
            Want::Err(InvalidContextId),
        ),
        row(
            "CTX_ATTACH_RESOURCE of 99",
            ctx_resource(true, 1, 99),
            Want::Err(InvalidResourceId),
        ),
        row(
            "CTX_DETACH_RESOURCE 1 from context 1",
            ctx_resource(false, 1, 1),
            Want::Ok,
        ),
        row(
            "CTX_DETACH_RESOURCE from context 9",
            ctx_resource(false, 9, 1),
            Want::Err(InvalidContextId),
        ),
        row(
            "CTX_DETACH_RESOURCE of 99",
            ctx_resource(false, 1, 99),
            Want::Err(InvalidResourceId),
        ),
        // 3D resources and transfers.
        row(
            "CREATE_3D 6, a buffer",
            create_3d(1, 6, PIPE_BUFFER, 4096, 1, 1),
            Want::Ok,
        ),
        row(
            "CREATE_3D 6 again",
            create_3d(1, 6, PIPE_BUFFER, 4096, 1, 1),
            Want::Err(InvalidResourceId),
        ),
        row(
            "CREATE_3D 7, a 2D texture",
            create_3d(1, 7, PIPE_TEXTURE_2D, 16, 16, 1),
            Want::Ok,
        ),
        row(
            "CREATE_3D of target 99",
            create_3d(1, 8, 99, 16, 16, 1),
            Want::Err(InvalidParameter),
        ),
        row(
            "CREATE_3D of depth 2",
            create_3d(1, 8, PIPE_TEXTURE_2D, 16, 16, 2),
            Want::Err(InvalidParameter),
        ),
        row("ATTACH_BACKING to 6", attach(6, &[page(16)]), Want::Ok),
        row(
            "TRANSFER_TO_HOST_3D",
            transfer_3d(true, 1, 6, 0, 4096),
            Want::Ok,
        ),
        row(
            "TRANSFER_FROM_HOST_3D",
            transfer_3d(false, 1, 6, 0, 4096),
            Want::Ok,
        ),
        row(
            "TRANSFER_TO_HOST_3D past the buffer",
            transfer_3d(true, 1, 6, 4000, 200),
            Want::Err(InvalidParameter),
        ),
        row(
            "TRANSFER_TO_HOST_3D of 99",
            transfer_3d(true, 1, 99, 0, 1),
            Want::Err(InvalidResourceId),
        ),
        row(
            "TRANSFER_FROM_HOST_3D without backing",
            transfer_3d(false, 1, 7, 0, 1),
            Want::Err(InvalidParameter),
        ),
        // Native context: its response blob, requests, GEM objects as blobs.
        row(
            "CREATE_BLOB 10: context 1's response blob",
            create_blob(1, 10, HOST3D, 0, native::MESA_SHMEM_SIZE, &[]),
            Want::Ok,
        ),
        row("SUBMIT_3D of nothing", submit(1, &[]), Want::Ok),
        row("SUBMIT_3D GETPARAM", native(1, &getparam), Want::Ok),
        row(
            "SUBMIT_3D on context 9",
            submit(9, &[]),
            Want::Err(InvalidContextId),
        ),
        row(
            "SUBMIT_3D on a context without a stream",
            submit(2, &[]),
            Want::Err(InvalidParameter),
        ),
        row(
            "SUBMIT_3D of garbage",
            submit(1, &[0xff; 16]),
            Want::Err(InvalidParameter),
        ),
        row(
            "SUBMIT_3D GEM_CREATE_EXT (blob 1)",
            native(1, &gem),
            Want::Ok,
        ),
        row(
            "SUBMIT_3D GEM_CREATE_EXT (blob 2)",
            native(1, &gem2),
            Want::Ok,
        ),
        row(
            "CREATE_BLOB 11 of GEM blob 1",
            create_blob(1, 11, HOST3D, 1, PAGE, &[]),
            Want::Ok,
        ),
        row(
            "CREATE_BLOB of a GEM blob that does not exist",
            create_blob(1, 12, HOST3D, 5, PAGE, &[]),
            Want::Err(InvalidParameter),
        ),
        row(
            "CREATE_BLOB of GEM blob 2 with the wrong size",
            create_blob(1, 12, HOST3D, 2, PAGE, &[]),
            Want::Err(InvalidParameter),
        ),
        row(
            "CREATE_BLOB on context 9",
            create_blob(9, 12, HOST3D, 2, 2 * PAGE, &[]),
            Want::Err(InvalidContextId),
        ),
        row(
            "CREATE_BLOB 12, guest pages",
            create_blob(0, 12, GUEST, 0, PAGE, &[page(20)]),
            Want::Ok,
        ),
        row(
            "CREATE_BLOB of guest pages and another size",
            create_blob(0, 13, GUEST, 0, 2 * PAGE, &[page(21)]),
            Want::Err(InvalidParameter),
        ),
        row(
            "CREATE_BLOB of size 0",
            create_blob(0, 13, GUEST, 0, 0, &[]),
            Want::Err(InvalidParameter),
        ),
        row(
            "CREATE_BLOB of blob_mem 9",
            create_blob(0, 13, 9, 0, PAGE, &[]),
            Want::Err(InvalidParameter),
        ),
        row(
            "CREATE_BLOB 12 again",
            create_blob(0, 12, GUEST, 0, PAGE, &[page(22)]),
            Want::Err(InvalidResourceId),
        ),
        // Host-visible mappings.
        row(
            "MAP_BLOB 11",
            map(11, 0),
            Want::Is(ResponseType::OkMapInfo, map_info),
        ),
        row(
            "MAP_BLOB 11 again",
            map(11, 8 * PAGE),
            Want::Err(InvalidParameter),
        ),
        row(
            "MAP_BLOB of guest pages (12)",
            map(12, 8 * PAGE),
            Want::Err(InvalidParameter),
        ),
        row(
            "MAP_BLOB of an image",
            map(1, 8 * PAGE),
            Want::Err(InvalidParameter),
        ),
        row(
            "MAP_BLOB of 99",
            map(99, 8 * PAGE),
            Want::Err(InvalidResourceId),
        ),
        row(
            "CREATE_BLOB 13 of GEM blob 2",
            create_blob(1, 13, HOST3D, 2, 2 * PAGE, &[]),
            Want::Ok,
        ),
        row(
            "MAP_BLOB over 11's range",
            map(13, 0),
            Want::Err(InvalidParameter),
        ),
        row(
            "MAP_BLOB past the region",
            map(13, HOSTMEM - PAGE),
            Want::Err(InvalidParameter),
        ),
        row("UNMAP_BLOB 11", unmap(11), Want::Ok),
        row(
            "UNMAP_BLOB 11 again",
            unmap(11),
            Want::Err(InvalidParameter),
        ),
        row(
            "UNMAP_BLOB of an image",
            unmap(1),
            Want::Err(InvalidParameter),
        ),
        row("UNMAP_BLOB of 99", unmap(99), Want::Err(InvalidResourceId)),
        // Blob scanouts.
        row(
            "SET_SCANOUT_BLOB 0 to 11",
            scanout_blob(0, 11, 32, 32, 128),
            Want::Ok,
        ),
        row(
            "SET_SCANOUT_BLOB 9",
            scanout_blob(9, 11, 32, 32, 128),
            Want::Err(InvalidScanoutId),
        ),
        row(
            "SET_SCANOUT_BLOB to 99",
            scanout_blob(0, 99, 32, 32, 128),
            Want::Err(InvalidResourceId),
        ),
        row(
            "SET_SCANOUT_BLOB to an image",
            scanout_blob(0, 1, 32, 32, 128),
            Want::Err(InvalidParameter),
        ),
        row(
            "SET_SCANOUT_BLOB larger than the blob",
            scanout_blob(0, 11, 64, 64, 256),
            Want::Err(InvalidParameter),
        ),
        row(
            "SET_SCANOUT_BLOB 0 off",
            scanout_blob(0, 0, 32, 32, 128),
            Want::Ok,
        ),
        // Teardown of what is left.
        row("CTX_DESTROY 2", ctx_destroy(2), Want::Ok),
        row(
            "CTX_DESTROY 2 again",
            ctx_destroy(2),
            Want::Err(InvalidContextId),
        ),
        row("CTX_DESTROY 1", ctx_destroy(1), Want::Ok),
        row(
            "SUBMIT_3D on the destroyed context",
            submit(1, &[]),
            Want::Err(InvalidContextId),
        ),
        row(
            "RESOURCE_UNREF 11 (a blob outlives its context)",
            unref(11),
            Want::Ok,
        ),
    ];
    run(&mut rig, rows);
    rig.finish();
}

fn hdr_bytes(ty: u32) -> Vec<u8> {
    CtrlHdr::with_type(ty).as_bytes().to_vec()
}

/// Each per-VM cap answers ERR_OUT_OF_MEMORY at the limit, and frees up
/// when something goes.
#[test]
fn per_vm_caps_answer_out_of_memory() {
    use ErrorCode::*;
    let cfg = DeviceConfig {
        limits: Limits {
            max_resources: 8,
            max_contexts: 2,
            max_backing_entries: 4,
            max_hostmem_mapped: 2 * PAGE,
            max_context_objects: 3,
        },
        ..Rig::small_config()
    };
    let mut rig = rig(cfg);
    let gem = |blob| [native::gem_create_ext(2 * PAGE, blob, 0, &[])];
    let mut rows = vec![
        // Contexts: two, then none.
        row(
            "CTX_CREATE 1",
            ctx_create(1, VIRTIO_GPU_CAPSET_DRM),
            Want::Ok,
        ),
        row("CTX_CREATE 2", ctx_create(2, 0), Want::Ok),
        row(
            "CTX_CREATE past the cap",
            ctx_create(3, 0),
            Want::Err(OutOfMemory),
        ),
        row("CTX_DESTROY 2", ctx_destroy(2), Want::Ok),
        row("CTX_CREATE 3 in its place", ctx_create(3, 0), Want::Ok),
        // Resources: eight (the response blob is one), then none.
        row(
            "CREATE_BLOB 1, the response blob",
            create_blob(1, 1, HOST3D, 0, native::MESA_SHMEM_SIZE, &[]),
            Want::Ok,
        ),
    ];
    rows.extend((2..=8).map(|id| row(format!("CREATE_2D {id}"), image(id, 16, 16), Want::Ok)));
    rows.extend(vec![
        row(
            "CREATE_2D past the cap",
            image(9, 16, 16),
            Want::Err(OutOfMemory),
        ),
        row(
            "CREATE_3D past the cap",
            create_3d(1, 9, PIPE_BUFFER, 64, 1, 1),
            Want::Err(OutOfMemory),
        ),
        row("RESOURCE_UNREF 8", unref(8), Want::Ok),
        row("CREATE_2D 9 in its place", image(9, 16, 16), Want::Ok),
        // Backing entries: four across the VM.
        row(
            "ATTACH_BACKING of 3 entries",
            attach(2, &[page(0), page(1), page(2)]),
            Want::Ok,
        ),
        row(
            "ATTACH_BACKING of 2 more",
            attach(3, &[page(3), page(4)]),
            Want::Err(OutOfMemory),
        ),
        row(
            "CREATE_BLOB of guest pages past the cap",
            create_blob(0, 10, GUEST, 0, 2 * PAGE, &[page(5), page(6)]),
            Want::Err(OutOfMemory),
        ),
        row("ATTACH_BACKING of 1 more", attach(3, &[page(3)]), Want::Ok),
        row("DETACH_BACKING of the 3", detach(2), Want::Ok),
        row(
            "ATTACH_BACKING of 2 now",
            attach(4, &[page(5), page(6)]),
            Want::Ok,
        ),
        // Mapped host-visible bytes: two pages.
        row("RESOURCE_UNREF 7", unref(7), Want::Ok),
        row("RESOURCE_UNREF 6", unref(6), Want::Ok),
        row("GEM_CREATE_EXT blob 1", native(1, &gem(1)), Want::Ok),
        row("GEM_CREATE_EXT blob 2", native(1, &gem(2)), Want::Ok),
        row(
            "CREATE_BLOB 6 of blob 1",
            create_blob(1, 6, HOST3D, 1, 2 * PAGE, &[]),
            Want::Ok,
        ),
        row(
            "CREATE_BLOB 7 of blob 2",
            create_blob(1, 7, HOST3D, 2, 2 * PAGE, &[]),
            Want::Ok,
        ),
        row(
            "MAP_BLOB 6: two pages",
            map(6, 0),
            Want::Is(ResponseType::OkMapInfo, no_check),
        ),
        row(
            "MAP_BLOB 7 past the cap",
            map(7, 4 * PAGE),
            Want::Err(OutOfMemory),
        ),
        row("UNMAP_BLOB 6", unmap(6), Want::Ok),
        row(
            "MAP_BLOB 7 now",
            map(7, 4 * PAGE),
            Want::Is(ResponseType::OkMapInfo, no_check),
        ),
        // The VM's quota (64 MiB): a buffer that does not fit it.
        row("RESOURCE_UNREF 5", unref(5), Want::Ok),
        row(
            "CREATE_2D 5 of 64 MiB + 16 KiB",
            image(5, 4096, 4097),
            Want::Ok,
        ),
        row("ATTACH_BACKING to 5", attach(5, &[page(7)]), Want::Ok),
        row(
            "TRANSFER_TO_HOST_2D into 5: populating it passes the quota",
            transfer_2d(5, Rect::new(0, 0, 1, 1), 0),
            Want::Err(OutOfMemory),
        ),
        row("RESOURCE_UNREF 5 again", unref(5), Want::Ok),
        row("CREATE_2D 5 of 16 MiB", image(5, 2048, 2048), Want::Ok),
        row("ATTACH_BACKING to 5 again", attach(5, &[page(7)]), Want::Ok),
        row(
            "TRANSFER_TO_HOST_2D into 5: within the quota",
            transfer_2d(5, Rect::new(0, 0, 1, 1), 0),
            Want::Ok,
        ),
    ]);
    run(&mut rig, rows);
    rig.finish();
}

/// A UUID, once assigned, is the resource's for good.
#[test]
fn a_resource_keeps_its_uuid() {
    let mut rig = rig(Rig::small_config());
    assert_eq!(rig.request(&image(1, 16, 16)), Response::OkNoData);
    let first = rig.request(&uuid(1));
    assert!(matches!(first, Response::ResourceUuid(_)));
    assert_eq!(rig.request(&uuid(1)), first);
    assert_eq!(rig.request(&image(2, 16, 16)), Response::OkNoData);
    assert_ne!(
        rig.request(&uuid(2)),
        first,
        "another resource, another UUID"
    );
    rig.finish();
}
