//! The device end to end over the real i915 / xe drivers running on fake
//! kernels that answer their ioctls (no Intel GPU here): the guest's
//! native context sees the kernel's memory regions, its blobs
//! are GEM objects mapped into the host-visible region through their
//! dma-bufs, madvise reaches the kernel, GEM contexts and GEM_EXECBUFFER2
//! are forwarded with handle translation and the kernel's out-fence, and
//! everything is closed when the VM leaves.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::sync::Arc;
use std::time::Duration;

use vgpu_backend::intel::fake::{FakeKernel, Flavor, FAKE_DEVICE_ID, FAKE_TOPOLOGY};
use vgpu_backend::intel::uapi::{self, I915_EXEC_FENCE_OUT};
use vgpu_backend::intel::GemDriver;
use vgpu_backend::pressure::{MonitorConfig, SourceChoice};
use vgpu_backend::BufferManager;
use vgpu_device::admin::protocol::StatsReply;
use vgpu_device::admin::{AdminClient, Request};
use vgpu_device::config::DeviceConfig;
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::vmm::{Request as QueueRequest, Vmm, VmmOptions, CTRL};

const MIB: u64 = 1 << 20;

/// The daemon over the real driver of `kernel`'s flavour, running on it.
fn backend_over(kernel: &Arc<FakeKernel>) -> RunningBackend {
    let bm = BufferManager::new(&GemDriver::new(kernel.open().unwrap()).unwrap()).unwrap();
    RunningBackend::with_buffer_manager(
        DeviceConfig::default(),
        MonitorConfig {
            source: SourceChoice::None,
            ..MonitorConfig::default()
        },
        bm,
        1,
    )
    .unwrap()
}

fn system() -> [MemoryClassInstance; 1] {
    [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)]
}

#[test]
fn guest_blobs_are_gem_objects_of_the_kernel() {
    let _ = env_logger::builder().is_test(true).try_init();
    for flavor in [Flavor::I915, Flavor::Xe] {
        let kernel = Arc::new(FakeKernel::new(flavor, 512 * MIB, &[64 * MIB]));
        let mut b = backend_over(&kernel);
        let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
        let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
        // The guest sees the kernel's regions.
        let (_, p) = nc
            .submit(
                &mut vmm,
                &[queryparam(DRM_I915_QUERY_MEMORY_REGIONS, 16 + 2 * 88)],
            )
            .unwrap();
        let rsp = nc.response(&vmm, &p[0]).unwrap();
        assert!(rsp.len() >= 8 + 16 + 2 * 88, "{} bytes", rsp.len());
        // A blob in device memory, mapped, written, mapped again elsewhere.
        let regions = [
            MemoryClassInstance::new(I915_MEMORY_CLASS_DEVICE, 0),
            MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0),
        ];
        nc.gem_blob(&mut vmm, 1, 1, 2 * MIB, &regions).unwrap();
        let region = vmm.hostmem.clone().unwrap();
        assert!(matches!(
            vmm.command(&map_blob(1, MIB)).unwrap().1,
            Response::MapInfo(_)
        ));
        region.write(MIB, &[0xab; 4096]).unwrap();
        ok(vmm.command(&unmap_blob(1)).unwrap().1).unwrap();
        assert!(matches!(
            vmm.command(&map_blob(1, 8 * MIB)).unwrap().1,
            Response::MapInfo(_)
        ));
        let mut back = [0u8; 4096];
        region.read(8 * MIB, &mut back).unwrap();
        assert_eq!(back, [0xab; 4096], "the same GEM object's pages");
        assert_eq!(kernel.bytes_in(1), 2 * MIB, "placed in device memory");
        ok(vmm.command(&unmap_blob(1)).unwrap().1).unwrap();
        // madvise: i915 passes it to the kernel for a buffer no one maps
        // (the kernel's purge reaches the guest as retained = 0); one the
        // VMM has mapped keeps its pages in the kernel, whatever the guest
        // says, so nothing can fault on it.
        nc.gem_blob(&mut vmm, 2, 2, MIB, &regions).unwrap();
        if flavor == Flavor::I915 {
            // The GPU uses it (so the kernel holds its pages); no one maps it.
            let objs = [exec_object(2)];
            let batch = gem_execbuffer2(0, 0, 64, &objs, &[]);
            assert_eq!(exec_ret(&mut nc, &mut vmm, &batch), 0);
            kernel.complete_all();
        }
        assert!(nc.madvise(&mut vmm, 1, I915_MADV_DONTNEED).unwrap());
        assert!(nc.madvise(&mut vmm, 2, I915_MADV_DONTNEED).unwrap());
        let purged = kernel.purge_dontneed();
        let retained =
            [1, 2].map(|res| u32::from(nc.madvise(&mut vmm, res, I915_MADV_WILLNEED).unwrap()));
        match flavor {
            Flavor::I915 => assert_eq!((purged, retained), (1, [1, 0])),
            Flavor::Xe => assert_eq!((purged, retained), (0, [1, 1]), "no kernel madvise on xe"),
        }
        // The admin socket names the driver.
        let mut c = AdminClient::connect(b.admin_socket().unwrap()).unwrap();
        let s: StatsReply = c.call(&Request::Stats {}).unwrap();
        assert_eq!(s.driver, kernel.flavor().name());
        assert!(s.regions.iter().all(|r| !r.emulated));
        vmm.disconnect();
        b.join(Duration::from_secs(10)).unwrap();
        assert_eq!(
            kernel.live_objects(),
            0,
            "every GEM handle closed after the VM left"
        );
        assert_eq!(kernel.sigbus_hazards(), 0);
    }
}

