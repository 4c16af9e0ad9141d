//! Table-style tests of placement, eviction, madvise, purge, quotas and
//! teardown against the emulated driver and drivers whose device region
//! always fails.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use common::*;
use vgpu_backend::*;

fn dev_sys() -> Placement {
    Placement::device_then_system()
}

fn device_only() -> Placement {
    Placement::new(&[Place::new(RegionId::DEVICE)]).unwrap()
}

#[test]
fn creating_allocates_nothing_and_populating_creates_a_named_memfd() {
    let bm = manager(16);
    let vm = bm.create_owner("memfd-test", None).unwrap();
    let before = memfd_count("memfd-test");
    let id = bm
        .create(vm, 3 * PAGE + 1, Placement::system(), Priority::NORMAL)
        .unwrap();
    assert_eq!(bm.size(id).unwrap(), 4 * PAGE, "page aligned");
    assert_eq!(memfd_count("memfd-test"), before, "no memfd at create");
    assert_eq!(bm.owner_stats(vm).unwrap().charged, 0);
    assert_eq!(bm.object_info(id).unwrap().region, None);
    fill(&bm, id, 0, PAGE, 0xab);
    assert_eq!(
        memfd_count("memfd-test"),
        before + 1,
        "memfd created at first populate"
    );
    assert_eq!(bm.object_info(id).unwrap().region, Some(RegionId::SYSTEM));
    assert_eq!(bm.owner_stats(vm).unwrap().charged, 4 * PAGE);
    bm.destroy(id).unwrap();
    assert_eq!(
        memfd_count("memfd-test"),
        before,
        "memfd closed with the object"
    );
    check_accounting(&bm);
}

#[test]
fn invalid_sizes_regions_and_ids_are_rejected() {
    let bm = manager(16);
    let vm = bm.create_owner("vm", None).unwrap();
    assert!(matches!(
        bm.create(vm, 0, Placement::system(), Priority::NORMAL),
        Err(BoError::InvalidSize { .. })
    ));
    assert!(matches!(
        bm.create(vm, u64::MAX, Placement::system(), Priority::NORMAL),
        Err(BoError::InvalidSize { .. })
    ));
    let bad = Placement::new(&[Place::new(RegionId(3))]).unwrap();
    assert!(matches!(
        bm.create(vm, PAGE, bad, Priority::NORMAL),
        Err(BoError::NoSuchRegion(_))
    ));
    assert!(matches!(
        bm.create(
            OwnerId::from_u32(99),
            PAGE,
            Placement::system(),
            Priority::NORMAL
        ),
        Err(BoError::NoSuchOwner(_))
    ));
    let id = bm
        .create(vm, PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    assert!(matches!(
        bm.write(id, PAGE - 1, &[1, 2]),
        Err(BoError::OutOfRange { .. })
    ));
    assert!(matches!(
        bm.read(id, u64::MAX, &mut [0]),
        Err(BoError::OutOfRange { .. })
    ));
    bm.destroy(id).unwrap();
    assert!(matches!(bm.destroy(id), Err(BoError::NoSuchObject(_))));
    assert!(matches!(
        bm.write(id, 0, &[1]),
        Err(BoError::NoSuchObject(_))
    ));
}

#[test]
fn device_first_then_eviction_moves_willneed_victims_with_their_contents() {
    let bm = manager(4);
    let vm = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    let b = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, a, 0, 2 * PAGE, 0xaa);
    fill(&bm, b, 0, 2 * PAGE, 0xbb);
    assert_eq!(bm.object_info(a).unwrap().region, Some(RegionId::DEVICE));
    assert_eq!(bm.object_info(b).unwrap().region, Some(RegionId::DEVICE));
    // The pool is full: c evicts the least recently used (a) to system.
    let c = bm
        .create(vm, 2 * PAGE, device_only(), Priority::NORMAL)
        .unwrap();
    fill(&bm, c, 0, PAGE, 0xcc);
    assert_eq!(bm.object_info(c).unwrap().region, Some(RegionId::DEVICE));
    assert_eq!(bm.object_info(a).unwrap().region, Some(RegionId::SYSTEM));
    assert_eq!(bm.object_info(b).unwrap().region, Some(RegionId::DEVICE));
    assert!(
        contents(&bm, a).unwrap().iter().all(|x| *x == 0xaa),
        "contents moved"
    );
    check_accounting(&bm);
}

