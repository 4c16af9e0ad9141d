//! Per-owner accounting: what an owner holds, what it may hold (quota and
//! soft limit), and what the shrinker took from it.
//!
//! Owners form a tree (host → VM → context). Every charge applies to the
//! owner and each of its ancestors, like cgroup memory accounting, so a
//! VM's numbers include its contexts' and the root's are the host totals.
//! Counters are atomics: each is exact whenever no operation is half-way
//! through, which is when the model test checks them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::object::Charge;
use crate::scratch::{PurgeNotifier, Scratch};
use crate::types::OwnerId;

/// Most regions a manager has.
pub const MAX_REGIONS: usize = 4;

/// "No limit".
pub const UNLIMITED: u64 = u64::MAX;

/// One owner's counters and limits.
#[derive(Debug)]
pub(crate) struct OwnerAccount {
    pub id: OwnerId,
    pub name: String,
    pub parent: Option<Arc<OwnerAccount>>,
    pub quota: AtomicU64,
    pub soft_limit: AtomicU64,
    /// Bytes of populated objects (any region), plus the scratch
    /// reservation of a VM (see `scratch`): what the quota limits.
    pub charged: AtomicU64,
    /// Bytes of populated objects per region (their sizes; what is really
    /// in RAM is measured by `stats`).
    pub placed: [AtomicU64; MAX_REGIONS],
    pub purgeable: [AtomicU64; MAX_REGIONS],
    pub pinned: AtomicU64,
    pub objects: AtomicU64,
    pub purged_objects: AtomicU64,
    pub purged_bytes: AtomicU64,
    pub hinted_bytes: AtomicU64,
    pub written_back_bytes: AtomicU64,
    pub closed: AtomicBool,
    /// Scratch memory behind guest mappings of purged buffers (used on
    /// top-level owners, the VMs).
    pub scratch: Mutex<Scratch>,
    /// Who hears of purges of mapped buffers (a VM's device).
    pub purge_watch: Mutex<Option<Arc<PurgeNotifier>>>,
}

/// A quota that would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverQuota {
    pub owner: OwnerId,
    pub quota: u64,
    pub used: u64,
}

impl OwnerAccount {
    pub fn new(id: OwnerId, name: String, parent: Option<Arc<OwnerAccount>>) -> Self {
        Self {
            id,
            name,
            parent,
            quota: AtomicU64::new(UNLIMITED),
            soft_limit: AtomicU64::new(UNLIMITED),
            charged: AtomicU64::new(0),
            placed: Default::default(),
            purgeable: Default::default(),
            pinned: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            purged_objects: AtomicU64::new(0),
            purged_bytes: AtomicU64::new(0),
            hinted_bytes: AtomicU64::new(0),
            written_back_bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            scratch: Mutex::new(Scratch::default()),
            purge_watch: Mutex::new(None),
        }
    }

    /// This owner and its ancestors, nearest first.
    pub fn chain(&self) -> impl Iterator<Item = &OwnerAccount> {
        std::iter::successors(Some(self), |a| a.parent.as_deref())
    }

    /// The top-level owner this one belongs to (the VM: the ancestor just
    /// below the host root), or itself if it is one, or the root.
    pub fn top(&self) -> &OwnerAccount {
        let mut at = self;
        while let Some(parent) = at.parent.as_deref() {
            if parent.parent.is_none() {
                return at;
            }
            at = parent;
        }
        at
    }

    /// Charges `bytes` to this owner and its ancestors whatever their
    /// quotas say: for reservations that replace an equal or larger charge
    /// just returned (the scratch reservation).
    pub fn force_charge(&self, bytes: u64) {
        for a in self.chain() {
            a.charged.fetch_add(bytes, Ordering::AcqRel);
        }
    }

    /// Whether `other` is this owner or one of its ancestors.
    pub fn is_within(&self, other: OwnerId) -> bool {
        self.chain().any(|a| a.id == other)
    }

