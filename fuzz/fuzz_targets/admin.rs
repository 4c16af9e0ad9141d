//! Target 4: the admin protocol: any line gets a reply (`ok` or an error
//! naming the problem), never a panic, against a buffer manager holding a
//! few objects; the reply always serializes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use vgpu_backend::pressure::MonitorHandle;
use vgpu_backend::{BufferManager, Madv, Placement, Priority};
use vgpu_device::admin::AdminHandler;

static HANDLER: LazyLock<AdminHandler> = LazyLock::new(|| {
    let bm = BufferManager::emulated(1 << 20).expect("buffer manager");
    let vm = bm.create_owner("vm1", None).expect("owner");
    for i in 0..4u8 {
        let id = bm
            .create(vm, 4096, Placement::system(), Priority::NORMAL)
            .expect("object");
        bm.write(id, 0, &[i]).expect("write");
        if i % 2 == 0 {
            bm.madvise(id, Madv::DontNeed).expect("madvise");
        }
    }
    AdminHandler::new(bm.clone(), MonitorHandle::without_monitor(bm))
});

fuzz_target!(|data: &[u8]| {
    let reply = HANDLER.handle_line(data);
    assert!(reply.ok || reply.error.as_deref().is_some_and(|e| !e.is_empty()));
    serde_json::to_string(&reply).expect("replies serialize");
});
