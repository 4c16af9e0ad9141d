//! Conformance of vgpu's i915 native context with upstream's: every row is
//! one behaviour of virglrenderer's i915 context (`src/drm/drm_context.c`,
//! `src/drm/i915/i915_ccmd.c`, `src/drm_hw.h`) or, where upstream forwards
//! to the kernel, of the Linux i915 driver an unprivileged process meets on
//! a Gen12 integrated part (`drivers/gpu/drm/i915/...`), which the emulated
//! device plays. Each request goes through the real daemon's vhost-user
//! socket; each expectation is the response bytes or errno upstream gives.
//!
//! Deliberate differences from upstream, each tested here:
//! * a request upstream fails as a whole (an ioctl outside the allow-list,
//!   a context parameter outside its list) is answered with `ret = EINVAL`
//!   and the stream goes on, instead of failing the SUBMIT_3D and leaving
//!   the guest waiting for a seqno that never comes;
//! * PRIORITY is compared as the signed value it is: lowering a context's
//!   priority is allowed (upstream's unsigned comparison refuses it, the
//!   kernel allows it);
//! * the handle field of SET/GET_TILING goes back as the guest's resource
//!   id, not the host's GEM handle.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use vgpu_backend::{ShrinkMode, ShrinkRequest};
use vgpu_device::config::DeviceConfig;
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::vmm::{Vmm, VmmOptions};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const PAGE: u64 = 4096;
/// The resource the tiling and domain rows work on.
const BUF: u32 = 200;

fn setup() -> (RunningBackend, Vmm, NativeContext) {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    let nc = NativeContext::create(&mut vmm, 1, 100, 0).unwrap();
    (backend, vmm, nc)
}

fn system() -> [MemoryClassInstance; 1] {
    [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)]
}