fn exec_ret(nc: &mut NativeContext, vmm: &mut Vmm, req: &I915Request<'_>) -> i32 {
    let (r, p) = nc.submit(vmm, std::slice::from_ref(req)).unwrap();
    ok(r).unwrap();
    match req {
        I915Request::GemContextCreate { .. } => {
            let rsp = nc.read::<GemContextCreateRsp>(vmm, &p[0]).unwrap();
            match rsp.ret.get() {
                0 => rsp.ctx_id.get() as i32,
                e => -e,
            }
        }
        _ => -nc.read::<GemExecbuffer2Rsp>(vmm, &p[0]).unwrap().ret.get(),
    }
}

#[test]
fn execbuffer_goes_to_the_kernel_with_translated_handles_and_its_fence() {
    let _ = env_logger::builder().is_test(true).try_init();
    let kernel = Arc::new(FakeKernel::new(Flavor::I915, 512 * MIB, &[]));
    let mut b = backend_over(&kernel);
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    // The guest's driver sees the host GPU: its ids and its topology.
    let topo = FAKE_TOPOLOGY.len() as u32;
    let (_, p) = nc
        .submit(&mut vmm, &[getparam(4), queryparam(1, topo)])
        .unwrap();
    let gp = nc.read::<GetParamRsp>(&vmm, &p[0]).unwrap();
    assert_eq!((gp.ret.get(), gp.value.get()), (0, FAKE_DEVICE_ID));
    let q = nc.response(&vmm, &p[1]).unwrap();
    assert_eq!(
        i32::from_le_bytes(q[12..16].try_into().unwrap()),
        topo as i32
    );
    assert_eq!(&q[16..], FAKE_TOPOLOGY);
    nc.gem_blob(&mut vmm, 1, 11, 64 * 1024, &system()).unwrap(); // target
    nc.gem_blob(&mut vmm, 2, 12, 4096, &system()).unwrap(); // batch
    let ctx = exec_ret(&mut nc, &mut vmm, &gem_context_create(0));
    assert!(ctx > 0, "GEM_CONTEXT_CREATE answered {ctx}");
    assert_eq!(kernel.contexts().len(), 1, "a kernel context backs it");

    // Object 11 has one relocation pointing at the batch (resource 12).
    let objs = [
        ExecObject2 {
            relocation_count: 1.into(),
            flags: (1u64 << 2).into(), // EXEC_OBJECT_WRITE
            ..exec_object(11)
        },
        exec_object(12),
    ];
    let relocs = [RelocationEntry {
        target_handle: 12.into(),
        offset: 64.into(),
        ..RelocationEntry::default()
    }];
    // RENDER, NO_RELOC, and a guest FENCE_OUT the host drops.
    let flags = 1 | (1 << 11) | (1 << 17);
    let builder_req = gem_execbuffer2(ctx as u64, flags, 64, &objs, &relocs);
    nc.builder.push(&builder_req).unwrap();
    let stream = nc.builder.take_stream();
    let Command::Submit3d { mut cmd, data } = submit_3d(1, &stream) else {
        unreachable!()
    };
    cmd.hdr = fenced(cmd.hdr, 7, Some(0));
    let (head, out) = vmm
        .post(
            CTRL,
            &QueueRequest::of(Command::Submit3d { cmd, data }.to_bytes(), 64),
        )
        .unwrap();
    // The kernel has not finished: the fenced command waits, the buffers
    // are busy for the guest.
    assert!(
        vmm.wait_used(CTRL, Duration::from_millis(300)).is_err(),
        "completed before the kernel's fence signaled"
    );
    let subs = kernel.submissions();
    assert_eq!(subs.len(), 1);
    let s = &subs[0];
    assert_eq!(s.context, kernel.contexts().keys().copied().next().unwrap());
    assert_eq!(
        s.flags,
        1 | (1 << 11) | I915_EXEC_FENCE_OUT,
        "guest fence flags dropped; the out-fence is vgpu's own"
    );
    assert_eq!(s.batch, (0, 64));
    assert_eq!(s.handles.len(), 2);
    assert_eq!(
        s.reloc_targets,
        vec![s.handles[1]],
        "relocation target translated to the batch's handle"
    );
    assert!(s.handles.iter().all(|h| kernel.is_busy(*h).unwrap()));
    // The kernel finishes; the engine sees the out-fence and the guest's
    // fence completes.
    assert_eq!(kernel.complete_all(), 1);
    let used = vmm.wait_used(CTRL, Duration::from_secs(5)).unwrap();
    assert_eq!(used.iter().map(|u| u.head).collect::<Vec<_>>(), vec![head]);
    let (rh, r) = Response::decode(&vmm.read_response(&out, used[0].len).unwrap()).unwrap();
    assert_eq!((r, rh.fence_id.get()), (Response::OkNoData, 7));
    vmm.reset_scratch();
    let (_, p) = nc.submit(&mut vmm, &[gem_busy(11)]).unwrap();
    assert_eq!(nc.read::<GemBusyRsp>(&vmm, &p[0]).unwrap().busy.get(), 0);

    // What the kernel refuses, and what vgpu refuses before it.
    let secure = gem_execbuffer2(ctx as u64, 1 << 9, 0, &objs[1..], &[]);
    assert_eq!(
        exec_ret(&mut nc, &mut vmm, &secure),
        -EINVAL,
        "I915_EXEC_SECURE"
    );
    let unknown_ctx = gem_execbuffer2(99, 0, 0, &objs[1..], &[]);
    assert_eq!(exec_ret(&mut nc, &mut vmm, &unknown_ctx), -ENOENT);
    let twice = [exec_object(12), exec_object(12)];
    assert_eq!(
        exec_ret(&mut nc, &mut vmm, &gem_execbuffer2(0, 0, 0, &twice, &[])),
        -EINVAL
    );
    let misaligned = gem_execbuffer2(0, 0, 12, &objs[1..], &[]);
    assert_eq!(
        exec_ret(&mut nc, &mut vmm, &misaligned),
        -EINVAL,
        "the kernel's batch_len check"
    );
    assert_eq!(
        kernel.submissions().len(),
        1,
        "nothing refused reached the GPU"
    );
    // Guest context 0 runs on a private kernel context, never on the DRM
    // file's default context that every guest context would share.
    assert!(nc.madvise(&mut vmm, 12, I915_MADV_WILLNEED).unwrap());
    let plain = gem_execbuffer2(0, 0, 64, &objs[1..], &[]);
    assert_eq!(exec_ret(&mut nc, &mut vmm, &plain), 0);
    let subs = kernel.submissions();
    let private = subs[1].context;
    assert_ne!(private, 0);
    assert_ne!(private, subs[0].context);
    assert!(kernel.contexts().contains_key(&private));
    assert_eq!(exec_ret(&mut nc, &mut vmm, &plain), 0);
    assert_eq!(kernel.submissions()[2].context, private, "created once");
    kernel.complete_all();

    // GEM_CONTEXT_DESTROY reaches the kernel; a VM leaving destroys the rest.
    let destroy = I915Request::IoctlSimple {
        req: IoctlSimpleReq {
            cmd: uapi::DRM_IOCTL_I915_GEM_CONTEXT_DESTROY.into(),
            ..IoctlSimpleReq::default()
        },
        payload: &(ctx as u64).to_le_bytes(),
    };
    let (_, p) = nc.submit(&mut vmm, &[destroy]).unwrap();
    assert_eq!(nc.read::<IoctlSimpleRsp>(&vmm, &p[0]).unwrap().ret.get(), 0);
    assert_eq!(
        kernel.contexts().keys().copied().collect::<Vec<_>>(),
        vec![private],
        "only the private context of guest context 0 is left"
    );
    assert!(exec_ret(&mut nc, &mut vmm, &gem_context_create(0)) > 0);
    vmm.disconnect();
    b.join(Duration::from_secs(10)).unwrap();
    assert!(
        kernel.contexts().is_empty(),
        "kernel contexts destroyed with the VM"
    );
    assert_eq!(kernel.live_objects(), 0);
    assert_eq!(kernel.sigbus_hazards(), 0);
}

