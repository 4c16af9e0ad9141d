//! `BufferManager`: the public face of the buffer manager — owners, object
//! life cycle, CPU access, madvise, pins and fences.
//!
//! Placement and eviction live in `placement`, the shrinker in `shrinker`,
//! read-only snapshots in `stats`. Every state change of an object goes
//! through [`Inner::commit`] while the object's lock is held, which keeps
//! the accounts and the LRU lists in step with the state.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::account::{OwnerAccount, UNLIMITED};
use crate::error::{BoError, BoResult};
use crate::fence::Fence;
use crate::intel::GemKernel;
use crate::object::{Charge, Object, ObjectState};
use crate::placement::{DefaultPolicy, EvictionPolicy};
use crate::region::{
    Backing, Caching, EmulatedDriver, MemoryDriver, MemoryRegion, RegionInfo, Storage,
};
use crate::registry::Registry;
use crate::types::{page_align, Madv, ObjectId, OwnerId, PinReason, Placement, Priority, RegionId};

/// Largest object the manager accepts (1 TiB).
pub const MAX_OBJECT_SIZE: u64 = 1 << 40;

/// The host buffer manager. Cheap to clone; every clone is the same manager.
#[derive(Clone)]
pub struct BufferManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for BufferManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferManager")
            .field("driver", &self.inner.driver_name)
            .field("regions", &self.inner.regions.len())
            .finish()
    }
}

pub(crate) struct Inner {
    pub driver_name: String,
    pub regions: Vec<Arc<dyn MemoryRegion>>,
    pub registry: Mutex<Registry>,
    pub owners: RwLock<HashMap<OwnerId, Arc<OwnerAccount>>>,
    pub root: Arc<OwnerAccount>,
    pub policy: Box<dyn EvictionPolicy>,
    pub gpu: Option<Arc<dyn GemKernel>>,
    next_owner: AtomicU32,
    pub started: Instant,
    pub shrink_log: Mutex<crate::shrink_log::ShrinkLog>,
}

/// Where a pinned object's bytes are, for mapping them into the guest
/// (SHMEM_MAP) or a scanout: a duplicate of the backing file descriptor, the
/// offset of the object in it, and the caching mode.
#[derive(Debug)]
pub struct MapTarget {
    /// A duplicate of the backing file's descriptor (close it when done).
    pub fd: OwnedFd,
    /// Offset of the object's first byte in `fd`.
    pub offset: u64,
    /// Object size.
    pub len: u64,
    /// Caching of the region.
    pub caching: Caching,
    /// Region holding the bytes (they cannot move while pinned).
    pub region: RegionId,
}

/// What tearing down an owner freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// Objects destroyed.
    pub objects: u64,
    /// Bytes of memory they held.
    pub bytes: u64,
}

impl BufferManager {
    /// A manager over the regions of `driver`, with TTM's default policy.
    pub fn new(driver: &dyn MemoryDriver) -> BoResult<Self> {
        Self::with_policy(driver, Box::new(DefaultPolicy))
    }

    /// A manager on the emulated driver with a device pool of `device_bytes`.
    pub fn emulated(device_bytes: u64) -> BoResult<Self> {
        Self::emulated_with_cache(device_bytes, 0)
    }

    /// As [`Self::emulated`], keeping up to `cache_bytes` of freed
    /// system-memory files for reuse.
    pub fn emulated_with_cache(device_bytes: u64, cache_bytes: u64) -> BoResult<Self> {
        let driver = EmulatedDriver::with_cache(device_bytes, cache_bytes)
            .map_err(BoError::io("creating the emulated device pool"))?;
        Self::new(&driver)
    }