/// What a row expects of the argument the response carries back.
enum Back {
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// Zeros: refused before anything ran (upstream's zeroed response).
    Zeros,
    /// The argument as sent: the ioctl failed without writing it.
    Unchanged,
    /// Nothing: the ioctl writes nothing back (`_IOW`).
    Nothing,
    /// A property of the bytes.
    Check(fn(&[u8]) -> bool, &'static str),
}

struct Row {
    /// The upstream code this row mirrors.
    upstream: &'static str,
    /// The behaviour.
    what: &'static str,
    ioctl: u32,
    arg: Vec<u8>,
    ret: i32,
    back: Back,
}

fn row(
    upstream: &'static str,
    what: &'static str,
    ioctl: u32,
    arg: &(impl IntoBytes + Immutable),
    ret: i32,
    back: Back,
) -> Row {
    row_bytes(upstream, what, ioctl, arg.as_bytes().to_vec(), ret, back)
}

fn row_bytes(
    upstream: &'static str,
    what: &'static str,
    ioctl: u32,
    arg: Vec<u8>,
    ret: i32,
    back: Back,
) -> Row {
    Row {
        upstream,
        what,
        ioctl,
        arg,
        ret,
        back,
    }
}

fn bytes(v: &(impl IntoBytes + Immutable)) -> Vec<u8> {
    v.as_bytes().to_vec()
}

fn tiling(handle: u32, mode: u32, stride: u32) -> GemSetTiling {
    GemSetTiling {
        handle: handle.into(),
        tiling_mode: mode.into(),
        stride: stride.into(),
        swizzle_mode: 0.into(),
    }
}

fn get_tiling(handle: u32, mode: u32) -> GemGetTiling {
    GemGetTiling {
        handle: handle.into(),
        tiling_mode: mode.into(),
        ..GemGetTiling::default()
    }
}

fn domain(handle: u32, read: u32, write: u32) -> GemSetDomain {
    GemSetDomain {
        handle: handle.into(),
        read_domains: read.into(),
        write_domain: write.into(),
    }
}

fn create(ctx: u32, pad: u32) -> GemContextCreate {
    GemContextCreate {
        ctx_id: ctx.into(),
        pad: pad.into(),
    }
}

fn destroy(ctx: u32, pad: u32) -> GemContextDestroy {
    GemContextDestroy {
        ctx_id: ctx.into(),
        pad: pad.into(),
    }
}

fn param(ctx: u32, param: u64, size: u32, value: u64) -> GemContextParam {
    GemContextParam {
        ctx_id: ctx.into(),
        size: size.into(),
        param: param.into(),
        value: value.into(),
    }
}

fn vm(extensions: u64, flags: u32, vm_id: u32) -> GemVmControl {
    GemVmControl {
        extensions: extensions.into(),
        flags: flags.into(),
        vm_id: vm_id.into(),
    }
}

fn reg(offset: u64) -> RegRead {
    RegRead {
        offset: offset.into(),
        val: 0.into(),
    }
}

fn stats(ctx: u32, flags: u32) -> ResetStats {
    ResetStats {
        ctx_id: ctx.into(),
        flags: flags.into(),
        ..ResetStats::default()
    }
}

const CCMD: &str = "i915_ccmd.c i915_ccmd_ioctl_simple";
const REG: &str = "i915_ioctl.c i915_reg_read_ioctl";
const TIL: &str = "i915_gem_tiling.c i915_gem_set_tiling_ioctl";
const GTIL: &str = "i915_gem_tiling.c i915_gem_get_tiling_ioctl";
const DOM: &str = "i915_gem_domain.c i915_gem_set_domain_ioctl";
const CTX: &str = "i915_gem_context.c";

/// DRM_IOCTL_I915_GEM_CREATE: real, but not in the allow-list.
const DRM_IOCTL_I915_GEM_CREATE: u32 = 0xC010_645B;
/// DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT: CONTEXT_CREATE's number with
/// the 16-byte struct.
const DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT: u32 = 0xC010_646D;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn ioctl_simple_rows() -> Vec<Row> {
    use Back::*;
    let lower = (-100i64) as u64;
    vec![
        // ---- the allow-list --------------------------------------------
        row_bytes(
            CCMD,
            "an ioctl outside the allow-list is refused",
            DRM_IOCTL_I915_GEM_CREATE,
            vec![1; 16],
            EINVAL,
            Zeros,
        ),
        row_bytes(
            CCMD,
            "the request number is compared whole (CONTEXT_CREATE_EXT is not CONTEXT_CREATE)",
            DRM_IOCTL_I915_GEM_CONTEXT_CREATE_EXT,
            vec![0; 16],
            EINVAL,
            Zeros,
        ),
        // ---- REG_READ -----------------------------------------------------
        row(
            REG,
            "the render-ring timestamp, read as two halves",
            DRM_IOCTL_I915_REG_READ,
            &reg(0x2358 | 1),
            0,
            Check(
                |b| u64_at(b, 0) == 0x2359 && u64_at(b, 8) != 0,
                "offset echoed, a timestamp",
            ),
        ),
        row(
            REG,
            "the render-ring timestamp, read whole",
            DRM_IOCTL_I915_REG_READ,
            &reg(0x2358),
            0,
            Check(|b| u64_at(b, 8) != 0, "a timestamp"),
        ),
        row(
            REG,
            "flags other than 8B_WA",
            DRM_IOCTL_I915_REG_READ,
            &reg(0x235C),
            EINVAL,
            Unchanged,
        ),
        row(
            REG,
            "any other register",
            DRM_IOCTL_I915_REG_READ,
            &reg(0x4000),
            EINVAL,
            Unchanged,
        ),
        // ---- GET_APERTURE -------------------------------------------------
        row_bytes(
            "i915_gem.c i915_gem_get_aperture_ioctl",
            "the aperture and what of it is free",
            DRM_IOCTL_I915_GEM_GET_APERTURE,
            vec![0; 16],
            0,
            Check(
                |b| u64_at(b, 0) > 0 && u64_at(b, 8) <= u64_at(b, 0),
                "size > 0, available <= size",
            ),
        ),
        // ---- SET_TILING / GET_TILING -------------------------------------
        row(
            CCMD,
            "the first u32 is a resource id of the context; unknown: EINVAL",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(999, I915_TILING_X, 512),
            EINVAL,
            Zeros,
        ),
        row(
            TIL,
            "X tiling, stride a multiple of 512; no swizzling on Gen12",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(BUF, I915_TILING_X, 512),
            0,
            Bytes(bytes(&tiling(BUF, I915_TILING_X, 512))),
        ),
        row(
            GTIL,
            "the tiling the buffer has",
            DRM_IOCTL_I915_GEM_GET_TILING,
            &get_tiling(BUF, 0),
            0,
            Bytes(bytes(&get_tiling(BUF, I915_TILING_X))),
        ),
        row(
            TIL,
            "X stride not a multiple of 512",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(BUF, I915_TILING_X, 100),
            EINVAL,
            Unchanged,
        ),
        row(
            TIL,
            "a tiling mode past I915_TILING_LAST",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(BUF, 3, 512),
            EINVAL,
            Unchanged,
        ),
        row(
            TIL,
            "a stride past the fence pitch limit (256 KiB)",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(BUF, I915_TILING_X, 512 * 1024),
            EINVAL,
            Unchanged,
        ),
        row(
            TIL,
            "Y tiling, stride a multiple of 128",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(BUF, I915_TILING_Y, 384),
            0,
            Bytes(bytes(&tiling(BUF, I915_TILING_Y, 384))),
        ),
        row(
            TIL,
            "no tiling: the stride goes back as 0",
            DRM_IOCTL_I915_GEM_SET_TILING,
            &tiling(BUF, I915_TILING_NONE, 4096),
            0,
            Bytes(bytes(&tiling(BUF, I915_TILING_NONE, 0))),
        ),
        row(
            GTIL,
            "unknown resource",
            DRM_IOCTL_I915_GEM_GET_TILING,
            &get_tiling(999, 0),
            EINVAL,
            Zeros,
        ),
        // ---- SET_DOMAIN (_IOW: nothing comes back) --------------------------
        row(
            DOM,
            "GTT read and write",
            DRM_IOCTL_I915_GEM_SET_DOMAIN,
            &domain(BUF, I915_GEM_DOMAIN_GTT, I915_GEM_DOMAIN_GTT),
            0,
            Nothing,
        ),
        row(
            DOM,
            "CPU read",
            DRM_IOCTL_I915_GEM_SET_DOMAIN,
            &domain(BUF, I915_GEM_DOMAIN_CPU, 0),
            0,
            Nothing,
        ),
        row(
            DOM,
            "a GPU domain",
            DRM_IOCTL_I915_GEM_SET_DOMAIN,
            &domain(BUF, 0x2, 0),
            EINVAL,
            Nothing,
        ),
        row(
            DOM,
            "a write domain other than the read domains",
            DRM_IOCTL_I915_GEM_SET_DOMAIN,
            &domain(BUF, I915_GEM_DOMAIN_CPU, I915_GEM_DOMAIN_GTT),
            EINVAL,
            Nothing,
        ),
        row(
            CCMD,
            "unknown resource",
            DRM_IOCTL_I915_GEM_SET_DOMAIN,
            &domain(999, I915_GEM_DOMAIN_CPU, 0),
            EINVAL,
            Nothing,
        ),
        // ---- GET_RESET_STATS --------------------------------------------
        row(
            CTX,
            "the default context has seen no hang",
            DRM_IOCTL_I915_GET_RESET_STATS,
            &stats(0, 0),
            0,
            Bytes(bytes(&stats(0, 0))),
        ),
        row(
            CTX,
            "flags must be 0",
            DRM_IOCTL_I915_GET_RESET_STATS,
            &stats(0, 1),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "unknown context",
            DRM_IOCTL_I915_GET_RESET_STATS,
            &stats(7, 0),
            ENOENT,
            Unchanged,
        ),
        // ---- CONTEXT_CREATE / CONTEXT_DESTROY --------------------------------
        row(
            CTX,
            "ids start at 1",
            DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
            &create(0, 0),
            0,
            Bytes(bytes(&create(1, 0))),
        ),
        row(
            CTX,
            "the next id",
            DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
            &create(0, 0),
            0,
            Bytes(bytes(&create(2, 0))),
        ),
        row(
            CTX,
            "pad is the _EXT flags: unknown ones refused",
            DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
            &create(0, 4),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "destroy",
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            &destroy(1, 0),
            0,
            Nothing,
        ),
        row(
            CTX,
            "the lowest free id is reused",
            DRM_IOCTL_I915_GEM_CONTEXT_CREATE,
            &create(0, 0),
            0,
            Bytes(bytes(&create(1, 0))),
        ),
        row(
            CTX,
            "the default context cannot be destroyed",
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            &destroy(0, 0),
            ENOENT,
            Nothing,
        ),
        row(
            CTX,
            "unknown context",
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            &destroy(9, 0),
            ENOENT,
            Nothing,
        ),
        row(
            CTX,
            "pad must be 0",
            DRM_IOCTL_I915_GEM_CONTEXT_DESTROY,
            &destroy(2, 1),
            EINVAL,
            Nothing,
        ),
        // ---- CONTEXT_GETPARAM / SETPARAM ---------------------------------
        row(
            CTX,
            "GTT_SIZE: a 48-bit PPGTT",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_GTT_SIZE, 0, 0),
            0,
            Bytes(bytes(&param(1, I915_CONTEXT_PARAM_GTT_SIZE, 0, 1 << 48))),
        ),
        row(
            CTX,
            "PRIORITY defaults to 0",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_PRIORITY, 0, 0),
            0,
            Bytes(bytes(&param(1, I915_CONTEXT_PARAM_PRIORITY, 0, 0))),
        ),
        row(
            CTX,
            "RECOVERABLE defaults to 1",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_RECOVERABLE, 0, 0),
            0,
            Bytes(bytes(&param(1, I915_CONTEXT_PARAM_RECOVERABLE, 0, 1))),
        ),
        row(
            CCMD,
            "parameters outside PRIORITY, RECOVERABLE, GTT_SIZE, VM are refused",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_BANNABLE, 0, 0),
            EINVAL,
            Zeros,
        ),
        row(
            CCMD,
            "a PRIORITY value above the default is refused, GETPARAM too",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_PRIORITY, 0, 5),
            EPERM,
            Zeros,
        ),
        row(
            CTX,
            "unknown context",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(9, I915_CONTEXT_PARAM_GTT_SIZE, 0, 0),
            ENOENT,
            Unchanged,
        ),
        row(
            CCMD,
            "raising the priority needs privileges",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_PRIORITY, 0, 1),
            EPERM,
            Zeros,
        ),
        row(
            CTX,
            "lowering it does not",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_PRIORITY, 0, lower),
            0,
            Unchanged,
        ),
        row(
            CTX,
            "the priority set",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_PRIORITY, 0, 0),
            0,
            Bytes(bytes(&param(1, I915_CONTEXT_PARAM_PRIORITY, 0, lower))),
        ),
        row(
            CTX,
            "priority range ±1023",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_PRIORITY, 0, (-2000i64) as u64),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "RECOVERABLE off",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_RECOVERABLE, 0, 0),
            0,
            Unchanged,
        ),
        row(
            CTX,
            "RECOVERABLE is off",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(1, I915_CONTEXT_PARAM_RECOVERABLE, 0, 7),
            0,
            Bytes(bytes(&param(1, I915_CONTEXT_PARAM_RECOVERABLE, 0, 0))),
        ),
        row(
            CTX,
            "RECOVERABLE takes no data",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_RECOVERABLE, 8, 0),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "GTT_SIZE cannot be set",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_GTT_SIZE, 0, 1 << 32),
            EINVAL,
            Unchanged,
        ),
        // ---- VM_CREATE / VM_DESTROY and the VM parameter -----------------------
        row(
            CTX,
            "VM ids start at 1",
            DRM_IOCTL_I915_GEM_VM_CREATE,
            &vm(0, 0, 0),
            0,
            Bytes(bytes(&vm(0, 0, 1))),
        ),
        row(
            CTX,
            "VM flags must be 0",
            DRM_IOCTL_I915_GEM_VM_CREATE,
            &vm(0, 1, 0),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "no VM extension exists",
            DRM_IOCTL_I915_GEM_VM_CREATE,
            &vm(0x1000, 0, 0),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "an unused context takes a VM",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(2, I915_CONTEXT_PARAM_VM, 0, 1),
            0,
            Unchanged,
        ),
        row(
            CTX,
            "an unknown VM id",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(2, I915_CONTEXT_PARAM_VM, 0, 9),
            ENOENT,
            Unchanged,
        ),
        row(
            CTX,
            "a context in use keeps its VM",
            DRM_IOCTL_I915_GEM_CONTEXT_SETPARAM,
            &param(1, I915_CONTEXT_PARAM_VM, 0, 1),
            EINVAL,
            Unchanged,
        ),
        row(
            CTX,
            "GETPARAM(VM) hands out a new VM id",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(2, I915_CONTEXT_PARAM_VM, 0, 0),
            0,
            Bytes(bytes(&param(2, I915_CONTEXT_PARAM_VM, 0, 2))),
        ),
        row(
            CTX,
            "… on every call",
            DRM_IOCTL_I915_GEM_CONTEXT_GETPARAM,
            &param(2, I915_CONTEXT_PARAM_VM, 0, 0),
            0,
            Bytes(bytes(&param(2, I915_CONTEXT_PARAM_VM, 0, 3))),
        ),
        row(
            CTX,
            "VM_DESTROY",
            DRM_IOCTL_I915_GEM_VM_DESTROY,
            &vm(0, 0, 1),
            0,
            Nothing,
        ),
        row(
            CTX,
            "an unknown VM id",
            DRM_IOCTL_I915_GEM_VM_DESTROY,
            &vm(0, 0, 1),
            ENOENT,
            Nothing,
        ),
        row(
            CTX,
            "VM_DESTROY flags must be 0",
            DRM_IOCTL_I915_GEM_VM_DESTROY,
            &vm(0, 1, 2),
            EINVAL,
            Nothing,
        ),
        row(
            CTX,
            "the lowest free VM id is reused",
            DRM_IOCTL_I915_GEM_VM_CREATE,
            &vm(0, 0, 0),
            0,
            Bytes(bytes(&vm(0, 0, 1))),
        ),
    ]
}

