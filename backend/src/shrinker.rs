//! The shrinker: gives host memory back, in the seed's order.
//!
//! 0. **Drop what holds no object's bytes**: every host-wide shrink drops
//!    the regions' buffer caches (freed objects' files kept for reuse), and
//!    every shrink punches the scratch files of the owners it covers (the
//!    pages a guest wrote through mappings of purged buffers; see
//!    `scratch`). Both are really freed and reported, but **never counted
//!    towards the target**: the target is about objects, so a purge request
//!    still purges every DONTNEED object however large the cache was.
//! 1. **Purge** DONTNEED objects, largest purgeable owner first: punch the
//!    pages now (`fallocate(PUNCH_HOLE)` on the object's memfd or device
//!    range), mark PURGED. Purged objects are dead for good.
//! 2. If the target is not met (and the request allows it), **release**
//!    idle, unpinned WILLNEED objects in system memory — the seed's
//!    `shrinker_release_pages(obj, should_writeback)`:
//!    * **Lazy** hints their resident pages to the kernel (MADV_COLD: the
//!      first to go when the kernel reclaims), counts what it *hinted*
//!      towards the target, and stops once the target or the scan limit is
//!      reached. Hinted objects are marked *swapped* and move to their
//!      region's swapped list; nothing is freed at once.
//!    * **Writeback** pushes pages out now (MADV_PAGEOUT), starting with
//!      the swapped list — what Lazy hinted before, the coldest memory —
//!      then the idle objects by priority, and counts only what left RAM.
//!
//! Bytes are counted **only when really released**, measured on the file
//! (allocated extents before and after a punch; page residency before and
//! after a release). On a host without swap a release frees nothing, and
//! the report says 0 freed (and what was hinted, separately).
//!
//! Candidates are picked under the LRU lock in small batches; each is then
//! `try_lock`ed and re-checked under its own lock, because it may have been
//! re-advised, pinned, moved or destroyed since (the seed's v2 note). A
//! locked object is skipped as *contended*, never waited for. Lists hold
//! only objects a phase can act on, and skipped objects rotate to the tail,
//! so the cost grows with the work done, not with the number of live
//! objects. Every walk looks at no more objects than its lists held when
//! it began, so it ends even while guests keep adding candidates.
//!
//! Every shrink — pressure, soft limit, quota, admin — is recorded in the
//! manager's shrink log (`shrink_log`) under the trigger that asked for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::manager::{BufferManager, Inner};
use crate::object::Object;
use crate::placement::{SkipReason, VictimOutcome};
use crate::registry::ListKey;
use crate::shmem::Released;
use crate::shrink_log::ShrinkRecord;
use crate::types::{Madv, ObjectId, OwnerId, Priority, RegionId, ShrinkMode};

/// Objects picked per LRU-lock hold.
const BATCH: usize = 32;
/// Skipped objects listed by id in a report (the counts cover all).
const MAX_LISTED_SKIPS: usize = 64;

/// What became of one candidate of a [`Inner::walk`].
pub(crate) enum Step {
    /// Acted on: it left the list it was picked from.
    Acted,
    /// Left alone: it rotates to its list's tail.
    Skipped,
    /// The request is satisfied.
    Stop,
}

/// What to shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShrinkRequest {
    /// Bytes to give back; the shrinker stops once that many are released.
    pub target: u64,
    /// How hard to push WILLNEED objects (phase 2).
    pub mode: ShrinkMode,
    /// Only objects of this owner and its descendants.
    pub owner: Option<OwnerId>,
    /// Stop after phase 1 (purge).
    pub purge_only: bool,
    /// Most objects to look at.
    pub scan_limit: usize,
}

/// Purge every DONTNEED object, nothing else.
pub const PURGE_ONLY: ShrinkRequest = ShrinkRequest {
    target: u64::MAX,
    mode: ShrinkMode::Lazy,
    owner: None,
    purge_only: true,
    scan_limit: usize::MAX,
};

impl ShrinkRequest {
    /// Both phases, for `target` bytes.
    pub fn new(target: u64, mode: ShrinkMode) -> Self {
        Self {
            target,
            mode,
            owner: None,
            purge_only: false,
            scan_limit: usize::MAX,
        }
    }
}

/// An object the shrinker left alone, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// The object.
    pub object: ObjectId,
    /// Why.
    pub reason: SkipKind,
}

