//! Models of the i915 and xe kernels for tests: handles, regions with a
//! capacity, exact placement, madvise with i915's retained/purged
//! semantics (xe: none), a kernel shrinker that purges DONTNEED objects,
//! busy objects, CPU mappings and PRIME export (the object's pages are a
//! memfd, so a "dma-buf" maps like the real thing), and the errors the
//! real kernels return: ENOSPC / ENOMEM when a region is full, EINVAL for
//! unknown handles and purged objects, injected failures. i915 flavour
//! also has GPU contexts and GEM_EXECBUFFER2 with i915's checks (ENOENT
//! for unknown contexts and handles, EFAULT for DONTNEED or purged
//! objects, EINVAL for bad batches and duplicates); a submission's
//! out-fence is an eventfd that [`FakeKernel::complete_all`] signals.
//!
//! A fake cannot raise the SIGBUS a real i915 gives a CPU access to a
//! purged (on discrete parts: any DONTNEED) object; it counts the
//! situations that would allow one instead — DONTNEED of an object with a
//! live CPU mapping, a mapping made of a DONTNEED object — as
//! [`FakeKernel::sigbus_hazards`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use rustix::io::Errno;

use super::uapi::I915_EXEC_HANDLE_LUT;
use super::{ContextParam, GemKernel, GpuExec, KernelRegion};
use crate::shmem::ShmemFile;
use crate::types::{Madv, MemoryClass};

/// Which kernel the fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// i915: kernel madvise with `retained`.
    I915,
    /// xe: no buffer madvise.
    Xe,
}

#[derive(Debug)]
struct Object {
    file: ShmemFile,
    region: usize,
    dontneed: bool,
    purged: bool,
    busy: bool,
    /// Live CPU mappings.
    maps: u32,
}

/// The PCI device id the fake i915 reports.
pub const FAKE_DEVICE_ID: u32 = 0x56a0;
/// What the fake i915 answers DRM_I915_QUERY_TOPOLOGY_INFO with.
pub const FAKE_TOPOLOGY: &[u8] = b"fake topology: 1 slice, 8 subslices";

/// A submission the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSubmission {
    /// Kernel context.
    pub context: u32,
    /// Kernel handles, in exec-list order.
    pub handles: Vec<u32>,
    /// Relocation target handles (or indices with HANDLE_LUT).
    pub reloc_targets: Vec<u32>,
    /// `I915_EXEC_*` as passed.
    pub flags: u64,
    /// Batch start and length.
    pub batch: (u32, u32),
}

#[derive(Debug, Default)]
struct Gpu {
    contexts: HashMap<u32, Vec<ContextParam>>,
    next_context: u32,
    submissions: Vec<FakeSubmission>,
    /// Out-fences not yet signaled, with the handles they keep busy.
    running: Vec<(OwnedFd, Vec<u32>)>,
}

/// A fake GPU kernel.
#[derive(Debug)]
pub struct FakeKernel {
    flavor: Flavor,
    regions: Vec<KernelRegion>,
    objects: Mutex<HashMap<u32, Object>>,
    next: AtomicU32,
    fail_next_create: Mutex<Option<Errno>>,
    gpu: Mutex<Gpu>,
    /// CPU mappings: address → handle.
    mappings: Mutex<HashMap<usize, u32>>,
    hazards: AtomicUsize,
}

