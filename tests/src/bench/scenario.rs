//! The scenarios: what each sends, through the frontend harness, to any
//! vhost-user virtio-gpu backend, and what it times.

use std::io;
use std::time::{Duration, Instant};
use vm_memory::GuestAddress;

use vgpu_proto::native::{
    gem_close, gem_create_ext, gem_madvise_blob, I915Request, MemoryClassInstance,
    I915_MADV_DONTNEED, I915_MEMORY_CLASS_SYSTEM,
};
use vgpu_proto::virtio_gpu::*;

use super::stats::Measurement;
use crate::cmd::{
    attach_backing, create_2d, detach_backing, flush, map_blob, set_scanout, transfer_2d,
    unmap_blob, unref, NativeContext,
};
use crate::vmm::{Request, Vmm, CTRL};

const PAGE: u64 = 4096;
/// Where blobs are mapped in the host-visible region (after the response blob).
const MAP_AT: u64 = 1 << 20;

/// One named scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// CREATE_2D → ATTACH_BACKING → TRANSFER_TO_HOST_2D → DETACH → UNREF.
    Cycle2d {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// Repeated full TRANSFER_TO_HOST_2D of one resource.
    Transfer {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// Repeated RESOURCE_FLUSH of a scanned-out resource (display channel).
    Flush {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// A desktop frame as the Linux driver sends a DIRTYFB: a 256×256
    /// square of the scanned-out guest framebuffer changes (a new value,
    /// a new place each time), then TRANSFER_TO_HOST_2D + RESOURCE_FLUSH
    /// of the whole frame (display channel), one frame at a time.
    Frame {
        /// Width.
        w: u32,
        /// Height.
        h: u32,
    },
    /// GEM_CREATE_EXT + CREATE_BLOB (HOST3D) → MAP_BLOB → touch every
    /// page → UNMAP_BLOB → UNREF, each command timed on its own. (Only
    /// host-only blobs can be mapped: the virtio spec's MAP_BLOB.)
    BlobCycle {
        /// Bytes.
        size: u64,
    },
    /// GEM_CREATE_EXT + GEM_MADVISE + GEM_CLOSE, `batch` requests per SUBMIT_3D.
    Gem {
        /// Requests per SUBMIT_3D.
        batch: usize,
    },
    /// HOST3D blob create + destroy latency with `live` resources alive.
    Scale {
        /// Live resources.
        live: usize,
    },
}

/// Why a scenario did not produce figures.
#[derive(Debug)]
pub enum NotRun {
    /// The backend does not offer what the scenario needs.
    Unsupported(String),
    /// It failed.
    Failed(String),
}

impl From<io::Error> for NotRun {
    fn from(e: io::Error) -> Self {
        NotRun::Failed(e.to_string())
    }
}

/// Sizes the blob scenarios use.
pub const BLOB_SIZES: [u64; 5] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];

impl Scenario {
    /// Every scenario that runs against a backend.
    pub fn all() -> Vec<Scenario> {
        let mut v = Vec::new();
        for (w, h) in [(64, 64), (256, 256), (1920, 1080)] {
            v.push(Scenario::Cycle2d { w, h });
        }
        v.push(Scenario::Transfer { w: 1920, h: 1080 });
        v.push(Scenario::Flush { w: 1920, h: 1080 });
        v.push(Scenario::Frame { w: 1920, h: 1080 });
        for size in BLOB_SIZES {
            v.push(Scenario::BlobCycle { size });
        }
        v.push(Scenario::Gem { batch: 63 });
        for live in [10, 10_000, 100_000] {
            v.push(Scenario::Scale { live });
        }
        v
    }

    /// `2d-cycle/64x64`, `blob-cycle/host3d/4K`, …
    pub fn name(&self) -> String {
        match self {
            Scenario::Cycle2d { w, h } => format!("2d-cycle/{w}x{h}"),
            Scenario::Transfer { w, h } => format!("transfer/{w}x{h}"),
            Scenario::Flush { w, h } => format!("flush/{w}x{h}"),
            Scenario::Frame { w, h } => format!("frame/{w}x{h}"),
            Scenario::BlobCycle { size } => format!("blob-cycle/host3d/{}", human(*size)),
            Scenario::Gem { batch } => format!("gem/batch{batch}"),
            Scenario::Scale { live } => format!("scale/live{live}"),
        }
    }

    /// Whether the depth setting applies (the others run one at a time).
    pub fn uses_depth(&self) -> bool {
        matches!(
            self,
            Scenario::Cycle2d { .. } | Scenario::Transfer { .. } | Scenario::Flush { .. }
        )
    }

    /// Runs it for `duration` with `depth` requests in flight.
    pub fn run(
        &self,
        vmm: &mut Vmm,
        duration: Duration,
        depth: usize,
    ) -> Result<Measurement, NotRun> {
        let depth = if self.uses_depth() { depth.max(1) } else { 1 };
        match *self {
            Scenario::Cycle2d { w, h } => cycle_2d(vmm, w, h, depth, duration),
            Scenario::Transfer { w, h } => transfer(vmm, w, h, depth, duration, false),
            Scenario::Flush { w, h } => transfer(vmm, w, h, depth, duration, true),
            Scenario::Frame { w, h } => frame(vmm, w, h, duration),
            Scenario::BlobCycle { size } => blob_cycle(vmm, size, duration),
            Scenario::Gem { batch } => gem(vmm, batch, duration),
            Scenario::Scale { live } => scale(vmm, live, duration),
        }
    }
}

/// `4K`, `1M`, `64M`.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

fn has(vmm: &Vmm, feature: u32) -> bool {
    vmm.features & (1 << feature) != 0
}

/// Sends `cmds` all at once; each answer must be OK_NODATA (or, with
/// `map_ok`, OK_MAP_INFO).
fn batch(vmm: &mut Vmm, cmds: &[Request]) -> Result<(), NotRun> {
    let out = vmm.exchange(CTRL, cmds)?;
    for bytes in &out {
        let ty = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        if ty != ResponseType::OkNoData.value() && ty != ResponseType::OkMapInfo.value() {
            let r =
                Response::decode(bytes).map_or_else(|e| e.to_string(), |(_, r)| format!("{r:?}"));
            return Err(NotRun::Failed(format!("the backend answered {r}")));
        }
    }
    Ok(())
}

fn req(cmd: &Command<'_>) -> Request {
    Request::of(cmd.to_bytes(), 64)
}

/// Runs `step` until `duration` passed (after a short warm-up), timing
/// each call as one item of `ops` operations and `bytes` bytes.
fn timed(
    backend: Option<u32>,
    duration: Duration,
    ops: u64,
    bytes: u64,
    mut step: impl FnMut() -> Result<(), NotRun>,
) -> Result<Measurement, NotRun> {
    let warm = Instant::now();
    while warm.elapsed() < duration / 10 {
        step()?;
    }
    let mut m = Measurement::default();
    let cpu_before = backend.map(crate::cpu::tree_cpu_ns);
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        step()?;
        m.latencies_ns.push(t.elapsed().as_nanos() as u64);
        m.ops += ops;
        m.bytes += bytes;
    }
    m.elapsed = start.elapsed();
    m.backend_cpu_ns = backend
        .zip(cpu_before)
        .map(|(pid, before)| crate::cpu::tree_cpu_ns(pid).saturating_sub(before));
    Ok(m)
}

