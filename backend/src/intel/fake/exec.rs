//! The fake i915's GEM_EXECBUFFER2: the exec objects and each object's
//! relocations read through their pointers, i915's checks (in i915's
//! order: flags, context, engine, handles, purgeable objects, duplicates,
//! batch range, relocation targets), relocations applied to the objects'
//! pages with `presumed_offset` written back, each exec object's GPU
//! address written back, and an out-fence (an eventfd) in the upper half
//! of `rsvd2` with FENCE_OUT. The objects stay busy until
//! `FakeKernel::complete_all`.

use std::collections::HashSet;
use std::mem::offset_of;
use std::os::fd::IntoRawFd;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use super::gem::State;
use super::user::{with_arg, UserMem};
use super::FakeSubmission;
use crate::intel::uapi::*;

/// The most exec objects one call takes.
const MAX_BUFFERS: u32 = 1 << 16;

pub(super) fn execbuffer2(
    st: &mut State,
    user: &UserMem,
    request: u32,
    kdata: &mut [u8],
) -> Result<(), Errno> {
    let out_fence = request == DRM_IOCTL_I915_GEM_EXECBUFFER2_WR;
    with_arg(kdata, |eb: &mut I915GemExecbuffer2| {
        run(st, user, out_fence, eb)
    })
}

/// The engine `flags` select on context `ctx`: an index into its engine
/// map, or a legacy ring.
fn check_engine(st: &State, ctx: u32, flags: u64) -> Result<(), Errno> {
    let c = st.contexts.get(&ctx).ok_or(Errno::NOENT)?;
    let ring = flags & I915_EXEC_RING_MASK;
    match &c.engines {
        Some(map) => match map.get(ring as usize) {
            Some(slot) if slot.0 != I915_ENGINE_CLASS_INVALID => Ok(()),
            _ => Err(Errno::INVAL),
        },
        None => {
            if ring > I915_EXEC_VEBOX || (ring != I915_EXEC_BSD && flags & I915_EXEC_BSD_MASK != 0)
            {
                return Err(Errno::INVAL);
            }
            Ok(())
        }
    }
}