    /// A manager with a custom eviction policy.
    pub fn with_policy(
        driver: &dyn MemoryDriver,
        policy: Box<dyn EvictionPolicy>,
    ) -> BoResult<Self> {
        let regions = driver.regions();
        let valid = !regions.is_empty()
            && regions.len() <= crate::account::MAX_REGIONS
            && regions
                .iter()
                .enumerate()
                .all(|(i, r)| usize::from(r.info().id.0) == i)
            && regions[0].info().class == crate::types::MemoryClass::System;
        if !valid {
            return Err(BoError::Io {
                op: "checking the driver's regions",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "regions must be numbered 0.. in order, system memory first, at most 4",
                ),
            });
        }
        let root = Arc::new(OwnerAccount::new(OwnerId(0), "host".into(), None));
        let mut owners = HashMap::new();
        owners.insert(OwnerId(0), root.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                driver_name: driver.name().to_string(),
                regions,
                registry: Mutex::new(Registry::default()),
                owners: RwLock::new(owners),
                root,
                policy,
                gpu: driver.gpu_kernel(),
                next_owner: AtomicU32::new(1),
                started: Instant::now(),
                shrink_log: Mutex::default(),
            }),
        })
    }

    /// The driver's name.
    pub fn driver_name(&self) -> &str {
        &self.inner.driver_name
    }

    /// The regions.
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.inner
            .regions
            .iter()
            .map(|r| r.info().clone())
            .collect()
    }

    /// The host's root owner: every owner without a parent hangs below it,
    /// so its counters are the host totals.
    pub fn root(&self) -> OwnerId {
        OwnerId(0)
    }

    /// Creates an owner (a VM, or a context below a VM).
    pub fn create_owner(&self, name: &str, parent: Option<OwnerId>) -> BoResult<OwnerId> {
        let parent = match parent {
            Some(p) => self.inner.owner(p)?,
            None => self.inner.root.clone(),
        };
        let id = OwnerId(self.inner.next_owner.fetch_add(1, Ordering::Relaxed));
        let account = Arc::new(OwnerAccount::new(id, name.to_string(), Some(parent)));
        self.inner.owners_mut().insert(id, account);
        Ok(id)
    }

    /// Sets an owner's quota: allocations beyond it fail with an
    /// out-of-memory error (after its own DONTNEED objects were purged).
    pub fn set_quota(&self, owner: OwnerId, quota: Option<u64>) -> BoResult<()> {
        self.inner
            .owner(owner)?
            .quota
            .store(quota.unwrap_or(UNLIMITED), Ordering::Relaxed);
        Ok(())
    }

    /// Sets an owner's soft limit (the pressure monitor shrinks it back under).
    pub fn set_soft_limit(&self, owner: OwnerId, limit: Option<u64>) -> BoResult<()> {
        self.inner
            .owner(owner)?
            .soft_limit
            .store(limit.unwrap_or(UNLIMITED), Ordering::Relaxed);
        Ok(())
    }

    /// Destroys every object of the owner and its descendants and forgets
    /// them all: every byte they held goes back to the host.
    pub fn destroy_owner(&self, owner: OwnerId) -> BoResult<TeardownReport> {
        if owner == OwnerId(0) {
            return Err(BoError::NoSuchOwner(owner));
        }
        let account = self.inner.owner(owner)?;
        account.closed.store(true, Ordering::Release);
        let tree: Vec<OwnerId> = self
            .inner
            .owners_read()
            .values()
            .filter(|a| a.is_within(owner))
            .map(|a| a.id)
            .collect();
        let mut report = TeardownReport::default();
        for o in &tree {
            let objects = self.inner.registry().owner_objects(o.0);
            for obj in objects {
                let held = {
                    let st = obj.lock();
                    if st.backing.is_some() && !st.dead {
                        obj.size
                    } else {
                        0
                    }
                };
                if self.inner.destroy_object(&obj).is_ok() {
                    report.objects += 1;
                    report.bytes += held;
                }
            }
        }
        let mut owners = self.inner.owners_mut();
        for o in tree {
            if let Some(a) = owners.remove(&o) {
                if a.top().id == a.id {
                    self.inner.drop_scratch(&a);
                }
            }
        }
        Ok(report)
    }

    /// Creates an object of `size` bytes (rounded up to pages). Allocates
    /// no memory: that happens when it is first validated or written.
    pub fn create(
        &self,
        owner: OwnerId,
        size: u64,
        placement: Placement,
        priority: Priority,
    ) -> BoResult<ObjectId> {
        let size = page_align(size)
            .filter(|s| *s > 0 && *s <= MAX_OBJECT_SIZE)
            .ok_or(BoError::InvalidSize { size })?;
        for place in placement.places() {
            self.inner.region(place.region)?;
        }
        let account = self.inner.owner(owner)?;
        if account.closed.load(Ordering::Acquire) {
            return Err(BoError::NoSuchOwner(owner));
        }
        let created_s = u32::try_from(self.inner.started.elapsed().as_secs()).unwrap_or(u32::MAX);
        let object = self
            .inner
            .registry()
            .insert(owner.0, |id| {
                Object::new(
                    id,
                    account.clone(),
                    size,
                    created_s,
                    ObjectState::new(placement, priority),
                )
            })
            .ok_or(BoError::InvalidSize { size })?;
        account.count(|a| &a.objects, 1);
        Ok(object.id)
    }

    /// Destroys an object, freeing its memory (even if pinned: the caller
    /// unmaps first where it can).
    pub fn destroy(&self, id: ObjectId) -> BoResult<()> {
        let obj = self.inner.get(id)?;
        self.inner.destroy_object(&obj)
    }

    /// Makes sure the object's bytes are in a place of `placement` (or of
    /// its own placement list), populating or moving them as needed, and
    /// returns the region. A new placement replaces the object's list.
    pub fn validate(&self, id: ObjectId, placement: Option<Placement>) -> BoResult<RegionId> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        if let Some(p) = placement {
            for place in p.places() {
                self.inner.region(place.region)?;
            }
            st.placement = p;
        }
        let placement = st.placement;
        let region = self.inner.validate_locked(&obj, &mut st, placement)?;
        self.inner.use_locked(&obj, &mut st);
        Ok(region)
    }

    /// Writes `data` at `offset` of the object (populating it first).
    pub fn write(&self, id: ObjectId, offset: u64, data: &[u8]) -> BoResult<()> {
        self.with_storage(id, offset, data.len() as u64, |s, at| {
            // Through this process's mapping when the file has one (no
            // system call: a native context's responses are a few bytes
            // each), else by fd.
            match s.slice(at - s.offset, data.len()) {
                Some(view) => {
                    view.copy_from(data);
                    Ok(())
                }
                None => s
                    .file
                    .write_at(at, data)
                    .map_err(BoError::io("writing an object")),
            }
        })?
    }

    /// Reads `buf.len()` bytes at `offset` of the object.
    pub fn read(&self, id: ObjectId, offset: u64, buf: &mut [u8]) -> BoResult<()> {
        // By fd, never through the mapping: reading a hole must not
        // allocate a page (residency counts only what the buffer holds).
        self.with_storage(id, offset, buf.len() as u64, |s, at| {
            s.file
                .read_at(at, buf)
                .map_err(BoError::io("reading an object"))
        })?
    }

    /// Runs `f` with the object's storage and the file offset of byte
    /// `offset`, after checking `offset..offset+len` is inside the object.
    /// The object is populated, cannot move while `f` runs, counts as used
    /// and is marked dirty. This is the CPU mapping by fd + offset the
    /// device uses to copy guest memory straight into a buffer.
    pub fn with_storage<R>(
        &self,
        id: ObjectId,
        offset: u64,
        len: u64,
        f: impl FnOnce(&Storage<'_>, u64) -> R,
    ) -> BoResult<R> {
        self.storage_access(id, offset, len, false, f)
    }

    /// As [`Self::with_storage`] for a caller that overwrites every byte of
    /// `offset..offset+len`: a buffer reused from another object is zeroed
    /// everywhere else, and that range is not zeroed first. If `f` fails
    /// the range is zeroed after all, so no earlier object's bytes remain.
    pub fn with_storage_overwrite<R, E>(
        &self,
        id: ObjectId,
        offset: u64,
        len: u64,
        f: impl FnOnce(&Storage<'_>, u64) -> Result<R, E>,
    ) -> BoResult<Result<R, E>> {
        self.storage_access(id, offset, len, true, |storage, at| {
            let was_stale = storage.file.is_stale();
            let r = f(storage, at);
            if r.is_err() && was_stale {
                if let Err(e) = storage.file.zero(at, len) {
                    log::warn!("zeroing a buffer after a failed overwrite failed: {e}");
                }
            }
            r
        })
    }

    fn storage_access<R>(
        &self,
        id: ObjectId,
        offset: u64,
        len: u64,
        overwrite: bool,
        f: impl FnOnce(&Storage<'_>, u64) -> R,
    ) -> BoResult<R> {
        let obj = self.inner.get(id)?;
        let in_range = offset.checked_add(len).is_some_and(|end| end <= obj.size);
        if !in_range {
            return Err(BoError::OutOfRange {
                offset,
                len,
                size: obj.size,
            });
        }
        let mut st = obj.lock();
        let placement = st.placement;
        let region_id = self.inner.validate_locked(&obj, &mut st, placement)?;
        self.inner.use_locked(&obj, &mut st);
        st.dirty = true;
        let region = self.inner.region(region_id)?;
        let Some((_, backing)) = &st.backing else {
            return Err(BoError::Purged(id));
        };
        let storage = region
            .storage(backing)
            .map_err(BoError::io("locating an object's storage"))?;
        let at = storage.offset + offset;
        // A stale file (reused): zero the previous object's bytes, except
        // what an overwriting caller is about to replace.
        let keep = overwrite.then_some((at, len));
        if overwrite && storage.file.is_stale() {
            // `f` runs with the file still marked stale so that a failure
            // can be cleaned up; mark it clean only afterwards.
            storage
                .file
                .clean(keep)
                .map_err(BoError::io("zeroing a reused buffer"))?;
            storage.file.mark_stale();
            let r = f(&storage, at);
            storage.file.clean_done();
            return Ok(r);
        }
        storage
            .file
            .clean(None)
            .map_err(BoError::io("zeroing a reused buffer"))?;
        Ok(f(&storage, at))
    }

    /// Marks the object used now (moves it to the tail of its LRU list).
    pub fn touch(&self, id: ObjectId) -> BoResult<()> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        if st.dead {
            return Err(BoError::NoSuchObject(id));
        }
        self.inner.use_locked(&obj, &mut st);
        Ok(())
    }

    /// The guest's advice. Returns `retained`: whether the contents still
    /// exist. Once purged, an object is dead for good: WILLNEED answers
    /// `false` and every later access fails with [`BoError::Purged`].
    pub fn madvise(&self, id: ObjectId, madv: Madv) -> BoResult<bool> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        if st.dead {
            return Err(BoError::NoSuchObject(id));
        }
        if st.madv == Madv::Purged {
            return Ok(false);
        }
        let new = match madv {
            Madv::Purged => Madv::DontNeed,
            m => m,
        };
        let before = st.charge();
        if let Some((region, backing)) = &st.backing {
            if let Some(result) = self.inner.regions[usize::from(region.0)].madvise(backing, new) {
                let retained = result.map_err(BoError::io("madvise pass-through"))?;
                if !retained {
                    // The kernel already threw the pages away.
                    drop(self.inner.purge_locked(&obj, &mut st));
                    return Ok(false);
                }
            }
        }
        st.madv = new;
        self.inner.commit(&obj, &st, before);
        Ok(true)
    }

    /// Pins the object where it is (populating it first): it will not move
    /// until unpinned, nor be purged — except a DONTNEED object whose only
    /// pins are guest mappings, in system memory (see the crate docs).
    /// Returns where its bytes are.
    pub fn pin(&self, id: ObjectId, reason: PinReason) -> BoResult<MapTarget> {
        self.pin_with(id, reason, |storage, region_id, region, size| {
            let fd = storage
                .file
                .share()
                .map_err(BoError::io("sharing a buffer"))?
                .try_clone_to_owned()
                .map_err(BoError::io("duplicating a buffer fd"))?;
            Ok(MapTarget {
                fd,
                offset: storage.offset,
                len: size,
                caching: region.caching(),
                region: region_id,
            })
        })
    }

    /// Pins the object for a GPU submission ([`PinReason::Gpu`]) and
    /// returns its handle in the GPU kernel ([`Self::gpu_kernel`]). Attach
    /// the submission's fence with [`Self::set_busy`], then unpin.
    pub fn pin_for_gpu(&self, id: ObjectId) -> BoResult<u32> {
        self.pin_with(id, PinReason::Gpu, |storage, _, _, _| {
            storage.file.gem_handle().ok_or_else(|| BoError::Io {
                op: "submitting to the GPU",
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the object is not a buffer of the GPU kernel",
                ),
            })
        })
    }

    /// The GPU kernel that executes work on this manager's buffers, when
    /// the driver is a real GPU's.
    pub fn gpu_kernel(&self) -> Option<&Arc<dyn GemKernel>> {
        self.inner.gpu.as_ref()
    }

    /// Makes the object resident, runs `f` on its storage and, if that
    /// succeeds, takes a pin for `reason`.
    fn pin_with<T>(
        &self,
        id: ObjectId,
        reason: PinReason,
        f: impl FnOnce(&Storage<'_>, RegionId, &dyn MemoryRegion, u64) -> BoResult<T>,
    ) -> BoResult<T> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        let placement = st.placement;
        let region_id = self.inner.validate_locked(&obj, &mut st, placement)?;
        let region = self.inner.region(region_id)?;
        let Some((_, backing)) = &st.backing else {
            return Err(BoError::Purged(id));
        };
        let storage = region
            .storage(backing)
            .map_err(BoError::io("locating an object's storage"))?;
        if storage.file.kernel_purged() {
            // The GPU kernel dropped it (it was DONTNEED): it is dead for
            // vgpu too, now, and nothing was resident to count.
            self.inner.purge_locked(&obj, &mut st)?;
            return Err(BoError::Purged(id));
        }
        // The bytes leave the daemon (a descriptor, the GPU): no earlier
        // object's bytes.
        storage
            .file
            .clean(None)
            .map_err(BoError::io("zeroing a reused buffer"))?;
        let out = f(&storage, region_id, region.as_ref(), obj.size)?;
        let before = st.charge();
        st.pin_count = st.pin_count.saturating_add(1);
        if reason == PinReason::Mapped {
            st.map_pins = st.map_pins.saturating_add(1);
        }
        if matches!(reason, PinReason::Mapped | PinReason::Exported) {
            st.fd_shared = true;
        }
        st.swapped = false;
        self.inner.commit(&obj, &st, before);
        log::trace!("pinned {id} ({reason:?}) in {region_id}");
        Ok(out)
    }

    /// Drops one pin taken for `reason`.
    pub fn unpin(&self, id: ObjectId, reason: PinReason) -> BoResult<()> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        let held = match reason {
            PinReason::Mapped => st.map_pins,
            _ => st.hard_pins(),
        };
        if held == 0 {
            return Err(BoError::NotPinned(id));
        }
        let before = st.charge();
        st.pin_count -= 1;
        if reason == PinReason::Mapped {
            st.map_pins -= 1;
        }
        if st.map_pins == 0 {
            // Purged while mapped, and the last guest mapping is gone.
            if let Some((region, backing)) = st.limbo.take() {
                self.inner.release_backing(region, backing, true);
                self.inner.leave_limbo(&obj);
            }
        }
        self.inner.commit(&obj, &st, before);
        Ok(())
    }

    /// Attaches the fence of a submission using the object: until it
    /// signals, the object is busy (never evicted or purged).
    pub fn set_busy(&self, id: ObjectId, fence: Fence) -> BoResult<()> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        if st.dead {
            return Err(BoError::NoSuchObject(id));
        }
        st.busy = Some(fence);
        self.inner.registry().touch(id);
        Ok(())
    }

    /// Whether the object's last fence is unsignaled.
    pub fn is_busy(&self, id: ObjectId) -> BoResult<bool> {
        let obj = self.inner.get(id)?;
        let st = obj.lock();
        Ok(self.inner.is_busy(&st))
    }

    /// Changes the object's eviction priority.
    pub fn set_priority(&self, id: ObjectId, priority: Priority) -> BoResult<()> {
        let obj = self.inner.get(id)?;
        let mut st = obj.lock();
        let before = st.charge();
        st.priority = priority;
        self.inner.commit(&obj, &st, before);
        Ok(())
    }

    /// Size of the object in bytes.
    pub fn size(&self, id: ObjectId) -> BoResult<u64> {
        Ok(self.inner.get(id)?.size)
    }

    /// The owner of the object.
    pub fn owner_of(&self, id: ObjectId) -> BoResult<OwnerId> {
        Ok(self.inner.get(id)?.owner.id)
    }

    /// Number of live objects.
    pub fn object_count(&self) -> usize {
        self.inner.registry().live()
    }

    /// Seconds since the manager was created.
    pub fn uptime_s(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }
}

