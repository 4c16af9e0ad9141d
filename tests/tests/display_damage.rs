//! Display updates carry what changed: once the display channel's image
//! of a scanout is known to equal the daemon's (an update covered the
//! whole scanout since it got its size), a flush sends only the smallest
//! rectangle whose pixels differ — nothing when none do — while a new
//! size or a partial first flush sends everything flushed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use vgpu_device::config::DeviceConfig;
use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::display::DisplayMsg;
use vgpu_tests::vmm::{Vmm, VmmOptions, CURSOR};

const W: u32 = 32;
const H: u32 = 24;

fn ok(vmm: &mut Vmm, cmd: &Command<'_>) {
    let (_, r) = vmm.command(cmd).unwrap();
    assert_eq!(r, Response::OkNoData, "{:?}", cmd.command_type());
}

/// The updates the display received since the last call, as
/// (x, y, width, height, first pixel); waits until a cursor move to
/// `marker_x`, sent after the flushes on the same channel, arrives, so
/// every update sent before it is in.
fn updates_until_marker(vmm: &mut Vmm, marker_x: u32) -> Vec<(u32, u32, u32, u32, [u8; 4])> {
    let c = cursor(hdr(CommandType::MoveCursor), marker_x, 0, 0, (0, 0));
    vmm.command_on(CURSOR, &Command::MoveCursor(c)).unwrap();
    let d = vmm.display.as_ref().unwrap();
    d.wait_for(
        Duration::from_secs(5),
        |m| matches!(m, DisplayMsg::CursorPos { x, .. } if *x == marker_x),
    )
    .expect("the marker cursor move reached the display");
    let out = d
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            DisplayMsg::Update {
                x,
                y,
                width,
                height,
                data,
                ..
            } => Some((x, y, width, height, [data[0], data[1], data[2], data[3]])),
            _ => None,
        })
        .collect();
    d.clear();
    out
}

#[test]
fn flushes_send_only_what_changed_once_the_display_holds_the_scanout() {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = RunningBackend::in_process(DeviceConfig::default(), 1).unwrap();
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default()).unwrap();
    let len = u64::from(W * H * 4);
    let backing = guest_pages(&mut vmm, len, 0x10).unwrap();
    ok(&mut vmm, &create_2d(1, Format::B8G8R8X8Unorm, W, H));
    ok(&mut vmm, &attach_backing(1, &[backing]));
    let whole = Rect::new(0, 0, W, H);
    ok(&mut vmm, &transfer_2d(1, whole, 0));
    ok(&mut vmm, &set_scanout(0, 1, whole));
    let px = |v: u8| [v, v, v, 0xff];

    // A partial first flush: all of it goes (the display's image is unknown).
    ok(&mut vmm, &flush(1, Rect::new(0, 0, 8, 8)));
    assert_eq!(updates_until_marker(&mut vmm, 1), [(0, 0, 8, 8, px(0x10))]);
    // Still unknown outside that corner: a whole flush sends everything
    // although nothing changed.
    ok(&mut vmm, &flush(1, whole));
    assert_eq!(updates_until_marker(&mut vmm, 2), [(0, 0, W, H, px(0x10))]);
    // Now in step with the display: an unchanged frame sends nothing.
    ok(&mut vmm, &flush(1, whole));
    assert_eq!(updates_until_marker(&mut vmm, 3), []);

    // Three pixels wide, two rows high at (5, 7): only they go, although
    // the guest transfers and flushes the whole frame.
    let stride = u64::from(W * 4);
    for row in 7..9u64 {
        poke(&vmm, backing.addr.get() + row * stride + 5 * 4, &[0x77; 12]).unwrap();
    }
    ok(&mut vmm, &transfer_2d(1, whole, 0));
    ok(&mut vmm, &flush(1, whole));
    assert_eq!(updates_until_marker(&mut vmm, 4), [(5, 7, 3, 2, px(0x77))]);

    // Whole rows change: one update of whole rows.
    poke(
        &vmm,
        backing.addr.get() + 20 * stride,
        &vec![0x55; 2 * stride as usize],
    )
    .unwrap();
    ok(&mut vmm, &transfer_2d(1, whole, 0));
    ok(&mut vmm, &flush(1, whole));
    assert_eq!(updates_until_marker(&mut vmm, 5), [(0, 20, W, 2, px(0x55))]);

    // A flush of part of the frame sends the changed part of that part.
    poke(&vmm, backing.addr.get() + 2 * stride + 30 * 4, &[0x66; 8]).unwrap();
    ok(&mut vmm, &transfer_2d(1, whole, 0));
    ok(&mut vmm, &flush(1, Rect::new(16, 0, 16, 8)));
    assert_eq!(updates_until_marker(&mut vmm, 6), [(30, 2, 2, 1, px(0x66))]);

    // Another size: the display starts over, so everything flushed goes.
    ok(&mut vmm, &set_scanout(0, 1, Rect::new(0, 0, 16, 16)));
    ok(&mut vmm, &flush(1, whole));
    assert_eq!(
        updates_until_marker(&mut vmm, 7),
        [(0, 0, 16, 16, px(0x10))]
    );
    ok(&mut vmm, &flush(1, whole));
    assert_eq!(updates_until_marker(&mut vmm, 8), []);
}