#[test]
fn on_xe_native_submission_says_enodev_and_buffers_still_work() {
    let kernel = Arc::new(FakeKernel::new(Flavor::Xe, 512 * MIB, &[]));
    let mut b = backend_over(&kernel);
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    nc.gem_blob(&mut vmm, 1, 11, 4096, &system()).unwrap();
    assert_eq!(exec_ret(&mut nc, &mut vmm, &gem_context_create(0)), -19);
    let objs = [exec_object(11)];
    assert_eq!(
        exec_ret(&mut nc, &mut vmm, &gem_execbuffer2(0, 0, 0, &objs, &[])),
        -19
    );
    assert!(kernel.submissions().is_empty());
    vmm.disconnect();
    b.join(Duration::from_secs(10)).unwrap();
    assert_eq!(kernel.live_objects(), 0);
    assert_eq!(kernel.sigbus_hazards(), 0);
}

/// IOCTL_SIMPLE of `ioctl` on the i915 fake: `ret` and the argument back.
fn simple(nc: &mut NativeContext, vmm: &mut Vmm, ioctl: u32, arg: &[u8]) -> (i32, Vec<u8>) {
    nc.ioctl(vmm, ioctl, arg).unwrap()
}

#[test]
fn ioctl_simple_reaches_the_kernel_with_guest_ids_translated() {
    use zerocopy::{FromBytes, IntoBytes};
    let _ = env_logger::builder().is_test(true).try_init();
    let kernel = Arc::new(FakeKernel::new(Flavor::I915, 512 * MIB, &[]));
    let mut b = backend_over(&kernel);
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    // A resource id no kernel handle could be.
    nc.gem_blob(&mut vmm, 1, 500, 64 * 1024, &system()).unwrap();

    // Two GEM contexts (one made by GEM_CONTEXT_CREATE, one by
    // IOCTL_SIMPLE) and a VM; guest ids from 1, kernel ids the kernel's.
    assert_eq!(exec_ret(&mut nc, &mut vmm, &gem_context_create(0)), 1);
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
        GemContextCreate::default().as_bytes(),
    );
    assert_eq!(ret, 0);
    assert_eq!(
        GemContextCreate::read_from_bytes(&back)
            .unwrap()
            .ctx_id
            .get(),
        2
    );
    assert_eq!(kernel.contexts().len(), 2);
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_VM_CREATE,
        GemVmControl::default().as_bytes(),
    );
    assert_eq!(ret, 0);
    assert_eq!(GemVmControl::read_from_bytes(&back).unwrap().vm_id.get(), 1);
    let vms_before = kernel.vm_ids();
    assert_eq!(vms_before.len(), 1);
    // A VM extension chain would be a guest pointer: refused before the kernel.
    let chained = GemVmControl {
        extensions: 0x1000.into(),
        ..GemVmControl::default()
    };
    let (ret, _) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_VM_CREATE,
        chained.as_bytes(),
    );
    assert_eq!(ret, EINVAL);
    assert_eq!(kernel.vm_ids(), vms_before);

    // Context 2 takes guest VM 1: the kernel's context gets the kernel's VM.
    let param = |ctx: u32, param: u64, value: u64| GemContextParam {
        ctx_id: ctx.into(),
        param: param.into(),
        value: value.into(),
        ..GemContextParam::default()
    };
    let set_vm = param(2, I915_CONTEXT_PARAM_VM, 1);
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
        set_vm.as_bytes(),
    );
    assert_eq!(
        (ret, back.as_slice()),
        (0, set_vm.as_bytes()),
        "guest ids go back"
    );
    let unknown_vm = param(2, I915_CONTEXT_PARAM_VM, 7);
    let (ret, _) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
        unknown_vm.as_bytes(),
    );
    assert_eq!(ret, ENOENT);
    // GETPARAM(VM): the kernel hands out a new VM id, the guest one of its own.
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
        param(2, I915_CONTEXT_PARAM_VM, 0).as_bytes(),
    );
    assert_eq!(ret, 0);
    let got = GemContextParam::read_from_bytes(&back).unwrap();
    assert_eq!((got.ctx_id.get(), got.value.get()), (2, 2));
    assert_eq!(kernel.vm_ids().len(), 2);
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
        param(1, I915_CONTEXT_PARAM_GTT_SIZE, 0).as_bytes(),
    );
    assert_eq!(ret, 0);
    assert_ne!(
        GemContextParam::read_from_bytes(&back).unwrap().value.get(),
        0
    );
    let (ret, _) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
        param(9, I915_CONTEXT_PARAM_GTT_SIZE, 0).as_bytes(),
    );
    assert_eq!(
        ret, ENOENT,
        "an unknown guest context never reaches the kernel"
    );

    // SET_TILING of resource 500 reaches the kernel as its GEM handle.
    let tiling = GemSetTiling {
        handle: 500.into(),
        tiling_mode: I915_TILING_X.into(),
        stride: 512.into(),
        swizzle_mode: 0.into(),
    };
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_SET_TILING,
        tiling.as_bytes(),
    );
    assert_eq!(ret, 0);
    assert_eq!(
        GemSetTiling::read_from_bytes(&back).unwrap().handle.get(),
        500
    );
    let tiled: Vec<u32> = (1..64)
        .filter(|h| kernel.tiling(*h) == Some((I915_TILING_X, 512)))
        .collect();
    assert_eq!(tiled.len(), 1, "one kernel object is tiled");
    let (ret, back) = simple(
        &mut nc,
        &mut vmm,
        DRM_IOCTL_I915_GEM_GET_TILING,
        GemGetTiling {
            handle: 500.into(),
            ..GemGetTiling::default()
        }
        .as_bytes(),
    );
    assert_eq!(ret, 0);
    assert_eq!(
        GemGetTiling::read_from_bytes(&back)
            .unwrap()
            .tiling_mode
            .get(),
        I915_TILING_X
    );
    let reg = RegRead {
        offset: 0x2359.into(),
        ..RegRead::default()
    };
    assert_eq!(
        simple(&mut nc, &mut vmm, DRM_IOCTL_I915_REG_READ, reg.as_bytes()).0,
        0
    );

    // Destroying guest context 2 destroys its kernel context; leaving
    // destroys the rest, VM ids included.
    let destroy = GemContextDestroy {
        ctx_id: 2.into(),
        ..GemContextDestroy::default()
    };
    assert_eq!(
        simple(
            &mut nc,
            &mut vmm,
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            destroy.as_bytes()
        )
        .0,
        0
    );
    assert_eq!(kernel.contexts().len(), 1);
    vmm.disconnect();
    b.join(Duration::from_secs(10)).unwrap();
    assert!(kernel.contexts().is_empty());
    assert!(kernel.vm_ids().is_empty(), "VM ids released with the VM");
    assert_eq!(kernel.live_objects(), 0);
}

