//! The queue loop's chain handling, without a socket: the backend is
//! driven through its `VhostUserBackend` implementation as
//! `vhost-user-backend` drives it, the driver's side of the rings is
//! virtio-queue's `MockSplitQueue` (`vgpu_device::testutils::QueueRig`).
//!
//! A table of chains — well-formed and not — and what each must get: a
//! used entry (always) with the bytes written, the response's type, and no
//! byte written outside what the device answered. Then the chains the
//! device holds back (fences): a reused head, and what the frontend's ring
//! stops and restarts (pause, guest reboot, queue reset) do to them and to
//! the device's resources.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::time::{Duration, Instant};

use vgpu_backend::BufferManager;
use vgpu_device::config::DeviceConfig;
use vgpu_device::testutils::{guest_memory, Posted, QueueRig, Seg, Used, GUEST_RAM, UNWRITTEN};
use vgpu_device::vhost::{CONTROL_QUEUE, CURSOR_QUEUE};
use vgpu_proto::native::{self, CcmdBuilder, I915Request};
use vgpu_proto::virtio_gpu::build::{ctx_hdr, hdr};
use vgpu_proto::virtio_gpu::*;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
const END: u64 = GUEST_RAM as u64;
/// Bytes of a display-info response.
const DISPLAY_INFO: u32 = 408;
/// Bytes of a response header.
const HDR: u32 = 24;

fn display_info() -> Vec<u8> {
    Command::GetDisplayInfo(hdr(CommandType::GetDisplayInfo)).to_bytes()
}

fn image(id: u32) -> Vec<u8> {
    Command::ResourceCreate2d(ResourceCreate2d {
        hdr: hdr(CommandType::ResourceCreate2d),
        resource_id: id.into(),
        format: Format::B8G8R8X8Unorm.value().into(),
        width: 64.into(),
        height: 64.into(),
    })
    .to_bytes()
}

fn move_cursor() -> Vec<u8> {
    Command::MoveCursor(UpdateCursor {
        hdr: hdr(CommandType::MoveCursor),
        pos: CursorPos {
            scanout_id: 0.into(),
            x: 1.into(),
            y: 2.into(),
            padding: 0.into(),
        },
        resource_id: 0.into(),
        hot_x: 0.into(),
        hot_y: 0.into(),
        padding: 0.into(),
    })
    .to_bytes()
}

fn ctx_create(ctx: u32) -> Vec<u8> {
    Command::CtxCreate(CtxCreate {
        hdr: ctx_hdr(CommandType::CtxCreate, ctx),
        nlen: 0.into(),
        context_init: VIRTIO_GPU_CAPSET_DRM.into(),
        debug_name: [0; CTX_DEBUG_NAME_LEN],
    })
    .to_bytes()
}

fn host3d_blob(ctx: u32, id: u32, blob_id: u64, size: u64) -> Vec<u8> {
    Command::ResourceCreateBlob {
        cmd: ResourceCreateBlob {
            hdr: ctx_hdr(CommandType::ResourceCreateBlob, ctx),
            resource_id: id.into(),
            blob_mem: VIRTIO_GPU_BLOB_MEM_HOST3D.into(),
            blob_flags: VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE.into(),
            nr_entries: 0.into(),
            blob_id: blob_id.into(),
            size: size.into(),
        },
        entries: &[],
    }
    .to_bytes()
}

/// SUBMIT_3D of `requests` on context 1, fenced with `fence` if given.
fn submit(requests: &[I915Request<'_>], fence: Option<u64>) -> Vec<u8> {
    let mut b = CcmdBuilder::new((native::MESA_SHMEM_SIZE - 16) as usize, 1);
    for r in requests {
        b.push(r).unwrap();
    }
    let stream = b.take_stream();
    let mut h = ctx_hdr(CommandType::Submit3d, 1);
    if let Some(f) = fence {
        h.flags = VIRTIO_GPU_FLAG_FENCE.into();
        h.fence_id = f.into();
    }
    Command::Submit3d {
        cmd: CmdSubmit {
            hdr: h,
            size: (stream.len() as u32).into(),
            padding: 0.into(),
        },
        data: &stream,
    }
    .to_bytes()
}

/// A request and room for its response.
fn ask(request: Vec<u8>, room: u32) -> Vec<Seg> {
    vec![Seg::Read(request), Seg::Write(room)]
}

fn rig(mem: &vgpu_device::guest_io::GuestMem, exec_delay: Duration) -> QueueRig<'_> {
    let cfg = DeviceConfig {
        exec_delay,
        ..DeviceConfig::default()
    };
    let bm = BufferManager::emulated_with_cache(64 * MIB, MIB).unwrap();
    QueueRig::new(mem, cfg, bm).unwrap()
}

