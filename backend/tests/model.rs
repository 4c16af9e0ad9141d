//! Model-based test of the buffer manager: thousands of random operation
//! sequences (create, write, read, validate to each placement, madvise,
//! pin/unpin, guest mappings and writes through them — also after a purge,
//! the device's remap of a purged mapping over the VM's scratch file,
//! busy/idle, shrink in both modes one after the other (escalation), admin
//! purge and evict, a tiny device pool that keeps running out, quotas,
//! destroy, owner teardown) against a reference model that only knows what
//! the guest knows; a second run does the same while another thread keeps
//! purging, as the admin socket and the pressure monitor do.
//!
//! After every operation:
//! * a WILLNEED object's bytes never change except by writes;
//! * a DONTNEED object is either intact or purged (and then WILLNEED says
//!   `retained = false`), never silently corrupt;
//! * only idle DONTNEED objects are ever purged, and only unpinned ones or
//!   ones pinned solely by guest mappings of system memory;
//! * pinned objects never move;
//! * every counter equals the sum over the objects, and quotas hold;
//! * what a guest writes through a mapping of a purged buffer is accounted
//!   (the VM's scratch bytes), bounded by the VM's scratch reservation
//!   once remapped, and gone after every shrink;
//! * a Lazy shrink stops at its target; a Writeback shrink that cannot
//!   reach its target (no swap) looks at every idle buffer, those Lazy
//!   hinted included.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use vgpu_backend::*;

const POOL_PAGES: u64 = 8;

#[derive(Debug, Clone)]
enum Op {
    Create {
        owner: usize,
        pages: u64,
        placement: u8,
    },
    Write {
        obj: Index,
        offset: Index,
        len: u16,
        byte: u8,
    },
    Read {
        obj: Index,
    },
    Validate {
        obj: Index,
        placement: u8,
    },
    Madvise {
        obj: Index,
        dontneed: bool,
    },
    Pin {
        obj: Index,
        mapped: bool,
    },
    GuestWrite {
        obj: Index,
        offset: Index,
        len: u16,
        byte: u8,
    },
    Remap {
        obj: Index,
    },
    Unpin {
        obj: Index,
        mapped: bool,
    },
    Busy {
        obj: Index,
    },
    Idle {
        obj: Index,
    },
    Shrink {
        writeback: bool,
        target_pages: u64,
        owner: Option<usize>,
    },
    Purge {
        owner: Option<usize>,
    },
    Evict,
    Destroy {
        obj: Index,
    },
    Teardown {
        owner: usize,
    },
    Quota {
        owner: usize,
        pages: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let obj = any::<Index>;
    prop_oneof![
        4 => (0..3usize, 1..=4u64, 0..4u8).prop_map(|(owner, pages, placement)| Op::Create { owner, pages, placement }),
        4 => (obj(), any::<Index>(), 1..3 * PAGE as u16, any::<u8>())
            .prop_map(|(obj, offset, len, byte)| Op::Write { obj, offset, len, byte }),
        2 => obj().prop_map(|obj| Op::Read { obj }),
        2 => (obj(), 0..4u8).prop_map(|(obj, placement)| Op::Validate { obj, placement }),
        3 => (obj(), any::<bool>()).prop_map(|(obj, dontneed)| Op::Madvise { obj, dontneed }),
        1 => (obj(), any::<bool>()).prop_map(|(obj, mapped)| Op::Pin { obj, mapped }),
        1 => (obj(), any::<bool>()).prop_map(|(obj, mapped)| Op::Unpin { obj, mapped }),
        2 => (obj(), any::<Index>(), 1..3 * PAGE as u16, any::<u8>())
            .prop_map(|(obj, offset, len, byte)| Op::GuestWrite { obj, offset, len, byte }),
        1 => obj().prop_map(|obj| Op::Remap { obj }),
        1 => obj().prop_map(|obj| Op::Busy { obj }),
        1 => obj().prop_map(|obj| Op::Idle { obj }),
        2 => (any::<bool>(), 0..12u64, proptest::option::of(0..3usize))
            .prop_map(|(writeback, target_pages, owner)| Op::Shrink { writeback, target_pages, owner }),
        1 => proptest::option::of(0..3usize).prop_map(|owner| Op::Purge { owner }),
        1 => Just(Op::Evict),
        1 => obj().prop_map(|obj| Op::Destroy { obj }),
        1 => (0..3usize).prop_map(|owner| Op::Teardown { owner }),
        1 => (0..3usize, proptest::option::of(2..16u64)).prop_map(|(owner, pages)| Op::Quota { owner, pages }),
    ]
}

fn placement(kind: u8) -> Placement {
    match kind {
        0 => Placement::system(),
        1 => Placement::device_then_system(),
        2 => Placement::new(&[Place::new(RegionId::DEVICE)]).unwrap(),
        _ => Placement::new(&[
            Place::desired(RegionId::DEVICE),
            Place::fallback(RegionId::SYSTEM),
        ])
        .unwrap(),
    }
}

/// What the guest knows about one object.
#[derive(Debug)]
struct ModelObject {
    id: ObjectId,
    owner: usize,
    data: Vec<u8>,
    madv: Madv,
    purged: bool,
    /// Guest mappings (each direct one holds a mapping pin).
    maps: Vec<GuestMap>,
    /// Scanout pins.
    hard_pins: u32,
    pinned_region: Option<RegionId>,
    fence: Option<Fence>,
}

impl ModelObject {
    /// Guest mappings of the object's own file: each holds a pin.
    fn map_pins(&self) -> u32 {
        self.maps.iter().filter(|m| !m.scratch).count() as u32
    }