impl Inner {
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry is only changed by short, non-panicking list surgery.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn owners_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<OwnerId, Arc<OwnerAccount>>> {
        self.owners.read().unwrap_or_else(|p| p.into_inner())
    }

    fn owners_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<OwnerId, Arc<OwnerAccount>>> {
        self.owners.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn owner(&self, id: OwnerId) -> BoResult<Arc<OwnerAccount>> {
        self.owners_read()
            .get(&id)
            .cloned()
            .ok_or(BoError::NoSuchOwner(id))
    }

    pub fn region(&self, id: RegionId) -> BoResult<&Arc<dyn MemoryRegion>> {
        self.regions
            .get(usize::from(id.0))
            .ok_or(BoError::NoSuchRegion(id))
    }

    pub fn get(&self, id: ObjectId) -> BoResult<Arc<Object>> {
        self.registry().get(id).ok_or(BoError::NoSuchObject(id))
    }

    /// Brings the accounts and the LRU lists in line with the object's
    /// state after a change; `before` is the charge before the change.
    /// Called with the object's lock held.
    pub fn commit(&self, obj: &Object, st: &ObjectState, before: Charge) {
        obj.owner.apply(before, st.charge(), obj.size);
        let key = st.list_key(obj.owner.id.0);
        self.registry().relist(obj.id, key);
    }

    /// A guest use: the object is most recently used, and pages the shrinker
    /// released are wanted again.
    pub fn use_locked(&self, obj: &Object, st: &mut ObjectState) {
        if st.swapped {
            let before = st.charge();
            st.swapped = false;
            self.commit(obj, st, before);
        }
        self.registry().touch(obj.id);
    }

    /// Gives a backing back to its region: for reuse, unless its file
    /// descriptor left the process.
    pub fn release_backing(&self, region: RegionId, backing: Backing, fd_shared: bool) {
        let r = &self.regions[usize::from(region.0)];
        if fd_shared {
            r.discard(backing);
        } else {
            r.free(backing);
        }
    }

    /// Frees the object's memory and forgets it.
    pub fn destroy_object(&self, obj: &Object) -> BoResult<()> {
        let mut st = obj.lock();
        if st.dead {
            return Err(BoError::NoSuchObject(obj.id));
        }
        let before = st.charge();
        if let Some((region, backing)) = st.backing.take() {
            self.release_backing(region, backing, st.fd_shared);
            obj.owner.uncharge(obj.size);
        }
        if let Some((region, backing)) = st.limbo.take() {
            self.release_backing(region, backing, true);
            self.leave_limbo(obj);
        }
        st.dead = true;
        st.pin_count = 0;
        st.map_pins = 0;
        st.busy = None;
        self.commit(obj, &st, before);
        self.registry().remove(obj.id);
        obj.owner.chain().for_each(|a| {
            a.objects.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(())
    }
}
