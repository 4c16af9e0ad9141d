//! The i915 native context, executed against the buffer manager.
//!
//! Each SUBMIT_3D stream is split into requests (`CcmdIter`), each request
//! decoded (`I915Request`) and executed; its response is written into the
//! context's shared response blob at `rsp_mem_offset + rsp_off`, and then
//! the blob's `seqno` is set to the request's — the order the guest relies
//! on. A request that cannot be decoded gets its response with `ret =
//! EINVAL` (or the two-word `{len, ret}` for unknown commands) and the
//! stream goes on; only a framing error (a `len` that cannot be trusted)
//! ends it.
//!
//! GEM contexts and GEM_EXECBUFFER2 are checked and run by `i915_exec`:
//! forwarded to the host kernel on an Intel GPU, or on the emulated
//! engine, whose fences signal after the configured execution time.

use std::collections::HashMap;

use vgpu_backend::{
    BoError, BufferManager, Fence, Madv, ObjectId, OwnerId, Place, Placement, Priority,
};
use vgpu_proto::native::*;
use zerocopy::little_endian::{I32, U32, U64};
use zerocopy::IntoBytes;

use crate::config::DeviceConfig;
use crate::engine::Engine;
use crate::resource::{MapCaching, Resource};

use super::gem_contexts::GemContexts;
use super::i915_exec::{context_params, Execbuffer};
use super::i915_ioctl::{ensure_default, new_context, set_context_param, SimpleCall};

/// Largest response blob accepted (Mesa uses 16 KiB).
pub const MAX_SHMEM_SIZE: u64 = 16 << 20;

/// What the rest of the device lends a context while it executes.
pub struct NativeEnv<'a> {
    /// The buffer manager.
    pub bm: &'a BufferManager,
    /// The VM's resources.
    pub resources: &'a mut HashMap<u32, Resource>,
    /// The emulated engine.
    pub engine: &'a mut Engine,
    /// Device configuration.
    pub cfg: &'a DeviceConfig,
    /// The context's id.
    pub ctx_id: u32,
    /// The context's owner account.
    pub owner: OwnerId,
}

/// The shared response blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shmem {
    /// Its resource.
    pub res_id: u32,
    /// Its buffer.
    pub object: ObjectId,
    /// Its size.
    pub size: u64,
}

/// State of one i915 native context.
#[derive(Debug, Default)]
pub struct I915Context {
    /// The response blob, once created.
    pub shmem: Option<Shmem>,
    /// Objects created by GEM_CREATE(_EXT) not yet turned into resources.
    pub blobs: HashMap<u32, PendingBlob>,
    /// GEM contexts and VMs.
    gem: GemContexts,
    /// `banned_ctx_mask` as last written to the response blob.
    banned_ctx_mask: u64,
}

/// A GEM object not yet a resource (blob_id → object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingBlob {
    /// Its buffer.
    pub object: ObjectId,
    /// The mapping caching configured at creation (WC for device memory).
    pub map_caching: Option<MapCaching>,
}

/// What a SUBMIT_3D did.
#[derive(Debug, Default)]
pub struct SubmitOutcome {
    /// Requests executed.
    pub executed: usize,
    /// A fence that signals when every submission to the engine is done.
    pub fence: Option<Fence>,
    /// Why the SUBMIT_3D as a whole must be answered with an error: a
    /// framing error, or a response that could not be delivered.
    pub error: Option<String>,
}

impl I915Context {
    /// A fresh context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The capset bytes (DRM capset, i915 context type).
    pub fn capset(cfg: &DeviceConfig) -> CapsetDrmI915 {
        CapsetDrmI915 {
            header: CapsetDrmHeader {
                wire_format_version: I915_WIRE_FORMAT_VERSION.into(),
                version_major: 1.into(),
                version_minor: 6.into(),
                version_patchlevel: 0.into(),
                context_type: VIRTGPU_DRM_CONTEXT_I915.into(),
                pad: 0.into(),
            },
            intel: CapsetDrmIntel {
                pci_device_id: cfg.pci_device_id.into(),
                ..CapsetDrmIntel::default()
            },
            ..CapsetDrmI915::default()
        }
    }

