//! Blobs, native contexts, the host-visible region and fences, end to end.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::time::Duration;

use vgpu_backend::{Madv, ObjectFilter, ShrinkMode, ShrinkRequest};
use vgpu_device::config::DeviceConfig;
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::display::DisplayMsg;
use vgpu_tests::vmm::{Request, Vmm, VmmOptions, CTRL, CURSOR};
use zerocopy::FromBytes;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn setup(cfg: DeviceConfig) -> (RunningBackend, Vmm) {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = RunningBackend::in_process(cfg, 1).unwrap();
    let vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    (backend, vmm)
}

#[track_caller]
fn expect(vmm: &mut Vmm, cmd: &Command<'_>, want: ErrorCode) {
    assert_eq!(
        vmm.command(cmd).unwrap().1,
        Response::Error(want),
        "{:?}",
        cmd.command_type()
    );
}

#[track_caller]
fn expect_ok(vmm: &mut Vmm, cmd: &Command<'_>) {
    assert_eq!(
        vmm.command(cmd).unwrap().1,
        Response::OkNoData,
        "{:?}",
        cmd.command_type()
    );
}

fn device_region() -> [MemoryClassInstance; 2] {
    [
        MemoryClassInstance::new(I915_MEMORY_CLASS_DEVICE, 0),
        MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0),
    ]
}

/// GEM_CREATE_EXT `blob_id` of `size`, then a mappable HOST3D blob `res`.
fn gem_blob(vmm: &mut Vmm, nc: &mut NativeContext, blob_id: u32, res: u32, size: u64) {
    nc.gem_blob(vmm, blob_id, res, size, &device_region())
        .unwrap();
}

fn read_rsp<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
    nc: &NativeContext,
    vmm: &Vmm,
    p: &Pending,
) -> T {
    nc.read(vmm, p).unwrap()
}