#[test]
fn dontneed_victims_are_purged_not_moved() {
    let bm = manager(4);
    let vm = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    let b = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, a, 0, 2 * PAGE, 1);
    fill(&bm, b, 0, 2 * PAGE, 2);
    assert!(bm.madvise(b, Madv::DontNeed).unwrap());
    bm.touch(b).unwrap(); // b is most recently used, but DONTNEED goes first
    let c = bm
        .create(vm, 2 * PAGE, device_only(), Priority::NORMAL)
        .unwrap();
    bm.validate(c, None).unwrap();
    assert_eq!(bm.object_info(b).unwrap().madv, Madv::Purged);
    assert_eq!(bm.object_info(b).unwrap().region, None);
    assert_eq!(bm.object_info(a).unwrap().region, Some(RegionId::DEVICE));
    assert!(!bm.madvise(b, Madv::WillNeed).unwrap(), "retained = false");
    assert!(matches!(contents(&bm, b), Err(BoError::Purged(_))));
    assert!(matches!(
        bm.pin(b, PinReason::Mapped),
        Err(BoError::Purged(_))
    ));
    let stats = bm.owner_stats(vm).unwrap();
    assert_eq!(stats.purged_objects, 1);
    assert_eq!(
        stats.purged_bytes,
        2 * PAGE,
        "both pages were allocated and released"
    );
    check_accounting(&bm);
}

#[test]
fn pinned_and_busy_objects_are_never_evicted_and_placement_falls_back() {
    let bm = manager(4);
    let vm = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    let b = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, a, 0, PAGE, 1);
    fill(&bm, b, 0, PAGE, 2);
    let target = bm.pin(a, PinReason::Mapped).unwrap();
    assert_eq!(target.region, RegionId::DEVICE);
    let fence = Fence::new();
    bm.set_busy(b, fence.clone()).unwrap();
    bm.madvise(b, Madv::DontNeed).unwrap();
    // No victim can go: c falls back to system memory.
    let c = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    assert_eq!(bm.validate(c, None).unwrap(), RegionId::SYSTEM);
    // Device-only with no victims: no space.
    let d = bm
        .create(vm, 2 * PAGE, device_only(), Priority::NORMAL)
        .unwrap();
    let err = bm.validate(d, None).unwrap_err();
    assert!(
        matches!(err, BoError::NoSpace { .. }) && err.is_out_of_memory(),
        "{err}"
    );
    assert_eq!(
        bm.owner_stats(vm).unwrap().charged,
        6 * PAGE,
        "failed populate charged nothing"
    );
    // Once idle, the DONTNEED object goes.
    fence.signal();
    bm.validate(d, None).unwrap();
    assert_eq!(bm.object_info(b).unwrap().madv, Madv::Purged);
    assert_eq!(bm.object_info(a).unwrap().region, Some(RegionId::DEVICE));
    // A pinned object cannot be moved by a new placement either.
    assert!(matches!(
        bm.validate(a, Some(Placement::system())),
        Err(BoError::Pinned(_))
    ));
    bm.unpin(a, PinReason::Mapped).unwrap();
    assert!(matches!(
        bm.unpin(a, PinReason::Mapped),
        Err(BoError::NotPinned(_))
    ));
    check_accounting(&bm);
}