/// Checks one chain's answer: `len` bytes written, of response type `ty`
/// (if any), and nothing written past them.
fn check_answer(
    rig: &QueueRig<'_>,
    what: &str,
    posted: &Posted,
    used: u32,
    ty: Option<ResponseType>,
) {
    if let Some(ty) = ty {
        let bytes = rig.response(posted, used);
        let (_, r) = Response::decode(&bytes)
            .unwrap_or_else(|e| panic!("{what}: undecodable response: {e}"));
        assert_eq!(r.response_type(), ty, "{what}");
    }
    let mut skip = used as usize;
    for (addr, len) in &posted.writable {
        let n = skip.min(*len as usize);
        skip -= n;
        if addr.0 + u64::from(*len) > END {
            continue; // not guest memory: nothing to look at
        }
        let rest = rig.read(
            vm_memory::GuestAddress(addr.0 + n as u64),
            *len as usize - n,
        );
        assert!(
            rest.iter().all(|b| *b == UNWRITTEN),
            "{what}: bytes written past the answer"
        );
    }
}

struct Row {
    what: &'static str,
    queue: u16,
    chain: Vec<Seg>,
    /// Bytes the used entry reports.
    len: u32,
    /// The response's type, if one was written.
    ty: Option<ResponseType>,
}

fn row(what: &'static str, chain: Vec<Seg>, len: u32, ty: Option<ResponseType>) -> Row {
    Row {
        what,
        queue: CONTROL_QUEUE,
        chain,
        len,
        ty,
    }
}

