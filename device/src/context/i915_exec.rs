//! GEM contexts and GEM_EXECBUFFER2 of the i915 native context: the checks
//! every request passes, and where it runs.
//!
//! * On a host Intel GPU ([`BufferManager::gpu_kernel`]) a GEM context is a
//!   kernel context created with the guest's parameters, and a submission
//!   is forwarded to the kernel: guest resource ids become kernel GEM
//!   handles (objects pinned from validation until the fence is
//!   attached), relocation targets are translated the same way, and the
//!   kernel's out-fence (a sync_file) becomes the submission's fence — the
//!   buffers stay busy and the guest's virtio fence completes when the GPU
//!   is done.
//! * On the emulated device nothing executes: the buffers are validated
//!   and marked busy with an emulated-engine fence.
//!
//! Guest fence flags (FENCE_IN/OUT/ARRAY/SUBMIT, USE_EXTENSIONS) carry
//! guest descriptors and pointers; guest fences are virtio-gpu fences
//! here, so those flags are dropped. SECURE batches and unknown flags are
//! refused with EINVAL.
//!
//! Must not: decode wire formats (guest-proto does) or write responses
//! (the context does).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use vgpu_backend::intel::uapi::{
    I915ExecObject2, I915RelocationEntry, EXEC_OBJECT_CAPTURE, EXEC_OBJECT_PAD_TO_SIZE,
    I915_EXEC_BATCH_FIRST, I915_EXEC_BSD_MASK, I915_EXEC_CONSTANTS_MASK, I915_EXEC_FENCE_ARRAY,
    I915_EXEC_FENCE_IN, I915_EXEC_FENCE_OUT, I915_EXEC_FENCE_SUBMIT, I915_EXEC_GEN7_SOL_RESET,
    I915_EXEC_HANDLE_LUT, I915_EXEC_IS_PINNED, I915_EXEC_NO_RELOC, I915_EXEC_RING_MASK,
    I915_EXEC_USE_EXTENSIONS,
};
use vgpu_backend::intel::{ContextParam, GemKernel, GpuExec};
use vgpu_backend::{BoError, BufferManager, Fence, ObjectId, PinReason};
use vgpu_proto::native::{
    ContextSetParam, ExecObject2, GemExecbuffer2Req, RelocationEntry, EINVAL, ENOENT, ENOMEM,
    EPERM, I915_CONTEXT_DEFAULT_PRIORITY, I915_CONTEXT_PARAM_BANNABLE, I915_CONTEXT_PARAM_ENGINES,
    I915_CONTEXT_PARAM_PRIORITY, I915_CONTEXT_PARAM_RECOVERABLE, I915_CONTEXT_PARAM_SSEU,
    I915_CONTEXT_PARAM_VM,
};

use super::i915::NativeEnv;

/// `EFAULT`: a purged (or DONTNEED, on the kernel) buffer in an execbuffer.
pub const EFAULT: i32 = 14;
/// Linux EAGAIN: the VM has too many GPU submissions in flight.
pub const EAGAIN: i32 = 11;

/// Execbuffer flags a guest may pass through.
const GUEST_EXEC_FLAGS: u64 = I915_EXEC_RING_MASK
    | I915_EXEC_CONSTANTS_MASK
    | I915_EXEC_GEN7_SOL_RESET
    | I915_EXEC_IS_PINNED
    | I915_EXEC_NO_RELOC
    | I915_EXEC_HANDLE_LUT
    | I915_EXEC_BSD_MASK
    | I915_EXEC_BATCH_FIRST;

/// Fence flags, dropped (see the module docs).
const GUEST_FENCE_FLAGS: u64 = I915_EXEC_FENCE_IN
    | I915_EXEC_FENCE_OUT
    | I915_EXEC_FENCE_ARRAY
    | I915_EXEC_FENCE_SUBMIT
    | I915_EXEC_USE_EXTENSIONS;

