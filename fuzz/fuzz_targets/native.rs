//! Target 3: native-context request streams (well-formed requests and raw
//! bytes) executed against the buffer manager, after a prologue that sets
//! up an i915 context with its response blob; interleaved with blob
//! commands that turn GEM objects into resources. Checked empty after.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgpu_fuzz::{run_native, NativeStep, Rig};

fuzz_target!(|steps: Vec<NativeStep>| run_native(Rig::new(), &steps));
