//! Test helpers (cargo feature `test-utils`, like virtio-queue's): what
//! this crate's tests and the fuzz targets drive the device with.
//!
//! * [`Rig`] — one VM's [`VirtioGpu`] over in-memory guest memory, with a
//!   [`FakeMapper`] for the host-visible region (it checks every
//!   SHMEM_MAP / SHMEM_UNMAP the device asks for) and a [`NullDisplay`];
//!   requests go through the real decoder, and [`Rig::finish`] checks the
//!   VM left nothing behind.
//! * [`QueueRig`] — a [`VgpuBackend`] driven through its
//!   `VhostUserBackend` implementation without a socket: the driver's side
//!   of both virtqueues is virtio-queue's [`MockSplitQueue`] in guest
//!   memory, and the frontend's ring messages (GET_VRING_BASE, a restart)
//!   are played as `vhost-user-backend` plays them.
//!
//! Not built into the daemon: enable the feature only for tests, fuzzing
//! and benchmarks.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, LazyLock, Mutex};

use vgpu_backend::intel::fake::{FakeKernel, Flavor};
use vgpu_backend::intel::GemDriver;
use vgpu_backend::{BufferManager, OwnerId};
use vgpu_proto::virtio_gpu::{Command, CtrlHdr, Response};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use zerocopy::FromBytes;

use crate::config::{DeviceConfig, Limits};
use crate::display::{DisplaySink, FrontendMode};
use crate::gpu::VirtioGpu;
use crate::guest_io::GuestMem;
use crate::hostmem::HostMemMapper;
use crate::vhost::{VgpuBackend, NUM_QUEUES, TIMER_EVENT};

/// Guest memory size of [`MEM`] and of [`guest_memory`]'s default.
pub const GUEST_RAM: usize = 8 << 20;
/// Host-visible region size of the [`Rig`]s' configuration.
pub const HOSTMEM: u64 = 16 << 20;

/// One buffer manager for every fuzz input (creating the device pool per
/// input would dominate); each [`Rig`] gets its own VM account, checked
/// empty after. Tests that run in parallel give each rig its own buffer
/// manager instead ([`Rig::with`]): [`Rig::finish`] checks the whole
/// manager is empty.
pub static BM: LazyLock<BufferManager> =
    LazyLock::new(|| BufferManager::emulated_with_cache(4 << 20, 1 << 20).expect("buffer manager"));

/// The fake i915 kernel behind [`GPU_BM`] (the real i915 driver runs over
/// it, ioctl by ioctl).
pub static GPU_KERNEL: LazyLock<Arc<FakeKernel>> =
    LazyLock::new(|| Arc::new(FakeKernel::new(Flavor::I915, 64 << 20, &[4 << 20])));

/// A buffer manager over [`GPU_KERNEL`]: guest blobs are its GEM objects.
pub static GPU_BM: LazyLock<BufferManager> = LazyLock::new(|| {
    let kernel = GPU_KERNEL
        .open()
        .expect("the i915 driver over the fake kernel");
    BufferManager::new(&GemDriver::new(kernel).expect("GEM driver")).expect("buffer manager")
});

/// Guest memory shared by the [`Rig`]s of [`Rig::new`] and [`Rig::on_gpu`]
/// (its contents do not matter to them).
pub static MEM: LazyLock<GuestMem> = LazyLock::new(|| guest_memory(GUEST_RAM));

/// Guest memory of `size` bytes at guest address 0.
pub fn guest_memory(size: usize) -> GuestMem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).expect("guest memory")
}

/// Records SHMEM_MAP / SHMEM_UNMAP and checks what the device asks: every
/// mapping inside the region, none overlapping, every unmap of something
/// mapped. A violation panics (the fuzz targets' and tests' failure).
#[derive(Debug)]
pub struct FakeMapper {
    /// Mapped ranges: offset → length.
    pub maps: Mutex<BTreeMap<u64, u64>>,
    size: u64,
}

