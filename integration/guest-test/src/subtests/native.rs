//! The blob and native-context subtests, done the way Mesa does them: each
//! context on a file of its own (the kernel takes CONTEXT_INIT once per
//! file, before any other 3D ioctl), two i915 native contexts at once,
//! HOST3D blobs (GEM_CREATE_EXT + RESOURCE_CREATE_BLOB) mapped and written,
//! a blob shared between the two contexts (PRIME export and import), a
//! blob written through the guest's mapping and scanned out (ADDFB of the
//! blob, SET_SCANOUT_BLOB), madvise DONTNEED → a host purge → WILLNEED
//! answering retained = 0, and a pressure scenario: many blobs, half
//! DONTNEED, the host's soft limit or an admin purge takes them, and
//! retained = 0 for exactly those while the rest keep their data.
//!
//! The native-ioctl subtest runs what Mesa's i915 driver sends through
//! IOCTL_SIMPLE (contexts, VMs, their parameters, the GPU timestamp).
//!
//! They need a VMM that forwards RESOURCE_BLOB, the host-visible region and
//! CONTEXT_INIT; without one they SKIP and say so.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use drm::buffer::{Buffer, DrmFourcc};
use drm::control::Device as _;
use vgpu_guest_test::pattern::{fill_bars, Bars};
use vgpu_guest_test::protocol::{BLOB_SCREEN_READY, PURGE_REQUEST};
use vgpu_proto::native::{
    gem_create_ext, gem_madvise_resource, ioctl_simple, read_response, read_shmem_header,
    CcmdBuilder, GemContextCreate, GemContextDestroy, GemContextParam, GemMadviseRsp, GemVmControl,
    I915Request, IoctlSimpleRsp, MemoryClassInstance, Pending, RegRead, ResetStats,
    DRM_IOCTL_I915_GEM_CONTEXT_CREATE, DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
    DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM, DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
    DRM_IOCTL_I915_GEM_VM_CREATE, DRM_IOCTL_I915_GEM_VM_DESTROY, DRM_IOCTL_I915_GET_RESET_STATS,
    DRM_IOCTL_I915_REG_READ, EINVAL, I915_CONTEXT_PARAM_GTT_SIZE, I915_CONTEXT_PARAM_PRIORITY,
    I915_CONTEXT_PARAM_RECOVERABLE, I915_CONTEXT_PARAM_VM, I915_MADV_DONTNEED, I915_MADV_WILLNEED,
    I915_MEMORY_CLASS_SYSTEM, MESA_SHMEM_SIZE,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::card::Card;
use crate::console;
use crate::report::Outcome;
use crate::subtests::kms;
use crate::subtests::params::Params;
use crate::uapi::{self, CreateBlob};

/// The DRM native-context capset.
const CAPSET_DRM: u32 = 6;
/// Size of the blobs the subtests map, share and purge.
const BLOB_SIZE: u64 = 1 << 20;
/// Blobs of the pressure scenario (half of them DONTNEED).
const PRESSURE_BLOBS: usize = 24;
/// The subtests, in the order they report.
const NAMES: [&str; 7] = [
    "native-context",
    "native-ioctl",
    "blob-map",
    "blob-share",
    "blob-scanout",
    "madvise-purge",
    "pressure-purge",
];
/// `DRM_IOCTL_I915_GEM_CREATE`: outside IOCTL_SIMPLE's allow-list.
const DRM_IOCTL_I915_GEM_CREATE_IOWR: u32 = 0xC010_645B;
/// `RING_TIMESTAMP(RENDER_RING_BASE)`, the register REG_READ allows.
const RENDER_RING_TIMESTAMP: u64 = 0x2358;
/// `O_CLOEXEC | O_RDWR` for PRIME exports.
const PRIME_FLAGS: u32 = 0o2_000_000 | 0o2;

/// A shared mapping of a GEM object, unmapped on drop.
struct Mapping {
    ptr: *mut core::ffi::c_void,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, handle: u32, len: usize) -> Result<Self, String> {
        let offset = uapi::map_offset(fd, handle).map_err(|e| format!("VIRTGPU_MAP: {e}"))?;
        // SAFETY: a fresh shared mapping of the DRM fd at the offset the
        // kernel gave for this object; nothing else owns the address range.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                fd,
                offset,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        Ok(Self { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the range mapped in `new`; no view outlives self.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// Byte `i` of pattern `seed`.
fn pattern(seed: u32, i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 12) ^ seed as usize) as u8
}

/// A HOST3D blob of a native context: its resource id and GEM handle on
/// the context's file.
#[derive(Debug, Clone, Copy)]
struct Blob {
    res: u32,
    bo: u32,
    size: u64,
}

/// An i915 native context on a file of its own, with its response blob.
struct Native {
    card: Card,
    shmem: Mapping,
    shmem_bo: u32,
    builder: CcmdBuilder,
    next_blob: u32,
}

impl Native {
    fn open() -> Result<Self, String> {
        let card = Card::open_for_context().map_err(|e| format!("opening a DRM node: {e}"))?;
        let fd = card.as_fd();
        uapi::context_init(
            fd,
            &[
                (uapi::CONTEXT_PARAM_CAPSET_ID, u64::from(CAPSET_DRM)),
                (uapi::CONTEXT_PARAM_NUM_RINGS, 1),
            ],
        )
        .map_err(|e| format!("CONTEXT_INIT (DRM capset): {e}"))?;
        let mut b = CreateBlob {
            blob_mem: uapi::BLOB_MEM_HOST3D,
            blob_flags: uapi::BLOB_FLAG_USE_MAPPABLE,
            size: MESA_SHMEM_SIZE,
            blob_id: 0,
            ..CreateBlob::default()
        };
        uapi::create_blob(fd, &mut b)
            .map_err(|e| format!("RESOURCE_CREATE_BLOB (response blob): {e}"))?;
        let shmem = Mapping::new(fd, b.bo_handle, MESA_SHMEM_SIZE as usize)?;
        let header = read_shmem_header(shmem.bytes()).ok_or("response blob too small")?;
        let rsp_start = header.rsp_mem_offset.get() as usize;
        if rsp_start >= shmem.len {
            return Err(format!("response memory offset {rsp_start} past the blob"));
        }
        Ok(Self {
            builder: CcmdBuilder::new(shmem.len - rsp_start, 1),
            shmem,
            shmem_bo: b.bo_handle,
            card,
            next_blob: 1,
        })
    }

    /// Sends `requests` in one EXECBUFFER and waits (bounded) until the
    /// host finished the last.
    fn submit(&mut self, requests: &[I915Request<'_>]) -> Result<Vec<Pending>, String> {
        let mut pending = Vec::new();
        for r in requests {
            pending.push(self.builder.push(r).map_err(|e| format!("{e:?}"))?);
        }
        // Like Mesa's vdrm_alloc_rsp: each response slot's `len` says how
        // many bytes this guest's struct has; the host writes no more.
        let rsp_start =
            read_shmem_header(self.shmem.bytes()).map_or(0, |h| h.rsp_mem_offset.get() as usize);
        for p in &pending {
            if let Some(off) = p.rsp_off {
                let at = rsp_start + off as usize;
                let len = (p.rsp_len as u32).to_le_bytes();
                self.shmem
                    .bytes_mut()
                    .get_mut(at..at + 4)
                    .ok_or("response slot past the blob")?
                    .copy_from_slice(&len);
            }
        }
        let stream = self.builder.take_stream();
        uapi::execbuffer(self.card.as_fd(), &stream).map_err(|e| format!("EXECBUFFER: {e}"))?;
        let last = pending.last().map_or(0, |p| p.seqno);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = read_shmem_header(self.shmem.bytes()).map_or(0, |h| h.seqno.get());
            if done.wrapping_sub(last) < u32::MAX / 2 {
                return Ok(pending);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the host never finished request {last} (seqno {done})"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// IOCTL_SIMPLE of `ioctl` on `arg`: the host's `ret` and the argument
    /// it sent back.
    fn ioctl(&mut self, ioctl: u32, arg: &[u8]) -> Result<(i32, Vec<u8>), String> {
        let p = self.submit(&[ioctl_simple(ioctl, arg)])?;
        let header = read_shmem_header(self.shmem.bytes()).ok_or("no shmem header")?;
        let rsp_mem = &self.shmem.bytes()[header.rsp_mem_offset.get() as usize..];
        let off = p[0].rsp_off.ok_or("IOCTL_SIMPLE has no response slot")? as usize;
        let bytes = rsp_mem
            .get(off..off + p[0].rsp_len)
            .ok_or("IOCTL_SIMPLE response out of bounds")?;
        let rsp: IoctlSimpleRsp =
            read_response(rsp_mem, off as u32).ok_or("IOCTL_SIMPLE response out of bounds")?;
        if rsp.hdr.len.get() as usize != p[0].rsp_len {
            return Err(format!(
                "IOCTL_SIMPLE {ioctl:#x}: response len {}, the guest asked for {}",
                rsp.hdr.len.get(),
                p[0].rsp_len
            ));
        }
        Ok((rsp.ret.get(), bytes[8..].to_vec()))
    }

    /// GEM_MADVISE of resource `res`: the host's `retained`.
    fn retained(&mut self, res: u32, madv: u32) -> Result<u32, String> {
        let p = self.submit(&[gem_madvise_resource(res, madv)])?;
        let header = read_shmem_header(self.shmem.bytes()).ok_or("no shmem header")?;
        let rsp_mem = &self.shmem.bytes()[header.rsp_mem_offset.get() as usize..];
        let off = p[0].rsp_off.ok_or("GEM_MADVISE has no response slot")?;
        let rsp: GemMadviseRsp =
            read_response(rsp_mem, off).ok_or("GEM_MADVISE response out of bounds")?;
        match rsp.ret.get() {
            0 => Ok(rsp.retained.get()),
            e => Err(format!("GEM_MADVISE of resource {res}: errno {e}")),
        }
    }

    /// A mappable (and shareable) HOST3D blob of `size` bytes in system
    /// memory: GEM_CREATE_EXT, then RESOURCE_CREATE_BLOB.
    fn blob(&mut self, size: u64) -> Result<Blob, String> {
        let blob_id = self.next_blob;
        self.next_blob += 1;
        let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
        self.submit(&[gem_create_ext(size, blob_id, 0, &regions)])
            .map_err(|e| format!("GEM_CREATE_EXT: {e}"))?;
        let mut b = CreateBlob {
            blob_mem: uapi::BLOB_MEM_HOST3D,
            blob_flags: uapi::BLOB_FLAG_USE_MAPPABLE | uapi::BLOB_FLAG_USE_SHAREABLE,
            size,
            blob_id: u64::from(blob_id),
            ..CreateBlob::default()
        };
        uapi::create_blob(self.card.as_fd(), &mut b)
            .map_err(|e| format!("RESOURCE_CREATE_BLOB of {size} bytes: {e}"))?;
        Ok(Blob {
            res: b.res_handle,
            bo: b.bo_handle,
            size,
        })
    }

    fn map(&self, blob: &Blob) -> Result<Mapping, String> {
        Mapping::new(self.card.as_fd(), blob.bo, blob.size as usize)
    }

    fn close(&self, blob: &Blob) {
        let _ = uapi::gem_close(self.card.as_fd(), blob.bo);
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        let _ = uapi::gem_close(self.card.as_fd(), self.shmem_bo);
    }
}

/// Why the subtests cannot run, if they cannot.
fn unavailable(params: &Params) -> Option<String> {
    let missing: Vec<&str> = [
        (3, "RESOURCE_BLOB"),
        (4, "the host-visible region"),
        (6, "CONTEXT_INIT"),
    ]
    .iter()
    .filter(|(n, _)| params.get(*n) == 0)
    .map(|(_, name)| *name)
    .collect();
    if !missing.is_empty() {
        return Some(format!(
            "the VMM does not forward {} (QEMU's vhost-user-gpu-pci and vhost-user-vga drop them; QEMU 11.1's generic vhost-user device and crosvm forward them)",
            missing.join(", ")
        ));
    }
    if params.get(7) & (1 << CAPSET_DRM) == 0 {
        return Some("the device offers no DRM native-context capset".into());
    }
    None
}

/// Runs the subtests on `card` (the KMS file); one result per name.
pub fn run(card: &Card, params: &Params, purge_wait: Duration) -> Vec<(&'static str, Outcome)> {
    if let Some(why) = unavailable(params) {
        return NAMES
            .iter()
            .map(|n| (*n, Outcome::Skip(why.clone())))
            .collect();
    }
    let mut out = Vec::new();
    let opened = Native::open().and_then(|a| Native::open().map(|b| (a, b)));
    let (mut a, mut b) = match opened {
        Ok(pair) => pair,
        Err(e) => {
            out.push((NAMES[0], Outcome::Fail(e)));
            out.extend(
                NAMES[1..]
                    .iter()
                    .map(|n| (*n, Outcome::Fail("no native context".into()))),
            );
            return out;
        }
    };
    out.push((
        NAMES[0],
        Outcome::Pass(
            "two i915 native contexts at once, each on its own file (CONTEXT_INIT, response blob)"
                .into(),
        ),
    ));
    let result = |r: Result<String, String>| r.map_or_else(Outcome::Fail, Outcome::Pass);
    out.push((NAMES[1], result(native_ioctl(&mut b))));
    out.push((NAMES[2], result(blob_map(&mut a))));
    out.push((NAMES[3], result(blob_share(&mut a, &mut b))));
    out.push((NAMES[4], result(blob_scanout(card, &mut a, purge_wait))));
    out.push((NAMES[5], result(madvise_purge(&mut b, purge_wait))));
    out.push((NAMES[6], result(pressure_purge(&mut a, purge_wait))));
    out
}

/// What Mesa's i915 driver asks through IOCTL_SIMPLE while it sets up a
/// screen and a context: a GEM context and a VM, the context's address
/// space size, recoverability and priority, the GPU timestamp, the reset
/// statistics; and an ioctl outside the allow-list refused.
fn native_ioctl(n: &mut Native) -> Result<String, String> {
    let run = |n: &mut Native, what: &str, ioctl: u32, arg: &[u8]| {
        let (ret, back) = n.ioctl(ioctl, arg)?;
        match ret {
            0 => Ok(back),
            e => Err(format!("{what}: errno {e}")),
        }
    };
    let back = run(
        n,
        "VM_CREATE",
        DRM_IOCTL_I915_GEM_VM_CREATE,
        GemVmControl::default().as_bytes(),
    )?;
    let vm = GemVmControl::read_from_bytes(&back).map_err(|_| "VM_CREATE: short reply")?;
    let back = run(
        n,
        "CONTEXT_CREATE",
        DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
        GemContextCreate::default().as_bytes(),
    )?;
    let ctx = GemContextCreate::read_from_bytes(&back)
        .map_err(|_| "CONTEXT_CREATE: short reply")?
        .ctx_id
        .get();
    let param = |param: u64, value: u64| GemContextParam {
        ctx_id: ctx.into(),
        param: param.into(),
        value: value.into(),
        ..GemContextParam::default()
    };
    for (what, p) in [
        (
            "SETPARAM(VM)",
            param(I915_CONTEXT_PARAM_VM, u64::from(vm.vm_id.get())),
        ),
        (
            "SETPARAM(RECOVERABLE)",
            param(I915_CONTEXT_PARAM_RECOVERABLE, 0),
        ),
        (
            "SETPARAM(PRIORITY)",
            param(I915_CONTEXT_PARAM_PRIORITY, (-512i64) as u64),
        ),
    ] {
        run(n, what, DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM, p.as_bytes())?;
    }
    let back = run(
        n,
        "GETPARAM(GTT_SIZE)",
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
        param(I915_CONTEXT_PARAM_GTT_SIZE, 0).as_bytes(),
    )?;
    let gtt = GemContextParam::read_from_bytes(&back)
        .map_err(|_| "GETPARAM: short reply")?
        .value
        .get();
    let read_ts = |n: &mut Native| -> Result<u64, String> {
        let r = RegRead {
            offset: (RENDER_RING_TIMESTAMP | 1).into(),
            ..RegRead::default()
        };
        let back = run(
            n,
            "REG_READ(timestamp)",
            DRM_IOCTL_I915_REG_READ,
            r.as_bytes(),
        )?;
        Ok(RegRead::read_from_bytes(&back)
            .map_err(|_| "REG_READ: short reply")?
            .val
            .get())
    };
    let (t0, t1) = (read_ts(n)?, read_ts(n)?);
    if t1 < t0 {
        return Err(format!("the GPU timestamp went back: {t0} then {t1}"));
    }
    let stats = ResetStats {
        ctx_id: ctx.into(),
        ..ResetStats::default()
    };
    run(
        n,
        "GET_RESET_STATS",
        DRM_IOCTL_I915_GET_RESET_STATS,
        stats.as_bytes(),
    )?;
    // GEM_CREATE through IOCTL_SIMPLE would hand the guest a host handle.
    let (refused, _) = n.ioctl(DRM_IOCTL_I915_GEM_CREATE_IOWR, &[0; 16])?;
    if refused != EINVAL {
        return Err(format!(
            "GEM_CREATE through IOCTL_SIMPLE got {refused}, not EINVAL"
        ));
    }
    let destroy = GemContextDestroy {
        ctx_id: ctx.into(),
        ..GemContextDestroy::default()
    };
    run(
        n,
        "CONTEXT_DESTROY",
        DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
        destroy.as_bytes(),
    )?;
    run(
        n,
        "VM_DESTROY",
        DRM_IOCTL_I915_GEM_VM_DESTROY,
        vm.as_bytes(),
    )?;
    Ok(format!(
        "GEM context {ctx} in VM {} ({gtt:#x}-byte address space), timestamps {t0} → {t1}, GEM_CREATE refused",
        vm.vm_id.get()
    ))
}

/// A blob mapped, written and read back.
fn blob_map(a: &mut Native) -> Result<String, String> {
    let blob = a.blob(BLOB_SIZE)?;
    let r = (|| {
        let mut map = a.map(&blob)?;
        for (i, b) in map.bytes_mut().iter_mut().enumerate() {
            *b = pattern(1, i);
        }
        if map
            .bytes()
            .iter()
            .enumerate()
            .any(|(i, b)| *b != pattern(1, i))
        {
            return Err("the mapping does not read back what was written".to_string());
        }
        Ok(format!(
            "{BLOB_SIZE}-byte HOST3D blob mapped, written and read back"
        ))
    })();
    a.close(&blob);
    r
}

/// A blob of context A exported (PRIME) and imported by context B, which
/// maps it and sees A's bytes, and advises it in its own native context.
fn blob_share(a: &mut Native, b: &mut Native) -> Result<String, String> {
    let blob = a.blob(BLOB_SIZE)?;
    let r = (|| {
        let mut map_a = a.map(&blob)?;
        for (i, x) in map_a.bytes_mut().iter_mut().enumerate() {
            *x = pattern(2, i);
        }
        let handle = drm::control::from_u32(blob.bo).ok_or("GEM handle 0")?;
        let fd = a
            .card
            .buffer_to_prime_fd(handle, PRIME_FLAGS)
            .map_err(|e| format!("PRIME export: {e}"))?;
        let imported = b
            .card
            .prime_fd_to_buffer(fd.as_fd())
            .map_err(|e| format!("PRIME import: {e}"))?;
        let bo_b = u32::from(imported);
        let shared = Blob { bo: bo_b, ..blob };
        let result = (|| {
            let map_b = b.map(&shared)?;
            if map_b
                .bytes()
                .iter()
                .enumerate()
                .any(|(i, x)| *x != pattern(2, i))
            {
                return Err("context B's mapping does not show context A's bytes".to_string());
            }
            // The import attached the resource to B's context on the host.
            let r = b.retained(blob.res, I915_MADV_WILLNEED)?;
            if r != 1 {
                return Err(format!("context B's WILLNEED answered retained = {r}"));
            }
            Ok("blob exported by context A, imported and mapped by context B (same bytes), advised in B's native context".to_string())
        })();
        b.close(&shared);
        result
    })();
    a.close(&blob);
    r
}

/// The KMS framebuffer of an imported blob.
struct BlobFb {
    size: (u32, u32),
    pitch: u32,
    handle: drm::buffer::Handle,
}

impl Buffer for BlobFb {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn format(&self) -> DrmFourcc {
        DrmFourcc::Xrgb8888
    }
    fn pitch(&self) -> u32 {
        self.pitch
    }
    fn handle(&self) -> drm::buffer::Handle {
        self.handle
    }
}

/// A blob written (the mirrored bars) through context A's mapping, then
/// imported into the KMS file and scanned out; the host checks the screen.
fn blob_scanout(card: &Card, a: &mut Native, wait: Duration) -> Result<String, String> {
    let out = kms::output(card)?;
    let (w, h) = out.size;
    let pitch = w * 4;
    let size = (u64::from(pitch) * u64::from(h)).div_ceil(4096) * 4096;
    let blob = a.blob(size)?;
    let r = (|| {
        let mut map = a.map(&blob)?;
        fill_bars(Bars::Mirrored, map.bytes_mut(), w, h, pitch);
        drop(map);
        let handle = drm::control::from_u32(blob.bo).ok_or("GEM handle 0")?;
        let fd = a
            .card
            .buffer_to_prime_fd(handle, PRIME_FLAGS)
            .map_err(|e| format!("PRIME export: {e}"))?;
        let imported = card
            .prime_fd_to_buffer(fd.as_fd())
            .map_err(|e| format!("PRIME import into the KMS file: {e}"))?;
        let fb_buf = BlobFb {
            size: (w, h),
            pitch,
            handle: imported,
        };
        let shown = (|| {
            let fb = card
                .add_framebuffer(&fb_buf, 24, 32)
                .map_err(|e| format!("ADDFB of the blob: {e}"))?;
            let shown = kms::show(card, &out, fb).and_then(|()| {
                let answer = console::ask(&format!("{BLOB_SCREEN_READY} {w}x{h}"), wait)
                    .map_err(|e| format!("asking the host: {e}"))?
                    .ok_or("the host did not answer")?;
                match answer.strip_prefix("bad:") {
                    Some(why) => Err(format!("the host's screen check: {}", why.trim())),
                    None => Ok(format!(
                        "{w}x{h} blob written through the guest's mapping, scanned out (SET_SCANOUT_BLOB); the host saw it: {answer}"
                    )),
                }
            });
            let _ = card.destroy_framebuffer(fb);
            shown
        })();
        let _ = uapi::gem_close(card.as_fd(), u32::from(imported));
        shown
    })();
    a.close(&blob);
    r
}

/// DONTNEED, a purge by the host, WILLNEED answering retained = 0.
fn madvise_purge(b: &mut Native, wait: Duration) -> Result<String, String> {
    let blob = b.blob(BLOB_SIZE)?;
    let r = (|| {
        let mut map = b.map(&blob)?;
        map.bytes_mut().fill(0x5a);
        let r = b.retained(blob.res, I915_MADV_DONTNEED)?;
        if r != 1 {
            return Err(format!("DONTNEED answered retained = {r}"));
        }
        let answer = console::ask(PURGE_REQUEST, wait)
            .map_err(|e| format!("asking the host: {e}"))?
            .ok_or("the host did not answer the purge request")?;
        if !answer.starts_with("purged") {
            return Err(format!("the host could not purge: {answer}"));
        }
        let r = b.retained(blob.res, I915_MADV_WILLNEED)?;
        if r != 0 {
            return Err(format!(
                "WILLNEED after the host's purge answered retained = {r} ({answer})"
            ));
        }
        // The mapping stays usable (the host remapped it over scratch
        // memory): writing it must not fault.
        map.bytes_mut().fill(1);
        Ok(format!(
            "DONTNEED, host {answer}, WILLNEED answered retained = 0; the guest's mapping still works"
        ))
    })();
    b.close(&blob);
    r
}

/// Many blobs, half DONTNEED; the host purges (its soft limit, or an
/// admin purge); exactly the DONTNEED ones are gone, the others intact.
fn pressure_purge(a: &mut Native, wait: Duration) -> Result<String, String> {
    let mut blobs = Vec::new();
    let r = (|| {
        let mut maps = Vec::new();
        for i in 0..PRESSURE_BLOBS {
            let blob = a.blob(BLOB_SIZE)?;
            blobs.push(blob);
            let mut map = a.map(&blob)?;
            for (j, x) in map.bytes_mut().iter_mut().enumerate() {
                *x = pattern(100 + i as u32, j);
            }
            maps.push(map);
        }
        for blob in blobs.iter().skip(1).step_by(2) {
            let r = a.retained(blob.res, I915_MADV_DONTNEED)?;
            if r != 1 {
                return Err(format!(
                    "DONTNEED of resource {} answered retained = {r}",
                    blob.res
                ));
            }
        }
        let answer = console::ask(&format!("{PURGE_REQUEST} soft-limit"), wait)
            .map_err(|e| format!("asking the host: {e}"))?
            .ok_or("the host did not answer the purge request")?;
        if !answer.starts_with("purged") {
            return Err(format!("the host could not purge: {answer}"));
        }
        for (i, (blob, map)) in blobs.iter().zip(&maps).enumerate() {
            let r = a.retained(blob.res, I915_MADV_WILLNEED)?;
            let dontneed = i % 2 == 1;
            if r != u32::from(!dontneed) {
                return Err(format!(
                    "blob {i} ({}) answered retained = {r} after the host's {answer}",
                    if dontneed { "DONTNEED" } else { "WILLNEED" }
                ));
            }
            if !dontneed
                && map
                    .bytes()
                    .iter()
                    .enumerate()
                    .any(|(j, x)| *x != pattern(100 + i as u32, j))
            {
                return Err(format!("WILLNEED blob {i} lost its data"));
            }
        }
        Ok(format!(
            "{PRESSURE_BLOBS} mapped 1 MiB blobs, {} DONTNEED; host {answer}; retained = 0 for exactly those, the others intact",
            PRESSURE_BLOBS / 2
        ))
    })();
    for blob in &blobs {
        a.close(blob);
    }
    r
}