    fn pins(&self) -> u32 {
        self.map_pins() + self.hard_pins
    }

    /// Whether its pins allow a purge: none, or only guest mappings of a
    /// system-memory object.
    fn pins_allow_purge(&self) -> bool {
        self.hard_pins == 0
            && (self.map_pins() == 0 || self.pinned_region == Some(RegionId::SYSTEM))
    }

    fn busy(&self) -> bool {
        self.fence.as_ref().is_some_and(|f| !f.is_signaled())
    }
}

/// The VM (top-level owner) an owner index belongs to: ctx is vm0's.
fn vm_of(owner: usize) -> usize {
    if owner == 2 {
        0
    } else {
        owner
    }
}

struct Harness {
    bm: BufferManager,
    /// vm0, vm1, and ctx (a child of vm0).
    owners: [OwnerId; 3],
    objects: Vec<ModelObject>,
    /// Charged bytes per owner after the previous operation.
    charged: [u64; 3],
    /// Held while the model checks the manager, so a concurrent purger
    /// never changes it half-way through a check.
    gate: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Harness {
    fn new() -> Self {
        // With a small buffer cache: reused files must never show old bytes.
        let bm = BufferManager::emulated_with_cache(POOL_PAGES * PAGE, 16 * PAGE).unwrap();
        let vm0 = bm.create_owner("vm0", None).unwrap();
        let vm1 = bm.create_owner("vm1", None).unwrap();
        let ctx = bm.create_owner("ctx", Some(vm0)).unwrap();
        Self {
            bm,
            owners: [vm0, vm1, ctx],
            objects: Vec::new(),
            charged: [0; 3],
            gate: Default::default(),
        }
    }

    /// The manager purged object `i` behind the model's back (a
    /// concurrent purge): check it was allowed to, and learn it.
    fn learn_purge(&mut self, i: usize) -> Result<bool, TestCaseError> {
        let m = &mut self.objects[i];
        let info = self
            .bm
            .object_info(m.id)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", m.id)))?;
        if info.madv == Madv::Purged && !m.purged {
            prop_assert_eq!(m.madv, Madv::DontNeed, "{} purged while WILLNEED", m.id);
            prop_assert!(m.pins_allow_purge(), "{} purged while pinned", m.id);
            prop_assert!(!m.busy(), "{} purged while busy", m.id);
            m.purged = true;
        }
        Ok(m.purged)
    }

    fn pick(&self, i: &Index) -> Option<usize> {
        (!self.objects.is_empty()).then(|| i.index(self.objects.len()))
    }

    /// Errors an operation on object `i` that populates may legitimately
    /// return.
    fn allowed(&mut self, i: usize, err: &BoError) -> Result<(), TestCaseError> {
        if let BoError::Purged(_) = err {
            let purged = self.learn_purge(i)?;
            let m = &self.objects[i];
            prop_assert!(purged, "{} reported purged, model says it is not", m.id);
            return Ok(());
        }
        let m = &self.objects[i];
        match err {
            BoError::QuotaExceeded { .. } | BoError::NoSpace { .. } => Ok(()),
            BoError::Pinned(_) => {
                prop_assert!(m.pins() > 0, "{} reported pinned, model says no", m.id);
                Ok(())
            }
            other => Err(TestCaseError::fail(format!(
                "{}: unexpected error {other}",
                m.id
            ))),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Create {
                owner,
                pages,
                placement: p,
            } => {
                let id = self
                    .bm
                    .create(
                        self.owners[*owner],
                        pages * PAGE,
                        placement(*p),
                        Priority::NORMAL,
                    )
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.objects.push(ModelObject {
                    id,
                    owner: *owner,
                    data: vec![0; (*pages * PAGE) as usize],
                    madv: Madv::WillNeed,
                    purged: false,
                    maps: Vec::new(),
                    hard_pins: 0,
                    pinned_region: None,
                    fence: None,
                });
            }
            Op::Write {
                obj,
                offset,
                len,
                byte,
            } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let size = self.objects[i].data.len();
                let len = (*len as usize).min(size);
                let offset = offset.index(size - len + 1);
                match self
                    .bm
                    .write(self.objects[i].id, offset as u64, &vec![*byte; len])
                {
                    Ok(()) => {
                        prop_assert!(!self.objects[i].purged, "wrote to a purged object");
                        self.objects[i].data[offset..offset + len].fill(*byte);
                    }
                    Err(e) => self.allowed(i, &e)?,
                }
            }
            Op::Read { obj } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                self.check_contents(i)?;
            }
            Op::Validate { obj, placement: p } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                if let Err(e) = self.bm.validate(self.objects[i].id, Some(placement(*p))) {
                    self.allowed(i, &e)?;
                }
            }
            Op::Madvise { obj, dontneed } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let madv = if *dontneed {
                    Madv::DontNeed
                } else {
                    Madv::WillNeed
                };
                let retained = self
                    .bm
                    .madvise(self.objects[i].id, madv)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if !retained {
                    self.learn_purge(i)?;
                }
                prop_assert_eq!(
                    retained,
                    !self.objects[i].purged,
                    "retained of {}",
                    self.objects[i].id
                );
                if retained {
                    self.objects[i].madv = madv;
                }
            }
            Op::Pin { obj, mapped } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let reason = if *mapped {
                    PinReason::Mapped
                } else {
                    PinReason::Scanout
                };
                match self.bm.pin(self.objects[i].id, reason) {
                    Ok(t) => {
                        let m = &mut self.objects[i];
                        prop_assert!(!m.purged);
                        if m.pins() == 0 {
                            m.pinned_region = Some(t.region);
                        }
                        prop_assert_eq!(m.pinned_region, Some(t.region), "pins agree on where");
                        if *mapped {
                            use std::os::fd::AsFd;
                            m.maps.push(GuestMap::new(t.fd.as_fd(), t.offset, t.len));
                        } else {
                            m.hard_pins += 1;
                        }
                    }
                    Err(e) => self.allowed(i, &e)?,
                }
            }
            Op::Unpin { obj, mapped } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let owner = self.owners[self.objects[i].owner];
                let m = &mut self.objects[i];
                if *mapped {
                    match m.maps.pop() {
                        // As the device does: SHMEM_UNMAP, then the pin.
                        Some(map) if map.scratch => {
                            let len = map.len as u64;
                            drop(map);
                            self.bm
                                .scratch_unmap(owner, len)
                                .map_err(|e| TestCaseError::fail(format!("scratch unmap: {e}")))?;
                        }
                        Some(map) => {
                            drop(map);
                            let r = self.bm.unpin(m.id, PinReason::Mapped);
                            prop_assert!(r.is_ok(), "{:?}", r);
                        }
                        None => {
                            let r = self.bm.unpin(m.id, PinReason::Mapped);
                            prop_assert!(matches!(r, Err(BoError::NotPinned(_))), "{:?}", r);
                        }
                    }
                } else {
                    let r = self.bm.unpin(m.id, PinReason::Scanout);
                    if m.hard_pins > 0 {
                        prop_assert!(r.is_ok(), "{:?}", r);
                        m.hard_pins -= 1;
                    } else {
                        prop_assert!(matches!(r, Err(BoError::NotPinned(_))), "{:?}", r);
                    }
                }
                if m.pins() == 0 {
                    m.pinned_region = None;
                }
            }
            Op::GuestWrite {
                obj,
                offset,
                len,
                byte,
            } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let Some(map) = self.objects[i].maps.last() else {
                    return Ok(());
                };
                let len = (*len as usize).min(map.len);
                let offset = offset.index(map.len - len + 1);
                // No concurrent purge between the write and the look at
                // the VM's account: a shrink punches scratch pages, and
                // what it punched is rightly no longer charged.
                let gate = self.gate.clone();
                let _gate = gate.lock().unwrap_or_else(|p| p.into_inner());
                map.write(offset, len, *byte);
                let purged = self.objects[i].purged || self.learn_purge(i)?;
                if purged {
                    // Written into a purged buffer's file or the scratch
                    // file: accounted to the VM, never lost track of.
                    let vm = self.owners[vm_of(self.objects[i].owner)];
                    let stats = self.bm.owner_stats(vm).unwrap();
                    prop_assert!(
                        stats.scratch_bytes >= PAGE,
                        "a guest write to a purged buffer is not accounted: {stats:?}"
                    );
                } else {
                    self.objects[i].data[offset..offset + len].fill(*byte);
                }
            }
            Op::Remap { obj } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                if !(self.objects[i].purged || self.learn_purge(i)?) {
                    return Ok(());
                }
                // What the device does on a purge notice: every direct
                // mapping goes over the scratch file, then its pin goes.
                let owner = self.owners[self.objects[i].owner];
                let m = &mut self.objects[i];
                for map in m.maps.iter_mut().filter(|g| !g.scratch) {
                    let t = self
                        .bm
                        .scratch_map(owner, map.len as u64)
                        .map_err(|e| TestCaseError::fail(format!("scratch map: {e}")))?;
                    use std::os::fd::AsFd;
                    map.remap(t.fd.as_fd());
                    self.bm
                        .unpin(m.id, PinReason::Mapped)
                        .map_err(|e| TestCaseError::fail(format!("unpin after remap: {e}")))?;
                }
                if m.pins() == 0 {
                    m.pinned_region = None;
                }
            }
            Op::Busy { obj } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let fence = Fence::new();
                self.bm
                    .set_busy(self.objects[i].id, fence.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // A concurrent purge may have come first; none can after.
                self.learn_purge(i)?;
                self.objects[i].fence = Some(fence);
            }
            Op::Idle { obj } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                if let Some(f) = &self.objects[i].fence {
                    f.signal();
                }
            }
            Op::Shrink {
                writeback,
                target_pages,
                owner,
            } => {
                let mode = if *writeback {
                    ShrinkMode::Writeback
                } else {
                    ShrinkMode::Lazy
                };
                let request = ShrinkRequest {
                    owner: owner.map(|o| self.owners[o]),
                    ..ShrinkRequest::new(target_pages * PAGE, mode)
                };
                let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
                let releasable = self.releasable(*owner);
                let report = self.bm.shrink(&request);
                if !host_has_swap() {
                    prop_assert_eq!(report.written_back_bytes, 0);
                }
                let largest = 4 * PAGE;
                if mode == ShrinkMode::Lazy {
                    prop_assert!(
                        report.purged_bytes + report.hinted_bytes < request.target + largest
                            || request.target == 0,
                        "a Lazy pass went past its target: {report:?}"
                    );
                } else if report.counted() < request.target {
                    // Short of its target (no swap): it looked at every
                    // idle buffer it may release, hinted ones included.
                    prop_assert!(
                        report.released_objects >= releasable,
                        "writeback released {} of {releasable} idle buffers: {report:?}",
                        report.released_objects
                    );
                }
                self.check_scratch_emptied(*owner)?;
                // Contents are checked by reads and at the end, not here:
                // reading marks a buffer used, which would take every
                // hinted buffer off the swapped list before the next
                // shrink could show where Writeback looks.
            }
            Op::Purge { owner } => {
                {
                    let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
                    self.bm.purge(owner.map(|o| self.owners[o]));
                    self.check_scratch_emptied(*owner)?;
                }
                self.sync()?;
                // Every idle DONTNEED object of the scope whose pins allow
                // it is gone.
                for m in &self.objects {
                    let in_scope = owner.is_none_or(|o| m.owner == o || (o == 0 && m.owner == 2));
                    let populated = self
                        .bm
                        .object_info(m.id)
                        .map(|i| i.region.is_some())
                        .unwrap_or(false);
                    if in_scope
                        && m.madv == Madv::DontNeed
                        && m.pins_allow_purge()
                        && !m.busy()
                        && populated
                    {
                        prop_assert!(m.purged, "purge left {} behind", m.id);
                    }
                }
            }
            Op::Evict => {
                self.bm.evict_region(RegionId::DEVICE);
                self.check_all_contents()?;
            }
            Op::Destroy { obj } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let m = self.objects.remove(i);
                // As the device does: the guest's mappings go first.
                self.unmap_all(&m)?;
                self.bm
                    .destroy(m.id)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(self.bm.object_info(m.id).is_err());
            }
            Op::Teardown { owner } => {
                let doomed: Vec<usize> = if *owner == 0 {
                    vec![0, 2]
                } else {
                    vec![*owner]
                };
                let (gone, kept): (Vec<ModelObject>, Vec<ModelObject>) =
                    std::mem::take(&mut self.objects)
                        .into_iter()
                        .partition(|m| doomed.contains(&m.owner));
                self.objects = kept;
                for m in &gone {
                    // A VM's own teardown drops its scratch state whole.
                    if !doomed.contains(&vm_of(m.owner)) {
                        self.unmap_all(m)?;
                    }
                }
                drop(gone);
                self.bm
                    .destroy_owner(self.owners[*owner])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                for o in doomed {
                    let parent = (o == 2).then_some(self.owners[0]);
                    self.owners[o] = self.bm.create_owner(&format!("owner{o}"), parent).unwrap();
                    self.charged[o] = 0;
                }
                let stats = self.bm.stats();
                let held: u64 = self.objects.len() as u64;
                prop_assert_eq!(
                    stats.objects as u64,
                    held,
                    "teardown forgot nothing and nothing else"
                );
            }
            Op::Quota { owner, pages } => {
                self.bm
                    .set_quota(self.owners[*owner], pages.map(|p| p * PAGE))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        self.sync()
    }

    /// Learns which objects the manager purged (checking it was allowed to)
    /// and checks pinned objects stayed put and the accounting adds up.
    fn sync(&mut self) -> Result<(), TestCaseError> {
        let gate = self.gate.clone();
        let _gate = gate.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..self.objects.len() {
            self.learn_purge(i)?;
            let m = &self.objects[i];
            let info = self
                .bm
                .object_info(m.id)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", m.id)))?;
            if m.purged {
                prop_assert_eq!(info.madv, Madv::Purged);
                prop_assert_eq!(info.region, None, "a purged object holds no memory");
            }
            if m.pins() > 0 && !m.purged {
                prop_assert_eq!(info.region, m.pinned_region, "{} moved while pinned", m.id);
            }
            prop_assert_eq!(info.pinned, m.pins());
        }
        check_accounting(&self.bm);
        // A quota may be lowered below what an owner holds (like cgroup
        // memory.max), but then nothing new may be charged until it fits.
        for (o, owner) in self.owners.iter().enumerate() {
            let stats = self
                .bm
                .owner_stats(*owner)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Some(quota) = stats.quota {
                prop_assert!(
                    stats.charged <= quota || stats.charged <= self.charged[o],
                    "owner{o} grew past its quota: {} > {quota}",
                    stats.charged
                );
            }
            self.charged[o] = stats.charged;
        }
        // What guests wrote through mappings of purged buffers: bounded by
        // the scratch reservation, plus the purged files still mapped
        // directly (until the device remaps them).
        for vm in [0usize, 1] {
            let stats = self.bm.owner_stats(self.owners[vm]).unwrap();
            let direct: u64 = self
                .objects
                .iter()
                .filter(|m| vm_of(m.owner) == vm && m.purged && m.map_pins() > 0)
                .map(|m| m.data.len() as u64)
                .sum();
            let largest_on_scratch = self
                .objects
                .iter()
                .filter(|m| vm_of(m.owner) == vm)
                .flat_map(|m| m.maps.iter().filter(|g| g.scratch).map(|g| g.len as u64))
                .max()
                .unwrap_or(0);
            prop_assert!(
                stats.scratch_reserved >= largest_on_scratch,
                "vm{vm}: reservation {} below a {largest_on_scratch}-byte scratch mapping",
                stats.scratch_reserved
            );
            prop_assert!(
                stats.scratch_bytes <= stats.scratch_reserved + direct,
                "vm{vm}: {} scratch bytes beyond the reservation {} and {direct} B still mapped directly",
                stats.scratch_bytes,
                stats.scratch_reserved
            );
        }
        Ok(())
    }

    /// Idle, unpinned, populated WILLNEED objects in system memory of the
    /// scope: what a Writeback pass short of its target must release.
    fn releasable(&self, owner: Option<usize>) -> u64 {
        self.objects
            .iter()
            .filter(|m| owner.is_none_or(|o| m.owner == o || (o == 0 && m.owner == 2)))
            .filter(|m| m.madv == Madv::WillNeed && !m.purged && m.pins() == 0 && !m.busy())
            .filter(|m| {
                self.bm
                    .object_info(m.id)
                    .is_ok_and(|i| i.region == Some(RegionId::SYSTEM))
            })
            .count() as u64
    }

    /// After a shrink covering them, the VMs' scratch files hold nothing.
    fn check_scratch_emptied(&self, owner: Option<usize>) -> Result<(), TestCaseError> {
        for vm in [0usize, 1] {
            if owner.is_some_and(|o| vm_of(o) != vm) {
                continue;
            }
            let stats = self.bm.owner_stats(self.owners[vm]).unwrap();
            prop_assert_eq!(
                stats.scratch_bytes,
                0,
                "vm{} scratch left after a shrink",
                vm
            );
        }
        Ok(())
    }

    /// Drops every guest mapping of `m`, as the device does before a
    /// destroy: SHMEM_UNMAP, then the pin (or the scratch range).
    fn unmap_all(&self, m: &ModelObject) -> Result<(), TestCaseError> {
        let owner = self.owners[m.owner];
        for map in &m.maps {
            if map.scratch {
                self.bm
                    .scratch_unmap(owner, map.len as u64)
                    .map_err(|e| TestCaseError::fail(format!("scratch unmap: {e}")))?;
            }
        }
        Ok(())
    }

    fn check_contents(&mut self, i: usize) -> Result<(), TestCaseError> {
        let m = &self.objects[i];
        match contents(&self.bm, m.id) {
            Ok(bytes) => {
                prop_assert!(!m.purged, "read a purged object");
                prop_assert!(
                    bytes == m.data,
                    "{} contents differ from what was written",
                    m.id
                );
            }
            Err(e) => self.allowed(i, &e)?,
        }
        Ok(())
    }

    /// Checks every populated object's bytes without populating any.
    fn check_all_contents(&mut self) -> Result<(), TestCaseError> {
        for i in 0..self.objects.len() {
            let populated = self
                .bm
                .object_info(self.objects[i].id)
                .map(|o| o.region.is_some())
                .unwrap_or(false);
            if populated {
                self.check_contents(i)?;
            }
        }
        Ok(())
    }
}

