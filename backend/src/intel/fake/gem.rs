//! What both fake kernels share: the state of one DRM file (GEM objects in
//! regions, mmap offsets, CPU mappings, contexts, VMs, submissions) and
//! the generic DRM ioctls (GEM_CLOSE, PRIME_HANDLE_TO_FD). An object's
//! pages are a memfd: its mmap offset maps the memfd, its PRIME export is
//! a descriptor of the memfd, so both behave like the real thing.

use std::collections::HashMap;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::ptr::NonNull;

use rustix::io::Errno;

use super::context::Context;
use super::user::with_arg;
use super::{FakeKernel, FakeSubmission, Hook};
use crate::intel::uapi::*;
use crate::intel::KernelRegion;
use crate::shmem::ShmemFile;
use crate::types::MemoryClass;

/// Where mmap offsets start (DRM's `DRM_FILE_PAGE_OFFSET_START` is in the
/// same range: far above any real file offset).
const MMAP_OFFSET_START: u64 = 1 << 32;
/// Where the fake GPU's virtual addresses start.
const GPU_VA_START: u64 = 1 << 32;
const PAGE: u64 = 4096;

/// A GEM object.
#[derive(Debug)]
pub(super) struct Object {
    pub file: ShmemFile,
    /// The memfd's device and inode: how a PRIME export of it is
    /// recognized when polled.
    pub file_id: (u64, u64),
    pub region: usize,
    pub size: u64,
    /// Its fake mmap offset.
    pub offset: u64,
    /// The offset was handed out (GEM_MMAP_OFFSET): mmap is allowed.
    pub offset_given: bool,
    /// Its address in every GPU VM of the fake.
    pub gpu_addr: u64,
    pub dontneed: bool,
    /// Truncated by the kernel (`__I915_MADV_PURGED`): for good.
    pub purged: bool,
    /// The kernel has pages for it (`i915_gem_object_has_pages`): got by
    /// a CPU mapping, a submission or SET_DOMAIN, lost to a purge. A
    /// DONTNEED object without pages is truncated at once.
    pub pages: bool,
    pub busy: bool,
    /// Live CPU mappings of it.
    pub maps: u32,
    /// Tiling mode and stride (SET_TILING).
    pub tiling: (u32, u32),
    /// Creation flags as passed.
    pub flags: u32,
}

/// A CPU mapping made through the device.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mapping {
    pub handle: u32,
}

/// The state of the fake DRM file; one lock.
pub(super) struct State {
    pub objects: HashMap<u32, Object>,
    next_handle: u32,
    next_offset: u64,
    next_gpu_addr: u64,
    /// CPU mappings: address → object.
    pub mappings: HashMap<usize, Mapping>,
    /// GPU contexts; 0 is the file's default context.
    pub contexts: HashMap<u32, Context>,
    pub next_context: u32,
    /// The file's VM ids → VM.
    pub vms: HashMap<u32, u64>,
    pub next_vm_id: u32,
    pub next_vm: u64,
    pub submissions: Vec<FakeSubmission>,
    /// Out-fences not yet signaled, with the handles they keep busy.
    pub running: Vec<(OwnedFd, Vec<u32>)>,
    /// Injected failures: the next call of the request fails so.
    pub failures: Vec<(u32, Errno)>,
    /// Run after the next call of the request.
    pub hooks: Vec<(u32, Hook)>,
    /// Query items set by tests (`None`: the item is unknown).
    pub query_items: HashMap<u64, Option<Vec<u8>>>,
}

impl Object {
    /// `i915_gem_object_truncate`: the pages go for good and the object
    /// is `__I915_MADV_PURGED`.
    pub fn truncate(&mut self) {
        let _ = self.file.punch(0, self.file.size());
        self.purged = true;
        self.pages = false;
    }
}

impl State {
    pub fn new() -> Self {
        let mut st = Self {
            objects: HashMap::new(),
            next_handle: 1,
            next_offset: MMAP_OFFSET_START,
            next_gpu_addr: GPU_VA_START,
            mappings: HashMap::new(),
            contexts: HashMap::new(),
            next_context: 1,
            vms: HashMap::new(),
            next_vm_id: 1,
            next_vm: 1,
            submissions: Vec::new(),
            running: Vec::new(),
            failures: Vec::new(),
            hooks: Vec::new(),
            query_items: HashMap::new(),
        };
        let vm = st.new_vm();
        st.contexts.insert(0, Context::new(vm));
        st
    }

    /// A new GPU address space (not yet named by an id).
    pub fn new_vm(&mut self) -> u64 {
        let vm = self.next_vm;
        self.next_vm += 1;
        vm
    }

    /// Bytes of live (not purged) objects in region `i`.
    pub fn used(&self, i: usize) -> u64 {
        self.objects
            .values()
            .filter(|o| o.region == i && !o.purged)
            .map(|o| o.size)
            .sum()
    }

    pub fn object(&self, handle: u32) -> Result<&Object, Errno> {
        self.objects.get(&handle).ok_or(Errno::NOENT)
    }

    pub fn object_mut(&mut self, handle: u32) -> Result<&mut Object, Errno> {
        self.objects.get_mut(&handle).ok_or(Errno::NOENT)
    }

