//! Placement and eviction: TTM's `ttm_bo_validate` carried into userspace.
//!
//! *Mechanism* (here, in `Inner`): the two-pass validate, the LRU walk for
//! victims, moving and purging. *Policy* (the [`EvictionPolicy`] trait, with
//! TTM/i915's defaults in [`DefaultPolicy`]): whether a victim is worth
//! evicting and where an evicted WILLNEED object goes.
//!
//! # validate(object, placement)
//!
//! Places are *normal*, *desired* or *fallback* (Linux ≥ 6.9 flags):
//!
//! 1. If the bytes already sit in a place usable in this pass, done. In the
//!    first pass fallback places do not count, so an object that was pushed
//!    to its fallback moves back as soon as its preferred region has room.
//! 2. First pass: try every non-fallback place in order, **without
//!    evicting**.
//! 3. Second pass: try every non-desired place in order; a full region
//!    other than system memory gets room by eviction: DONTNEED victims are
//!    purged (never moved), WILLNEED victims move to system memory with
//!    their contents, least recently used and lowest priority first,
//!    skipping pinned and busy objects and any whose lock is taken.
//! 4. Nothing fits: [`BoError::NoSpace`].
//!
//! A move copies only the allocated extents of the old backing into the new
//! one (holes stay holes), then frees the old one; moving out of the device
//! writes the contents into the object's (new) shmem file.
//!
//! An unpopulated object is charged to its owner before its first
//! allocation; if that would exceed a quota, the owner's own DONTNEED
//! objects are purged first, then the allocation fails with
//! [`BoError::QuotaExceeded`] (the device answers ERR_OUT_OF_MEMORY).

use std::sync::Arc;

use crate::error::{BoError, BoResult};
use crate::manager::Inner;
use crate::object::{Object, ObjectState};
use crate::region::{Backing, RegionError};
use crate::registry::ListKey;
use crate::shrinker::{ShrinkRequest, PURGE_ONLY};
use crate::types::{Madv, MemoryClass, OwnerId, PlaceKind, Placement, Priority, RegionId};

/// The policy half of eviction (TTM's `eviction_valuable` and
/// `evict_flags` driver callbacks).
pub trait EvictionPolicy: Send + Sync {
    /// Whether evicting a victim of this priority and madvise state to make
    /// room is worth it.
    fn eviction_valuable(&self, victim_madv: Madv, victim_priority: Priority) -> bool;

    /// Where a WILLNEED victim evicted from `from` goes.
    fn evict_to(&self, from: RegionId) -> Placement;
}

/// TTM and i915's defaults: everything unpinned and idle may be evicted;
/// evicted objects go to system memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl EvictionPolicy for DefaultPolicy {
    fn eviction_valuable(&self, _victim_madv: Madv, _victim_priority: Priority) -> bool {
        true
    }

    fn evict_to(&self, _from: RegionId) -> Placement {
        Placement::system()
    }
}

/// Victims looked at per LRU-lock hold.
const EVICT_BATCH: usize = 16;

/// Whether `region` is usable for `placement` in this pass.
/// How long a move waits for the kernel to finish with the old buffer.
const MOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn compatible(placement: &Placement, region: RegionId, force_space: bool) -> bool {
    placement
        .places()
        .iter()
        .any(|p| p.region == region && usable(p.kind, force_space))
}

fn usable(kind: PlaceKind, force_space: bool) -> bool {
    match kind {
        PlaceKind::Normal => true,
        PlaceKind::Desired => !force_space,
        PlaceKind::Fallback => force_space,
    }
}

/// What happened to one eviction victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VictimOutcome {
    Purged(u64),
    Moved,
    Skipped(SkipReason),
}

/// Why the shrinker or eviction left an object alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipReason {
    Pinned,
    Busy,
    Contended,
    /// Moved, re-advised, purged or destroyed since it was picked.
    Changed,
    /// The policy said no, or the move failed.
    Refused,
}