fn cycle_2d(
    vmm: &mut Vmm,
    w: u32,
    h: u32,
    depth: usize,
    duration: Duration,
) -> Result<Measurement, NotRun> {
    let len = u64::from(w) * u64::from(h) * 4;
    let rect = Rect::new(0, 0, w, h);
    let mut slots = Vec::new();
    for i in 0..depth {
        let addr = vmm.ram.alloc_pages(len)?;
        slots.push((1000 + i as u32, MemEntry::new(addr.0, len as u32)));
    }
    let steps: Vec<Vec<Request>> = vec![
        slots
            .iter()
            .map(|(id, _)| req(&create_2d(*id, Format::B8G8R8X8Unorm, w, h)))
            .collect(),
        slots
            .iter()
            .map(|(id, e)| req(&attach_backing(*id, std::slice::from_ref(e))))
            .collect(),
        slots
            .iter()
            .map(|(id, _)| req(&transfer_2d(*id, rect, 0)))
            .collect(),
        slots
            .iter()
            .map(|(id, _)| req(&detach_backing(*id)))
            .collect(),
        slots.iter().map(|(id, _)| req(&unref(*id))).collect(),
    ];
    let pid = vmm.backend_pid;
    timed(pid, duration, 5 * depth as u64, len * depth as u64, || {
        for s in &steps {
            batch(vmm, s)?;
        }
        Ok(())
    })
}

