//! Small value types shared by the buffer manager's modules: ids, madvise
//! states, placements, pin reasons, shrink modes.

use std::fmt;

/// Page size the manager aligns object sizes to.
pub const PAGE_SIZE: u64 = 4096;

/// Rounds `size` up to whole pages; `None` on overflow.
pub fn page_align(size: u64) -> Option<u64> {
    size.checked_add(PAGE_SIZE - 1)
        .map(|s| s & !(PAGE_SIZE - 1))
}

/// Identifies a buffer object: a slot index and the slot's generation, so a
/// stale id never reaches a newer object in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub(crate) u64);

impl ObjectId {
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        Self(u64::from(generation) << 32 | u64::from(index))
    }

    pub(crate) fn index(self) -> u32 {
        self.0 as u32
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as one number (for logs and the admin socket).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id from [`ObjectId::as_u64`].
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bo{}.{}", self.index(), self.generation())
    }
}

/// Identifies an owner: a VM, or a guest context inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(pub(crate) u32);

impl OwnerId {
    /// The id as a number.
    pub fn as_u32(self) -> u32 {
        self.0
    }

    /// The id from [`OwnerId::as_u32`].
    pub fn from_u32(raw: u32) -> Self {
        Self(raw)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner{}", self.0)
    }
}

/// Index of a memory region in the manager (0 is always system memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u8);

impl RegionId {
    /// System memory: one memfd per object.
    pub const SYSTEM: RegionId = RegionId(0);
    /// The (first) device-local region.
    pub const DEVICE: RegionId = RegionId(1);
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region{}", self.0)
    }
}

/// Kind of memory a region is, as i915 and xe classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryClass {
    /// Host system memory.
    System,
    /// Device-local memory (Intel LMEM, or its emulation).
    Device,
}

/// The guest's advice on an object (i915 / msm / panfrost semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Madv {
    /// The contents are needed.
    WillNeed,
    /// The contents may be thrown away under memory pressure.
    DontNeed,
    /// The contents were thrown away; the object is dead for good.
    Purged,
}

impl Madv {
    /// The i915 uapi number (`I915_MADV_*`, `__I915_MADV_PURGED`).
    pub fn as_u32(self) -> u32 {
        match self {
            Madv::WillNeed => 0,
            Madv::DontNeed => 1,
            Madv::Purged => 2,
        }
    }

    /// Lower-case name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Madv::WillNeed => "willneed",
            Madv::DontNeed => "dontneed",
            Madv::Purged => "purged",
        }
    }
}

/// How a place in a placement list may be used (TTM, Linux ≥ 6.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PlaceKind {
    /// Tried without eviction first, and with eviction after.
    #[default]
    Normal,
    /// Tried only without eviction (TTM_PL_FLAG_DESIRED).
    Desired,
    /// Used only when the others would need eviction (TTM_PL_FLAG_FALLBACK).
    Fallback,
}

/// One entry of a placement list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// Region.
    pub region: RegionId,
    /// How it may be used.
    pub kind: PlaceKind,
}

impl Place {
    /// A normal place.
    pub const fn new(region: RegionId) -> Self {
        Self {
            region,
            kind: PlaceKind::Normal,
        }
    }

    /// A desired place (no eviction for it).
    pub const fn desired(region: RegionId) -> Self {
        Self {
            region,
            kind: PlaceKind::Desired,
        }
    }

    /// A fallback place.
    pub const fn fallback(region: RegionId) -> Self {
        Self {
            region,
            kind: PlaceKind::Fallback,
        }
    }
}

/// Most places a placement list holds.
pub const MAX_PLACES: usize = 4;

/// An ordered placement list, most preferred first. Stored inline (no heap).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placement {
    places: [Place; MAX_PLACES],
    len: u8,
}

impl Placement {
    /// A placement from places in order of preference. `None` if empty,
    /// longer than [`MAX_PLACES`], or naming a region twice.
    pub fn new(places: &[Place]) -> Option<Self> {
        if places.is_empty() || places.len() > MAX_PLACES {
            return None;
        }
        for (i, p) in places.iter().enumerate() {
            if places[..i].iter().any(|q| q.region == p.region) {
                return None;
            }
        }
        let mut out = [Place::new(RegionId::SYSTEM); MAX_PLACES];
        out[..places.len()].copy_from_slice(places);
        Some(Self {
            places: out,
            len: places.len() as u8,
        })
    }