impl Default for FakeMapper {
    /// A region of [`HOSTMEM`] bytes.
    fn default() -> Self {
        Self::new(HOSTMEM)
    }
}

impl FakeMapper {
    /// A host-visible region of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self {
            maps: Mutex::new(BTreeMap::new()),
            size,
        }
    }

    /// The mapped ranges: offset → length.
    pub fn mapped(&self) -> BTreeMap<u64, u64> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl HostMemMapper for FakeMapper {
    fn map(
        &self,
        shm_offset: u64,
        _fd: BorrowedFd<'_>,
        _fd_offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let end = shm_offset.checked_add(len).expect("map range overflows");
        assert!(
            end <= self.size,
            "mapped past the host-visible region: {shm_offset}+{len}"
        );
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        for (&o, &l) in maps.iter() {
            assert!(end <= o || shm_offset >= o + l, "overlapping mappings");
        }
        maps.insert(shm_offset, len);
        Ok(())
    }

    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        // A mapping may be undone in one call or (after a partial failure)
        // from its start; everything unmapped must have been mapped.
        let start = maps
            .range(..=shm_offset)
            .next_back()
            .map(|(o, l)| (*o, *l))
            .filter(|(o, l)| shm_offset < o + l);
        assert!(
            start.is_some(),
            "unmapping {shm_offset}+{len}, which is not mapped"
        );
        let end = shm_offset + len;
        let doomed: Vec<u64> = maps.range(shm_offset..end).map(|(o, _)| *o).collect();
        for o in doomed {
            maps.remove(&o);
        }
        if let Some((o, _)) = start {
            maps.remove(&o);
        }
        Ok(())
    }
}

/// A display that accepts everything (and checks each update's size).
#[derive(Debug, Default)]
pub struct NullDisplay;

impl DisplaySink for NullDisplay {
    fn display_info(&mut self) -> Option<Vec<FrontendMode>> {
        None
    }
    fn set_scanout(&mut self, _: u32, _: u32, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn update(&mut self, _: u32, _: u32, _: u32, w: u32, h: u32, bgrx: &[u8]) -> io::Result<()> {
        assert_eq!(
            bgrx.len() as u64,
            u64::from(w) * u64::from(h) * 4,
            "update size"
        );
        Ok(())
    }
    fn cursor_update(
        &mut self,
        _: u32,
        _: u32,
        _: u32,
        _: (u32, u32),
        _: &[u8; 64 * 64 * 4],
    ) -> io::Result<()> {
        Ok(())
    }
    fn cursor_move(&mut self, _: u32, _: u32, _: u32, _: bool) -> io::Result<()> {
        Ok(())
    }
}

/// One VM's device, requests in, responses out, without virtqueues.
pub struct Rig {
    /// The device.
    pub gpu: VirtioGpu,
    /// Its host-visible region.
    pub mapper: Arc<FakeMapper>,
    /// The guest memory requests refer to.
    pub mem: GuestMem,
    vm: OwnerId,
    bm: BufferManager,
    /// The fake kernel under `bm`, checked by [`Rig::finish`].
    kernel: Option<&'static FakeKernel>,
}

impl Rig {
    /// A fresh VM on the shared emulated buffer manager [`BM`], with
    /// [`Rig::small_config`] and the shared guest memory [`MEM`].
    pub fn new() -> Self {
        Self::on(Self::small_config(), BM.clone(), MEM.clone(), "fuzz")
    }

    /// A fresh VM on the fake i915 kernel's buffer manager [`GPU_BM`].
    pub fn on_gpu() -> Self {
        let mut rig = Self::on(Self::small_config(), GPU_BM.clone(), MEM.clone(), "fuzz");
        rig.kernel = Some(&**GPU_KERNEL);
        rig
    }