impl Inner {
    /// See the module docs. Called with the object's lock held.
    pub fn validate_locked(
        &self,
        obj: &Object,
        st: &mut ObjectState,
        placement: Placement,
    ) -> BoResult<RegionId> {
        if st.dead {
            return Err(BoError::NoSuchObject(obj.id));
        }
        if st.madv == Madv::Purged {
            return Err(BoError::Purged(obj.id));
        }
        let newly_charged = st.backing.is_none();
        if newly_charged {
            self.charge(obj)?;
        }
        let mut force_space = false;
        let mut tried = Vec::new();
        loop {
            if let Some(current) = st.region() {
                // A pinned object never moves: it is fine wherever its
                // placement allows it to be, even in a fallback place.
                if st.pin_count > 0 {
                    return match placement.contains(current) {
                        true => Ok(current),
                        false => Err(BoError::Pinned(obj.id)),
                    };
                }
                if compatible(&placement, current, force_space) {
                    return Ok(current);
                }
            }
            match self.allocate_for(obj, st, &placement, force_space, &mut tried) {
                Ok((region, backing)) => {
                    if let Err(e) = self.move_locked(obj, st, region, backing) {
                        if newly_charged {
                            obj.owner.uncharge(obj.size);
                        }
                        return Err(e);
                    }
                    return Ok(region);
                }
                Err(BoError::NoSpace { .. }) if !force_space => force_space = true,
                Err(BoError::NoSpace { .. }) if st.backing.is_some() => {
                    // Nothing better found: stay where we are if allowed at all.
                    let current = st.region().unwrap_or(RegionId::SYSTEM);
                    if placement.contains(current) {
                        return Ok(current);
                    }
                    return Err(BoError::NoSpace {
                        size: obj.size,
                        tried,
                    });
                }
                Err(e) => {
                    if newly_charged {
                        obj.owner.uncharge(obj.size);
                    }
                    return Err(match e {
                        BoError::NoSpace { size, .. } => BoError::NoSpace { size, tried },
                        other => other,
                    });
                }
            }
        }
    }

    /// Charges an object about to be populated, purging the owner's own
    /// DONTNEED objects once if a quota is in the way.
    fn charge(&self, obj: &Object) -> BoResult<()> {
        match obj.owner.try_charge(obj.size) {
            Ok(()) => Ok(()),
            Err(over) => {
                self.shrink_locked_caller(
                    ShrinkRequest {
                        owner: Some(over.owner),
                        ..PURGE_ONLY
                    },
                    obj,
                );
                obj.owner
                    .try_charge(obj.size)
                    .map_err(|over| BoError::QuotaExceeded {
                        owner: over.owner,
                        quota: over.quota,
                        used: over.used,
                        requested: obj.size,
                    })
            }
        }
    }

    /// Room for the object in the first place of this pass that has (or,
    /// in the second pass, can make) some.
    fn allocate_for(
        &self,
        obj: &Object,
        st: &ObjectState,
        placement: &Placement,
        force_space: bool,
        tried: &mut Vec<RegionId>,
    ) -> BoResult<(RegionId, Backing)> {
        for place in placement.places() {
            if !usable(place.kind, force_space) || st.region() == Some(place.region) {
                continue;
            }
            if !tried.contains(&place.region) {
                tried.push(place.region);
            }
            let region = self.region(place.region)?;
            let name = format!("vgpu:{}:{}", obj.owner.name, obj.id);
            match region.allocate(obj.size, &name) {
                Ok(backing) => return Ok((place.region, backing)),
                Err(RegionError::NoSpace { .. }) => {
                    let may_evict = force_space && region.info().class != MemoryClass::System;
                    if may_evict {
                        if let Some(backing) = self.evict_for(place.region, obj, &name)? {
                            return Ok((place.region, backing));
                        }
                    }
                }
                Err(RegionError::Io { op, source }) => return Err(BoError::Io { op, source }),
            }
        }
        Err(BoError::NoSpace {
            size: obj.size,
            tried: Vec::new(),
        })
    }

    /// Evicts from `region` until `requester` fits, then returns its room.
    /// `None` when every candidate was looked at and it still does not fit.
    fn evict_for(
        &self,
        region_id: RegionId,
        requester: &Object,
        name: &str,
    ) -> BoResult<Option<Backing>> {
        let region = self.region(region_id)?;
        // Bound the walk by what is on the lists now: skipped objects are
        // rotated to the tail, so without a bound we could circle forever.
        let mut budget = self.eviction_candidates_len(region_id);
        loop {
            match region.allocate(requester.size, name) {
                Ok(b) => return Ok(Some(b)),
                Err(RegionError::Io { op, source }) => return Err(BoError::Io { op, source }),
                Err(RegionError::NoSpace { .. }) => {}
            }
            if budget == 0 {
                return Ok(None);
            }
            let batch = self.eviction_batch(region_id, requester.id, budget.min(EVICT_BATCH));
            if batch.is_empty() {
                return Ok(None);
            }
            for victim in batch {
                budget = budget.saturating_sub(1);
                match self.evict_victim(&victim, region_id) {
                    // Room was made: try the allocation again.
                    VictimOutcome::Purged(_) | VictimOutcome::Moved => break,
                    // Rotate it behind the others so the next batch differs.
                    VictimOutcome::Skipped(_) => self.registry().touch(victim.id),
                }
            }
        }
    }

