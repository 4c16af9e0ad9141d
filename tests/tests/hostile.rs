//! Hostile guests, through the real vhost-user socket: one test per attack
//! class (the classes QEMU's virtio-gpu CVEs came from, and the rest of
//! what a guest controls). Each asserts the right error, that the device
//! keeps serving, and that after the VM leaves no host memory is held.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::time::Duration;

use vgpu_device::config::{DeviceConfig, Limits};
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::guest::Buffer;
use vgpu_tests::vmm::{Request, Vmm, VmmOptions, CTRL, CURSOR};
use vm_memory::GuestAddress;

const PAGE: u64 = 4096;

struct Rig {
    b: RunningBackend,
    vmm: Vmm,
}

fn rig(cfg: DeviceConfig) -> Rig {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = RunningBackend::in_process(cfg, 1).unwrap();
    let vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    Rig { b, vmm }
}

impl Rig {
    #[track_caller]
    fn expect(&mut self, cmd: &Command<'_>, want: ErrorCode) {
        assert_eq!(
            self.vmm.command(cmd).unwrap().1,
            Response::Error(want),
            "{cmd:?}"
        );
    }

    #[track_caller]
    fn ok(&mut self, cmd: &Command<'_>) {
        assert!(
            !matches!(self.vmm.command(cmd).unwrap().1, Response::Error(_)),
            "{cmd:?}"
        );
    }

    /// The device still answers, then the VM leaves and nothing is held.
    fn done(self) {
        let Rig { mut b, mut vmm } = self;
        let (_, r) = vmm
            .command(&Command::GetDisplayInfo(hdr(CommandType::GetDisplayInfo)))
            .unwrap();
        assert!(
            matches!(r, Response::DisplayInfo(_)),
            "still serving: {r:?}"
        );
        vmm.disconnect();
        b.join(Duration::from_secs(10)).unwrap();
        let s = b.buffer_manager().unwrap().stats();
        assert_eq!(s.objects, 0, "objects left behind");
        assert_eq!(s.owners.len(), 1, "VM accounts left behind: {:?}", s.owners);
        assert_eq!(s.owners[0].charged, 0, "host memory left charged");
        assert!(
            s.regions.iter().all(|r| r.used == 0),
            "regions still hand out memory"
        );
    }
}

fn guest_entry(vmm: &mut Vmm, len: u64) -> MemEntry {
    guest_pages(vmm, len, 0x55).unwrap()
}

/// CVE-2021-3546 class: capset queries out of range.
#[test]
fn capset_index_and_version_out_of_range() {
    let mut r = rig(DeviceConfig::default());
    for index in [1, 2, 0xffff_ffff] {
        r.expect(
            &Command::GetCapsetInfo(GetCapsetInfo {
                hdr: hdr(CommandType::GetCapsetInfo),
                capset_index: index.into(),
                padding: 0.into(),
            }),
            ErrorCode::InvalidParameter,
        );
    }
    for (id, version) in [
        (VIRTIO_GPU_CAPSET_DRM, 1),
        (VIRTIO_GPU_CAPSET_DRM, 0xffff_ffff),
        (1, 0),
        (0xffff_ffff, 0),
    ] {
        r.expect(
            &Command::GetCapset(GetCapset {
                hdr: hdr(CommandType::GetCapset),
                capset_id: id.into(),
                capset_version: version.into(),
            }),
            ErrorCode::InvalidParameter,
        );
    }
    // A response buffer too small for the capset gets an error, not a
    // write past it.
    let cmd = Command::GetCapset(GetCapset {
        hdr: hdr(CommandType::GetCapset),
        capset_id: VIRTIO_GPU_CAPSET_DRM.into(),
        capset_version: 0.into(),
    });
    let out = r.vmm.raw(cmd.to_bytes(), 30).unwrap();
    assert!(out.len() <= 30);
    assert_eq!(
        u32::from_le_bytes(out[0..4].try_into().unwrap()),
        ErrorCode::Unspec.value()
    );
    r.done();
}

