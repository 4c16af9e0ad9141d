//! Target 2: sequences of well-formed and malformed commands (2D, 3D,
//! blob, map, context, cursor, raw bytes) through the dispatcher over
//! in-memory guest memory and a fake display. After every input the device
//! is reset and must hold no host memory, no mapping, no object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgpu_fuzz::{Op, Rig};

fuzz_target!(|ops: Vec<Op>| {
    let mut rig = Rig::new();
    for op in ops.iter().take(64) {
        let _ = rig.request(&op.bytes());
    }
    rig.finish();
});
