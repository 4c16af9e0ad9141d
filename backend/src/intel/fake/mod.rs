//! Models of the i915 and xe kernels for tests, at the ioctl level:
//! [`FakeKernel`] is a [`DrmDevice`], so the real [`crate::intel::I915Kernel`]
//! and [`crate::intel::XeKernel`] run over it unchanged — every struct they
//! build, every extension chain and user pointer, every result they parse
//! and every errno they map. [`FakeKernel::open`] gives the driver of its
//! flavour.
//!
//! Each request is decoded by its ioctl number (the numbers and structs
//! of [`crate::intel::uapi`]); the argument is copied in and, for requests
//! that return data, out again, as DRM does; user pointers inside it are
//! followed as a kernel's copy_from_user / copy_to_user would (`user`:
//! EFAULT for inaccessible memory). What is modelled:
//!
//! * `gem` — one DRM file's state; objects in regions with capacities and
//!   exact placement (ENOSPC when device memory is full, ENOMEM for system
//!   memory), each backed by a memfd: mmap offsets map it, PRIME export
//!   hands out a descriptor of it, GEM_CLOSE drops the handle.
//! * `i915` — GETPARAM, QUERY (memory regions, topology, items tests set;
//!   per-item lengths and errors), GEM_CREATE_EXT with the memory-regions
//!   extension read through its pointers, MMAP_OFFSET (FIXED only on
//!   discrete parts, WB/WC/UC on integrated ones), MADVISE with
//!   retained/purged and a kernel shrinker ([`FakeKernel::purge_dontneed`]),
//!   BUSY, WAIT; and the pointer-free requests guests may send through
//!   IOCTL_SIMPLE: REG_READ (the render ring's TIMESTAMP only, a monotonic
//!   12.5 MHz counter), GET_APERTURE, SET/GET_TILING, SET_DOMAIN.
//!   Whether the kernel has pages for an object is tracked as i915 does
//!   (`i915_gem_object_has_pages`): a CPU mapping through the device, a
//!   submission, SET_DOMAIN or a GPU job ([`FakeKernel::set_busy`]) gets
//!   them, a purge loses them. MADVISE(DONTNEED) of an object without
//!   pages truncates it at once, as `i915_gem_madvise_ioctl` does: that
//!   call already answers retained = 0, and the object stays purged (a
//!   later WILLNEED says 0 too; execbuffer and SET_DOMAIN of it are
//!   EFAULT; a CPU mapping of it is a SIGBUS hazard).
//! * `context` — GPU contexts (created with SETPARAM extensions whose
//!   ENGINES and SSEU data are read through their pointers, or by the
//!   legacy create), destroy, GET/SETPARAM (PRIORITY, RECOVERABLE,
//!   GTT_SIZE, VM), GET_RESET_STATS, and VMs (VM_CREATE / VM_DESTROY).
//! * `exec` — GEM_EXECBUFFER2 with its exec objects and relocations read
//!   through their pointers and written back, i915's checks, and an
//!   out-fence (an eventfd that [`FakeKernel::complete_all`] signals).
//! * `xe` — DEVICE_QUERY (memory regions, config; the exact-size rule),
//!   GEM_CREATE with placement bits and CPU caching, MMAP_OFFSET. xe.rs
//!   issues no VM or exec-queue ioctls (vgpu does not submit on xe), so
//!   the fake has none either; busy/wait poll the dma-buf, which
//!   [`DrmDevice::poll_dmabuf`] answers from the object's busy state.
//!
//! Errors are the kernels' (ENOENT for unknown handles, contexts and VMs,
//! EINVAL for bad arguments, EFAULT for bad pointers and for DONTNEED or
//! purged objects in an execbuffer, EPERM for raised priorities, ENOSPC /
//! ENOMEM for full regions). Tests reach the rest with
//! [`FakeKernel::fail_next`] (an injected errno), [`FakeKernel::after_next`]
//! (a change between two calls, e.g. a query item that shrinks) and
//! [`FakeKernel::set_query_item`]. Not modelled (EINVAL): xe and i915
//! extension types vgpu never sends, input fences, relocation-less
//! softpin checks.
//!
//! A fake cannot raise the SIGBUS a real i915 gives a CPU access to a
//! purged (on discrete parts: any DONTNEED) object; it counts the
//! situations that would allow one instead — DONTNEED of an object with a
//! live CPU mapping, a mapping made of a DONTNEED object — as
//! [`FakeKernel::sigbus_hazards`].
//!
//! One mutex guards the whole state; no user copy blocks, and test hooks
//! run after it is released.