/// Chains too short, too long, with wrong directions, pointing outside
/// guest memory, looping, or with a bogus head: each is used (the guest is
/// never left waiting) and answered with an error where there is room.
#[test]
fn descriptor_chains_too_short_too_long_misdirected_or_outside_memory() {
    let mut r = rig(DeviceConfig::default());
    let err = |out: &[u8]| u32::from_le_bytes(out[0..4].try_into().unwrap());
    // Too short for a header.
    assert_eq!(
        err(&r.vmm.raw(vec![0; 8], 24).unwrap()),
        ErrorCode::Unspec.value()
    );
    // Longer than any request may be (1 MiB of readable bytes).
    let big = vec![0u8; 1 << 20];
    assert_eq!(err(&r.vmm.raw(big, 24).unwrap()), ErrorCode::Unspec.value());
    // Readable after writable.
    let cmd = create_2d(1, Format::B8G8R8X8Unorm, 4, 4).to_bytes();
    let mem = r.vmm.ram.mem().clone();
    let rd = r.vmm.ram.alloc_pages(PAGE).unwrap();
    let wr = r.vmm.ram.alloc_pages(PAGE).unwrap();
    vm_memory::Bytes::write_slice(&mem, &cmd, rd).unwrap();
    let chains: Vec<Vec<Buffer>> = vec![
        // writable then readable
        vec![
            Buffer {
                addr: wr,
                len: 24,
                write: true,
            },
            Buffer {
                addr: rd,
                len: cmd.len() as u32,
                write: false,
            },
        ],
        // no writable descriptor at all
        vec![Buffer {
            addr: rd,
            len: cmd.len() as u32,
            write: false,
        }],
        // readable descriptor outside guest memory
        vec![
            Buffer {
                addr: GuestAddress(1 << 40),
                len: 64,
                write: false,
            },
            Buffer {
                addr: wr,
                len: 24,
                write: true,
            },
        ],
        // writable descriptor outside guest memory
        vec![
            Buffer {
                addr: rd,
                len: cmd.len() as u32,
                write: false,
            },
            Buffer {
                addr: GuestAddress(u64::MAX - 8),
                len: 24,
                write: true,
            },
        ],
        // address + length overflowing
        vec![
            Buffer {
                addr: GuestAddress(u64::MAX - 4),
                len: 4096,
                write: false,
            },
            Buffer {
                addr: wr,
                len: 24,
                write: true,
            },
        ],
    ];
    for chain in &chains {
        let head = r.vmm.queue(CTRL).add(&mem, chain).unwrap();
        r.vmm.queue(CTRL).kick().unwrap();
        let used = r.vmm.wait_used(CTRL, Duration::from_secs(5)).unwrap();
        assert!(
            used.iter().any(|u| u.head == head),
            "chain {chain:?} was used"
        );
    }
    // A head index past the descriptor table, and a chain that loops.
    let size = r.vmm.queue(CTRL).size;
    r.vmm.queue(CTRL).add_raw_head(&mem, size + 5).unwrap();
    r.vmm.queue(CTRL).kick().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _ = r.vmm.poll_used(CTRL);
    r.ok(&create_2d(3, Format::B8G8R8X8Unorm, 4, 4));
    r.done();
}

