//! Host Intel GPUs: buffer objects in the memory regions of an i915 or xe
//! render node, behind the buffer manager's [`MemoryDriver`] trait.
//!
//! * [`GemKernel`] — the small trait the driver talks to the kernel
//!   through: regions, create, mmap, PRIME export, madvise, busy, wait,
//!   close, and for i915 GETPARAM, QUERY, contexts, execbuffer and the
//!   pointer-free ioctls guests send through IOCTL_SIMPLE. [`I915Kernel`]
//!   and [`XeKernel`] implement it with the real ioctls ([`uapi`]:
//!   structs and numbers layout-checked against the kernel headers).
//! * [`DrmDevice`] ([`drm`]) — what those two issue every kernel call on:
//!   an ioctl with its argument's bytes, mmap / munmap of the device,
//!   poll of an exported dma-buf. [`RenderNode`] is the real one.
//!
//! What runs where: in tests, [`fake::FakeKernel`] is the [`DrmDevice`]
//! — models of both kernels answering each ioctl by its number, following
//! user pointers as a kernel's copy_from_user / copy_to_user would — so
//! `I915Kernel` and `XeKernel` run unchanged, struct building, extension
//! chains, pointer fix-ups, result parsing and error mapping included.
//! Only `RenderNode`'s syscalls (a handful of lines) and what real
//! hardware does beyond the models need an Intel GPU.
//! * [`GemRegion`] — one kernel memory region as a vgpu region: objects are
//!   GEM objects created in exactly that region, so vgpu's placement,
//!   eviction, accounting, quotas and shrinker decide as on the emulated
//!   device, while the kernel manages the pages.
//! * [`GemDriver`] — the regions of one render node, system memory first.
//! * [`detect`] — `--gpu auto|emulated|PATH`.
//! * [`GpuExec`] — a guest's GEM_EXECBUFFER2 in kernel terms; the device
//!   builds it (handle translation, flag checks) and the kernel runs it,
//!   answering with a sync_file out-fence.
//!
//! Moves between regions are CPU copies through the objects' mappings.
//! madvise goes to the kernel where it has one (i915: `I915_GEM_MADVISE`,
//! whose `retained` vgpu reports); xe has no buffer madvise, so there
//! vgpu's own purge policy applies (a purge closes the object).
//!
//! i915 may drop a DONTNEED object's pages at any time, after which every
//! CPU access through a mapping of it is SIGBUS (on discrete parts any
//! fault on a DONTNEED object is): that would kill the daemon, or the VMM
//! for a guest mapping. So the kernel hears DONTNEED only for objects
//! that no one can touch by CPU — never mapped by vgpu, descriptor never
//! shared — and gets WILLNEED back (with its `retained`) before vgpu maps
//! one or shares its descriptor. For all other objects DONTNEED stays
//! vgpu's own state, and vgpu's shrinker purges them by closing them (a
//! VMM's mapping of the dma-buf keeps its pages alive, so nothing faults).
//!
//! A kernel purge is for good, and i915 makes one without waiting: an
//! object with no pages (never mapped, never used by the GPU — what a
//! guest buffer is until it is used) is truncated by the DONTNEED itself,
//! which answers `retained` = 0. The manager purges such an object on that
//! answer: the guest hears false, the handle is closed, and the purge
//! frees no resident memory (there were no pages). Once the kernel said an
//! object is purged, [`GemBuffer`] remembers it: it is never mapped, its
//! dma-buf never handed out, it is never submitted, it counts as empty, a
//! purge of it frees nothing, and madvise answers false without asking
//! the kernel again. A DONTNEED the kernel survives tells vgpu the object
//! has pages, even ones vgpu did not see it get (a guest's SET_DOMAIN).
//!
//! Must not: know about virtio; the device asks the manager, as with the
//! emulated driver.

pub mod detect;
pub mod drm;
pub mod fake;
pub mod i915;
pub mod uapi;
pub mod xe;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rustix::io::Errno;