/// Why an object was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// Pinned (mapped, scanned out, exported).
    Pinned,
    /// An unsignaled fence covers it.
    Busy,
    /// Someone held its lock.
    Contended,
    /// It changed between being picked and being locked.
    Changed,
    /// Its move or release failed, or the policy refused.
    Failed,
}

impl From<SkipReason> for SkipKind {
    fn from(r: SkipReason) -> Self {
        match r {
            SkipReason::Pinned => SkipKind::Pinned,
            SkipReason::Busy => SkipKind::Busy,
            SkipReason::Contended => SkipKind::Contended,
            SkipReason::Changed => SkipKind::Changed,
            SkipReason::Refused => SkipKind::Failed,
        }
    }
}

/// What a shrink did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShrinkReport {
    /// Bytes asked for.
    pub target: u64,
    /// How hard WILLNEED objects were pushed.
    pub mode: Option<ShrinkMode>,
    /// Bytes really released by purging.
    pub purged_bytes: u64,
    /// Objects purged.
    pub purged_objects: u64,
    /// Resident bytes of WILLNEED objects handed to the kernel (MADV_COLD
    /// or MADV_PAGEOUT), whether or not they left RAM.
    pub hinted_bytes: u64,
    /// Bytes of WILLNEED objects that really left RAM (MADV_PAGEOUT to
    /// swap; MADV_COLD frees nothing at once).
    pub written_back_bytes: u64,
    /// Bytes released by dropping the regions' buffer caches (every
    /// host-wide shrink; not counted towards the target).
    pub cache_bytes: u64,
    /// Bytes released by punching scratch files: pages guests wrote
    /// through mappings of purged buffers (not counted towards the target).
    pub scratch_bytes: u64,
    /// WILLNEED objects whose pages were handed to the kernel.
    pub released_objects: u64,
    /// Objects looked at.
    pub scanned: u64,
    /// Skipped because pinned.
    pub skipped_pinned: u64,
    /// Skipped because busy.
    pub skipped_busy: u64,
    /// Skipped because their lock was taken.
    pub skipped_contended: u64,
    /// Skipped because they changed after being picked, or failed.
    pub skipped_other: u64,
    /// The first skipped objects, by id.
    pub skipped: Vec<Skipped>,
    /// Wall time.
    pub duration: Duration,
}

impl ShrinkReport {
    /// Bytes really given back in all (purges, writeback, buffer caches,
    /// scratch files).
    pub fn freed(&self) -> u64 {
        self.purged_bytes + self.written_back_bytes + self.cache_bytes + self.scratch_bytes
    }

    /// What counts towards the target: object memory purged, plus, for a
    /// Lazy shrink, what was hinted to the kernel and, for a Writeback one,
    /// what left RAM. Buffer caches and scratch files never count.
    pub fn counted(&self) -> u64 {
        let released = match self.mode {
            Some(ShrinkMode::Lazy) => self.hinted_bytes,
            _ => self.written_back_bytes,
        };
        self.purged_bytes + released
    }

    /// Objects skipped for any reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_pinned + self.skipped_busy + self.skipped_contended + self.skipped_other
    }

    fn skip(&mut self, object: ObjectId, reason: SkipKind) {
        match reason {
            SkipKind::Pinned => self.skipped_pinned += 1,
            SkipKind::Busy => self.skipped_busy += 1,
            SkipKind::Contended => self.skipped_contended += 1,
            SkipKind::Changed | SkipKind::Failed => self.skipped_other += 1,
        }
        if self.skipped.len() < MAX_LISTED_SKIPS {
            self.skipped.push(Skipped { object, reason });
        }
    }

    fn done(&self, request: &ShrinkRequest) -> bool {
        self.counted() >= request.target || self.scanned >= request.scan_limit as u64
    }
}

/// What an admin `evict` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictReport {
    /// Objects moved to system memory.
    pub moved_objects: u64,
    /// Their bytes.
    pub moved_bytes: u64,
    /// Objects left in place (pinned, busy, contended, failed).
    pub skipped: u64,
}

impl BufferManager {
    /// Shrinks as asked (recorded in the shrink log as `api`). See the
    /// module docs.
    pub fn shrink(&self, request: &ShrinkRequest) -> ShrinkReport {
        self.inner.shrink("api", request)
    }

    /// Shrinks as asked, recorded in the shrink log under `trigger`
    /// (`psi`, `admin`, `soft-limit:<owner>`, …).
    pub fn shrink_as(&self, trigger: &str, request: &ShrinkRequest) -> ShrinkReport {
        self.inner.shrink(trigger, request)
    }

