//! The fake xe's ioctls, as `XeKernel` issues them: DEVICE_QUERY (memory
//! regions and config, with xe's rule that a non-zero size must be the
//! exact size), GEM_CREATE (placement bits, flags, CPU caching, page
//! alignment) and GEM_MMAP_OFFSET; GEM_CLOSE and PRIME export are `gem`'s.
//! xe has no buffer madvise, contexts or execbuffer: those requests are
//! EINVAL, as for any ioctl a driver does not have.

use rustix::io::Errno;

use super::gem::{self, State};
use super::user::{with_arg, UserMem};
use super::{FakeKernel, FAKE_DEVICE_ID};
use crate::intel::uapi::*;
use crate::types::MemoryClass;

const PAGE: u64 = 4096;
/// xe's VRAM regions have 64K pages (`min_page_size`).
const VRAM_PAGE: u64 = 64 << 10;

pub(super) fn ioctl(
    k: &FakeKernel,
    st: &mut State,
    user: &UserMem,
    request: u32,
    kdata: &mut [u8],
) -> Result<(), Errno> {
    match request {
        DRM_IOCTL_XE_DEVICE_QUERY => with_arg(kdata, |q: &mut XeDeviceQuery| {
            if q.extensions != 0 || q.reserved != [0; 2] {
                return Err(Errno::INVAL);
            }
            let data = match q.query {
                DRM_XE_DEVICE_QUERY_MEM_REGIONS => mem_regions(k, st),
                DRM_XE_DEVICE_QUERY_CONFIG => config(k),
                _ => return Err(Errno::INVAL),
            };
            let size = u32::try_from(data.len()).map_err(|_| Errno::INVAL)?;
            match q.size {
                0 => {
                    q.size = size;
                    Ok(())
                }
                s if s != size => Err(Errno::INVAL),
                _ => user.write(q.data, &data),
            }
        }),
        DRM_IOCTL_XE_GEM_CREATE => with_arg(kdata, |c: &mut XeGemCreate| create(k, st, c)),
        DRM_IOCTL_XE_GEM_MMAP_OFFSET => with_arg(kdata, |m: &mut XeGemMmapOffset| {
            if m.extensions != 0 || m.flags != 0 || m.reserved != [0; 2] {
                return Err(Errno::INVAL);
            }
            let o = st.object_mut(m.handle)?;
            o.offset_given = true;
            m.offset = o.offset;
            Ok(())
        }),
        _ => gem::common(st, request, kdata),
    }
}

fn page_of(class: MemoryClass) -> u64 {
    match class {
        MemoryClass::System => PAGE,
        MemoryClass::Device => VRAM_PAGE,
    }
}

/// The DRM_XE_DEVICE_QUERY_MEM_REGIONS reply.
fn mem_regions(k: &FakeKernel, st: &State) -> Vec<u8> {
    let mut out = XeQueryMemRegions {
        num_mem_regions: k.regions.len() as u32,
        pad: 0,
    }
    .as_bytes()
    .to_vec();
    for i in 0..k.regions.len() {
        let Some(r) = k.region_now(st, i) else {
            continue;
        };
        let used = r.size.saturating_sub(r.free.unwrap_or(r.size));
        let vram = r.class == MemoryClass::Device;
        let region = XeMemRegion {
            mem_class: match r.class {
                MemoryClass::System => DRM_XE_MEM_REGION_CLASS_SYSMEM,
                MemoryClass::Device => DRM_XE_MEM_REGION_CLASS_VRAM,
            },
            instance: r.instance,
            min_page_size: page_of(r.class) as u32,
            total_size: r.size,
            used,
            cpu_visible_size: if vram { r.size } else { 0 },
            cpu_visible_used: if vram { used } else { 0 },
            ..Default::default()
        };
        out.extend_from_slice(region.as_bytes());
    }
    out
}

/// The DRM_XE_DEVICE_QUERY_CONFIG reply: device id (revision 8), flags,
/// alignment, VA bits, the highest exec-queue priority.
fn config(k: &FakeKernel) -> Vec<u8> {
    let mut values = [0u64; 5];
    values[DRM_XE_QUERY_CONFIG_REV_AND_DEVICE_ID] = (8 << 16) | u64::from(FAKE_DEVICE_ID);
    values[DRM_XE_QUERY_CONFIG_FLAGS] = if k.discrete() {
        DRM_XE_QUERY_CONFIG_FLAG_HAS_VRAM
    } else {
        0
    };
    values[DRM_XE_QUERY_CONFIG_MIN_ALIGNMENT] = if k.discrete() { VRAM_PAGE } else { PAGE };
    values[DRM_XE_QUERY_CONFIG_VA_BITS] = 48;
    values[DRM_XE_QUERY_CONFIG_MAX_EXEC_QUEUE_PRIORITY] = 2;
    let mut out = XeQueryConfig {
        num_params: values.len() as u32,
        pad: 0,
    }
    .as_bytes()
    .to_vec();
    for v in values {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out
}

/// GEM_CREATE: xe's checks, then the first placement (by bit) with room.
fn create(k: &FakeKernel, st: &mut State, c: &mut XeGemCreate) -> Result<(), Errno> {
    let flags = DRM_XE_GEM_CREATE_FLAG_DEFER_BACKING
        | DRM_XE_GEM_CREATE_FLAG_SCANOUT
        | DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM;
    // Extensions (PXP) are not modelled.
    if c.extensions != 0
        || c.handle != 0
        || c.pad != [0; 3]
        || c.reserved != [0; 2]
        || c.flags & !flags != 0
    {
        return Err(Errno::INVAL);
    }
    let placements: Vec<usize> = (0..k.regions.len())
        .filter(|i| {
            let bit = u32::from(k.regions[*i].instance);
            bit < 32 && c.placement & (1 << bit) != 0
        })
        .collect();
    let all: u32 = k
        .regions
        .iter()
        .filter(|r| r.instance < 32)
        .map(|r| 1u32 << r.instance)
        .fold(0, |a, b| a | b);
    if c.placement == 0 || c.placement & !all != 0 {
        return Err(Errno::INVAL);
    }
    let vram = placements
        .iter()
        .any(|i| k.regions[*i].class == MemoryClass::Device);
    let caching_ok = match c.cpu_caching {
        DRM_XE_GEM_CPU_CACHING_WB => !vram,
        DRM_XE_GEM_CPU_CACHING_WC => true,
        _ => false,
    };
    let page = match vram {
        true => VRAM_PAGE,
        false => PAGE,
    };
    if !caching_ok
        || (c.flags & DRM_XE_GEM_CREATE_FLAG_NEEDS_VISIBLE_VRAM != 0 && !vram)
        || c.size == 0
        || c.size % page != 0
    {
        return Err(Errno::INVAL);
    }
    // The fake has no xe VMs: a VM-private object names an unknown VM.
    if c.vm_id != 0 {
        return Err(Errno::NOENT);
    }
    c.handle = st.create(&k.regions, c.size, &placements, c.flags)?;
    Ok(())
}