pub use drm::{DrmDevice, RenderNode};
pub use i915::I915Kernel;
pub use xe::XeKernel;

use crate::buffer::BufferIo;
use crate::region::{
    Backing, Caching, MemoryDriver, MemoryRegion, RegionError, RegionInfo, Storage,
};
use crate::types::{Madv, MemoryClass, RegionId};

/// A memory region as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRegion {
    /// System or device memory.
    pub class: MemoryClass,
    /// Instance within the class (xe: the placement bit).
    pub instance: u16,
    /// Bytes the region has.
    pub size: u64,
    /// Bytes still free, if the kernel says.
    pub free: Option<u64>,
    /// The smallest page the kernel backs the region with: object sizes
    /// are multiples of it (xe: `min_page_size`, 64 KiB for VRAM on parts
    /// that need it; i915 does not report it: 4 KiB here, and the size its
    /// GEM_CREATE_EXT writes back says what it really made). At least 4 KiB.
    pub page: u64,
}

/// The smallest page any region has.
pub const MIN_PAGE: u64 = 4096;

/// A GEM object the kernel created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemObject {
    /// Its handle.
    pub handle: u32,
    /// Its size as the kernel made it: the size asked for, rounded up to
    /// the region's page (what the object takes from the region).
    pub size: u64,
}

/// One entry of a kernel's memory-regions reply.
pub(crate) struct RegionEntry<'a>(&'a [u8]);

impl RegionEntry<'_> {
    /// The native-endian u16 at byte `o`.
    pub fn u16_at(&self, o: usize) -> u16 {
        u16::from_ne_bytes([self.0[o], self.0[o + 1]])
    }
    /// The native-endian u32 at byte `o`.
    pub fn u32_at(&self, o: usize) -> u32 {
        u32::from_ne_bytes(self.0[o..o + 4].try_into().unwrap_or([0; 4]))
    }
    /// The native-endian u64 at byte `o`.
    pub fn u64_at(&self, o: usize) -> u64 {
        u64::from_ne_bytes(self.0[o..o + 8].try_into().unwrap_or([0; 8]))
    }
}

/// Parses a memory-regions reply (i915 and xe share its shape): a
/// `head`-byte header starting with the u32 count, then `each`-byte
/// entries, each read by `region` (`None`: a class vgpu does not use).
/// `each` must cover every offset `region` reads.
pub(crate) fn parse_region_reply(
    data: &[u8],
    head: usize,
    each: usize,
    region: impl Fn(&RegionEntry<'_>) -> Option<KernelRegion>,
) -> io::Result<Vec<KernelRegion>> {
    let n = data
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| io::Error::other("short memory-regions reply"))?;
    let mut out = Vec::new();
    for i in 0..n {
        let at = i
            .checked_mul(each)
            .and_then(|o| o.checked_add(head))
            .ok_or_else(|| io::Error::other("memory-regions reply too large"))?;
        let b = data
            .get(at..at + each)
            .ok_or_else(|| io::Error::other("truncated memory-regions reply"))?;
        out.extend(region(&RegionEntry(b)));
    }
    Ok(out)
}