    /// Initializes a new response blob: `{seqno 0, rsp_mem_offset 16,
    /// banned_ctx_mask 0}`.
    pub fn install_shmem(&mut self, bm: &BufferManager, shmem: Shmem) -> Result<(), BoError> {
        let header = I915Shmem {
            base: VdrmShmem {
                seqno: 0.into(),
                rsp_mem_offset: U32::new(size_of::<I915Shmem>() as u32),
            },
            banned_ctx_mask: 0.into(),
        };
        bm.write(shmem.object, 0, header.as_bytes())?;
        self.shmem = Some(shmem);
        Ok(())
    }

    /// Executes a SUBMIT_3D stream.
    pub fn submit(&mut self, stream: &[u8], env: &mut NativeEnv<'_>) -> SubmitOutcome {
        let mut outcome = SubmitOutcome::default();
        for raw in CcmdIter::new(stream) {
            let raw = match raw {
                Ok(raw) => raw,
                Err(e) => {
                    log::warn!("ctx {}: native stream framing error: {e}", env.ctx_id);
                    outcome.error = Some(e.to_string());
                    break;
                }
            };
            let cmd = raw.hdr.cmd.get();
            let response = match I915Request::decode(raw) {
                Ok(request) => self.execute(&request, env, &mut outcome),
                Err(e) => {
                    log::debug!("ctx {}: bad native request {cmd}: {e}", env.ctx_id);
                    error_response(cmd, e.errno())
                }
            };
            outcome.executed += 1;
            if let Some(bytes) = response {
                if let Err(why) = self.deliver(env.bm, raw.hdr.rsp_off.get(), &bytes) {
                    log::warn!(
                        "ctx {}: response to request {cmd} not delivered: {why}",
                        env.ctx_id
                    );
                    outcome.error = Some(why);
                }
            }
            if let Some(shmem) = self.shmem {
                let _ = env.bm.write(shmem.object, 0, raw.hdr.seqno.as_bytes());
            }
        }
        outcome
    }

    /// Writes a response as virglrenderer does: the whole response must
    /// fit the response memory at `rsp_off`; then `MIN(len the guest put
    /// at rsp_off, response length)` bytes are written and that length is
    /// stored (Mesa sets `rsp->len` to the size of the response struct it
    /// knows, so an older guest never gets bytes past its struct).
    fn deliver(&self, bm: &BufferManager, rsp_off: u32, bytes: &[u8]) -> Result<(), String> {
        let shmem = self.shmem.ok_or("the context has no response blob")?;
        let base = size_of::<I915Shmem>() as u64;
        let room = shmem.size.saturating_sub(base);
        let end = u64::from(rsp_off).checked_add(bytes.len() as u64);
        if end.is_none_or(|e| e > room) {
            return Err(format!(
                "rsp_off {rsp_off} + {} bytes is outside the {room}-byte response memory",
                bytes.len()
            ));
        }
        let at = base + u64::from(rsp_off);
        let mut guest_len = [0u8; 4];
        bm.read(shmem.object, at, &mut guest_len)
            .map_err(|e| e.to_string())?;
        let len = bytes.len().min(u32::from_le_bytes(guest_len) as usize);
        bm.write(shmem.object, at, &bytes[..len])
            .and_then(|()| bm.write(shmem.object, at, &(len as u32).to_le_bytes()))
            .map_err(|e| e.to_string())
    }

    /// Sets or clears GEM context `ctx`'s bit in the response blob's
    /// `banned_ctx_mask` (contexts 0–63 have one).
    pub(super) fn set_banned(&mut self, bm: &BufferManager, ctx: u64, banned: bool) {
        let Some(bit) = 1u64.checked_shl(u32::try_from(ctx).unwrap_or(u32::MAX)) else {
            return;
        };
        let mask = match banned {
            true => self.banned_ctx_mask | bit,
            false => self.banned_ctx_mask & !bit,
        };
        if mask == self.banned_ctx_mask {
            return;
        }
        self.banned_ctx_mask = mask;
        if let Some(shmem) = self.shmem {
            let at = std::mem::offset_of!(I915Shmem, banned_ctx_mask) as u64;
            let _ = bm.write(shmem.object, at, &mask.to_le_bytes());
        }
    }

    /// Room for responses (to bound QUERYPARAM before allocating).
    fn response_room(&self) -> u64 {
        self.shmem
            .map_or(0, |s| s.size.saturating_sub(size_of::<I915Shmem>() as u64))
    }

