//! The display channel: where scanout changes, pixel updates and the
//! cursor go. With QEMU this is the vhost-user-gpu socket QEMU hands over
//! with GPU_SET_SOCKET (`vhost::vhost_user::GpuBackend`); without one (crosvm,
//! the test harness without a display) the device runs headless.
//!
//! Also owns pixel-format conversion to what the channel carries: QEMU
//! composites UPDATE payloads as PIXMAN_x8r8g8b8, tightly packed — bytes
//! B, G, R, X in memory.

use std::io;

use vgpu_proto::virtio_gpu::Format;
use vhost::vhost_user::gpu_message::{
    VhostUserGpuCursorPos, VhostUserGpuCursorUpdate, VhostUserGpuScanout, VhostUserGpuUpdate,
};
use vhost::vhost_user::GpuBackend;

/// Bytes of a 64×64 ARGB cursor image.
pub const CURSOR_BYTES: usize = 64 * 64 * 4;

/// A scanout's size as the frontend sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendMode {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Whether the output is enabled.
    pub enabled: bool,
}

/// Where display output goes.
pub trait DisplaySink: Send {
    /// The frontend's view of its outputs, if it has one to offer.
    fn display_info(&mut self) -> Option<Vec<FrontendMode>>;
    /// A scanout now shows a `width`×`height` image (0×0: disabled).
    fn set_scanout(&mut self, scanout: u32, width: u32, height: u32) -> io::Result<()>;
    /// New pixels (B, G, R, X bytes, tightly packed) at `x, y` of a scanout.
    fn update(
        &mut self,
        scanout: u32,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        bgrx: &[u8],
    ) -> io::Result<()>;
    /// A new cursor image (B, G, R, A bytes) and its hotspot, at `x, y`.
    fn cursor_update(
        &mut self,
        scanout: u32,
        x: u32,
        y: u32,
        hot: (u32, u32),
        argb: &[u8; CURSOR_BYTES],
    ) -> io::Result<()>;
    /// The cursor moved (or was hidden).
    fn cursor_move(&mut self, scanout: u32, x: u32, y: u32, visible: bool) -> io::Result<()>;
}

/// The QEMU display channel.
pub struct GpuSocketDisplay {
    gpu: GpuBackend,
}

impl std::fmt::Debug for GpuSocketDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GpuSocketDisplay")
    }
}

impl GpuSocketDisplay {
    /// Wraps the socket QEMU sent with GPU_SET_SOCKET.
    pub fn new(gpu: GpuBackend) -> Self {
        Self { gpu }
    }
}

impl DisplaySink for GpuSocketDisplay {
    fn display_info(&mut self) -> Option<Vec<FrontendMode>> {
        match self.gpu.get_display_info() {
            Ok(info) => Some(
                info.pmodes
                    .iter()
                    .map(|p| FrontendMode {
                        width: p.r.width,
                        height: p.r.height,
                        enabled: p.enabled != 0,
                    })
                    .collect(),
            ),
            Err(e) => {
                log::warn!("display channel: GET_DISPLAY_INFO failed: {e}");
                None
            }
        }
    }

    fn set_scanout(&mut self, scanout: u32, width: u32, height: u32) -> io::Result<()> {
        self.gpu.set_scanout(&VhostUserGpuScanout {
            scanout_id: scanout,
            width,
            height,
        })
    }

    fn update(
        &mut self,
        scanout: u32,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        bgrx: &[u8],
    ) -> io::Result<()> {
        self.gpu.update_scanout(
            &VhostUserGpuUpdate {
                scanout_id: scanout,
                x,
                y,
                width,
                height,
            },
            bgrx,
        )
    }

    fn cursor_update(
        &mut self,
        scanout: u32,
        x: u32,
        y: u32,
        hot: (u32, u32),
        argb: &[u8; CURSOR_BYTES],
    ) -> io::Result<()> {
        self.gpu.cursor_update(
            &VhostUserGpuCursorUpdate {
                pos: VhostUserGpuCursorPos {
                    scanout_id: scanout,
                    x,
                    y,
                },
                hot_x: hot.0,
                hot_y: hot.1,
            },
            argb,
        )
    }