impl FakeKernel {
    /// A kernel of `flavor` with system memory of `system` bytes and one
    /// device region per entry of `device` (empty: an integrated part).
    pub fn new(flavor: Flavor, system: u64, device: &[u64]) -> Self {
        let mut regions = vec![KernelRegion {
            class: MemoryClass::System,
            instance: 0,
            size: system,
            free: Some(system),
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
                free: Some(*size),
            });
        }
        Self {
            flavor,
            regions,
            objects: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
            fail_next_create: Mutex::new(None),
            mappings: Mutex::new(HashMap::new()),
            hazards: AtomicUsize::new(0),
            gpu: Mutex::new(Gpu {
                next_context: 1,
                ..Gpu::default()
            }),
        }
    }

    fn gpu(&self) -> std::sync::MutexGuard<'_, Gpu> {
        self.gpu.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submissions accepted so far.
    pub fn submissions(&self) -> Vec<FakeSubmission> {
        self.gpu().submissions.clone()
    }

    /// Live GPU contexts and the parameters they were created with.
    pub fn contexts(&self) -> HashMap<u32, Vec<ContextParam>> {
        self.gpu().contexts.clone()
    }

    /// Finishes every running submission: its objects go idle and its
    /// out-fence signals. Returns how many.
    pub fn complete_all(&self) -> usize {
        let running = std::mem::take(&mut self.gpu().running);
        let n = running.len();
        let mut objects = self.objects();
        for (fence, handles) in running {
            for h in handles {
                if let Some(o) = objects.get_mut(&h) {
                    o.busy = false;
                }
            }
            let _ = rustix::io::write(&fence, &1u64.to_ne_bytes());
        }
        n
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Object>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn region_index(&self, r: &KernelRegion) -> Option<usize> {
        self.regions
            .iter()
            .position(|k| k.class == r.class && k.instance == r.instance)
    }

    /// Bytes of live objects in region `i`.
    pub fn bytes_in(&self, i: usize) -> u64 {
        self.objects()
            .values()
            .filter(|o| o.region == i && !o.purged)
            .map(|o| o.file.size())
            .sum()
    }

    /// Live handles.
    pub fn live_objects(&self) -> usize {
        self.objects().len()
    }

    /// The next create fails with `e`.
    pub fn fail_next_create(&self, e: Errno) {
        *self
            .fail_next_create
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e);
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
    /// Returns how many.
    pub fn purge_dontneed(&self) -> usize {
        let mut n = 0;
        for o in self
            .objects()
            .values_mut()
            .filter(|o| o.dontneed && !o.purged)
        {
            let _ = o.file.punch(0, o.file.size());
            o.purged = true;
            n += 1;
        }
        n
    }

    /// Marks an object busy or idle (a GPU job using it).
    pub fn set_busy(&self, handle: u32, busy: bool) -> Result<(), Errno> {
        self.objects()
            .get_mut(&handle)
            .map(|o| o.busy = busy)
            .ok_or(Errno::INVAL)
    }

    /// The object's bytes, read through the kernel (not the driver).
    pub fn read(&self, handle: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let objects = self.objects();
        let o = objects
            .get(&handle)
            .ok_or_else(|| io::Error::from(Errno::INVAL))?;
        o.file.read_at(offset, buf)
    }
}

impl GemKernel for FakeKernel {
    fn driver(&self) -> &str {
        match self.flavor {
            Flavor::I915 => "i915",
            Flavor::Xe => "xe",
        }
    }

    fn discrete(&self) -> bool {
        self.regions.len() > 1
    }

    fn device_id(&self) -> Option<u32> {
        Some(FAKE_DEVICE_ID)
    }