/// Transfer rectangles and offsets whose arithmetic overflows 32 and 64
/// bits (the QEMU transfer/backing overflow class).
#[test]
fn transfer_rects_and_offsets_that_overflow() {
    let mut r = rig(DeviceConfig::default());
    r.ok(&create_2d(1, Format::B8G8R8X8Unorm, 64, 64));
    let e = guest_entry(&mut r.vmm, 64 * 64 * 4);
    r.ok(&attach_backing(1, &[e]));
    for (rect, offset) in [
        (Rect::new(u32::MAX, 0, 2, 1), 0),
        (Rect::new(0, u32::MAX, 1, 2), 0),
        (Rect::new(0, 0, u32::MAX, 1), 0),
        (Rect::new(0, 0, 64, u32::MAX), 0),
        (Rect::new(60, 60, 8, 8), 0),
        (Rect::new(0, 0, 64, 64), u64::MAX),
        (Rect::new(0, 0, 64, 64), u64::MAX - 4096),
        (Rect::new(0, 0, 64, 64), 64 * 64 * 4),
        (Rect::new(0, 1, 64, 63), 64 * 64 * 4 - 255 * 4),
    ] {
        r.expect(&transfer_2d(1, rect, offset), ErrorCode::InvalidParameter);
    }
    r.expect(
        &flush(1, Rect::new(u32::MAX, u32::MAX, 2, 2)),
        ErrorCode::InvalidParameter,
    );
    r.expect(
        &set_scanout(0, 1, Rect::new(1, 1, u32::MAX, 1)),
        ErrorCode::InvalidParameter,
    );
    // 3D boxes and strides.
    r.ok(&ctx_create(1, 0, "plain"));
    for (b, stride, offset) in [
        ([u32::MAX, 0, 0, 2, 1, 1], 0, 0u64),
        ([0, 0, 0, 64, u32::MAX, 1], 0, 0),
        ([0, 0, 0, 64, 64, 1], u32::MAX, 0),
        ([0, 0, 0, 64, 64, 1], 0, u64::MAX),
        ([0, 0, 1, 64, 64, 1], 0, 0),
    ] {
        let c = TransferHost3d {
            hdr: ctx_hdr(CommandType::TransferToHost3d, 1),
            box_: Box3d {
                x: b[0].into(),
                y: b[1].into(),
                z: b[2].into(),
                w: b[3].into(),
                h: b[4].into(),
                d: b[5].into(),
            },
            offset: offset.into(),
            resource_id: 1.into(),
            level: 0.into(),
            stride: stride.into(),
            layer_stride: 0.into(),
        };
        r.expect(&Command::TransferToHost3d(c), ErrorCode::InvalidParameter);
        r.expect(&Command::TransferFromHost3d(c), ErrorCode::InvalidParameter);
    }
    r.ok(&transfer_2d(1, Rect::new(0, 0, 64, 64), 0));
    r.done();
}

/// CVE-2021-3544 class (leaks on error paths): huge nr_entries, entries
/// outside guest memory or overflowing, too many entries in total.
#[test]
fn attach_backing_with_huge_or_outside_entries() {
    let mut r = rig(DeviceConfig {
        limits: Limits {
            max_backing_entries: 64,
            ..Limits::default()
        },
        ..DeviceConfig::default()
    });
    r.ok(&create_2d(1, Format::B8G8R8X8Unorm, 16, 16));
    // nr_entries claims far more than the request carries.
    let mut bytes = attach_backing(1, &[MemEntry::new(0, 4096)]).to_bytes();
    bytes[28..32].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let out = r.vmm.raw(bytes, 24).unwrap();
    assert_ne!(
        u32::from_le_bytes(out[0..4].try_into().unwrap()),
        ResponseType::OkNoData.value()
    );
    for entries in [
        vec![MemEntry::new(1 << 40, 4096)],
        vec![MemEntry::new(u64::MAX - 100, 4096)],
        vec![MemEntry::new(0, u32::MAX)],
    ] {
        r.expect(&attach_backing(1, &entries), ErrorCode::InvalidParameter);
    }
    let e = guest_entry(&mut r.vmm, PAGE);
    let many = vec![e; 65];
    r.expect(&attach_backing(1, &many), ErrorCode::OutOfMemory);
    // Attaching twice is refused; the first backing stays.
    r.ok(&attach_backing(1, &[e]));
    assert!(matches!(
        r.vmm.command(&attach_backing(1, &[e])).unwrap().1,
        Response::Error(_)
    ));
    r.done();
}

/// Blob sizes that do not match their object, 2^63, zero, unaligned.
#[test]
fn blob_size_mismatches_and_absurd_sizes() {
    let mut r = rig(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut r.vmm, 1, 1000, 0).unwrap();
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let (resp, _) = nc
        .submit(&mut r.vmm, &[gem_create_ext(64 << 10, 7, 0, &regions)])
        .unwrap();
    assert_eq!(resp, Response::OkNoData);
    for size in [4096, 128 << 10, 1 << 63, 0, u64::MAX] {
        r.expect(
            &create_blob(
                1,
                5,
                BlobMem::Host3d,
                VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
                7,
                size,
                &[],
            ),
            ErrorCode::InvalidParameter,
        );
    }
    // Unknown blob ids and blob_mem values.
    r.expect(
        &create_blob(1, 5, BlobMem::Host3d, 0, 99, 64 << 10, &[]),
        ErrorCode::InvalidParameter,
    );
    let e = guest_entry(&mut r.vmm, PAGE);
    for size in [1 << 63, 2 * PAGE, 0] {
        r.expect(
            &create_blob(0, 6, BlobMem::Guest, 0, 0, size, &[e]),
            ErrorCode::InvalidParameter,
        );
    }
    let mut bytes = create_blob(0, 6, BlobMem::Guest, 0, 0, PAGE, &[e]).to_bytes();
    bytes[28..32].copy_from_slice(&77u32.to_le_bytes());
    let out = r.vmm.raw(bytes, 24).unwrap();
    assert_ne!(
        u32::from_le_bytes(out[0..4].try_into().unwrap()),
        ResponseType::OkNoData.value()
    );
    // GEM objects of absurd sizes are refused by the context, not created.
    let (_, p) = nc
        .submit(&mut r.vmm, &[gem_create(1 << 63, 8), gem_create(0, 9)])
        .unwrap();
    assert_eq!(p.len(), 2);
    r.expect(
        &create_blob(1, 5, BlobMem::Host3d, 0, 8, 1 << 63, &[]),
        ErrorCode::InvalidParameter,
    );
    r.done();
}

