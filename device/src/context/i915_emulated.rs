//! The emulated device's answers to IOCTL_SIMPLE: the i915 kernel of a
//! Gen12 integrated part (Tiger Lake) as an unprivileged process meets it
//! (Linux 6.x `i915_gem_context.c`, `i915_gem_tiling.c`,
//! `i915_gem_domain.c`, `i915_ioctl.c`): the same checks in the same order
//! with the same errnos and write-backs; contexts that keep their
//! parameters, VMs, the render-ring timestamp, an aperture the size of the
//! memory regions, tiling kept per buffer, reset statistics (no hangs
//! happen: zeros).
//!
//! Must not: forward anything to a kernel (`i915_ioctl` does on a host GPU).

use std::sync::OnceLock;
use std::time::Instant;

use vgpu_backend::ObjectId;
use vgpu_proto::native::*;

use crate::resource::ResourceId;

use super::gem_contexts::{GemContext, GemVm};
use super::i915::NativeEnv;
use super::i915_ioctl::{
    ensure_default, errno_of, new_context, read, write, SimpleCall, SimpleIoctl,
    I915_REG_READ_8B_WA, RENDER_RING_TIMESTAMP,
};
use super::i915_params::EMULATED_TIMESTAMP_HZ;

/// `I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS | _SINGLE_TIMELINE`.
const CONTEXT_CREATE_FLAGS: u32 = 0b11;
/// The PPGTT of a Gen12 part: 48 bits (`I915_CONTEXT_PARAM_GTT_SIZE`).
pub const EMULATED_GTT_SIZE: u64 = 1 << 48;
/// Largest tiled stride (`GEN7_FENCE_MAX_PITCH_VAL` 128-byte units).
const MAX_TILED_STRIDE: u32 = 0x800 * 128;

impl SimpleCall<'_, '_> {
    pub(super) fn emulate_object(
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

    pub(super) fn emulate(&mut self, ioctl: SimpleIoctl, arg: &mut [u8]) -> Result<(), i32> {
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
    pub(super) fn lookup(&mut self, id: u32) -> Result<&GemContext, i32> {
        if id == 0 {
            ensure_default(self.gem, self.env)?;
        }
        let ctx = self.gem.get_mut(id).ok_or(ENOENT)?;
        ctx.finalized = true;
        Ok(ctx)
    }

    pub(super) fn set_tiling(&mut self, res_id: u32, arg: &mut [u8]) -> Result<(), i32> {
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
        let r = self
            .env
            .resources
            .get_mut(&ResourceId(res_id))
            .ok_or(ENOENT)?;
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

    pub(super) fn get_tiling(&mut self, res_id: u32, arg: &mut [u8]) -> Result<(), i32> {
        let mut t = read::<GemGetTiling>(arg).ok_or(EINVAL)?;
        let r = self.env.resources.get(&ResourceId(res_id)).ok_or(ENOENT)?;
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
    pub(super) fn set_domain(&mut self, object: ObjectId, arg: &mut [u8]) -> Result<(), i32> {
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
pub(super) fn aperture(env: &NativeEnv<'_>) -> (u64, u64) {
    let host_total = super::i915_params::host_mem_total();
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

#[cfg(test)]
mod tests {
    use super::*;

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