    fn execute(
        &mut self,
        request: &I915Request<'_>,
        env: &mut NativeEnv<'_>,
        outcome: &mut SubmitOutcome,
    ) -> Option<Vec<u8>> {
        match request {
            I915Request::GetParam(req) => {
                let param = req.param.get();
                let (ret, value) = match env.bm.gpu_kernel() {
                    // The host GPU's own answer (features, topology, ids).
                    Some(kernel) => match kernel.getparam(param as i32) {
                        Ok(v) => (0, v as u32),
                        Err(e) => (e.raw_os_error(), GETPARAM_UNSET),
                    },
                    None => match getparam(param, env.cfg) {
                        Some(v) => (0, v),
                        None => (EINVAL, GETPARAM_UNSET),
                    },
                };
                Some(rsp(GetParamRsp {
                    hdr: hdr::<GetParamRsp>(),
                    pad: 0.into(),
                    ret: I32::new(ret),
                    value: value.into(),
                }))
            }
            I915Request::QueryParam(req) => Some(self.queryparam(req, env)),
            I915Request::GemCreate(req) => {
                let blob = (req.blob_id.get(), None);
                self.create_object(blob, req.size.get(), Placement::system(), env);
                None
            }
            I915Request::GemCreateExt { req, extensions } => {
                // Device memory is mapped write-combined, whatever the
                // object's placement ends up being (i915_ccmd.c).
                let caching = wants_device_memory(extensions).then_some(MapCaching::WriteCombined);
                match placement_from(extensions, env.bm) {
                    Ok(placement) => self.create_object(
                        (req.blob_id.get(), caching),
                        req.size.get(),
                        placement,
                        env,
                    ),
                    Err(why) => log::debug!("ctx {}: GEM_CREATE_EXT refused: {why}", env.ctx_id),
                }
                None
            }
            I915Request::GemContextCreate { params, .. } => {
                let (ret, ctx_id) = match self.create_gem_context(params, env) {
                    Ok(id) => (0, id),
                    Err(errno) => (errno, 0),
                };
                Some(rsp(GemContextCreateRsp {
                    hdr: hdr::<GemContextCreateRsp>(),
                    pad: 0.into(),
                    ret: I32::new(ret),
                    ctx_id: ctx_id.into(),
                }))
            }
            I915Request::GemExecbuffer2 {
                req,
                buffers,
                relocs,
            } => {
                let ret = match self.execbuffer(req, buffers, relocs, env) {
                    Ok(fence) => {
                        // The SUBMIT_3D's fence covers every submission in it.
                        outcome.fence = Some(match outcome.fence.take() {
                            Some(earlier) => env.engine.join(vec![earlier, fence]),
                            None => fence,
                        });
                        0
                    }
                    Err(errno) => {
                        // The kernel refuses a banned (hung) context with
                        // EIO: the guest learns it from the mask.
                        if errno == EIO {
                            self.set_banned(env.bm, req.context_id.get(), true);
                        }
                        errno
                    }
                };
                Some(rsp(GemExecbuffer2Rsp {
                    hdr: hdr::<GemExecbuffer2Rsp>(),
                    ret: I32::new(ret),
                }))
            }
            I915Request::GemSetMmapMode(req) => {
                if let Err(why) = set_mmap_mode(req, env) {
                    log::debug!(
                        "ctx {}: SET_MMAP_MODE of {}: {why}",
                        env.ctx_id,
                        req.res_id.get()
                    );
                }
                None
            }
            I915Request::GemBusy(req) => {
                let (ret, busy) = match self.object_of(req.res_id.get(), env) {
                    Some(obj) => match env.bm.is_busy(obj) {
                        Ok(b) => (0, i32::from(b)),
                        Err(_) => (ENOENT, 0),
                    },
                    None => (ENOENT, 0),
                };
                Some(rsp(GemBusyRsp {
                    hdr: hdr::<GemBusyRsp>(),
                    pad: 0.into(),
                    ret: I32::new(ret),
                    busy: I32::new(busy),
                }))
            }
            I915Request::GemMadvise(req) => {
                let target = match (req.res_id.get(), req.blob_id.get()) {
                    (0, blob) => self.blobs.get(&blob).map(|b| b.object),
                    (res, _) => self.object_of(res, env),
                };
                let madv = match req.madv.get() {
                    I915_MADV_WILLNEED => Some(Madv::WillNeed),
                    I915_MADV_DONTNEED => Some(Madv::DontNeed),
                    _ => None,
                };
                let (ret, retained) = match (target, madv) {
                    (_, None) => (EINVAL, 0),
                    (None, _) => (ENOENT, 0),
                    (Some(obj), Some(m)) => match env.bm.madvise(obj, m) {
                        Ok(r) => (0, u32::from(r)),
                        Err(_) => (ENOENT, 0),
                    },
                };
                Some(rsp(GemMadviseRsp {
                    hdr: hdr::<GemMadviseRsp>(),
                    pad: 0.into(),
                    ret: I32::new(ret),
                    retained: retained.into(),
                }))
            }
            I915Request::GemClose(req) => {
                let ret = match self.blobs.remove(&req.blob_id.get()) {
                    Some(blob) => {
                        let _ = env.bm.destroy(blob.object);
                        0
                    }
                    None => ENOENT,
                };
                Some(rsp(GemCloseRsp {
                    hdr: hdr::<GemCloseRsp>(),
                    ret: I32::new(ret),
                }))
            }
            I915Request::IoctlSimple { req, payload } => {
                let mut call = SimpleCall {
                    gem: &mut self.gem,
                    env,
                };
                let (response, unban) = call.run(req.cmd.get(), payload);
                if let Some(ctx) = unban {
                    self.set_banned(env.bm, ctx, false);
                }
                Some(response)
            }
        }
    }

