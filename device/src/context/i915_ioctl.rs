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

use std::sync::Arc;

use vgpu_backend::intel::GemKernel;
use vgpu_backend::{BoError, ObjectId, PinReason};
use vgpu_proto::native::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::resource::ResourceId;

use super::gem_contexts::{GemContext, GemContexts, GemVm};
use super::i915::NativeEnv;
use super::i915_exec::EFAULT;

/// `RING_TIMESTAMP(RENDER_RING_BASE)`: the one register REG_READ allows.
pub const RENDER_RING_TIMESTAMP: u64 = 0x2358;
/// `I915_REG_READ_8B_WA`: read the 64-bit register as two 32-bit halves.
pub const I915_REG_READ_8B_WA: u64 = 1;

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
            .get(&ResourceId(res_id))
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
}

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

/// The errno a guest gets for a buffer that cannot be made resident.
pub(super) fn errno_of(e: &BoError) -> i32 {
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

pub(super) fn read<T: FromBytes + KnownLayout + Immutable>(arg: &[u8]) -> Option<T> {
    T::read_from_prefix(arg).ok().map(|(t, _)| t)
}

pub(super) fn write<T: IntoBytes + Immutable>(arg: &mut [u8], value: &T) {
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
}