#[test]
fn native_context_queries_and_objects() {
    let (_b, mut vmm) = setup(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    assert_eq!(vmm.shmem_log(), vec![(true, 0, SHMEM_SIZE)]);
    // GETPARAM: known and unknown parameters.
    let (r, p) = nc
        .submit(&mut vmm, &[getparam(37), getparam(9999)])
        .unwrap();
    assert_eq!(r, Response::OkNoData);
    let known: GetParamRsp = read_rsp(&nc, &vmm, &p[0]);
    assert_eq!((known.ret.get(), known.value.get()), (0, 1));
    let unknown: GetParamRsp = read_rsp(&nc, &vmm, &p[1]);
    assert_eq!(unknown.ret.get(), EINVAL);
    assert_eq!(
        nc.seqno(&vmm).unwrap(),
        p[1].seqno,
        "seqno is the last request's"
    );
    // QUERYPARAM memory regions: size first, then the data.
    let (_, p) = nc
        .submit(&mut vmm, &[queryparam(DRM_I915_QUERY_MEMORY_REGIONS, 0)])
        .unwrap();
    let sized: QueryParamRsp = read_rsp(&nc, &vmm, &p[0]);
    let len = sized.length.get() as u32;
    assert_eq!(len as usize, 16 + 2 * 88);
    let (_, p) = nc
        .submit(&mut vmm, &[queryparam(DRM_I915_QUERY_MEMORY_REGIONS, len)])
        .unwrap();
    let bytes = nc.response(&vmm, &p[0]).unwrap();
    let head = QueryMemoryRegions::read_from_prefix(&bytes[16..])
        .unwrap()
        .0;
    assert_eq!(head.num_regions.get(), 2);
    let dev = MemoryRegionInfo::read_from_prefix(&bytes[16 + 16 + 88..])
        .unwrap()
        .0;
    assert_eq!(dev.region.memory_class.get(), I915_MEMORY_CLASS_DEVICE);
    assert_eq!(dev.probed_size.get(), 256 * MIB);
    // Objects: create, wrong-size blob, right-size blob, close of unknown.
    gem_blob(&mut vmm, &mut nc, 5, 1, 64 * 1024);
    let (_, _) = nc.submit(&mut vmm, &[gem_create(8192, 6)]).unwrap();
    expect(
        &mut vmm,
        &create_blob(
            1,
            2,
            BlobMem::Host3d,
            VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
            6,
            4096,
            &[],
        ),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &create_blob(1, 2, BlobMem::Host3d, 0, 77, 8192, &[]),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &create_blob(9, 2, BlobMem::Host3d, 0, 6, 8192, &[]),
        ErrorCode::InvalidContextId,
    );
    let (_, p) = nc
        .submit(
            &mut vmm,
            &[gem_close(6), gem_close(6), gem_busy(1), gem_busy(42)],
        )
        .unwrap();
    let closes: [GemCloseRsp; 2] = [read_rsp(&nc, &vmm, &p[0]), read_rsp(&nc, &vmm, &p[1])];
    assert_eq!((closes[0].ret.get(), closes[1].ret.get()), (0, ENOENT));
    let busy: GemBusyRsp = read_rsp(&nc, &vmm, &p[2]);
    assert_eq!((busy.ret.get(), busy.busy.get()), (0, 0));
    assert_eq!(read_rsp::<GemBusyRsp>(&nc, &vmm, &p[3]).ret.get(), ENOENT);
    // Unknown and malformed requests get error responses; the context goes on.
    nc.builder.push_raw(&{
        let mut r = zerocopy::IntoBytes::as_bytes(&CcmdReq {
            cmd: 0x4242.into(),
            len: 16.into(),
            seqno: 900.into(),
            rsp_off: 4096.into(),
        })
        .to_vec();
        r.truncate(16);
        r
    });
    // A guest sets the length of the response it expects (its `{len, ret}`).
    nc.set_response_len(&vmm, 4096, 8).unwrap();
    let (r, p) = nc.submit(&mut vmm, &[getparam(4)]).unwrap();
    assert_eq!(r, Response::OkNoData);
    let region = vmm.hostmem.as_ref().unwrap();
    let mut err = [0u8; 8];
    region.read(16 + 4096, &mut err).unwrap();
    assert_eq!(
        (
            u32::from_le_bytes(err[0..4].try_into().unwrap()),
            i32::from_le_bytes(err[4..8].try_into().unwrap())
        ),
        (8, EINVAL)
    );
    assert_eq!(read_rsp::<GetParamRsp>(&nc, &vmm, &p[0]).ret.get(), 0);
    // A response outside the response memory fails the SUBMIT_3D, and the
    // requests around it still run.
    let mut bad = Vec::new();
    getparam(4).encode(1000, (SHMEM_SIZE - 16 - 8) as u32, &mut bad);
    let stream = [bad.clone(), {
        let mut ok = Vec::new();
        gem_create(4096, 7).encode(1001, 0, &mut ok);
        ok
    }]
    .concat();
    expect(
        &mut vmm,
        &submit_3d(1, &stream),
        ErrorCode::InvalidParameter,
    );
    assert_eq!(nc.seqno(&vmm).unwrap(), 1001);
    // A framing error stops the stream: the SUBMIT_3D fails.
    let mut broken = bad;
    broken[4..8].copy_from_slice(&7u32.to_le_bytes());
    expect(
        &mut vmm,
        &submit_3d(1, &broken),
        ErrorCode::InvalidParameter,
    );
}

#[test]
fn map_blob_is_zero_copy_and_checked() {
    let (b, mut vmm) = setup(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    gem_blob(&mut vmm, &mut nc, 1, 1, 2 * PAGE);
    let (_, r) = vmm.command(&map_blob(1, MIB)).unwrap();
    assert_eq!(
        r,
        Response::MapInfo(VIRTIO_GPU_MAP_CACHE_WC),
        "device memory is write-combined"
    );
    let region = vmm.hostmem.clone().unwrap();
    region.write(MIB + 100, b"through the BAR").unwrap();
    // The host buffer sees the guest's write: the guest mapped the buffer's own pages.
    let bm = b.buffer_manager().unwrap();
    let obj = bm
        .list_objects(ObjectFilter::default())
        .into_iter()
        .find(|o| o.size == 2 * PAGE)
        .unwrap()
        .id;
    let mut seen = [0u8; 15];
    bm.read(obj, 100, &mut seen).unwrap();
    assert_eq!(&seen, b"through the BAR");
    // Double map, overlapping map, misaligned, outside the region.
    expect(&mut vmm, &map_blob(1, 8 * MIB), ErrorCode::InvalidParameter);
    gem_blob(&mut vmm, &mut nc, 2, 2, PAGE);
    expect(
        &mut vmm,
        &map_blob(2, MIB + PAGE),
        ErrorCode::InvalidParameter,
    );
    expect(&mut vmm, &map_blob(2, 100), ErrorCode::InvalidParameter);
    expect(
        &mut vmm,
        &map_blob(2, (1 << 30) - PAGE / 2),
        ErrorCode::InvalidParameter,
    );
    expect(
        &mut vmm,
        &map_blob(2, u64::MAX - 4095),
        ErrorCode::InvalidParameter,
    );
    expect(&mut vmm, &map_blob(99, 0), ErrorCode::InvalidResourceId);
    // Not mappable.
    let (_, _) = nc.submit(&mut vmm, &[gem_create(PAGE, 3)]).unwrap();
    expect_ok(
        &mut vmm,
        &create_blob(1, 3, BlobMem::Host3d, 0, 3, PAGE, &[]),
    );
    expect(&mut vmm, &map_blob(3, 4 * MIB), ErrorCode::InvalidParameter);
    // Unmap, and unmap of unmapped.
    expect_ok(&mut vmm, &unmap_blob(1));
    expect(&mut vmm, &unmap_blob(1), ErrorCode::InvalidParameter);
    assert!(!region.is_mapped(MIB, PAGE));
    // Unref of a mapped blob unmaps first.
    let (_, r) = vmm.command(&map_blob(2, 2 * MIB)).unwrap();
    assert!(matches!(r, Response::MapInfo(_)));
    expect_ok(&mut vmm, &unref(2));
    assert!(vmm.shmem_log().contains(&(false, 2 * MIB, PAGE)));
}

/// The virtio spec defines RESOURCE_MAP_BLOB for host-only (HOST3D) blobs:
/// a GUEST blob's pages are the guest's already. Refused, and the VMM is
/// asked to map nothing.
#[test]
fn only_host_only_blobs_can_be_mapped() {
    let (_b, mut vmm) = setup(DeviceConfig::default());
    let e1 = guest_pages(&mut vmm, 2 * PAGE, 0xaa).unwrap();
    let e2 = guest_pages(&mut vmm, PAGE, 0xbb).unwrap();
    expect_ok(
        &mut vmm,
        &create_blob(
            0,
            1,
            BlobMem::Guest,
            VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
            0,
            3 * PAGE,
            &[e1, e2],
        ),
    );
    expect(
        &mut vmm,
        &create_blob(0, 2, BlobMem::Guest, 0, 0, 4 * PAGE, &[e1, e2]),
        ErrorCode::InvalidParameter,
    );
    let before = vmm.shmem_log().len();
    expect(&mut vmm, &map_blob(1, 0), ErrorCode::InvalidParameter);
    expect(&mut vmm, &unmap_blob(1), ErrorCode::InvalidParameter);
    assert_eq!(vmm.shmem_log().len(), before, "the VMM heard nothing");
    expect_ok(&mut vmm, &unref(1));
}

#[test]
fn blob_scanout_reaches_the_display() {
    let (_b, mut vmm) = setup(DeviceConfig::default());
    let e = guest_pages(&mut vmm, 64 * 64 * 4, 0x33).unwrap();
    expect_ok(
        &mut vmm,
        &create_blob(0, 1, BlobMem::Guest, 0, 0, 64 * 64 * 4, &[e]),
    );
    let scanout = |res: u32, stride: u32| {
        Command::SetScanoutBlob(SetScanoutBlob {
            hdr: hdr(CommandType::SetScanoutBlob),
            r: Rect::new(0, 0, 64, 64),
            scanout_id: 0.into(),
            resource_id: res.into(),
            width: 64.into(),
            height: 64.into(),
            format: Format::B8G8R8X8Unorm.value().into(),
            padding: 0.into(),
            strides: [stride.into(), 0.into(), 0.into(), 0.into()],
            offsets: [0.into(); 4],
        })
    };
    expect(&mut vmm, &scanout(1, 128), ErrorCode::InvalidParameter);
    expect(&mut vmm, &scanout(1, 512), ErrorCode::InvalidParameter);
    expect(&mut vmm, &scanout(7, 256), ErrorCode::InvalidResourceId);
    expect_ok(&mut vmm, &scanout(1, 256));
    expect_ok(&mut vmm, &flush(1, Rect::new(0, 0, 64, 64)));
    let d = vmm.display.as_ref().unwrap();
    let DisplayMsg::Update { width, data, .. } = d
        .wait_for(Duration::from_secs(5), |m| {
            matches!(m, DisplayMsg::Update { .. })
        })
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(width, 64);
    assert!(data.chunks(4).all(|p| p == [0x33, 0x33, 0x33, 0xff]));
}

/// The scenario: 64 blobs made with GEM_CREATE_EXT +
/// RESOURCE_CREATE_BLOB, mapped and filled, half marked DONTNEED, unmapped;
/// the shrinker runs; WILLNEED on the purged ones answers retained = false
/// and using them fails cleanly; the others read back byte-identical.
#[test]
fn sixty_four_blobs_half_purged_by_the_shrinker() {
    let (b, mut vmm) = setup(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    let size = 64 * 1024;
    let region = vmm.hostmem.clone().unwrap();
    for i in 0..64u32 {
        gem_blob(&mut vmm, &mut nc, i + 1, i + 1, size);
        let at = MIB + u64::from(i) * size;
        assert!(matches!(
            vmm.command(&map_blob(i + 1, at)).unwrap().1,
            Response::MapInfo(_)
        ));
        let pattern: Vec<u8> = (0..size)
            .map(|x| (x as u32 ^ i.wrapping_mul(2_654_435_761)) as u8)
            .collect();
        region.write(at, &pattern).unwrap();
    }
    let madv: Vec<I915Request<'static>> = (0..64u32)
        .filter(|i| i % 2 == 1)
        .map(|i| gem_madvise_resource(i + 1, I915_MADV_DONTNEED))
        .collect();
    let (_, p) = nc.submit(&mut vmm, &madv).unwrap();
    assert!(p
        .iter()
        .all(|p| read_rsp::<GemMadviseRsp>(&nc, &vmm, p).retained.get() == 1));
    for i in 0..64u32 {
        expect_ok(&mut vmm, &unmap_blob(i + 1));
    }
    let bm = b.buffer_manager().unwrap();
    let report = bm.shrink(&ShrinkRequest::new(u64::MAX, ShrinkMode::Lazy));
    assert_eq!(report.purged_objects, 32);
    assert_eq!(
        report.purged_bytes,
        32 * size,
        "every purged byte was allocated and really released"
    );
    assert_eq!(
        bm.list_objects(ObjectFilter {
            madv: Some(Madv::Purged),
            ..Default::default()
        })
        .len(),
        32
    );
    // WILLNEED on everything: retained tells which survived.
    let willneed: Vec<I915Request<'static>> = (0..64u32)
        .map(|i| gem_madvise_resource(i + 1, I915_MADV_WILLNEED))
        .collect();
    let (_, p) = nc.submit(&mut vmm, &willneed).unwrap();
    for (i, p) in p.iter().enumerate() {
        let retained = read_rsp::<GemMadviseRsp>(&nc, &vmm, p).retained.get();
        assert_eq!(retained, u32::from(i % 2 == 0), "blob {}", i + 1);
    }
    for i in 0..64u32 {
        let at = MIB + u64::from(i) * size;
        let r = vmm.command(&map_blob(i + 1, at)).unwrap().1;
        if i % 2 == 1 {
            assert_eq!(
                r,
                Response::Error(ErrorCode::InvalidParameter),
                "purged blob {} cannot be mapped",
                i + 1
            );
            continue;
        }
        assert!(matches!(r, Response::MapInfo(_)));
        let mut back = vec![0u8; size as usize];
        region.read(at, &mut back).unwrap();
        let pattern: Vec<u8> = (0..size)
            .map(|x| (x as u32 ^ i.wrapping_mul(2_654_435_761)) as u8)
            .collect();
        assert!(back == pattern, "blob {} reads back byte-identical", i + 1);
    }
    assert_eq!(vmm.shmem_refusals(), 0, "every unmap named one earlier map");
    // Using a purged buffer in an execbuffer fails cleanly with EFAULT.
    let objs = [exec_object(2)];
    let (_, p) = nc
        .submit(&mut vmm, &[gem_execbuffer2(0, 0, 0, &objs, &[])])
        .unwrap();
    assert_eq!(
        read_rsp::<GemExecbuffer2Rsp>(&nc, &vmm, &p[0]).ret.get(),
        14
    );
}

/// A device whose execbuffers take `delay`, native context 1 with blob 1,
/// and the command stream of one execbuffer of that blob.
fn slow_engine(delay: Duration) -> (RunningBackend, Vmm, NativeContext, Vec<u8>) {
    let cfg = DeviceConfig {
        exec_delay: delay,
        ..DeviceConfig::default()
    };
    let (b, mut vmm) = setup(cfg);
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    gem_blob(&mut vmm, &mut nc, 1, 1, PAGE);
    nc.builder
        .push(&gem_execbuffer2(0, 0, 64, &[exec_object(1)], &[]))
        .unwrap();
    let exec = nc.builder.take_stream();
    (b, vmm, nc, exec)
}

/// SUBMIT_3D of `stream` on context 1, fenced with `fence` on `ring`
/// (`None`: the global timeline).
fn fenced_submit(stream: &[u8], fence: u64, ring: Option<u8>) -> Vec<u8> {
    let Command::Submit3d { mut cmd, data } = submit_3d(1, stream) else {
        unreachable!()
    };
    cmd.hdr = fenced(cmd.hdr, fence, ring);
    Command::Submit3d { cmd, data }.to_bytes()
}

#[test]
fn fences_complete_in_order_per_timeline_and_timelines_do_not_wait_for_each_other() {
    let (_b, mut vmm, mut nc, exec) = slow_engine(Duration::from_millis(300));
    let submit = |fence: u64, ring: u8, stream: &[u8]| fenced_submit(stream, fence, Some(ring));
    // Ring 0: a slow execbuffer, then an empty fenced submit (must wait).
    // Ring 1: an empty fenced submit (must not wait).
    let (a, oa) = vmm
        .post(CTRL, &Request::of(submit(1, 0, &exec), 64))
        .unwrap();
    let (bh, _) = vmm.post(CTRL, &Request::of(submit(2, 0, &[]), 64)).unwrap();
    let (c, oc) = vmm.post(CTRL, &Request::of(submit(3, 1, &[]), 64)).unwrap();
    let first = vmm.wait_used(CTRL, Duration::from_secs(5)).unwrap();
    assert_eq!(
        first.iter().map(|u| u.head).collect::<Vec<_>>(),
        vec![c],
        "ring 1 did not wait for ring 0"
    );
    let mut rest = Vec::new();
    while rest.len() < 2 {
        rest.extend(vmm.wait_used(CTRL, Duration::from_secs(5)).unwrap());
    }
    assert_eq!(
        rest.iter().map(|u| u.head).collect::<Vec<_>>(),
        vec![a, bh],
        "ring 0 in order"
    );
    let (rh, r) = Response::decode(&vmm.read_response(&oa, rest[0].len).unwrap()).unwrap();
    assert_eq!(
        (r, rh.fence_id.get(), rh.ring_idx),
        (Response::OkNoData, 1, 0)
    );
    let (rh, _) = Response::decode(&vmm.read_response(&oc, first[0].len).unwrap()).unwrap();
    assert_eq!((rh.fence_id.get(), rh.ring_idx), (3, 1));
    vmm.reset_scratch();
    // While the buffer was busy GEM_BUSY said so; now it is idle.
    let (_, p) = nc.submit(&mut vmm, &[gem_busy(1)]).unwrap();
    assert_eq!(read_rsp::<GemBusyRsp>(&nc, &vmm, &p[0]).busy.get(), 0);
}

// Regression (review): cursor commands once shared the control queue's
// pending-head set and fence timeline, so a cursor head equal to a pending
// control head dropped that control request for good, and a fenced cursor
// command waited behind control fences and was completed on the control ring.
#[test]
fn cursor_commands_neither_wait_for_nor_drop_pending_control_fences() {
    let (_b, mut vmm, _nc, exec) = slow_engine(Duration::from_millis(300));
    let (slow, out) = vmm
        .post(CTRL, &Request::of(fenced_submit(&exec, 1, None), 64))
        .unwrap();
    // Fenced cursor moves on the global timeline, until one reuses the
    // pending control request's head number.
    let mut reused = false;
    for i in 0..64u32 {
        let mv = Command::MoveCursor(cursor(
            fenced(hdr(CommandType::MoveCursor), 100 + u64::from(i), None),
            i,
            0,
            0,
            (0, 0),
        ));
        let (head, _) = vmm.post(CURSOR, &Request::of(mv.to_bytes(), 64)).unwrap();
        let used = vmm.wait_used(CURSOR, Duration::from_secs(2)).unwrap();
        assert_eq!(
            used.iter().map(|u| u.head).collect::<Vec<_>>(),
            vec![head],
            "a cursor command does not wait for control fences"
        );
        reused |= head == slow;
        if reused {
            break;
        }
    }
    assert!(reused, "no cursor request reused head {slow}");
    let done = vmm.wait_used(CTRL, Duration::from_secs(5)).unwrap();
    assert_eq!(done.iter().map(|u| u.head).collect::<Vec<_>>(), vec![slow]);
    let (rh, r) = Response::decode(&vmm.read_response(&out, done[0].len).unwrap()).unwrap();
    assert_eq!((r, rh.fence_id.get()), (Response::OkNoData, 1));
}

// Regression (review): a fenced request still running when the frontend
// stops the queue (guest reboot: GET_VRING_BASE, no reset) was completed
// into the stopped queue's used ring, memory the next guest instance owns.
#[test]
fn fences_never_complete_into_a_stopped_queue() {
    let (_b, mut vmm, _nc, exec) = slow_engine(Duration::from_millis(200));
    vmm.post(CTRL, &Request::of(fenced_submit(&exec, 1, None), 64))
        .unwrap();
    vmm.stop_queue(CTRL).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        vmm.poll_used(CTRL).unwrap().is_empty(),
        "nothing written to a stopped queue's used ring"
    );
}

// Regression (review): a context destroyed while a resource made from
// its object lived on left its account behind for the VM's whole life.
#[test]
fn a_destroyed_contexts_account_goes_with_its_last_resource() {
    let backend = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let bm = backend.buffer_manager().unwrap().clone();
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    let accounts = |bm: &vgpu_backend::BufferManager| {
        bm.stats()
            .owners
            .iter()
            .filter(|o| o.name.starts_with("ctx"))
            .count()
    };
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    gem_blob(&mut vmm, &mut nc, 1, 1, PAGE);
    assert_eq!(accounts(&bm), 1);
    expect_ok(
        &mut vmm,
        &Command::CtxDestroy(CtxDestroy {
            hdr: ctx_hdr(CommandType::CtxDestroy, 1),
        }),
    );
    assert_eq!(accounts(&bm), 1, "its blob is still a resource");
    expect_ok(&mut vmm, &unref(1));
    assert_eq!(accounts(&bm), 1, "the response blob (resource 100) is too");
    expect_ok(&mut vmm, &unref(100));
    assert_eq!(accounts(&bm), 0, "gone with the last resource");
}

// Regression (review): after a failed SHMEM_UNMAP the blob was freed
// anyway, and its pages (a device-pool range) handed out again while the
// VMM might still map them into the guest.
#[test]
fn a_blob_the_vmm_failed_to_unmap_stays_until_the_vmm_leaves() {
    let mut backend = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let bm = backend.buffer_manager().unwrap().clone();
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    gem_blob(&mut vmm, &mut nc, 1, 1, MIB);
    assert!(matches!(
        vmm.command(&map_blob(1, 4 * MIB)).unwrap().1,
        Response::MapInfo(_)
    ));
    let objects = |bm: &vgpu_backend::BufferManager| bm.stats().objects;
    let before = objects(&bm);
    vmm.fail_shmem_unmaps(true);
    expect_ok(&mut vmm, &unmap_blob(1));
    expect_ok(&mut vmm, &unref(1));
    assert_eq!(objects(&bm), before, "kept: the VMM may still map it");
    // Its host-visible range is still taken.
    vmm.fail_shmem_unmaps(false);
    gem_blob(&mut vmm, &mut nc, 2, 2, MIB);
    expect(&mut vmm, &map_blob(2, 4 * MIB), ErrorCode::InvalidParameter);
    vmm.disconnect();
    backend.join(Duration::from_secs(10)).unwrap();
    assert_eq!(objects(&bm), 0, "freed once the VMM is gone");
}

#[test]
fn disconnect_mid_stream_frees_everything_and_the_next_vm_works() {
    let _ = env_logger::builder().is_test(true).try_init();
    let cfg = DeviceConfig {
        exec_delay: Duration::from_secs(30),
        ..DeviceConfig::default()
    };
    let mut backend = RunningBackend::in_process(cfg, 2).unwrap();
    let bm = backend.buffer_manager().unwrap().clone();
    {
        let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
        let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
        for i in 0..8u32 {
            gem_blob(&mut vmm, &mut nc, i + 1, i + 1, MIB);
            assert!(matches!(
                vmm.command(&map_blob(i + 1, (i as u64 + 2) * MIB))
                    .unwrap()
                    .1,
                Response::MapInfo(_)
            ));
            vmm.hostmem
                .as_ref()
                .unwrap()
                .write((i as u64 + 2) * MIB, &[1; 4096])
                .unwrap();
        }
        expect_ok(&mut vmm, &create_2d(50, Format::B8G8R8X8Unorm, 256, 256));
        let e = guest_pages(&mut vmm, 256 * 256 * 4, 9).unwrap();
        expect_ok(&mut vmm, &attach_backing(50, &[e]));
        expect_ok(&mut vmm, &transfer_2d(50, Rect::new(0, 0, 256, 256), 0));
        assert!(bm.stats().owners[0].charged > 0);
        // A slow execbuffer in flight when the VMM goes away.
        let objs = [exec_object(1)];
        nc.builder
            .push(&gem_execbuffer2(0, 0, 0, &objs, &[]))
            .unwrap();
        let stream = nc.builder.take_stream();
        let Command::Submit3d { mut cmd, data } = submit_3d(1, &stream) else {
            unreachable!()
        };
        cmd.hdr = fenced(cmd.hdr, 1, Some(0));
        vmm.post(
            CTRL,
            &Request::of(Command::Submit3d { cmd, data }.to_bytes(), 64),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        vmm.disconnect();
    }
    // The daemon frees everything of the first VM before it accepts the next.
    let first_vm_gone =
        |bm: &vgpu_backend::BufferManager| !bm.stats().owners.iter().any(|o| o.name == "vm1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (bm.object_count() > 0 || !first_vm_gone(&bm)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = bm.stats();
    assert_eq!(stats.objects, 0);
    assert_eq!(
        stats.owners[0].charged, 0,
        "every byte of the first VM was returned"
    );
    assert!(stats.regions.iter().all(|r| r.used == 0));
    assert!(
        first_vm_gone(&bm),
        "the first VM's accounts are gone (its contexts' too)"
    );
    assert!(stats
        .owners
        .iter()
        .all(|o| o.objects == 0 && o.charged == 0));
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    expect_ok(&mut vmm, &create_2d(1, Format::B8G8R8X8Unorm, 8, 8));
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    gem_blob(&mut vmm, &mut nc, 1, 2, PAGE);
    vmm.disconnect();
    backend.join(Duration::from_secs(10)).unwrap();
    assert_eq!(bm.object_count(), 0);
}

#[test]
fn host3d_guest_blobs_transfer_between_guest_pages_and_the_host_object() {
    let (b, mut vmm) = setup(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    let (_, _) = nc.submit(&mut vmm, &[gem_create(2 * PAGE, 9)]).unwrap();
    let e = guest_pages(&mut vmm, 2 * PAGE, 0x7e).unwrap();
    expect(
        &mut vmm,
        &create_blob(1, 5, BlobMem::Host3dGuest, 0, 9, 2 * PAGE, &[]),
        ErrorCode::InvalidParameter,
    );
    expect_ok(
        &mut vmm,
        &create_blob(1, 5, BlobMem::Host3dGuest, 0, 9, 2 * PAGE, &[e]),
    );
    let transfer = Command::TransferToHost3d(TransferHost3d {
        hdr: ctx_hdr(CommandType::TransferToHost3d, 1),
        box_: Box3d {
            x: 100.into(),
            w: 300.into(),
            h: 1.into(),
            d: 1.into(),
            ..Default::default()
        },
        offset: 100.into(),
        resource_id: 5.into(),
        ..Default::default()
    });
    expect_ok(&mut vmm, &transfer);
    let bm = b.buffer_manager().unwrap();
    let obj = bm
        .list_objects(ObjectFilter::default())
        .into_iter()
        .find(|o| o.size == 2 * PAGE)
        .unwrap()
        .id;
    let mut back = vec![0u8; 2 * PAGE as usize];
    bm.read(obj, 0, &mut back).unwrap();
    assert!(back[100..400].iter().all(|x| *x == 0x7e));
    assert!(back[..100].iter().all(|x| *x == 0) && back[400..].iter().all(|x| *x == 0));
}