/// A `w`×`h` B8G8R8X8 resource `id` backed by fresh guest pages: their
/// address and the whole rectangle.
fn backed_image(vmm: &mut Vmm, id: u32, w: u32, h: u32) -> Result<(GuestAddress, Rect), NotRun> {
    let len = u64::from(w) * u64::from(h) * 4;
    let addr = vmm.ram.alloc_pages(len)?;
    batch(vmm, &[req(&create_2d(id, Format::B8G8R8X8Unorm, w, h))])?;
    let backing = MemEntry::new(addr.0, len as u32);
    batch(vmm, &[req(&attach_backing(id, &[backing]))])?;
    Ok((addr, Rect::new(0, 0, w, h)))
}

/// Transfers resource `id` and shows it on scanout 0.
fn show(vmm: &mut Vmm, id: u32, rect: Rect) -> Result<(), NotRun> {
    batch(vmm, &[req(&transfer_2d(id, rect, 0))])?;
    batch(vmm, &[req(&set_scanout(0, id, rect))])
}

fn transfer(
    vmm: &mut Vmm,
    w: u32,
    h: u32,
    depth: usize,
    duration: Duration,
    flushes: bool,
) -> Result<Measurement, NotRun> {
    let len = u64::from(w) * u64::from(h) * 4;
    let id = 900;
    let (_, rect) = backed_image(vmm, id, w, h)?;
    let cmd = if flushes {
        if vmm.display.is_none() {
            return Err(NotRun::Unsupported("no display channel".into()));
        }
        show(vmm, id, rect)?;
        req(&flush(id, rect))
    } else {
        req(&transfer_2d(id, rect, 0))
    };
    let reqs: Vec<Request> = (0..depth).map(|_| cmd.clone()).collect();
    let pid = vmm.backend_pid;
    let m = timed(
        pid,
        duration,
        depth as u64,
        if flushes { 0 } else { len * depth as u64 },
        || {
            let r = batch(vmm, &reqs);
            if let Some(d) = vmm.display.as_ref() {
                d.clear();
            }
            r
        },
    )?;
    if flushes {
        batch(vmm, &[req(&set_scanout(0, 0, Rect::new(0, 0, 0, 0)))])?;
    }
    batch(vmm, &[req(&unref(id))])?;
    Ok(m)
}

fn frame(vmm: &mut Vmm, w: u32, h: u32, duration: Duration) -> Result<Measurement, NotRun> {
    const SQUARE: u32 = 256;
    if vmm.display.is_none() {
        return Err(NotRun::Unsupported("no display channel".into()));
    }
    if w < SQUARE || h < SQUARE {
        return Err(NotRun::Unsupported(format!(
            "{w}x{h} is smaller than the square"
        )));
    }
    let len = u64::from(w) * u64::from(h) * 4;
    let id = 901;
    let (addr, rect) = backed_image(vmm, id, w, h)?;
    show(vmm, id, rect)?;
    let reqs = [req(&transfer_2d(id, rect, 0)), req(&flush(id, rect))];
    let mut n = 0u32;
    let pid = vmm.backend_pid;
    let m = timed(pid, duration, 1, len, || {
        n = n.wrapping_add(1);
        let (x, y) = ((n * 64) % (w - SQUARE + 1), (n * 40) % (h - SQUARE + 1));
        let fill = vec![n as u8; SQUARE as usize * 4];
        for r in y..y + SQUARE {
            let at = addr.0 + (u64::from(r) * u64::from(w) + u64::from(x)) * 4;
            crate::cmd::poke(vmm, at, &fill).map_err(NotRun::from)?;
        }
        let r = batch(vmm, &reqs);
        if let Some(d) = vmm.display.as_ref() {
            d.clear();
        }
        r
    })?;
    batch(vmm, &[req(&set_scanout(0, 0, Rect::new(0, 0, 0, 0)))])?;
    batch(vmm, &[req(&unref(id))])?;
    Ok(m)
}