mod context;
mod exec;
mod gem;
mod i915;
mod user;
mod xe;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rustix::event::{PollFlags, Timespec};
use rustix::io::Errno;

pub use context::FakeContext;

use super::uapi::{ioc_reads, ioc_size, DRM_IOCTL_I915_GEM_CREATE_EXT, DRM_IOCTL_XE_GEM_CREATE};
use super::{ContextParam, DrmDevice, GemKernel, KernelRegion};
use crate::types::MemoryClass;
use gem::State;
use user::UserMem;

/// Which kernel the fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// i915: kernel madvise with `retained`, contexts, execbuffer.
    I915,
    /// xe: no buffer madvise, no submission through vgpu.
    Xe,
}

impl Flavor {
    /// The kernel driver's name.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::I915 => "i915",
            Flavor::Xe => "xe",
        }
    }
}

/// The PCI device id the fake kernels report.
pub const FAKE_DEVICE_ID: u32 = 0x56a0;
/// What the fake i915 answers DRM_I915_QUERY_TOPOLOGY_INFO with.
pub const FAKE_TOPOLOGY: &[u8] = b"fake topology: 1 slice, 8 subslices";
/// The frequency of the fake's TIMESTAMP register
/// (`I915_PARAM_CS_TIMESTAMP_FREQUENCY`).
pub const FAKE_TIMESTAMP_HZ: u64 = 12_500_000;

/// A submission the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSubmission {
    /// Kernel context.
    pub context: u32,
    /// Kernel handles, in exec-list order.
    pub handles: Vec<u32>,
    /// Relocation target handles (or indices with HANDLE_LUT).
    pub reloc_targets: Vec<u32>,
    /// `I915_EXEC_*` as passed (with vgpu's FENCE_OUT).
    pub flags: u64,
    /// Batch start and length.
    pub batch: (u32, u32),
}

/// A test's callback, run once after a request (see [`FakeKernel::after_next`]).
pub type Hook = Box<dyn FnOnce(&FakeKernel) + Send>;

/// A fake GPU kernel: a [`DrmDevice`] answering i915's or xe's ioctls.
pub struct FakeKernel {
    flavor: Flavor,
    /// The regions' class, instance and size (`free` and `page` unused:
    /// each flavour's rules say what a region's pages are).
    regions: Vec<KernelRegion>,
    state: Mutex<State>,
    hazards: AtomicUsize,
    epoch: Instant,
    timestamp: AtomicU64,
}

impl fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKernel")
            .field("flavor", &self.flavor)
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

impl FakeKernel {
    /// A kernel of `flavor` with system memory of `system` bytes and one
    /// device region per entry of `device` (empty: an integrated part).
    pub fn new(flavor: Flavor, system: u64, device: &[u64]) -> Self {
        let mut regions = vec![KernelRegion {
            class: MemoryClass::System,
            instance: 0,
            size: system,
            free: None,
            page: super::MIN_PAGE,
        }];
        for (i, size) in device.iter().enumerate() {
            regions.push(KernelRegion {
                class: MemoryClass::Device,
                // xe numbers every region's placement bit; i915 instances per class.
                instance: match flavor {
                    Flavor::Xe => i as u16 + 1,
                    Flavor::I915 => i as u16,
                },
                size: *size,
                free: None,
                page: super::MIN_PAGE,
            });
        }
        Self {
            flavor,
            regions,
            state: Mutex::new(State::new()),
            hazards: AtomicUsize::new(0),
            epoch: Instant::now(),
            timestamp: AtomicU64::new(0),
        }
    }

    /// The real driver of this flavour ([`crate::intel::I915Kernel`] or
    /// [`crate::intel::XeKernel`]) over this fake device.
    pub fn open(self: &Arc<Self>) -> io::Result<Arc<dyn GemKernel>> {
        super::detect::open_driver(self.flavor.name(), self.clone())
    }