    fn regions(&self) -> io::Result<Vec<KernelRegion>> {
        Ok(self
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| KernelRegion {
                free: Some(r.size.saturating_sub(self.bytes_in(i))),
                ..*r
            })
            .collect())
    }

    fn create(&self, size: u64, region: &KernelRegion) -> Result<u32, Errno> {
        if let Some(e) = self
            .fail_next_create
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        let i = self.region_index(region).ok_or(Errno::INVAL)?;
        if size == 0 || size % 4096 != 0 {
            return Err(Errno::INVAL);
        }
        if self.bytes_in(i) + size > self.regions[i].size {
            return Err(match region.class {
                MemoryClass::Device => Errno::NOSPC,
                MemoryClass::System => Errno::NOMEM,
            });
        }
        let file = ShmemFile::create("fake-gem", size)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::NOMEM))?;
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        self.objects().insert(
            handle,
            Object {
                file,
                region: i,
                dontneed: false,
                purged: false,
                busy: false,
                maps: 0,
            },
        );
        Ok(handle)
    }

    fn mmap(&self, handle: u32, size: u64, _region: &KernelRegion) -> Result<NonNull<u8>, Errno> {
        let mut objects = self.objects();
        let o = objects.get_mut(&handle).ok_or(Errno::INVAL)?;
        if o.purged {
            return Err(Errno::INVAL);
        }
        if size != o.file.size() {
            return Err(Errno::INVAL);
        }
        if o.dontneed {
            self.hazard("mapping a DONTNEED object", handle);
        }
        let ptr = super::i915::map_offset(o.file.fd(), 0, size)?;
        o.maps += 1;
        self.mappings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ptr.as_ptr() as usize, handle);
        Ok(ptr)
    }

    fn munmap(&self, ptr: NonNull<u8>, size: u64) {
        let handle = self
            .mappings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ptr.as_ptr() as usize));
        if let Some(h) = handle {
            if let Some(o) = self.objects().get_mut(&h) {
                o.maps = o.maps.saturating_sub(1);
            }
        }
        super::i915::unmap(ptr, size);
    }

    fn export(&self, handle: u32) -> Result<OwnedFd, Errno> {
        let objects = self.objects();
        let o = objects.get(&handle).ok_or(Errno::INVAL)?;
        o.file
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::MFILE))
    }

    fn madvise(&self, handle: u32, madv: Madv) -> Result<Option<bool>, Errno> {
        if self.flavor == Flavor::Xe {
            return Ok(None);
        }
        let mut objects = self.objects();
        let o = objects.get_mut(&handle).ok_or(Errno::INVAL)?;
        o.dontneed = madv != Madv::WillNeed;
        let (retained, mapped) = (!o.purged, o.maps > 0);
        drop(objects);
        if madv != Madv::WillNeed && mapped {
            self.hazard("DONTNEED of a CPU-mapped object", handle);
        }
        Ok(Some(retained))
    }

    fn busy(&self, handle: u32) -> Result<bool, Errno> {
        self.objects()
            .get(&handle)
            .map(|o| o.busy)
            .ok_or(Errno::INVAL)
    }

    fn wait(&self, handle: u32, _timeout_ns: i64) -> Result<(), Errno> {
        match self.busy(handle)? {
            true => Err(Errno::TIME),
            false => Ok(()),
        }
    }

    fn close(&self, handle: u32) {
        self.objects().remove(&handle);
    }

    /// CHIPSET_ID (an Alchemist part's id) and REVISION; other
    /// parameters are EINVAL, as for parameters a kernel does not know.
    fn getparam(&self, param: i32) -> Result<i32, Errno> {
        match (self.flavor, param) {
            (Flavor::I915, 4) => Ok(FAKE_DEVICE_ID as i32),
            (Flavor::I915, 32) => Ok(8),
            (Flavor::I915, _) => Err(Errno::INVAL),
            (Flavor::Xe, _) => Err(Errno::NODEV),
        }
    }

    /// TOPOLOGY_INFO: a recognisable stand-in blob; other items EINVAL.
    fn query(&self, query_id: u64) -> Result<Vec<u8>, Errno> {
        match (self.flavor, query_id) {
            (Flavor::I915, 1) => Ok(FAKE_TOPOLOGY.to_vec()),
            (Flavor::I915, _) => Err(Errno::INVAL),
            (Flavor::Xe, _) => Err(Errno::NODEV),
        }
    }

    fn context_create(&self, params: &[ContextParam]) -> Result<u32, Errno> {
        if self.flavor == Flavor::Xe {
            return Err(Errno::NODEV);
        }
        // Unknown parameters are EINVAL, as in i915; so are VM ids, which
        // the fake has none of, and ENGINES/SSEU without their data.
        let bad = |p: &ContextParam| match p.param {
            0x7 | 0xa => p.data.is_empty(),
            0x9 => true,
            n => n == 0 || n > 0xf,
        };
        if params.iter().any(bad) {
            return Err(Errno::INVAL);
        }
        let mut gpu = self.gpu();
        let id = gpu.next_context;
        gpu.next_context += 1;
        gpu.contexts.insert(id, params.to_vec());
        Ok(id)
    }

    fn context_destroy(&self, ctx: u32) {
        self.gpu().contexts.remove(&ctx);
    }

    fn execbuffer(&self, exec: &mut GpuExec) -> Result<OwnedFd, Errno> {
        if self.flavor == Flavor::Xe {
            return Err(Errno::NODEV);
        }
        let mut gpu = self.gpu();
        if exec.context != 0 && !gpu.contexts.contains_key(&exec.context) {
            return Err(Errno::NOENT);
        }
        let relocs: usize = exec
            .objects
            .iter()
            .map(|o| o.relocation_count as usize)
            .sum();
        if relocs != exec.relocs.len() || exec.batch_start % 8 != 0 || exec.batch_len % 8 != 0 {
            return Err(Errno::INVAL);
        }
        let batch = exec.batch_index().ok_or(Errno::INVAL)?;
        let mut objects = self.objects();
        let mut seen = HashSet::new();
        for o in &exec.objects {
            let obj = objects.get(&o.handle).ok_or(Errno::NOENT)?;
            if obj.purged || obj.dontneed {
                return Err(Errno::FAULT);
            }
            if !seen.insert(o.handle) {
                return Err(Errno::INVAL);
            }
        }
        let batch_size = objects[&exec.objects[batch].handle].file.size();
        if u64::from(exec.batch_start) + u64::from(exec.batch_len) > batch_size {
            return Err(Errno::INVAL);
        }
        let lut = exec.flags & I915_EXEC_HANDLE_LUT != 0;
        for r in &exec.relocs {
            let known = match lut {
                true => (r.target_handle as usize) < exec.objects.len(),
                false => seen.contains(&r.target_handle),
            };
            if !known {
                return Err(Errno::NOENT);
            }
        }
        let handles: Vec<u32> = exec.objects.iter().map(|o| o.handle).collect();
        for h in &handles {
            if let Some(o) = objects.get_mut(h) {
                o.busy = true;
            }
        }
        let fence = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let theirs = fence
            .try_clone()
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::MFILE))?;
        gpu.submissions.push(FakeSubmission {
            context: exec.context,
            handles: handles.clone(),
            reloc_targets: exec.relocs.iter().map(|r| r.target_handle).collect(),
            flags: exec.flags,
            batch: (exec.batch_start, exec.batch_len),
        });
        gpu.running.push((fence, handles));
        Ok(theirs)
    }
}
