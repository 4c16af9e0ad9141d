//! The i915 context's parameters and queries, and where its objects go:
//! GETPARAM and QUERYPARAM answers (forwarded to a host GPU or answered
//! by the emulated device), GEM_CREATE_EXT placements, and the mapping
//! caching GEM_SET_MMAP_MODE configures.
//!
//! Must not: write responses into the response memory (the context does).

use vgpu_backend::{BufferManager, Place, Placement};
use vgpu_proto::native::*;
use zerocopy::little_endian::{I32, U32, U64};
use zerocopy::IntoBytes;

use crate::config::DeviceConfig;
use crate::resource::{MapCaching, ResourceId};

use super::i915::{error_response, hdr, rsp, set_len, NativeEnv};

/// DRM_I915_QUERY items passed to the host kernel: read-only device
/// descriptions that take no input (TOPOLOGY_INFO, ENGINE_INFO,
/// HWCONFIG_BLOB, GUC_SUBMISSION_VERSION).
const FORWARDED_QUERIES: [u32; 4] = [1, 2, 5, 7];

/// GETPARAM's response: the host GPU's own answer (features, topology,
/// ids) on an Intel host, the emulated device's otherwise.
pub(super) fn getparam_response(req: &GetParamReq, env: &NativeEnv<'_>) -> Vec<u8> {
    let param = req.param.get();
    let (ret, value) = match env.bm.gpu_kernel() {
        Some(kernel) => match kernel.getparam(param as i32) {
            Ok(v) => (0, v as u32),
            Err(e) => (e.raw_os_error(), GETPARAM_UNSET),
        },
        None => match getparam(param, env.cfg) {
            Some(v) => (0, v),
            None => (EINVAL, GETPARAM_UNSET),
        },
    };
    rsp(GetParamRsp {
        hdr: hdr::<GetParamRsp>(),
        pad: 0.into(),
        ret: I32::new(ret),
        value: value.into(),
    })
}

/// QUERYPARAM's response; `room` bounds the result (it cannot be
/// delivered anyway if it does not fit the response memory).
pub(super) fn queryparam(req: &QueryParamReq, room: u64, env: &NativeEnv<'_>) -> Vec<u8> {
    let want = u64::from(req.length.get());
    let mut out = rsp(QueryParamRsp {
        hdr: hdr::<QueryParamRsp>(),
        pad: 0.into(),
        ret: I32::new(0),
        length: I32::new(0),
    });
    // The response cannot be delivered anyway if it does not fit.
    if want > room {
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
pub(super) fn getparam(p: u32, cfg: &DeviceConfig) -> Option<u32> {
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
pub(super) fn wants_device_memory(extensions: &[CreateExtension<'_>]) -> bool {
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
pub(super) fn set_mmap_mode(
    req: &GemSetMmapModeReq,
    env: &mut NativeEnv<'_>,
) -> Result<(), String> {
    let res_id = req.res_id.get();
    let ctx_id = env.ctx_id;
    let r = env
        .resources
        .get_mut(&ResourceId(res_id))
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
pub(super) fn placement_from(
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
pub(super) fn memory_regions(bm: &BufferManager) -> Vec<u8> {
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

pub(crate) fn host_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}