/// Every chain gets exactly one used entry; a malformed one an error
/// response where it has room for one and nothing where its writable
/// descriptors are not all guest memory.
#[test]
fn every_chain_gets_one_used_entry_and_no_byte_past_its_answer() {
    use ResponseType::*;
    let mem = guest_memory(GUEST_RAM);
    let mut rig = rig(&mem, Duration::ZERO);
    let mut head = [0u16; 2];
    let image1 = image(1);
    let mut unknown = vec![0u8; 24];
    unknown[..4].copy_from_slice(&0x0999u32.to_le_bytes());
    let rows = vec![
        row(
            "a well-formed request",
            ask(display_info(), DISPLAY_INFO),
            DISPLAY_INFO,
            Some(OkDisplayInfo),
        ),
        row(
            "the request split over two readable descriptors",
            vec![
                Seg::Read(display_info()[..10].to_vec()),
                Seg::Read(display_info()[10..].to_vec()),
                Seg::Write(DISPLAY_INFO),
            ],
            DISPLAY_INFO,
            Some(OkDisplayInfo),
        ),
        row(
            "the response split over two writable descriptors",
            vec![
                Seg::Read(display_info()),
                Seg::Write(100),
                Seg::Write(DISPLAY_INFO - 100),
            ],
            DISPLAY_INFO,
            Some(OkDisplayInfo),
        ),
        row(
            "more room than the response needs",
            ask(display_info(), 4096),
            DISPLAY_INFO,
            Some(OkDisplayInfo),
        ),
        row(
            "a readable descriptor after a writable one",
            vec![
                Seg::Read(display_info()[..10].to_vec()),
                Seg::Write(DISPLAY_INFO),
                Seg::Read(display_info()[10..].to_vec()),
            ],
            HDR,
            Some(ErrUnspec),
        ),
        row(
            "a request outside guest memory",
            vec![Seg::ReadAt(END + PAGE, 24), Seg::Write(HDR)],
            HDR,
            Some(ErrUnspec),
        ),
        row(
            "a request running past the end of guest memory",
            vec![Seg::ReadAt(END - 8, 24), Seg::Write(HDR)],
            HDR,
            Some(ErrUnspec),
        ),
        row(
            "a request larger than any command",
            vec![Seg::ReadAt(MIB, (5 * MIB) as u32), Seg::Write(HDR)],
            HDR,
            Some(ErrUnspec),
        ),
        row(
            "a response that does not fit: ERR_UNSPEC instead",
            ask(display_info(), 64),
            HDR,
            Some(ErrUnspec),
        ),
        row(
            "no room even for an error",
            ask(display_info(), 16),
            0,
            None,
        ),
        row(
            "no writable descriptor at all",
            vec![Seg::Read(display_info())],
            0,
            None,
        ),
        row(
            "a writable descriptor outside guest memory: not executed, nothing written",
            vec![Seg::Read(image1.clone()), Seg::WriteAt(END, HDR)],
            0,
            None,
        ),
        row(
            "…so resource 1 was not created",
            ask(image1.clone(), HDR),
            HDR,
            Some(OkNoData),
        ),
        row(
            "a writable descriptor running past the end of guest memory, after a good one",
            vec![
                Seg::Read(display_info()),
                Seg::Write(HDR),
                Seg::WriteAt(END - 100, DISPLAY_INFO),
            ],
            0,
            None,
        ),
        row(
            "a good writable descriptor after one outside guest memory",
            vec![
                Seg::Read(image(2)),
                Seg::WriteAt(END + MIB, 8),
                Seg::Write(HDR),
            ],
            0,
            None,
        ),
        row(
            "an unknown command",
            ask(unknown, HDR),
            HDR,
            Some(ErrUnspec),
        ),
        row(
            "a cursor command on the control queue",
            ask(move_cursor(), HDR),
            HDR,
            Some(ErrUnspec),
        ),
        Row {
            what: "a control command on the cursor queue",
            queue: CURSOR_QUEUE,
            chain: ask(display_info(), DISPLAY_INFO),
            len: HDR,
            ty: Some(ErrUnspec),
        },
        Row {
            what: "a cursor command on the cursor queue",
            queue: CURSOR_QUEUE,
            chain: ask(move_cursor(), HDR),
            len: HDR,
            ty: Some(OkNoData),
        },
        Row {
            what: "a writable descriptor outside guest memory on the cursor queue",
            queue: CURSOR_QUEUE,
            chain: vec![Seg::Read(move_cursor()), Seg::WriteAt(END, HDR)],
            len: 0,
            ty: None,
        },
    ];
    for r in rows {
        let q = usize::from(r.queue);
        let posted = rig.post(r.queue, head[q], &r.chain);
        head[q] += r.chain.len() as u16;
        rig.kick(r.queue).unwrap();
        let used = rig.used(r.queue);
        assert_eq!(
            used,
            vec![Used {
                head: posted.head,
                len: r.len
            }],
            "{}: one used entry, of {} bytes",
            r.what,
            r.len
        );
        check_answer(&rig, r.what, &posted, r.len, r.ty);
    }
    rig.finish();
}

/// Sets up context 1 (DRM) with its response blob (resource 100) and GEM
/// blob 1 as resource 1, in four chains from `head` on.
fn native_context(rig: &mut QueueRig<'_>, head: &mut u16) {
    let gem = [native::gem_create_ext(PAGE, 1, 0, &[])];
    for req in [
        ctx_create(1),
        host3d_blob(1, 100, 0, native::MESA_SHMEM_SIZE),
        submit(&gem, None),
        host3d_blob(1, 1, 1, PAGE),
    ] {
        expect(rig, head, req, ResponseType::OkNoData);
    }
}

/// Posts `req` on the control queue at `head`, runs it and checks its
/// answer's type; advances `head`.
fn expect(rig: &mut QueueRig<'_>, head: &mut u16, req: Vec<u8>, ty: ResponseType) {
    let posted = rig.post(CONTROL_QUEUE, *head, &ask(req, DISPLAY_INFO));
    *head += 2;
    rig.kick(CONTROL_QUEUE).unwrap();
    let used = rig.used(CONTROL_QUEUE);
    assert_eq!(used.len(), 1, "one answer: {used:?}");
    assert_eq!(used[0].head, posted.head);
    let (_, r) = Response::decode(&rig.response(&posted, used[0].len)).unwrap();
    assert_eq!(r.response_type(), ty);
}