#[test]
fn objects_in_their_fallback_move_back_when_room_appears() {
    let bm = manager(2);
    let vm = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    bm.pin(a, PinReason::Scanout).unwrap();
    let b = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, b, 0, 2 * PAGE, 9);
    assert_eq!(bm.object_info(b).unwrap().region, Some(RegionId::SYSTEM));
    bm.unpin(a, PinReason::Scanout).unwrap();
    bm.destroy(a).unwrap();
    // First pass of validate: the fallback place does not count, the
    // device has room now, no eviction needed.
    assert_eq!(bm.validate(b, None).unwrap(), RegionId::DEVICE);
    assert!(contents(&bm, b).unwrap().iter().all(|x| *x == 9));
    check_accounting(&bm);
}

#[test]
fn desired_places_never_evict() {
    let bm = manager(2);
    let vm = bm.create_owner("vm", None).unwrap();
    let a = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, a, 0, PAGE, 1);
    let desired = Placement::new(&[
        Place::desired(RegionId::DEVICE),
        Place::new(RegionId::SYSTEM),
    ])
    .unwrap();
    let b = bm.create(vm, 2 * PAGE, desired, Priority::NORMAL).unwrap();
    assert_eq!(bm.validate(b, None).unwrap(), RegionId::SYSTEM);
    assert_eq!(
        bm.object_info(a).unwrap().region,
        Some(RegionId::DEVICE),
        "a was not evicted"
    );
}

#[test]
fn lower_priority_is_evicted_first() {
    let bm = manager(4);
    let vm = bm.create_owner("vm", None).unwrap();
    let high = bm.create(vm, 2 * PAGE, dev_sys(), Priority::HIGH).unwrap();
    let low = bm.create(vm, 2 * PAGE, dev_sys(), Priority::LOW).unwrap();
    bm.validate(high, None).unwrap();
    bm.validate(low, None).unwrap();
    bm.touch(high).unwrap();
    bm.touch(low).unwrap();
    let c = bm
        .create(vm, 2 * PAGE, device_only(), Priority::NORMAL)
        .unwrap();
    bm.validate(c, None).unwrap();
    assert_eq!(bm.object_info(low).unwrap().region, Some(RegionId::SYSTEM));
    assert_eq!(bm.object_info(high).unwrap().region, Some(RegionId::DEVICE));
}

