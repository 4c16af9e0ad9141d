//! The fake i915's buffer and device ioctls: GETPARAM, QUERY,
//! GEM_CREATE_EXT, GEM_MMAP_OFFSET, GEM_MADVISE, GEM_BUSY, GEM_WAIT, and
//! the pointer-free REG_READ, GET_APERTURE, SET/GET_TILING and
//! SET_DOMAIN; contexts and execbuffer are in `context` and `exec`.

use std::mem::offset_of;

use rustix::io::Errno;

use super::gem::{self, State};
use super::user::{with_arg, UserMem};
use super::{context, exec, FakeKernel, FAKE_DEVICE_ID, FAKE_TIMESTAMP_HZ, FAKE_TOPOLOGY};
use crate::intel::uapi::*;
use crate::types::MemoryClass;

/// The most extensions a chain may have (i915_user_extensions' limit).
pub(super) const MAX_EXTENSIONS: usize = 512;
const PAGE: u64 = 4096;
/// i915 backs device memory with 64K pages (DG2 and later).
const DEVICE_PAGE: u64 = 64 << 10;

pub(super) fn ioctl(
    k: &FakeKernel,
    st: &mut State,
    user: &UserMem,
    request: u32,
    kdata: &mut [u8],
) -> Result<(), Errno> {
    match request {
        DRM_IOCTL_I915_GETPARAM => with_arg(kdata, |g: &mut I915GetParam| getparam(user, g)),
        DRM_IOCTL_I915_QUERY => with_arg(kdata, |q: &mut I915Query| query(k, st, user, q)),
        DRM_IOCTL_I915_GEM_CREATE_EXT => {
            with_arg(kdata, |c: &mut I915GemCreateExt| create_ext(k, st, user, c))
        }
        DRM_IOCTL_I915_GEM_MMAP_OFFSET => with_arg(kdata, |m: &mut I915GemMmapOffset| {
            if m.extensions != 0 || m.pad != 0 {
                return Err(Errno::INVAL);
            }
            let supported = match m.flags {
                // Discrete parts map by placement only; integrated ones
                // have no FIXED, and the fake no GTT aperture.
                I915_MMAP_OFFSET_FIXED => k.discrete(),
                I915_MMAP_OFFSET_WB | I915_MMAP_OFFSET_WC | I915_MMAP_OFFSET_UC => !k.discrete(),
                I915_MMAP_OFFSET_GTT => false,
                _ => return Err(Errno::INVAL),
            };
            let o = st.object_mut(m.handle)?;
            if !supported {
                return Err(Errno::NODEV);
            }
            o.offset_given = true;
            m.offset = o.offset;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_MADVISE => with_arg(kdata, |m: &mut I915GemMadvise| {
            if m.madv != I915_MADV_WILLNEED && m.madv != I915_MADV_DONTNEED {
                return Err(Errno::INVAL);
            }
            let o = st.object_mut(m.handle)?;
            if !o.purged {
                o.dontneed = m.madv == I915_MADV_DONTNEED;
            }
            // i915_gem_madvise_ioctl: "if the object is no longer
            // attached, discard its backing storage" — a DONTNEED object
            // without pages (never populated, or its pages already gone)
            // is truncated now, and this very call says not retained.
            if o.dontneed && !o.pages && !o.purged {
                o.truncate();
            }
            m.retained = u32::from(!o.purged);
            if m.madv == I915_MADV_DONTNEED && o.maps > 0 {
                k.hazard("DONTNEED of a CPU-mapped object", m.handle);
            }
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_BUSY => with_arg(kdata, |b: &mut I915GemBusy| {
            // Busy: read by the render class (bit 16), written by it (1).
            b.busy = if st.object(b.handle)?.busy {
                0x1_0001
            } else {
                0
            };
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_WAIT => with_arg(kdata, |w: &mut I915GemWait| {
            if w.flags != 0 {
                return Err(Errno::INVAL);
            }
            // A fake GPU makes no progress while one waits: the time is
            // up at once.
            match st.object(w.bo_handle)?.busy {
                true => {
                    w.timeout_ns = 0;
                    Err(Errno::TIME)
                }
                false => Ok(()),
            }
        }),
        DRM_IOCTL_I915_REG_READ => with_arg(kdata, |r: &mut I915RegRead| {
            let flags = r.offset & 0x7;
            if r.offset & !0x7 != I915_REG_RENDER_RING_TIMESTAMP {
                return Err(Errno::INVAL);
            }
            r.val = match flags {
                // The plain 64-bit read gives only the low dword reliably
                // on the parts that need the workaround.
                0 => k.timestamp() & 0xffff_ffff,
                I915_REG_READ_8B_WA => k.timestamp(),
                _ => return Err(Errno::INVAL),
            };
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_GET_APERTURE => with_arg(kdata, |a: &mut I915GemGetAperture| {
            let n = k.regions.len();
            a.aper_size = k.regions.iter().map(|r| r.size).sum();
            a.aper_available_size = (0..n).filter_map(|i| k.region_now(st, i)?.free).sum();
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_SET_TILING => with_arg(kdata, |t: &mut I915GemSetTiling| {
            let o = st.object_mut(t.handle)?;
            let width = match t.tiling_mode {
                I915_TILING_NONE => 0,
                I915_TILING_X => 512,
                I915_TILING_Y => 128,
                _ => return Err(Errno::INVAL),
            };
            if width == 0 {
                t.stride = 0;
            } else if t.stride == 0 || t.stride > 256 << 10 || t.stride % width != 0 {
                return Err(Errno::INVAL);
            }
            o.tiling = (t.tiling_mode, t.stride);
            t.swizzle_mode = I915_BIT_6_SWIZZLE_NONE;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_GET_TILING => with_arg(kdata, |t: &mut I915GemGetTiling| {
            t.tiling_mode = st.object(t.handle)?.tiling.0;
            t.swizzle_mode = I915_BIT_6_SWIZZLE_NONE;
            t.phys_swizzle_mode = I915_BIT_6_SWIZZLE_NONE;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_SET_DOMAIN => with_arg(kdata, |d: &mut I915GemSetDomain| {
            // i915_gem_object_pin_pages: a purged object has none to
            // give (EFAULT); any other gets its pages now.
            let o = st.object_mut(d.handle)?;
            if o.purged {
                return Err(Errno::FAULT);
            }
            o.pages = true;
            Ok(())
        }),
        DRM_IOCTL_I915_GEM_EXECBUFFER2 | DRM_IOCTL_I915_GEM_EXECBUFFER2_WR => {
            exec::execbuffer2(st, user, request, kdata)
        }
        r if context::REQUESTS.contains(&r) => context::ioctl(st, user, r, kdata),
        _ => gem::common(st, request, kdata),
    }
}

/// CHIPSET_ID (an Alchemist part's id), REVISION and the timestamp
/// frequency; other parameters are EINVAL, as for parameters a kernel does
/// not know. The value goes through the `value` pointer.
fn getparam(user: &UserMem, g: &mut I915GetParam) -> Result<(), Errno> {
    let value: i32 = match g.param {
        I915_PARAM_CHIPSET_ID => FAKE_DEVICE_ID as i32,
        I915_PARAM_REVISION => 8,
        I915_PARAM_CS_TIMESTAMP_FREQUENCY => FAKE_TIMESTAMP_HZ as i32,
        _ => return Err(Errno::INVAL),
    };
    user.write_pod(g.value, &value)
}

/// DRM_I915_QUERY: each item read through `items_ptr`, answered in its
/// `length` (the total length when 0 was asked, -EINVAL when the buffer is
/// too small or the item unknown, -EFAULT when the data cannot be
/// written), the data written through its `data_ptr`.
fn query(k: &FakeKernel, st: &State, user: &UserMem, q: &mut I915Query) -> Result<(), Errno> {
    if q.flags != 0 {
        return Err(Errno::INVAL);
    }
    for i in 0..u64::from(q.num_items) {
        let at = i
            .checked_mul(size_of::<I915QueryItem>() as u64)
            .and_then(|o| o.checked_add(q.items_ptr))
            .ok_or(Errno::FAULT)?;
        let item: I915QueryItem = user.read_pod(at)?;
        let length = query_item(k, st, user, &item);
        user.write_pod(at + offset_of!(I915QueryItem, length) as u64, &length)?;
    }
    Ok(())
}

fn query_item(k: &FakeKernel, st: &State, user: &UserMem, item: &I915QueryItem) -> i32 {
    let einval = -Errno::INVAL.raw_os_error();
    if item.flags != 0 {
        return einval;
    }
    let data = match st.query_items.get(&item.query_id) {
        Some(Some(d)) => d.clone(),
        Some(None) => return einval,
        None => match item.query_id {
            I915_QUERY_TOPOLOGY_INFO => FAKE_TOPOLOGY.to_vec(),
            I915_QUERY_MEMORY_REGIONS => memory_regions(k, st),
            _ => return einval,
        },
    };
    let Ok(total) = i32::try_from(data.len()) else {
        return einval;
    };
    if item.length == 0 {
        return total;
    }
    if item.length < total {
        return einval;
    }
    match user.write(item.data_ptr, &data) {
        Ok(()) => total,
        Err(e) => -e.raw_os_error(),
    }
}

/// The DRM_I915_QUERY_MEMORY_REGIONS reply: every region, its size and
/// what is free in it, all CPU-visible.
fn memory_regions(k: &FakeKernel, st: &State) -> Vec<u8> {
    let mut out = I915QueryMemoryRegions {
        num_regions: k.regions.len() as u32,
        ..Default::default()
    }
    .as_bytes()
    .to_vec();
    for i in 0..k.regions.len() {
        let Some(r) = k.region_now(st, i) else {
            continue;
        };
        let free = r.free.unwrap_or(r.size);
        let mut rsvd1 = [0u64; 8];
        rsvd1[0] = r.size;
        rsvd1[1] = free;
        let info = I915MemoryRegionInfo {
            region: [class_of(r.class), r.instance],
            probed_size: r.size,
            unallocated_size: free,
            rsvd1,
            ..Default::default()
        };
        out.extend_from_slice(info.as_bytes());
    }
    out
}

fn class_of(c: MemoryClass) -> u16 {
    match c {
        MemoryClass::System => I915_MEMORY_CLASS_SYSTEM,
        MemoryClass::Device => I915_MEMORY_CLASS_DEVICE,
    }
}

/// GEM_CREATE_EXT: the size rounded up to the placement's page size (and
/// written back), the extension chain walked through its pointers; only
/// MEMORY_REGIONS is modelled. Without it, system memory.
fn create_ext(
    k: &FakeKernel,
    st: &mut State,
    user: &UserMem,
    c: &mut I915GemCreateExt,
) -> Result<(), Errno> {
    if c.flags & !I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS != 0 {
        return Err(Errno::INVAL);
    }
    let mut placements: Option<Vec<usize>> = None;
    let mut next = c.extensions;
    let mut n = 0;
    while next != 0 {
        n += 1;
        if n > MAX_EXTENSIONS {
            return Err(Errno::TOOBIG);
        }
        let ext: I915UserExtension = user.read_pod(next)?;
        if ext.flags != 0 || ext.rsvd != [0; 4] {
            return Err(Errno::INVAL);
        }
        match ext.name {
            I915_GEM_CREATE_EXT_MEMORY_REGIONS if placements.is_none() => {
                let mr: I915CreateExtMemoryRegions = user.read_pod(next)?;
                let count = mr.num_regions as usize;
                if mr.pad != 0 || count == 0 || count > k.regions.len() {
                    return Err(Errno::INVAL);
                }
                let mut list = Vec::with_capacity(count);
                for ci in user.read_array::<I915MemoryClassInstance>(mr.regions, count)? {
                    let i = k
                        .regions
                        .iter()
                        .position(|r| {
                            class_of(r.class) == ci.memory_class && r.instance == ci.memory_instance
                        })
                        .ok_or(Errno::INVAL)?;
                    if list.contains(&i) {
                        return Err(Errno::INVAL);
                    }
                    list.push(i);
                }
                placements = Some(list);
            }
            _ => return Err(Errno::INVAL),
        }
        next = ext.next_extension;
    }
    let placements = placements.unwrap_or_else(|| vec![0]);
    let device = |i: &usize| k.regions[*i].class == MemoryClass::Device;
    // NEEDS_CPU_ACCESS: only with device memory, and never without
    // system memory to spill to.
    if c.flags & I915_GEM_CREATE_EXT_FLAG_NEEDS_CPU_ACCESS != 0
        && (placements.len() < 2 || !placements.contains(&0))
    {
        return Err(Errno::INVAL);
    }
    let page = match placements.iter().any(device) {
        true => DEVICE_PAGE,
        false => PAGE,
    };
    let size = match c.size {
        0 => return Err(Errno::INVAL),
        s => s.checked_next_multiple_of(page).ok_or(Errno::TOOBIG)?,
    };
    c.handle = st.create(&k.regions, size, &placements, c.flags)?;
    c.size = size;
    Ok(())
}
