//! A buffer object and the state its lock protects.
//!
//! Owns: the per-object lock and what it guards (placement, backing,
//! madvise, pins, fence, flags, priority). The object's *position* in the
//! LRU lists is not here: it belongs to the registry and its lock.
//!
//! Must not: take the registry lock while holding another object's lock
//! other than through `try_lock` (see the crate docs on lock order).

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::account::OwnerAccount;
use crate::fence::Fence;
use crate::region::Backing;
use crate::registry::ListKey;
use crate::types::{Madv, ObjectId, Placement, Priority, RegionId};

/// A host buffer object. Shared (`Arc`) between the registry and whoever is
/// working on it; the state is behind the object's own lock.
#[derive(Debug)]
pub(crate) struct Object {
    pub id: ObjectId,
    pub owner: Arc<OwnerAccount>,
    /// Page-aligned size.
    pub size: u64,
    /// Seconds since the manager started, when the object was created.
    pub created_s: u32,
    state: Mutex<ObjectState>,
}

/// Everything about an object that changes, guarded by its lock.
#[derive(Debug)]
pub(crate) struct ObjectState {
    /// Ordered placement list.
    pub placement: Placement,
    /// Where the bytes are; `None` until populated, and after a purge.
    pub backing: Option<(RegionId, Backing)>,
    /// A purged object's file that a guest still maps: kept (punched at
    /// every shrink, charged under the VM's scratch reservation) until the
    /// last guest mapping is gone (see `scratch`).
    pub limbo: Option<(RegionId, Backing)>,
    /// Guest advice.
    pub madv: Madv,
    /// Pins (mapped, scanout, exported); pinned objects never move, and
    /// purge only as [`ObjectState::purgeable_while_pinned`] allows.
    pub pin_count: u32,
    /// How many of the pins are guest mappings ([`PinReason::Mapped`]).
    pub map_pins: u32,
    /// The current backing's file descriptor left this process (mapped
    /// into a guest or exported): the file is never reused for another
    /// object.
    pub fd_shared: bool,
    /// The last submission using the object.
    pub busy: Option<Fence>,
    /// Released to the kernel by the shrinker (MADV_COLD / MADV_PAGEOUT).
    pub swapped: bool,
    /// Written since it was last populated or moved.
    pub dirty: bool,
    /// Eviction priority.
    pub priority: Priority,
    /// Destroyed: every operation on a stale handle fails.
    pub dead: bool,
}

impl ObjectState {
    pub fn new(placement: Placement, priority: Priority) -> Self {
        Self {
            placement,
            backing: None,
            limbo: None,
            madv: Madv::WillNeed,
            pin_count: 0,
            map_pins: 0,
            fd_shared: false,
            busy: None,
            swapped: false,
            dirty: false,
            priority,
            dead: false,
        }
    }

    /// The region holding the bytes.
    pub fn region(&self) -> Option<RegionId> {
        self.backing.as_ref().map(|(r, _)| *r)
    }

    /// Whether an unsignaled fence covers the object.
    pub fn is_busy(&self) -> bool {
        self.busy.as_ref().is_some_and(|f| !f.is_signaled())
    }

    /// Whether a DONTNEED object may be purged although pinned: when every
    /// pin is a guest mapping and its bytes are in system memory. Its file
    /// is its own, so punching it frees the pages while the guest's mapping
    /// stays valid (reading zeros), as the kernel's i915 and msm purge
    /// mapped objects. The Linux guest maps every MAPPABLE blob from
    /// creation to destruction, so without this no such blob could ever be
    /// purged. Device-pool ranges are never purged while mapped: the range
    /// could be handed to another object under the guest's mapping.
    pub fn purgeable_while_pinned(&self) -> bool {
        self.pin_count == self.map_pins && self.region() == Some(RegionId::SYSTEM)
    }

    /// Pins that are not guest mappings.
    pub fn hard_pins(&self) -> u32 {
        self.pin_count - self.map_pins
    }

    /// The LRU list the object belongs on, from its state alone.
    pub fn list_key(&self, owner: u32) -> ListKey {
        let pins = match self.pin_count {
            0 => 0,
            _ if self.madv == Madv::DontNeed && self.purgeable_while_pinned() => 0,
            n => n,
        };
        match (&self.backing, self.dead, pins) {
            (Some((region, _)), false, 0) => match self.madv {
                Madv::DontNeed => ListKey::Purgeable {
                    owner,
                    region: region.0,
                },
                Madv::WillNeed if self.swapped => ListKey::Swapped { region: region.0 },
                Madv::WillNeed => ListKey::Evictable {
                    region: region.0,
                    priority: self.priority.level(),
                },
                Madv::Purged => ListKey::None,
            },
            _ => ListKey::None,
        }
    }

    /// What the accounts count for this state.
    pub fn charge(&self) -> Charge {
        let region = if self.dead { None } else { self.region() };
        Charge {
            region,
            purgeable: region.is_some() && self.madv == Madv::DontNeed,
            pinned: region.is_some() && self.pin_count > 0,
        }
    }
}

/// The part of an object's state the accounts sum up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Charge {
    pub region: Option<RegionId>,
    pub purgeable: bool,
    pub pinned: bool,
}

impl Object {
    pub fn new(
        id: ObjectId,
        owner: Arc<OwnerAccount>,
        size: u64,
        created_s: u32,
        state: ObjectState,
    ) -> Self {
        Self {
            id,
            owner,
            size,
            created_s,
            state: Mutex::new(state),
        }
    }

    /// Blocks until the object's lock is held.
    pub fn lock(&self) -> MutexGuard<'_, ObjectState> {
        // A panic in another thread while it held this lock leaves the
        // state as that thread last wrote it; every field is valid on its
        // own, so keep serving rather than poisoning the whole VM.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock if it is free right now (the shrinker and eviction never
    /// wait for an object: that is how they avoid lock-order deadlocks).
    pub fn try_lock(&self) -> Option<MutexGuard<'_, ObjectState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}