#[test]
fn a_context_the_kernel_banned_shows_in_the_ban_mask() {
    let _ = env_logger::builder().is_test(true).try_init();
    let kernel = Arc::new(FakeKernel::new(Flavor::I915, 512 * MIB, &[]));
    let mut b = backend_over(&kernel);
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    nc.gem_blob(&mut vmm, 1, 11, 4096, &system()).unwrap();
    let ctx = exec_ret(&mut nc, &mut vmm, &gem_context_create(0));
    assert_eq!(ctx, 1);
    let mask = |vmm: &Vmm| {
        let mut b = [0u8; 8];
        vmm.hostmem.as_ref().unwrap().read(8, &mut b).unwrap();
        u64::from_le_bytes(b)
    };
    assert_eq!(mask(&vmm), 0);
    // The kernel refuses a banned context's batches with EIO.
    kernel.fail_next(
        uapi::DRM_IOCTL_I915_GEM_EXECBUFFER2_WR,
        rustix::io::Errno::IO,
    );
    let batch = [exec_object(11)];
    let exec = gem_execbuffer2(1, 0, 64, &batch, &[]);
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), -EIO);
    assert_eq!(mask(&vmm), 1 << 1, "context 1's bit");
    // Other failures ban nothing.
    kernel.fail_next(
        uapi::DRM_IOCTL_I915_GEM_EXECBUFFER2_WR,
        rustix::io::Errno::NOMEM,
    );
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), -ENOMEM);
    assert_eq!(mask(&vmm), 1 << 1);
    // Destroying the context clears its bit; the guest makes a new one.
    let (ret, _) = nc
        .ioctl(
            &mut vmm,
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            &1u64.to_le_bytes(),
        )
        .unwrap();
    assert_eq!(ret, 0);
    assert_eq!(mask(&vmm), 0);
    vmm.disconnect();
    b.join(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_dontneed_batch_runs_until_the_kernel_purges_it() {
    let _ = env_logger::builder().is_test(true).try_init();
    let kernel = Arc::new(FakeKernel::new(Flavor::I915, 512 * MIB, &[]));
    let mut b = backend_over(&kernel);
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    nc.gem_blob(&mut vmm, 1, 12, 4096, &system()).unwrap();
    let batch = [exec_object(12)];
    let exec = gem_execbuffer2(0, 0, 64, &batch, &[]);
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), 0);
    kernel.complete_all();
    // i915 keeps a DONTNEED object's pages until its shrinker takes them:
    // the batch still runs.
    assert!(nc.madvise(&mut vmm, 12, I915_MADV_DONTNEED).unwrap());
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), 0);
    kernel.complete_all();
    // The kernel's shrinker purges it: the kernel says EFAULT.
    assert_eq!(kernel.purge_dontneed(), 1);
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), -14);
    // Mapping it finds it gone: refused, never mapped (a real i915 would
    // raise SIGBUS on the first touch).
    let map = vmm.command(&map_blob(12, MIB)).unwrap().1;
    assert!(matches!(map, Response::Error(_)), "{map:?}");
    assert_eq!(kernel.sigbus_hazards(), 0);
    // From then on vgpu knows the buffer is dead: it refuses it itself,
    // with the kernel's errno, and the guest hears retained = 0.
    let submitted = kernel.submissions().len();
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), -14);
    assert!(!nc.madvise(&mut vmm, 12, I915_MADV_WILLNEED).unwrap());
    assert_eq!(exec_ret(&mut nc, &mut vmm, &exec), -14);
    assert_eq!(
        kernel.submissions().len(),
        submitted,
        "refused before the kernel"
    );
    vmm.disconnect();
    b.join(Duration::from_secs(10)).unwrap();
    assert_eq!(kernel.live_objects(), 0);
}