    fn eviction_candidates_len(&self, region: RegionId) -> usize {
        self.registry()
            .lists_where(|k| k.region() == Some(region.0))
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    /// The next victims in eviction order: DONTNEED objects of the region
    /// (any owner), then WILLNEED ones by ascending priority, LRU first.
    fn eviction_batch(
        &self,
        region: RegionId,
        requester: crate::types::ObjectId,
        max: usize,
    ) -> Vec<Arc<Object>> {
        let reg = self.registry();
        let mut keys: Vec<(ListKey, usize)> = reg
            .lists_where(|k| matches!(*k, ListKey::Purgeable { region: r, .. } if r == region.0));
        keys.sort_by_key(|(k, _)| match k {
            ListKey::Purgeable { owner, .. } => *owner,
            _ => 0,
        });
        for p in 0..Priority::LEVELS as u8 {
            keys.push((
                ListKey::Evictable {
                    region: region.0,
                    priority: p,
                },
                0,
            ));
        }
        keys.push((ListKey::Swapped { region: region.0 }, 0));
        let mut out = Vec::new();
        for (key, _) in keys {
            if out.len() >= max {
                break;
            }
            reg.candidates(
                key,
                max - out.len(),
                usize::MAX,
                |o| o.id != requester,
                &mut out,
            );
        }
        out
    }

    /// Evicts one victim from `region`: purge if DONTNEED, else move it out.
    pub(crate) fn evict_victim(&self, victim: &Object, region: RegionId) -> VictimOutcome {
        let Some(mut st) = victim.try_lock() else {
            return VictimOutcome::Skipped(SkipReason::Contended);
        };
        // Re-check under the object lock: it may have changed since it was
        // picked under the LRU lock (the seed's v2 note).
        if st.dead || st.region() != Some(region) {
            return VictimOutcome::Skipped(SkipReason::Changed);
        }
        if st.pin_count > 0 {
            return VictimOutcome::Skipped(SkipReason::Pinned);
        }
        if self.is_busy(&st) {
            return VictimOutcome::Skipped(SkipReason::Busy);
        }
        if !self.policy.eviction_valuable(st.madv, st.priority) {
            return VictimOutcome::Skipped(SkipReason::Refused);
        }
        if st.madv == Madv::DontNeed {
            return match self.purge_locked(victim, &mut st) {
                Ok(released) => VictimOutcome::Purged(released),
                Err(e) => {
                    log::warn!("purging eviction victim {} failed: {e}", victim.id);
                    VictimOutcome::Skipped(SkipReason::Refused)
                }
            };
        }
        let to = self.policy.evict_to(region);
        let mut tried = Vec::new();
        // Eviction targets never evict in turn (force_space = false first,
        // then system memory, which is never full).
        let target = self
            .allocate_for(victim, &st, &to, false, &mut tried)
            .or_else(|_| self.allocate_for(victim, &st, &to, true, &mut tried));
        match target.and_then(|(r, b)| self.move_locked(victim, &mut st, r, b)) {
            Ok(()) => VictimOutcome::Moved,
            Err(e) => {
                log::warn!("evicting {} from {region} failed: {e}", victim.id);
                VictimOutcome::Skipped(SkipReason::Refused)
            }
        }
    }

    /// Whether the object is in use: its last fence is unsignaled, or its
    /// region's kernel still uses the buffer (a host GPU's GEM_BUSY).
    pub fn is_busy(&self, st: &ObjectState) -> bool {
        st.is_busy()
            || st
                .backing
                .as_ref()
                .is_some_and(|(r, b)| self.regions[usize::from(r.0)].busy(b))
    }

    /// Moves the object's bytes into `backing` in `region` (or just installs
    /// it if the object had none), freeing the old backing.
    pub fn move_locked(
        &self,
        obj: &Object,
        st: &mut ObjectState,
        region: RegionId,
        backing: Backing,
    ) -> BoResult<()> {
        let new_region = self.region(region)?;
        if let Some((old_region, old_backing)) = &st.backing {
            let old = self.region(*old_region)?;
            let copied = (|| {
                // GPU work on the old buffer (a kernel's, on a host GPU)
                // must be done before the CPU copies it.
                old.wait_idle(old_backing, MOVE_WAIT)?;
                let src = old.storage(old_backing)?;
                let dst = new_region.storage(&backing)?;
                // Neither side may carry an earlier object's bytes along.
                src.file.clean(None)?;
                dst.file.clean(None)?;
                crate::buffer::copy_between(src.file, src.offset, dst.file, dst.offset, obj.size)
            })();
            if let Err(source) = copied {
                new_region.free(backing);
                return Err(BoError::Io {
                    op: "copying an object between regions",
                    source,
                });
            }
        }
        let before = st.charge();
        if let Some((old_region, old_backing)) = st.backing.replace((region, backing)) {
            self.release_backing(old_region, old_backing, st.fd_shared);
        }
        st.fd_shared = false;
        st.swapped = false;
        self.commit(obj, st, before);
        Ok(())
    }

    /// Purges the object: its pages are freed *now* (the seed's
    /// `shmem_truncate_range` rather than waiting for the last close), it is
    /// marked PURGED and dead for good. Returns the bytes really released.
    pub fn purge_locked(&self, obj: &Object, st: &mut ObjectState) -> BoResult<u64> {
        let before = st.charge();
        let mut released = 0;
        if let Some((region_id, backing)) = st.backing.take() {
            let region = self.region(region_id)?;
            match region.storage(&backing) {
                Ok(s) => match s.file.punch(s.offset, s.len) {
                    Ok(n) => released = n,
                    Err(e) => log::warn!("punching purged {} failed: {e}", obj.id),
                },
                Err(e) => log::warn!("purged {} has no storage: {e}", obj.id),
            }
            if st.map_pins > 0 {
                // A guest still maps it: keep the file until the device
                // has remapped the guest's range (see `scratch`). The
                // scratch reservation is charged before the object's own
                // charge goes, so the VM's charge never rises in between.
                st.limbo = Some((region_id, backing));
                self.enter_limbo(obj);
            } else {
                self.release_backing(region_id, backing, st.fd_shared);
            }
            obj.owner.uncharge(obj.size);
        }
        st.madv = Madv::Purged;
        st.swapped = false;
        st.dirty = false;
        obj.owner.count(|a| &a.purged_objects, 1);
        obj.owner.count(|a| &a.purged_bytes, released);
        self.commit(obj, st, before);
        log::debug!("purged {} ({} bytes released)", obj.id, released);
        Ok(released)
    }

    /// Callers that hold an object lock and need owner purges use this; the
    /// shrinker only `try_lock`s, so the held lock cannot deadlock it (the
    /// held object is simply skipped as contended).
    fn shrink_locked_caller(&self, request: ShrinkRequest, _held: &Object) {
        let name = request
            .owner
            .and_then(|o| self.owner(o).ok())
            .map_or_else(String::new, |a| a.name.clone());
        self.shrink(&format!("quota:{name}"), &request);
    }

    /// Owners in `owner`'s subtree.
    pub fn subtree(&self, owner: OwnerId) -> Vec<OwnerId> {
        self.owners_read()
            .values()
            .filter(|a| a.is_within(owner))
            .map(|a| a.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Place;

    #[test]
    fn passes_use_places_as_ttm_does() {
        let p = Placement::new(&[
            Place::desired(RegionId(1)),
            Place::new(RegionId(2)),
            Place::fallback(RegionId(0)),
        ])
        .unwrap();
        // First pass: desired and normal places count, fallback does not.
        assert!(compatible(&p, RegionId(1), false));
        assert!(compatible(&p, RegionId(2), false));
        assert!(!compatible(&p, RegionId(0), false));
        // Second pass: normal and fallback, not desired.
        assert!(!compatible(&p, RegionId(1), true));
        assert!(compatible(&p, RegionId(2), true));
        assert!(compatible(&p, RegionId(0), true));
        assert!(!compatible(&p, RegionId(3), true));
    }
}