    /// Charges `bytes` to this owner and its ancestors unless a quota on the
    /// way would be exceeded (then nothing is charged).
    pub fn try_charge(&self, bytes: u64) -> Result<(), OverQuota> {
        let mut done: Vec<&OwnerAccount> = Vec::new();
        for account in self.chain() {
            let quota = account.quota.load(Ordering::Relaxed);
            let result =
                account
                    .charged
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                        used.checked_add(bytes).filter(|total| *total <= quota)
                    });
            match result {
                Ok(_) => done.push(account),
                Err(used) => {
                    for a in done {
                        a.charged.fetch_sub(bytes, Ordering::AcqRel);
                    }
                    return Err(OverQuota {
                        owner: account.id,
                        quota,
                        used,
                    });
                }
            }
        }
        Ok(())
    }

    /// Returns `bytes` charged earlier.
    pub fn uncharge(&self, bytes: u64) {
        for a in self.chain() {
            a.charged.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Moves an object of `size` bytes from one accounted state to another.
    pub fn apply(&self, before: Charge, after: Charge, size: u64) {
        if before == after {
            return;
        }
        for a in self.chain() {
            if let Some(r) = before.region {
                a.placed[usize::from(r.0)].fetch_sub(size, Ordering::AcqRel);
            }
            if let Some(r) = after.region {
                a.placed[usize::from(r.0)].fetch_add(size, Ordering::AcqRel);
            }
            if let (Some(r), true) = (before.region, before.purgeable) {
                a.purgeable[usize::from(r.0)].fetch_sub(size, Ordering::AcqRel);
            }
            if let (Some(r), true) = (after.region, after.purgeable) {
                a.purgeable[usize::from(r.0)].fetch_add(size, Ordering::AcqRel);
            }
            adjust(&a.pinned, before.pinned, after.pinned, size);
        }
    }

    /// Adds to an event counter of this owner and its ancestors.
    pub fn count(&self, counter: impl Fn(&OwnerAccount) -> &AtomicU64, amount: u64) {
        for a in self.chain() {
            counter(a).fetch_add(amount, Ordering::Relaxed);
        }
    }

    /// Bytes placed in all regions.
    #[cfg(test)]
    pub fn placed_total(&self) -> u64 {
        self.placed.iter().map(|r| r.load(Ordering::Relaxed)).sum()
    }

    /// Bytes of DONTNEED objects in all regions.
    pub fn purgeable_total(&self) -> u64 {
        self.purgeable
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }
}

fn adjust(counter: &AtomicU64, before: bool, after: bool, size: u64) {
    match (before, after) {
        (false, true) => {
            counter.fetch_add(size, Ordering::AcqRel);
        }
        (true, false) => {
            counter.fetch_sub(size, Ordering::AcqRel);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RegionId;

    fn tree() -> (Arc<OwnerAccount>, Arc<OwnerAccount>, Arc<OwnerAccount>) {
        let root = Arc::new(OwnerAccount::new(OwnerId(0), "host".into(), None));
        let vm = Arc::new(OwnerAccount::new(
            OwnerId(1),
            "vm".into(),
            Some(root.clone()),
        ));
        let ctx = Arc::new(OwnerAccount::new(
            OwnerId(2),
            "ctx".into(),
            Some(vm.clone()),
        ));
        (root, vm, ctx)
    }

    #[test]
    fn charges_propagate_and_quotas_of_ancestors_hold() {
        let (root, vm, ctx) = tree();
        vm.quota.store(100, Ordering::Relaxed);
        ctx.try_charge(60).unwrap();
        assert_eq!(root.charged.load(Ordering::Relaxed), 60);
        let err = ctx.try_charge(50).unwrap_err();
        assert_eq!(
            err,
            OverQuota {
                owner: OwnerId(1),
                quota: 100,
                used: 60
            }
        );
        assert_eq!(ctx.charged.load(Ordering::Relaxed), 60, "rolled back");
        assert_eq!(root.charged.load(Ordering::Relaxed), 60);
        ctx.uncharge(60);
        assert_eq!(root.charged.load(Ordering::Relaxed), 0);
        assert!(ctx.is_within(OwnerId(1)) && !vm.is_within(OwnerId(2)));
    }

    #[test]
    fn state_changes_move_bytes_between_counters() {
        let (root, _vm, ctx) = tree();
        let none = Charge {
            region: None,
            purgeable: false,
            pinned: false,
        };
        let dev = Charge {
            region: Some(RegionId::DEVICE),
            purgeable: true,
            pinned: false,
        };
        ctx.apply(none, dev, 4096);
        assert_eq!(root.placed[1].load(Ordering::Relaxed), 4096);
        assert_eq!(root.purgeable[1].load(Ordering::Relaxed), 4096);
        ctx.apply(dev, none, 4096);
        assert_eq!(root.placed_total(), 0);
        assert_eq!(root.purgeable_total(), 0);
    }
}
