//! The display loop every desktop guest runs for every frame: write a
//! rectangle of the framebuffer that is on screen, then DIRTYFB it. The
//! Linux driver turns each DIRTYFB into TRANSFER_TO_HOST_2D and a fenced
//! RESOURCE_FLUSH, and waits for the flush's fence: the loop's rate is
//! the guest-visible latency of one display update.

use std::time::Instant;

use drm::buffer::{Buffer, DrmFourcc};
use drm::control::{ClipRect, Device as _};

use crate::card::Card;
use crate::report::Outcome;
use crate::subtests::kms;

/// Side of the square written and flushed each iteration.
const RECT: u32 = 256;

/// Runs `iterations` rectangle updates of a framebuffer shown at the
/// output's preferred mode.
pub fn dirtyfb_loop(card: &Card, iterations: u32) -> Outcome {
    match run(card, iterations) {
        Ok(detail) => Outcome::Pass(detail),
        Err(e) => Outcome::Fail(e),
    }
}

fn run(card: &Card, iterations: u32) -> Result<String, String> {
    let out = kms::output(card)?;
    let (w, h) = out.size;
    if w < RECT || h < RECT {
        return Err(format!("the mode {w}x{h} is smaller than {RECT}x{RECT}"));
    }
    let mut db = card
        .create_dumb_buffer((w, h), DrmFourcc::Xrgb8888, 32)
        .map_err(|e| format!("CREATE_DUMB {w}x{h}: {e}"))?;
    let pitch = db.pitch() as usize;
    let result = (|| {
        let fb = card
            .add_framebuffer(&db, 24, 32)
            .map_err(|e| format!("ADDFB: {e}"))?;
        let shown = (|| {
            kms::show(card, &out, fb)?;
            let mut map = card
                .map_dumb_buffer(&mut db)
                .map_err(|e| format!("MAP_DUMB: {e}"))?;
            let pixels = map.as_mut();
            let mut micros = Vec::with_capacity(iterations as usize);
            let start = Instant::now();
            for i in 0..iterations {
                // Walk the rectangle over the screen so every update
                // touches other pixels than the last.
                let x = (i * 64) % (w - RECT + 1);
                let y = (i * 40) % (h - RECT + 1);
                let value = (i as u8).wrapping_mul(37);
                let t = Instant::now();
                for row in y..y + RECT {
                    let at = row as usize * pitch + x as usize * 4;
                    pixels[at..at + RECT as usize * 4].fill(value);
                }
                let clip = ClipRect::new(x as u16, y as u16, (x + RECT) as u16, (y + RECT) as u16);
                card.dirty_framebuffer(fb, &[clip])
                    .map_err(|e| format!("DIRTYFB (iteration {i}): {e}"))?;
                micros.push(t.elapsed().as_micros() as u64);
            }
            let secs = start.elapsed().as_secs_f64();
            micros.sort_unstable();
            let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
            Ok(format!(
                "{:.1} ops/s ({iterations} iterations in {:.0} ms; {RECT}x{RECT} of a {w}x{h} XRGB framebuffer on screen, written + DIRTYFB; per update median {} us, p90 {} us, max {} us)",
                f64::from(iterations) / secs,
                secs * 1000.0,
                at(0.5),
                at(0.9),
                at(1.0),
            ))
        })();
        let _ = card.destroy_framebuffer(fb);
        shown
    })();
    let _ = card.destroy_dumb_buffer(db);
    result
}