/// What the driver needs from a GPU kernel driver. Errors are the kernel's
/// `errno`s (ENOSPC and ENOMEM mean "no room": vgpu evicts and retries).
pub trait GemKernel: Send + Sync + fmt::Debug {
    /// Kernel driver name (`i915`, `xe`).
    fn driver(&self) -> &str;
    /// Whether the GPU has its own memory (a discrete part).
    fn discrete(&self) -> bool;
    /// The memory regions.
    fn regions(&self) -> io::Result<Vec<KernelRegion>>;
    /// The GPU's PCI device id, reported to guests (i915 `CHIPSET_ID`).
    fn device_id(&self) -> Option<u32> {
        None
    }
    /// A new object of at least `size` bytes placed in `region` only: its
    /// handle and real size (`size` rounded up to the region's page where
    /// the kernel wants that, as xe does for 64K VRAM pages).
    fn create(&self, size: u64, region: &KernelRegion) -> Result<GemObject, Errno>;
    /// Maps the whole object for the CPU.
    fn mmap(&self, handle: u32, size: u64, region: &KernelRegion) -> Result<NonNull<u8>, Errno>;
    /// Undoes [`Self::mmap`].
    fn munmap(&self, ptr: NonNull<u8>, size: u64);
    /// A dma-buf of the object (PRIME), for the VMM to map into the guest.
    fn export(&self, handle: u32) -> Result<OwnedFd, Errno>;
    /// Passes guest advice to the kernel: `Some(retained)`, or `None` when
    /// the kernel has no buffer madvise. i915 truncates a DONTNEED object
    /// that has no pages at once: that very call answers `retained` false,
    /// and the object stays purged.
    fn madvise(&self, handle: u32, madv: Madv) -> Result<Option<bool>, Errno>;
    /// Whether the GPU still uses the object.
    fn busy(&self, handle: u32) -> Result<bool, Errno>;
    /// Waits up to `timeout_ns` for the GPU to be done with the object.
    fn wait(&self, handle: u32, timeout_ns: i64) -> Result<(), Errno>;
    /// Drops the handle.
    fn close(&self, handle: u32);
    /// An `I915_PARAM_*` value (GETPARAM), passed to guests as is.
    fn getparam(&self, _param: i32) -> Result<i32, Errno> {
        Err(Errno::NODEV)
    }
    /// A `DRM_I915_QUERY_*` item's data (no flags, no input data).
    fn query(&self, _query_id: u64) -> Result<Vec<u8>, Errno> {
        Err(Errno::NODEV)
    }
    /// A new GPU context with `params` set at creation; its id. Kernels
    /// vgpu cannot submit to say ENODEV.
    fn context_create(&self, _params: &[ContextParam]) -> Result<u32, Errno> {
        Err(Errno::NODEV)
    }
    /// Destroys a context [`Self::context_create`] made.
    fn context_destroy(&self, _ctx: u32) {}
    /// Runs one of the `DRM_IOCTL_I915_*` ioctls a guest's IOCTL_SIMPLE may
    /// name (the device checks the allow-list and translates ids first):
    /// `payload` is the ioctl's whole argument (`_IOC_SIZE(request)` bytes,
    /// no pointers inside), updated in place as the kernel writes it.
    /// ENODEV where the kernel has no such ioctls (xe).
    fn ioctl_simple(&self, _request: u32, _payload: &mut [u8]) -> Result<(), Errno> {
        Err(Errno::NODEV)
    }
    /// Submits a batch; returns the kernel's out-fence (a sync_file that
    /// becomes readable when the GPU is done). ENODEV where vgpu cannot
    /// submit (xe: its VM_BIND/exec-queue model has no i915 equivalent).
    fn execbuffer(&self, _exec: &mut GpuExec) -> Result<OwnedFd, Errno> {
        Err(Errno::NODEV)
    }
}

/// A context parameter set at creation (`I915_CONTEXT_PARAM_*`): a plain
/// value, or `data` the kernel reads (ENGINES, SSEU) when not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextParam {
    /// `I915_CONTEXT_PARAM_*`.
    pub param: u64,
    /// The value (ignored when `data` is given).
    pub value: u64,
    /// The parameter's data, for parameters passed by pointer.
    pub data: Vec<u8>,
}

