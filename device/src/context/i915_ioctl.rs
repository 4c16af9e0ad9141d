//! IOCTL_SIMPLE: the i915 ioctls a guest may run directly, with
//! virglrenderer's allow-list and checks (`i915_ccmd_ioctl_simple`), then
//! either forwarded to the host kernel or answered by the emulated device.
//!
//! Before anything runs, as upstream: an ioctl outside the allow-list is
//! refused (`EINVAL`); the first u32 of SET_TILING / GET_TILING /
//! SET_DOMAIN is a resource id of this context (unknown: `EINVAL`);
//! CONTEXT_DESTROY clears the context's bit in `banned_ctx_mask`;
//! CONTEXT_GETPARAM / SETPARAM take only PRIORITY (above the default:
//! `EPERM`), RECOVERABLE, GTT_SIZE and VM. A refused ioctl's response
//! carries zeros where the argument would be.
//!
//! On a host Intel GPU the argument is forwarded with guest ids turned into
//! kernel ones (resource → GEM handle, GEM context and VM ids through
//! [`GemContexts`]) and back. VM_CREATE / VM_DESTROY with an extension
//! chain are refused: it would be a guest pointer.
//!
//! The emulated device answers as the i915 kernel of a Gen12 integrated
//! part (Tiger Lake) would for an unprivileged process (Linux 6.x,
//! `i915_gem_context.c`, `i915_gem_tiling.c`, `i915_gem_domain.c`,
//! `i915_ioctl.c`): the same checks in the same order with the same
//! errnos, contexts that keep their parameters, VMs, the render-ring
//! timestamp register, an aperture the size of the memory regions, tiling
//! kept per buffer, reset statistics (no hangs happen: zeros).
//!
//! Must not: decode the request framing (guest-proto does) or write the
//! response memory (the context does).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vgpu_backend::intel::GemKernel;
use vgpu_backend::{BoError, ObjectId, PinReason};
use vgpu_proto::native::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::gem_contexts::{GemContext, GemContexts, GemVm};
use super::i915::{NativeEnv, EMULATED_TIMESTAMP_HZ};
use super::i915_exec::EFAULT;

/// `RING_TIMESTAMP(RENDER_RING_BASE)`: the one register REG_READ allows.
pub const RENDER_RING_TIMESTAMP: u64 = 0x2358;
/// `I915_REG_READ_8B_WA`: read the 64-bit register as two 32-bit halves.
pub const I915_REG_READ_8B_WA: u64 = 1;
/// `I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS | _SINGLE_TIMELINE`.
const CONTEXT_CREATE_FLAGS: u32 = 0b11;
/// The PPGTT of a Gen12 part: 48 bits (`I915_CONTEXT_PARAM_GTT_SIZE`).
pub const EMULATED_GTT_SIZE: u64 = 1 << 48;
/// Largest tiled stride (`GEN7_FENCE_MAX_PITCH_VAL` 128-byte units).
const MAX_TILED_STRIDE: u32 = 0x800 * 128;

/// The ioctls of the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleIoctl {
    /// `DRM_IOCTL_I915_REG_READ`.
    RegRead,
    /// `DRM_IOCTL_I915_GEM_GET_APERTURE`.
    GetAperture,
    /// `DRM_IOCTL_I915_GEM_SET_TILING`.
    SetTiling,
    /// `DRM_IOCTL_I915_GEM_GET_TILING`.
    GetTiling,
    /// `DRM_IOCTL_I915_GEM_SET_DOMAIN`.
    SetDomain,
    /// `DRM_IOCTL_I915_GET_RESET_STATS`.
    GetResetStats,
    /// `DRM_IOCTL_I915_GEM_CONTEXT_CREATE` (the 8-byte form).
    ContextCreate,
    /// `DRM_IOCTL_I915_GEM_CONTEXT_DESTROY`.
    ContextDestroy,
    /// `DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM`.
    ContextGetParam,
    /// `DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM`.
    ContextSetParam,
    /// `DRM_IOCTL_I915_GEM_VM_CREATE`.
    VmCreate,
    /// `DRM_IOCTL_I915_GEM_VM_DESTROY`.
    VmDestroy,
}

