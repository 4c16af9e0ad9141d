//! The Intel driver without Intel hardware: uapi layouts against the
//! kernel headers of this machine, the driver over fake i915 and xe
//! kernels (every path: placement, eviction, CPU access, PRIME export,
//! madvise pass-through and the kernel's own purges, errors), parsing of
//! the kernels' region replies, and render-node detection over a fake
//! /dev/dri.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustix::io::Errno;
use vgpu_backend::intel::detect::{choose, choose_with, render_nodes, GpuChoice};
use vgpu_backend::intel::fake::{FakeKernel, Flavor};
use vgpu_backend::intel::uapi::c_layout_checks;
use vgpu_backend::intel::{GemDriver, GemKernel, I915Kernel, XeKernel};
use vgpu_backend::*;

use common::*;

const MIB: u64 = 1 << 20;

#[test]
fn uapi_layouts_match_the_kernel_headers_of_this_machine() {
    let headers = ["/usr/include/drm/i915_drm.h", "/usr/include/drm/xe_drm.h"];
    for h in headers {
        assert!(
            Path::new(h).exists(),
            "{h} is missing: install the kernel uapi headers (Debian: apt-get install -t bookworm-backports linux-libc-dev)"
        );
    }
    let src = c_layout_checks();
    assert!(
        src.matches("_Static_assert").count() > 150,
        "every field is checked"
    );
    let mut cc = Command::new("cc")
        .args(["-fsyntax-only", "-x", "c", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a C compiler (cc)");
    cc.stdin.take().unwrap().write_all(src.as_bytes()).unwrap();
    let out = cc.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "layout mismatch:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the check really checks: a wrong size is caught.
    let wrong = src.replace(
        "sizeof(struct drm_i915_gem_create_ext) == 24",
        "sizeof(struct drm_i915_gem_create_ext) == 25",
    );
    assert_ne!(wrong, src);
    let mut cc = Command::new("cc")
        .args(["-fsyntax-only", "-x", "c", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cc.stdin
        .take()
        .unwrap()
        .write_all(wrong.as_bytes())
        .unwrap();
    assert!(!cc.wait().unwrap().success());
}

fn driver(flavor: Flavor, device: &[u64]) -> (Arc<FakeKernel>, BufferManager) {
    let kernel = Arc::new(FakeKernel::new(flavor, 256 * MIB, device));
    let k: Arc<dyn GemKernel> = kernel.clone();
    let bm = BufferManager::new(&GemDriver::new(k).unwrap()).unwrap();
    (kernel, bm)
}

fn dev_sys() -> Placement {
    Placement::device_then_system()
}

#[test]
fn objects_live_in_the_kernels_regions_and_move_by_cpu_copy() {
    for flavor in [Flavor::I915, Flavor::Xe] {
        let (kernel, bm) = driver(flavor, &[4 * MIB]);
        assert_eq!(
            bm.driver_name(),
            if flavor == Flavor::I915 { "i915" } else { "xe" }
        );
        let regions = bm.regions();
        assert_eq!(regions.len(), 2);
        assert!(!regions[1].emulated && regions[1].capacity == Some(4 * MIB));
        let vm = bm.create_owner("vm", None).unwrap();
        let a = bm.create(vm, 2 * MIB, dev_sys(), Priority::NORMAL).unwrap();
        let b = bm.create(vm, 2 * MIB, dev_sys(), Priority::LOW).unwrap();
        fill(&bm, a, 0, 2 * MIB, 1);
        fill(&bm, b, 0, 2 * MIB, 2);
        assert_eq!(kernel.bytes_in(1), 4 * MIB, "both in device memory");
        // A third does not fit: the lowest-priority one is evicted to
        // system memory by a CPU copy, contents intact.
        let c = bm
            .create(vm, 2 * MIB, dev_sys(), Priority::HIGHEST)
            .unwrap();
        fill(&bm, c, 0, 2 * MIB, 3);
        assert_eq!(bm.object_info(b).unwrap().region, Some(RegionId::SYSTEM));
        assert!(contents(&bm, b).unwrap().iter().all(|x| *x == 2));
        assert!(contents(&bm, a).unwrap().iter().all(|x| *x == 1));
        assert_eq!(kernel.live_objects(), 3, "the old handle was closed");
        // PRIME export: the descriptor a VMM maps shows the object.
        let t = bm.pin(c, PinReason::Mapped).unwrap();
        assert_eq!(t.caching, region::Caching::WriteCombined);
        let mut buf = [0u8; 16];
        rustix::io::pread(&t.fd, &mut buf, 0).unwrap();
        assert_eq!(buf, [3; 16]);
        bm.unpin(c, PinReason::Mapped).unwrap();
        for id in [a, b, c] {
            bm.destroy(id).unwrap();
        }
        assert_eq!(kernel.live_objects(), 0, "every handle closed");
        check_accounting(&bm);
    }
}

#[test]
fn i915_madvise_is_passed_through_and_the_kernels_purges_are_reported() {
    let (kernel, bm) = driver(Flavor::I915, &[]);
    let vm = bm.create_owner("vm", None).unwrap();
    let new = || {
        let id = bm
            .create(vm, MIB, Placement::system(), Priority::NORMAL)
            .unwrap();
        bm.validate(id, None).unwrap();
        id
    };
    // Objects no one touches by CPU (GPU-only buffers): the kernel hears
    // DONTNEED and may purge them; vgpu learns it at WILLNEED.
    let (a, b) = (new(), new());
    assert!(bm.madvise(a, Madv::DontNeed).unwrap());
    assert!(bm.madvise(b, Madv::DontNeed).unwrap());
    assert_eq!(kernel.purge_dontneed(), 2);
    assert!(
        !bm.madvise(a, Madv::WillNeed).unwrap(),
        "retained = false from the kernel"
    );
    assert_eq!(bm.object_info(a).unwrap().madv, Madv::Purged);
    assert!(matches!(contents(&bm, a), Err(BoError::Purged(_))));
    // A CPU access to an object the kernel purged fails cleanly (on real
    // i915 it would have been a SIGBUS through a mapping).
    assert!(contents(&bm, b).is_err());
    assert!(!bm.madvise(b, Madv::WillNeed).unwrap());

    // DONTNEED, still retained, then a CPU access: the kernel gets WILLNEED
    // back before vgpu maps it, and the bytes are there.
    let c = new();
    assert!(bm.madvise(c, Madv::DontNeed).unwrap());
    fill(&bm, c, 0, MIB, 3);
    assert_eq!(kernel.purge_dontneed(), 0, "the kernel keeps it now");
    assert!(contents(&bm, c).unwrap().iter().all(|x| *x == 3));

    // Mapped by vgpu, or shared with the VMM: the kernel never hears
    // DONTNEED, and vgpu's own shrinker purges them by closing them.
    let d = new();
    fill(&bm, d, 0, MIB, 4);
    let e = new();
    let target = bm.pin(e, PinReason::Mapped).unwrap();
    bm.unpin(e, PinReason::Mapped).unwrap();
    drop(target);
    for id in [c, d, e] {
        assert!(bm.madvise(id, Madv::DontNeed).unwrap());
    }
    assert_eq!(kernel.purge_dontneed(), 0, "never told");
    assert!(bm.madvise(d, Madv::WillNeed).unwrap());
    let live = kernel.live_objects();
    let r = bm.purge(None);
    assert_eq!(r.purged_objects, 2, "c and e");
    assert_eq!(kernel.live_objects(), live - 2);
    assert_eq!(kernel.sigbus_hazards(), 0, "nothing could have faulted");
    check_accounting(&bm);
}

/// A GEM object's pages go when its last reference does: a purge counts
/// them only if the kernel had pages for it (touched by CPU or GPU) and
/// nobody else holds them (a dma-buf the VMM maps keeps them until it
/// unmaps, which vgpu cannot see). The kernel's own purge counts nothing.
#[test]
fn gem_purges_count_only_what_the_kernel_really_frees() {
    for flavor in [Flavor::I915, Flavor::Xe] {
        let (kernel, bm) = driver(flavor, &[8 * MIB]);
        let vm = bm.create_owner("vm", None).unwrap();
        let sys = |bm: &BufferManager| {
            let id = bm
                .create(vm, MIB, Placement::system(), Priority::NORMAL)
                .unwrap();
            bm.validate(id, None).unwrap();
            id
        };
        let untouched = sys(&bm);
        let touched = sys(&bm);
        fill(&bm, touched, 0, MIB, 1);
        let shared = sys(&bm);
        let t = bm.pin(shared, PinReason::Mapped).unwrap();
        bm.unpin(shared, PinReason::Mapped).unwrap();
        drop(t);
        for id in [untouched, touched, shared] {
            assert!(bm.madvise(id, Madv::DontNeed).unwrap());
        }
        let r = bm.purge(None);
        assert_eq!(r.purged_objects, 3, "{flavor:?}");
        assert_eq!(
            r.purged_bytes, MIB,
            "{flavor:?}: only the touched, unshared object's pages are counted"
        );
        // i915 may drop a DONTNEED object itself: then vgpu freed nothing.
        if flavor == Flavor::I915 {
            let id = bm
                .create(vm, MIB, Placement::system(), Priority::NORMAL)
                .unwrap();
            bm.validate(id, None).unwrap();
            bm.pin_for_gpu(id).unwrap();
            bm.unpin(id, PinReason::Gpu).unwrap();
            assert!(bm.madvise(id, Madv::DontNeed).unwrap());
            assert_eq!(kernel.purge_dontneed(), 1, "the kernel purged it");
            let r = bm.purge(None);
            assert_eq!((r.purged_objects, r.purged_bytes), (1, 0));
        }
        check_accounting(&bm);
    }
}

#[test]
fn xe_has_no_kernel_madvise_so_vgpus_own_policy_applies() {
    let (kernel, bm) = driver(Flavor::Xe, &[8 * MIB]);
    let vm = bm.create_owner("vm", None).unwrap();
    let a = bm.create(vm, MIB, dev_sys(), Priority::NORMAL).unwrap();
    fill(&bm, a, 0, MIB, 9);
    assert!(bm.madvise(a, Madv::DontNeed).unwrap());
    assert_eq!(kernel.purge_dontneed(), 0, "the kernel was never told");
    assert!(bm.madvise(a, Madv::WillNeed).unwrap(), "still retained");
    bm.madvise(a, Madv::DontNeed).unwrap();
    assert_eq!(bm.purge(None).purged_objects, 1);
    assert_eq!(kernel.live_objects(), 0);
}

#[test]
fn kernel_errors_become_clear_manager_errors() {
    let (kernel, bm) = driver(Flavor::I915, &[2 * MIB]);
    let vm = bm.create_owner("vm", None).unwrap();
    // ENOMEM from the kernel means "no room": the manager evicts and tries
    // again (here the second try succeeds).
    kernel.fail_next_create(Errno::NOMEM);
    let a = bm
        .create(vm, MIB, Placement::system(), Priority::NORMAL)
        .unwrap();
    assert_eq!(bm.validate(a, None).unwrap(), RegionId::SYSTEM);
    // Anything else: an I/O error naming the operation.
    kernel.fail_next_create(Errno::INVAL);
    let b = bm
        .create(vm, MIB, Placement::system(), Priority::NORMAL)
        .unwrap();
    let err = bm.validate(b, None).unwrap_err();
    assert!(err.to_string().contains("creating a GEM object"), "{err}");
    // A device-only object larger than the device: no space.
    let c = bm
        .create(
            vm,
            4 * MIB,
            Placement::new(&[Place::new(RegionId::DEVICE)]).unwrap(),
            Priority::NORMAL,
        )
        .unwrap();
    assert!(matches!(bm.validate(c, None), Err(BoError::NoSpace { .. })));
    // The kernel's own view of a purged object: EINVAL on mmap.
    bm.madvise(a, Madv::DontNeed).unwrap();
    kernel.purge_dontneed();
    assert!(!bm.madvise(a, Madv::WillNeed).unwrap());
    for id in [b, c] {
        bm.destroy(id).unwrap();
    }
    check_accounting(&bm);
}

#[test]
fn region_replies_parse() {
    // i915: header (16 bytes), then 88-byte region infos.
    let mut d = vec![0u8; 16 + 2 * 88];
    d[0..4].copy_from_slice(&2u32.to_ne_bytes());
    let put16 =
        |d: &mut Vec<u8>, at: usize, v: u16| d[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |d: &mut Vec<u8>, at: usize, v: u64| d[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    put16(&mut d, 16, 0);
    put64(&mut d, 16 + 8, 32 << 30);
    put64(&mut d, 16 + 16, u64::MAX);
    put16(&mut d, 16 + 88, 1);
    put16(&mut d, 16 + 88 + 2, 0);
    put64(&mut d, 16 + 88 + 8, 16 << 30);
    put64(&mut d, 16 + 88 + 16, 8 << 30);
    let r = I915Kernel::parse_regions(&d).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].class, r[0].size, r[0].free),
        (MemoryClass::System, 32 << 30, None)
    );
    assert_eq!(
        (r[1].class, r[1].free),
        (MemoryClass::Device, Some(8 << 30))
    );
    assert!(I915Kernel::parse_regions(&d[..100]).is_err(), "truncated");
    // xe: header (8 bytes), then 88-byte regions with total and used.
    let mut x = vec![0u8; 8 + 88];
    x[0..4].copy_from_slice(&1u32.to_ne_bytes());
    put16(&mut x, 8, 1);
    put16(&mut x, 10, 1);
    put64(&mut x, 16, 8 << 30);
    put64(&mut x, 24, 1 << 30);
    let r = XeKernel::parse_regions(&x).unwrap();
    assert_eq!(
        (r[0].class, r[0].instance, r[0].free),
        (MemoryClass::Device, 1, Some(7 << 30))
    );
}

#[test]
fn render_nodes_are_detected_and_the_first_intel_one_used() {
    let dir = std::env::temp_dir().join(format!("vgpu-fake-dri-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Fake nodes: each file names the driver behind it.
    for (node, drv) in [
        ("card0", "virtio_gpu"),
        ("renderD128", "virtio_gpu"),
        ("renderD130", "xe"),
        ("renderD129", "i915"),
    ] {
        std::fs::write(dir.join(node), drv).unwrap();
    }
    let identify = |p: &Path| -> std::io::Result<(String, Option<OwnedFd>)> {
        Ok((std::fs::read_to_string(p)?, None))
    };
    let open = |name: &str, _fd: Option<OwnedFd>| -> std::io::Result<Arc<dyn GemKernel>> {
        Ok(Arc::new(FakeKernel::new(
            if name == "xe" {
                Flavor::Xe
            } else {
                Flavor::I915
            },
            64 * MIB,
            &[],
        )))
    };
    assert_eq!(
        render_nodes(&dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        ["renderD128", "renderD129", "renderD130"]
    );
    let d = choose_with(&GpuChoice::Auto, &dir, identify, open).unwrap();
    assert_eq!(d.node.as_deref(), Some(dir.join("renderD129").as_path()));
    assert_eq!(d.kernel.unwrap().driver(), "i915");
    let d = choose_with(
        &GpuChoice::Path(dir.join("renderD130")),
        &dir,
        identify,
        open,
    )
    .unwrap();
    assert_eq!(d.kernel.unwrap().driver(), "xe");
    let err = choose_with(
        &GpuChoice::Path(dir.join("renderD128")),
        &dir,
        identify,
        open,
    )
    .unwrap_err();
    assert!(err.contains("virtio_gpu, not i915 or xe"), "{err}");
    let d = choose_with(&GpuChoice::Emulated, &dir, identify, open).unwrap();
    assert!(d.kernel.is_none() && d.reason.contains("as asked"));
    // Only non-Intel nodes: the emulated device, saying what was found.
    std::fs::remove_file(dir.join("renderD129")).unwrap();
    std::fs::remove_file(dir.join("renderD130")).unwrap();
    let d = choose_with(&GpuChoice::Auto, &dir, identify, open).unwrap();
    assert!(d.kernel.is_none());
    assert!(d.reason.contains("renderD128: virtio_gpu"), "{}", d.reason);
    // This machine, for real: no /dev/dri at all.
    if !Path::new("/dev/dri").exists() {
        let d = choose(&GpuChoice::Auto, Path::new("/dev/dri")).unwrap();
        assert!(
            d.kernel.is_none() && d.reason.contains("no render node"),
            "{}",
            d.reason
        );
    }
    // A path that is not a DRM node at all.
    assert!(choose(&GpuChoice::Path(dir.join("card0")), &dir).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gpu_submissions_pin_translate_and_fence_through_the_kernel() {
    use vgpu_backend::intel::uapi::{I915ExecObject2, I915RelocationEntry};
    use vgpu_backend::intel::{ContextParam, GpuExec};
    let (kernel, bm) = driver(Flavor::I915, &[]);
    let owner = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(owner, 64 * 1024, Placement::system(), Priority::NORMAL)
        .unwrap();
    let batch = bm
        .create(owner, 4096, Placement::system(), Priority::NORMAL)
        .unwrap();
    let gpu = bm
        .gpu_kernel()
        .expect("a GEM driver has a GPU kernel")
        .clone();
    let ha = bm.pin_for_gpu(a).unwrap();
    let hb = bm.pin_for_gpu(batch).unwrap();
    assert_ne!(ha, hb);
    // Pinned: the shrinker cannot move or purge them meanwhile.
    bm.madvise(a, Madv::DontNeed).unwrap();
    bm.madvise(a, Madv::WillNeed).unwrap();
    let engines = ContextParam {
        param: 0xa,
        value: 0,
        data: vec![0; 8 + 4],
    };
    let ctx = gpu.context_create(std::slice::from_ref(&engines)).unwrap();
    assert_eq!(kernel.contexts()[&ctx], vec![engines]);
    assert_eq!(
        gpu.context_create(&[ContextParam {
            param: 0x9,
            value: 1,
            data: vec![]
        }]),
        Err(Errno::INVAL),
        "VM ids are refused"
    );
    let mut exec = GpuExec {
        context: ctx,
        objects: vec![
            I915ExecObject2 {
                handle: ha,
                relocation_count: 2,
                ..Default::default()
            },
            I915ExecObject2 {
                handle: hb,
                ..Default::default()
            },
        ],
        relocs: vec![
            I915RelocationEntry {
                target_handle: hb,
                ..Default::default()
            },
            I915RelocationEntry {
                target_handle: ha,
                offset: 8,
                ..Default::default()
            },
        ],
        batch_len: 4096,
        ..Default::default()
    };
    exec.link_relocations().unwrap();
    assert_eq!(exec.objects[0].relocs_ptr, exec.relocs.as_ptr() as u64);
    assert_eq!(exec.objects[1].relocs_ptr, 0);
    assert_eq!(exec.batch_index(), Some(1));
    let out_fence = gpu.execbuffer(&mut exec).unwrap();
    assert!(gpu.busy(ha).unwrap() && gpu.busy(hb).unwrap());
    let mut fds = [rustix::event::PollFd::new(
        &out_fence,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec::default();
    assert_eq!(
        rustix::event::poll(&mut fds, Some(&zero)).unwrap(),
        0,
        "still running"
    );
    assert_eq!(kernel.complete_all(), 1);
    assert_eq!(
        rustix::event::poll(&mut fds, Some(&zero)).unwrap(),
        1,
        "the out-fence signaled"
    );
    assert!(!gpu.busy(ha).unwrap());
    bm.unpin(a, PinReason::Gpu).unwrap();
    bm.unpin(batch, PinReason::Gpu).unwrap();
    assert!(matches!(
        bm.unpin(a, PinReason::Gpu),
        Err(BoError::NotPinned(_))
    ));

    // The kernel's refusals.
    let mut bad = exec.clone();
    bad.relocs.pop();
    assert_eq!(
        bad.link_relocations(),
        Err(Errno::INVAL),
        "counts must add up"
    );
    assert_eq!(gpu.execbuffer(&mut bad).unwrap_err(), Errno::INVAL);
    let mut unknown = exec.clone();
    unknown.context = 999;
    assert_eq!(gpu.execbuffer(&mut unknown).unwrap_err(), Errno::NOENT);
    let mut dup = exec.clone();
    dup.objects[1].handle = ha;
    dup.relocs.clear();
    dup.objects[0].relocation_count = 0;
    assert_eq!(gpu.execbuffer(&mut dup).unwrap_err(), Errno::INVAL);
    bm.madvise(batch, Madv::DontNeed).unwrap();
    assert_eq!(
        gpu.execbuffer(&mut exec.clone()).unwrap_err(),
        Errno::FAULT,
        "DONTNEED in the kernel"
    );
    bm.madvise(batch, Madv::WillNeed).unwrap();
    kernel.purge_dontneed();
    gpu.context_destroy(ctx);
    assert!(kernel.contexts().is_empty());
    // A purged object cannot be pinned for the GPU.
    bm.madvise(a, Madv::DontNeed).unwrap();
    assert!(bm.purge(Some(owner)).purged_objects >= 1);
    assert!(matches!(bm.pin_for_gpu(a), Err(BoError::Purged(_))));
    assert!(bm.pin_for_gpu(batch).is_ok());
}

#[test]
fn objects_the_kernel_still_uses_are_not_evicted_purged_or_copied() {
    let (kernel, bm) = driver(Flavor::I915, &[16 * MIB]);
    let owner = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(owner, 4 * MIB, dev_sys(), Priority::NORMAL)
        .unwrap();
    let h = bm.pin_for_gpu(a).unwrap();
    bm.unpin(a, PinReason::Gpu).unwrap();
    assert_eq!(kernel.bytes_in(1), 4 * MIB, "in device memory");
    // Work vgpu did not fence (another process on the exported dma-buf).
    kernel.set_busy(h, true).unwrap();
    assert!(bm.is_busy(a).unwrap(), "GEM_BUSY is consulted");
    assert!(bm
        .stats()
        .regions
        .iter()
        .all(|r| r.info.id != RegionId(1) || r.used == 4 * MIB));
    let report = bm.evict_region(RegionId(1));
    assert_eq!(
        (report.moved_objects, report.skipped),
        (0, 1),
        "a busy object is not evicted"
    );
    // A move copies with the CPU only once the kernel is done (GEM_WAIT).
    let err = bm.validate(a, Some(Placement::system())).unwrap_err();
    assert!(matches!(err, BoError::Io { .. }), "{err}");
    assert_eq!(kernel.bytes_in(1), 4 * MIB, "still where it was");
    bm.madvise(a, Madv::DontNeed).unwrap();
    assert_eq!(
        bm.purge(Some(owner)).purged_objects,
        0,
        "a busy object is not purged"
    );
    kernel.set_busy(h, false).unwrap();
    assert!(!bm.is_busy(a).unwrap());
    assert_eq!(bm.purge(Some(owner)).purged_objects, 1);
    let b = bm
        .create(owner, 4 * MIB, dev_sys(), Priority::NORMAL)
        .unwrap();
    bm.validate(b, None).unwrap();
    assert_eq!(
        bm.validate(b, Some(Placement::system())).unwrap(),
        RegionId::SYSTEM
    );
    assert_eq!((kernel.bytes_in(0), kernel.bytes_in(1)), (4 * MIB, 0));
}
