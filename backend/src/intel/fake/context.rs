//! The fake i915's GPU contexts and VMs: GEM_CONTEXT_CREATE_EXT (SETPARAM
//! extensions walked through their pointers, ENGINES and SSEU data read
//! through theirs), the legacy GEM_CONTEXT_CREATE, GEM_CONTEXT_DESTROY,
//! GEM_CONTEXT_GETPARAM / SETPARAM, GET_RESET_STATS, GEM_VM_CREATE and
//! GEM_VM_DESTROY. Every new context gets its own VM; context 0 is the
//! file's default context, which cannot be destroyed.

use rustix::io::Errno;

use super::gem::State;
use super::i915::MAX_EXTENSIONS;
use super::user::{with_arg, UserMem};
use crate::intel::uapi::*;
use crate::intel::ContextParam;

/// The requests this module answers.
pub(super) const REQUESTS: [u32; 8] = [
    DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
    DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT,
    DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
    DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
    DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
    DRM_IOCTL_I915_GET_RESET_STATS,
    DRM_IOCTL_I915_GEM_VM_CREATE,
    DRM_IOCTL_I915_GEM_VM_DESTROY,
];

/// The fake GPU's engines (class, instance).
pub(super) const ENGINES: [(u16, u16); 4] = [
    (I915_ENGINE_CLASS_RENDER, 0),
    (I915_ENGINE_CLASS_COPY, 0),
    (I915_ENGINE_CLASS_VIDEO, 0),
    (I915_ENGINE_CLASS_VIDEO_ENHANCE, 0),
];

/// Its VMs' size (a full 48-bit PPGTT).
const GTT_SIZE: u64 = 1 << 48;

/// A GPU context of the fake i915.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContext {
    /// The parameters it was created with (data parameters with `value` 0).
    pub params: Vec<ContextParam>,
    /// Its VM (the fake's identity, not a file's VM id).
    pub vm: u64,
    /// I915_CONTEXT_PARAM_PRIORITY.
    pub priority: i64,
    /// I915_CONTEXT_PARAM_RECOVERABLE.
    pub recoverable: bool,
    /// Its engine map (ENGINES), if it has one; `None` for legacy rings.
    pub engines: Option<Vec<(u16, u16)>>,
}

/// The state kept per context is what tests see.
pub(super) type Context = FakeContext;

impl FakeContext {
    pub(super) fn new(vm: u64) -> Self {
        Self {
            params: Vec::new(),
            vm,
            priority: I915_CONTEXT_DEFAULT_PRIORITY,
            recoverable: true,
            engines: None,
        }
    }
}

