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
    BoError, BufferManager, Fence, Madv, ObjectId, OwnerId, PinReason, Placement, Priority,
};
use vgpu_proto::native::*;
use zerocopy::little_endian::{I32, U32};
use zerocopy::IntoBytes;

use crate::config::DeviceConfig;
use crate::engine::Engine;
use crate::resource::{ContextId, MapCaching, Resource, ResourceId};

use super::gem_contexts::GemContexts;
use super::i915_emulated::set_context_param;
use super::i915_exec::{context_params, Execbuffer};
use super::i915_ioctl::{ensure_default, new_context, SimpleCall};
use super::i915_params::{
    getparam_response, placement_from, queryparam, set_mmap_mode, wants_device_memory,
};
use super::{ContextBackend, ContextBlob, ContextError};

/// Largest response blob accepted (Mesa uses 16 KiB).
pub const MAX_SHMEM_SIZE: u64 = 16 << 20;

/// What the rest of the device lends a context while it executes.
pub struct NativeEnv<'a> {
    /// The buffer manager.
    pub bm: &'a BufferManager,
    /// The VM's resources.
    pub resources: &'a mut HashMap<ResourceId, Resource>,
    /// The emulated engine.
    pub engine: &'a mut Engine,
    /// Device configuration.
    pub cfg: &'a DeviceConfig,
    /// The context's id.
    pub ctx_id: ContextId,
    /// The context's owner account.
    pub owner: OwnerId,
}

/// The shared response blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shmem {
    /// Its resource.
    pub res_id: ResourceId,
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
    /// Why the SUBMIT_3D as a whole must be answered with an error.
    pub error: Option<SubmitError>,
}

/// Why a SUBMIT_3D as a whole failed (each request's own errors are
/// answered in its response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The stream cannot be split into requests past this point.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// A response could not be written where the guest asked.
    #[error("the response to request {cmd} was not delivered: {why}")]
    Undelivered {
        /// The request's command number.
        cmd: u32,
        /// Why.
        why: String,
    },
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
                    outcome.error = Some(e.into());
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
                    outcome.error = Some(SubmitError::Undelivered { cmd, why });
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
            I915Request::GetParam(req) => Some(getparam_response(req, env)),
            I915Request::QueryParam(req) => Some(queryparam(req, self.response_room(), env)),
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
            .get(&ResourceId(res_id))
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

impl ContextBackend for I915Context {
    /// Blob 0 is the response blob, made here (system memory, pinned for
    /// the host's writes); any other is a GEM object made by GEM_CREATE(_EXT),
    /// whose size must match.
    fn create_blob(
        &mut self,
        bm: &BufferManager,
        owner: OwnerId,
        blob_id: u64,
        size: u64,
        res_id: ResourceId,
    ) -> Result<ContextBlob, ContextError> {
        if blob_id == 0 {
            if self.shmem.is_some() {
                return Err(ContextError::Refused(
                    "the context already has a response blob".into(),
                ));
            }
            if !(16..=MAX_SHMEM_SIZE).contains(&size) {
                return Err(ContextError::Refused(format!(
                    "response blob of {size} bytes"
                )));
            }
            let object = bm.create(owner, size, Placement::system(), Priority::HIGHEST)?;
            let installed = bm.pin(object, PinReason::Host).and_then(|_| {
                self.install_shmem(
                    bm,
                    Shmem {
                        res_id,
                        object,
                        size,
                    },
                )
            });
            if let Err(e) = installed {
                let _ = bm.destroy(object);
                return Err(e.into());
            }
            return Ok(ContextBlob {
                object,
                map_caching: None,
            });
        }
        let key = u32::try_from(blob_id)
            .map_err(|_| ContextError::Refused(format!("blob_id {blob_id}")))?;
        let pending = *self
            .blobs
            .get(&key)
            .ok_or_else(|| ContextError::Refused(format!("no object {blob_id}")))?;
        let actual = bm.size(pending.object)?;
        if actual != size {
            return Err(ContextError::Refused(format!(
                "blob {blob_id} is {actual} bytes, not {size}"
            )));
        }
        self.blobs.remove(&key);
        Ok(ContextBlob {
            object: pending.object,
            map_caching: pending.map_caching,
        })
    }

    fn submit(&mut self, stream: &[u8], env: &mut NativeEnv<'_>) -> SubmitOutcome {
        I915Context::submit(self, stream, env)
    }

    /// The response blob going away leaves the context without one.
    fn resource_gone(&mut self, res_id: ResourceId) {
        if self.shmem.is_some_and(|s| s.res_id == res_id) {
            self.shmem = None;
        }
    }

    fn teardown(&mut self, bm: &BufferManager) {
        self.release(bm);
    }
}

/// Destroys a kernel GEM context (0: none, on the emulated device).
fn destroy_host_context(bm: &BufferManager, host: u32) {
    if let (Some(kernel), true) = (bm.gpu_kernel(), host != 0) {
        kernel.context_destroy(host);
    }
}

/// Response header with the struct's length.
pub(super) fn hdr<T>() -> CcmdRsp {
    CcmdRsp {
        len: U32::new(size_of::<T>() as u32),
    }
}

pub(super) fn rsp<T: IntoBytes + zerocopy::Immutable>(v: T) -> Vec<u8> {
    v.as_bytes().to_vec()
}

pub(super) fn set_len(out: &mut [u8]) {
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