impl SimpleIoctl {
    /// Every allowed request number with its ioctl.
    pub const ALL: [(u32, SimpleIoctl); 12] = [
        (DRM_IOCTL_I915_REG_READ, SimpleIoctl::RegRead),
        (DRM_IOCTL_I915_GEM_GET_APERTURE, SimpleIoctl::GetAperture),
        (DRM_IOCTL_I915_GEM_SET_TILING, SimpleIoctl::SetTiling),
        (DRM_IOCTL_I915_GEM_GET_TILING, SimpleIoctl::GetTiling),
        (DRM_IOCTL_I915_GEM_SET_DOMAIN, SimpleIoctl::SetDomain),
        (DRM_IOCTL_I915_GET_RESET_STATS, SimpleIoctl::GetResetStats),
        (
            DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
            SimpleIoctl::ContextCreate,
        ),
        (
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            SimpleIoctl::ContextDestroy,
        ),
        (
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            SimpleIoctl::ContextGetParam,
        ),
        (
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            SimpleIoctl::ContextSetParam,
        ),
        (DRM_IOCTL_I915_GEM_VM_CREATE, SimpleIoctl::VmCreate),
        (DRM_IOCTL_I915_GEM_VM_DESTROY, SimpleIoctl::VmDestroy),
    ];

    /// The ioctl a request number names, if it is allowed (the whole
    /// number: direction and size included, as upstream compares it).
    pub fn from_request(request: u32) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == request)
            .map(|(_, ioctl)| *ioctl)
    }
}

/// How an IOCTL_SIMPLE ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Refused before running: the response's argument is zeros.
    Refused(i32),
    /// Ran (0 or the errno); the argument goes back as the ioctl left it.
    Ran(i32),
}

/// What IOCTL_SIMPLE works on: the context's GEM contexts and VMs, its
/// environment, and its ban mask (cleared by CONTEXT_DESTROY).
pub struct SimpleCall<'c, 'e> {
    /// GEM contexts and VMs.
    pub gem: &'c mut GemContexts,
    /// The environment.
    pub env: &'c mut NativeEnv<'e>,
}

impl SimpleCall<'_, '_> {
    /// Runs IOCTL_SIMPLE `request` on `payload`; the response bytes, and
    /// whether the ban bit of a destroyed context is to be cleared
    /// (`Some(ctx)`).
    pub fn run(&mut self, request: u32, payload: &[u8]) -> (Vec<u8>, Option<u64>) {
        let mut arg = payload.to_vec();
        let mut unban = None;
        let answer = match SimpleIoctl::from_request(request) {
            None => {
                log::debug!(
                    "ctx {}: IOCTL_SIMPLE {request:#010x} is not allowed",
                    self.env.ctx_id
                );
                Answer::Refused(EINVAL)
            }
            Some(ioctl) => {
                if ioctl == SimpleIoctl::ContextDestroy {
                    unban = read::<GemContextDestroy>(&arg).map(|d| u64::from(d.ctx_id.get()));
                }
                self.dispatch(ioctl, request, &mut arg)
            }
        };
        let (ret, arg) = match answer {
            Answer::Refused(errno) => (errno, vec![0; arg.len()]),
            Answer::Ran(ret) => (ret, arg),
        };
        let mut out = IoctlSimpleRsp {
            hdr: CcmdRsp { len: 0.into() },
            ret: ret.into(),
        }
        .as_bytes()
        .to_vec();
        if ioc_reads(request) {
            out.extend_from_slice(&arg);
        }
        let len = out.len() as u32;
        out[..4].copy_from_slice(&len.to_le_bytes());
        (out, unban)
    }

    fn kernel(&self) -> Option<Arc<dyn GemKernel>> {
        self.env.bm.gpu_kernel().cloned()
    }

