//! The blob and native-context subtests: an i915 native context
//! (CONTEXT_INIT with the DRM capset), GEM_CREATE_EXT through
//! EXECBUFFER, a HOST3D blob created from it and mapped, madvise DONTNEED,
//! a purge the host does through its admin socket, then WILLNEED answering
//! retained = 0. They need a VMM that forwards RESOURCE_BLOB, the
//! host-visible region and CONTEXT_INIT; without one they SKIP and say so.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use vgpu_guest_test::protocol::PURGE_REQUEST;
use vgpu_proto::native::{
    gem_create_ext, gem_madvise_resource, read_response, read_shmem_header, CcmdBuilder,
    GemMadviseRsp, I915Request, MemoryClassInstance, Pending, I915_MADV_DONTNEED,
    I915_MADV_WILLNEED, I915_MEMORY_CLASS_SYSTEM, MESA_SHMEM_SIZE,
};

use crate::card::Card;
use crate::console;
use crate::report::Outcome;
use crate::subtests::params::Params;
use crate::uapi::{self, CreateBlob};

/// The DRM native-context capset.
const CAPSET_DRM: u32 = 6;
/// Size of the blob the subtests purge.
const BLOB_SIZE: u64 = 1 << 20;

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

/// A native context and its response blob.
struct Native<'a> {
    card: &'a Card,
    shmem: Mapping,
    shmem_bo: u32,
    builder: CcmdBuilder,
}

impl<'a> Native<'a> {
    fn open(card: &'a Card) -> Result<Self, String> {
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
            card,
            builder: CcmdBuilder::new(shmem.len - rsp_start, 1),
            shmem,
            shmem_bo: b.bo_handle,
        })
    }

    /// Sends `requests` in one EXECBUFFER and waits (bounded) until the
    /// host finished the last.
    fn submit(&mut self, requests: &[I915Request<'_>]) -> Result<Vec<Pending>, String> {
        let mut pending = Vec::new();
        for r in requests {
            pending.push(self.builder.push(r).map_err(|e| format!("{e:?}"))?);
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

    fn retained(&mut self, res: u32, madv: u32) -> Result<u32, String> {
        let p = self.submit(&[gem_madvise_resource(res, madv)])?;
        let header = read_shmem_header(self.shmem.bytes()).ok_or("no shmem header")?;
        let rsp_mem = &self.shmem.bytes()[header.rsp_mem_offset.get() as usize..];
        let off = p[0].rsp_off.ok_or("GEM_MADVISE has no response slot")?;
        let rsp: GemMadviseRsp =
            read_response(rsp_mem, off).ok_or("GEM_MADVISE response out of bounds")?;
        Ok(rsp.retained.get())
    }
}

impl Drop for Native<'_> {
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
            "the VMM does not forward {} (stock QEMU 10 drops them; crosvm forwards them)",
            missing.join(", ")
        ));
    }
    if params.get(7) & (1 << CAPSET_DRM) == 0 {
        return Some("the device offers no DRM native-context capset".into());
    }
    None
}

/// Runs the subtests; one result per name.
pub fn run(card: &Card, params: &Params, purge_wait: Duration) -> Vec<(&'static str, Outcome)> {
    const NAMES: [&str; 3] = ["native-context", "blob-map", "madvise-purge"];
    if let Some(why) = unavailable(params) {
        return NAMES
            .iter()
            .map(|n| (*n, Outcome::Skip(why.clone())))
            .collect();
    }
    let mut out = Vec::new();
    let mut native = match Native::open(card) {
        Ok(n) => n,
        Err(e) => {
            out.push((NAMES[0], Outcome::Fail(e)));
            out.extend(
                NAMES[1..]
                    .iter()
                    .map(|n| (*n, Outcome::Skip("no native context".into()))),
            );
            return out;
        }
    };
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    if let Err(e) = native.submit(&[gem_create_ext(BLOB_SIZE, 1, 0, &regions)]) {
        out.push((NAMES[0], Outcome::Fail(format!("GEM_CREATE_EXT: {e}"))));
        return out;
    }
    out.push((
        NAMES[0],
        Outcome::Pass("i915 context, response blob, GEM_CREATE_EXT".into()),
    ));
    let fd = card.as_fd();
    let mut b = CreateBlob {
        blob_mem: uapi::BLOB_MEM_HOST3D,
        blob_flags: uapi::BLOB_FLAG_USE_MAPPABLE,
        size: BLOB_SIZE,
        blob_id: 1,
        ..CreateBlob::default()
    };
    if let Err(e) = uapi::create_blob(fd, &mut b) {
        out.push((
            NAMES[1],
            Outcome::Fail(format!("RESOURCE_CREATE_BLOB: {e}")),
        ));
        return out;
    }
    let result = blob_and_purge(&mut native, b.res_handle, b.bo_handle, purge_wait);
    let _ = uapi::gem_close(fd, b.bo_handle);
    out.extend(NAMES[1..].iter().copied().zip(result));
    out
}

fn blob_and_purge(
    native: &mut Native<'_>,
    res: u32,
    bo: u32,
    purge_wait: Duration,
) -> [Outcome; 2] {
    let fd = native.card.as_fd();
    let mut map = match Mapping::new(fd, bo, BLOB_SIZE as usize) {
        Ok(m) => m,
        Err(e) => return [Outcome::Fail(e), Outcome::Skip("no mapping".into())],
    };
    let pattern = |i: usize| (i.wrapping_mul(7) ^ (i >> 12)) as u8;
    for (i, b) in map.bytes_mut().iter_mut().enumerate() {
        *b = pattern(i);
    }
    if map
        .bytes()
        .iter()
        .enumerate()
        .any(|(i, b)| *b != pattern(i))
    {
        return [
            Outcome::Fail("the mapping does not read back what was written".into()),
            Outcome::Skip("no data".into()),
        ];
    }
    let mapped = Outcome::Pass(format!(
        "{BLOB_SIZE}-byte HOST3D blob mapped, written and read back"
    ));
    let purge = (|| {
        let r = native.retained(res, I915_MADV_DONTNEED)?;
        if r != 1 {
            return Err(format!("DONTNEED answered retained = {r}"));
        }
        let answer = console::ask(PURGE_REQUEST, purge_wait)
            .map_err(|e| format!("asking the host: {e}"))?
            .ok_or("the host did not answer the purge request")?;
        if !answer.starts_with("purged") {
            return Err(format!("the host could not purge: {answer}"));
        }
        let zeros = map.bytes().iter().all(|b| *b == 0);
        let r = native.retained(res, I915_MADV_WILLNEED)?;
        if r != 0 {
            return Err(format!(
                "WILLNEED after the host's purge answered retained = {r} ({answer})"
            ));
        }
        Ok(format!(
            "DONTNEED, host {answer}, WILLNEED answered retained = 0; the mapping reads {}",
            if zeros { "zeros" } else { "stale bytes" }
        ))
    })();
    [mapped, purge.map_or_else(Outcome::Fail, Outcome::Pass)]
}
