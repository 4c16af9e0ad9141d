//! # vgpu-backend: the host buffer manager
//!
//! Owns host buffer objects for *owners* (a VM, a guest context inside it):
//! where each object lives, its shmem backing, the guest's madvise, purging,
//! the shrinker and the accounting behind quotas. It knows nothing of
//! virtio; the device crate drives it. The design is the Linux TTM + i915
//! shmem backend (see `shared/seed/i915-ttm-shmem-backend-patch.txt`)
//! carried into a userspace daemon.
//!
//! ## Objects
//!
//! An object has a page-aligned size, an owner, an ordered placement list,
//! a current region (or none), a madvise state (WILLNEED, DONTNEED, PURGED),
//! a pin count, an optional busy fence, flags (swapped, dirty), a priority
//! and a place in an LRU list. **Creating one allocates no memory**: its
//! first validate or write populates it.
//!
//! ## Regions
//!
//! Regions come from a [`region::MemoryDriver`]. *System* memory gives each
//! object its own memfd, created when the object is first populated there,
//! sized once and sealed against shrinking and growing, named
//! `vgpu:<owner>:<object>` so an admin can spot it in `/proc/<pid>/fd`.
//! The *emulated device* region is one memfd pool (default 256 MiB) carved
//! by an offset allocator: it stands in for Intel LMEM on hosts without an
//! Intel GPU and is **emulated** — its pages are host RAM; what it
//! reproduces is the model (hard capacity, eviction, copies on moves).
//!
//! ## Placement (TTM semantics, Linux ≥ 6.9)
//!
//! `validate(object, placement)` tries the non-fallback places without
//! evicting, then the non-desired places with eviction from full non-system
//! regions: DONTNEED victims are purged instead of moved, WILLNEED victims
//! move to system memory with their contents, least recently used and
//! lowest priority first, skipping pinned and busy objects; then it gives
//! up with `NoSpace`. Every guest use moves the object to the tail of its
//! LRU list in O(1). Details in the `placement` module.
//!
//! ## madvise
//!
//! `madvise(object, WILLNEED | DONTNEED)` answers `retained`. DONTNEED
//! objects are first in line for purging. A purged object is dead, as in
//! i915: WILLNEED answers `retained = false` and every later access or
//! mapping fails with [`BoError::Purged`]. Pinned objects are not purged,
//! with one exception the kernel's i915 and msm drivers also make: an
//! object pinned only by guest mappings ([`PinReason::Mapped`]) whose bytes
//! are in system memory is purged like any other — its memfd is its own,
//! so the punched pages are freed and the guest's mapping stays valid,
//! reading zeros. The Linux guest maps every MAPPABLE blob for its whole
//! life, so this is what lets such blobs be purged at all. Scanout and
//! export pins, and device-pool objects, are never purged.
//!
//! ## Shrinker order
//!
//! [`BufferManager::shrink`] drops the regions' buffer caches (host-wide
//! shrinks) and punches the VMs' scratch files, then purges DONTNEED
//! objects (largest purgeable owner first; pages punched immediately),
//! then, if more is wanted, hands idle unpinned WILLNEED objects' pages to
//! the kernel: Lazy → MADV_COLD, counting what it *hinted* towards its
//! target and stopping there; Writeback → MADV_PAGEOUT, starting with what
//! Lazy hinted, counting only what left RAM. Bytes count only when really
//! released, measured on the file; on a host without swap writeback frees
//! nothing and the report says 0. Buffer caches and scratch files are
//! freed and reported but never counted towards a target. Every shrink is
//! recorded in the shrink log under its trigger ([`BufferManager::shrink_log`]).
//! Details in the `shrinker` module.
//!
//! ## Purged buffers a guest still maps
//!
//! A purge of an object the guest maps keeps its (punched) file until the
//! device has remapped the guest's range over the VM's scratch file
//! ([`BufferManager::watch_purges`], [`BufferManager::scratch_map`]), so
//! what a guest writes there is always charged to it and emptied by every
//! shrink. Details in the `scratch` module.
//!
//! ## Accounting and quotas
//!
//! Owners form a tree under a host root; every charge applies to the owner
//! and its ancestors. Per owner and region: placed (populated sizes),
//! purgeable, pinned, purged (objects, bytes), hinted, written back; the
//! stats add *resident* bytes measured with mincore. A quota makes allocations fail
//! with [`BoError::QuotaExceeded`] — after the owner's own DONTNEED objects
//! were purged. [`BufferManager::destroy_owner`] frees every byte an owner
//! (and its descendants) held.
//!
//! ## Locking
//!
//! Three kinds of locks, always taken in this order:
//!
//! 1. **Object locks** (one per object) guard an object's state and are the
//!    only locks held across long work (copies, punches, releases), so a
//!    long operation stalls nobody but users of that object. A thread holds
//!    at most one object lock *blocking*; a second object (an eviction
//!    victim, a shrink candidate) is only ever `try_lock`ed and skipped as
//!    *contended* when taken — so two evictions can never deadlock.
//! 2. **The LRU lock** (the registry's mutex, TTM's `lru_lock`) guards ids,
//!    list membership and order. It is held only for O(1) list surgery or
//!    to copy out a short batch of candidates — never across I/O and never
//!    while waiting for an object lock. Object state changes update the
//!    lists (`commit`) while still holding the object lock, so the lists
//!    always describe committed state.
//! 3. **Region allocator locks** (the device pool's offset allocator) are
//!    innermost and held only inside `allocate` / `free`.
//!
//! Owner accounts are atomics and need no lock; the owner table is a
//! read-mostly `RwLock` taken only briefly.
//!
//! The shrinker and eviction follow the seed's rule: pick candidates under
//! the LRU lock, drop it, `try_lock` each candidate and **re-check** its
//! state under its own lock, because it may have been re-advised, pinned,
//! moved or destroyed in between.

#![deny(missing_docs)]

mod account;
pub mod buffer;
mod error;
mod fence;
pub mod host;
pub mod intel;
mod mailbox;
mod manager;
mod object;
mod placement;
pub mod pressure;
pub mod region;
mod registry;
mod scratch;
pub mod shmem;
mod shrink_log;
mod shrinker;
mod stats;
mod types;

pub use error::{BoError, BoResult};
pub use fence::Fence;
pub use manager::{BufferManager, MapTarget, TeardownReport, MAX_OBJECT_SIZE};
pub use placement::{DefaultPolicy, EvictionPolicy};
pub use scratch::PurgeWatch;
pub use shrink_log::{ShrinkLogSnapshot, ShrinkRecord, MAX_RECORDS};
pub use shrinker::{EvictReport, ShrinkReport, ShrinkRequest, SkipKind, Skipped, PURGE_ONLY};
pub use stats::{ManagerStats, ObjectFilter, ObjectInfo, OwnerStats, OwnerUsage, RegionStats};
pub use types::{
    page_align, Madv, MemoryClass, ObjectId, OwnerId, PinReason, Place, PlaceKind, Placement,
    Priority, RegionId, ShrinkMode, MAX_PLACES, PAGE_SIZE,
};
