//! Target 4: the native target's streams on a fake i915 kernel: blobs are
//! GEM objects, GETPARAM/QUERY, GEM contexts and GEM_EXECBUFFER2 are
//! forwarded (handle and relocation translation, flag filtering, kernel
//! out-fences). Checked empty after, kernel included: no GEM handle and no
//! kernel context left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgpu_fuzz::{run_native, NativeStep, Rig};

fuzz_target!(|steps: Vec<NativeStep>| run_native(Rig::on_gpu(), &steps));