/// MAP_BLOB beyond the host-visible region or unaligned, double map,
/// unmap of what is not mapped.
#[test]
fn map_beyond_the_region_double_map_and_unmap_of_unmapped() {
    let mut r = rig(DeviceConfig::default());
    let size = r.vmm.hostmem.as_ref().unwrap().size();
    let mut nc = NativeContext::create(&mut r.vmm, 1, 1000, 0).unwrap();
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    nc.gem_blob(&mut r.vmm, 1, 1, 64 << 10, &regions).unwrap();
    for offset in [size, size - PAGE, u64::MAX - PAGE + 1, 1 << 63, 100] {
        r.expect(&map_blob(1, offset), ErrorCode::InvalidParameter);
    }
    r.expect(&map_blob(1, 0), ErrorCode::InvalidParameter); // the response blob is there
    assert!(matches!(
        r.vmm.command(&map_blob(1, 1 << 20)).unwrap().1,
        Response::MapInfo(_)
    ));
    r.expect(&map_blob(1, 2 << 20), ErrorCode::InvalidParameter);
    r.ok(&unmap_blob(1));
    r.expect(&unmap_blob(1), ErrorCode::InvalidParameter);
    r.expect(&unmap_blob(55), ErrorCode::InvalidResourceId);
    r.done();
}

/// Unref while mapped or scanned out: the mapping and the scanout go too.
#[test]
fn unref_while_mapped_or_scanned_out() {
    let mut r = rig(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut r.vmm, 1, 1000, 0).unwrap();
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    nc.gem_blob(&mut r.vmm, 1, 1, 64 << 10, &regions).unwrap();
    assert!(matches!(
        r.vmm.command(&map_blob(1, 1 << 20)).unwrap().1,
        Response::MapInfo(_)
    ));
    r.ok(&unref(1));
    let log = r.vmm.shmem_log();
    assert!(
        log.iter().any(|(map, off, _)| !map && *off == 1 << 20),
        "unmapped: {log:?}"
    );
    // The region offset is free again.
    nc.gem_blob(&mut r.vmm, 2, 2, 64 << 10, &regions).unwrap();
    assert!(matches!(
        r.vmm.command(&map_blob(2, 1 << 20)).unwrap().1,
        Response::MapInfo(_)
    ));
    r.ok(&create_2d(3, Format::B8G8R8X8Unorm, 64, 64));
    let e = guest_entry(&mut r.vmm, 64 * 64 * 4);
    r.ok(&attach_backing(3, &[e]));
    r.ok(&set_scanout(0, 3, Rect::new(0, 0, 64, 64)));
    r.ok(&unref(3));
    r.expect(
        &flush(3, Rect::new(0, 0, 64, 64)),
        ErrorCode::InvalidResourceId,
    );
    r.done();
}

/// Resource id 0 and ids in use.
#[test]
fn resource_id_zero_and_reuse() {
    let mut r = rig(DeviceConfig::default());
    r.expect(
        &create_2d(0, Format::B8G8R8X8Unorm, 4, 4),
        ErrorCode::InvalidResourceId,
    );
    r.ok(&create_2d(5, Format::B8G8R8X8Unorm, 4, 4));
    r.expect(
        &create_2d(5, Format::B8G8R8X8Unorm, 4, 4),
        ErrorCode::InvalidResourceId,
    );
    let e = guest_entry(&mut r.vmm, PAGE);
    r.expect(
        &create_blob(0, 5, BlobMem::Guest, 0, 0, PAGE, &[e]),
        ErrorCode::InvalidResourceId,
    );
    r.ok(&unref(5));
    r.expect(&unref(5), ErrorCode::InvalidResourceId);
    r.ok(&create_2d(5, Format::B8G8R8X8Unorm, 4, 4));
    r.done();
}

