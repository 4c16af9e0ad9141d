//! Every virtio-gpu command end to end through the real socket: its
//! success path and its error paths.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::time::Duration;

use vgpu_device::config::DeviceConfig;
use vgpu_proto::native::{CapsetDrmI915, VIRTGPU_DRM_CONTEXT_I915};
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::display::DisplayMsg;
use vgpu_tests::vmm::{Vmm, VmmOptions, CURSOR};
use zerocopy::FromBytes;

fn setup() -> (RunningBackend, Vmm) {
    setup_with(DeviceConfig::default(), VmmOptions::default())
}

fn setup_with(cfg: DeviceConfig, opts: VmmOptions) -> (RunningBackend, Vmm) {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = RunningBackend::in_process(cfg, 1).unwrap();
    let vmm = Vmm::connect(backend.socket(), opts).unwrap();
    (backend, vmm)
}

#[track_caller]
fn expect(vmm: &mut Vmm, cmd: &Command<'_>, want: ErrorCode) {
    let (_, r) = vmm.command(cmd).unwrap();
    assert_eq!(r, Response::Error(want), "{:?}", cmd.command_type());
}

#[track_caller]
fn expect_ok(vmm: &mut Vmm, cmd: &Command<'_>) {
    let (_, r) = vmm.command(cmd).unwrap();
    assert_eq!(r, Response::OkNoData, "{:?}", cmd.command_type());
}

/// A 2D resource with `w*h*4` bytes of backing filled with `fill`.
fn image(vmm: &mut Vmm, id: u32, w: u32, h: u32, fill: u8) -> MemEntry {
    expect_ok(vmm, &create_2d(id, Format::B8G8R8A8Unorm, w, h));
    let e = guest_pages(vmm, u64::from(w * h * 4), fill).unwrap();
    expect_ok(vmm, &attach_backing(id, &[e]));
    e
}

