//! A VMM with no display channel (crosvm, QEMU 11.1's generic vhost-user
//! device): the daemon still keeps what every scanout shows, and the
//! admin socket's `screenshot` returns it as a PNG — for a 2D resource and
//! for a blob written through the guest's mapping.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use base64::Engine;
use vgpu_device::admin::protocol::ScreenshotReply;
use vgpu_device::admin::{AdminClient, Request};
use vgpu_device::config::DeviceConfig;
use vgpu_device::screens::decode_png;
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::vmm::{Vmm, VmmOptions};

const MIB: u64 = 1 << 20;

/// B, G, R, X of pixel (x, y): distinct in every channel.
fn pattern(x: u32, y: u32) -> [u8; 4] {
    [(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8, 0xff]
}

fn image_bytes(w: u32, h: u32, stride: u32) -> Vec<u8> {
    let mut out = vec![0u8; (stride * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let at = (y * stride + x * 4) as usize;
            out[at..at + 4].copy_from_slice(&pattern(x, y));
        }
    }
    out
}

fn screenshot(admin: &mut AdminClient, scanout: u32) -> Result<(u32, u32, Vec<u8>), String> {
    let r: ScreenshotReply = admin
        .call(&Request::Screenshot {
            scanout: Some(scanout),
        })
        .map_err(|e| e.to_string())?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(r.png_base64.as_bytes())
        .map_err(|e| e.to_string())?;
    let (w, h, rgb) = decode_png(&png)?;
    assert_eq!((w, h), (r.width, r.height));
    Ok((w, h, rgb))
}

fn assert_shows_pattern(w: u32, h: u32, rgb: &[u8]) {
    for y in 0..h {
        for x in 0..w {
            let at = ((y * w + x) * 3) as usize;
            let p = pattern(x, y);
            assert_eq!(&rgb[at..at + 3], &[p[2], p[1], p[0]], "pixel ({x}, {y})");
        }
    }
}

fn setup() -> (RunningBackend, Vmm, AdminClient) {
    let _ = env_logger::builder().is_test(true).try_init();
    let b = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let vmm = Vmm::connect(
        b.socket(),
        VmmOptions {
            display: false,
            ..VmmOptions::default()
        },
    )
    .unwrap();
    assert!(vmm.display.is_none(), "no display channel at all");
    let admin = AdminClient::connect(b.admin_socket().unwrap()).unwrap();
    (b, vmm, admin)
}

#[test]
fn a_2d_scanout_is_kept_without_a_display_channel() {
    let (_b, mut vmm, mut admin) = setup();
    let err = screenshot(&mut admin, 0).unwrap_err();
    assert!(err.contains("shows nothing"), "{err}");
    let (w, h) = (64u32, 48u32);
    ok(vmm
        .command(&create_2d(1, Format::B8G8R8X8Unorm, w, h))
        .unwrap()
        .1)
    .unwrap();
    let e = guest_pages(&mut vmm, u64::from(w * h * 4), 0).unwrap();
    poke(&vmm, e.addr.get(), &image_bytes(w, h, w * 4)).unwrap();
    ok(vmm.command(&attach_backing(1, &[e])).unwrap().1).unwrap();
    let all = Rect::new(0, 0, w, h);
    ok(vmm.command(&transfer_2d(1, all, 0)).unwrap().1).unwrap();
    ok(vmm.command(&set_scanout(0, 1, all)).unwrap().1).unwrap();
    ok(vmm.command(&flush(1, all)).unwrap().1).unwrap();
    let (sw, sh, rgb) = screenshot(&mut admin, 0).unwrap();
    assert_eq!((sw, sh), (w, h));
    assert_shows_pattern(w, h, &rgb);
    // Only flushed pixels are shown: a change without a flush is not.
    poke(&vmm, e.addr.get(), &[0u8; 64]).unwrap();
    ok(vmm.command(&transfer_2d(1, all, 0)).unwrap().1).unwrap();
    assert_shows_pattern(w, h, &screenshot(&mut admin, 0).unwrap().2);
    // Off: nothing to show.
    ok(vmm.command(&set_scanout(0, 0, all)).unwrap().1).unwrap();
    assert!(screenshot(&mut admin, 0).is_err());
    assert!(screenshot(&mut admin, 9).is_err());
}

#[test]
fn a_blob_written_through_the_guests_mapping_is_kept_as_scanout() {
    let (_b, mut vmm, mut admin) = setup();
    let mut nc = NativeContext::create(&mut vmm, 1, 1000, 0).unwrap();
    let (w, h, stride) = (80u32, 40u32, 384u32);
    let size = 64 * 1024;
    let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    nc.gem_blob(&mut vmm, 5, 5, size, &system).unwrap();
    let at = 16 * MIB;
    assert!(matches!(
        vmm.command(&map_blob(5, at)).unwrap().1,
        Response::MapInfo(_)
    ));
    let region = vmm.hostmem.clone().unwrap();
    region.write(at, &image_bytes(w, h, stride)).unwrap();
    let scanout = Command::SetScanoutBlob(SetScanoutBlob {
        hdr: hdr(CommandType::SetScanoutBlob),
        r: Rect::new(0, 0, w, h),
        scanout_id: 0.into(),
        resource_id: 5.into(),
        width: w.into(),
        height: h.into(),
        format: Format::B8G8R8X8Unorm.value().into(),
        padding: 0.into(),
        strides: [stride.into(), 0.into(), 0.into(), 0.into()],
        offsets: [0.into(); 4],
    });
    ok(vmm.command(&scanout).unwrap().1).unwrap();
    ok(vmm.command(&flush(5, Rect::new(0, 0, w, h))).unwrap().1).unwrap();
    let (sw, sh, rgb) = screenshot(&mut admin, 0).unwrap();
    assert_eq!((sw, sh), (w, h));
    assert_shows_pattern(w, h, &rgb);
}
