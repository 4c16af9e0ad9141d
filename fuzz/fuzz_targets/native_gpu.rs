//! Target 4: the native target's streams on the real i915 driver over a
//! fake i915 kernel (answering at the ioctl level): blobs are
//! GEM objects, GETPARAM/QUERY, GEM contexts and GEM_EXECBUFFER2 are
//! forwarded (handle and relocation translation, flag filtering, kernel
//! out-fences). Checked empty after, kernel included: no GEM handle and no
//! kernel context left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgpu_fuzz::{run_native, NativeStep, Rig};

fuzz_target!(|steps: Vec<NativeStep>| run_native(Rig::on_gpu(), &steps));