/// Contexts and fences for ids that do not exist.
#[test]
fn unknown_contexts_and_fences() {
    let mut r = rig(DeviceConfig::default());
    r.expect(
        &Command::CtxDestroy(CtxDestroy {
            hdr: ctx_hdr(CommandType::CtxDestroy, 77),
        }),
        ErrorCode::InvalidContextId,
    );
    r.expect(&submit_3d(77, &[0; 16]), ErrorCode::InvalidContextId);
    r.ok(&create_2d(1, Format::B8G8R8X8Unorm, 4, 4));
    let attach = Command::CtxAttachResource(CtxResource {
        hdr: ctx_hdr(CommandType::CtxAttachResource, 77),
        resource_id: 1.into(),
        padding: 0.into(),
    });
    r.expect(&attach, ErrorCode::InvalidContextId);
    r.expect(&ctx_create(0, 0, "zero"), ErrorCode::InvalidContextId);
    r.ok(&ctx_create(1, 0, "one"));
    r.expect(&ctx_create(1, 0, "again"), ErrorCode::InvalidContextId);
    // A fenced command on an unknown context still completes, with its fence echoed.
    let mut h = fenced(ctx_hdr(CommandType::Submit3d, 88), 5, Some(3));
    h.ctx_id = 88.into();
    let cmd = Command::Submit3d {
        cmd: CmdSubmit {
            hdr: h,
            size: 0.into(),
            padding: 0.into(),
        },
        data: &[],
    };
    let (rh, resp) = r.vmm.command(&cmd).unwrap();
    assert_eq!(resp, Response::Error(ErrorCode::InvalidContextId));
    assert_eq!(rh.fence_id.get(), 5);
    r.done();
}

/// ring_idx must be below 64.
#[test]
fn ring_index_64_or_more() {
    let mut r = rig(DeviceConfig::default());
    r.ok(&ctx_create(1, 0, "c"));
    for ring in [64u8, 200, 255] {
        let cmd = Command::Submit3d {
            cmd: CmdSubmit {
                hdr: fenced(ctx_hdr(CommandType::Submit3d, 1), 9, Some(ring)),
                size: 0.into(),
                padding: 0.into(),
            },
            data: &[],
        };
        let out = r.vmm.raw(cmd.to_bytes(), 24).unwrap();
        assert_eq!(
            u32::from_le_bytes(out[0..4].try_into().unwrap()),
            ErrorCode::InvalidParameter.value()
        );
    }
    r.done();
}

/// SUBMIT_3D whose size claims more than the request carries.
#[test]
fn submit_3d_sizes_beyond_the_payload() {
    let mut r = rig(DeviceConfig::default());
    r.ok(&ctx_create(1, VIRTIO_GPU_CAPSET_DRM, "c"));
    for size in [17u32, 1 << 20, u32::MAX] {
        let mut bytes = submit_3d(1, &[0; 16]).to_bytes();
        bytes[24..28].copy_from_slice(&size.to_le_bytes());
        let out = r.vmm.raw(bytes, 24).unwrap();
        assert_ne!(
            u32::from_le_bytes(out[0..4].try_into().unwrap()),
            ResponseType::OkNoData.value()
        );
    }
    r.done();
}