    /// The flavour.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn discrete(&self) -> bool {
        self.regions.len() > 1
    }

    /// Region `i` with what is free in it now.
    fn region_now(&self, st: &State, i: usize) -> Option<KernelRegion> {
        let r = self.regions.get(i)?;
        Some(KernelRegion {
            free: Some(r.size.saturating_sub(st.used(i))),
            ..*r
        })
    }

    /// Submissions accepted so far.
    pub fn submissions(&self) -> Vec<FakeSubmission> {
        self.state().submissions.clone()
    }

    /// Live GPU contexts (not the file's default one) and the parameters
    /// they were created with (data parameters with `value` 0).
    pub fn contexts(&self) -> HashMap<u32, Vec<ContextParam>> {
        self.state()
            .contexts
            .iter()
            .filter(|(id, _)| **id != 0)
            .map(|(id, c)| (*id, c.params.clone()))
            .collect()
    }

    /// A context's state now (0: the default context).
    pub fn context_state(&self, ctx: u32) -> Option<FakeContext> {
        self.state().contexts.get(&ctx).cloned()
    }

    /// The VM ids the file holds.
    pub fn vm_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.state().vms.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Finishes every running submission: its objects go idle and its
    /// out-fence signals. Returns how many.
    pub fn complete_all(&self) -> usize {
        let mut st = self.state();
        let running = std::mem::take(&mut st.running);
        let n = running.len();
        for (fence, handles) in running {
            for h in handles {
                if let Some(o) = st.objects.get_mut(&h) {
                    o.busy = false;
                }
            }
            let _ = rustix::io::write(&fence, &1u64.to_ne_bytes());
        }
        n
    }

    /// Bytes of live objects in region `i`.
    pub fn bytes_in(&self, i: usize) -> u64 {
        self.state().used(i)
    }

    /// Live handles.
    pub fn live_objects(&self) -> usize {
        self.state().objects.len()
    }

    /// The live handles, in order.
    pub fn handles(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.state().objects.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The next call of `request` fails with `e` before doing anything.
    pub fn fail_next(&self, request: u32, e: Errno) {
        self.state().failures.push((request, e));
    }

    /// The next object creation (GEM_CREATE_EXT / xe GEM_CREATE) fails with `e`.
    pub fn fail_next_create(&self, e: Errno) {
        self.fail_next(
            match self.flavor {
                Flavor::I915 => DRM_IOCTL_I915_GEM_CREATE_EXT,
                Flavor::Xe => DRM_IOCTL_XE_GEM_CREATE,
            },
            e,
        );
    }

    /// Runs `hook` once, right after the next call of `request` (e.g. to
    /// change what the kernel answers between a driver's two calls).
    pub fn after_next(&self, request: u32, hook: impl FnOnce(&FakeKernel) + Send + 'static) {
        self.state().hooks.push((request, Box::new(hook)));
    }

    /// Makes i915 QUERY item `id` answer `data` (`None`: an unknown item,
    /// EINVAL in its length).
    pub fn set_query_item(&self, id: u64, data: Option<Vec<u8>>) {
        self.state().query_items.insert(id, data);
    }

    /// An object's tiling mode and stride (SET_TILING).
    pub fn tiling(&self, handle: u32) -> Option<(u32, u32)> {
        self.state().objects.get(&handle).map(|o| o.tiling)
    }

    /// The flags an object was created with.
    pub fn create_flags(&self, handle: u32) -> Option<u32> {
        self.state().objects.get(&handle).map(|o| o.flags)
    }

    /// How often the kernel was left free to drop pages someone can still
    /// fault on (each would be a SIGBUS on real i915).
    pub fn sigbus_hazards(&self) -> usize {
        self.hazards.load(Ordering::Relaxed)
    }

    fn hazard(&self, what: &str, handle: u32) {
        log::error!("fake i915: SIGBUS hazard: {what} (handle {handle})");
        self.hazards.fetch_add(1, Ordering::Relaxed);
    }

    /// The kernel's own shrinker: purges every DONTNEED object (i915).
    /// Returns how many. (DONTNEED objects without pages are not among
    /// them: GEM_MADVISE truncated those at once.)
    pub fn purge_dontneed(&self) -> usize {
        let mut n = 0;
        for o in self
            .state()
            .objects
            .values_mut()
            .filter(|o| o.dontneed && !o.purged)
        {
            o.truncate();
            n += 1;
        }
        n
    }

    /// Whether the kernel holds pages for the object
    /// (`i915_gem_object_has_pages`).
    pub fn has_pages(&self, handle: u32) -> Result<bool, Errno> {
        self.state().object(handle).map(|o| o.pages)
    }

    /// Whether the kernel purged the object (`__I915_MADV_PURGED`).
    pub fn is_purged(&self, handle: u32) -> Result<bool, Errno> {
        self.state().object(handle).map(|o| o.purged)
    }

    /// Marks an object busy or idle (a GPU job vgpu did not submit). A job
    /// that uses an object holds its pages.
    pub fn set_busy(&self, handle: u32, busy: bool) -> Result<(), Errno> {
        self.state().object_mut(handle).map(|o| {
            o.busy = busy;
            o.pages |= busy && !o.purged;
        })
    }

    /// Whether the kernel holds the object busy.
    pub fn is_busy(&self, handle: u32) -> Result<bool, Errno> {
        self.state().object(handle).map(|o| o.busy)
    }

    /// The object's bytes, read through the kernel (not the driver).
    pub fn read(&self, handle: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let st = self.state();
        let o = st.object(handle).map_err(io::Error::from)?;
        o.file.read_at(offset, buf)
    }

    /// The TIMESTAMP register now: monotonic, ticking at
    /// [`FAKE_TIMESTAMP_HZ`] from a start above 32 bits.
    fn timestamp(&self) -> u64 {
        let ticks = self.epoch.elapsed().as_nanos() * u128::from(FAKE_TIMESTAMP_HZ) / 1_000_000_000;
        let now = (5u64 << 32).saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
        let before = self.timestamp.fetch_max(now, Ordering::AcqRel);
        before.max(now)
    }

    fn take_failure(&self, request: u32) -> Option<Errno> {
        let mut st = self.state();
        let i = st.failures.iter().position(|(r, _)| *r == request)?;
        Some(st.failures.remove(i).1)
    }

    fn run_hooks(&self, request: u32) {
        let hooks: Vec<Hook> = {
            let mut st = self.state();
            let (run, keep) = std::mem::take(&mut st.hooks)
                .into_iter()
                .partition(|(r, _)| *r == request);
            st.hooks = keep;
            run.into_iter().map(|(_, h)| h).collect()
        };
        for h in hooks {
            h(self);
        }
    }
}