/// A GPU submission in the kernel's terms: handles already translated
/// from the guest's resource ids, flags already checked by the caller.
#[derive(Debug, Clone, Default)]
pub struct GpuExec {
    /// Kernel context id (0: the file's default context).
    pub context: u32,
    /// Exec objects with kernel handles; `relocs_ptr` is filled in by the
    /// kernel implementation.
    pub objects: Vec<uapi::I915ExecObject2>,
    /// Every object's relocations, object by object (`relocation_count`
    /// each), target handles already translated.
    pub relocs: Vec<uapi::I915RelocationEntry>,
    /// Start of the batch in the batch object.
    pub batch_start: u32,
    /// Length of the batch (0: to the end of the object).
    pub batch_len: u32,
    /// `I915_EXEC_*` (without fence flags: the kernel adds FENCE_OUT).
    pub flags: u64,
}

impl GpuExec {
    /// Points each object's `relocs_ptr` at its slice of [`Self::relocs`];
    /// EINVAL if the counts do not add up. The pointers are valid while
    /// `self` is neither moved nor changed.
    pub fn link_relocations(&mut self) -> Result<(), Errno> {
        let mut at = 0usize;
        for o in &mut self.objects {
            let n = o.relocation_count as usize;
            let end = at.checked_add(n).ok_or(Errno::INVAL)?;
            let slice = self.relocs.get_mut(at..end).ok_or(Errno::INVAL)?;
            o.relocs_ptr = if n == 0 { 0 } else { slice.as_mut_ptr() as u64 };
            at = end;
        }
        if at == self.relocs.len() {
            Ok(())
        } else {
            Err(Errno::INVAL)
        }
    }

    /// The batch object: the first with `I915_EXEC_BATCH_FIRST`, else the last.
    pub fn batch_index(&self) -> Option<usize> {
        match self.flags & uapi::I915_EXEC_BATCH_FIRST {
            0 => self.objects.len().checked_sub(1),
            _ => (!self.objects.is_empty()).then_some(0),
        }
    }
}

struct Mapping(NonNull<u8>);

// SAFETY: the pointer is the GEM object's CPU mapping, owned by the buffer
// and reached only through raw-pointer copies under the object's lock.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

/// A GEM object of one region: its handle, its dma-buf and its mapping.
///
/// What the kernel said about its pages is kept here: an object the kernel
/// purged (i915 answered `retained` false: it truncated a DONTNEED object
/// with no pages at once, or its shrinker dropped one later) is dead for
/// good — never mapped, shared or submitted again, never asked about
/// again, and a purge of it frees nothing.
pub struct GemBuffer {
    kernel: Arc<dyn GemKernel>,
    region: KernelRegion,
    handle: u32,
    /// The guest's size: what vgpu maps, copies and counts.
    size: u64,
    /// The object's real size (`size` rounded up to the region's page):
    /// what it takes from the region, and what the region's `used` holds
    /// for it until it is freed.
    charge: u64,
    dmabuf: OwnedFd,
    map: OnceLock<Option<Mapping>>,
    /// The kernel was told DONTNEED (and may drop the pages).
    kernel_dontneed: AtomicBool,
    /// The kernel purged it (for good).
    kernel_purged: AtomicBool,
    /// The dma-buf left the daemon: someone else may fault on it.
    shared: AtomicBool,
    /// The kernel may have pages for it: it was mapped for the CPU (by
    /// vgpu, or by a VMM through its dma-buf), handed to the GPU, or the
    /// kernel kept it through a DONTNEED (which only an object with pages
    /// survives).
    touched: AtomicBool,
}

impl fmt::Debug for GemBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GemBuffer")
            .field("driver", &self.kernel.driver())
            .field("handle", &self.handle)
            .field("size", &self.size)
            .field("charge", &self.charge)
            .field("kernel_purged", &self.kernel_purged())
            .finish()
    }
}

impl GemBuffer {
    /// The kernel handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// What the object takes from its region: its size as the kernel made
    /// it (the guest's size rounded up to the region's page).
    pub fn charge(&self) -> u64 {
        self.charge
    }

    /// Whether the kernel purged the object (its pages are gone for good).
    pub fn kernel_purged(&self) -> bool {
        self.kernel_purged.load(Ordering::Acquire)
    }