    fn dispatch(&mut self, ioctl: SimpleIoctl, request: u32, arg: &mut [u8]) -> Answer {
        use SimpleIoctl::*;
        // Upstream's own checks, before the kernel sees anything.
        match ioctl {
            SetTiling | GetTiling | SetDomain => {
                let res_id = read::<U32Arg>(arg).map_or(0, |a| a.0.get());
                let Some(object) = self.object_of(res_id) else {
                    log::debug!("ctx {}: IOCTL_SIMPLE on res_id {res_id}", self.env.ctx_id);
                    return Answer::Refused(EINVAL);
                };
                return Answer::Ran(match self.kernel() {
                    Some(k) => self.on_kernel_object(&k, request, object, arg),
                    None => self.emulate_object(ioctl, res_id, object, arg),
                });
            }
            ContextGetParam | ContextSetParam => {
                let Some(p) = read::<GemContextParam>(arg) else {
                    return Answer::Refused(EINVAL);
                };
                match p.param.get() {
                    I915_CONTEXT_PARAM_PRIORITY
                        if (p.value.get() as i64) > I915_CONTEXT_DEFAULT_PRIORITY =>
                    {
                        return Answer::Refused(EPERM)
                    }
                    I915_CONTEXT_PARAM_PRIORITY
                    | I915_CONTEXT_PARAM_RECOVERABLE
                    | I915_CONTEXT_PARAM_GTT_SIZE
                    | I915_CONTEXT_PARAM_VM => {}
                    _ => return Answer::Refused(EINVAL),
                }
            }
            _ => {}
        }
        let ret = match self.kernel() {
            Some(k) => self.on_kernel(&k, ioctl, request, arg),
            None => self.emulate(ioctl, arg),
        };
        Answer::Ran(match ret {
            Ok(()) => 0,
            Err(errno) => errno,
        })
    }

    /// The buffer of a resource attached to this context.
    fn object_of(&self, res_id: u32) -> Option<ObjectId> {
        let ctx_id = self.env.ctx_id;
        self.env
            .resources
            .get(&res_id)
            .filter(|r| r.contexts.contains(&ctx_id))
            .and_then(|r| r.object())
    }

    // ---- a host Intel GPU -------------------------------------------------

    /// SET_TILING / GET_TILING / SET_DOMAIN on the kernel: the object made
    /// resident in the GPU's memory and pinned while the kernel holds its
    /// handle; the guest's resource id goes back in the argument.
    fn on_kernel_object(
        &mut self,
        kernel: &Arc<dyn GemKernel>,
        request: u32,
        object: ObjectId,
        arg: &mut [u8],
    ) -> i32 {
        let bm = self.env.bm;
        let handle = match bm.pin_for_gpu(object) {
            Ok(h) => h,
            Err(e) => return errno_of(&e),
        };
        let res_id = swap_u32(arg, 0, handle);
        let ret = kernel.ioctl_simple(request, arg);
        let _ = bm.unpin(object, PinReason::Gpu);
        swap_u32(arg, 0, res_id);
        ret.map_or_else(|e| e.raw_os_error(), |()| 0)
    }