    fn create_object(
        &mut self,
        (blob_id, map_caching): (u32, Option<MapCaching>),
        size: u64,
        placement: Placement,
        env: &mut NativeEnv<'_>,
    ) {
        if blob_id == 0 || self.blobs.contains_key(&blob_id) {
            log::debug!(
                "ctx {}: GEM create with invalid blob_id {blob_id}",
                env.ctx_id
            );
            return;
        }
        if self.blobs.len() >= env.cfg.limits.max_context_objects {
            log::warn!("ctx {}: too many objects not yet resources", env.ctx_id);
            return;
        }
        match env.bm.create(env.owner, size, placement, Priority::NORMAL) {
            Ok(object) => {
                self.blobs.insert(
                    blob_id,
                    PendingBlob {
                        object,
                        map_caching,
                    },
                );
            }
            Err(e) => log::debug!("ctx {}: GEM create of {size} bytes failed: {e}", env.ctx_id),
        }
    }

    /// The buffer of a resource attached to this context.
    fn object_of(&self, res_id: u32, env: &NativeEnv<'_>) -> Option<ObjectId> {
        env.resources
            .get(&res_id)
            .filter(|r| r.contexts.contains(&env.ctx_id))
            .and_then(|r| r.object())
    }

    fn create_gem_context(
        &mut self,
        params: &[ContextSetParam<'_>],
        env: &NativeEnv<'_>,
    ) -> Result<u32, i32> {
        let limit = env.cfg.limits.max_context_objects;
        if self.gem.len() >= limit {
            return Err(ENOMEM);
        }
        let gem = &self.gem;
        let kernel_params = context_params(params, |value| {
            let id = u32::try_from(value).map_err(|_| ENOENT)?;
            gem.vm(id).map(|vm| u64::from(vm.host)).ok_or(ENOENT)
        })?;
        let ctx = match env.bm.gpu_kernel() {
            Some(kernel) => {
                let host = kernel
                    .context_create(&kernel_params)
                    .map_err(|e| e.raw_os_error())?;
                new_context(host, 0)
            }
            None => {
                // The emulated device keeps what it can answer GETPARAM with.
                let mut ctx = new_context(0, self.gem.new_vm_key());
                for p in params {
                    let p = &p.setparam.param;
                    let vm = u32::try_from(p.value.get())
                        .ok()
                        .and_then(|id| self.gem.vm(id))
                        .map(|vm| vm.key);
                    match p.param.get() {
                        I915_CONTEXT_PARAM_PRIORITY
                        | I915_CONTEXT_PARAM_RECOVERABLE
                        | I915_CONTEXT_PARAM_VM => set_context_param(&mut ctx, p, vm)?,
                        _ => {}
                    }
                }
                ctx
            }
        };
        self.gem
            .insert(ctx, limit)
            .inspect_err(|_| destroy_host_context(env.bm, ctx.host))
    }

    fn execbuffer(
        &mut self,
        req: &GemExecbuffer2Req,
        buffers: &[ExecObject2],
        relocs: &[RelocationEntry],
        env: &mut NativeEnv<'_>,
    ) -> Result<Fence, i32> {
        let objects: Vec<ObjectId> = buffers
            .iter()
            .map(|b| self.object_of(b.handle.get(), env).ok_or(EINVAL))
            .collect::<Result<_, _>>()?;
        let ctx_id = u32::try_from(req.context_id.get()).map_err(|_| ENOENT)?;
        if ctx_id == 0 {
            ensure_default(&mut self.gem, env)?;
        }
        let ctx = self.gem.get_mut(ctx_id).ok_or(ENOENT)?;
        ctx.finalized = true;
        let host_context = ctx.host;
        Execbuffer::check(req, &objects, env.bm)?;
        let exec = Execbuffer {
            req,
            buffers,
            relocs,
            objects,
            host_context,
        };
        match env.bm.gpu_kernel().cloned() {
            Some(kernel) => exec.run_on_kernel(&kernel, env),
            None => exec.run_emulated(env),
        }
    }

    fn queryparam(&self, req: &QueryParamReq, env: &NativeEnv<'_>) -> Vec<u8> {
        let want = u64::from(req.length.get());
        let mut out = rsp(QueryParamRsp {
            hdr: hdr::<QueryParamRsp>(),
            pad: 0.into(),
            ret: I32::new(0),
            length: I32::new(0),
        });
        // The response cannot be delivered anyway if it does not fit.
        if want > self.response_room() {
            return error_response(I915Command::QueryParam.value(), EINVAL).unwrap_or_default();
        }
        let blob = match req.query_id.get() {
            // vgpu's view of memory: the regions its buffer manager uses.
            DRM_I915_QUERY_MEMORY_REGIONS => Ok(memory_regions(env.bm)),
            id if FORWARDED_QUERIES.contains(&id) => match env.bm.gpu_kernel() {
                Some(kernel) => kernel.query(u64::from(id)).map_err(|e| e.raw_os_error()),
                None => Err(EINVAL),
            },
            _ => Err(EINVAL),
        };
        let (length, payload) = match blob {
            Err(errno) => (-errno, vec![0; want as usize]),
            Ok(blob) => match want {
                0 => (blob.len() as i32, Vec::new()),
                w if w < blob.len() as u64 => (-EINVAL, vec![0; w as usize]),
                w => {
                    let mut p = blob;
                    let len = p.len() as i32;
                    p.resize(w as usize, 0);
                    (len, p)
                }
            },
        };
        out[12..16].copy_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&payload);
        set_len(&mut out);
        out
    }