    fn purged_error(&self) -> io::Error {
        io::Error::other(format!(
            "{}: the GPU kernel purged GEM object {} (it was DONTNEED)",
            self.kernel.driver(),
            self.handle
        ))
    }

    /// Records the kernel's `retained` answer to a madvise: false means
    /// purged, for good; true to DONTNEED means the kernel had pages for
    /// it (i915 truncates a DONTNEED object without pages at once).
    fn note_retained(&self, madv: Madv, retained: bool) {
        if !retained {
            self.kernel_purged.store(true, Ordering::Release);
        } else if madv != Madv::WillNeed {
            self.touched.store(true, Ordering::Release);
        }
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<usize> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(offset as usize),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside the buffer",
            )),
        }
    }

    fn mapped(&self) -> io::Result<NonNull<u8>> {
        self.mapping()
            .ok_or_else(|| io::Error::other("the GEM object could not be mapped"))
    }

    /// Takes a kernel DONTNEED back before the object is touched by CPU:
    /// an error if the kernel has dropped the pages (then and for good).
    fn reclaim(&self) -> io::Result<()> {
        if self.kernel_purged() {
            return Err(self.purged_error());
        }
        if !self.kernel_dontneed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        match self.kernel.madvise(self.handle, Madv::WillNeed) {
            Ok(Some(true)) | Ok(None) => Ok(()),
            Ok(Some(false)) => {
                self.note_retained(Madv::WillNeed, false);
                Err(self.purged_error())
            }
            Err(e) => {
                self.kernel_dontneed.store(true, Ordering::Release);
                Err(e.into())
            }
        }
    }
}

impl Drop for GemBuffer {
    fn drop(&mut self) {
        if let Some(Some(m)) = self.map.get() {
            self.kernel.munmap(m.0, self.size);
        }
        self.kernel.close(self.handle);
    }
}