fn touch(vmm: &Vmm, size: u64) -> Result<(), NotRun> {
    let region = vmm
        .hostmem
        .as_ref()
        .ok_or_else(|| NotRun::Unsupported("no host-visible region".into()))?;
    let mut at = 0;
    while at < size {
        region.write(MAP_AT + at, &[1])?;
        at += PAGE;
    }
    Ok(())
}

/// One blob scenario's state between cycles.
struct BlobRig {
    size: u64,
    native: NativeContext,
    next_blob: u32,
}

impl BlobRig {
    /// One cycle; each command is a sample of `pc` (the guest touching the
    /// pages in between is not timed). With `check`, also verifies MAP_BLOB
    /// is zero-copy: a byte written through the mapping reaches the host
    /// buffer the daemon reads back.
    fn cycle(&mut self, vmm: &mut Vmm, pc: &mut PerCommand, check: bool) -> Result<(), NotRun> {
        let size = self.size;
        let id = 700;
        self.next_blob = self.next_blob.wrapping_add(1).max(1);
        let blob_id = self.next_blob;
        let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
        let nc = &mut self.native;
        pc.time("create", || {
            Ok(nc.gem_blob(vmm, blob_id, id, size, &system)?)
        })?;
        pc.time("map", || batch(vmm, &[req(&map_blob(id, MAP_AT))]))?;
        touch(vmm, size)?;
        if check {
            // Unmapped and mapped again: the byte is still there, so the
            // mapping is the host buffer itself, not a copy.
            batch(vmm, &[req(&unmap_blob(id))])?;
            batch(vmm, &[req(&map_blob(id, MAP_AT))])?;
            let mut b = [0u8; 1];
            let region = vmm
                .hostmem
                .as_ref()
                .ok_or_else(|| NotRun::Failed("no host-visible region".into()))?;
            region.read(MAP_AT, &mut b)?;
            if b[0] != 1 {
                return Err(NotRun::Failed(
                    "a byte written through MAP_BLOB did not reach the host buffer".into(),
                ));
            }
        }
        pc.time("unmap", || batch(vmm, &[req(&unmap_blob(id))]))?;
        pc.time("unref", || batch(vmm, &[req(&unref(id))]))
    }
}

/// Times commands one by one, each as its own sample.
struct PerCommand {
    m: Measurement,
    start: Instant,
}

impl PerCommand {
    fn new() -> Self {
        Self {
            m: Measurement::default(),
            start: Instant::now(),
        }
    }

    fn time<T>(
        &mut self,
        command: &'static str,
        f: impl FnOnce() -> Result<T, NotRun>,
    ) -> Result<T, NotRun> {
        let t = Instant::now();
        let r = f()?;
        let ns = t.elapsed().as_nanos() as u64;
        self.m.latencies_ns.push(ns);
        match self.m.per_command.iter_mut().find(|(c, _)| *c == command) {
            Some((_, v)) => v.push(ns),
            None => self.m.per_command.push((command, vec![ns])),
        }
        self.m.ops += 1;
        Ok(r)
    }

    fn finish(mut self) -> Measurement {
        self.m.elapsed = self.start.elapsed();
        self.m
    }
}