/// Native-context requests whose response would land outside the
/// response blob, or whose framing lies.
#[test]
fn native_requests_with_responses_outside_the_response_blob() {
    let mut r = rig(DeviceConfig::default());
    let mut nc = NativeContext::create(&mut r.vmm, 1, 1000, 0).unwrap();
    let region = r.vmm.hostmem.clone().unwrap();
    let mut before = vec![0u8; SHMEM_SIZE as usize];
    region.read(nc.shmem_offset, &mut before).unwrap();
    for rsp_off in [SHMEM_SIZE as u32, 0x3ffc, u32::MAX - 2, u32::MAX] {
        let mut stream = Vec::new();
        getparam(4 /* I915_PARAM_CHIPSET_ID */).encode(1, rsp_off, &mut stream);
        let resp = r.vmm.command(&submit_3d(1, &stream)).unwrap().1;
        assert!(matches!(resp, Response::OkNoData | Response::Error(_)));
    }
    // Framing: a request claiming more bytes than the stream holds.
    let mut stream = Vec::new();
    getparam(4 /* I915_PARAM_CHIPSET_ID */).encode(1, 0, &mut stream);
    stream[4..8].copy_from_slice(&0x1000u32.to_le_bytes());
    let _ = r.vmm.command(&submit_3d(1, &stream)).unwrap();
    let mut after = vec![0u8; SHMEM_SIZE as usize];
    region.read(nc.shmem_offset, &mut after).unwrap();
    // Nothing beyond the blob could have been written; inside, only the
    // header may have changed (seqno).
    assert_eq!(&before[16..], &after[16..], "no response was written");
    let (resp, p) = nc
        .submit(&mut r.vmm, &[getparam(4 /* I915_PARAM_CHIPSET_ID */)])
        .unwrap();
    assert_eq!(resp, Response::OkNoData);
    assert!(
        nc.response(&r.vmm, &p[0]).is_ok(),
        "the context still answers"
    );
    r.done();
}