    /// A new object of `size` bytes (page-aligned by the caller) in the
    /// first of `placements` (region indices) with room: ENOSPC when
    /// device memory is full, ENOMEM when only system memory was asked.
    pub fn create(
        &mut self,
        regions: &[KernelRegion],
        size: u64,
        placements: &[usize],
        flags: u32,
    ) -> Result<u32, Errno> {
        let region = placements
            .iter()
            .copied()
            .find(|i| {
                regions
                    .get(*i)
                    .is_some_and(|r| self.used(*i).saturating_add(size) <= r.size)
            })
            .ok_or_else(|| {
                match placements.iter().any(|i| {
                    regions
                        .get(*i)
                        .is_some_and(|r| r.class == MemoryClass::Device)
                }) {
                    true => Errno::NOSPC,
                    false => Errno::NOMEM,
                }
            })?;
        let file = ShmemFile::create("fake-gem", size)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::NOMEM))?;
        let stat = rustix::fs::fstat(file.fd())?;
        let handle = self.next_handle;
        self.next_handle = self.next_handle.checked_add(1).ok_or(Errno::NOSPC)?;
        let span = size.div_ceil(PAGE) * PAGE;
        let (offset, gpu_addr) = (self.next_offset, self.next_gpu_addr);
        self.next_offset += span;
        self.next_gpu_addr += span.next_multiple_of(64 << 10);
        self.objects.insert(
            handle,
            Object {
                file,
                file_id: (stat.st_dev, stat.st_ino),
                region,
                size,
                offset,
                offset_given: false,
                gpu_addr,
                dontneed: false,
                purged: false,
                pages: false,
                busy: false,
                maps: 0,
                tiling: (I915_TILING_NONE, 0),
                flags,
            },
        );
        Ok(handle)
    }

    /// The object whose mmap offset is `offset`.
    pub fn by_offset(&self, offset: u64) -> Option<(u32, &Object)> {
        self.objects
            .iter()
            .find(|(_, o)| o.offset == offset)
            .map(|(h, o)| (*h, o))
    }
}

/// GEM_CLOSE and PRIME_HANDLE_TO_FD, both flavours; EINVAL for any other
/// request (what DRM answers for an ioctl the driver does not have).
pub(super) fn common(st: &mut State, request: u32, kdata: &mut [u8]) -> Result<(), Errno> {
    match request {
        DRM_IOCTL_GEM_CLOSE => with_arg(kdata, |c: &mut GemClose| {
            if c.pad != 0 {
                return Err(Errno::INVAL);
            }
            // drm_gem_handle_delete: an unknown handle is EINVAL.
            st.objects.remove(&c.handle).map(drop).ok_or(Errno::INVAL)
        }),
        DRM_IOCTL_PRIME_HANDLE_TO_FD => with_arg(kdata, |p: &mut PrimeHandle| {
            if p.flags & !(DRM_CLOEXEC | DRM_RDWR) != 0 {
                return Err(Errno::INVAL);
            }
            let o = st.object(p.handle)?;
            let fd = o
                .file
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::MFILE))?;
            // Handed to the caller, who owns it now (as a kernel installs
            // a new descriptor in the process's table).
            p.fd = fd.into_raw_fd();
            Ok(())
        }),
        _ => Err(Errno::INVAL),
    }
}

impl FakeKernel {
    /// mmap of the device file: the object whose offset `offset` is,
    /// mapped through its memfd.
    pub(super) fn map_object(&self, offset: u64, len: u64) -> Result<NonNull<u8>, Errno> {
        let mut st = self.state();
        let (handle, o) = st.by_offset(offset).ok_or(Errno::INVAL)?;
        if !o.offset_given {
            // drm_vma_node_is_allowed: the offset was never given to this file.
            return Err(Errno::ACCESS);
        }
        if len == 0 || len > o.size.div_ceil(PAGE) * PAGE {
            return Err(Errno::INVAL);
        }
        if o.dontneed || o.purged {
            self.hazard("mapping a DONTNEED object", handle);
        }
        let ptr = map_file(o.file.fd(), len)?;
        st.mappings
            .insert(ptr.as_ptr() as usize, Mapping { handle });
        if let Ok(o) = st.object_mut(handle) {
            o.maps += 1;
            // The caller's first access faults the pages in (a purged
            // object's fault is the SIGBUS counted above: no pages).
            o.pages |= !o.purged;
        }
        Ok(ptr)
    }

    /// munmap: forgets the mapping, then unmaps it.
    ///
    /// # Safety
    ///
    /// As [`crate::intel::DrmDevice::munmap`].
    pub(super) unsafe fn unmap_object(&self, ptr: NonNull<u8>, len: u64) {
        {
            let mut st = self.state();
            if let Some(m) = st.mappings.remove(&(ptr.as_ptr() as usize)) {
                if let Ok(o) = st.object_mut(m.handle) {
                    o.maps = o.maps.saturating_sub(1);
                }
            }
        }
        // SAFETY: the caller unmaps a mapping `map_object` made and no
        // longer uses.
        let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len as usize) };
    }
}

/// Maps `len` bytes of `fd` from its start, shared, read-write.
fn map_file(fd: std::os::fd::BorrowedFd<'_>, len: u64) -> Result<NonNull<u8>, Errno> {
    let len = usize::try_from(len).map_err(|_| Errno::INVAL)?;
    // SAFETY: a fresh shared mapping of a memfd at an address the kernel
    // chooses; it replaces no existing memory.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    NonNull::new(p.cast::<u8>()).ok_or(Errno::NOMEM)
}