pub(super) fn ioctl(
    st: &mut State,
    user: &UserMem,
    request: u32,
    kdata: &mut [u8],
) -> Result<(), Errno> {
    match request {
        DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT => {
            with_arg(kdata, |c: &mut I915GemContextCreateExt| {
                c.ctx_id = create(st, user, c.flags, c.extensions)?;
                Ok(())
            })
        }
        // The legacy struct is the extended one cut short: `pad` is where
        // `flags` would be, and there is no extension chain.
        DRM_IOCTL_I915_GEM_CONTEXT_CREATE => with_arg(kdata, |c: &mut I915GemContextCreate| {
            c.ctx_id = create(st, user, c.pad, 0)?;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_CONTEXT_DESTROY => with_arg(kdata, |d: &mut I915GemContextDestroy| {
            if d.pad != 0 {
                return Err(Errno::INVAL);
            }
            match d.ctx_id {
                0 => Err(Errno::NOENT),
                id => st.contexts.remove(&id).map(drop).ok_or(Errno::NOENT),
            }
        }),
        DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM => with_arg(kdata, |p: &mut I915ContextParam| {
            let ctx = st.contexts.get(&p.ctx_id).ok_or(Errno::NOENT)?;
            p.value = match p.param {
                I915_CONTEXT_PARAM_PRIORITY => ctx.priority as u64,
                I915_CONTEXT_PARAM_RECOVERABLE => u64::from(ctx.recoverable),
                I915_CONTEXT_PARAM_GTT_SIZE => GTT_SIZE,
                // A new id of the file for the context's VM.
                I915_CONTEXT_PARAM_VM => {
                    let vm = ctx.vm;
                    u64::from(name_vm(st, vm)?)
                }
                _ => return Err(Errno::INVAL),
            };
            p.size = 0;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM => with_arg(kdata, |p: &mut I915ContextParam| {
            let ctx = st.contexts.get_mut(&p.ctx_id).ok_or(Errno::NOENT)?;
            match p.param {
                I915_CONTEXT_PARAM_PRIORITY
                | I915_CONTEXT_PARAM_RECOVERABLE
                | I915_CONTEXT_PARAM_VM => set_param(&st.vms, user, ctx, p, false),
                _ => Err(Errno::INVAL),
            }
        }),
        DRM_IOCTL_I915_GET_RESET_STATS => with_arg(kdata, |r: &mut I915ResetStats| {
            if r.flags != 0 || r.pad != 0 {
                return Err(Errno::INVAL);
            }
            st.contexts.get(&r.ctx_id).ok_or(Errno::NOENT)?;
            // No GPU hang ever happened (and reset_count needs CAP_SYS_ADMIN).
            r.reset_count = 0;
            r.batch_active = 0;
            r.batch_pending = 0;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_VM_CREATE => with_arg(kdata, |v: &mut I915GemVmControl| {
            if v.flags != 0 || v.extensions != 0 {
                return Err(Errno::INVAL);
            }
            let vm = st.new_vm();
            v.vm_id = name_vm(st, vm)?;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_VM_DESTROY => with_arg(kdata, |v: &mut I915GemVmControl| {
            if v.flags != 0 || v.extensions != 0 {
                return Err(Errno::INVAL);
            }
            st.vms.remove(&v.vm_id).map(drop).ok_or(Errno::NOENT)
        }),
        _ => Err(Errno::INVAL),
    }
}

/// A new id of the file for `vm`.
fn name_vm(st: &mut State, vm: u64) -> Result<u32, Errno> {
    let id = st.next_vm_id;
    st.next_vm_id = id.checked_add(1).ok_or(Errno::NOSPC)?;
    st.vms.insert(id, vm);
    Ok(id)
}

/// A new context: `flags` checked, the SETPARAM extensions at `extensions`
/// applied in order (with USE_EXTENSIONS).
fn create(st: &mut State, user: &UserMem, flags: u32, extensions: u64) -> Result<u32, Errno> {
    if flags
        & !(I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS | I915_CONTEXT_CREATE_FLAGS_SINGLE_TIMELINE)
        != 0
    {
        return Err(Errno::INVAL);
    }
    let mut ctx = Context::new(st.new_vm());
    if flags & I915_CONTEXT_CREATE_FLAGS_USE_EXTENSIONS != 0 {
        let mut next = extensions;
        let mut n = 0;
        while next != 0 {
            n += 1;
            if n > MAX_EXTENSIONS {
                return Err(Errno::TOOBIG);
            }
            let ext: I915UserExtension = user.read_pod(next)?;
            if ext.flags != 0 || ext.rsvd != [0; 4] || ext.name != I915_CONTEXT_CREATE_EXT_SETPARAM
            {
                return Err(Errno::INVAL);
            }
            let sp: I915ContextCreateExtSetparam = user.read_pod(next)?;
            if sp.param.ctx_id != 0 {
                return Err(Errno::INVAL);
            }
            set_param(&st.vms, user, &mut ctx, &sp.param, true)?;
            next = ext.next_extension;
        }
    }
    let id = st.next_context;
    st.next_context = id.checked_add(1).ok_or(Errno::NOSPC)?;
    st.contexts.insert(id, ctx);
    Ok(id)
}

/// One context parameter, at creation (`creating`: the parameters a new
/// context takes, recorded in its `params`) or by SETPARAM.
fn set_param(
    vms: &std::collections::HashMap<u32, u64>,
    user: &UserMem,
    ctx: &mut Context,
    p: &I915ContextParam,
    creating: bool,
) -> Result<(), Errno> {
    let plain = |p: &I915ContextParam| match p.size {
        0 => Ok(()),
        _ => Err(Errno::INVAL),
    };
    let mut data = Vec::new();
    match p.param {
        I915_CONTEXT_PARAM_PRIORITY => {
            plain(p)?;
            let v = p.value as i64;
            if !(I915_CONTEXT_MIN_USER_PRIORITY..=I915_CONTEXT_MAX_USER_PRIORITY).contains(&v) {
                return Err(Errno::INVAL);
            }
            // Above default needs CAP_SYS_NICE, which vgpu does not have.
            if v > I915_CONTEXT_DEFAULT_PRIORITY {
                return Err(Errno::PERM);
            }
            ctx.priority = v;
        }
        I915_CONTEXT_PARAM_RECOVERABLE => {
            plain(p)?;
            ctx.recoverable = p.value != 0;
        }
        I915_CONTEXT_PARAM_VM => {
            plain(p)?;
            let id = u32::try_from(p.value).map_err(|_| Errno::NOENT)?;
            ctx.vm = *vms.get(&id).ok_or(Errno::NOENT)?;
        }
        I915_CONTEXT_PARAM_NO_ERROR_CAPTURE
        | I915_CONTEXT_PARAM_PERSISTENCE
        | I915_CONTEXT_PARAM_LOW_LATENCY
            if creating =>
        {
            plain(p)?
        }
        // Unbannable contexts need CAP_SYS_ADMIN.
        I915_CONTEXT_PARAM_BANNABLE if creating => {
            plain(p)?;
            if p.value == 0 {
                return Err(Errno::PERM);
            }
        }
        // No PXP on the fake GPU.
        I915_CONTEXT_PARAM_PROTECTED_CONTENT if creating => return Err(Errno::NODEV),
        I915_CONTEXT_PARAM_SSEU if creating => data = sseu(user, ctx, p)?,
        I915_CONTEXT_PARAM_ENGINES if creating => data = engines(user, ctx, p)?,
        _ => return Err(Errno::INVAL),
    }
    if creating {
        ctx.params.push(ContextParam {
            param: p.param,
            value: if data.is_empty() { p.value } else { 0 },
            data,
        });
    }
    Ok(())
}

/// ENGINES: an `i915_context_param_engines` of `size` bytes at `value`;
/// the engine map becomes the context's. Its bytes.
fn engines(user: &UserMem, ctx: &mut Context, p: &I915ContextParam) -> Result<Vec<u8>, Errno> {
    let head = size_of::<I915ContextParamEngines>();
    let each = size_of::<I915EngineClassInstance>();
    let size = p.size as usize;
    if size < head || (size - head) % each != 0 || (size - head) / each > 64 {
        return Err(Errno::INVAL);
    }
    let data = user.read(p.value, size)?;
    let header = I915ContextParamEngines::read_from(&data).ok_or(Errno::INVAL)?;
    // Load balancing, bonds and parallel submission are not modelled.
    if header.extensions != 0 {
        return Err(Errno::INVAL);
    }
    let mut map = Vec::new();
    for e in I915EngineClassInstance::read_all(&data[head..]) {
        let slot = (e.engine_class, e.engine_instance);
        if slot != (I915_ENGINE_CLASS_INVALID, I915_ENGINE_CLASS_INVALID_NONE)
            && !ENGINES.contains(&slot)
        {
            return Err(Errno::NOENT);
        }
        map.push(slot);
    }
    ctx.engines = Some(map);
    Ok(data)
}

/// SSEU: a `drm_i915_gem_context_param_sseu` at `value`, for the render
/// engine of the fake's one slice of 8 subslices of 8 EUs. Its bytes.
fn sseu(user: &UserMem, ctx: &Context, p: &I915ContextParam) -> Result<Vec<u8>, Errno> {
    if p.size as usize != size_of::<I915ContextParamSseu>() {
        return Err(Errno::INVAL);
    }
    let data = user.read(p.value, p.size as usize)?;
    let s = I915ContextParamSseu::read_from(&data).ok_or(Errno::INVAL)?;
    if s.flags & !I915_CONTEXT_SSEU_FLAG_ENGINE_INDEX != 0 || s.rsvd != 0 {
        return Err(Errno::INVAL);
    }
    let engine = match s.flags & I915_CONTEXT_SSEU_FLAG_ENGINE_INDEX {
        0 => (s.engine[0], s.engine[1]),
        _ => *ctx
            .engines
            .as_ref()
            .and_then(|m| m.get(usize::from(s.engine[1])))
            .ok_or(Errno::INVAL)?,
    };
    if engine.0 != I915_ENGINE_CLASS_RENDER {
        return Err(Errno::NODEV);
    }
    if engine.1 != 0
        || s.slice_mask != 1
        || s.subslice_mask == 0
        || s.subslice_mask & !0xff != 0
        || s.min_eus_per_subslice == 0
        || s.min_eus_per_subslice > s.max_eus_per_subslice
        || s.max_eus_per_subslice > 8
    {
        return Err(Errno::INVAL);
    }
    Ok(data)
}
