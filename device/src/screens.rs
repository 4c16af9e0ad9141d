//! What each scanout shows, kept in the daemon: the pixels of every
//! display update, whether or not a VMM display channel takes them. With
//! crosvm or QEMU's generic vhost-user device no display channel exists;
//! the admin socket's `screenshot` then is the way to see the guest's
//! screen (and with QEMU's display channel it shows the same frames).
//!
//! Owns: one frame per scanout (B, G, R, X bytes, tightly packed, as the
//! display channel carries them) behind one mutex, held only to copy rows
//! in or out, and the PNG encoding of a frame. Must not: know about
//! resources; the device hands it converted pixels.

use std::sync::{Arc, Mutex, MutexGuard};

/// One scanout's image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels (0: the scanout is off).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// B, G, R, X bytes, `width * 4` per row.
    pub bgrx: Vec<u8>,
    /// Updates applied since the scanout got this size.
    pub updates: u64,
}

/// The part of an update that changed what a frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Left edge, in pixels.
    pub x: u32,
    /// Top edge, in rows.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The frames of every scanout of the VM being served. Cheap to clone;
/// every clone is the same set.
#[derive(Debug, Clone, Default)]
pub struct Screens {
    frames: Arc<Mutex<Vec<Frame>>>,
}

/// Why a screenshot cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScreenshotError {
    /// No such scanout, or it shows nothing.
    #[error("scanout {0} shows nothing (no VM, or the guest has not set it)")]
    Blank(u32),
    /// Encoding failed.
    #[error("encoding the PNG failed: {0}")]
    Encode(String),
}

impl Screens {
    fn lock(&self) -> MutexGuard<'_, Vec<Frame>> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Scanout `i` now shows a `width`×`height` image (0×0: nothing).
    pub fn set_scanout(&self, i: u32, width: u32, height: u32) {
        let mut frames = self.lock();
        let i = i as usize;
        if frames.len() <= i {
            frames.resize_with(i + 1, Frame::default);
        }
        let f = &mut frames[i];
        if (f.width, f.height) != (width, height) {
            let bytes = width as usize * height as usize * 4;
            *f = Frame {
                width,
                height,
                bgrx: vec![0; bytes],
                updates: 0,
            };
        }
    }

    /// New pixels (`width * 4` bytes per row) at `x, y` of scanout `i`;
    /// whatever falls outside its image is ignored.
    pub fn update(&self, i: u32, x: u32, y: u32, width: u32, height: u32, bgrx: &[u8]) {
        let mut frames = self.lock();
        let Some(f) = frames.get_mut(i as usize) else {
            return;
        };
        if x >= f.width || y >= f.height || width == 0 {
            return;
        }
        let cols = width.min(f.width - x) as usize;
        let rows = height.min(f.height - y) as usize;
        let src_row = width as usize * 4;
        let dst_row = f.width as usize * 4;
        for r in 0..rows {
            let Some(src) = bgrx.get(r * src_row..r * src_row + cols * 4) else {
                break;
            };
            let at = (y as usize + r) * dst_row + x as usize * 4;
            f.bgrx[at..at + cols * 4].copy_from_slice(src);
        }
        f.updates += 1;
    }

    /// As [`Self::update`], and says which part of the new pixels differs
    /// from what the frame held: the smallest rectangle, in the update's
    /// own coordinates (`None`: nothing changed). An update the frame does
    /// not wholly hold (no such scanout, or it reaches past the image) is
    /// all "changed".
    pub fn merge(
        &self,
        i: u32,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        bgrx: &[u8],
    ) -> Option<Damage> {
        let whole = Damage {
            x: 0,
            y: 0,
            width,
            height,
        };
        if width == 0 || height == 0 {
            return None;
        }
        let mut frames = self.lock();
        let Some(f) = frames.get_mut(i as usize) else {
            return Some(whole);
        };
        let src_row = width as usize * 4;
        let fits = u64::from(x) + u64::from(width) <= u64::from(f.width)
            && u64::from(y) + u64::from(height) <= u64::from(f.height)
            && bgrx.len() >= src_row * height as usize;
        if !fits {
            drop(frames);
            self.update(i, x, y, width, height, bgrx);
            return Some(whole);
        }
        let dst_row = f.width as usize * 4;
        // Changed columns (in pixels) and rows, as half-open ranges.
        let (mut left, mut right) = (width as usize, 0usize);
        let (mut top, mut bottom) = (height as usize, 0usize);
        for (r, src) in bgrx.chunks_exact(src_row).take(height as usize).enumerate() {
            let at = (y as usize + r) * dst_row + x as usize * 4;
            let dst = &mut f.bgrx[at..at + src_row];
            if dst == src {
                continue;
            }
            let differs = |(a, b): (&[u8], &[u8])| a != b;
            let pairs = || dst.chunks_exact(4).zip(src.chunks_exact(4));
            let first = pairs().position(differs).unwrap_or(0);
            let last = pairs().rposition(differs).unwrap_or(width as usize - 1);
            left = left.min(first);
            right = right.max(last + 1);
            top = top.min(r);
            bottom = r + 1;
            dst.copy_from_slice(src);
        }
        f.updates += 1;
        (top < bottom).then(|| Damage {
            x: left as u32,
            y: top as u32,
            width: (right - left) as u32,
            height: (bottom - top) as u32,
        })
    }