fn blob_cycle(vmm: &mut Vmm, size: u64, duration: Duration) -> Result<Measurement, NotRun> {
    if !has(vmm, VIRTIO_GPU_F_RESOURCE_BLOB) {
        return Err(NotRun::Unsupported(
            "the backend offers no RESOURCE_BLOB".into(),
        ));
    }
    if vmm.hostmem.is_none() {
        return Err(NotRun::Unsupported(
            "the backend has no host-visible region (SHMEM)".into(),
        ));
    }
    if !has(vmm, VIRTIO_GPU_F_CONTEXT_INIT) {
        return Err(NotRun::Unsupported(
            "the backend offers no CONTEXT_INIT".into(),
        ));
    }
    let mut rig = BlobRig {
        size,
        native: NativeContext::create(vmm, 1, 1, 0)?,
        next_blob: 0,
    };
    rig.cycle(vmm, &mut PerCommand::new(), true)?;
    let warm = Instant::now();
    while warm.elapsed() < duration / 10 {
        rig.cycle(vmm, &mut PerCommand::new(), false)?;
    }
    let mut pc = PerCommand::new();
    while pc.start.elapsed() < duration {
        rig.cycle(vmm, &mut pc, false)?;
    }
    Ok(pc.finish())
}

fn gem(vmm: &mut Vmm, batch_len: usize, duration: Duration) -> Result<Measurement, NotRun> {
    if !has(vmm, VIRTIO_GPU_F_CONTEXT_INIT) {
        return Err(NotRun::Unsupported(
            "the backend offers no CONTEXT_INIT".into(),
        ));
    }
    let mut nc = NativeContext::create(vmm, 1, 1, 0)?;
    let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let per = (batch_len / 3).max(1);
    let mut blob_id = 0u32;
    let pid = vmm.backend_pid;
    timed(pid, duration, 3 * per as u64, 0, || {
        let mut reqs: Vec<I915Request<'_>> = Vec::with_capacity(3 * per);
        for _ in 0..per {
            blob_id = blob_id.wrapping_add(1).max(1);
            reqs.push(gem_create_ext(64 << 10, blob_id, 0, &system));
            reqs.push(gem_madvise_blob(blob_id, I915_MADV_DONTNEED));
            reqs.push(gem_close(blob_id));
        }
        let (r, _) = nc.submit(vmm, &reqs)?;
        match r {
            Response::OkNoData => Ok(()),
            other => Err(NotRun::Failed(format!("SUBMIT_3D answered {other:?}"))),
        }
    })
}

fn scale(vmm: &mut Vmm, live: usize, duration: Duration) -> Result<Measurement, NotRun> {
    if !has(vmm, VIRTIO_GPU_F_CONTEXT_INIT) || !has(vmm, VIRTIO_GPU_F_RESOURCE_BLOB) {
        return Err(NotRun::Unsupported(
            "the backend offers no CONTEXT_INIT / RESOURCE_BLOB".into(),
        ));
    }
    // The live population: small 2D resources, 64 per batch.
    let ids: Vec<u32> = (0..live as u32).map(|i| 100_000 + i).collect();
    for chunk in ids.chunks(64) {
        let reqs: Vec<Request> = chunk
            .iter()
            .map(|id| req(&create_2d(*id, Format::B8G8R8X8Unorm, 16, 16)))
            .collect();
        batch(vmm, &reqs)?;
    }
    let mut nc = NativeContext::create(vmm, 1, 1, 0)?;
    let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let mut blob_id = 0u32;
    let pid = vmm.backend_pid;
    let m = timed(pid, duration, 3, 0, || {
        blob_id += 1;
        nc.gem_blob(vmm, blob_id, 2, 64 << 10, &system)?;
        batch(vmm, &[req(&unref(2))])
    })?;
    for chunk in ids.chunks(64) {
        let reqs: Vec<Request> = chunk.iter().map(|id| req(&unref(*id))).collect();
        batch(vmm, &reqs)?;
    }
    Ok(m)
}