#[test]
fn display_info_and_edid() {
    let (_b, mut vmm) = setup();
    let (_, r) = vmm
        .command(&Command::GetDisplayInfo(hdr(CommandType::GetDisplayInfo)))
        .unwrap();
    assert!(
        matches!(r, Response::DisplayInfo(ref m) if m[0].enabled.get() == 1 && m[1].enabled.get() == 0)
    );
    let edid = |scanout: u32| {
        Command::GetEdid(GetEdid {
            hdr: hdr(CommandType::GetEdid),
            scanout: scanout.into(),
            padding: 0.into(),
        })
    };
    let (_, r) = vmm.command(&edid(0)).unwrap();
    let Response::Edid(bytes) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bytes.len(), 128);
    assert_eq!(&bytes[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    expect(&mut vmm, &edid(1), ErrorCode::InvalidParameter);
}

#[test]
fn capsets_describe_the_i915_native_context() {
    let (_b, mut vmm) = setup();
    let info = |i: u32| {
        Command::GetCapsetInfo(GetCapsetInfo {
            hdr: hdr(CommandType::GetCapsetInfo),
            capset_index: i.into(),
            padding: 0.into(),
        })
    };
    let (_, r) = vmm.command(&info(0)).unwrap();
    assert_eq!(
        r,
        Response::CapsetInfo {
            capset_id: VIRTIO_GPU_CAPSET_DRM,
            max_version: 0,
            // sizeof(struct virgl_renderer_capset_drm): 24-byte head + the
            // 136-byte union (drm_hw.h).
            max_size: 160
        }
    );
    expect(&mut vmm, &info(1), ErrorCode::InvalidParameter);
    expect(&mut vmm, &info(u32::MAX), ErrorCode::InvalidParameter);
    let get = |id: u32, v: u32| {
        Command::GetCapset(GetCapset {
            hdr: hdr(CommandType::GetCapset),
            capset_id: id.into(),
            capset_version: v.into(),
        })
    };
    let (_, r) = vmm.command(&get(VIRTIO_GPU_CAPSET_DRM, 0)).unwrap();
    let Response::Capset(bytes) = r else {
        panic!("{r:?}")
    };
    assert_eq!(bytes.len(), 160);
    let caps = CapsetDrmI915::read_from_bytes(&bytes).unwrap();
    assert_eq!(caps.header.context_type.get(), VIRTGPU_DRM_CONTEXT_I915);
    // u.intel is {u8 bus, dev, func, revision; u16 domain, device_id}: Mesa
    // reads the device id at byte 30; the emulated device has none (0).
    assert_eq!(u16::from_le_bytes([bytes[30], bytes[31]]), 0);
    assert!(
        bytes[32..].iter().all(|b| *b == 0),
        "the rest of the union is zero"
    );
    assert_eq!(caps.header.wire_format_version.get(), 1);
    expect(
        &mut vmm,
        &get(VIRTIO_GPU_CAPSET_VIRGL, 0),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &get(VIRTIO_GPU_CAPSET_DRM, 1),
        ErrorCode::InvalidParameter,
    );
    // A capset response never exceeds the buffer the guest offered.
    let out = vmm
        .raw(get(VIRTIO_GPU_CAPSET_DRM, 0).to_bytes(), 40)
        .unwrap();
    assert_eq!(out.len(), 24);
    assert_eq!(
        u32::from_le_bytes(out[0..4].try_into().unwrap()),
        ErrorCode::Unspec.value()
    );
}

#[test]
fn create_2d_and_unref() {
    let (b, mut vmm) = setup();
    expect_ok(&mut vmm, &create_2d(1, Format::R8G8B8A8Unorm, 16, 16));
    expect(
        &mut vmm,
        &create_2d(1, Format::R8G8B8A8Unorm, 16, 16),
        ErrorCode::InvalidResourceId,
    );
    expect(
        &mut vmm,
        &create_2d(0, Format::R8G8B8A8Unorm, 16, 16),
        ErrorCode::InvalidResourceId,
    );
    expect(
        &mut vmm,
        &create_2d(2, Format::R8G8B8A8Unorm, 0, 16),
        ErrorCode::InvalidParameter,
    );
    let bad_format = Command::ResourceCreate2d(ResourceCreate2d {
        hdr: hdr(CommandType::ResourceCreate2d),
        resource_id: 3.into(),
        format: 5.into(),
        width: 1.into(),
        height: 1.into(),
    });
    expect(&mut vmm, &bad_format, ErrorCode::InvalidParameter);
    // u32::MAX² * 4 bytes: refused as out of memory, nothing allocated.
    expect(
        &mut vmm,
        &create_2d(4, Format::R8G8B8A8Unorm, u32::MAX, u32::MAX),
        ErrorCode::OutOfMemory,
    );
    expect_ok(&mut vmm, &unref(1));
    expect(&mut vmm, &unref(1), ErrorCode::InvalidResourceId);
    expect(&mut vmm, &unref(0), ErrorCode::InvalidResourceId);
    let bm = b.buffer_manager().unwrap();
    assert_eq!(bm.object_count(), 0);
}

#[test]
fn attach_and_detach_backing() {
    let (_b, mut vmm) = setup();
    expect_ok(&mut vmm, &create_2d(1, Format::B8G8R8X8Unorm, 8, 8));
    let e = guest_pages(&mut vmm, 256, 1).unwrap();
    expect(
        &mut vmm,
        &attach_backing(9, &[e]),
        ErrorCode::InvalidResourceId,
    );
    // Entries outside guest memory, or overflowing.
    let ram = vmm.ram.size();
    for bad in [
        MemEntry::new(ram, 4096),
        MemEntry::new(ram - 100, 4096),
        MemEntry::new(u64::MAX - 10, 100),
    ] {
        expect(
            &mut vmm,
            &attach_backing(1, &[e, bad]),
            ErrorCode::InvalidParameter,
        );
    }
    expect_ok(&mut vmm, &attach_backing(1, &[e]));
    expect(&mut vmm, &attach_backing(1, &[e]), ErrorCode::Unspec);
    expect_ok(&mut vmm, &detach_backing(1));
    expect(&mut vmm, &detach_backing(1), ErrorCode::Unspec);
    expect(&mut vmm, &detach_backing(2), ErrorCode::InvalidResourceId);
    // A huge nr_entries is refused by the decoder before anything else.
    let mut raw = attach_backing(1, &[e]).to_bytes();
    raw[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    let out = vmm.raw(raw, 24).unwrap();
    assert_eq!(
        u32::from_le_bytes(out[0..4].try_into().unwrap()),
        ErrorCode::InvalidParameter.value()
    );
}

#[test]
fn transfer_to_host_2d_checks_every_bound() {
    let (_b, mut vmm) = setup();
    image(&mut vmm, 1, 16, 16, 7);
    expect_ok(&mut vmm, &transfer_2d(1, Rect::new(0, 0, 16, 16), 0));
    expect_ok(
        &mut vmm,
        &transfer_2d(1, Rect::new(4, 4, 4, 4), 4 * 64 + 16),
    );
    expect(
        &mut vmm,
        &transfer_2d(2, Rect::new(0, 0, 1, 1), 0),
        ErrorCode::InvalidResourceId,
    );
    for (r, off) in [
        (Rect::new(0, 0, 17, 16), 0),
        (Rect::new(15, 0, 2, 1), 0),
        (Rect::new(u32::MAX, 0, 2, 1), 0),
        (Rect::new(0, u32::MAX, 1, 2), 0),
        (Rect::new(0, 0, 16, 16), 4),
        (Rect::new(0, 0, 1, 1), u64::MAX - 2),
        (Rect::new(0, 15, 16, 1), 16 * 64),
    ] {
        expect(
            &mut vmm,
            &transfer_2d(1, r, off),
            ErrorCode::InvalidParameter,
        );
    }
    // No backing.
    expect_ok(&mut vmm, &create_2d(2, Format::B8G8R8X8Unorm, 4, 4));
    expect(
        &mut vmm,
        &transfer_2d(2, Rect::new(0, 0, 4, 4), 0),
        ErrorCode::InvalidParameter,
    );
}

#[test]
fn scanout_flush_and_cursor_reach_the_display() {
    let (_b, mut vmm) = setup();
    image(&mut vmm, 1, 32, 32, 0x11);
    expect_ok(&mut vmm, &transfer_2d(1, Rect::new(0, 0, 32, 32), 0));
    expect(
        &mut vmm,
        &set_scanout(1, 1, Rect::new(0, 0, 32, 32)),
        ErrorCode::InvalidScanoutId,
    );
    expect(
        &mut vmm,
        &set_scanout(0, 7, Rect::new(0, 0, 32, 32)),
        ErrorCode::InvalidResourceId,
    );
    expect(
        &mut vmm,
        &set_scanout(0, 1, Rect::new(1, 0, 32, 32)),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &set_scanout(0, 1, Rect::new(0, 0, 0, 32)),
        ErrorCode::InvalidParameter,
    );
    expect_ok(&mut vmm, &set_scanout(0, 1, Rect::new(8, 8, 16, 16)));
    expect_ok(&mut vmm, &flush(1, Rect::new(0, 0, 12, 12)));
    expect(
        &mut vmm,
        &flush(1, Rect::new(0, 0, 33, 1)),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &flush(5, Rect::new(0, 0, 1, 1)),
        ErrorCode::InvalidResourceId,
    );
    let d = vmm.display.as_ref().unwrap();
    assert!(d
        .wait_for(Duration::from_secs(5), |m| *m
            == DisplayMsg::Scanout {
                scanout: 0,
                width: 16,
                height: 16
            })
        .is_some());
    let DisplayMsg::Update {
        x,
        y,
        width,
        height,
        data,
        ..
    } = d
        .wait_for(Duration::from_secs(5), |m| {
            matches!(m, DisplayMsg::Update { .. })
        })
        .unwrap()
    else {
        unreachable!()
    };
    // Flush (0,0)-(12,12) ∩ scanout (8,8)-(24,24) = (8,8) 4x4, at (0,0) of the scanout.
    assert_eq!((x, y, width, height), (0, 0, 4, 4));
    assert!(
        data.chunks(4).all(|p| p == [0x11, 0x11, 0x11, 0xff]),
        "BGRX with X set"
    );

    // Cursor: a 64x64 image, then moves, then hidden.
    image(&mut vmm, 2, 64, 64, 0x22);
    expect_ok(&mut vmm, &transfer_2d(2, Rect::new(0, 0, 64, 64), 0));
    let cursor_cmd = |ty: CommandType, res: u32, x: u32| {
        let c = cursor(hdr(ty), x, 5, res, (1, 2));
        if ty == CommandType::UpdateCursor {
            Command::UpdateCursor(c)
        } else {
            Command::MoveCursor(c)
        }
    };
    let (_, r) = vmm
        .command_on(CURSOR, &cursor_cmd(CommandType::UpdateCursor, 2, 10))
        .unwrap();
    assert_eq!(r, Response::OkNoData);
    vmm.command_on(CURSOR, &cursor_cmd(CommandType::MoveCursor, 0, 20))
        .unwrap();
    vmm.command_on(CURSOR, &cursor_cmd(CommandType::UpdateCursor, 0, 30))
        .unwrap();
    let (_, r) = vmm
        .command_on(CURSOR, &cursor_cmd(CommandType::UpdateCursor, 1, 0))
        .unwrap();
    assert_eq!(
        r,
        Response::Error(ErrorCode::InvalidParameter),
        "32x32 is no cursor"
    );
    // Cursor commands belong on the cursor queue.
    expect(
        &mut vmm,
        &cursor_cmd(CommandType::MoveCursor, 0, 0),
        ErrorCode::Unspec,
    );
    let d = vmm.display.as_ref().unwrap();
    let DisplayMsg::CursorUpdate { hot, image, .. } = d
        .wait_for(Duration::from_secs(5), |m| {
            matches!(m, DisplayMsg::CursorUpdate { .. })
        })
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!((hot, image.len()), ((1, 2), 64 * 64 * 4));
    assert!(d
        .wait_for(Duration::from_secs(5), |m| *m
            == DisplayMsg::CursorPos {
                scanout: 0,
                x: 20,
                y: 5,
                visible: true
            })
        .is_some());
    assert!(d
        .wait_for(Duration::from_secs(5), |m| *m
            == DisplayMsg::CursorPos {
                scanout: 0,
                x: 30,
                y: 5,
                visible: false
            })
        .is_some());

    // Unref of a scanned-out resource turns the scanout off.
    expect_ok(&mut vmm, &unref(1));
    let d = vmm.display.as_ref().unwrap();
    assert!(d
        .wait_for(Duration::from_secs(5), |m| *m
            == DisplayMsg::Scanout {
                scanout: 0,
                width: 0,
                height: 0
            })
        .is_some());
}

// Regression (review): a scanout of any size a resource allowed, flushed
// in one piece, made the daemon allocate the whole rectangle at once.
#[test]
fn huge_scanouts_are_refused_and_large_flushes_go_out_in_bands() {
    let (_b, mut vmm) = setup();
    expect_ok(&mut vmm, &create_2d(2, Format::B8G8R8X8Unorm, 8193, 1));
    expect(
        &mut vmm,
        &set_scanout(0, 2, Rect::new(0, 0, 8193, 1)),
        ErrorCode::InvalidParameter,
    );
    // 2048x4096 is 32 MiB: two bands of 16 MiB.
    expect_ok(&mut vmm, &create_2d(3, Format::B8G8R8X8Unorm, 2048, 4096));
    expect_ok(&mut vmm, &set_scanout(0, 3, Rect::new(0, 0, 2048, 4096)));
    expect_ok(&mut vmm, &flush(3, Rect::new(0, 0, 2048, 4096)));
    let d = vmm.display.as_ref().unwrap();
    let mut bands = Vec::new();
    while bands.len() < 2 {
        let Some(DisplayMsg::Update {
            y, width, height, ..
        }) = d.wait_for(
            Duration::from_secs(10),
            |m| matches!(m, DisplayMsg::Update { y, .. } if !bands.contains(y)),
        )
        else {
            panic!("missing band after {bands:?}");
        };
        assert_eq!((width, height), (2048, 2048));
        bands.push(y);
    }
    bands.sort_unstable();
    assert_eq!(bands, vec![0, 2048]);
}

#[test]
fn resource_uuids_are_stable_and_unique() {
    let (_b, mut vmm) = setup();
    expect_ok(&mut vmm, &create_2d(1, Format::B8G8R8X8Unorm, 4, 4));
    expect_ok(&mut vmm, &create_2d(2, Format::B8G8R8X8Unorm, 4, 4));
    let uuid = |vmm: &mut Vmm, id: u32| {
        let cmd = Command::ResourceAssignUuid(ResourceAssignUuid {
            hdr: hdr(CommandType::ResourceAssignUuid),
            resource_id: id.into(),
            padding: 0.into(),
        });
        vmm.command(&cmd).unwrap().1
    };
    let a = uuid(&mut vmm, 1);
    assert_eq!(uuid(&mut vmm, 1), a);
    assert_ne!(uuid(&mut vmm, 2), a);
    assert!(matches!(a, Response::ResourceUuid(u) if u[6] >> 4 == 4));
    assert_eq!(
        uuid(&mut vmm, 3),
        Response::Error(ErrorCode::InvalidResourceId)
    );
}

#[test]
fn contexts_and_attachments() {
    let (_b, mut vmm) = setup();
    expect_ok(&mut vmm, &ctx_create(1, VIRTIO_GPU_CAPSET_DRM, "iris"));
    expect(
        &mut vmm,
        &ctx_create(1, VIRTIO_GPU_CAPSET_DRM, "again"),
        ErrorCode::InvalidContextId,
    );
    expect(
        &mut vmm,
        &ctx_create(0, VIRTIO_GPU_CAPSET_DRM, "zero"),
        ErrorCode::InvalidContextId,
    );
    for capset in [VIRTIO_GPU_CAPSET_VIRGL, VIRTIO_GPU_CAPSET_VENUS, 7, 0xff] {
        expect(
            &mut vmm,
            &ctx_create(2, capset, "unknown"),
            ErrorCode::InvalidParameter,
        );
    }
    expect_ok(&mut vmm, &ctx_create(3, 0, "plain"));
    expect_ok(&mut vmm, &create_2d(1, Format::B8G8R8X8Unorm, 4, 4));
    let attach = |ctx: u32, res: u32, ty: CommandType| {
        let c = CtxResource {
            hdr: ctx_hdr(ty, ctx),
            resource_id: res.into(),
            padding: 0.into(),
        };
        if ty == CommandType::CtxAttachResource {
            Command::CtxAttachResource(c)
        } else {
            Command::CtxDetachResource(c)
        }
    };
    expect_ok(&mut vmm, &attach(1, 1, CommandType::CtxAttachResource));
    expect(
        &mut vmm,
        &attach(9, 1, CommandType::CtxAttachResource),
        ErrorCode::InvalidContextId,
    );
    expect(
        &mut vmm,
        &attach(1, 9, CommandType::CtxAttachResource),
        ErrorCode::InvalidResourceId,
    );
    expect_ok(&mut vmm, &attach(1, 1, CommandType::CtxDetachResource));
    // A plain context runs no command stream; unknown contexts are refused.
    expect(&mut vmm, &submit_3d(3, &[]), ErrorCode::InvalidParameter);
    expect(&mut vmm, &submit_3d(9, &[]), ErrorCode::InvalidContextId);
    let destroy = |ctx: u32| {
        Command::CtxDestroy(CtxDestroy {
            hdr: ctx_hdr(CommandType::CtxDestroy, ctx),
        })
    };
    expect_ok(&mut vmm, &destroy(1));
    expect(&mut vmm, &destroy(1), ErrorCode::InvalidContextId);
}

#[test]
fn linear_3d_resources_transfer_both_ways() {
    let (_b, mut vmm) = setup();
    let create = |id: u32, target: u32, w: u32, h: u32| {
        Command::ResourceCreate3d(ResourceCreate3d {
            hdr: hdr(CommandType::ResourceCreate3d),
            resource_id: id.into(),
            target: target.into(),
            format: Format::B8G8R8A8Unorm.value().into(),
            width: w.into(),
            height: h.into(),
            depth: 1.into(),
            array_size: 1.into(),
            ..Default::default()
        })
    };
    expect_ok(&mut vmm, &create(1, 0, 4096, 1));
    expect(&mut vmm, &create(2, 9, 16, 16), ErrorCode::InvalidParameter);
    let src = guest_pages(&mut vmm, 4096, 0x5a).unwrap();
    expect_ok(&mut vmm, &attach_backing(1, &[src]));
    let transfer = |to: bool, x: u32, w: u32, offset: u64| {
        let c = TransferHost3d {
            hdr: hdr(if to {
                CommandType::TransferToHost3d
            } else {
                CommandType::TransferFromHost3d
            }),
            box_: Box3d {
                x: x.into(),
                w: w.into(),
                h: 1.into(),
                d: 1.into(),
                ..Default::default()
            },
            offset: offset.into(),
            resource_id: 1.into(),
            ..Default::default()
        };
        if to {
            Command::TransferToHost3d(c)
        } else {
            Command::TransferFromHost3d(c)
        }
    };
    expect_ok(&mut vmm, &transfer(true, 0, 4096, 0));
    poke(&vmm, src.addr.get(), &[0u8; 4096]).unwrap();
    expect_ok(&mut vmm, &transfer(false, 100, 50, 100));
    let mut back = [0u8; 4096];
    vm_memory::Bytes::read_slice(
        vmm.ram.mem(),
        &mut back,
        vm_memory::GuestAddress(src.addr.get()),
    )
    .unwrap();
    assert!(back[100..150].iter().all(|b| *b == 0x5a) && back[..100].iter().all(|b| *b == 0));
    expect(
        &mut vmm,
        &transfer(true, 4000, 200, 0),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &transfer(true, 0, 10, u64::MAX - 5),
        ErrorCode::InvalidParameter,
    );
}

#[test]
fn truncated_unknown_and_malformed_requests_get_errors() {
    let (b, mut vmm) = setup();
    let mut bytes = create_2d(1, Format::B8G8R8X8Unorm, 4, 4).to_bytes();
    bytes.truncate(30);
    assert_eq!(
        u32::from_le_bytes(vmm.raw(bytes, 24).unwrap()[0..4].try_into().unwrap()),
        ErrorCode::Unspec.value()
    );
    let unknown = CtrlHdr::with_type(0x0999).as_bytes_vec();
    assert_eq!(
        u32::from_le_bytes(vmm.raw(unknown, 24).unwrap()[0..4].try_into().unwrap()),
        ErrorCode::Unspec.value()
    );
    // No room for a response at all: the chain is still used, with 0 bytes.
    assert_eq!(
        vmm.raw(create_2d(1, Format::B8G8R8X8Unorm, 4, 4).to_bytes(), 8)
            .unwrap()
            .len(),
        0
    );
    // A request split over several descriptors decodes as one.
    let whole = create_2d(2, Format::B8G8R8X8Unorm, 4, 4).to_bytes();
    let req = vgpu_tests::vmm::Request {
        readable: vec![
            whole[..10].to_vec(),
            whole[10..24].to_vec(),
            whole[24..].to_vec(),
        ],
        writable: vec![24],
    };
    let out = vmm.exchange(0, &[req]).unwrap();
    assert_eq!(
        u32::from_le_bytes(out[0][0..4].try_into().unwrap()),
        ResponseType::OkNoData.value()
    );
    // The fence is echoed on errors too.
    let mut h = fenced(hdr(CommandType::ResourceUnref), 77, None);
    h.ctx_id = 0.into();
    let cmd = Command::ResourceUnref(ResourceUnref {
        hdr: h,
        resource_id: 999.into(),
        padding: 0.into(),
    });
    let (rh, r) = vmm.command(&cmd).unwrap();
    assert_eq!(r, Response::Error(ErrorCode::InvalidResourceId));
    assert_eq!(
        (rh.flags.get() & VIRTIO_GPU_FLAG_FENCE, rh.fence_id.get()),
        (VIRTIO_GPU_FLAG_FENCE, 77)
    );
    assert!(b.buffer_manager().is_some());
}

trait AsBytesVec {
    fn as_bytes_vec(&self) -> Vec<u8>;
}

impl AsBytesVec for CtrlHdr {
    fn as_bytes_vec(&self) -> Vec<u8> {
        zerocopy::IntoBytes::as_bytes(self).to_vec()
    }
}

/// A queue the frontend stopped (shutdown, reset) that is kicked anyway,
/// and an avail ring whose index runs ahead of valid descriptors: the
/// device neither spins nor hangs, and lets the VMM go.
#[test]
fn stopped_queues_and_bogus_avail_rings_do_not_wedge_the_device() {
    let (mut b, mut vmm) = setup();
    expect_ok(&mut vmm, &create_2d(1, Format::B8G8R8X8Unorm, 16, 16));
    vmm.stop_queue(0).unwrap();
    vmm.offer(0, &vgpu_tests::vmm::Request::of(vec![0u8; 24], 24))
        .unwrap();
    // The cursor queue is still running: an avail index far ahead of any
    // descriptor the guest wrote.
    let mem = vmm.ram.mem().clone();
    vmm.queue(1).publish_bogus_avail_idx(&mem, 40_000).unwrap();
    vmm.queue(1).kick().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    vmm.disconnect();
    b.join(Duration::from_secs(10))
        .expect("the daemon finished its connection");
}