impl BufferIo for GemBuffer {
    fn fd(&self) -> BorrowedFd<'_> {
        self.dmabuf.as_fd()
    }

    /// `None` once the kernel purged the object: a purged object is never
    /// submitted (i915 would refuse it with EFAULT).
    fn kernel_purged(&self) -> bool {
        GemBuffer::kernel_purged(self)
    }

    fn gem_handle(&self) -> Option<u32> {
        if self.kernel_purged() {
            log::warn!(
                "{}: GEM object {} was purged by the kernel: not submitted",
                self.kernel.driver(),
                self.handle
            );
            return None;
        }
        // Asked for a GPU submission: the kernel binds (populates) it.
        self.touched.store(true, Ordering::Release);
        Some(self.handle)
    }

    fn share(&self) -> io::Result<BorrowedFd<'_>> {
        // A purged object's descriptor never leaves: a VMM mapping it
        // would fault (SIGBUS) on every access.
        self.reclaim()?;
        self.shared.store(true, Ordering::Release);
        self.touched.store(true, Ordering::Release);
        Ok(self.dmabuf.as_fd())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn mapping(&self) -> Option<NonNull<u8>> {
        if let Some(m) = self.map.get() {
            return m.as_ref().map(|m| m.0);
        }
        // Not cached: a purge is for good (`reclaim` says so from then on
        // without asking the kernel), but a failed ioctl may pass.
        if let Err(e) = self.reclaim() {
            log::warn!(
                "{}: GEM object {} cannot be mapped: {e}",
                self.kernel.driver(),
                self.handle
            );
            return None;
        }
        self.map
            .get_or_init(
                || match self.kernel.mmap(self.handle, self.size, &self.region) {
                    Ok(p) => {
                        self.touched.store(true, Ordering::Release);
                        Some(Mapping(p))
                    }
                    Err(e) => {
                        log::warn!(
                            "{}: mapping GEM object {} failed: {e}",
                            self.kernel.driver(),
                            self.handle
                        );
                        None
                    }
                },
            )
            .as_ref()
            .map(|m| m.0)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = self.check(offset, data.len() as u64)?;
        let base = self.mapped()?;
        // SAFETY: the range was checked to lie inside the object, whose
        // mapping covers it whole while `self` lives; shared memory, so a
        // byte copy rather than a reference.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.as_ptr().add(at), data.len()) };
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = self.check(offset, buf.len() as u64)?;
        let base = self.mapped()?;
        // SAFETY: as in `write_at`.
        unsafe {
            std::ptr::copy_nonoverlapping(base.as_ptr().add(at), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        let at = self.check(offset, len)?;
        let base = self.mapped()?;
        // SAFETY: as in `write_at`.
        unsafe { std::ptr::write_bytes(base.as_ptr().add(at), 0, len as usize) };
        Ok(())
    }

    /// What a purge of `offset..offset+len` releases, counted only where
    /// it really is released. The kernel frees a GEM object's pages when
    /// its last reference goes (the manager closes it right after
    /// purging), so only a purge of the whole object counts, and only if
    /// the kernel has pages for it (it was touched by CPU or GPU, and the
    /// kernel did not purge it already: a purged object — truncated by
    /// i915 at the DONTNEED of an object without pages, or later by its
    /// shrinker, which a repeated DONTNEED's `retained` reveals — freed
    /// nothing now) and no one else holds them: a dma-buf that left the
    /// daemon may still be mapped by the VMM, which keeps the pages until
    /// it unmaps — vgpu cannot see when, so it counts nothing.
    fn punch(&self, offset: u64, len: u64) -> io::Result<u64> {
        self.check(offset, len)?;
        let whole = offset == 0 && len == self.size;
        if !whole
            || self.shared.load(Ordering::Acquire)
            || !self.touched.load(Ordering::Acquire)
            || self.kernel_purged()
        {
            return Ok(0);
        }
        if self.kernel_dontneed.load(Ordering::Acquire) {
            if let Ok(Some(retained)) = self.kernel.madvise(self.handle, Madv::DontNeed) {
                self.note_retained(Madv::DontNeed, retained);
                if !retained {
                    return Ok(0);
                }
            }
        }
        Ok(self.size)
    }

    /// The kernel owns the pages and offers no residency query for them:
    /// a touched object counts whole, an untouched one (never mapped nor
    /// submitted) or one the kernel purged as empty.
    fn resident(&self, offset: u64, len: u64) -> io::Result<u64> {
        self.check(offset, len)?;
        Ok(
            if self.touched.load(Ordering::Acquire) && !self.kernel_purged() {
                len
            } else {
                0
            },
        )
    }
}

/// One kernel memory region as a vgpu region.
#[derive(Debug)]
pub struct GemRegion {
    info: RegionInfo,
    kernel: Arc<dyn GemKernel>,
    region: KernelRegion,
    used: AtomicU64,
}

impl GemRegion {
    /// Region `id` over the kernel's `region`, shown to guests as instance
    /// `instance` of its class (i915 numbering, whatever the kernel's: xe
    /// numbers placement bits across classes).
    pub fn new(
        id: RegionId,
        kernel: Arc<dyn GemKernel>,
        region: KernelRegion,
        instance: u16,
    ) -> Self {
        let name = match region.class {
            MemoryClass::System => "system".to_string(),
            MemoryClass::Device => format!("device{instance}"),
        };
        Self {
            info: RegionInfo {
                id,
                class: region.class,
                instance,
                name,
                capacity: match region.class {
                    MemoryClass::System => None,
                    MemoryClass::Device => Some(region.size),
                },
                emulated: false,
            },
            kernel,
            region,
            used: AtomicU64::new(0),
        }
    }

    /// Adds `bytes` to the region's `used` if they fit; else what is free.
    fn reserve(&self, bytes: u64) -> Result<(), u64> {
        let cap = self.info.capacity.unwrap_or(u64::MAX);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|end| *end <= cap)
            })
            .map(drop)
            .map_err(|used| cap.saturating_sub(used))
    }

    fn unreserve(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes still free in vgpu's accounting (0 for system memory, which
    /// has no capacity here).
    fn free_bytes(&self) -> u64 {
        self.info
            .capacity
            .map_or(0, |c| c.saturating_sub(self.used.load(Ordering::Relaxed)))
    }
}