/// Exec-object flags a guest may pass (every `EXEC_OBJECT_*` up to CAPTURE).
const GUEST_OBJECT_FLAGS: u64 = (EXEC_OBJECT_CAPTURE << 1) - 1;

/// `I915_CONTEXT_PARAM_NO_ERROR_CAPTURE`.
const PARAM_NO_ERROR_CAPTURE: u64 = 0x4;
/// `I915_CONTEXT_PARAM_PERSISTENCE`.
const PARAM_PERSISTENCE: u64 = 0xb;
/// `I915_CONTEXT_PARAM_PROTECTED_CONTENT`.
const PARAM_PROTECTED_CONTENT: u64 = 0xd;
/// `sizeof(struct drm_i915_gem_context_param_sseu)`.
const SSEU_SIZE: usize = 32;

/// The guest's execbuffer flags as passed to the kernel.
pub fn exec_flags(flags: u64) -> Result<u64, i32> {
    let flags = flags & !GUEST_FENCE_FLAGS;
    if flags & !GUEST_EXEC_FLAGS != 0 {
        return Err(EINVAL);
    }
    Ok(flags)
}

/// Checks GEM_CONTEXT_CREATE's setparams against virglrenderer's list
/// (`i915_ccmd_gem_context_create`) and what an unprivileged process may
/// set; the parameters to create a kernel context with. `vm` turns a guest
/// VM id into the kernel's (ENOENT if it names none).
pub fn context_params(
    params: &[ContextSetParam<'_>],
    vm: impl Fn(u64) -> Result<u64, i32>,
) -> Result<Vec<ContextParam>, i32> {
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        let param = p.setparam.param.param.get();
        let mut value = p.setparam.param.value.get();
        let data = match param {
            // Above-default priority is for privileged processes
            // (virglrenderer refuses it too).
            I915_CONTEXT_PARAM_PRIORITY if (value as i64) > I915_CONTEXT_DEFAULT_PRIORITY => {
                return Err(EPERM)
            }
            // An unbannable context is for privileged processes too (the
            // kernel wants CAP_SYS_ADMIN): a guest that keeps hanging the
            // GPU must get itself banned, not the daemon's DRM file.
            I915_CONTEXT_PARAM_BANNABLE if value == 0 => return Err(EPERM),
            I915_CONTEXT_PARAM_VM if p.data.is_empty() => {
                value = vm(value)?;
                Vec::new()
            }
            I915_CONTEXT_PARAM_SSEU if p.data.len() == SSEU_SIZE => p.data.to_vec(),
            // `extensions` (the first u64) would be a guest pointer.
            I915_CONTEXT_PARAM_ENGINES
                if p.data.len() >= 8
                    && (p.data.len() - 8) % 4 == 0
                    && p.data[..8].iter().all(|b| *b == 0) =>
            {
                p.data.to_vec()
            }
            PARAM_NO_ERROR_CAPTURE
            | I915_CONTEXT_PARAM_BANNABLE
            | I915_CONTEXT_PARAM_PRIORITY
            | I915_CONTEXT_PARAM_RECOVERABLE
            | PARAM_PERSISTENCE
            | PARAM_PROTECTED_CONTENT
                if p.data.is_empty() =>
            {
                Vec::new()
            }
            _ => return Err(EINVAL),
        };
        out.push(ContextParam { param, value, data });
    }
    Ok(out)
}

/// The errno a guest gets for a buffer that cannot be used.
fn errno_of(e: &BoError) -> i32 {
    match e {
        BoError::Purged(_) => EFAULT,
        e if e.is_out_of_memory() => ENOMEM,
        _ => EINVAL,
    }
}

/// A checked GEM_EXECBUFFER2.
pub struct Execbuffer<'a> {
    /// The request.
    pub req: &'a GemExecbuffer2Req,
    /// Its exec objects (handles are resource ids).
    pub buffers: &'a [ExecObject2],
    /// Its relocations, object by object.
    pub relocs: &'a [RelocationEntry],
    /// The buffer of each exec object, in order.
    pub objects: Vec<ObjectId>,
    /// The kernel context (0: default).
    pub host_context: u32,
}