    fn on_kernel(
        &mut self,
        kernel: &Arc<dyn GemKernel>,
        ioctl: SimpleIoctl,
        request: u32,
        arg: &mut [u8],
    ) -> Result<(), i32> {
        use SimpleIoctl::*;
        let call = |arg: &mut [u8]| {
            kernel
                .ioctl_simple(request, arg)
                .map_err(|e| e.raw_os_error())
        };
        let limit = self.env.cfg.limits.max_context_objects;
        match ioctl {
            RegRead | GetAperture => call(arg),
            GetResetStats | ContextGetParam | ContextSetParam => {
                // ctx_id is the first u32 of all three.
                let guest = read::<U32Arg>(arg).map_or(0, |a| a.0.get());
                let host = self.host_context(guest)?;
                let mut vm_value = None;
                if ioctl == ContextSetParam {
                    let p = read::<GemContextParam>(arg).ok_or(EINVAL)?;
                    if p.param.get() == I915_CONTEXT_PARAM_VM && p.size.get() == 0 {
                        let host_vm = self.host_vm(p.value.get())?;
                        vm_value = Some(p.value.get());
                        write_param_value(arg, u64::from(host_vm));
                    }
                }
                swap_u32(arg, 0, host);
                let ret = call(arg);
                swap_u32(arg, 0, guest);
                if let Some(v) = vm_value {
                    write_param_value(arg, v);
                }
                ret?;
                if ioctl == ContextGetParam {
                    let p = read::<GemContextParam>(arg).ok_or(EINVAL)?;
                    if p.param.get() == I915_CONTEXT_PARAM_VM {
                        // The kernel made a new VM id: the guest gets one
                        // of its own for it.
                        let host_vm = u32::try_from(p.value.get()).map_err(|_| EINVAL)?;
                        let id = self.record_vm(GemVm {
                            host: host_vm,
                            key: 0,
                        });
                        write_param_value(arg, u64::from(id?));
                    }
                }
                Ok(())
            }
            ContextCreate => {
                if self.gem.len() >= limit {
                    return Err(ENOMEM);
                }
                call(arg)?;
                let host = read::<GemContextCreate>(arg).ok_or(EINVAL)?.ctx_id.get();
                let id = self.gem.insert(new_context(host, 0), limit);
                let id = id.inspect_err(|_| kernel.context_destroy(host))?;
                swap_u32(arg, 0, id);
                Ok(())
            }
            ContextDestroy => {
                let d = read::<GemContextDestroy>(arg).ok_or(EINVAL)?;
                if d.pad.get() != 0 {
                    return Err(EINVAL);
                }
                let ctx = self.gem.remove(d.ctx_id.get())?;
                kernel.context_destroy(ctx.host);
                Ok(())
            }
            VmCreate => {
                let c = read::<GemVmControl>(arg).ok_or(EINVAL)?;
                if c.extensions.get() != 0 {
                    return Err(EINVAL);
                }
                if self.gem.len() >= limit {
                    return Err(ENOMEM);
                }
                call(arg)?;
                let host = read::<GemVmControl>(arg).ok_or(EINVAL)?.vm_id.get();
                let id = self.record_vm(GemVm { host, key: 0 })?;
                write_vm_id(arg, id);
                Ok(())
            }
            VmDestroy => {
                let c = read::<GemVmControl>(arg).ok_or(EINVAL)?;
                if c.flags.get() != 0 || c.extensions.get() != 0 {
                    return Err(EINVAL);
                }
                let guest = c.vm_id.get();
                let vm = *self.gem.vm(guest).ok_or(ENOENT)?;
                write_vm_id(arg, vm.host);
                let ret = call(arg);
                write_vm_id(arg, guest);
                ret?;
                self.gem.remove_vm(guest).map(|_| ())
            }
            SetTiling | GetTiling | SetDomain => Err(EINVAL),
        }
    }

    /// The kernel context a guest context id stands for (0: the private
    /// default context, made on first use).
    fn host_context(&mut self, guest: u32) -> Result<u32, i32> {
        if guest == 0 {
            ensure_default(self.gem, self.env)?;
        }
        self.gem.get(guest).map(|c| c.host).ok_or(ENOENT)
    }

    /// The kernel VM a guest VM id (a u64 parameter value) stands for.
    fn host_vm(&self, value: u64) -> Result<u32, i32> {
        let id = u32::try_from(value).map_err(|_| ENOENT)?;
        self.gem.vm(id).map(|vm| vm.host).ok_or(ENOENT)
    }

    /// Records a kernel VM id under a new guest id; on failure the kernel's
    /// id is released.
    fn record_vm(&mut self, vm: GemVm) -> Result<u32, i32> {
        let limit = self.env.cfg.limits.max_context_objects;
        self.gem.insert_vm(vm, limit).inspect_err(|_| {
            if let (Some(k), true) = (self.env.bm.gpu_kernel(), vm.host != 0) {
                let mut destroy = GemVmControl {
                    vm_id: vm.host.into(),
                    ..GemVmControl::default()
                };
                let _ = k.ioctl_simple(DRM_IOCTL_I915_GEM_VM_DESTROY, destroy.as_mut_bytes());
            }
        })
    }