impl MemoryRegion for GemRegion {
    fn info(&self) -> &RegionInfo {
        &self.info
    }

    /// Reserves for an object of `size` bytes what it takes from the
    /// region — its size rounded up to the region's page, corrected by
    /// what the kernel says it made — then creates it there.
    fn allocate(&self, size: u64, _name: &str) -> Result<Backing, RegionError> {
        let no_space = |free: u64| RegionError::NoSpace { size, free };
        let estimate = size
            .checked_next_multiple_of(self.region.page.max(MIN_PAGE))
            .ok_or_else(|| no_space(self.free_bytes()))?;
        // Reserve first: concurrent allocations never overcommit the
        // region in vgpu's accounting.
        self.reserve(estimate).map_err(no_space)?;
        let created = match self.kernel.create(size, &self.region) {
            Ok(o) if o.size >= size => o,
            Ok(o) => {
                // Too small to hold the guest's bytes: never from a kernel.
                self.kernel.close(o.handle);
                self.unreserve(estimate);
                return Err(RegionError::Io {
                    op: "creating a GEM object",
                    source: io::Error::other(format!(
                        "the kernel made {} bytes of the {size} asked",
                        o.size
                    )),
                });
            }
            Err(e) => {
                self.unreserve(estimate);
                return Err(match e {
                    Errno::NOSPC | Errno::NOMEM | Errno::TOOBIG => no_space(self.free_bytes()),
                    e => RegionError::Io {
                        op: "creating a GEM object",
                        source: e.into(),
                    },
                });
            }
        };
        // The kernel's own rounding (i915 rounds device memory to 64K
        // pages without saying so in its region query).
        let charge = created.size;
        if charge > estimate {
            if let Err(free) = self.reserve(charge - estimate) {
                self.kernel.close(created.handle);
                self.unreserve(estimate);
                return Err(no_space(free));
            }
        } else {
            self.unreserve(estimate - charge);
        }
        let dmabuf = match self.kernel.export(created.handle) {
            Ok(fd) => fd,
            Err(e) => {
                self.kernel.close(created.handle);
                self.unreserve(charge);
                return Err(RegionError::Io {
                    op: "exporting a GEM object (PRIME)",
                    source: e.into(),
                });
            }
        };
        Ok(Backing::Gem(GemBuffer {
            kernel: self.kernel.clone(),
            region: self.region,
            handle: created.handle,
            size,
            charge,
            dmabuf,
            map: OnceLock::new(),
            kernel_dontneed: AtomicBool::new(false),
            kernel_purged: AtomicBool::new(false),
            shared: AtomicBool::new(false),
            touched: AtomicBool::new(false),
        }))
    }

    fn free(&self, backing: Backing) {
        if let Backing::Gem(b) = backing {
            self.unreserve(b.charge);
            drop(b);
        }
    }

    fn storage<'a>(&'a self, backing: &'a Backing) -> io::Result<Storage<'a>> {
        match backing {
            Backing::Gem(b) => Ok(Storage {
                file: b,
                offset: 0,
                len: b.size,
            }),
            _ => Err(crate::region::wrong_backing(&self.info)),
        }
    }

    fn caching(&self) -> Caching {
        match self.region.class {
            MemoryClass::Device => Caching::WriteCombined,
            MemoryClass::System => Caching::Cached,
        }
    }