    /// Releases what the context still holds outside the resource table:
    /// objects not yet resources, and kernel GEM contexts.
    pub fn release(&mut self, bm: &BufferManager) {
        for (_, blob) in self.blobs.drain() {
            let _ = bm.destroy(blob.object);
        }
        let (contexts, vms) = self.gem.drain();
        for ctx in contexts {
            destroy_host_context(bm, ctx.host);
        }
        if let Some(kernel) = bm.gpu_kernel() {
            for vm in vms.iter().filter(|vm| vm.host != 0) {
                let mut destroy = GemVmControl {
                    vm_id: vm.host.into(),
                    ..GemVmControl::default()
                };
                let _ = kernel.ioctl_simple(DRM_IOCTL_I915_GEM_VM_DESTROY, destroy.as_mut_bytes());
            }
        }
    }
}

/// Destroys a kernel GEM context (0: none, on the emulated device).
fn destroy_host_context(bm: &BufferManager, host: u32) {
    if let (Some(kernel), true) = (bm.gpu_kernel(), host != 0) {
        kernel.context_destroy(host);
    }
}

/// DRM_I915_QUERY items passed to the host kernel: read-only device
/// descriptions that take no input (TOPOLOGY_INFO, ENGINE_INFO,
/// HWCONFIG_BLOB, GUC_SUBMISSION_VERSION).
const FORWARDED_QUERIES: [u32; 4] = [1, 2, 5, 7];

/// Response header with the struct's length.
fn hdr<T>() -> CcmdRsp {
    CcmdRsp {
        len: U32::new(size_of::<T>() as u32),
    }
}