/// Posts a fenced execbuffer (`fence`) at `head`: held back while the
/// engine runs it.
fn slow_fence(rig: &mut QueueRig<'_>, head: u16, fence: u64) -> Posted {
    let objs = [native::exec_object(1)];
    let exec = [native::gem_execbuffer2(0, 0, 64, &objs, &[])];
    let posted = rig.post(CONTROL_QUEUE, head, &ask(submit(&exec, Some(fence)), HDR));
    rig.kick(CONTROL_QUEUE).unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![],
        "held back while the engine runs"
    );
    posted
}

/// Waits for the engine (ticks of the fence timer) until `queue` has used
/// entries, or `for_at_most` passed.
fn wait_used(rig: &mut QueueRig<'_>, queue: u16, for_at_most: Duration) -> Vec<Used> {
    let until = Instant::now() + for_at_most;
    loop {
        rig.tick().unwrap();
        let used = rig.used(queue);
        if !used.is_empty() || Instant::now() >= until {
            return used;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The guest reuses the head of a chain the device still holds: the old
/// request is never answered, the new one is, and the old one no longer
/// holds its timeline back.
#[test]
fn a_reused_head_drops_the_old_request() {
    let mem = guest_memory(GUEST_RAM);
    let mut rig = rig(&mem, Duration::from_secs(60));
    let mut head = 0;
    native_context(&mut rig, &mut head);
    let held = slow_fence(&mut rig, head, 1);
    // The same head again, with a new request.
    let again = rig.post(CONTROL_QUEUE, held.head, &ask(display_info(), DISPLAY_INFO));
    rig.kick(CONTROL_QUEUE).unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![Used {
            head: held.head,
            len: DISPLAY_INFO
        }],
        "the new request's answer, once"
    );
    check_answer(
        &rig,
        "reused head",
        &again,
        DISPLAY_INFO,
        Some(ResponseType::OkDisplayInfo),
    );
    // A fenced request on the same (global) timeline is not held behind
    // the dropped one.
    let next = rig.post(CONTROL_QUEUE, head + 2, &ask(submit(&[], Some(2)), HDR));
    rig.kick(CONTROL_QUEUE).unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![Used {
            head: next.head,
            len: HDR
        }]
    );
    rig.tick().unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![],
        "the dropped request stays unanswered"
    );
    rig.finish();
}

/// A VM paused and resumed: the frontend stops both rings and starts them
/// where they stopped. Everything stays, and a fence still running when
/// the rings stopped completes into the same ring once they run again.
#[test]
fn pause_and_resume_keeps_everything() {
    let mem = guest_memory(GUEST_RAM);
    let mut rig = rig(&mem, Duration::from_millis(300));
    let mut head = 0;
    native_context(&mut rig, &mut head);
    expect(&mut rig, &mut head, image(2), ResponseType::OkNoData);
    rig.post(CURSOR_QUEUE, 0, &ask(move_cursor(), HDR));
    rig.kick(CURSOR_QUEUE).unwrap();
    assert_eq!(rig.used(CURSOR_QUEUE).len(), 1);
    let held = slow_fence(&mut rig, head, 1);
    head += 2;
    let bases = [
        rig.stop(CONTROL_QUEUE).unwrap(),
        rig.stop(CURSOR_QUEUE).unwrap(),
    ];
    assert_eq!(bases, [6, 1], "the indexes the device got to");
    // Stopped: the fence finishes, but nothing is written into the ring.
    std::thread::sleep(Duration::from_millis(400));
    rig.tick().unwrap();
    assert_eq!(rig.used(CONTROL_QUEUE), vec![]);
    rig.start(CONTROL_QUEUE, bases[0]).unwrap();
    rig.start(CURSOR_QUEUE, bases[1]).unwrap();
    assert_eq!(
        wait_used(&mut rig, CONTROL_QUEUE, Duration::from_secs(10)),
        vec![Used {
            head: held.head,
            len: HDR
        }],
        "completed into the resumed ring"
    );
    assert_eq!(rig.backend.stats().resources, 3, "resources kept");
    assert_eq!(rig.backend.stats().contexts, 1, "context kept");
    expect(
        &mut rig,
        &mut head,
        image(2),
        ResponseType::ErrInvalidResourceId,
    );
    rig.finish();
}