impl Execbuffer<'_> {
    /// Validates the request against the buffer manager: flags, distinct
    /// objects, batch range.
    pub fn check(
        req: &GemExecbuffer2Req,
        objects: &[ObjectId],
        bm: &BufferManager,
    ) -> Result<(), i32> {
        let flags = exec_flags(req.flags.get())?;
        if objects.is_empty() {
            return Err(EINVAL);
        }
        let mut seen = HashSet::with_capacity(objects.len());
        if !objects.iter().all(|o| seen.insert(*o)) {
            return Err(EINVAL);
        }
        let batch = match flags & I915_EXEC_BATCH_FIRST {
            0 => objects[objects.len() - 1],
            _ => objects[0],
        };
        let batch_size = bm.size(batch).map_err(|_| EINVAL)?;
        let batch_end = u64::from(req.batch_start_offset.get()) + u64::from(req.batch_len.get());
        if batch_end > batch_size {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Runs it on the emulated engine.
    pub fn run_emulated(&self, env: &mut NativeEnv<'_>) -> Result<Fence, i32> {
        for obj in &self.objects {
            env.bm.validate(*obj, None).map_err(|e| errno_of(&e))?;
        }
        let fence = env.engine.submit();
        for obj in &self.objects {
            let _ = env.bm.set_busy(*obj, fence.clone());
        }
        Ok(fence)
    }

    /// Forwards it to the host kernel.
    pub fn run_on_kernel(
        &self,
        kernel: &Arc<dyn GemKernel>,
        env: &mut NativeEnv<'_>,
    ) -> Result<Fence, i32> {
        let mut pinned = Vec::with_capacity(self.objects.len());
        let result = self.pin_and_submit(kernel, env, &mut pinned);
        for obj in pinned {
            let _ = env.bm.unpin(obj, PinReason::Gpu);
        }
        result
    }

    fn pin_and_submit(
        &self,
        kernel: &Arc<dyn GemKernel>,
        env: &mut NativeEnv<'_>,
        pinned: &mut Vec<ObjectId>,
    ) -> Result<Fence, i32> {
        if !env.engine.throttle() {
            log::warn!(
                "GEM_EXECBUFFER2 refused: {} submissions still running on the GPU",
                env.engine.kernel_in_flight()
            );
            return Err(EAGAIN);
        }
        let mut handles = Vec::with_capacity(self.objects.len());
        for obj in &self.objects {
            handles.push(env.bm.pin_for_gpu(*obj).map_err(|e| errno_of(&e))?);
            pinned.push(*obj);
        }
        let mut exec = self.translate(&handles)?;
        let out_fence = kernel.execbuffer(&mut exec).map_err(|e| e.raw_os_error())?;
        let fence = env.engine.track(out_fence);
        for obj in &self.objects {
            let _ = env.bm.set_busy(*obj, fence.clone());
        }
        Ok(fence)
    }

    /// The submission in kernel terms, given each object's kernel handle.
    fn translate(&self, handles: &[u32]) -> Result<GpuExec, i32> {
        let flags = exec_flags(self.req.flags.get())?;
        let by_resource: HashMap<u32, u32> = self
            .buffers
            .iter()
            .zip(handles)
            .map(|(b, h)| (b.handle.get(), *h))
            .collect();
        let mut objects = Vec::with_capacity(self.buffers.len());
        for (b, handle) in self.buffers.iter().zip(handles) {
            let obj_flags = b.flags.get();
            if obj_flags & !GUEST_OBJECT_FLAGS != 0 {
                return Err(EINVAL);
            }
            objects.push(I915ExecObject2 {
                handle: *handle,
                relocation_count: b.relocation_count.get(),
                relocs_ptr: 0,
                alignment: b.alignment.get(),
                offset: b.offset.get(),
                flags: obj_flags,
                rsvd1: if obj_flags & EXEC_OBJECT_PAD_TO_SIZE != 0 {
                    b.rsvd1.get()
                } else {
                    0
                },
                rsvd2: 0,
            });
        }
        let lut = flags & I915_EXEC_HANDLE_LUT != 0;
        let relocs = self
            .relocs
            .iter()
            .map(|r| {
                let target = r.target_handle.get();
                Ok(I915RelocationEntry {
                    // With HANDLE_LUT the target is an index into the list.
                    target_handle: if lut {
                        target
                    } else {
                        *by_resource.get(&target).ok_or(ENOENT)?
                    },
                    delta: r.delta.get(),
                    offset: r.offset.get(),
                    presumed_offset: r.presumed_offset.get(),
                    read_domains: r.read_domains.get(),
                    write_domain: r.write_domain.get(),
                })
            })
            .collect::<Result<Vec<_>, i32>>()?;
        Ok(GpuExec {
            context: self.host_context,
            objects,
            relocs,
            batch_start: self.req.batch_start_offset.get(),
            batch_len: self.req.batch_len.get(),
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_flags_are_filtered_and_privileged_ones_refused() {
        assert_eq!(
            exec_flags(1 | I915_EXEC_NO_RELOC),
            Ok(1 | I915_EXEC_NO_RELOC)
        );
        assert_eq!(
            exec_flags(I915_EXEC_BATCH_FIRST | I915_EXEC_FENCE_OUT | I915_EXEC_FENCE_IN),
            Ok(I915_EXEC_BATCH_FIRST)
        );
        assert_eq!(exec_flags(1 << 9), Err(EINVAL), "I915_EXEC_SECURE");
        assert_eq!(exec_flags(1 << 15), Err(EINVAL), "resource streamer");
        assert_eq!(exec_flags(1 << 40), Err(EINVAL), "unknown high bit");
    }

    #[test]
    fn privileged_context_parameters_are_refused() {
        use vgpu_proto::native::{GemContextCreateExtSetparam, GemContextParam};
        let set = |param: u64, value: u64| {
            let setparam = GemContextCreateExtSetparam {
                param: GemContextParam {
                    param: param.into(),
                    value: value.into(),
                    ..GemContextParam::default()
                },
                ..GemContextCreateExtSetparam::default()
            };
            context_params(
                &[ContextSetParam {
                    setparam,
                    data: &[],
                }],
                |vm| if vm == 3 { Ok(30) } else { Err(ENOENT) },
            )
            .map(|p| (p.len(), p[0].value))
        };
        assert_eq!(
            set(I915_CONTEXT_PARAM_PRIORITY, 1),
            Err(EPERM),
            "above-default priority"
        );
        assert_eq!(
            set(I915_CONTEXT_PARAM_PRIORITY, (-512i64) as u64),
            Ok((1, (-512i64) as u64))
        );
        assert_eq!(
            set(I915_CONTEXT_PARAM_BANNABLE, 0),
            Err(EPERM),
            "unbannable"
        );
        assert_eq!(set(I915_CONTEXT_PARAM_BANNABLE, 1), Ok((1, 1)));
        assert_eq!(
            set(I915_CONTEXT_PARAM_VM, 3),
            Ok((1, 30)),
            "a guest VM id becomes the kernel's"
        );
        assert_eq!(set(I915_CONTEXT_PARAM_VM, 4), Err(ENOENT));
        assert_eq!(
            set(PARAM_PERSISTENCE, 0),
            Ok((1, 0)),
            "non-persistent is fine"
        );
        assert_eq!(
            set(0x1, 0),
            Err(EINVAL),
            "BAN_PERIOD: not in upstream's list"
        );
        assert_eq!(set(0x3, 0), Err(EINVAL), "GTT_SIZE cannot be set");
        assert_eq!(set(0x42, 0), Err(EINVAL), "unknown");
    }
}