fn rsp<T: IntoBytes + zerocopy::Immutable>(v: T) -> Vec<u8> {
    v.as_bytes().to_vec()
}

fn set_len(out: &mut [u8]) {
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
}

/// The response a request that could not be decoded gets: its command's
/// response with `ret = errno`, or `{len, ret}` for unknown commands.
pub fn error_response(cmd: u32, errno: i32) -> Option<Vec<u8>> {
    let (len, ret_at) = match I915Command::from_u32(cmd) {
        None => (size_of::<ErrorRsp>(), 4),
        Some(c) => {
            let len = response_len(c, 0, 0)?;
            let ret_at = match c {
                I915Command::IoctlSimple | I915Command::GemExecbuffer2 | I915Command::GemClose => 4,
                _ => 8,
            };
            (len, ret_at)
        }
    };
    let mut out = vec![0u8; len];
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[ret_at..ret_at + 4].copy_from_slice(&errno.to_le_bytes());
    Some(out)
}

/// GETPARAM's `value` when the kernel wrote none: virglrenderer starts
/// from `int value = -1`.
const GETPARAM_UNSET: u32 = u32::MAX;

/// The emulated device's command-streamer timestamp frequency (Hz): the
/// rate its REG_READ timestamp counts at (a Gen12 part's 19.2 MHz is not
/// needed: Mesa reads the frequency from here).
pub const EMULATED_TIMESTAMP_HZ: u32 = 12_000_000;

/// GETPARAM answers of the emulated device (`None`: EINVAL, as the kernel
/// answers parameters it does not know). It has every execbuffer feature
/// Mesa's iris asks for; the engine runs nothing, so "supported" means the
/// flag is accepted.
fn getparam(p: u32, cfg: &DeviceConfig) -> Option<u32> {
    use vgpu_proto::native::param::*;
    Some(match p {
        CHIPSET_ID => u32::from(cfg.pci_device_id),
        REVISION => 0,
        MMAP_VERSION | MMAP_GTT_VERSION => 4,
        CS_TIMESTAMP_FREQUENCY => EMULATED_TIMESTAMP_HZ,
        HAS_GEM
        | HAS_EXECBUF2
        | HAS_LLC
        | HAS_WAIT_TIMEOUT
        | HAS_EXEC_NO_RELOC
        | HAS_EXEC_HANDLE_LUT
        | HAS_EXEC_SOFTPIN
        | HAS_EXEC_ASYNC
        | HAS_EXEC_FENCE
        | HAS_EXEC_CAPTURE
        | HAS_EXEC_BATCH_FIRST
        | HAS_EXEC_FENCE_ARRAY
        | HAS_CONTEXT_ISOLATION
        | MMAP_GTT_COHERENT
        | HAS_EXEC_SUBMIT_FENCE
        | HAS_EXEC_TIMELINE_FENCES => 1,
        _ => return None,
    })
}