    /// A fresh VM configured by `cfg` (its `vm_quota` set on the account)
    /// on `bm`, over its own guest memory of [`GUEST_RAM`] bytes. The
    /// mapper's region is `cfg.hostmem_size` bytes.
    pub fn with(cfg: DeviceConfig, bm: BufferManager) -> Self {
        Self::on(cfg, bm, guest_memory(GUEST_RAM), "rig")
    }

    /// The configuration of [`Rig::new`]: a [`HOSTMEM`] host-visible
    /// region, small per-VM limits (64 resources, 8 contexts, 1024 backing
    /// entries, 64 context objects) and a 64 MiB quota.
    pub fn small_config() -> DeviceConfig {
        DeviceConfig {
            hostmem_size: HOSTMEM,
            limits: Limits {
                max_resources: 64,
                max_contexts: 8,
                max_backing_entries: 1024,
                max_hostmem_mapped: HOSTMEM,
                max_context_objects: 64,
            },
            vm_quota: Some(64 << 20),
            ..DeviceConfig::default()
        }
    }

    fn on(cfg: DeviceConfig, bm: BufferManager, mem: GuestMem, name: &str) -> Self {
        let vm = bm.create_owner(name, None).expect("owner");
        bm.set_quota(vm, cfg.vm_quota).expect("quota");
        let mapper = Arc::new(FakeMapper::new(cfg.hostmem_size));
        let mut gpu = VirtioGpu::new(Arc::new(cfg), bm.clone(), vm);
        gpu.set_mapper(Some(mapper.clone()));
        gpu.set_display(Some(Box::new(NullDisplay)));
        Self {
            gpu,
            mapper,
            mem,
            vm,
            bm,
            kernel: None,
        }
    }

    /// The VM's buffer-manager account.
    pub fn vm(&self) -> OwnerId {
        self.vm
    }

    /// The buffer manager the VM's buffers live in.
    pub fn buffer_manager(&self) -> &BufferManager {
        &self.bm
    }

    /// Sends `bytes` as one request through the real decoder; a request
    /// that does not decode gets the decoder's error, as on the queue.
    pub fn request(&mut self, bytes: &[u8]) -> Response {
        match Command::decode(bytes) {
            Ok(c) => self.gpu.process(&c, &self.mem).response,
            Err(e) => Response::Error(e.error_code()),
        }
    }

    /// As [`Rig::request`], returning the response's bytes as the queue
    /// loop would write them (its header echoes the request's fence, context
    /// and ring, as far as the request has a header).
    pub fn exchange(&mut self, bytes: &[u8]) -> Vec<u8> {
        let hdr = CtrlHdr::read_from_prefix(bytes)
            .map(|(h, _)| h)
            .unwrap_or_default();
        let response = self.request(bytes);
        let mut out = Vec::new();
        response.encode(&hdr, &mut out);
        out
    }

    /// Resets the device, frees the VM, and checks nothing was left behind:
    /// no object, no charge, no mapping, every region of the buffer manager
    /// empty (and, on the fake kernel, no GEM handle, context or hazard).
    pub fn finish(mut self) {
        self.gpu.reset();
        assert!(self.mapper.mapped().is_empty(), "mappings left after reset");
        let bm = &self.bm;
        let s = bm.owner_stats(self.vm).expect("owner stats");
        assert_eq!(
            (s.objects, s.charged, s.pinned),
            (0, 0, 0),
            "the VM holds memory after reset: {s:?}"
        );
        bm.destroy_owner(self.vm).expect("destroy owner");
        let stats = bm.stats();
        assert_eq!(stats.objects, 0, "objects left");
        for r in &stats.regions {
            assert_eq!(r.used, 0, "region {} still hands out memory", r.info.name);
        }
        if let Some(kernel) = self.kernel {
            kernel.complete_all();
            assert_eq!(kernel.live_objects(), 0, "GEM handles left open");
            assert_eq!(
                kernel.sigbus_hazards(),
                0,
                "the kernel could drop pages someone may fault on"
            );
            assert!(kernel.contexts().is_empty(), "kernel GEM contexts left");
        }
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

/// What the bytes of a writable descriptor [`QueueRig`] placed hold until
/// the device writes them.
pub const UNWRITTEN: u8 = 0xee;

/// One descriptor of a chain [`QueueRig::post`] offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A device-readable descriptor holding these bytes (placed by the rig).
    Read(Vec<u8>),
    /// A device-writable descriptor of this many bytes (placed by the rig,
    /// filled with [`UNWRITTEN`]).
    Write(u32),
    /// A device-readable descriptor at a guest address, of a length.
    ReadAt(u64, u32),
    /// A device-writable descriptor at a guest address, of a length.
    WriteAt(u64, u32),
}

/// A chain [`QueueRig::post`] offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// Its head descriptor's index.
    pub head: u16,
    /// Its writable descriptors, in order.
    pub writable: Vec<(GuestAddress, u32)>,
}

/// A used-ring entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The chain's head.
    pub head: u16,
    /// Bytes the device wrote.
    pub len: u32,
}