    // ---- the emulated device ------------------------------------------

    fn emulate_object(
        &mut self,
        ioctl: SimpleIoctl,
        res_id: u32,
        object: ObjectId,
        arg: &mut [u8],
    ) -> i32 {
        let result = match ioctl {
            SimpleIoctl::SetTiling => self.set_tiling(res_id, arg),
            SimpleIoctl::GetTiling => self.get_tiling(res_id, arg),
            _ => self.set_domain(object, arg),
        };
        result.err().unwrap_or(0)
    }

    fn emulate(&mut self, ioctl: SimpleIoctl, arg: &mut [u8]) -> Result<(), i32> {
        use SimpleIoctl::*;
        let limit = self.env.cfg.limits.max_context_objects;
        match ioctl {
            RegRead => {
                let mut r = read::<vgpu_proto::native::RegRead>(arg).ok_or(EINVAL)?;
                let offset = r.offset.get();
                if offset & !7 != RENDER_RING_TIMESTAMP || offset & 7 > I915_REG_READ_8B_WA {
                    return Err(EINVAL);
                }
                r.val = emulated_timestamp().into();
                write(arg, &r);
                Ok(())
            }
            GetAperture => {
                let (size, available) = aperture(self.env);
                write(
                    arg,
                    &GemGetAperture {
                        aper_size: size.into(),
                        aper_available_size: available.into(),
                    },
                );
                Ok(())
            }
            GetResetStats => {
                let mut s = read::<ResetStats>(arg).ok_or(EINVAL)?;
                if s.flags.get() != 0 || s.pad.get() != 0 {
                    return Err(EINVAL);
                }
                self.lookup(s.ctx_id.get())?;
                // Unprivileged: no global reset count; the emulated engine
                // never hangs, so no batch was ever active or pending at one.
                s.reset_count = 0.into();
                s.batch_active = 0.into();
                s.batch_pending = 0.into();
                write(arg, &s);
                Ok(())
            }
            ContextCreate => {
                let mut c = read::<GemContextCreate>(arg).ok_or(EINVAL)?;
                if c.pad.get() & !CONTEXT_CREATE_FLAGS != 0 {
                    return Err(EINVAL);
                }
                let vm = self.gem.new_vm_key();
                let id = self.gem.insert(new_context(0, vm), limit)?;
                c.ctx_id = id.into();
                write(arg, &c);
                Ok(())
            }
            ContextDestroy => {
                let d = read::<GemContextDestroy>(arg).ok_or(EINVAL)?;
                if d.pad.get() != 0 {
                    return Err(EINVAL);
                }
                self.gem.remove(d.ctx_id.get()).map(|_| ())
            }
            ContextGetParam => {
                let mut p = read::<GemContextParam>(arg).ok_or(EINVAL)?;
                let ctx = *self.lookup(p.ctx_id.get())?;
                let value = match p.param.get() {
                    I915_CONTEXT_PARAM_PRIORITY => ctx.priority as u64,
                    I915_CONTEXT_PARAM_RECOVERABLE => u64::from(ctx.recoverable),
                    I915_CONTEXT_PARAM_GTT_SIZE => EMULATED_GTT_SIZE,
                    I915_CONTEXT_PARAM_VM => {
                        // A new id for the context's VM on every call.
                        let vm = GemVm {
                            host: 0,
                            key: ctx.vm,
                        };
                        u64::from(self.gem.insert_vm(vm, limit)?)
                    }
                    _ => return Err(EINVAL),
                };
                p.size = 0.into();
                p.value = value.into();
                write(arg, &p);
                Ok(())
            }
            ContextSetParam => {
                let p = read::<GemContextParam>(arg).ok_or(EINVAL)?;
                let id = p.ctx_id.get();
                if id == 0 {
                    ensure_default(self.gem, self.env)?;
                }
                let vm = match p.param.get() {
                    I915_CONTEXT_PARAM_VM if p.size.get() == 0 => {
                        let wanted = u32::try_from(p.value.get()).ok();
                        wanted.and_then(|v| self.gem.vm(v)).map(|v| v.key)
                    }
                    _ => None,
                };
                let ctx = self.gem.get_mut(id).ok_or(ENOENT)?;
                set_context_param(ctx, &p, vm)
            }
            VmCreate => {
                let mut c = read::<GemVmControl>(arg).ok_or(EINVAL)?;
                if c.flags.get() != 0 || c.extensions.get() != 0 {
                    return Err(EINVAL);
                }
                let key = self.gem.new_vm_key();
                c.vm_id = self.gem.insert_vm(GemVm { host: 0, key }, limit)?.into();
                write(arg, &c);
                Ok(())
            }
            VmDestroy => {
                let c = read::<GemVmControl>(arg).ok_or(EINVAL)?;
                if c.flags.get() != 0 || c.extensions.get() != 0 {
                    return Err(EINVAL);
                }
                self.gem.remove_vm(c.vm_id.get()).map(|_| ())
            }
            SetTiling | GetTiling | SetDomain => Err(EINVAL),
        }
    }

