//! A timed loop of create / map / write / transfer / wait / destroy on
//! 256×256 XRGB dumb buffers: the same guest work against any backend.
//! Also a round trip through the host (3D devices only): what the host
//! holds after TRANSFER_TO_HOST comes back with TRANSFER_FROM_HOST.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use drm::buffer::{Buffer, DrmFourcc};
use drm::control::Device as _;

use crate::card::Card;
use crate::report::Outcome;
use crate::uapi::{self, Box3d, Transfer};

const SIDE: u32 = 256;

/// The whole buffer. The stride stays 0 (the resource's own): the kernel
/// refuses an explicit stride for anything but host blobs on 3D devices.
fn whole(handle: u32) -> Transfer {
    Transfer {
        bo_handle: handle,
        box_: Box3d {
            w: SIDE,
            h: SIDE,
            d: 1,
            ..Box3d::default()
        },
        ..Transfer::default()
    }
}

/// Runs the loop for `duration`.
pub fn timed_loop(card: &Card, duration: Duration) -> Outcome {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        if let Err(e) = one(card, n) {
            return Outcome::Fail(format!("iteration {n}: {e}"));
        }
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Outcome::Pass(format!(
        "{:.1} ops/s ({n} iterations in {:.0} ms; {SIDE}x{SIDE} XRGB dumb buffer create, map, write, transfer, wait, destroy)",
        n as f64 / secs,
        secs * 1000.0
    ))
}

fn one(card: &Card, n: u64) -> Result<(), String> {
    let mut db = card
        .create_dumb_buffer((SIDE, SIDE), DrmFourcc::Xrgb8888, 32)
        .map_err(|e| format!("CREATE_DUMB: {e}"))?;
    let handle: u32 = db.handle().into();
    {
        let mut map = card
            .map_dumb_buffer(&mut db)
            .map_err(|e| format!("MAP_DUMB: {e}"))?;
        map.as_mut().fill(n as u8);
    }
    uapi::transfer_to_host(card.as_fd(), &whole(handle))
        .map_err(|e| format!("TRANSFER_TO_HOST: {e}"))?;
    uapi::wait(card.as_fd(), handle).map_err(|e| format!("WAIT: {e}"))?;
    card.destroy_dumb_buffer(db)
        .map_err(|e| format!("DESTROY_DUMB: {e}"))
}

/// Writes a pattern, sends it to the host, clears the guest copy, reads the
/// host's back and compares.
pub fn round_trip(card: &Card, has_3d: bool) -> Outcome {
    if !has_3d {
        return Outcome::Skip("TRANSFER_FROM_HOST needs a 3D device".into());
    }
    match round_trip_inner(card) {
        Ok(d) => Outcome::Pass(d),
        Err(e) => Outcome::Fail(e),
    }
}

fn round_trip_inner(card: &Card) -> Result<String, String> {
    let mut db = card
        .create_dumb_buffer((SIDE, SIDE), DrmFourcc::Xrgb8888, 32)
        .map_err(|e| format!("CREATE_DUMB: {e}"))?;
    let handle: u32 = db.handle().into();
    let t = whole(handle);
    let pattern = |i: usize| (i.wrapping_mul(131) ^ (i >> 9)) as u8;
    let result = (|| {
        let mut map = card
            .map_dumb_buffer(&mut db)
            .map_err(|e| format!("MAP_DUMB: {e}"))?;
        for (i, b) in map.as_mut().iter_mut().enumerate() {
            *b = pattern(i);
        }
        uapi::transfer_to_host(card.as_fd(), &t).map_err(|e| format!("TRANSFER_TO_HOST: {e}"))?;
        uapi::wait(card.as_fd(), handle).map_err(|e| format!("WAIT: {e}"))?;
        map.as_mut().fill(0);
        uapi::transfer_from_host(card.as_fd(), &t)
            .map_err(|e| format!("TRANSFER_FROM_HOST: {e}"))?;
        uapi::wait(card.as_fd(), handle).map_err(|e| format!("WAIT: {e}"))?;
        let bad = map
            .as_ref()
            .iter()
            .enumerate()
            .filter(|(i, b)| **b != pattern(*i))
            .count();
        if bad > 0 {
            return Err(format!(
                "{bad} of {} bytes differ after the round trip",
                map.len()
            ));
        }
        Ok(format!("{} bytes to the host and back intact", map.len()))
    })();
    let _ = card.destroy_dumb_buffer(db);
    result
}
