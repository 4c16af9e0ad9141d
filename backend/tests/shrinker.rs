//! The shrinker's accounting rules, one test each: Lazy hints up to its
//! target and Writeback reaches what it hinted; buffer caches and scratch
//! files are freed but never counted towards a target; quota purges are
//! recorded like every other shrink; a purged buffer the guest still maps
//! stays accounted (limbo, then the VM's scratch file) and a hostile
//! map → DONTNEED → purge → write loop cannot grow beyond the quota;
//! residency in the stats is measured, not assumed.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use std::os::fd::AsFd;

use common::*;
use vgpu_backend::*;

fn system_object(bm: &BufferManager, owner: OwnerId, pages: u64, byte: u8) -> ObjectId {
    let id = bm
        .create(owner, pages * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    fill(bm, id, 0, pages * PAGE, byte);
    id
}

#[test]
fn lazy_hints_up_to_its_target_and_writeback_reaches_what_it_hinted() {
    let bm = manager(8);
    let vm = bm.create_owner("vm", None).unwrap();
    let ids: Vec<ObjectId> = (0..8).map(|i| system_object(&bm, vm, 4, i)).collect();
    // Lazy, 8 pages: two 4-page objects hinted, then it stops.
    let lazy = bm.shrink(&ShrinkRequest::new(8 * PAGE, ShrinkMode::Lazy));
    assert_eq!(lazy.hinted_bytes, 8 * PAGE, "{lazy:?}");
    assert_eq!(lazy.released_objects, 2);
    assert_eq!(
        lazy.written_back_bytes, 0,
        "MADV_COLD frees nothing at once"
    );
    assert_eq!(lazy.counted(), 8 * PAGE);
    let hinted: Vec<ObjectId> = ids
        .iter()
        .copied()
        .filter(|id| bm.object_info(*id).unwrap().swapped)
        .collect();
    assert_eq!(hinted.len(), 2);
    // A second Lazy pass leaves those two alone.
    let lazy2 = bm.shrink(&ShrinkRequest::new(8 * PAGE, ShrinkMode::Lazy));
    assert_eq!(lazy2.released_objects, 2);
    assert!(
        ids.iter()
            .filter(|id| bm.object_info(**id).unwrap().swapped)
            .count()
            == 4
    );
    // Writeback starts with what Lazy hinted (the swapped list) and, short
    // of its target without swap, looks at every idle object once.
    let wb = bm.shrink(&ShrinkRequest::new(u64::MAX, ShrinkMode::Writeback));
    assert_eq!(wb.released_objects, 8, "{wb:?}");
    assert_eq!(wb.hinted_bytes, 32 * PAGE);
    if !host_has_swap() {
        assert_eq!(wb.written_back_bytes, 0);
        assert_eq!(wb.counted(), 0);
    }
    // Nothing was lost.
    for (i, id) in ids.iter().enumerate() {
        assert!(contents(&bm, *id).unwrap().iter().all(|b| *b == i as u8));
    }
    let owner = bm.owner_stats(vm).unwrap();
    assert_eq!(owner.hinted_bytes, 16 * PAGE + 32 * PAGE);
    check_accounting(&bm);
}

#[test]
fn buffer_caches_never_count_towards_a_target_and_a_purge_takes_every_dontneed_object() {
    let bm = BufferManager::emulated_with_cache(8 * PAGE, 64 * PAGE).unwrap();
    let vm = bm.create_owner("vm", None).unwrap();
    // 16 pages in the buffer cache.
    let doomed: Vec<ObjectId> = (0..4).map(|_| system_object(&bm, vm, 4, 1)).collect();
    for id in doomed {
        bm.destroy(id).unwrap();
    }
    assert_eq!(bm.stats().regions[0].cached, 16 * PAGE);
    let dontneed: Vec<ObjectId> = (0..3)
        .map(|_| {
            let id = system_object(&bm, vm, 2, 2);
            bm.madvise(id, Madv::DontNeed).unwrap();
            id
        })
        .collect();
    // A target the cache alone would meet: the objects are still purged.
    let r = bm.shrink(&ShrinkRequest {
        purge_only: true,
        ..ShrinkRequest::new(4 * PAGE, ShrinkMode::Lazy)
    });
    assert_eq!(r.cache_bytes, 16 * PAGE, "the cache is dropped first");
    assert_eq!(r.purged_bytes, 4 * PAGE, "and does not count: {r:?}");
    assert_eq!(r.counted(), 4 * PAGE);
    assert_eq!(r.freed(), 20 * PAGE);
    // A purge request purges every DONTNEED object whatever was freed.
    let again = bm.purge(None);
    assert_eq!(again.purged_objects, 1);
    for id in dontneed {
        assert_eq!(bm.object_info(id).unwrap().madv, Madv::Purged);
    }
    check_accounting(&bm);
}

#[test]
fn quota_purges_are_recorded_like_every_shrink() {
    let bm = manager(8);
    let vm = bm.create_owner("vm7", None).unwrap();
    bm.set_quota(vm, Some(8 * PAGE)).unwrap();
    let old = system_object(&bm, vm, 8, 3);
    bm.madvise(old, Madv::DontNeed).unwrap();
    // Over the quota: the VM's own DONTNEED object makes room.
    let new = system_object(&bm, vm, 4, 4);
    assert_eq!(bm.object_info(old).unwrap().madv, Madv::Purged);
    assert!(contents(&bm, new).unwrap().iter().all(|b| *b == 4));
    let log = bm.shrink_log();
    let quota = log
        .recent
        .iter()
        .find(|r| r.trigger == "quota:vm7")
        .expect("the quota purge is in the shrink log");
    assert_eq!((quota.purged_bytes, quota.mode), (8 * PAGE, None));
    assert_eq!(log.shrinks.get("quota"), Some(&1));
    bm.purge(None);
    assert_eq!(bm.shrink_log().shrinks.get("purge"), Some(&1));
}

#[test]
fn stats_measure_residency() {
    let bm = manager(8);
    let vm = bm.create_owner("vm", None).unwrap();
    let id = bm
        .create(vm, 16 * PAGE, Placement::system(), Priority::NORMAL)
        .unwrap();
    fill(&bm, id, 3 * PAGE, 2 * PAGE, 9); // two of sixteen pages written
    let s = bm.owner_stats(vm).unwrap();
    assert_eq!(s.placed[0], 16 * PAGE, "placed: the object's size");
    assert_eq!(s.resident[0], 2 * PAGE, "resident: what is in RAM");
    assert_eq!(bm.resident_bytes(vm).unwrap(), 2 * PAGE);
    let host = bm.stats();
    assert_eq!(host.regions[0].placed, 16 * PAGE);
    assert_eq!(host.regions[0].resident, 2 * PAGE);
    // A device-pool object: the range's pages.
    let dev = bm
        .create(
            vm,
            4 * PAGE,
            Placement::device_then_system(),
            Priority::NORMAL,
        )
        .unwrap();
    fill(&bm, dev, 0, PAGE, 1);
    assert_eq!(bm.owner_stats(vm).unwrap().resident[1], PAGE);
    check_accounting(&bm);
}

/// A VM's device: watches purges and remaps purged mappings over the
/// scratch file, as `vgpu-device` does with SHMEM_UNMAP + SHMEM_MAP.
struct Guest {
    bm: BufferManager,
    vm: OwnerId,
    watch: PurgeWatch,
    maps: Vec<(ObjectId, GuestMap)>,
}

impl Guest {
    fn new(bm: &BufferManager, name: &str) -> Self {
        let vm = bm.create_owner(name, None).unwrap();
        let watch = bm.watch_purges(vm).unwrap();
        Self {
            bm: bm.clone(),
            vm,
            watch,
            maps: Vec::new(),
        }
    }

    fn map(&mut self, id: ObjectId) {
        let t = self.bm.pin(id, PinReason::Mapped).unwrap();
        self.maps
            .push((id, GuestMap::new(t.fd.as_fd(), t.offset, t.len)));
    }

    /// The device's reaction to a purge notice.
    fn remap_purged(&mut self) -> usize {
        let purged = self.watch.drain();
        let mut n = 0;
        for (id, m) in &mut self.maps {
            if m.scratch || !purged.contains(id) {
                continue;
            }
            let t = self.bm.scratch_map(self.vm, m.len as u64).unwrap();
            m.remap(t.fd.as_fd());
            self.bm.unpin(*id, PinReason::Mapped).unwrap();
            n += 1;
        }
        n
    }

    /// SHMEM_UNMAP, then the pin (or the scratch range), then UNREF.
    fn unmap_and_destroy(&mut self, id: ObjectId) {
        let i = self.maps.iter().position(|(o, _)| *o == id).unwrap();
        let (_, m) = self.maps.remove(i);
        let (len, scratch) = (m.len as u64, m.scratch);
        drop(m);
        if scratch {
            self.bm.scratch_unmap(self.vm, len).unwrap();
        } else {
            self.bm.unpin(id, PinReason::Mapped).unwrap();
        }
        self.bm.destroy(id).unwrap();
    }
}

#[test]
fn a_purged_buffer_the_guest_still_maps_stays_accounted_until_remapped() {
    let bm = manager(8);
    let mut guest = Guest::new(&bm, "vmlimbo");
    let id = system_object(&bm, guest.vm, 8, 5);
    guest.map(id);
    bm.madvise(id, Madv::DontNeed).unwrap();
    let before = memfd_count("vmlimbo");
    let r = bm.purge(None);
    assert_eq!(
        (r.purged_objects, r.purged_bytes),
        (1, 8 * PAGE),
        "punched and counted"
    );
    assert!(!bm.madvise(id, Madv::WillNeed).unwrap(), "retained = false");
    // Limbo: the file stays (the guest's range still points at it),
    // charged as the VM's scratch reservation instead of the object.
    let s = bm.owner_stats(guest.vm).unwrap();
    assert_eq!((s.charged, s.scratch_reserved), (8 * PAGE, 8 * PAGE));
    assert_eq!(memfd_count("vmlimbo"), before, "the purged file is kept");
    // The guest writes through its mapping: accounted, and punched by the
    // next shrink.
    guest.maps[0].1.write(0, 8 * PAGE as usize, 1);
    assert_eq!(bm.owner_stats(guest.vm).unwrap().scratch_bytes, 8 * PAGE);
    let r = bm.purge(None);
    assert_eq!((r.scratch_bytes, r.purged_bytes), (8 * PAGE, 0));
    assert_eq!(bm.owner_stats(guest.vm).unwrap().scratch_bytes, 0);
    // The device heard of it and remaps the range over the scratch file.
    assert_eq!(guest.remap_purged(), 1);
    assert_eq!(
        memfd_count("vmlimbo"),
        before,
        "limbo file gone, scratch file in its place"
    );
    assert_eq!(bm.object_info(id).unwrap().pinned, 0);
    guest.maps[0].1.write(0, 8 * PAGE as usize, 2);
    let s = bm.owner_stats(guest.vm).unwrap();
    assert_eq!(
        (s.scratch_bytes, s.scratch_reserved, s.charged),
        (8 * PAGE, 8 * PAGE, 8 * PAGE)
    );
    assert_eq!(
        bm.shrink(&ShrinkRequest::new(0, ShrinkMode::Lazy))
            .scratch_bytes,
        8 * PAGE
    );
    // Unmapped and destroyed: nothing left, nothing charged.
    guest.unmap_and_destroy(id);
    let s = bm.owner_stats(guest.vm).unwrap();
    assert_eq!((s.charged, s.scratch_reserved, s.scratch_bytes), (0, 0, 0));
    assert_eq!(memfd_count("vmlimbo"), before - 1);
    check_accounting(&bm);
}

/// The hostile loop: map a blob, mark it DONTNEED, let a purge take it,
/// write through the mapping anyway, allocate the next — the memory all
/// those mappings hold never exceeds the VM's quota.
#[test]
fn a_hostile_map_dontneed_purge_write_loop_stays_within_the_quota() {
    let bm = manager(8);
    let mut guest = Guest::new(&bm, "vmhostile");
    let quota = 32 * PAGE;
    bm.set_quota(guest.vm, Some(quota)).unwrap();
    let mut held = Vec::new();
    for round in 0..40u8 {
        // Allocation beyond the quota purges the VM's own DONTNEED blobs.
        let id = match bm.create(guest.vm, 8 * PAGE, Placement::system(), Priority::NORMAL) {
            Ok(id) => id,
            Err(e) => panic!("create: {e}"),
        };
        match bm.write(id, 0, &vec![round; (8 * PAGE) as usize]) {
            Ok(()) => {}
            Err(BoError::QuotaExceeded { .. }) => {
                // The purged ones are remapped: their charges are gone.
                guest.remap_purged();
                fill(&bm, id, 0, 8 * PAGE, round);
            }
            Err(e) => panic!("write: {e}"),
        }
        guest.map(id);
        bm.madvise(id, Madv::DontNeed).unwrap();
        if round % 3 == 0 {
            bm.purge(None);
        }
        // The guest writes through every mapping it has, purged or not.
        for (_, m) in &guest.maps {
            m.write(0, m.len, round);
        }
        if round % 2 == 0 {
            guest.remap_purged();
        }
        held.push(id);
        let s = bm.owner_stats(guest.vm).unwrap();
        let memory = bm.resident_bytes(guest.vm).unwrap();
        let limbo: u64 = held
            .iter()
            .filter(|id| {
                let i = bm.object_info(**id).unwrap();
                i.madv == Madv::Purged && i.pinned > 0
            })
            .count() as u64
            * 8
            * PAGE;
        assert!(
            s.charged <= quota,
            "round {round}: charged {} > quota",
            s.charged
        );
        assert!(
            memory <= quota + limbo,
            "round {round}: the VM holds {memory} B (quota {quota}, {limbo} B not yet remapped)"
        );
        guest.remap_purged();
        let memory = bm.resident_bytes(guest.vm).unwrap();
        assert!(
            memory <= quota,
            "round {round}: {memory} B after the remap > quota {quota}"
        );
    }
    let s = bm.owner_stats(guest.vm).unwrap();
    assert!(s.purged_objects >= 30, "{s:?}");
    for id in held {
        guest.unmap_and_destroy(id);
    }
    let s = bm.owner_stats(guest.vm).unwrap();
    assert_eq!((s.charged, s.scratch_reserved), (0, 0));
    check_accounting(&bm);
}