    fn cursor_move(&mut self, scanout: u32, x: u32, y: u32, visible: bool) -> io::Result<()> {
        let pos = VhostUserGpuCursorPos {
            scanout_id: scanout,
            x,
            y,
        };
        if visible {
            self.gpu.cursor_pos(&pos)
        } else {
            self.gpu.cursor_pos_hide(&pos)
        }
    }
}

/// Converts one row of pixels of `format` to B, G, R, X (or, with
/// `keep_alpha`, B, G, R, A) in place.
pub fn to_bgrx_in_place(format: Format, row: &mut [u8], keep_alpha: bool) {
    // (index of B, index of G, index of R, index of A) in the source pixel.
    let (b, g, r, a) = match format {
        Format::B8G8R8A8Unorm | Format::B8G8R8X8Unorm => (0, 1, 2, 3),
        Format::A8R8G8B8Unorm | Format::X8R8G8B8Unorm => (3, 2, 1, 0),
        Format::R8G8B8A8Unorm | Format::R8G8B8X8Unorm => (2, 1, 0, 3),
        Format::X8B8G8R8Unorm | Format::A8B8G8R8Unorm => (1, 2, 3, 0),
    };
    if (b, g, r) == (0, 1, 2) {
        // Already B, G, R: only the fourth byte becomes 0xff (as one OR per
        // pixel, which the compiler vectorizes), unless it is kept alpha.
        if !(keep_alpha && format == Format::B8G8R8A8Unorm) {
            for px in row.chunks_exact_mut(4) {
                let v = u32::from_le_bytes([px[0], px[1], px[2], px[3]]) | 0xff00_0000;
                px.copy_from_slice(&v.to_le_bytes());
            }
        }
        return;
    }
    let has_alpha = matches!(
        format,
        Format::B8G8R8A8Unorm
            | Format::A8R8G8B8Unorm
            | Format::R8G8B8A8Unorm
            | Format::A8B8G8R8Unorm
    );
    for px in row.chunks_exact_mut(4) {
        let src = [px[0], px[1], px[2], px[3]];
        px[0] = src[b];
        px[1] = src[g];
        px[2] = src[r];
        px[3] = if keep_alpha && has_alpha {
            src[a]
        } else {
            0xff
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_converts_to_bgrx() {
        // Red, in each format's byte order.
        let cases: [(Format, [u8; 4]); 8] = [
            (Format::B8G8R8A8Unorm, [0, 0, 0xff, 0x80]),
            (Format::B8G8R8X8Unorm, [0, 0, 0xff, 0]),
            (Format::A8R8G8B8Unorm, [0x80, 0xff, 0, 0]),
            (Format::X8R8G8B8Unorm, [0, 0xff, 0, 0]),
            (Format::R8G8B8A8Unorm, [0xff, 0, 0, 0x80]),
            (Format::R8G8B8X8Unorm, [0xff, 0, 0, 0]),
            (Format::A8B8G8R8Unorm, [0x80, 0, 0, 0xff]),
            (Format::X8B8G8R8Unorm, [0, 0, 0, 0xff]),
        ];
        for (format, px) in cases {
            let mut row = px;
            to_bgrx_in_place(format, &mut row, false);
            assert_eq!(row, [0, 0, 0xff, 0xff], "{format:?}");
            let mut row = px;
            to_bgrx_in_place(format, &mut row, true);
            let alpha = if matches!(
                format,
                Format::B8G8R8X8Unorm
                    | Format::X8R8G8B8Unorm
                    | Format::R8G8B8X8Unorm
                    | Format::X8B8G8R8Unorm
            ) {
                0xff
            } else {
                0x80
            };
            assert_eq!(row, [0, 0, 0xff, alpha], "{format:?} with alpha");
        }
    }
}
