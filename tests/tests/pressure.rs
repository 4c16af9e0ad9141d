//! Memory pressure and admin control end to end: a guest fills blobs
//! through a real vhost-user socket and marks some DONTNEED; an injected
//! pressure event, and separately an admin purge (`vgpuctl purge` when the
//! binary is built, the same request through the admin socket otherwise),
//! free exactly the purgeable bytes, and the WILLNEED data reads back
//! intact. Admin clients keep being served while the guest is busy.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::path::{Path, PathBuf};
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
const BLOBS: u32 = 24;
const SIZE: u64 = 256 * 1024;

fn pattern(i: u32) -> Vec<u8> {
    (0..SIZE)
        .map(|x| (x as u32).wrapping_mul(31) as u8 ^ i as u8)
        .collect()
}

/// A guest with `BLOBS` filled blobs, every third one DONTNEED, all
/// unmapped (mapped blobs are pinned and never purged). Returns the
/// DONTNEED blob numbers.
fn fill(vmm: &mut Vmm, nc: &mut NativeContext) -> Vec<u32> {
    let regions = [
        MemoryClassInstance::new(I915_MEMORY_CLASS_DEVICE, 0),
        MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0),
    ];
    let region = vmm.hostmem.clone().unwrap();
    for i in 1..=BLOBS {
        nc.gem_blob(vmm, i, i, SIZE, &regions).unwrap();
        let at = MIB + u64::from(i) * SIZE;
        assert!(matches!(
            vmm.command(&map_blob(i, at)).unwrap().1,
            Response::MapInfo(_)
        ));
        region.write(at, &pattern(i)).unwrap();
        ok(vmm.command(&unmap_blob(i)).unwrap().1).unwrap();
    }
    let dontneed: Vec<u32> = (1..=BLOBS).filter(|i| i % 3 == 0).collect();
    let reqs: Vec<I915Request<'static>> = dontneed
        .iter()
        .map(|i| gem_madvise_resource(*i, I915_MADV_DONTNEED))
        .collect();
    let (_, pending) = nc.submit(vmm, &reqs).unwrap();
    for p in &pending {
        assert_eq!(nc.read::<GemMadviseRsp>(vmm, p).unwrap().retained.get(), 1);
    }
    dontneed
}

/// Every blob not in `purged` maps and reads back byte-identical; every
/// one in it answers WILLNEED with retained = 0.
fn check(vmm: &mut Vmm, nc: &mut NativeContext, purged: &[u32]) {
    let region = vmm.hostmem.clone().unwrap();
    let reqs: Vec<I915Request<'static>> = (1..=BLOBS)
        .map(|i| gem_madvise_resource(i, I915_MADV_WILLNEED))
        .collect();
    let (_, pending) = nc.submit(vmm, &reqs).unwrap();
    for (i, p) in (1..=BLOBS).zip(&pending) {
        let retained = nc.read::<GemMadviseRsp>(vmm, p).unwrap().retained.get();
        assert_eq!(
            retained == 0,
            purged.contains(&i),
            "blob {i}: retained {retained}"
        );
        if purged.contains(&i) {
            continue;
        }
        let at = MIB + u64::from(i) * SIZE;
        assert!(matches!(
            vmm.command(&map_blob(i, at)).unwrap().1,
            Response::MapInfo(_)
        ));
        let mut back = vec![0u8; SIZE as usize];
        region.read(at, &mut back).unwrap();
        assert!(back == pattern(i), "blob {i} reads back intact");
        ok(vmm.command(&unmap_blob(i)).unwrap().1).unwrap();
    }
}

fn setup() -> (RunningBackend, Vmm, NativeContext) {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    let nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    (backend, vmm, nc)
}

fn purgeable(admin: &Path) -> u64 {
    let mut c = AdminClient::connect(admin).unwrap();
    let s: StatsReply = c.call(&Request::Stats {}).unwrap();
    s.owners.iter().find(|o| o.path == "vm1").unwrap().purgeable
}

#[test]
fn an_injected_pressure_event_frees_exactly_the_purgeable_bytes() {
    let (b, mut vmm, mut nc) = setup();
    let dontneed = fill(&mut vmm, &mut nc);
    let admin = b.admin_socket().unwrap().to_path_buf();
    let before = purgeable(&admin);
    assert_eq!(before, dontneed.len() as u64 * SIZE);
    let monitor = b.monitor().unwrap();
    monitor.inject().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        if let Some(r) = monitor.status().recent.first().cloned() {
            break r;
        }
        assert!(Instant::now() < deadline, "no shrink after the event");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(record.trigger, "injected");
    assert_eq!(record.purged_bytes, before, "exactly the purgeable bytes");
    assert_eq!(record.purged_objects, dontneed.len() as u64);
    assert_eq!(purgeable(&admin), 0);
    check(&mut vmm, &mut nc, &dontneed);
}