    /// Forgets every frame (the VM is gone).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A copy of scanout `i`'s frame, if it shows something.
    pub fn frame(&self, i: u32) -> Option<Frame> {
        self.lock()
            .get(i as usize)
            .filter(|f| f.width > 0 && f.height > 0)
            .cloned()
    }

    /// Scanout `i`'s image as a PNG (8-bit RGB), with its size.
    pub fn png(&self, i: u32) -> Result<(Frame, Vec<u8>), ScreenshotError> {
        let frame = self.frame(i).ok_or(ScreenshotError::Blank(i))?;
        let mut rgb = Vec::with_capacity(frame.width as usize * frame.height as usize * 3);
        for px in frame.bgrx.chunks_exact(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, frame.width, frame.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let encode = |e: png::EncodingError| ScreenshotError::Encode(e.to_string());
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(&rgb).map_err(encode)?;
        writer.finish().map_err(encode)?;
        Ok((frame, out))
    }
}

/// Decodes an 8-bit RGB or RGBA PNG into `(width, height, rgb)` (for
/// `vgpuctl` and tests).
pub fn decode_png(data: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(data));
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "the PNG is too large".to_string())?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let step = match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        other => return Err(format!("unexpected PNG format {other:?}")),
    };
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(step)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Ok((info.width, info.height, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_report_the_smallest_changed_rectangle() {
        let s = Screens::default();
        s.set_scanout(0, 8, 6);
        let black = vec![0u8; 8 * 6 * 4];
        // Same pixels as the (black) frame: nothing changed.
        assert_eq!(s.merge(0, 0, 0, 8, 6, &black), None);
        // Two pixels differ, at (2, 1) and (5, 3) of a 6×4 update at (1, 1).
        let mut px = vec![0u8; 6 * 4 * 4];
        px[(6 + 2) * 4] = 9;
        px[(3 * 6 + 5) * 4 + 3] = 1;
        assert_eq!(
            s.merge(0, 1, 1, 6, 4, &px),
            Some(Damage {
                x: 2,
                y: 1,
                width: 4,
                height: 3
            })
        );
        let f = s.frame(0).unwrap();
        assert_eq!(f.bgrx[(2 * 8 + 3) * 4], 9, "stored at (3, 2) of the frame");
        assert_eq!(f.bgrx[(4 * 8 + 6) * 4 + 3], 1);
        // The same again: nothing new.
        assert_eq!(s.merge(0, 1, 1, 6, 4, &px), None);
        // Past the frame, or no frame: all of it counts as changed.
        let all = |w, h| {
            Some(Damage {
                x: 0,
                y: 0,
                width: w,
                height: h,
            })
        };
        assert_eq!(s.merge(0, 4, 4, 6, 4, &px), all(6, 4));
        assert_eq!(s.merge(3, 0, 0, 6, 4, &px), all(6, 4));
        assert_eq!(s.merge(0, 0, 0, 0, 4, &[]), None);
    }

    #[test]
    fn updates_land_where_they_belong_and_round_trip_through_png() {
        let s = Screens::default();
        assert_eq!(s.png(0).unwrap_err(), ScreenshotError::Blank(0));
        s.set_scanout(1, 4, 3);
        // A 2×2 red square at (1, 1); B, G, R, X.
        let red = [0, 0, 255, 0].repeat(4);
        s.update(1, 1, 1, 2, 2, &red);
        // Clipped: a 3×1 update at (3, 2) only touches one pixel.
        s.update(1, 3, 2, 3, 1, &[255, 0, 0, 0].repeat(3));
        let (frame, png) = s.png(1).unwrap();
        assert_eq!((frame.width, frame.height, frame.updates), (4, 3, 2));
        let (w, h, rgb) = decode_png(&png).unwrap();
        assert_eq!((w, h), (4, 3));
        let px = |x: usize, y: usize| &rgb[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        assert_eq!(px(0, 0), [0, 0, 0]);
        assert_eq!(px(1, 1), [255, 0, 0]);
        assert_eq!(px(2, 2), [255, 0, 0]);
        assert_eq!(px(3, 2), [0, 0, 255], "the clipped update's one pixel");
        // Same size again keeps the pixels; another size starts black.
        s.set_scanout(1, 4, 3);
        assert_eq!(s.frame(1).unwrap().updates, 2);
        s.set_scanout(1, 2, 2);
        assert!(s.frame(1).unwrap().bgrx.iter().all(|b| *b == 0));
        s.set_scanout(1, 0, 0);
        assert!(s.frame(1).is_none());
        assert!(s.frame(7).is_none());
        s.clear();
        assert!(s.frame(1).is_none());
    }
}