impl DrmDevice for FakeKernel {
    unsafe fn ioctl(&self, request: u32, arg: &mut [u8]) -> Result<(), Errno> {
        let Some(arg) = arg.get_mut(..ioc_size(request)) else {
            return Err(Errno::INVAL);
        };
        // SAFETY: `DrmDevice::ioctl`'s contract, which our caller keeps,
        // is `UserMem::new`'s.
        let user = unsafe { UserMem::new() };
        // As drm_ioctl: the argument is copied in, handled, copied out.
        let mut kdata = arg.to_vec();
        let r = match self.take_failure(request) {
            Some(e) => Err(e),
            None => {
                let mut st = self.state();
                match self.flavor {
                    Flavor::I915 => i915::ioctl(self, &mut st, &user, request, &mut kdata),
                    Flavor::Xe => xe::ioctl(self, &mut st, &user, request, &mut kdata),
                }
            }
        };
        if ioc_reads(request) {
            arg.copy_from_slice(&kdata);
        }
        self.run_hooks(request);
        r
    }

    fn mmap(&self, offset: u64, len: u64) -> Result<NonNull<u8>, Errno> {
        self.map_object(offset, len)
    }

    unsafe fn munmap(&self, ptr: NonNull<u8>, len: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { self.unmap_object(ptr, len) }
    }

    /// A dma-buf of this fake is one of its objects' memfds (found by
    /// device and inode): not ready while the object is busy, ready otherwise, at
    /// once (a fake GPU makes no progress while one waits). Other
    /// descriptors are polled for real.
    fn poll_dmabuf(
        &self,
        dmabuf: BorrowedFd<'_>,
        events: PollFlags,
        timeout: Option<&Timespec>,
    ) -> Result<bool, Errno> {
        let stat = rustix::fs::fstat(dmabuf)?;
        let id = (stat.st_dev, stat.st_ino);
        let busy = self
            .state()
            .objects
            .values()
            .find(|o| o.file_id == id)
            .map(|o| o.busy);
        match busy {
            Some(busy) => Ok(!busy),
            None => {
                let mut fds = [rustix::event::PollFd::from_borrowed_fd(dmabuf, events)];
                Ok(rustix::event::poll(&mut fds, timeout)? > 0)
            }
        }
    }
}