    /// A context as the kernel's `i915_gem_context_lookup` finds it: the
    /// default one always exists, and a lookup finalizes a proto-context.
    fn lookup(&mut self, id: u32) -> Result<&GemContext, i32> {
        if id == 0 {
            ensure_default(self.gem, self.env)?;
        }
        let ctx = self.gem.get_mut(id).ok_or(ENOENT)?;
        ctx.finalized = true;
        Ok(ctx)
    }

    fn set_tiling(&mut self, res_id: u32, arg: &mut [u8]) -> Result<(), i32> {
        let mut t = read::<GemSetTiling>(arg).ok_or(EINVAL)?;
        let (mode, stride) = (t.tiling_mode.get(), t.stride.get());
        let tile_width = match mode {
            I915_TILING_NONE => None,
            I915_TILING_X => Some(512),
            I915_TILING_Y => Some(128),
            _ => return Err(EINVAL),
        };
        if let Some(width) = tile_width {
            if stride == 0 || stride % width != 0 || stride > MAX_TILED_STRIDE {
                return Err(EINVAL);
            }
        }
        let stride = if mode == I915_TILING_NONE { 0 } else { stride };
        t.swizzle_mode = I915_BIT_6_SWIZZLE_NONE.into();
        let r = self.env.resources.get_mut(&res_id).ok_or(ENOENT)?;
        let result = if (mode, stride) == r.tiling {
            Ok(())
        } else if r.scanouts != 0 {
            // A framebuffer's tiling cannot change under the display.
            Err(EBUSY)
        } else {
            r.tiling = (mode, stride);
            Ok(())
        };
        // Written back whatever happened: the object's tiling now.
        (t.tiling_mode, t.stride) = (r.tiling.0.into(), r.tiling.1.into());
        write(arg, &t);
        result
    }

    fn get_tiling(&mut self, res_id: u32, arg: &mut [u8]) -> Result<(), i32> {
        let mut t = read::<GemGetTiling>(arg).ok_or(EINVAL)?;
        let r = self.env.resources.get(&res_id).ok_or(ENOENT)?;
        t.tiling_mode = r.tiling.0.into();
        t.swizzle_mode = I915_BIT_6_SWIZZLE_NONE.into();
        t.phys_swizzle_mode = I915_BIT_6_SWIZZLE_NONE.into();
        write(arg, &t);
        Ok(())
    }

    /// SET_DOMAIN: the kernel's checks, then the object's pages made
    /// resident as `i915_gem_object_pin_pages` does (a purged object:
    /// EFAULT). The emulated engine never writes memory, so there is no
    /// GPU access to wait for.
    fn set_domain(&mut self, object: ObjectId, arg: &mut [u8]) -> Result<(), i32> {
        let d = read::<GemSetDomain>(arg).ok_or(EINVAL)?;
        let (read_domains, write_domain) = (d.read_domains.get(), d.write_domain.get());
        if (read_domains | write_domain) & I915_GEM_GPU_DOMAINS != 0 {
            return Err(EINVAL);
        }
        if write_domain != 0 && read_domains != write_domain {
            return Err(EINVAL);
        }
        if read_domains == 0 {
            return Ok(());
        }
        self.env
            .bm
            .validate(object, None)
            .map(|_| ())
            .map_err(|e| errno_of(&e))
    }
}

