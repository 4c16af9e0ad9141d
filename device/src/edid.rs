//! A valid EDID 1.4 base block for a scanout's mode: the answer to
//! GET_EDID. The preferred detailed timing uses CVT reduced blanking at
//! 60 Hz (lower if the pixel clock would not fit the 16-bit field).

use crate::config::Mode;

/// Size of an EDID base block.
pub const EDID_BLOCK: usize = 128;

/// Builds the EDID for a display showing `mode` (`serial` tells scanouts apart).
pub fn edid_for(mode: Mode, serial: u32) -> [u8; EDID_BLOCK] {
    let mut e = [0u8; EDID_BLOCK];
    e[0..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "VGP": three 5-bit letters, big-endian.
    let id: u16 = ((b'V' - b'@') as u16) << 10 | ((b'G' - b'@') as u16) << 5 | (b'P' - b'@') as u16;
    e[8..10].copy_from_slice(&id.to_be_bytes());
    e[10..12].copy_from_slice(&0x0001u16.to_le_bytes()); // product code
    e[12..16].copy_from_slice(&serial.to_le_bytes());
    e[16] = 1; // week
    e[17] = 36; // year: 1990 + 36 = 2026
    e[18] = 1; // EDID 1.4
    e[19] = 4;
    e[20] = 0xa5; // digital, 8 bits per colour, DisplayPort
                  // Physical size in cm at ~96 dpi.
    e[21] = u8::try_from((mode.width as u64 * 254 / 96 / 100).clamp(1, 255)).unwrap_or(255);
    e[22] = u8::try_from((mode.height as u64 * 254 / 96 / 100).clamp(1, 255)).unwrap_or(255);
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // sRGB default, preferred timing includes native mode
                  // sRGB chromaticity.
    e[25..35].copy_from_slice(&[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    // No established timings; standard timings unused (0x01 0x01).
    for i in 0..8 {
        e[38 + 2 * i] = 0x01;
        e[39 + 2 * i] = 0x01;
    }
    let refresh = detailed_timing(mode, &mut e[54..72]);
    // Display product name.
    descriptor_text(0xfc, b"vgpu", &mut e[72..90]);
    // Range limits: 50-75 Hz vertical (down to the preferred timing's rate
    // for modes too large for 60 Hz), 30-255 kHz horizontal, 600 MHz.
    // (one Hz lower: the pixel clock is rounded down to 10 kHz).
    let vmin = u8::try_from(refresh.saturating_sub(1).min(50)).unwrap_or(50);
    e[90..108].copy_from_slice(&[
        0, 0, 0, 0xfd, 0, vmin, 75, 30, 255, 60, 0x00, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    ]);
    descriptor_text(0xff, format!("{serial:08}").as_bytes(), &mut e[108..126]);
    e[126] = 0; // no extension blocks
    let sum: u8 = e[..127].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    e[127] = 0u8.wrapping_sub(sum);
    e
}

fn descriptor_text(tag: u8, text: &[u8], d: &mut [u8]) {
    d[..5].copy_from_slice(&[0, 0, 0, tag, 0]);
    let body = &mut d[5..18];
    body.fill(0x20);
    let n = text.len().min(13);
    body[..n].copy_from_slice(&text[..n]);
    if n < 13 {
        body[n] = 0x0a;
    }
}

/// Writes the preferred timing; returns its vertical refresh in Hz.
fn detailed_timing(mode: Mode, d: &mut [u8]) -> u64 {
    let (w, h) = (mode.width, mode.height);
    // CVT reduced blanking: 160 pixels of horizontal blanking; vertical
    // blanking of at least 460 µs.
    let (hfront, hsync, hblank) = (48u32, 32u32, 160u32);
    let (vfront, vsync) = (3u32, 6u32);
    let mut refresh = 60u64;
    let htotal = u64::from(w + hblank);
    let vblank = |refresh: u64| -> u32 {
        let line_us = 1_000_000.0 / (refresh as f64 * (h as f64 + 30.0));
        ((460.0 / line_us).ceil() as u32).max(vfront + vsync + 6)
    };
    let mut vb = vblank(refresh);
    // Pixel clock in 10 kHz units must fit 16 bits.
    while refresh > 24 && htotal * u64::from(h + vb) * refresh / 10_000 > u64::from(u16::MAX) {
        refresh -= 1;
        vb = vblank(refresh);
    }
    let clock = u16::try_from(htotal * u64::from(h + vb) * refresh / 10_000).unwrap_or(u16::MAX);
    d[0..2].copy_from_slice(&clock.to_le_bytes());
    d[2] = (w & 0xff) as u8;
    d[3] = (hblank & 0xff) as u8;
    d[4] = (((w >> 8) & 0xf) << 4 | ((hblank >> 8) & 0xf)) as u8;
    d[5] = (h & 0xff) as u8;
    d[6] = (vb & 0xff) as u8;
    d[7] = (((h >> 8) & 0xf) << 4 | ((vb >> 8) & 0xf)) as u8;
    d[8] = (hfront & 0xff) as u8;
    d[9] = (hsync & 0xff) as u8;
    d[10] = (((vfront & 0xf) << 4) | (vsync & 0xf)) as u8;
    d[11] = (((hfront >> 8) & 3) << 6
        | ((hsync >> 8) & 3) << 4
        | ((vfront >> 4) & 3) << 2
        | ((vsync >> 4) & 3)) as u8;
    // Image size in mm.
    let (wmm, hmm) = (w * 254 / 960, h * 254 / 960);
    d[12] = (wmm & 0xff) as u8;
    d[13] = (hmm & 0xff) as u8;
    d[14] = (((wmm >> 8) & 0xf) << 4 | ((hmm >> 8) & 0xf)) as u8;
    d[15] = 0;
    d[16] = 0;
    d[17] = 0x1a; // digital separate sync, +hsync -vsync (CVT-RB)
    refresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edid_is_well_formed_for_every_size() {
        for (w, h) in [
            (64, 64),
            (1280, 800),
            (1920, 1080),
            (3840, 2160),
            (4095, 4095),
        ] {
            let e = edid_for(
                Mode {
                    width: w,
                    height: h,
                },
                7,
            );
            assert_eq!(&e[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
            assert_eq!(e.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0, "checksum");
            // The preferred timing carries the mode.
            let dw = u32::from(e[56]) | (u32::from(e[58]) >> 4) << 8;
            let dh = u32::from(e[59]) | (u32::from(e[61]) >> 4) << 8;
            assert_eq!((dw, dh), (w, h));
            let clock = u64::from(u16::from_le_bytes([e[54], e[55]])) * 10_000;
            assert_ne!(clock, 0, "pixel clock set");
            assert_eq!(&e[77..81], b"vgpu");
            // The preferred timing's refresh lies in the advertised range.
            let hblank = u64::from(e[57]) | u64::from(e[58] & 0xf) << 8;
            let vblank = u64::from(e[60]) | u64::from(e[61] & 0xf) << 8;
            let refresh = clock / ((u64::from(w) + hblank) * (u64::from(h) + vblank));
            let (vmin, vmax) = (u64::from(e[95]), u64::from(e[96]));
            assert!(
                (vmin..=vmax).contains(&refresh),
                "{w}x{h}: {refresh} Hz outside {vmin}-{vmax}"
            );
        }
    }
}