    /// As [`Self::shrink_as`], also returning the shrink's record.
    pub fn shrink_recorded(
        &self,
        trigger: &str,
        request: &ShrinkRequest,
    ) -> (ShrinkReport, ShrinkRecord) {
        self.inner.shrink_with_record(trigger, request)
    }

    /// Purges every DONTNEED object now (of one owner and its descendants,
    /// or of everyone), recorded as `purge`.
    pub fn purge(&self, owner: Option<OwnerId>) -> ShrinkReport {
        self.inner.shrink(
            "purge",
            &ShrinkRequest {
                owner,
                ..PURGE_ONLY
            },
        )
    }

    /// Moves every unpinned, idle object out of `region` into system memory
    /// (contents kept, DONTNEED ones included). The admin socket's `evict`.
    pub fn evict_region(&self, region: RegionId) -> EvictReport {
        let mut report = EvictReport::default();
        if region == RegionId::SYSTEM || self.inner.region(region).is_err() {
            return report;
        }
        let keys = |k: &ListKey| k.region() == Some(region.0);
        self.inner.walk_lists(keys, |obj| {
            if self.inner.move_out(obj, region) {
                report.moved_objects += 1;
                report.moved_bytes += obj.size;
                Step::Acted
            } else {
                report.skipped += 1;
                Step::Skipped
            }
        });
        report
    }
}

impl Inner {
    /// See the module docs. Recorded in the shrink log under `trigger`.
    pub fn shrink(&self, trigger: &str, request: &ShrinkRequest) -> ShrinkReport {
        self.shrink_with_record(trigger, request).0
    }

    /// [`Self::shrink`], with its record.
    pub fn shrink_with_record(
        &self,
        trigger: &str,
        request: &ShrinkRequest,
    ) -> (ShrinkReport, ShrinkRecord) {
        let started = Instant::now();
        let at = std::time::SystemTime::now();
        let mut report = ShrinkReport {
            target: request.target,
            mode: (!request.purge_only).then_some(request.mode),
            ..ShrinkReport::default()
        };
        if request.owner.is_none() {
            // Freed objects' files kept for reuse are the cheapest memory
            // to give back; a shrink for one owner does not touch them.
            report.cache_bytes = self.regions.iter().map(|r| r.trim()).sum();
        }
        report.scratch_bytes = self.punch_scratch(request.owner);
        self.purge_phase(request, &mut report);
        if !request.purge_only && !report.done(request) {
            self.release_phase(request, &mut report);
        }
        report.duration = started.elapsed();
        let record = self.record_shrink(trigger, at, request, &report);
        (report, record)
    }

    fn purge_phase(&self, request: &ShrinkRequest, report: &mut ShrinkReport) {
        // Largest purgeable owner first (fairness between VMs).
        let mut owners: Vec<(OwnerId, u64)> = {
            let all = self.owners_read();
            all.values()
                .filter(|a| a.id != OwnerId(0))
                .filter(|a| request.owner.is_none_or(|o| a.is_within(o)))
                .map(|a| (a.id, a.purgeable_total()))
                .filter(|(_, p)| *p > 0)
                .collect()
        };
        owners.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (owner, _) in owners {
            let keys = move |k: &ListKey| matches!(*k, ListKey::Purgeable { owner: o, .. } if o == owner.0);
            let stopped = self.walk_lists(keys, |obj| {
                if report.done(request) {
                    return Step::Stop;
                }
                report.scanned += 1;
                match self.purge_candidate(obj) {
                    VictimOutcome::Purged(bytes) => {
                        report.purged_objects += 1;
                        report.purged_bytes += bytes;
                        Step::Acted
                    }
                    VictimOutcome::Moved => Step::Acted,
                    VictimOutcome::Skipped(reason) => {
                        report.skip(obj.id, reason.into());
                        Step::Skipped
                    }
                }
            });
            if stopped || report.done(request) {
                return;
            }
        }
    }

    fn purge_candidate(&self, obj: &Object) -> VictimOutcome {
        let Some(mut st) = obj.try_lock() else {
            return VictimOutcome::Skipped(SkipReason::Contended);
        };
        if st.dead || st.madv != Madv::DontNeed || st.backing.is_none() {
            return VictimOutcome::Skipped(SkipReason::Changed);
        }
        if st.pin_count > 0 && !st.purgeable_while_pinned() {
            return VictimOutcome::Skipped(SkipReason::Pinned);
        }
        if self.is_busy(&st) {
            return VictimOutcome::Skipped(SkipReason::Busy);
        }
        match self.purge_locked(obj, &mut st) {
            Ok(bytes) => VictimOutcome::Purged(bytes),
            Err(e) => {
                log::warn!("purging {} failed: {e}", obj.id);
                VictimOutcome::Skipped(SkipReason::Refused)
            }
        }
    }

