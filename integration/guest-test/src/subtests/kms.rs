//! KMS: a dumb buffer with the test pattern, scanned out and flushed
//! (CREATE_2D, ATTACH_BACKING, SET_SCANOUT, TRANSFER_TO_HOST_2D and
//! RESOURCE_FLUSH through the real kernel driver).

use drm::buffer::{Buffer, DrmFourcc};
use drm::control::{connector, framebuffer, ClipRect, Device as _, ModeTypeFlags};

use crate::card::Card;
use crate::report::Outcome;

/// What is on screen; dropped (framebuffer removed) after the host looked.
pub struct Shown<'a> {
    card: &'a Card,
    fb: framebuffer::Handle,
    buffer: Option<drm::control::dumbbuffer::DumbBuffer>,
    /// Width and height.
    pub size: (u32, u32),
}

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        let _ = self.card.destroy_framebuffer(self.fb);
        if let Some(b) = self.buffer.take() {
            let _ = self.card.destroy_dumb_buffer(b);
        }
    }
}

/// Where a framebuffer can be shown: the first connected connector, its
/// preferred mode and a CRTC for it.
pub struct Output {
    conn: connector::Handle,
    crtc: drm::control::crtc::Handle,
    mode: drm::control::Mode,
    /// Width and height of the mode.
    pub size: (u32, u32),
}

/// Finds the first connected connector and a CRTC to drive it.
pub fn output(card: &Card) -> Result<Output, String> {
    let res = card
        .resource_handles()
        .map_err(|e| format!("GETRESOURCES: {e}"))?;
    let mut found = None;
    for &c in res.connectors() {
        let info = card
            .get_connector(c, true)
            .map_err(|e| format!("GETCONNECTOR: {e}"))?;
        if info.state() == connector::State::Connected && !info.modes().is_empty() {
            found = Some(info);
            break;
        }
    }
    let conn = found.ok_or("no connected connector with modes")?;
    let mode = *conn
        .modes()
        .iter()
        .find(|m| m.mode_type().contains(ModeTypeFlags::PREFERRED))
        .unwrap_or(&conn.modes()[0]);
    let encoder = conn
        .current_encoder()
        .or_else(|| conn.encoders().first().copied())
        .ok_or("the connector has no encoder")?;
    let enc = card
        .get_encoder(encoder)
        .map_err(|e| format!("GETENCODER: {e}"))?;
    let crtc = enc
        .crtc()
        .or_else(|| res.filter_crtcs(enc.possible_crtcs()).first().copied())
        .ok_or("no CRTC for the encoder")?;
    let (w, h) = mode.size();
    Ok(Output {
        conn: conn.handle(),
        crtc,
        mode,
        size: (u32::from(w), u32::from(h)),
    })
}

/// Shows framebuffer `fb` on `out` (SETCRTC) and flushes all of it
/// (DIRTYFB).
pub fn show(card: &Card, out: &Output, fb: framebuffer::Handle) -> Result<(), String> {
    let (w, h) = out.size;
    card.set_crtc(out.crtc, Some(fb), (0, 0), &[out.conn], Some(out.mode))
        .map_err(|e| format!("SETCRTC {w}x{h}: {e}"))?;
    let clip = ClipRect::new(0, 0, w as u16, h as u16);
    card.dirty_framebuffer(fb, &[clip])
        .map_err(|e| format!("DIRTYFB: {e}"))
}

/// Modesets the first connected connector to its preferred mode showing
/// the pattern.
pub fn modeset(card: &Card) -> Result<Shown<'_>, String> {
    let out = output(card)?;
    let (w, h) = out.size;
    let mut db = card
        .create_dumb_buffer((w, h), DrmFourcc::Xrgb8888, 32)
        .map_err(|e| format!("CREATE_DUMB {w}x{h}: {e}"))?;
    {
        let pitch = db.pitch();
        let mut map = card
            .map_dumb_buffer(&mut db)
            .map_err(|e| format!("MAP_DUMB: {e}"))?;
        vgpu_guest_test::pattern::fill_xrgb(map.as_mut(), w, h, pitch);
    }
    let fb = card
        .add_framebuffer(&db, 24, 32)
        .map_err(|e| format!("ADDFB: {e}"))?;
    let shown = Shown {
        card,
        fb,
        buffer: Some(db),
        size: (w, h),
    };
    show(card, &out, fb)?;
    Ok(shown)
}

/// The subtest's result line for a modeset attempt.
pub fn outcome(r: &Result<Shown<'_>, String>) -> Outcome {
    match r {
        Ok(s) => Outcome::Pass(format!(
            "pattern scanned out at {}x{} (dumb buffer, SETCRTC, DIRTYFB)",
            s.size.0, s.size.1
        )),
        Err(e) => Outcome::Fail(e.clone()),
    }
}
