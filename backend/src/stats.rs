//! Read-only snapshots for the admin socket and tests: per region, per
//! owner and per object. Taking one never blocks on an object held by a
//! long operation for longer than that operation (object locks are taken
//! one at a time, after the registry lock is dropped).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::account::{OwnerAccount, MAX_REGIONS, UNLIMITED};
use crate::error::{BoError, BoResult};
use crate::manager::{BufferManager, Inner};
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
    /// Bytes of populated objects placed in it (their sizes).
    pub placed: u64,
    /// Bytes of those objects really in RAM now, measured (mincore on
    /// memfd pages; a host GPU's objects count whole once touched).
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
    /// Bytes of populated objects and the scratch reservation (what the
    /// quota limits).
    pub charged: u64,
    /// Bytes of populated objects per region (their sizes), indexed by
    /// region id.
    pub placed: Vec<u64>,
    /// Bytes of those objects really in RAM now per region, measured.
    pub resident: Vec<u64>,
    /// Bytes of DONTNEED objects.
    pub purgeable: u64,
    /// Bytes of pinned objects.
    pub pinned: u64,
    /// Objects purged so far.
    pub purged_objects: u64,
    /// Bytes really released by purges so far.
    pub purged_bytes: u64,
    /// Resident bytes the shrinker hinted to the kernel (MADV_COLD /
    /// MADV_PAGEOUT) so far.
    pub hinted_bytes: u64,
    /// Bytes that really left RAM through the shrinker's MADV_PAGEOUT.
    pub written_back_bytes: u64,
    /// Bytes held now by the scratch and purged-but-mapped files behind
    /// guest mappings of purged buffers (VMs only; measured).
    pub scratch_bytes: u64,
    /// Bytes charged for them (the scratch reservation; VMs only).
    pub scratch_reserved: u64,
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

/// Usage counters of an owner that cost nothing to read (no measuring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerUsage {
    /// Bytes charged (what the quota limits).
    pub charged: u64,
    /// Bytes of DONTNEED objects.
    pub purgeable: u64,
    /// Quota.
    pub quota: Option<u64>,
    /// Soft limit.
    pub soft_limit: Option<u64>,
}

impl Inner {
    fn owner_stats(&self, a: &OwnerAccount, resident: &HashMap<OwnerId, Vec<u64>>) -> OwnerStats {
        let regions = self.regions.len().min(MAX_REGIONS);
        let (scratch_bytes, scratch_reserved) = if a.parent.is_some() && a.top().id == a.id {
            self.scratch_usage(a)
        } else {
            (0, 0)
        };
        OwnerStats {
            id: a.id,
            name: a.name.clone(),
            parent: a.parent.as_ref().map(|p| p.id),
            objects: a.objects.load(Ordering::Relaxed),
            charged: a.charged.load(Ordering::Relaxed),
            placed: a.placed[..regions]
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .collect(),
            resident: resident
                .get(&a.id)
                .cloned()
                .unwrap_or_else(|| vec![0; regions]),
            purgeable: a.purgeable_total(),
            pinned: a.pinned.load(Ordering::Relaxed),
            purged_objects: a.purged_objects.load(Ordering::Relaxed),
            purged_bytes: a.purged_bytes.load(Ordering::Relaxed),
            hinted_bytes: a.hinted_bytes.load(Ordering::Relaxed),
            written_back_bytes: a.written_back_bytes.load(Ordering::Relaxed),
            scratch_bytes,
            scratch_reserved,
            quota: limit(a.quota.load(Ordering::Relaxed)),
            soft_limit: limit(a.soft_limit.load(Ordering::Relaxed)),
        }
    }

    /// Measures what `objects` have in RAM, per region, and adds it to
    /// each object's owner and that owner's ancestors.
    fn measure(&self, objects: &[Arc<Object>]) -> HashMap<OwnerId, Vec<u64>> {
        let regions = self.regions.len().min(MAX_REGIONS);
        let mut out: HashMap<OwnerId, Vec<u64>> = HashMap::new();
        for obj in objects {
            let (region, bytes) = {
                let st = obj.lock();
                let Some((region, backing)) = st.backing.as_ref().filter(|_| !st.dead) else {
                    continue;
                };
                let bytes = self
                    .regions
                    .get(usize::from(region.0))
                    .and_then(|r| r.storage(backing).ok())
                    .map_or(0, |s| s.file.resident(s.offset, s.len).unwrap_or(0));
                (usize::from(region.0), bytes)
            };
            if region >= regions {
                continue;
            }
            for a in obj.owner.chain() {
                out.entry(a.id).or_insert_with(|| vec![0; regions])[region] += bytes;
            }
        }
        out
    }
}