fn run(
    st: &mut State,
    user: &UserMem,
    out_fence: bool,
    eb: &mut I915GemExecbuffer2,
) -> Result<(), Errno> {
    let known = (I915_EXEC_USE_EXTENSIONS << 1) - 1;
    // Input fences, fence arrays and extensions are not modelled.
    let unmodelled = I915_EXEC_FENCE_IN
        | I915_EXEC_FENCE_SUBMIT
        | I915_EXEC_FENCE_ARRAY
        | I915_EXEC_USE_EXTENSIONS;
    if eb.flags & !known != 0 || eb.flags & unmodelled != 0 {
        return Err(Errno::INVAL);
    }
    // A Gen12 part: no secure batches, no Gen7 SOL reset.
    if eb.flags & I915_EXEC_SECURE != 0 {
        return Err(Errno::NODEV);
    }
    if eb.flags & I915_EXEC_GEN7_SOL_RESET != 0
        || (eb.flags & I915_EXEC_FENCE_OUT != 0 && !out_fence)
        || eb.num_cliprects != 0
        || eb.cliprects_ptr != 0
        || eb.dr1 != 0
        || eb.dr4 != 0
        || eb.buffer_count == 0
        || eb.buffer_count > MAX_BUFFERS
        || eb.batch_start_offset % 8 != 0
        || eb.batch_len % 8 != 0
    {
        return Err(Errno::INVAL);
    }
    let ctx = (eb.rsvd1 & I915_EXEC_CONTEXT_ID_MASK) as u32;
    check_engine(st, ctx, eb.flags)?;
    let count = eb.buffer_count as usize;
    let objs: Vec<I915ExecObject2> = user.read_array(eb.buffers_ptr, count)?;
    let mut seen = HashSet::new();
    for o in &objs {
        if o.flags & !((EXEC_OBJECT_CAPTURE << 1) - 1) != 0 {
            return Err(Errno::INVAL);
        }
        let obj = st.object(o.handle)?;
        // Its pages cannot be pinned: i915 says EFAULT. (A DONTNEED
        // object whose pages the kernel still holds runs.)
        if obj.purged || (obj.dontneed && !obj.pages) {
            return Err(Errno::FAULT);
        }
        if !seen.insert(o.handle) {
            return Err(Errno::INVAL);
        }
    }
    let batch = match eb.flags & I915_EXEC_BATCH_FIRST {
        0 => count - 1,
        _ => 0,
    };
    let batch_size = st.object(objs[batch].handle)?.size;
    let start = u64::from(eb.batch_start_offset);
    let end = match eb.batch_len {
        0 => batch_size,
        n => start + u64::from(n),
    };
    if start >= batch_size || end > batch_size {
        return Err(Errno::INVAL);
    }
    // Every relocation, checked before any is applied.
    let lut = eb.flags & I915_EXEC_HANDLE_LUT != 0;
    let mut relocs = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        if o.relocation_count == 0 {
            continue;
        }
        let size = st.object(o.handle)?.size;
        let list: Vec<I915RelocationEntry> =
            user.read_array(o.relocs_ptr, o.relocation_count as usize)?;
        for (j, r) in list.into_iter().enumerate() {
            let target = match lut {
                true => objs.get(r.target_handle as usize).map(|t| t.handle),
                false => seen.get(&r.target_handle).copied(),
            }
            .ok_or(Errno::NOENT)?;
            if r.offset % 4 != 0 || r.offset.checked_add(8).is_none_or(|e| e > size) {
                return Err(Errno::INVAL);
            }
            relocs.push((i, j, target, r));
        }
    }
    let no_reloc = eb.flags & I915_EXEC_NO_RELOC != 0;
    let each = size_of::<I915RelocationEntry>() as u64;
    for (i, j, target, r) in &relocs {
        let addr = st.object(*target)?.gpu_addr;
        if no_reloc && r.presumed_offset == addr {
            continue;
        }
        let value = addr.wrapping_add(u64::from(r.delta));
        st.object(objs[*i].handle)?
            .file
            .write_at(r.offset, &value.to_le_bytes())
            .map_err(|_| Errno::FAULT)?;
        let at = objs[*i].relocs_ptr
            + *j as u64 * each
            + offset_of!(I915RelocationEntry, presumed_offset) as u64;
        user.write_pod(at, &addr)?;
    }
    for (i, o) in objs.iter().enumerate() {
        let addr = st.object(o.handle)?.gpu_addr;
        let at = eb.buffers_ptr
            + (i * size_of::<I915ExecObject2>()) as u64
            + offset_of!(I915ExecObject2, offset) as u64;
        user.write_pod(at, &addr)?;
    }
    let fence = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    if eb.flags & I915_EXEC_FENCE_OUT != 0 {
        let theirs = fence
            .try_clone()
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::MFILE))?;
        // The caller owns the new descriptor, as one a kernel installs.
        let fd = theirs.into_raw_fd() as u32;
        eb.rsvd2 = (eb.rsvd2 & 0xffff_ffff) | (u64::from(fd) << 32);
    }
    let handles: Vec<u32> = objs.iter().map(|o| o.handle).collect();
    for h in &handles {
        if let Ok(o) = st.object_mut(*h) {
            // Bound for the GPU: the kernel got its pages.
            o.pages = true;
            o.busy = true;
        }
    }
    st.submissions.push(FakeSubmission {
        context: ctx,
        handles: handles.clone(),
        reloc_targets: relocs.iter().map(|r| r.3.target_handle).collect(),
        flags: eb.flags,
        batch: (eb.batch_start_offset, eb.batch_len),
    });
    st.running.push((fence, handles));
    Ok(())
}