#[test]
fn quota_purges_the_owners_own_dontneed_objects_before_failing() {
    let bm = manager(16);
    let vm = bm.create_owner("vm", None).unwrap();
    let other = bm.create_owner("other", None).unwrap();
    bm.set_quota(vm, Some(4 * PAGE)).unwrap();
    let a = bm
        .create(vm, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let b = bm
        .create(vm, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let o = bm
        .create(other, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    fill(&bm, a, 0, 2 * PAGE, 1);
    fill(&bm, b, 0, 2 * PAGE, 2);
    fill(&bm, o, 0, 2 * PAGE, 3);
    bm.madvise(o, Madv::DontNeed).unwrap();
    let c = bm
        .create(vm, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let err = bm.validate(c, None).unwrap_err();
    assert!(
        matches!(err, BoError::QuotaExceeded { quota, used, requested, .. }
        if quota == 4 * PAGE && used == 4 * PAGE && requested == 2 * PAGE),
        "{err}"
    );
    assert!(err.is_out_of_memory());
    assert_eq!(
        bm.object_info(o).unwrap().madv,
        Madv::DontNeed,
        "other owners are not purged"
    );
    bm.madvise(b, Madv::DontNeed).unwrap();
    bm.validate(c, None).unwrap();
    assert_eq!(bm.object_info(b).unwrap().madv, Madv::Purged);
    assert!(contents(&bm, a).unwrap().iter().all(|x| *x == 1));
    check_accounting(&bm);
}

#[test]
fn a_vm_quota_covers_its_contexts() {
    let bm = manager(16);
    let vm = bm.create_owner("vm", None).unwrap();
    let ctx1 = bm.create_owner("ctx1", Some(vm)).unwrap();
    let ctx2 = bm.create_owner("ctx2", Some(vm)).unwrap();
    bm.set_quota(vm, Some(3 * PAGE)).unwrap();
    let a = bm
        .create(ctx1, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let b = bm
        .create(ctx2, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    bm.validate(a, None).unwrap();
    assert!(
        matches!(bm.validate(b, None), Err(BoError::QuotaExceeded { owner, .. }) if owner == vm)
    );
    let vm_stats = bm.owner_stats(vm).unwrap();
    assert_eq!((vm_stats.charged, vm_stats.objects), (2 * PAGE, 2));
    check_accounting(&bm);
}

#[test]
fn teardown_frees_every_byte_of_the_owner_tree() {
    let bm = manager(8);
    let vm = bm.create_owner("teardown-vm", None).unwrap();
    let ctx = bm.create_owner("teardown-ctx", Some(vm)).unwrap();
    let keep = bm.create_owner("teardown-other", None).unwrap();
    let mut ids = Vec::new();
    for (owner, placement) in [
        (vm, Placement::system()),
        (ctx, dev_sys()),
        (ctx, Placement::system()),
    ] {
        let id = bm
            .create(owner, 2 * PAGE, placement, Priority::NORMAL)
            .unwrap();
        fill(&bm, id, 0, 2 * PAGE, 5);
        ids.push(id);
    }
    bm.pin(ids[1], PinReason::Mapped).unwrap();
    let kept = bm
        .create(keep, PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    fill(&bm, kept, 0, PAGE, 6);
    let report = bm.destroy_owner(vm).unwrap();
    assert_eq!(
        report,
        TeardownReport {
            objects: 3,
            bytes: 6 * PAGE
        }
    );
    assert!(bm.owner_stats(vm).is_err() && bm.owner_stats(ctx).is_err());
    let stats = bm.stats();
    assert_eq!(stats.regions[1].used, 0, "device pool empty again");
    assert_eq!(
        stats.owners[0].charged, PAGE,
        "only the other owner's page remains"
    );
    assert_eq!(memfd_count("teardown-vm") + memfd_count("teardown-ctx"), 0);
    assert_eq!(memfd_count("teardown-other"), 1);
    assert!(matches!(
        bm.create(vm, PAGE, Placement::system(), Priority::NORMAL),
        Err(BoError::NoSuchOwner(_))
    ));
    check_accounting(&bm);
}

#[test]
fn shrinker_purges_first_and_counts_only_real_releases() {
    let bm = manager(8);
    let vm = bm.create_owner("vm", None).unwrap();
    let keep = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let junk = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let sparse = bm
        .create(vm, 4 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, keep, 0, 4 * PAGE, 7);
    fill(&bm, junk, 0, 4 * PAGE, 8);
    fill(&bm, sparse, PAGE, PAGE, 9); // one page of four allocated
    bm.madvise(junk, Madv::DontNeed).unwrap();
    bm.madvise(sparse, Madv::DontNeed).unwrap();
    let report = bm.shrink(&ShrinkRequest::new(u64::MAX, ShrinkMode::Writeback));
    assert_eq!(report.purged_objects, 2);
    assert_eq!(
        report.purged_bytes,
        5 * PAGE,
        "4 pages of junk + the 1 allocated page of sparse"
    );
    assert_eq!(
        report.released_objects, 1,
        "keep's pages were handed to the kernel"
    );
    if !host_has_swap() {
        assert_eq!(
            report.written_back_bytes, 0,
            "no swap: nothing can leave RAM"
        );
    }
    assert!(report.written_back_bytes <= 4 * PAGE);
    assert_eq!(bm.object_info(keep).unwrap().madv, Madv::WillNeed);
    assert!(bm.object_info(keep).unwrap().swapped);
    assert!(
        contents(&bm, keep).unwrap().iter().all(|x| *x == 7),
        "WILLNEED data intact"
    );
    assert!(!bm.object_info(keep).unwrap().swapped, "use brings it back");
    // A second shrink finds nothing left to do.
    let again = bm.shrink(&ShrinkRequest::new(u64::MAX, ShrinkMode::Lazy));
    assert_eq!(again.purged_objects, 0);
    check_accounting(&bm);
}

#[test]
fn shrink_stops_at_its_target_and_prefers_the_largest_purgeable_owner() {
    let bm = manager(8);
    let small = bm.create_owner("small", None).unwrap();
    let large = bm.create_owner("large", None).unwrap();
    let mut objs = Vec::new();
    for (owner, n) in [(small, 1), (large, 3)] {
        for _ in 0..n {
            let id = bm
                .create(owner, PAGE, Placement::system(), Priority::NORMAL)
                .unwrap();
            fill(&bm, id, 0, PAGE, 1);
            bm.madvise(id, Madv::DontNeed).unwrap();
            objs.push((owner, id));
        }
    }
    let report = bm.shrink(&ShrinkRequest {
        target: 2 * PAGE,
        ..ShrinkRequest::new(0, ShrinkMode::Lazy)
    });
    assert_eq!((report.purged_objects, report.purged_bytes), (2, 2 * PAGE));
    let purged: Vec<OwnerId> = objs
        .iter()
        .filter(|(_, id)| bm.object_info(*id).unwrap().madv == Madv::Purged)
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(purged, vec![large, large]);
    // Owner-scoped purge leaves others alone.
    let r = bm.purge(Some(small));
    assert_eq!(r.purged_objects, 1);
    assert_eq!(bm.owner_stats(large).unwrap().purgeable, PAGE);
}

#[test]
fn shrinker_skips_pinned_busy_and_locked_objects() {
    let bm = manager(8);
    let vm = bm.create_owner("vm", None).unwrap();
    let pinned = bm
        .create(vm, PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let busy = bm
        .create(vm, PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    for id in [pinned, busy] {
        fill(&bm, id, 0, PAGE, 1);
        bm.madvise(id, Madv::DontNeed).unwrap();
    }
    bm.pin(pinned, PinReason::Exported).unwrap();
    bm.set_busy(busy, Fence::new()).unwrap();
    let report = bm.purge(None);
    assert_eq!(report.purged_objects, 0);
    assert_eq!(report.skipped_busy, 1, "{report:?}");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        report.skipped[0],
        Skipped {
            object: busy,
            reason: SkipKind::Busy
        }
    );
    // The pinned object is not even on a shrinker list.
    assert_eq!(report.scanned, 1);
    assert!(bm.is_busy(busy).unwrap());
    // A held lock makes the shrinker skip rather than wait.
    bm.set_busy(busy, Fence::signaled()).unwrap();
    let report = bm.with_storage(busy, 0, 1, |_, _| bm.purge(None)).unwrap();
    assert_eq!((report.purged_objects, report.skipped_contended), (0, 1));
    assert_eq!(bm.purge(None).purged_objects, 1);
}

#[test]
fn admin_evict_moves_everything_unpinned_out_of_the_device() {
    let bm = manager(8);
    let vm = bm.create_owner("vm", None).unwrap();
    let ids: Vec<ObjectId> = (0..4)
        .map(|i| {
            let id = bm.create(vm, PAGE, dev_sys(), Priority::NORMAL).unwrap();
            fill(&bm, id, 0, PAGE, i as u8);
            id
        })
        .collect();
    bm.madvise(ids[1], Madv::DontNeed).unwrap();
    bm.pin(ids[3], PinReason::Scanout).unwrap();
    let report = bm.evict_region(RegionId::DEVICE);
    assert_eq!((report.moved_objects, report.moved_bytes), (3, 3 * PAGE));
    for (i, id) in ids.iter().enumerate() {
        let info = bm.object_info(*id).unwrap();
        let want = if i == 3 {
            RegionId::DEVICE
        } else {
            RegionId::SYSTEM
        };
        assert_eq!(info.region, Some(want), "object {i}");
        let mut b = [0u8];
        bm.with_storage(*id, 0, 1, |s, at| s.file.read_at(at, &mut b).unwrap())
            .unwrap();
        assert_eq!(b[0], i as u8);
    }
    check_accounting(&bm);
}

#[test]
fn failing_regions_roll_back_and_report_out_of_memory() {
    for io_error in [false, true] {
        let bm = BufferManager::new(&FailingDriver::new(io_error)).unwrap();
        let vm = bm.create_owner("vm", None).unwrap();
        let only_device = bm
            .create(vm, PAGE, device_only(), Priority::NORMAL)
            .unwrap();
        let err = bm.validate(only_device, None).unwrap_err();
        assert!(err.is_out_of_memory(), "{err}");
        assert_eq!(bm.owner_stats(vm).unwrap().charged, 0, "charge rolled back");
        let with_fallback = bm.create(vm, PAGE, dev_sys(), Priority::NORMAL).unwrap();
        let got = bm.validate(with_fallback, None);
        if io_error {
            assert!(got.is_err(), "a host error is reported, not papered over");
        } else {
            assert_eq!(got.unwrap(), RegionId::SYSTEM);
        }
        check_accounting(&bm);
    }
}

#[test]
fn pinning_hands_out_the_fd_range_of_the_bytes() {
    use std::os::fd::AsFd;
    let bm = manager(8);
    let vm = bm.create_owner("vm", None).unwrap();
    let id = bm
        .create(vm, 2 * PAGE, dev_sys(), Priority::NORMAL)
        .unwrap();
    fill(&bm, id, PAGE, 4, 0x5a);
    let t = bm.pin(id, PinReason::Mapped).unwrap();
    assert_eq!((t.len, t.region), (2 * PAGE, RegionId::DEVICE));
    let mut b = [0u8; 4];
    rustix_pread(t.fd.as_fd(), &mut b, t.offset + PAGE);
    assert_eq!(b, [0x5a; 4]);
    assert_eq!(bm.owner_stats(vm).unwrap().pinned, 2 * PAGE);
    check_accounting(&bm);
}

fn rustix_pread(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8], offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(fd.try_clone_to_owned().unwrap());
    file.read_exact_at(buf, offset).unwrap();
}

/// The Linux guest keeps every MAPPABLE blob mapped for its whole life: a
/// DONTNEED object pinned only by guest mappings of system memory is
/// purged (the mapping stays valid and reads zeros); one in the device
/// pool, or pinned for scanout, is not.
#[test]
fn guest_mapped_dontneed_objects_in_system_memory_are_purged() {
    let bm = manager(16);
    let vm = bm.create_owner("vm", None).unwrap();
    let mapped = bm
        .create(vm, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let in_pool = bm
        .create(vm, 2 * PAGE, device_only(), Priority::NORMAL)
        .unwrap();
    let shown = bm
        .create(vm, 2 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    for id in [mapped, in_pool, shown] {
        fill(&bm, id, 0, 2 * PAGE, 7);
    }
    let target = bm.pin(mapped, PinReason::Mapped).unwrap();
    bm.pin(in_pool, PinReason::Mapped).unwrap();
    bm.pin(shown, PinReason::Mapped).unwrap();
    bm.pin(shown, PinReason::Scanout).unwrap();
    // The guest's view: a shared mapping of the fd the VMM was handed.
    let len = target.len as usize;
    // SAFETY: a fresh shared mapping of a file we hold, unmapped below.
    let view = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            &target.fd,
            target.offset,
        )
    }
    .unwrap();
    // SAFETY: `view` is a live mapping of `len` bytes.
    let read = || unsafe { std::slice::from_raw_parts(view.cast::<u8>(), len) }.to_vec();
    assert!(read().iter().all(|b| *b == 7));
    for id in [mapped, in_pool, shown] {
        bm.madvise(id, Madv::DontNeed).unwrap();
    }
    let report = bm.purge(None);
    assert_eq!(report.purged_objects, 1);
    assert_eq!(report.purged_bytes, 2 * PAGE, "the pages were really freed");
    assert_eq!(bm.object_info(mapped).unwrap().madv, Madv::Purged);
    assert_eq!(
        bm.object_info(in_pool).unwrap().madv,
        Madv::DontNeed,
        "pool range stays"
    );
    assert_eq!(
        bm.object_info(shown).unwrap().madv,
        Madv::DontNeed,
        "scanout pins hold"
    );
    assert!(
        read().iter().all(|b| *b == 0),
        "the guest mapping reads zeros"
    );
    assert!(
        !bm.madvise(mapped, Madv::WillNeed).unwrap(),
        "retained = false"
    );
    bm.unpin(mapped, PinReason::Mapped).unwrap();
    assert!(matches!(
        bm.pin(mapped, PinReason::Mapped),
        Err(BoError::Purged(_))
    ));
    // SAFETY: unmapping the mapping made above; `read` is not used after.
    unsafe { rustix::mm::munmap(view, len) }.unwrap();
    check_accounting(&bm);
}

/// The buffer cache: a freed object's file is reused by the next object of
/// its size, which never sees the old bytes — whether it is read, written
/// in part, overwritten whole (then nothing else is zeroed twice), mapped
/// out, or the overwrite fails; files that left the process are not reused.
#[test]
fn reused_buffers_never_show_an_earlier_objects_bytes() {
    let bm = BufferManager::emulated_with_cache(16 * PAGE, 64 * PAGE).unwrap();
    let vm = bm.create_owner("vm", None).unwrap();
    let system = region_stats_cached;
    let dirty = |bm: &BufferManager| {
        let id = bm
            .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
            .unwrap();
        fill(bm, id, 0, 4 * PAGE, 0xee);
        bm.destroy(id).unwrap();
        assert_eq!(system(bm), 4 * PAGE, "kept for reuse");
    };
    // Read.
    dirty(&bm);
    let a = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    assert!(contents(&bm, a).unwrap().iter().all(|b| *b == 0));
    assert_eq!(system(&bm), 0, "the kept file was taken");
    bm.destroy(a).unwrap();
    // Overwrite of the middle: the rest reads zeros.
    let b = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    fill(&bm, b, 0, 4 * PAGE, 0xee);
    bm.destroy(b).unwrap();
    let c = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    bm.with_storage_overwrite(c, PAGE, PAGE, |s, at| {
        s.file.write_at(at, &[7; PAGE as usize])
    })
    .unwrap()
    .unwrap();
    let data = contents(&bm, c).unwrap();
    assert!(data[..PAGE as usize].iter().all(|b| *b == 0));
    assert!(data[PAGE as usize..2 * PAGE as usize]
        .iter()
        .all(|b| *b == 7));
    assert!(data[2 * PAGE as usize..].iter().all(|b| *b == 0));
    bm.destroy(c).unwrap();
    // A failed overwrite leaves zeros, not the old bytes.
    dirty(&bm);
    let d = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let failed: Result<(), &str> = bm
        .with_storage_overwrite(d, 0, 4 * PAGE, |_, _| Err("guest fault"))
        .unwrap();
    assert!(failed.is_err());
    assert!(contents(&bm, d).unwrap().iter().all(|b| *b == 0));
    bm.destroy(d).unwrap();
    // Mapped out: the descriptor shows zeros, and the file is not reused.
    dirty(&bm);
    let e = bm
        .create(vm, 4 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    let t = bm.pin(e, PinReason::Mapped).unwrap();
    let mut buf = vec![1u8; 4 * PAGE as usize];
    rustix::io::pread(&t.fd, &mut buf, t.offset).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    bm.unpin(e, PinReason::Mapped).unwrap();
    bm.destroy(e).unwrap();
    assert_eq!(system(&bm), 0, "a file that left the process is not kept");
    // Shrinking drops the cache first.
    dirty(&bm);
    let r = bm.shrink(&ShrinkRequest::new(PAGE, ShrinkMode::Lazy));
    assert_eq!(r.cache_bytes, 4 * PAGE);
    assert_eq!(system(&bm), 0);
    check_accounting(&bm);
}

fn region_stats_cached(bm: &BufferManager) -> u64 {
    bm.stats().regions[0].cached
}