impl BufferManager {
    /// A snapshot of everything, residency measured.
    pub fn stats(&self) -> ManagerStats {
        let inner = &self.inner;
        // The registry lock must be gone before any object lock is taken.
        let all = inner.registry().all_objects();
        let resident = inner.measure(&all);
        let host = resident.get(&OwnerId(0));
        let regions = inner
            .regions
            .iter()
            .map(|r| {
                let i = usize::from(r.info().id.0);
                RegionStats {
                    info: r.info().clone(),
                    used: r.used(),
                    placed: inner.root.placed[i].load(Ordering::Relaxed),
                    resident: host.and_then(|h| h.get(i)).copied().unwrap_or(0),
                    purgeable: inner.root.purgeable[i].load(Ordering::Relaxed),
                    cached: r.cached(),
                }
            })
            .collect();
        let accounts: Vec<Arc<OwnerAccount>> = inner.owners_read().values().cloned().collect();
        let mut owners: Vec<OwnerStats> = accounts
            .iter()
            .map(|a| inner.owner_stats(a, &resident))
            .collect();
        owners.sort_by_key(|o| o.id);
        ManagerStats {
            driver: inner.driver_name.clone(),
            regions,
            owners,
            objects: inner.registry().live(),
        }
    }

    /// One owner's numbers, its residency measured.
    pub fn owner_stats(&self, owner: OwnerId) -> BoResult<OwnerStats> {
        let account = self.inner.owner(owner)?;
        let objects = self.subtree_objects(owner);
        let resident = self.inner.measure(&objects);
        Ok(self.inner.owner_stats(&account, &resident))
    }

    /// Bytes the objects of `owner` (and its descendants) have in RAM now,
    /// measured, plus — for a VM — what its scratch files hold: the memory
    /// a soft limit compares.
    pub fn resident_bytes(&self, owner: OwnerId) -> BoResult<u64> {
        let account = self.inner.owner(owner)?;
        let resident = self.inner.measure(&self.subtree_objects(owner));
        let objects: u64 = resident.get(&owner).map_or(0, |r| r.iter().sum());
        let scratch = if account.parent.is_some() && account.top().id == account.id {
            self.inner.scratch_usage(&account).0
        } else {
            0
        };
        Ok(objects + scratch)
    }

    /// An owner's counters, read without measuring anything.
    pub fn usage(&self, owner: OwnerId) -> BoResult<OwnerUsage> {
        let a = self.inner.owner(owner)?;
        Ok(OwnerUsage {
            charged: a.charged.load(Ordering::Relaxed),
            purgeable: a.purgeable_total(),
            quota: limit(a.quota.load(Ordering::Relaxed)),
            soft_limit: limit(a.soft_limit.load(Ordering::Relaxed)),
        })
    }

    /// The owners with a soft limit: `(owner, name, charged, soft limit)`,
    /// read without measuring anything.
    pub fn soft_limited_owners(&self) -> Vec<(OwnerId, String, u64, u64)> {
        self.inner
            .owners_read()
            .values()
            .filter_map(|a| {
                let l = limit(a.soft_limit.load(Ordering::Relaxed))?;
                Some((a.id, a.name.clone(), a.charged.load(Ordering::Relaxed), l))
            })
            .collect()
    }

    fn subtree_objects(&self, owner: OwnerId) -> Vec<Arc<Object>> {
        let tree = self.inner.subtree(owner);
        let reg = self.inner.registry();
        tree.iter().flat_map(|o| reg.owner_objects(o.0)).collect()
    }

    /// One object's state.
    pub fn object_info(&self, id: ObjectId) -> BoResult<ObjectInfo> {
        let obj = self.inner.get(id)?;
        self.info_of(&obj).ok_or(BoError::NoSuchObject(id))
    }

    /// The objects matching `filter`, oldest first.
    pub fn list_objects(&self, filter: ObjectFilter) -> Vec<ObjectInfo> {
        let objects = match filter.owner {
            Some(owner) => self.subtree_objects(owner),
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
