//! Target 3: native-context request streams (well-formed requests and raw
//! bytes) executed against the buffer manager, after a prologue that sets
//! up an i915 context with its response blob; interleaved with blob
//! commands that turn GEM objects into resources. Checked empty after.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vgpu_fuzz::{native_prologue, NativeOp, Op, Rig};

#[derive(Arbitrary, Debug)]
enum Step {
    Native(Vec<NativeOp>),
    Raw(Vec<u8>),
    Device(Op),
}

fuzz_target!(|steps: Vec<Step>| {
    let mut rig = Rig::new();
    native_prologue(&mut rig);
    for step in steps.iter().take(32) {
        let bytes = match step {
            Step::Native(reqs) => Op::Native {
                ctx: 1,
                reqs: reqs.iter().map(clone_op).collect(),
            }
            .bytes(),
            Step::Raw(stream) => Op::Submit3d {
                ctx: 1,
                stream: stream.clone(),
            }
            .bytes(),
            Step::Device(op) => op.bytes(),
        };
        let _ = rig.request(&bytes);
    }
    rig.finish();
});

fn clone_op(op: &NativeOp) -> NativeOp {
    match op {
        NativeOp::GetParam(p) => NativeOp::GetParam(*p),
        NativeOp::QueryParam { id, len } => NativeOp::QueryParam { id: *id, len: *len },
        NativeOp::Create { size, blob_id } => NativeOp::Create {
            size: *size,
            blob_id: *blob_id,
        },
        NativeOp::CreateExt {
            size,
            blob_id,
            regions,
        } => NativeOp::CreateExt {
            size: *size,
            blob_id: *blob_id,
            regions: *regions,
        },
        NativeOp::MmapMode { res, flags } => NativeOp::MmapMode {
            res: *res,
            flags: *flags,
        },
        NativeOp::Busy { res } => NativeOp::Busy { res: *res },
        NativeOp::Madvise { id, by_blob, madv } => NativeOp::Madvise {
            id: *id,
            by_blob: *by_blob,
            madv: *madv,
        },
        NativeOp::Close { blob_id } => NativeOp::Close { blob_id: *blob_id },
        NativeOp::ContextCreate { flags } => NativeOp::ContextCreate { flags: *flags },
        NativeOp::Exec {
            ctx,
            flags,
            batch_len,
            res,
        } => NativeOp::Exec {
            ctx: *ctx,
            flags: *flags,
            batch_len: *batch_len,
            res: res.clone(),
        },
        NativeOp::Raw(b) => NativeOp::Raw(b.clone()),
    }
}