/// Creates the default context (0) if it does not exist yet: on a host
/// GPU a private kernel context.
pub fn ensure_default(gem: &mut GemContexts, env: &NativeEnv<'_>) -> Result<(), i32> {
    if gem.has_default() {
        return Ok(());
    }
    let host = match env.bm.gpu_kernel() {
        Some(kernel) => kernel.context_create(&[]).map_err(|e| e.raw_os_error())?,
        None => 0,
    };
    let vm = gem.new_vm_key();
    let mut ctx = new_context(host, vm);
    ctx.finalized = true;
    gem.insert_default(ctx);
    Ok(())
}

/// A context with the kernel's defaults (recoverable, normal priority, a
/// VM of its own), not yet finalized.
pub fn new_context(host: u32, vm: u64) -> GemContext {
    GemContext {
        host,
        priority: I915_CONTEXT_DEFAULT_PRIORITY,
        recoverable: true,
        vm,
        finalized: false,
    }
}

/// CONTEXT_SETPARAM of the emulated device on a context (`vm`: the address
/// space the VM id names, if it names one).
pub fn set_context_param(
    ctx: &mut GemContext,
    p: &GemContextParam,
    vm: Option<u64>,
) -> Result<(), i32> {
    let (size, value) = (p.size.get(), p.value.get());
    match p.param.get() {
        I915_CONTEXT_PARAM_PRIORITY => {
            let priority = value as i64;
            if size != 0
                || !(I915_CONTEXT_MIN_USER_PRIORITY..=I915_CONTEXT_MAX_USER_PRIORITY)
                    .contains(&priority)
            {
                return Err(EINVAL);
            }
            // Raising priority needs CAP_SYS_NICE, which a guest never has.
            if priority > I915_CONTEXT_DEFAULT_PRIORITY {
                return Err(EPERM);
            }
            ctx.priority = priority;
        }
        I915_CONTEXT_PARAM_RECOVERABLE => {
            if size != 0 {
                return Err(EINVAL);
            }
            ctx.recoverable = value != 0;
        }
        // Only a context not yet used may change its VM.
        I915_CONTEXT_PARAM_VM if !ctx.finalized => {
            if size != 0 {
                return Err(EINVAL);
            }
            ctx.vm = vm.ok_or(ENOENT)?;
        }
        _ => return Err(EINVAL),
    }
    Ok(())
}

/// The emulated aperture: every memory region's size, and what of it is
/// not allocated (what QUERY_MEMORY_REGIONS reports, summed).
fn aperture(env: &NativeEnv<'_>) -> (u64, u64) {
    let host_total = super::i915::host_mem_total();
    env.bm
        .stats()
        .regions
        .iter()
        .fold((0u64, 0u64), |(size, free), r| {
            let probed = r.info.capacity.unwrap_or(host_total);
            (
                size.saturating_add(probed),
                free.saturating_add(probed.saturating_sub(r.used)),
            )
        })
}

/// The emulated render-ring timestamp: ticks of
/// [`EMULATED_TIMESTAMP_HZ`] since the daemon started (monotonic).
pub fn emulated_timestamp() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let nanos = START.get_or_init(Instant::now).elapsed().as_nanos();
    (nanos * u128::from(EMULATED_TIMESTAMP_HZ) / 1_000_000_000) as u64
}

/// The errno a guest gets for a buffer that cannot be made resident.
fn errno_of(e: &BoError) -> i32 {
    match e {
        BoError::Purged(_) => EFAULT,
        e if e.is_out_of_memory() => ENOMEM,
        _ => EINVAL,
    }
}

/// A leading u32 (resource or context id).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct U32Arg(zerocopy::little_endian::U32);