    /// System memory only.
    pub const fn system() -> Self {
        Self {
            places: [Place::new(RegionId::SYSTEM); MAX_PLACES],
            len: 1,
        }
    }

    /// Device memory, falling back to system memory when the device is full
    /// (i915's LMEM objects with an SMEM placement).
    pub const fn device_then_system() -> Self {
        let mut places = [Place::new(RegionId::DEVICE); MAX_PLACES];
        places[1] = Place::fallback(RegionId::SYSTEM);
        Self { places, len: 2 }
    }

    /// The places in order of preference.
    pub fn places(&self) -> &[Place] {
        &self.places[..usize::from(self.len)]
    }

    /// Whether `region` is one of the places.
    pub fn contains(&self, region: RegionId) -> bool {
        self.places().iter().any(|p| p.region == region)
    }

    /// The most preferred region.
    pub fn preferred(&self) -> RegionId {
        self.places[0].region
    }
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.places()).finish()
    }
}

/// Why an object is pinned: it cannot move, and only guest mappings of
/// system-memory objects still let it be purged (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// Mapped into the guest's host-visible region.
    Mapped,
    /// Shown on a scanout.
    Scanout,
    /// Exported to another device or process.
    Exported,
    /// Read and written by the daemon itself (a context's response blob).
    Host,
    /// In a GPU submission being handed to the kernel (held from
    /// validation until the submission's fence is attached).
    Gpu,
}

/// How hard the shrinker pushes WILLNEED objects out (the seed's
/// `should_writeback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShrinkMode {
    /// Mark pages cold (MADV_COLD) and let the kernel reclaim them later.
    Lazy,
    /// Push pages out now (MADV_PAGEOUT).
    Writeback,
}

impl ShrinkMode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            ShrinkMode::Lazy => "lazy",
            ShrinkMode::Writeback => "writeback",
        }
    }
}

/// Eviction priority: lower is evicted first. DONTNEED objects always go
/// before any priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(u8);

impl Priority {
    /// Number of priority levels.
    pub const LEVELS: usize = 4;
    /// Evicted first.
    pub const LOW: Priority = Priority(0);
    /// The default.
    pub const NORMAL: Priority = Priority(1);
    /// Evicted late.
    pub const HIGH: Priority = Priority(2);
    /// Evicted last.
    pub const HIGHEST: Priority = Priority(3);

    /// A priority level, clamped to the levels that exist.
    pub fn new(level: u8) -> Self {
        Priority(level.min(Self::LEVELS as u8 - 1))
    }

    /// The level.
    pub fn level(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_validate_their_places() {
        assert!(Placement::new(&[]).is_none());
        assert!(Placement::new(&[Place::new(RegionId::SYSTEM); 2]).is_none());
        assert!(Placement::new(&[
            Place::new(RegionId(0)),
            Place::new(RegionId(1)),
            Place::new(RegionId(2)),
            Place::new(RegionId(3)),
            Place::new(RegionId(4)),
        ])
        .is_none());
        let p = Placement::device_then_system();
        assert_eq!(p.places().len(), 2);
        assert_eq!(p.preferred(), RegionId::DEVICE);
        assert_eq!(p.places()[1].kind, PlaceKind::Fallback);
        assert!(p.contains(RegionId::SYSTEM));
        assert_eq!(
            Placement::system().places(),
            &[Place::new(RegionId::SYSTEM)]
        );
    }

    #[test]
    fn ids_pack_index_and_generation() {
        let id = ObjectId::new(7, 3);
        assert_eq!((id.index(), id.generation()), (7, 3));
        assert_eq!(ObjectId::from_u64(id.as_u64()), id);
        assert_eq!(id.to_string(), "bo7.3");
        assert_eq!(page_align(1), Some(4096));
        assert_eq!(page_align(4096), Some(4096));
        assert_eq!(page_align(u64::MAX), None);
        assert_eq!(Priority::new(200), Priority::HIGHEST);
    }
}