    fn release_phase(&self, request: &ShrinkRequest, report: &mut ShrinkReport) {
        let releasable: Vec<u8> = self
            .regions
            .iter()
            .filter(|r| r.can_release())
            .map(|r| r.info().id.0)
            .collect();
        // Writeback starts with what an earlier Lazy pass hinted (the
        // swapped lists): the coldest memory, and otherwise out of reach.
        let mut keys = Vec::new();
        if request.mode == ShrinkMode::Writeback {
            keys.extend(releasable.iter().map(|&region| ListKey::Swapped { region }));
        }
        for priority in 0..Priority::LEVELS as u8 {
            keys.extend(
                releasable
                    .iter()
                    .map(|&region| ListKey::Evictable { region, priority }),
            );
        }
        for key in keys {
            let attempt = |obj: &Object| {
                if report.done(request) {
                    return Step::Stop;
                }
                report.scanned += 1;
                match self.release_candidate(obj, request.mode) {
                    Ok(released) => {
                        report.released_objects += 1;
                        report.hinted_bytes += released.hinted;
                        report.written_back_bytes += released.freed;
                        Step::Acted
                    }
                    Err(reason) => {
                        report.skip(obj.id, reason.into());
                        Step::Skipped
                    }
                }
            };
            match request.owner {
                // One owner: walk its own objects once (its slice of the
                // global lists may be anywhere in them).
                Some(owner) => {
                    let mine = self.owner_candidates(owner, key);
                    let budget = mine.len();
                    let mut once = Some(mine);
                    self.walk(|_| once.take().unwrap_or_default(), budget, attempt);
                }
                None => {
                    self.walk_lists(|k| *k == key, attempt);
                }
            }
            if report.done(request) {
                return;
            }
        }
    }

    fn release_candidate(&self, obj: &Object, mode: ShrinkMode) -> Result<Released, SkipReason> {
        let Some(mut st) = obj.try_lock() else {
            return Err(SkipReason::Contended);
        };
        let Some(region_id) = st.region() else {
            return Err(SkipReason::Changed);
        };
        let region = &self.regions[usize::from(region_id.0)];
        // A Lazy pass leaves what was already hinted; Writeback takes both.
        let already = st.swapped && mode == ShrinkMode::Lazy;
        if st.dead || st.madv != Madv::WillNeed || already || !region.can_release() {
            return Err(SkipReason::Changed);
        }
        if st.pin_count > 0 {
            return Err(SkipReason::Pinned);
        }
        if self.is_busy(&st) {
            return Err(SkipReason::Busy);
        }
        let released = match &st.backing {
            Some((_, backing)) => region
                .storage(backing)
                .and_then(|s| s.file.release(s.offset, s.len, mode)),
            None => return Err(SkipReason::Changed),
        };
        let released = match released {
            Ok(r) => r,
            Err(e) => {
                log::warn!("releasing {} failed: {e}", obj.id);
                return Err(SkipReason::Refused);
            }
        };
        // Marked swapped whatever the kernel managed: the pages were handed
        // over (the seed sets SWAPPED before unpopulating); the object
        // moves to its region's swapped list, where only Writeback looks,
        // until the guest uses it again.
        let before = st.charge();
        st.swapped = true;
        self.commit(obj, &st, before);
        obj.owner.count(|a| &a.hinted_bytes, released.hinted);
        obj.owner.count(|a| &a.written_back_bytes, released.freed);
        Ok(released)
    }

    /// Walks the lists matching `keys` from their heads (see [`Self::walk`]),
    /// looking at no more objects than they held when the walk began.
    pub(crate) fn walk_lists(
        &self,
        keys: impl Fn(&ListKey) -> bool + Copy,
        attempt: impl FnMut(&Object) -> Step,
    ) -> bool {
        let budget = self
            .registry()
            .lists_where(keys)
            .iter()
            .map(|(_, len)| len)
            .sum();
        self.walk(|max| self.batch_from(keys, max, |_| true), budget, attempt)
    }

