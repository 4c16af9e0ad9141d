//! Model-based test of the buffer manager: thousands of random operation
//! sequences (create, write, read, validate to each placement, madvise,
//! pin/unpin, busy/idle, shrink in both modes, admin purge and evict, a tiny
//! device pool that keeps running out, quotas, destroy, owner teardown)
//! against a reference model that only knows what the guest knows.
//!
//! After every operation:
//! * a WILLNEED object's bytes never change except by writes;
//! * a DONTNEED object is either intact or purged (and then WILLNEED says
//!   `retained = false`), never silently corrupt;
//! * only idle DONTNEED objects are ever purged, and only unpinned ones or
//!   ones pinned solely by guest mappings of system memory;
//! * pinned objects never move;
//! * every counter equals the sum over the objects, and quotas hold.

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
    /// Guest-mapping pins.
    map_pins: u32,
    /// Scanout pins.
    hard_pins: u32,
    pinned_region: Option<RegionId>,
    fence: Option<Fence>,
}

impl ModelObject {
    fn pins(&self) -> u32 {
        self.map_pins + self.hard_pins
    }

    /// Whether its pins allow a purge: none, or only guest mappings of a
    /// system-memory object.
    fn pins_allow_purge(&self) -> bool {
        self.hard_pins == 0 && (self.map_pins == 0 || self.pinned_region == Some(RegionId::SYSTEM))
    }

    fn busy(&self) -> bool {
        self.fence.as_ref().is_some_and(|f| !f.is_signaled())
    }
}

struct Harness {
    bm: BufferManager,
    /// vm0, vm1, and ctx (a child of vm0).
    owners: [OwnerId; 3],
    objects: Vec<ModelObject>,
    /// Charged bytes per owner after the previous operation.
    charged: [u64; 3],
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
        }
    }

    fn pick(&self, i: &Index) -> Option<usize> {
        (!self.objects.is_empty()).then(|| i.index(self.objects.len()))
    }

    /// Errors an operation that populates may legitimately return.
    fn allowed(&self, m: &ModelObject, err: &BoError) -> Result<(), TestCaseError> {
        match err {
            BoError::Purged(_) => {
                prop_assert!(m.purged, "{} reported purged, model says it is not", m.id);
                Ok(())
            }
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
                    map_pins: 0,
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
                    Err(e) => self.allowed(&self.objects[i], &e)?,
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
                    self.allowed(&self.objects[i], &e)?;
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
                            m.map_pins += 1;
                        } else {
                            m.hard_pins += 1;
                        }
                    }
                    Err(e) => self.allowed(&self.objects[i], &e)?,
                }
            }
            Op::Unpin { obj, mapped } => {
                let Some(i) = self.pick(obj) else {
                    return Ok(());
                };
                let reason = if *mapped {
                    PinReason::Mapped
                } else {
                    PinReason::Scanout
                };
                let r = self.bm.unpin(self.objects[i].id, reason);
                let m = &mut self.objects[i];
                let held = if *mapped {
                    &mut m.map_pins
                } else {
                    &mut m.hard_pins
                };
                if *held > 0 {
                    prop_assert!(r.is_ok(), "{:?}", r);
                    *held -= 1;
                    if m.pins() == 0 {
                        m.pinned_region = None;
                    }
                } else {
                    prop_assert!(matches!(r, Err(BoError::NotPinned(_))), "{:?}", r);
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
                let report = self.bm.shrink(&ShrinkRequest {
                    owner: owner.map(|o| self.owners[o]),
                    ..ShrinkRequest::new(target_pages * PAGE, mode)
                });
                if !host_has_swap() {
                    prop_assert_eq!(report.written_back_bytes, 0);
                }
                self.check_all_contents()?;
            }
            Op::Purge { owner } => {
                self.bm.purge(owner.map(|o| self.owners[o]));
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
                self.bm
                    .destroy_owner(self.owners[*owner])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.objects.retain(|m| !doomed.contains(&m.owner));
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
        for m in &mut self.objects {
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
        Ok(())
    }

    fn check_contents(&self, i: usize) -> Result<(), TestCaseError> {
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
            Err(e) => self.allowed(m, &e)?,
        }
        Ok(())
    }

    /// Checks every populated object's bytes without populating any.
    fn check_all_contents(&self) -> Result<(), TestCaseError> {
        for (i, m) in self.objects.iter().enumerate() {
            let populated = self
                .bm
                .object_info(m.id)
                .map(|o| o.region.is_some())
                .unwrap_or(false);
            if populated {
                self.check_contents(i)?;
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1500),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn manager_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op)?;
        }
        // Whatever happened, everything written is still there (or purged
        // with the guest's consent), and teardown returns every byte.
        h.check_all_contents()?;
        for o in [0usize, 1] {
            h.bm.destroy_owner(h.owners[o]).unwrap();
        }
        let stats = h.bm.stats();
        prop_assert_eq!(stats.objects, 0);
        prop_assert_eq!(stats.owners[0].charged, 0);
        prop_assert!(stats.regions.iter().all(|r| r.used == 0 && r.resident == 0));
    }
}