/// Memory exhaustion past the VM's quota: OUT_OF_MEMORY, and the host
/// (another VM's account) unaffected.
#[test]
fn memory_exhaustion_beyond_the_quota() {
    let mut r = rig(DeviceConfig {
        vm_quota: Some(1 << 20),
        ..DeviceConfig::default()
    });
    let bm = r.b.buffer_manager().unwrap().clone();
    let other = bm.create_owner("other-vm", None).unwrap();
    let mut nc = NativeContext::create(&mut r.vmm, 1, 1000, 0).unwrap();
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let mut refused = false;
    for i in 1..=64u32 {
        nc.gem_blob(&mut r.vmm, i, i, 64 << 10, &regions).unwrap();
        match r
            .vmm
            .command(&map_blob(i, (2 << 20) + u64::from(i) * (64 << 10)))
            .unwrap()
            .1
        {
            Response::MapInfo(_) => {}
            Response::Error(ErrorCode::OutOfMemory) => {
                refused = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused, "the quota was never hit");
    let vm = bm
        .stats()
        .owners
        .iter()
        .find(|o| o.name == "vm1")
        .unwrap()
        .charged;
    assert!(vm <= 1 << 20, "charged {vm} over the quota");
    // The host and other VMs are unaffected.
    let id = bm
        .create(
            other,
            4 << 20,
            vgpu_backend::Placement::system(),
            vgpu_backend::Priority::NORMAL,
        )
        .unwrap();
    bm.write(id, 0, &[1; 4096]).unwrap();
    bm.destroy(id).unwrap();
    bm.destroy_owner(other).unwrap();
    r.done();
}

/// A guest that fills its queue and never reads the used ring: the device
/// neither blocks nor spins, other queues and the admin socket are served,
/// and the VM's departure frees everything.
#[test]
fn a_guest_that_never_reads_its_used_ring() {
    let mut r = rig(DeviceConfig::default());
    let mem = r.vmm.ram.mem().clone();
    let req = create_2d(1, Format::B8G8R8X8Unorm, 4, 4).to_bytes();
    let rd = r.vmm.ram.alloc_pages(PAGE).unwrap();
    vm_memory::Bytes::write_slice(&mem, &req, rd).unwrap();
    let mut posted = 0;
    while r.vmm.queue(CTRL).free_descriptors() >= 2 {
        let wr = r.vmm.ram.alloc_pages(PAGE).unwrap();
        r.vmm
            .queue(CTRL)
            .add(
                &mem,
                &[
                    Buffer {
                        addr: rd,
                        len: req.len() as u32,
                        write: false,
                    },
                    Buffer {
                        addr: wr,
                        len: 64,
                        write: true,
                    },
                ],
            )
            .unwrap();
        posted += 1;
    }
    r.vmm.queue(CTRL).kick().unwrap();
    assert!(posted > 100);
    std::thread::sleep(Duration::from_millis(200));
    // The cursor queue is served meanwhile.
    let out = r
        .vmm
        .exchange(
            CURSOR,
            &[Request::of(
                Command::MoveCursor(UpdateCursor::default()).to_bytes(),
                24,
            )],
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    // And the admin socket.
    let mut admin = vgpu_device::admin::AdminClient::connect(r.b.admin_socket().unwrap()).unwrap();
    admin
        .request(&vgpu_device::admin::Request::Stats {})
        .unwrap();
    let Rig { mut b, vmm } = r;
    vmm.disconnect();
    b.join(Duration::from_secs(10)).unwrap();
    assert_eq!(b.buffer_manager().unwrap().stats().objects, 0);
}

/// Every per-VM cap, configured small: resources, contexts, backing
/// entries, host-visible bytes mapped, native-context objects.
#[test]
fn per_vm_limits_hold_and_free_up_again() {
    let mut r = rig(DeviceConfig {
        limits: Limits {
            max_resources: 4,
            max_contexts: 2,
            max_backing_entries: 8,
            max_hostmem_mapped: 128 << 10,
            max_context_objects: 3,
        },
        ..DeviceConfig::default()
    });
    for id in 1..=4 {
        r.ok(&create_2d(id, Format::B8G8R8X8Unorm, 4, 4));
    }
    r.expect(
        &create_2d(5, Format::B8G8R8X8Unorm, 4, 4),
        ErrorCode::OutOfMemory,
    );
    r.ok(&unref(4));
    r.ok(&create_2d(5, Format::B8G8R8X8Unorm, 4, 4));
    let e = guest_entry(&mut r.vmm, PAGE);
    r.ok(&attach_backing(1, &[e; 8]));
    r.expect(&attach_backing(2, &[e]), ErrorCode::OutOfMemory);
    r.ok(&detach_backing(1));
    r.ok(&attach_backing(2, &[e]));
    for id in [1, 2, 3, 5] {
        r.ok(&unref(id));
    }
    // Contexts: 2 (one is the native context below).
    let mut nc = NativeContext::create(&mut r.vmm, 1, 1, 0).unwrap();
    r.ok(&ctx_create(2, 0, "b"));
    r.expect(&ctx_create(3, 0, "c"), ErrorCode::OutOfMemory);
    // Native-context objects not yet resources: 3.
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let (_, _) = nc
        .submit(
            &mut r.vmm,
            &[
                gem_create_ext(PAGE, 1, 0, &regions),
                gem_create_ext(PAGE, 2, 0, &regions),
                gem_create_ext(PAGE, 3, 0, &regions),
                gem_create_ext(PAGE, 4, 0, &regions),
            ],
        )
        .unwrap();
    r.expect(
        &create_blob(
            1,
            4,
            BlobMem::Host3d,
            VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
            4,
            PAGE,
            &[],
        ),
        ErrorCode::InvalidParameter,
    );
    // Host-visible bytes mapped: 128 KiB, the response blob's 16 KiB included.
    r.ok(&create_blob(
        1,
        2,
        BlobMem::Host3d,
        VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
        1,
        PAGE,
        &[],
    ));
    let (_, _) = nc
        .submit(
            &mut r.vmm,
            &[
                gem_close(2),
                gem_close(3),
                gem_create_ext(128 << 10, 5, 0, &regions),
            ],
        )
        .unwrap();
    r.ok(&create_blob(
        1,
        3,
        BlobMem::Host3d,
        VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
        5,
        128 << 10,
        &[],
    ));
    assert!(matches!(
        r.vmm.command(&map_blob(2, 1 << 20)).unwrap().1,
        Response::MapInfo(_)
    ));
    r.expect(&map_blob(3, 2 << 20), ErrorCode::OutOfMemory);
    r.ok(&unmap_blob(2));
    r.ok(&unref(2));
    r.done();
}

#[test]
fn the_response_blob_header_is_untouched_by_unanswered_requests() {
    // Requests without a response (GEM_CLOSE) never write into the blob
    // body even when their rsp_off points anywhere.
    let mut r = rig(DeviceConfig::default());
    let nc = NativeContext::create(&mut r.vmm, 1, 1000, 0).unwrap();
    let region = r.vmm.hostmem.clone().unwrap();
    let mut stream = Vec::new();
    gem_close(3).encode(1, 0x3ff0, &mut stream);
    let _ = r.vmm.command(&submit_3d(1, &stream)).unwrap();
    let mut tail = vec![0u8; 16];
    region.read(nc.shmem_offset + 0x3ff0, &mut tail).unwrap();
    assert!(tail.iter().all(|b| *b == 0));
    r.done();
}