fn read<T: FromBytes + KnownLayout + Immutable>(arg: &[u8]) -> Option<T> {
    T::read_from_prefix(arg).ok().map(|(t, _)| t)
}

fn write<T: IntoBytes + Immutable>(arg: &mut [u8], value: &T) {
    let bytes = value.as_bytes();
    if let Some(dst) = arg.get_mut(..bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Puts `value` in the u32 at `at`; returns what was there.
fn swap_u32(arg: &mut [u8], at: usize, value: u32) -> u32 {
    match arg.get_mut(at..at + 4) {
        Some(field) => {
            let old = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&value.to_le_bytes());
            old
        }
        None => 0,
    }
}

fn write_param_value(arg: &mut [u8], value: u64) {
    let at = std::mem::offset_of!(GemContextParam, value);
    if let Some(field) = arg.get_mut(at..at + 8) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

fn write_vm_id(arg: &mut [u8], id: u32) {
    swap_u32(arg, std::mem::offset_of!(GemVmControl, vm_id), id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_has_upstreams_request_numbers() {
        // The values of include/uapi/drm/i915_drm.h on x86-64.
        let expected = [
            (SimpleIoctl::RegRead, 0xC010_6471),
            (SimpleIoctl::GetAperture, 0x8010_6463),
            (SimpleIoctl::SetTiling, 0xC010_6461),
            (SimpleIoctl::GetTiling, 0xC010_6462),
            (SimpleIoctl::SetDomain, 0x400C_645F),
            (SimpleIoctl::GetResetStats, 0xC018_6472),
            (SimpleIoctl::ContextCreate, 0xC008_646D),
            (SimpleIoctl::ContextDestroy, 0x4008_646E),
            (SimpleIoctl::ContextGetParam, 0xC018_6474),
            (SimpleIoctl::ContextSetParam, 0xC018_6475),
            (SimpleIoctl::VmCreate, 0xC010_647A),
            (SimpleIoctl::VmDestroy, 0x4010_647B),
        ];
        for (ioctl, number) in expected {
            assert_eq!(SimpleIoctl::from_request(number), Some(ioctl), "{ioctl:?}");
        }
        // CONTEXT_CREATE_EXT shares the number but not the size: refused.
        assert_eq!(SimpleIoctl::from_request(0xC010_646D), None);
        // GEM_CREATE (takes no part in the allow-list).
        assert_eq!(SimpleIoctl::from_request(0xC010_645B), None);
    }

    #[test]
    fn context_parameters_follow_the_kernels_rules() {
        let mut ctx = new_context(0, 1);
        let p = |param: u64, size: u32, value: u64| GemContextParam {
            param: param.into(),
            size: size.into(),
            value: value.into(),
            ..GemContextParam::default()
        };
        let low = (-511i64) as u64;
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_PRIORITY, 0, low), None),
            Ok(())
        );
        assert_eq!(ctx.priority, -511);
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_PRIORITY, 0, 1), None),
            Err(EPERM)
        );
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_PRIORITY, 0, 2000), None),
            Err(EINVAL),
            "the range is checked before the privilege"
        );
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_RECOVERABLE, 4, 0), None),
            Err(EINVAL)
        );
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_RECOVERABLE, 0, 0), None),
            Ok(())
        );
        assert!(!ctx.recoverable);
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_GTT_SIZE, 0, 1 << 32), None),
            Err(EINVAL),
            "GTT_SIZE is read-only"
        );
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_VM, 0, 9), None),
            Err(ENOENT)
        );
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_VM, 0, 9), Some(7)),
            Ok(())
        );
        assert_eq!(ctx.vm, 7);
        ctx.finalized = true;
        assert_eq!(
            set_context_param(&mut ctx, &p(I915_CONTEXT_PARAM_VM, 0, 9), Some(7)),
            Err(EINVAL),
            "a context in use keeps its VM"
        );
    }

    #[test]
    fn the_timestamp_counts_up() {
        let a = emulated_timestamp();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(emulated_timestamp() > a);
    }
}
