//! A purged buffer the guest still maps never becomes memory nobody
//! accounts: the hostile guest's loop — map a blob, mark it DONTNEED, let
//! the host purge it, write through the mapping anyway, allocate the next —
//! through a real vhost-user socket, with the frontend as strict as QEMU
//! 11.1 about SHMEM_MAP / SHMEM_UNMAP. The daemon remaps each purged range
//! over the VM's scratch file, and the shared memory the daemon and the
//! frontend hold for the VM stays within its quota.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use vgpu_device::admin::protocol::{ShrinkRow, StatsReply};
use vgpu_device::admin::{AdminClient, Request};
use vgpu_device::config::DeviceConfig;
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::vmm::{Vmm, VmmOptions};

const MIB: u64 = 1 << 20;

/// Bytes of every vgpu buffer file this process holds or maps — the
/// daemon's (in this process) and the frontend's mappings alike — each
/// file counted once.
fn vgpu_shmem() -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for dir in ["/proc/self/fd", "/proc/self/map_files"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let is_vgpu = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:vgpu:"));
            if !is_vgpu {
                continue;
            }
            if let Ok(m) = std::fs::metadata(e.path()) {
                if seen.insert((m.dev(), m.ino())) {
                    total += m.blocks() * 512;
                }
            }
        }
    }
    total
}

/// Waits until the frontend saw the range at `at` unmapped and mapped
/// again (the daemon's remap over the scratch file).
fn wait_remapped(vmm: &Vmm, at: u64, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = vmm.shmem_log();
        let unmapped = log.iter().position(|e| *e == (false, at, len));
        if unmapped.is_some_and(|i| log[i..].contains(&(true, at, len))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the purged range at {at:#x} was never remapped: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_hostile_map_dontneed_purge_write_loop_stays_within_the_quota() {
    let _ = env_logger::builder().is_test(true).try_init();
    let quota = 16 * MIB;
    let blob = MIB;
    let b = RunningBackend::in_process(
        DeviceConfig {
            vm_quota: Some(quota),
            buffer_cache: 0,
            ..DeviceConfig::default()
        },
        1,
    )
    .unwrap();
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    let region = vmm.hostmem.clone().unwrap();
    let mut admin = AdminClient::connect(b.admin_socket().unwrap()).unwrap();
    let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let rounds = 48u32;
    let mut mapped = Vec::new();
    for i in 0..rounds {
        let res = i + 1;
        let at = 64 * MIB + u64::from(i) * blob;
        nc.gem_blob(&mut vmm, res, res, blob, &system).unwrap();
        assert!(
            matches!(
                vmm.command(&map_blob(res, at)).unwrap().1,
                Response::MapInfo(_)
            ),
            "round {i}: map"
        );
        region.write(at, &vec![0xa5; blob as usize]).unwrap();
        assert!(nc.madvise(&mut vmm, res, I915_MADV_DONTNEED).unwrap());
        let purge: ShrinkRow = admin.call(&Request::Purge { owner: None }).unwrap();
        assert!(purge.purged_bytes >= blob, "round {i}: {purge:?}");
        mapped.push(at);
        // The hostile part: write through every mapping, purged or not,
        // before and after the daemon's remap (in between, the range is a
        // hole, as in QEMU's BAR: the write is dropped).
        match region.write(at, &vec![0x5a; blob as usize]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("round {i}: {e}"),
        }
        wait_remapped(&vmm, at, blob);
        for &m in &mapped {
            region.write(m, &vec![i as u8; blob as usize]).unwrap();
        }
        let held = vgpu_shmem();
        assert!(
            held <= quota,
            "round {i}: the VM's shared memory is {held} B, beyond its {quota}-byte quota"
        );
        // Its purged blobs answer retained = 0, and the ranges it still
        // maps read what it wrote last (scratch memory, not its data).
        assert!(!nc.madvise(&mut vmm, res, I915_MADV_WILLNEED).unwrap());
        let mut back = vec![0u8; 16];
        region.read(at, &mut back).unwrap();
        assert_eq!(back, vec![i as u8; 16]);
    }
    // The daemon's books say the same: purged buffers accounted as one
    // scratch reservation, within the quota, and the admin socket shows it.
    let stats: StatsReply = admin.call(&Request::Stats {}).unwrap();
    let vm = stats
        .owners
        .iter()
        .find(|o| o.path == "vm0" || o.path.starts_with("vm"))
        .unwrap();
    assert!(vm.charged <= quota, "{vm:?}");
    assert_eq!(vm.scratch_reserved, blob, "{vm:?}");
    assert!(vm.scratch_bytes <= blob, "{vm:?}");
    assert_eq!(vm.purged_objects, u64::from(rounds));
    // A shrink empties the scratch file; unmapping and unref free the rest.
    let purge: ShrinkRow = admin.call(&Request::Purge { owner: None }).unwrap();
    assert_eq!(purge.scratch_bytes, blob, "{purge:?}");
    for i in 0..rounds {
        assert_eq!(
            vmm.command(&unmap_blob(i + 1)).unwrap().1,
            Response::OkNoData
        );
        assert_eq!(vmm.command(&unref(i + 1)).unwrap().1, Response::OkNoData);
    }
    let stats: StatsReply = admin.call(&Request::Stats {}).unwrap();
    let vm = stats
        .owners
        .iter()
        .find(|o| o.path.starts_with("vm"))
        .unwrap();
    assert_eq!((vm.scratch_reserved, vm.scratch_bytes), (0, 0), "{vm:?}");
    // Every UNMAP named exactly one earlier MAP (the strict frontend would
    // have refused anything else and the daemon would have logged it).
    let log = vmm.shmem_log();
    let maps = log.iter().filter(|e| e.0).count();
    let unmaps = log.iter().filter(|e| !e.0).count();
    assert_eq!(
        maps,
        unmaps + 1,
        "only the response blob stays mapped: {log:?}"
    );
}