/// Whether GEM_CREATE_EXT lists device-class memory among its placements.
fn wants_device_memory(extensions: &[CreateExtension<'_>]) -> bool {
    extensions.iter().any(|ext| match ext {
        CreateExtension::MemoryRegions { regions, .. } => regions
            .iter()
            .any(|r| r.memory_class.get() == I915_MEMORY_CLASS_DEVICE),
        _ => false,
    })
}

/// GEM_SET_MMAP_MODE as virglrenderer's i915 context applies it: unknown
/// resources are ignored; the first mode sticks (a later different one is
/// refused); a resource the guest already maps keeps the caching it is
/// mapped with.
fn set_mmap_mode(req: &GemSetMmapModeReq, env: &mut NativeEnv<'_>) -> Result<(), String> {
    let res_id = req.res_id.get();
    let ctx_id = env.ctx_id;
    let r = env
        .resources
        .get_mut(&res_id)
        .filter(|r| r.contexts.contains(&ctx_id) && r.object().is_some())
        .ok_or("not a buffer of this context")?;
    if let (None, Some(mapping)) = (r.map_caching, r.mapping) {
        // Mapped before being configured: the mapping's caching stays.
        r.map_caching = Some(mapping.caching);
        return Ok(());
    }
    let wanted = match req.flags.get() {
        I915_MMAP_OFFSET_GTT | I915_MMAP_OFFSET_WC | I915_MMAP_OFFSET_FIXED => {
            MapCaching::WriteCombined
        }
        I915_MMAP_OFFSET_WB => MapCaching::Cached,
        I915_MMAP_OFFSET_UC => MapCaching::Uncached,
        other => return Err(format!("unknown mmap mode {other}")),
    };
    match r.map_caching {
        Some(configured) if configured != wanted => Err(format!(
            "already configured as {configured:?}, {wanted:?} refused"
        )),
        _ => {
            r.map_caching = Some(wanted);
            Ok(())
        }
    }
}

/// GEM_CREATE_EXT placements → a placement list (first preferred, the
/// others as fallbacks, as i915 lists allowed regions).
fn placement_from(
    extensions: &[CreateExtension<'_>],
    bm: &BufferManager,
) -> Result<Placement, String> {
    let regions = bm.regions();
    let mut places = Vec::new();
    for ext in extensions {
        match ext {
            CreateExtension::MemoryRegions {
                regions: wanted, ..
            } => {
                for (i, w) in wanted.iter().enumerate() {
                    let class = match w.memory_class.get() {
                        I915_MEMORY_CLASS_SYSTEM => vgpu_backend::MemoryClass::System,
                        I915_MEMORY_CLASS_DEVICE => vgpu_backend::MemoryClass::Device,
                        c => return Err(format!("unknown memory class {c}")),
                    };
                    let region = regions
                        .iter()
                        .find(|r| r.class == class && r.instance == w.memory_instance.get())
                        .ok_or_else(|| {
                            format!("no region {:?}/{}", class, w.memory_instance.get())
                        })?;
                    if places.len() >= vgpu_backend::MAX_PLACES
                        || places.iter().any(|p: &Place| p.region == region.id)
                    {
                        return Err("duplicate or too many placements".into());
                    }
                    places.push(if i == 0 {
                        Place::new(region.id)
                    } else {
                        Place::fallback(region.id)
                    });
                }
            }
            CreateExtension::ProtectedContent(_) => {
                return Err("protected content is not supported".into())
            }
            CreateExtension::SetPat(_) => {}
        }
    }
    if places.is_empty() {
        return Ok(Placement::system());
    }
    Placement::new(&places).ok_or_else(|| "invalid placement".into())
}

/// DRM_I915_QUERY_MEMORY_REGIONS result for the manager's regions.
fn memory_regions(bm: &BufferManager) -> Vec<u8> {
    let stats = bm.stats();
    let host_total = host_mem_total();
    let mut out = QueryMemoryRegions {
        num_regions: U32::new(stats.regions.len() as u32),
        rsvd: Default::default(),
    }
    .as_bytes()
    .to_vec();
    for r in &stats.regions {
        let probed = r.info.capacity.unwrap_or(host_total);
        let free = probed.saturating_sub(r.used);
        let class = match r.info.class {
            vgpu_backend::MemoryClass::System => I915_MEMORY_CLASS_SYSTEM,
            vgpu_backend::MemoryClass::Device => I915_MEMORY_CLASS_DEVICE,
        };
        let info = MemoryRegionInfo {
            region: MemoryClassInstance::new(class, r.info.instance),
            rsvd0: 0.into(),
            probed_size: U64::new(probed),
            unallocated_size: U64::new(free),
            probed_cpu_visible_size: U64::new(probed),
            unallocated_cpu_visible_size: U64::new(free),
            rsvd1: Default::default(),
        };
        out.extend_from_slice(info.as_bytes());
    }
    out
}

pub(super) fn host_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_put_ret_where_each_layout_has_it() {
        let r = error_response(I915Command::GetParam.value(), EINVAL).unwrap();
        assert_eq!(r.len(), 16);
        assert_eq!(i32::from_le_bytes(r[8..12].try_into().unwrap()), EINVAL);
        let r = error_response(I915Command::GemExecbuffer2.value(), EINVAL).unwrap();
        assert_eq!(
            (r.len(), i32::from_le_bytes(r[4..8].try_into().unwrap())),
            (8, EINVAL)
        );
        let r = error_response(0x4242, EINVAL).unwrap();
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 8);
        assert!(
            error_response(I915Command::GemCreate.value(), EINVAL).is_none(),
            "no response"
        );
    }
}
