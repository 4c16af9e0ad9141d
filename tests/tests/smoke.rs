//! The harness reaches the daemon: negotiation, config space, a first
//! command, and a 2D frame that arrives on the display socket.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::time::Duration;

use vgpu_device::config::DeviceConfig;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::display::DisplayMsg;
use vgpu_tests::vmm::{Vmm, VmmOptions};

#[test]
fn negotiation_config_and_a_frame() {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    for bit in [
        VIRTIO_GPU_F_VIRGL,
        VIRTIO_GPU_F_EDID,
        VIRTIO_GPU_F_RESOURCE_BLOB,
        VIRTIO_GPU_F_CONTEXT_INIT,
    ] {
        assert!(vmm.features & (1 << bit) != 0, "feature {bit}");
    }
    let cfg = vmm.config().unwrap();
    assert_eq!((cfg.num_scanouts.get(), cfg.num_capsets.get()), (1, 1));

    let (_, info) = vmm
        .command(&Command::GetDisplayInfo(hdr(CommandType::GetDisplayInfo)))
        .unwrap();
    let Response::DisplayInfo(modes) = info else {
        panic!("{info:?}")
    };
    assert_eq!(
        (
            modes[0].r.width.get(),
            modes[0].r.height.get(),
            modes[0].enabled.get()
        ),
        (1280, 800, 1)
    );

    ok(vmm
        .command(&create_2d(1, Format::B8G8R8X8Unorm, 64, 32))
        .unwrap()
        .1)
    .unwrap();
    let pixels: Vec<u8> = (0..64 * 32)
        .flat_map(|i: u32| [i as u8, (i >> 8) as u8, 0x40, 0])
        .collect();
    let addr = vmm.ram.alloc_pages(pixels.len() as u64).unwrap();
    poke(&vmm, addr.0, &pixels).unwrap();
    ok(vmm
        .command(&attach_backing(
            1,
            &[MemEntry::new(addr.0, pixels.len() as u32)],
        ))
        .unwrap()
        .1)
    .unwrap();
    ok(vmm
        .command(&set_scanout(0, 1, Rect::new(0, 0, 64, 32)))
        .unwrap()
        .1)
    .unwrap();
    ok(vmm
        .command(&transfer_2d(1, Rect::new(0, 0, 64, 32), 0))
        .unwrap()
        .1)
    .unwrap();
    ok(vmm.command(&flush(1, Rect::new(0, 0, 64, 32))).unwrap().1).unwrap();
    let display = vmm.display.as_ref().unwrap();
    let scanout = display
        .wait_for(Duration::from_secs(5), |m| {
            matches!(m, DisplayMsg::Scanout { width: 64, .. })
        })
        .unwrap();
    assert_eq!(
        scanout,
        DisplayMsg::Scanout {
            scanout: 0,
            width: 64,
            height: 32
        }
    );
    let update = display
        .wait_for(Duration::from_secs(5), |m| {
            matches!(m, DisplayMsg::Update { .. })
        })
        .unwrap();
    let DisplayMsg::Update {
        width,
        height,
        data,
        ..
    } = update
    else {
        unreachable!()
    };
    assert_eq!((width, height), (64, 32));
    let want: Vec<u8> = pixels
        .chunks(4)
        .flat_map(|p| [p[0], p[1], p[2], 0xff])
        .collect();
    assert_eq!(data, want, "the frame arrives converted to BGRX");
}