/// Purges everything, again and again, from another thread (as the admin
/// socket and the pressure monitor do), between the model's checks.
struct Purger {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Purger {
    fn start(h: &Harness) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (bm, gate, flag) = (h.bm.clone(), h.gate.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut purges = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                {
                    let _gate = gate.lock().unwrap_or_else(|p| p.into_inner());
                    bm.purge(None);
                }
                purges += 1;
                std::thread::yield_now();
            }
            purges
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_model(ops: &[Op], concurrent_purges: bool) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let purger = concurrent_purges.then(|| Purger::start(&h));
    for op in ops {
        h.apply(op)?;
    }
    drop(purger);
    h.sync()?;
    // Whatever happened, everything written is still there (or purged
    // with the guest's consent), and teardown returns every byte.
    h.check_all_contents()?;
    for m in std::mem::take(&mut h.objects) {
        h.unmap_all(&m)?;
    }
    for o in [0usize, 1] {
        h.bm.destroy_owner(h.owners[o]).unwrap();
    }
    let stats = h.bm.stats();
    prop_assert_eq!(stats.objects, 0);
    prop_assert_eq!(stats.owners[0].charged, 0);
    prop_assert!(stats
        .regions
        .iter()
        .all(|r| r.used == 0 && r.placed == 0 && r.resident == 0));
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(1500),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn manager_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(&ops, false)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(300),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    /// The same, while another thread keeps purging between operations.
    #[test]
    fn manager_matches_the_model_under_concurrent_purges(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(&ops, true)?;
    }
}