/// Size of both queues of a [`QueueRig`].
pub const QUEUE_SIZE: u16 = 256;
/// Where the rig's request and response buffers start in guest memory.
pub const DATA_START: u64 = 1 << 20;
/// Where each queue's rings live: control, cursor.
const QUEUE_BASE: [u64; NUM_QUEUES] = [0x1_0000, 0x2_0000];

/// A [`VgpuBackend`] driven through its `VhostUserBackend` implementation
/// as `vhost-user-backend` drives it, without a socket or worker thread:
/// the driver's side of both queues ([`MockSplitQueue`]s in the guest
/// memory the rig borrows) is played by the test, and each call that runs
/// the device ([`QueueRig::kick`], [`QueueRig::tick`]) is one event of the
/// library's worker.
///
/// Without a frontend the device has no host-visible region and no
/// display channel: MAP_BLOB answers ERR_UNSPEC.
pub struct QueueRig<'m> {
    /// The backend under test.
    pub backend: VgpuBackend,
    mem: &'m GuestMem,
    vrings: Vec<VringRwLock>,
    queues: Vec<MockSplitQueue<'m, GuestMem>>,
    /// Used-ring entries already returned, per queue.
    seen: [u16; NUM_QUEUES],
    /// Next free byte of the data area.
    data: u64,
    bm: BufferManager,
    vm: OwnerId,
}

impl<'m> QueueRig<'m> {
    /// A backend configured by `cfg` for a new VM on `bm`, over `mem`
    /// (at least [`DATA_START`] plus the data the test places), with both
    /// queues of [`QUEUE_SIZE`] set up and running at index 0.
    pub fn new(mem: &'m GuestMem, cfg: DeviceConfig, bm: BufferManager) -> io::Result<Self> {
        let vm = bm
            .create_owner("queues", None)
            .map_err(|e| io::Error::other(e.to_string()))?;
        bm.set_quota(vm, cfg.vm_quota)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let backend = VgpuBackend::new(Arc::new(cfg), bm.clone(), vm)?;
        let atomic = GuestMemoryAtomic::new(mem.clone());
        backend.update_memory(atomic.clone())?;
        let mut vrings = Vec::with_capacity(NUM_QUEUES);
        let mut queues = Vec::with_capacity(NUM_QUEUES);
        for base in QUEUE_BASE {
            let vring = VringRwLock::new(atomic.clone(), QUEUE_SIZE)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let queue = MockSplitQueue::create(mem, GuestAddress(base), QUEUE_SIZE);
            vring.set_queue_size(QUEUE_SIZE);
            vring
                .set_queue_info(
                    queue.desc_table_addr().0,
                    queue.avail_addr().0,
                    queue.used_addr().0,
                )
                .map_err(|e| io::Error::other(e.to_string()))?;
            vring.set_queue_next_avail(0);
            vring.set_queue_next_used(0);
            vring.set_enabled(true);
            vring.set_queue_ready(true);
            vrings.push(vring);
            queues.push(queue);
        }
        Ok(Self {
            backend,
            mem,
            vrings,
            queues,
            seen: [0; NUM_QUEUES],
            data: DATA_START,
            bm,
            vm,
        })
    }