/// A guest reboot: the frontend stops both rings and the new driver starts
/// them afresh at 0. The old instance's resources and contexts are freed
/// (its ids start over) and its held requests are never answered.
#[test]
fn a_new_driver_instance_frees_the_old_ones_resources() {
    let mem = guest_memory(GUEST_RAM);
    let mut rig = rig(&mem, Duration::from_millis(300));
    let mut head = 0;
    native_context(&mut rig, &mut head);
    expect(&mut rig, &mut head, image(2), ResponseType::OkNoData);
    slow_fence(&mut rig, head, 1);
    rig.stop(CONTROL_QUEUE).unwrap();
    rig.stop(CURSOR_QUEUE).unwrap();
    rig.new_driver_ring(CONTROL_QUEUE);
    rig.new_driver_ring(CURSOR_QUEUE);
    rig.start(CONTROL_QUEUE, 0).unwrap();
    rig.start(CURSOR_QUEUE, 0).unwrap();
    let mut head = 0;
    expect(&mut rig, &mut head, image(2), ResponseType::OkNoData);
    assert_eq!(rig.backend.stats().resources, 1, "only the new instance's");
    assert_eq!(rig.backend.stats().contexts, 0);
    std::thread::sleep(Duration::from_millis(400));
    rig.tick().unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![],
        "the old instance's request is not answered into the new ring"
    );
    rig.finish();
}

/// A reset of the control queue alone (VIRTIO_F_RING_RESET as vhost-user
/// delivers it: that ring stopped, then started afresh): its held requests
/// are dropped, the device's resources stay.
#[test]
fn a_control_queue_reset_drops_its_requests_and_keeps_resources() {
    let mem = guest_memory(GUEST_RAM);
    let mut rig = rig(&mem, Duration::from_millis(300));
    let mut head = 0;
    native_context(&mut rig, &mut head);
    expect(&mut rig, &mut head, image(2), ResponseType::OkNoData);
    slow_fence(&mut rig, head, 1);
    rig.stop(CONTROL_QUEUE).unwrap();
    rig.new_driver_ring(CONTROL_QUEUE);
    rig.start(CONTROL_QUEUE, 0).unwrap();
    let mut head = 0;
    expect(
        &mut rig,
        &mut head,
        image(2),
        ResponseType::ErrInvalidResourceId,
    );
    assert_eq!(rig.backend.stats().resources, 3, "resources kept");
    assert_eq!(rig.backend.stats().contexts, 1, "context kept");
    std::thread::sleep(Duration::from_millis(400));
    rig.tick().unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![],
        "the dropped request stays unanswered"
    );
    // A fenced request is not held behind it either.
    let next = rig.post(CONTROL_QUEUE, head, &ask(submit(&[], Some(2)), HDR));
    rig.kick(CONTROL_QUEUE).unwrap();
    assert_eq!(
        rig.used(CONTROL_QUEUE),
        vec![Used {
            head: next.head,
            len: HDR
        }]
    );
    rig.finish();
}

/// A ring stopped and not started again takes nothing: a kick does not
/// run it.
#[test]
fn a_stopped_ring_takes_nothing() {
    let mem = guest_memory(GUEST_RAM);
    let mut rig = rig(&mem, Duration::ZERO);
    let mut head = 0;
    expect(&mut rig, &mut head, image(1), ResponseType::OkNoData);
    assert_eq!(rig.stop(CONTROL_QUEUE).unwrap(), 1);
    rig.post(CONTROL_QUEUE, head, &ask(image(2), HDR));
    rig.kick(CONTROL_QUEUE).unwrap();
    assert_eq!(rig.used(CONTROL_QUEUE), vec![]);
    assert_eq!(rig.backend.stats().resources, 1);
    // Started where it stopped: the chain offered meanwhile runs.
    rig.start(CONTROL_QUEUE, 1).unwrap();
    rig.kick(CONTROL_QUEUE).unwrap();
    assert_eq!(rig.used(CONTROL_QUEUE).len(), 1);
    assert_eq!(rig.backend.stats().resources, 2);
    rig.finish();
}