#[test]
fn every_allow_listed_ioctl_is_answered_as_upstream() {
    let (_b, mut vmm, mut nc) = setup();
    nc.gem_blob(&mut vmm, 1, BUF, 4 * PAGE, &system()).unwrap();
    let mut failures = Vec::new();
    for (i, r) in ioctl_simple_rows().iter().enumerate() {
        let (ret, back) = nc.ioctl(&mut vmm, r.ioctl, &r.arg).unwrap();
        let ok_back = match &r.back {
            Back::Bytes(want) => back == *want,
            Back::Zeros => back.len() == r.arg.len() && back.iter().all(|b| *b == 0),
            Back::Unchanged => back == r.arg,
            Back::Nothing => back.is_empty(),
            Back::Check(f, _) => back.len() == r.arg.len() && f(&back),
        };
        if ret != r.ret || !ok_back {
            failures.push(format!(
                "row {i} ({}: {}): ret {ret} (want {}), argument back {back:02x?}{}",
                r.upstream,
                r.what,
                r.ret,
                match &r.back {
                    Back::Check(_, why) => format!(" (want {why})"),
                    _ => String::new(),
                }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn set_domain_of_a_purged_buffer_is_efault() {
    // i915_gem_object_pin_pages of a purged object: EFAULT.
    let (b, mut vmm, mut nc) = setup();
    nc.gem_blob(&mut vmm, 1, BUF, PAGE, &system()).unwrap();
    nc.ioctl(
        &mut vmm,
        DRM_IOCTL_I915_GEM_SET_DOMAIN,
        domain(BUF, I915_GEM_DOMAIN_CPU, I915_GEM_DOMAIN_CPU).as_bytes(),
    )
    .unwrap();
    assert!(nc.madvise(&mut vmm, BUF, I915_MADV_DONTNEED).unwrap());
    let bm = b.buffer_manager().unwrap();
    let report = bm.shrink(&ShrinkRequest::new(u64::MAX, ShrinkMode::Lazy));
    assert_eq!(report.purged_objects, 1);
    let (ret, _) = nc
        .ioctl(
            &mut vmm,
            DRM_IOCTL_I915_GEM_SET_DOMAIN,
            domain(BUF, I915_GEM_DOMAIN_CPU, 0).as_bytes(),
        )
        .unwrap();
    assert_eq!(ret, 14, "EFAULT");
}

#[test]
fn tiling_of_a_buffer_on_screen_cannot_change() {
    // i915_gem_object_set_tiling: a framebuffer is EBUSY, and the
    // object's current tiling is written back.
    let (_b, mut vmm, mut nc) = setup();
    nc.gem_blob(&mut vmm, 1, BUF, 256 * PAGE, &system())
        .unwrap();
    let r = Rect::new(0, 0, 64, 64);
    let scanout = Command::SetScanoutBlob(SetScanoutBlob {
        hdr: hdr(CommandType::SetScanoutBlob),
        r,
        scanout_id: 0.into(),
        resource_id: BUF.into(),
        width: 64.into(),
        height: 64.into(),
        format: Format::B8G8R8X8Unorm.value().into(),
        padding: 0.into(),
        strides: [256.into(), 0.into(), 0.into(), 0.into()],
        offsets: [0.into(); 4],
    });
    ok(vmm.command(&scanout).unwrap().1).unwrap();
    let (ret, back) = nc
        .ioctl(
            &mut vmm,
            DRM_IOCTL_I915_GEM_SET_TILING,
            tiling(BUF, I915_TILING_X, 512).as_bytes(),
        )
        .unwrap();
    assert_eq!(ret, EBUSY);
    assert_eq!(back, bytes(&tiling(BUF, I915_TILING_NONE, 0)));
}

#[test]
fn responses_are_cut_to_the_length_the_guest_asked_for() {
    // drm_context.c drm_context_submit_cmd_dispatch: MIN(guest rsp->len,
    // response length) bytes are written, and that length is stored.
    let (_b, mut vmm, mut nc) = setup();
    let region_write = |vmm: &Vmm, off: u32, data: &[u8]| {
        vmm.hostmem
            .as_ref()
            .unwrap()
            .write(nc.shmem_offset + 16 + u64::from(off), data)
            .unwrap();
    };
    let older = nc.builder.push(&getparam(param::HAS_EXEC_SOFTPIN)).unwrap();
    let newer = nc.builder.push(&getparam(param::HAS_EXEC_SOFTPIN)).unwrap();
    let (o, n) = (older.rsp_off.unwrap(), newer.rsp_off.unwrap());
    region_write(&vmm, o, &[0xaa; 16]);
    region_write(&vmm, n, &[0xaa; 16]);
    nc.set_response_len(&vmm, o, 12).unwrap(); // a guest whose struct ends at `ret`
    nc.set_response_len(&vmm, n, 64).unwrap(); // a guest with a longer struct
    let stream = nc.builder.take_stream();
    ok(vmm.command(&submit_3d(1, &stream)).unwrap().1).unwrap();
    let mut older_rsp = nc.response(&vmm, &older).unwrap();
    older_rsp.truncate(16);
    assert_eq!(u32::from_le_bytes(older_rsp[0..4].try_into().unwrap()), 12);
    assert_eq!(i32::from_le_bytes(older_rsp[8..12].try_into().unwrap()), 0);
    assert_eq!(
        &older_rsp[12..16],
        &[0xaa; 4],
        "nothing past the guest's struct"
    );
    let newer_rsp: GetParamRsp = nc.read(&vmm, &newer).unwrap();
    assert_eq!(
        newer_rsp.hdr.len.get(),
        16,
        "the host's length when shorter"
    );
    assert_eq!(newer_rsp.value.get(), 1);
}

#[test]
fn fixed_requests_from_older_guests_are_zero_extended() {
    // drm_context.c: a request shorter than the struct reads as if its
    // missing fields were 0.
    let (_b, mut vmm, mut nc) = setup();
    let full = nc.builder.push(&getparam(param::HAS_EXEC_SOFTPIN)).unwrap();
    let mut stream = nc.builder.take_stream();
    stream.truncate(20); // up to `param`; `value` missing
    stream[4..8].copy_from_slice(&20u32.to_le_bytes());
    nc.set_response_len(&vmm, full.rsp_off.unwrap(), 16)
        .unwrap();
    ok(vmm.command(&submit_3d(1, &stream)).unwrap().1).unwrap();
    let rsp: GetParamRsp = nc.read(&vmm, &full).unwrap();
    assert_eq!((rsp.ret.get(), rsp.value.get()), (0, 1));
}

#[test]
fn getparam_answers_name_what_they_are() {
    // i915_ccmd.c i915_ccmd_getparam: `value` starts as -1 and stays so
    // when the kernel refuses.
    let (_b, mut vmm, mut nc) = setup();
    let (r, p) = nc
        .submit(
            &mut vmm,
            &[
                getparam(param::CHIPSET_ID),
                getparam(param::CS_TIMESTAMP_FREQUENCY),
                getparam(9999),
            ],
        )
        .unwrap();
    ok(r).unwrap();
    let values: Vec<(i32, u32)> = p
        .iter()
        .map(|p| {
            let r: GetParamRsp = nc.read(&vmm, p).unwrap();
            (r.ret.get(), r.value.get())
        })
        .collect();
    assert_eq!(values, [(0, 0), (0, 12_000_000), (EINVAL, u32::MAX)]);
}

/// MAP_BLOB's map_info for resource `res`, mapped at `offset` and unmapped.
fn map_info(vmm: &mut Vmm, res: u32, offset: u64) -> u32 {
    let r = vmm.command(&map_blob(res, offset)).unwrap().1;
    ok(vmm.command(&unmap_blob(res)).unwrap().1).unwrap();
    match r {
        Response::MapInfo(info) => info,
        other => panic!("MAP_BLOB of {res}: {other:?}"),
    }
}

#[test]
fn set_mmap_mode_decides_how_the_guest_maps() {
    // i915_ccmd.c i915_ccmd_gem_set_mmap_mode and gem_create_ext.
    let (_b, mut vmm, mut nc) = setup();
    let modes: [(&str, &[u32], u32); 8] = [
        ("WB", &[I915_MMAP_OFFSET_WB], VIRTIO_GPU_MAP_CACHE_CACHED),
        ("WC", &[I915_MMAP_OFFSET_WC], VIRTIO_GPU_MAP_CACHE_WC),
        ("UC", &[I915_MMAP_OFFSET_UC], VIRTIO_GPU_MAP_CACHE_UNCACHED),
        ("GTT", &[I915_MMAP_OFFSET_GTT], VIRTIO_GPU_MAP_CACHE_WC),
        ("FIXED", &[I915_MMAP_OFFSET_FIXED], VIRTIO_GPU_MAP_CACHE_WC),
        (
            "a different second mode is refused",
            &[I915_MMAP_OFFSET_WB, I915_MMAP_OFFSET_WC],
            VIRTIO_GPU_MAP_CACHE_CACHED,
        ),
        (
            "the same mode again is fine",
            &[I915_MMAP_OFFSET_UC, I915_MMAP_OFFSET_UC],
            VIRTIO_GPU_MAP_CACHE_UNCACHED,
        ),
        (
            "an unknown mode is ignored",
            &[9],
            VIRTIO_GPU_MAP_CACHE_CACHED,
        ),
    ];
    for (i, (what, flags, want)) in modes.iter().enumerate() {
        let res = 300 + i as u32;
        nc.gem_blob(&mut vmm, 10 + i as u32, res, PAGE, &system())
            .unwrap();
        let reqs: Vec<_> = flags.iter().map(|f| gem_set_mmap_mode(res, *f)).collect();
        ok(nc.submit(&mut vmm, &reqs).unwrap().0).unwrap();
        assert_eq!(map_info(&mut vmm, res, PAGE * 4), *want, "{what}");
    }
    // Device memory maps write-combined without being asked.
    let device = [
        MemoryClassInstance::new(I915_MEMORY_CLASS_DEVICE, 0),
        MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0),
    ];
    nc.gem_blob(&mut vmm, 50, 350, PAGE, &device).unwrap();
    assert_eq!(map_info(&mut vmm, 350, PAGE * 4), VIRTIO_GPU_MAP_CACHE_WC);
    // WB on a device-memory object: the configured WC stays.
    nc.gem_blob(&mut vmm, 51, 351, PAGE, &device).unwrap();
    ok(nc
        .submit(&mut vmm, &[gem_set_mmap_mode(351, I915_MMAP_OFFSET_WB)])
        .unwrap()
        .0)
    .unwrap();
    assert_eq!(map_info(&mut vmm, 351, PAGE * 4), VIRTIO_GPU_MAP_CACHE_WC);
    // Mapped before configured: the mapping's caching sticks.
    nc.gem_blob(&mut vmm, 52, 352, PAGE, &system()).unwrap();
    let first = vmm.command(&map_blob(352, PAGE * 4)).unwrap().1;
    assert_eq!(first, Response::MapInfo(VIRTIO_GPU_MAP_CACHE_CACHED));
    ok(nc
        .submit(&mut vmm, &[gem_set_mmap_mode(352, I915_MMAP_OFFSET_WC)])
        .unwrap()
        .0)
    .unwrap();
    ok(vmm.command(&unmap_blob(352)).unwrap().1).unwrap();
    assert_eq!(
        map_info(&mut vmm, 352, PAGE * 4),
        VIRTIO_GPU_MAP_CACHE_CACHED
    );
}

#[test]
fn the_capset_is_upstreams_whole_struct() {
    // drm_hw.h: virgl_renderer_capset_drm, its union as large as u.amdgpu;
    // u.intel packs the PCI identity in 8 bytes.
    assert_eq!(size_of::<CapsetDrmI915>(), 160);
    let caps = CapsetDrmI915 {
        intel: CapsetDrmIntel {
            pci_bus: 1,
            pci_dev: 2,
            pci_func: 3,
            pci_revision_id: 4,
            pci_domain: 5.into(),
            pci_device_id: 0x46a6.into(),
        },
        ..CapsetDrmI915::default()
    };
    let b = caps.as_bytes();
    assert_eq!(&b[24..32], &[1, 2, 3, 4, 5, 0, 0xa6, 0x46]);
    assert_eq!(CapsetDrmI915::read_from_bytes(b).unwrap(), caps);
}