    /// Places `bytes` in the data area; returns their guest address.
    pub fn place(&mut self, bytes: &[u8]) -> GuestAddress {
        let at = GuestAddress(self.data);
        // Keep every buffer 64-byte aligned, as a driver's allocator would.
        self.data = (self.data + bytes.len() as u64 + 63) & !63;
        assert!(
            self.data <= self.mem.last_addr().0 + 1,
            "the rig's data area is full"
        );
        self.mem
            .write_slice(bytes, at)
            .expect("data area in guest memory");
        at
    }

    /// Offers a chain of `segs` on `queue`, its descriptors at table
    /// indexes `head`, `head + 1`, …, without kicking. Reusing a head the
    /// device still holds is allowed (that is what a broken or hostile
    /// driver does).
    pub fn post(&mut self, queue: u16, head: u16, segs: &[Seg]) -> Posted {
        let q = usize::from(queue);
        let n = u16::try_from(segs.len()).expect("chain length");
        assert!(
            n > 0 && head.checked_add(n).is_some_and(|end| end <= QUEUE_SIZE),
            "chain of {n} at head {head} does not fit the descriptor table"
        );
        let mut writable = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let (addr, len, write) = match seg {
                Seg::Read(bytes) => (
                    self.place(bytes).0,
                    u32::try_from(bytes.len()).expect("segment length"),
                    false,
                ),
                Seg::Write(len) => (self.place(&vec![UNWRITTEN; *len as usize]).0, *len, true),
                Seg::ReadAt(addr, len) => (*addr, *len, false),
                Seg::WriteAt(addr, len) => (*addr, *len, true),
            };
            if write {
                writable.push((GuestAddress(addr), len));
            }
            let index = head + i as u16;
            let last = i + 1 == segs.len();
            let mut flags = 0u16;
            if !last {
                flags |= virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
            }
            if write {
                flags |= virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
            }
            let next = if last { 0 } else { index + 1 };
            self.queues[q]
                .desc_table()
                .store(
                    index,
                    RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
                )
                .expect("descriptor in the table");
        }
        // Publish the head (the ring wraps; the index runs free).
        self.raw_avail(queue, head);
        Posted { head, writable }
    }

    /// Writes raw descriptor `index` of `queue`'s table as a driver —
    /// broken or hostile — may: any address, length, flags (NEXT, WRITE,
    /// INDIRECT) and next index. `index` wraps at the table size.
    pub fn raw_descriptor(
        &mut self,
        queue: u16,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let q = usize::from(queue) % NUM_QUEUES;
        self.queues[q]
            .desc_table()
            .store(
                index % QUEUE_SIZE,
                RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
            )
            .expect("descriptor in the table");
    }

    /// Publishes `head` in `queue`'s avail ring, whatever it is (a head
    /// out of range, one the device holds, one never written).
    pub fn raw_avail(&mut self, queue: u16, head: u16) {
        let q = usize::from(queue) % NUM_QUEUES;
        let avail = self.queues[q].avail();
        let idx = avail.idx().load();
        avail
            .ring()
            .ref_at(usize::from(idx % QUEUE_SIZE))
            .expect("avail ring slot")
            .store(head);
        avail.idx().store(idx.wrapping_add(1));
    }

    /// The guest kicks `queue`: one worker event for it.
    pub fn kick(&mut self, queue: u16) -> io::Result<()> {
        self.event(queue)
    }

    /// The fence timer fires: one worker event retiring finished fences.
    pub fn tick(&mut self) -> io::Result<()> {
        self.event(TIMER_EVENT)
    }

    fn event(&mut self, event: u16) -> io::Result<()> {
        self.backend
            .handle_event(event, EventSet::IN, &self.vrings, 0)
    }

    /// The used-ring entries of `queue` the device added since the last call.
    pub fn used(&mut self, queue: u16) -> Vec<Used> {
        let q = usize::from(queue);
        let used = self.queues[q].used();
        let idx = used.idx().load();
        let mut out = Vec::new();
        while self.seen[q] != idx {
            let e = used
                .ring()
                .ref_at(usize::from(self.seen[q] % QUEUE_SIZE))
                .expect("used ring slot")
                .load();
            out.push(Used {
                head: u16::try_from(e.id()).unwrap_or(u16::MAX),
                len: e.len(),
            });
            self.seen[q] = self.seen[q].wrapping_add(1);
        }
        out
    }

    /// The first `len` bytes of a chain's writable descriptors.
    pub fn response(&self, posted: &Posted, len: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        for (addr, l) in &posted.writable {
            let n = (len as usize - out.len()).min(*l as usize);
            out.extend(self.read(*addr, n));
        }
        out
    }

    /// Reads guest memory.
    pub fn read(&self, addr: GuestAddress, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.mem.read_slice(&mut buf, addr).expect("guest memory");
        buf
    }

    /// Writes guest memory.
    pub fn write(&self, addr: GuestAddress, bytes: &[u8]) {
        self.mem.write_slice(bytes, addr).expect("guest memory");
    }

    /// The frontend stops `queue` as `vhost-user-backend` handles
    /// GET_VRING_BASE (not ready, then the backend's `stop_vring`); returns
    /// the index the frontend gets.
    pub fn stop(&mut self, queue: u16) -> io::Result<u16> {
        let vring = &self.vrings[usize::from(queue)];
        vring.set_queue_ready(false);
        self.backend.stop_vring(u32::from(queue))?;
        Ok(vring.queue_next_avail())
    }

    /// The frontend starts `queue` again at `base` (SET_VRING_BASE, then
    /// SET_VRING_ADDR — the used index read back from the guest's ring, as
    /// `vhost-user-backend` does — and SET_VRING_KICK).
    pub fn start(&mut self, queue: u16, base: u16) -> io::Result<()> {
        let q = usize::from(queue);
        let vring = &self.vrings[q];
        let ring = &self.queues[q];
        vring.set_queue_next_avail(base);
        vring
            .set_queue_info(
                ring.desc_table_addr().0,
                ring.avail_addr().0,
                ring.used_addr().0,
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
        let used = vring
            .queue_used_idx()
            .map_err(|e| io::Error::other(e.to_string()))?;
        vring.set_queue_next_used(used);
        vring.set_queue_ready(true);
        Ok(())
    }

    /// A new driver instance sets up `queue` afresh in the same guest
    /// memory: its rings zeroed, nothing offered, nothing used.
    pub fn new_driver_ring(&mut self, queue: u16) {
        let q = usize::from(queue);
        self.queues[q] = MockSplitQueue::create(self.mem, GuestAddress(QUEUE_BASE[q]), QUEUE_SIZE);
        self.seen[q] = 0;
    }

    /// The VM's account.
    pub fn vm(&self) -> OwnerId {
        self.vm
    }

    /// Ends the connection as the daemon does ([`VgpuBackend::teardown`])
    /// and checks the VM holds nothing, then frees its account.
    pub fn finish(self) {
        self.backend.teardown();
        let s = self.bm.owner_stats(self.vm).expect("owner stats");
        assert_eq!(
            (s.objects, s.charged, s.pinned),
            (0, 0, 0),
            "the VM holds memory after teardown: {s:?}"
        );
        drop(self.backend);
        self.bm.destroy_owner(self.vm).expect("destroy owner");
    }
}
