//! The test pattern the guest scans out: eight vertical colour bars, and
//! the check the host runs on QEMU's screendump of it (or the daemon's
//! screenshot). The blob scanout shows the bars mirrored, so the host can
//! tell it from the dumb buffer shown before.

/// The bars' colours, left to right, as RGB.
pub const BARS: [[u8; 3]; 8] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];

/// Which way the bars run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bars {
    /// [`BARS`] left to right (the dumb-buffer modeset).
    Forward,
    /// [`BARS`] right to left (the blob scanout).
    Mirrored,
}

/// The colour of column `x` of a `width`-pixel-wide screen.
pub fn bar_at(x: u32, width: u32) -> [u8; 3] {
    bar_of(Bars::Forward, x, width)
}

fn bar_of(bars: Bars, x: u32, width: u32) -> [u8; 3] {
    let i = (u64::from(x) * BARS.len() as u64 / u64::from(width.max(1))) as usize;
    let i = i.min(BARS.len() - 1);
    match bars {
        Bars::Forward => BARS[i],
        Bars::Mirrored => BARS[BARS.len() - 1 - i],
    }
}

/// Fills an XRGB8888 (little-endian: B, G, R, X bytes) framebuffer.
pub fn fill_xrgb(buf: &mut [u8], width: u32, height: u32, pitch: u32) {
    fill_bars(Bars::Forward, buf, width, height, pitch);
}

/// Fills an XRGB8888 framebuffer with the bars running `bars`' way.
pub fn fill_bars(bars: Bars, buf: &mut [u8], width: u32, height: u32, pitch: u32) {
    for y in 0..height as usize {
        let Some(row) = buf.get_mut(y * pitch as usize..) else {
            return;
        };
        for x in 0..width {
            let [r, g, b] = bar_of(bars, x, width);
            let o = x as usize * 4;
            if let Some(px) = row.get_mut(o..o + 4) {
                px.copy_from_slice(&[b, g, r, 0]);
            }
        }
    }
}

/// Checks a `width`×`height` RGB image (`pixel(x, y)`) shows the pattern:
/// the centre of every bar, at a quarter, half and three quarters of the
/// height, within a small tolerance (the display path may convert).
pub fn check(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Result<(), String> {
    check_bars(Bars::Forward, width, height, pixel)
}

/// [`check`] for the bars running `bars`' way.
pub fn check_bars(
    bars: Bars,
    width: u32,
    height: u32,
    pixel: impl Fn(u32, u32) -> [u8; 3],
) -> Result<(), String> {
    if width < BARS.len() as u32 || height < 4 {
        return Err(format!("a {width}x{height} screen cannot show the pattern"));
    }
    for i in 0..BARS.len() {
        let x = ((2 * i as u64 + 1) * u64::from(width) / (2 * BARS.len() as u64)) as u32;
        let want = bar_of(bars, x, width);
        let want = &want;
        for y in [height / 4, height / 2, 3 * height / 4] {
            let got = pixel(x, y);
            if got.iter().zip(want).any(|(g, w)| g.abs_diff(*w) > 8) {
                return Err(format!(
                    "pixel ({x}, {y}) is {got:?}, bar {i} should be {want:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Parses a binary PPM (P6, maxval 255), as QEMU's screendump writes it,
/// into (width, height, RGB bytes).
pub fn parse_ppm(data: &[u8]) -> Result<(u32, u32, &[u8]), String> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if data.get(i) == Some(&b'#') {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    i += 1; // the single whitespace after maxval
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("not a P6 PPM with maxval 255: {fields:?}"));
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| format!("bad PPM size {s:?}"));
    let (w, h) = (num(&fields[1])?, num(&fields[2])?);
    let len = w as usize * h as usize * 3;
    let body = data.get(i..i + len).ok_or("PPM shorter than its size")?;
    Ok((w, h, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_filled_framebuffer_passes_the_check_and_a_blank_one_fails() {
        let (w, h) = (64u32, 16u32);
        let mut fb = vec![0u8; (w * h * 4) as usize];
        fill_xrgb(&mut fb, w, h, w * 4);
        let px = |x: u32, y: u32| {
            let o = ((y * w + x) * 4) as usize;
            [fb[o + 2], fb[o + 1], fb[o]]
        };
        assert!(check(w, h, px).is_ok());
        assert!(check(w, h, |_, _| [0, 0, 0]).is_err());
        assert!(
            check_bars(Bars::Mirrored, w, h, px).is_err(),
            "the two differ"
        );
        fill_bars(Bars::Mirrored, &mut fb, w, h, w * 4);
        let px = |x: u32, y: u32| {
            let o = ((y * w + x) * 4) as usize;
            [fb[o + 2], fb[o + 1], fb[o]]
        };
        assert!(check_bars(Bars::Mirrored, w, h, px).is_ok());
        assert!(check(w, h, px).is_err());
    }

    #[test]
    fn ppm_round_trip() {
        let mut data = b"P6\n# comment\n2 1\n255\n".to_vec();
        data.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let (w, h, body) = parse_ppm(&data).unwrap();
        assert_eq!((w, h, body), (2, 1, &[1u8, 2, 3, 4, 5, 6][..]));
        assert!(parse_ppm(b"P5\n1 1\n255\n\0").is_err());
        assert!(parse_ppm(b"P6\n4 4\n255\n\0").is_err());
    }
}
