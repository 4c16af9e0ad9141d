//! Target 1: virtio-gpu request and response decoding. Any bytes decode
//! to a command or a typed error, never a panic; what decodes re-encodes to
//! bytes that decode to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgpu_proto::virtio_gpu::{Command, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        let bytes = cmd.to_bytes();
        let again = Command::decode(&bytes).expect("re-encoded command decodes");
        assert_eq!(again, cmd, "round trip");
    }
    let _ = Response::decode(data);
    let _ = vgpu_proto::native::CcmdIter::new(data).count();
});