/// `vgpuctl`, next to this test's executable when the workspace's binaries
/// are built (`cargo test --workspace` builds them).
fn vgpuctl() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("vgpuctl");
    path.exists().then_some(path)
}

#[test]
fn an_admin_purge_frees_exactly_the_purgeable_bytes() {
    let (b, mut vmm, mut nc) = setup();
    let dontneed = fill(&mut vmm, &mut nc);
    let admin = b.admin_socket().unwrap().to_path_buf();
    let before = purgeable(&admin);
    let freed = match vgpuctl() {
        Some(bin) => {
            let o = std::process::Command::new(bin)
                .arg("--socket")
                .arg(&admin)
                .args(["--json", "purge"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let r: ShrinkRow = serde_json_from(&o.stdout);
            r.purged_bytes
        }
        None => {
            eprintln!("vgpuctl is not built: sending its request through the admin socket");
            let mut c = AdminClient::connect(&admin).unwrap();
            let r: ShrinkRow = c.call(&Request::Purge { owner: None }).unwrap();
            r.purged_bytes
        }
    };
    assert_eq!(freed, before);
    assert_eq!(freed, dontneed.len() as u64 * SIZE);
    check(&mut vmm, &mut nc, &dontneed);
}

fn serde_json_from<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn admin_clients_are_served_while_the_guest_is_busy() {
    let (b, mut vmm, mut nc) = setup();
    let admin = b.admin_socket().unwrap().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let admin = admin.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = AdminClient::connect(&admin).unwrap();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = match (t + n) % 4 {
                        0 => Request::Stats {},
                        1 => Request::List {
                            owner: None,
                            state: None,
                            limit: Some(10),
                        },
                        2 => Request::Metrics {},
                        _ => Request::Purge { owner: None },
                    };
                    c.request(&r).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    // The guest works meanwhile: blobs, madvise, purges racing with it.
    let dontneed = fill(&mut vmm, &mut nc);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        assert!(c.join().unwrap() > 0);
    }
    // The racing purges took some DONTNEED blobs; a last one takes the
    // rest. Every WILLNEED blob is intact.
    let mut c = AdminClient::connect(&admin).unwrap();
    let _: ShrinkRow = c.call(&Request::Purge { owner: None }).unwrap();
    check(&mut vmm, &mut nc, &dontneed);
    assert!(matches!(
        vmm.command(&Command::GetDisplayInfo(hdr(CommandType::GetDisplayInfo)))
            .unwrap()
            .1,
        Response::DisplayInfo(_)
    ));
}

/// What a Linux guest does: MAPPABLE blobs stay mapped from creation to
/// destruction. A mapped DONTNEED blob in system memory is still purged;
/// the guest's mapping then reads zeros, WILLNEED answers retained = 0 and
/// unmapping works.
#[test]
fn blobs_the_guest_keeps_mapped_are_purged_too() {
    let (b, mut vmm, mut nc) = setup();
    let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let region = vmm.hostmem.clone().unwrap();
    let at = |i: u32| MIB + u64::from(i) * SIZE;
    for i in 1..=2u32 {
        nc.gem_blob(&mut vmm, i, i, SIZE, &system).unwrap();
        assert!(matches!(
            vmm.command(&map_blob(i, at(i))).unwrap().1,
            Response::MapInfo(_)
        ));
        region.write(at(i), &pattern(i)).unwrap();
    }
    assert!(nc.madvise(&mut vmm, 2, I915_MADV_DONTNEED).unwrap());
    let mut c = AdminClient::connect(b.admin_socket().unwrap()).unwrap();
    let logged = vmm.shmem_log().len();
    let r: ShrinkRow = c.call(&Request::Purge { owner: None }).unwrap();
    assert_eq!((r.purged_objects, r.purged_bytes), (1, SIZE));
    // The device remaps the purged blob's range over scratch memory
    // (SHMEM_UNMAP, then SHMEM_MAP); the range is a hole in between.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vmm.shmem_log()[logged..].contains(&(true, at(2), SIZE)) {
        assert!(
            Instant::now() < deadline,
            "the purged blob was never remapped: {:?}",
            &vmm.shmem_log()[logged..]
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut back = vec![1u8; SIZE as usize];
    region.read(at(2), &mut back).unwrap();
    assert!(
        back.iter().all(|b| *b == 0),
        "the purged blob's mapping reads zeros"
    );
    region.read(at(1), &mut back).unwrap();
    assert!(back == pattern(1), "the WILLNEED blob is intact");
    assert!(!nc.madvise(&mut vmm, 2, I915_MADV_WILLNEED).unwrap());
    for i in 1..=2u32 {
        ok(vmm.command(&unmap_blob(i)).unwrap().1).unwrap();
    }
}
