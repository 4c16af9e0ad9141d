//! Read-only snapshots for the admin socket and tests: per region, per
//! owner and per object. Taking one never blocks on an object held by a
//! long operation for longer than that operation (object locks are taken
//! one at a time, after the registry lock is dropped).

use std::sync::atomic::Ordering;

use crate::account::{OwnerAccount, MAX_REGIONS, UNLIMITED};
use crate::error::{BoError, BoResult};
use crate::manager::BufferManager;
use crate::object::Object;
use crate::region::RegionInfo;
use crate::types::{Madv, ObjectId, OwnerId, Place, Priority, RegionId};

/// One region's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionStats {
    /// What the region is.
    pub info: RegionInfo,
    /// Bytes handed out by the region.
    pub used: u64,
    /// Bytes of objects resident in it (host totals).
    pub resident: u64,
    /// Bytes of DONTNEED objects in it.
    pub purgeable: u64,
    /// Bytes of freed objects' files kept for reuse.
    pub cached: u64,
}

/// One owner's numbers (its descendants included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerStats {
    /// Id.
    pub id: OwnerId,
    /// Name.
    pub name: String,
    /// Parent (`None` for the host root).
    pub parent: Option<OwnerId>,
    /// Live objects.
    pub objects: u64,
    /// Bytes of populated objects (what the quota limits).
    pub charged: u64,
    /// Resident bytes per region, indexed by region id.
    pub resident: Vec<u64>,
    /// Bytes of DONTNEED objects.
    pub purgeable: u64,
    /// Bytes of pinned objects.
    pub pinned: u64,
    /// Objects purged so far.
    pub purged_objects: u64,
    /// Bytes really released by purges so far.
    pub purged_bytes: u64,
    /// Bytes really released by the shrinker's MADV_COLD / MADV_PAGEOUT.
    pub written_back_bytes: u64,
    /// Quota.
    pub quota: Option<u64>,
    /// Soft limit.
    pub soft_limit: Option<u64>,
}

/// One object's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Id.
    pub id: ObjectId,
    /// Owner.
    pub owner: OwnerId,
    /// Size in bytes.
    pub size: u64,
    /// Placement list.
    pub placement: Vec<Place>,
    /// Where the bytes are (`None`: unpopulated or purged).
    pub region: Option<RegionId>,
    /// Guest advice.
    pub madv: Madv,
    /// Pin count.
    pub pinned: u32,
    /// Whether an unsignaled fence covers it.
    pub busy: bool,
    /// Whether the shrinker released its pages.
    pub swapped: bool,
    /// Whether it was written since populated.
    pub dirty: bool,
    /// Eviction priority.
    pub priority: Priority,
    /// Seconds since it was created.
    pub age_s: u64,
}

/// Which objects to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectFilter {
    /// Only this owner and its descendants.
    pub owner: Option<OwnerId>,
    /// Only objects in this madvise state.
    pub madv: Option<Madv>,
}

/// The whole manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerStats {
    /// Driver name.
    pub driver: String,
    /// Regions.
    pub regions: Vec<RegionStats>,
    /// Owners, the host root first.
    pub owners: Vec<OwnerStats>,
    /// Live objects.
    pub objects: usize,
}

fn limit(v: u64) -> Option<u64> {
    (v != UNLIMITED).then_some(v)
}

fn owner_stats(a: &OwnerAccount, regions: usize) -> OwnerStats {
    OwnerStats {
        id: a.id,
        name: a.name.clone(),
        parent: a.parent.as_ref().map(|p| p.id),
        objects: a.objects.load(Ordering::Relaxed),
        charged: a.charged.load(Ordering::Relaxed),
        resident: a.resident[..regions.min(MAX_REGIONS)]
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect(),
        purgeable: a.purgeable_total(),
        pinned: a.pinned.load(Ordering::Relaxed),
        purged_objects: a.purged_objects.load(Ordering::Relaxed),
        purged_bytes: a.purged_bytes.load(Ordering::Relaxed),
        written_back_bytes: a.written_back_bytes.load(Ordering::Relaxed),
        quota: limit(a.quota.load(Ordering::Relaxed)),
        soft_limit: limit(a.soft_limit.load(Ordering::Relaxed)),
    }
}

impl BufferManager {
    /// A snapshot of everything.
    pub fn stats(&self) -> ManagerStats {
        let inner = &self.inner;
        let root = &inner.root;
        let regions = inner
            .regions
            .iter()
            .map(|r| {
                let i = usize::from(r.info().id.0);
                RegionStats {
                    info: r.info().clone(),
                    used: r.used(),
                    resident: root.resident[i].load(Ordering::Relaxed),
                    purgeable: root.purgeable[i].load(Ordering::Relaxed),
                    cached: r.cached(),
                }
            })
            .collect();
        let mut owners: Vec<OwnerStats> = inner
            .owners_read()
            .values()
            .map(|a| owner_stats(a, inner.regions.len()))
            .collect();
        owners.sort_by_key(|o| o.id);
        ManagerStats {
            driver: inner.driver_name.clone(),
            regions,
            owners,
            objects: inner.registry().live(),
        }
    }

    /// One owner's numbers.
    pub fn owner_stats(&self, owner: OwnerId) -> BoResult<OwnerStats> {
        Ok(owner_stats(
            &*self.inner.owner(owner)?,
            self.inner.regions.len(),
        ))
    }

    /// One object's state.
    pub fn object_info(&self, id: ObjectId) -> BoResult<ObjectInfo> {
        let obj = self.inner.get(id)?;
        self.info_of(&obj).ok_or(BoError::NoSuchObject(id))
    }

    /// The objects matching `filter`, oldest first.
    pub fn list_objects(&self, filter: ObjectFilter) -> Vec<ObjectInfo> {
        let objects = match filter.owner {
            Some(owner) => {
                let tree = self.inner.subtree(owner);
                let reg = self.inner.registry();
                tree.iter()
                    .flat_map(|o| reg.owner_objects(o.0))
                    .collect::<Vec<_>>()
            }
            None => self.inner.registry().all_objects(),
        };
        let mut out: Vec<ObjectInfo> = objects
            .iter()
            .filter_map(|o| self.info_of(o))
            .filter(|i| filter.madv.is_none_or(|m| i.madv == m))
            .collect();
        out.sort_by_key(|i| (std::cmp::Reverse(i.age_s), i.id));
        out
    }

    fn info_of(&self, obj: &Object) -> Option<ObjectInfo> {
        let st = obj.lock();
        if st.dead {
            return None;
        }
        let now = self.uptime_s();
        Some(ObjectInfo {
            id: obj.id,
            owner: obj.owner.id,
            size: obj.size,
            placement: st.placement.places().to_vec(),
            region: st.region(),
            madv: st.madv,
            pinned: st.pin_count,
            busy: self.inner.is_busy(&st),
            swapped: st.swapped,
            dirty: st.dirty,
            priority: st.priority,
            age_s: now.saturating_sub(u64::from(obj.created_s)),
        })
    }

    /// Heap bytes the manager's registry uses (slot table and list heads);
    /// objects themselves are measured by the benchmark's allocator.
    pub fn registry_heap_bytes(&self) -> usize {
        self.inner.registry().heap_bytes()
    }
}