    /// Hands candidates, batch by batch, to `attempt`; skipped ones rotate
    /// to their list's tail. True if `attempt` said stop.
    ///
    /// Bounded by `budget` objects looked at, so a walk ends even while
    /// other threads keep adding candidates (a guest creating and
    /// advising objects during a purge, a VM allocating device memory
    /// during an evict): it acts on what was there when it began.
    fn walk(
        &self,
        mut next_batch: impl FnMut(usize) -> Vec<Arc<Object>>,
        mut budget: usize,
        mut attempt: impl FnMut(&Object) -> Step,
    ) -> bool {
        while budget > 0 {
            let batch = next_batch(budget.min(BATCH));
            if batch.is_empty() {
                return false;
            }
            for obj in batch.iter().take(budget) {
                budget -= 1;
                match attempt(obj) {
                    Step::Acted => {}
                    Step::Skipped => self.registry().touch(obj.id),
                    Step::Stop => return true,
                }
            }
        }
        false
    }

    /// Up to `max` objects from the heads of the lists matching `keys`.
    pub(crate) fn batch_from(
        &self,
        keys: impl Fn(&ListKey) -> bool,
        max: usize,
        keep: impl Fn(&Object) -> bool,
    ) -> Vec<Arc<Object>> {
        let reg = self.registry();
        let mut lists = reg.lists_where(keys);
        lists.sort_by_key(|(k, _)| list_order(k));
        let mut out = Vec::new();
        for (key, _) in lists {
            if out.len() >= max {
                break;
            }
            reg.candidates(key, max - out.len(), usize::MAX, &keep, &mut out);
        }
        out
    }

    fn owner_candidates(&self, owner: OwnerId, key: ListKey) -> Vec<Arc<Object>> {
        let owners = self.subtree(owner);
        let reg = self.registry();
        owners
            .iter()
            .flat_map(|o| reg.owner_objects(o.0))
            .filter(|o| reg.key_of(o.id) == Some(key))
            .collect()
    }

    /// Moves one object out of `region` to system memory, contents kept.
    fn move_out(&self, obj: &Object, region: RegionId) -> bool {
        let Some(mut st) = obj.try_lock() else {
            return false;
        };
        if st.dead || st.region() != Some(region) || st.pin_count > 0 || self.is_busy(&st) {
            return false;
        }
        match self.validate_locked(obj, &mut st, crate::types::Placement::system()) {
            Ok(_) => true,
            Err(e) => {
                log::warn!("evicting {} from {region} failed: {e}", obj.id);
                false
            }
        }
    }
}

/// Deterministic walk order: by region, then priority.
fn list_order(key: &ListKey) -> (u8, u8, u32) {
    match *key {
        ListKey::Purgeable { owner, region } => (region, 0, owner),
        ListKey::Evictable { region, priority } => (region, 1 + priority, 0),
        ListKey::Swapped { region } => (region, 255, 0),
        ListKey::None => (255, 255, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Placement, PAGE_SIZE};

    /// A walk whose every step adds a new candidate (as a guest creating
    /// and advising objects during a purge does) still ends, having looked
    /// at exactly the objects that were there when it began.
    #[test]
    fn a_walk_ends_while_candidates_keep_coming() {
        let bm = BufferManager::emulated(64 * PAGE_SIZE).expect("manager");
        let vm = bm.create_owner("vm", None).expect("owner");
        let add_candidate = || {
            let id = bm
                .create(vm, PAGE_SIZE, Placement::system(), Priority::NORMAL)
                .expect("create");
            bm.write(id, 0, &[1]).expect("write");
            bm.madvise(id, Madv::DontNeed).expect("madvise");
            id
        };
        let first: Vec<ObjectId> = (0..40).map(|_| add_candidate()).collect();
        let purgeable = |k: &ListKey| matches!(k, ListKey::Purgeable { .. });
        for acted in [false, true] {
            let mut seen = Vec::new();
            let stopped = bm.inner.walk_lists(purgeable, |obj| {
                seen.push(obj.id);
                if seen.len() > 10_000 {
                    return Step::Stop; // unbounded: fail below, don't hang
                }
                add_candidate();
                if acted {
                    // As a purge does: the object leaves its list.
                    bm.destroy(obj.id).expect("destroy");
                    Step::Acted
                } else {
                    Step::Skipped
                }
            });
            assert!(!stopped, "the walk did not end by itself");
            if !acted {
                assert_eq!(seen, first, "looked at the first objects, once each");
            } else {
                // The 40 first and the 40 added by the first walk, none of
                // those added by this one.
                let mut sorted = seen.clone();
                sorted.sort();
                assert_eq!(sorted, (0..80).map(ObjectId).collect::<Vec<_>>());
            }
        }
    }
}