    fn can_release(&self) -> bool {
        false
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn busy(&self, backing: &Backing) -> bool {
        match backing {
            Backing::Gem(b) => self.kernel.busy(b.handle).unwrap_or_else(|e| {
                log::warn!(
                    "{}: GEM_BUSY of {} failed: {e}",
                    self.kernel.driver(),
                    b.handle
                );
                false
            }),
            _ => false,
        }
    }

    fn wait_idle(&self, backing: &Backing, timeout: std::time::Duration) -> io::Result<()> {
        let Backing::Gem(b) = backing else {
            return Ok(());
        };
        let ns = i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
        match self.kernel.wait(b.handle, ns) {
            Ok(()) => Ok(()),
            Err(Errno::TIME | Errno::BUSY) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the GPU is still using the object",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The guest's advice, to the kernel where it has madvise and no one
    /// can fault on the object (see the module docs). The kernel's
    /// `retained` is the answer; false — also to the DONTNEED of an object
    /// the kernel holds no pages for, which i915 truncates at once — means
    /// purged for good, and the manager purges the object then. An object
    /// the kernel purged earlier answers false without asking again.
    fn madvise(&self, backing: &Backing, madv: Madv) -> Option<io::Result<bool>> {
        let Backing::Gem(b) = backing else {
            return None;
        };
        if b.kernel_purged() {
            return Some(Ok(false));
        }
        // Mapped by vgpu or shared: the kernel must keep the pages (see
        // the module docs); vgpu's own policy applies.
        if madv != Madv::WillNeed && (b.map.get().is_some() || b.shared.load(Ordering::Acquire)) {
            return None;
        }
        match self.kernel.madvise(b.handle, madv) {
            Ok(Some(retained)) => {
                b.note_retained(madv, retained);
                b.kernel_dontneed
                    .store(madv != Madv::WillNeed, Ordering::Release);
                Some(Ok(retained))
            }
            Ok(None) => None,
            // The kernel's state is unchanged: so is vgpu's view of it.
            Err(e) => Some(Err(e.into())),
        }
    }
}

/// The regions of one render node.
#[derive(Debug)]
pub struct GemDriver {
    name: String,
    kernel: Arc<dyn GemKernel>,
    regions: Vec<Arc<dyn MemoryRegion>>,
}

impl GemDriver {
    /// Queries `kernel`'s regions: system memory becomes region 0, device
    /// regions follow in the kernel's order.
    pub fn new(kernel: Arc<dyn GemKernel>) -> io::Result<Self> {
        let kregions = kernel.regions()?;
        let system = kregions
            .iter()
            .find(|r| r.class == MemoryClass::System)
            .copied()
            .ok_or_else(|| {
                io::Error::other(format!(
                    "{}: the kernel reports no system memory region",
                    kernel.driver()
                ))
            })?;
        let mut regions: Vec<Arc<dyn MemoryRegion>> = vec![Arc::new(GemRegion::new(
            RegionId::SYSTEM,
            kernel.clone(),
            system,
            0,
        ))];
        for (n, r) in kregions
            .iter()
            .filter(|r| r.class == MemoryClass::Device)
            .enumerate()
        {
            if regions.len() >= crate::account::MAX_REGIONS {
                log::warn!(
                    "{}: more device regions than vgpu tracks; ignoring the rest",
                    kernel.driver()
                );
                break;
            }
            let id = RegionId(regions.len() as u8);
            regions.push(Arc::new(GemRegion::new(id, kernel.clone(), *r, n as u16)));
        }
        Ok(Self {
            name: kernel.driver().to_string(),
            kernel,
            regions,
        })
    }

    /// The kernel.
    pub fn kernel(&self) -> &Arc<dyn GemKernel> {
        &self.kernel
    }
}

impl MemoryDriver for GemDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn gpu_kernel(&self) -> Option<Arc<dyn GemKernel>> {
        Some(self.kernel.clone())
    }

    fn regions(&self) -> Vec<Arc<dyn MemoryRegion>> {
        self.regions.clone()
    }
}
