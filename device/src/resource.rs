//! Resources: what a resource id names, and the bounds arithmetic of
//! transfers, flushes and scanout rectangles — all checked, every operand
//! named in the error.

use vgpu_backend::ObjectId;
use vgpu_proto::virtio_gpu::{BlobMem, Format, Rect};

use crate::guest_io::GuestBacking;

/// Bytes per pixel of every spec format.
pub const BPP: u64 = 4;

/// Gallium texture targets vgpu accepts in RESOURCE_CREATE_3D.
pub const PIPE_BUFFER: u32 = 0;
/// A 2D texture.
pub const PIPE_TEXTURE_2D: u32 = 2;
/// A rectangle texture.
pub const PIPE_TEXTURE_RECT: u32 = 4;

/// What kind of resource, with its host storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// RESOURCE_CREATE_2D: a host copy of an image.
    Image {
        /// Pixel format.
        format: Format,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The host buffer.
        object: ObjectId,
    },
    /// RESOURCE_CREATE_3D of a linear buffer (`width` bytes).
    Buffer {
        /// Bytes.
        width: u32,
        /// The host buffer.
        object: ObjectId,
    },
    /// A blob.
    Blob {
        /// Where it lives.
        mem: BlobMem,
        /// `VIRTIO_GPU_BLOB_FLAG_*`.
        flags: u32,
        /// Size in bytes.
        size: u64,
        /// The host buffer (HOST3D and HOST3D_GUEST).
        object: Option<ObjectId>,
        /// The context that created it (HOST3D*).
        ctx: Option<u32>,
    },
}

/// A mapping of a blob into the host-visible region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Offset in the region.
    pub offset: u64,
    /// Length (page aligned).
    pub len: u64,
    /// What the VMM maps there.
    pub backed: MapBacking,
    /// The caching MAP_BLOB told the guest to map it with.
    pub caching: MapCaching,
}

/// What a guest's host-visible range maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapBacking {
    /// The blob's host buffer, pinned for the mapping.
    Object,
    /// The VM's scratch file: the buffer was purged while mapped and the
    /// range remapped (see `vgpu_backend::PurgeWatch`).
    Scratch,
    /// Nothing: the remap of a purged buffer failed half-way, after the
    /// VMM had unmapped the range.
    Nothing,
}

/// How the guest maps a blob (MAP_BLOB's `map_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapCaching {
    /// Cached, coherent.
    Cached,
    /// Uncached.
    Uncached,
    /// Write-combined.
    WriteCombined,
}

impl MapCaching {
    /// `VIRTIO_GPU_MAP_CACHE_*`.
    pub fn map_info(self) -> u32 {
        use vgpu_proto::virtio_gpu::{
            VIRTIO_GPU_MAP_CACHE_CACHED, VIRTIO_GPU_MAP_CACHE_UNCACHED, VIRTIO_GPU_MAP_CACHE_WC,
        };
        match self {
            MapCaching::Cached => VIRTIO_GPU_MAP_CACHE_CACHED,
            MapCaching::Uncached => VIRTIO_GPU_MAP_CACHE_UNCACHED,
            MapCaching::WriteCombined => VIRTIO_GPU_MAP_CACHE_WC,
        }
    }
}

impl From<vgpu_backend::region::Caching> for MapCaching {
    fn from(c: vgpu_backend::region::Caching) -> Self {
        match c {
            vgpu_backend::region::Caching::Cached => MapCaching::Cached,
            vgpu_backend::region::Caching::WriteCombined => MapCaching::WriteCombined,
        }
    }
}

/// One resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Id.
    pub id: u32,
    /// Kind and storage.
    pub kind: ResourceKind,
    /// Guest pages (ATTACH_BACKING, or a GUEST blob's entries).
    pub backing: Option<GuestBacking>,
    /// Assigned UUID.
    pub uuid: Option<[u8; 16]>,
    /// Host-visible mapping.
    pub mapping: Option<Mapping>,
    /// The caching the guest configured for its mappings (i915
    /// GEM_SET_MMAP_MODE, or WC for device memory); `None`: the caching of
    /// the memory the buffer is in.
    pub map_caching: Option<MapCaching>,
    /// i915 tiling `(mode, stride)` set by GEM_SET_TILING on the emulated
    /// device (`I915_TILING_NONE`, 0 until then).
    pub tiling: (u32, u32),
    /// Scanouts showing it (bit per scanout).
    pub scanouts: u32,
    /// Contexts it is attached to.
    pub contexts: Vec<u32>,
}

impl Resource {
    /// A resource with nothing attached yet.
    pub fn new(id: u32, kind: ResourceKind) -> Self {
        Self {
            id,
            kind,
            backing: None,
            uuid: None,
            mapping: None,
            map_caching: None,
            tiling: (0, 0),
            scanouts: 0,
            contexts: Vec::new(),
        }
    }

    /// The host buffer, if any.
    pub fn object(&self) -> Option<ObjectId> {
        match &self.kind {
            ResourceKind::Image { object, .. } | ResourceKind::Buffer { object, .. } => {
                Some(*object)
            }
            ResourceKind::Blob { object, .. } => *object,
        }
    }

    /// Format, width and height for images.
    pub fn image(&self) -> Option<(Format, u32, u32)> {
        match self.kind {
            ResourceKind::Image {
                format,
                width,
                height,
                ..
            } => Some((format, width, height)),
            _ => None,
        }
    }

    /// Whether this is a blob.
    pub fn is_blob(&self) -> bool {
        matches!(self.kind, ResourceKind::Blob { .. })
    }
}

/// A rectangle or offset outside what it refers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// Rectangle outside the image.
    #[error("rect {x},{y} {w}x{h} is outside the {width}x{height} image")]
    RectOutside {
        /// x.
        x: u32,
        /// y.
        y: u32,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// A transfer reads past the backing.
    #[error("transfer needs backing bytes {offset}..{end}, the backing has {len}")]
    PastBacking {
        /// First byte.
        offset: u64,
        /// End (exclusive), saturated on overflow.
        end: u64,
        /// Backing size.
        len: u64,
    },
    /// Arithmetic overflow in the guest's numbers.
    #[error("{what} overflows")]
    Overflow {
        /// Which computation.
        what: &'static str,
    },
}

/// Checks that `r` lies inside a `width`×`height` image (and is not empty
/// when `allow_empty` is false).
pub fn check_rect(r: &Rect, width: u32, height: u32, allow_empty: bool) -> Result<(), BoundsError> {
    let (x, y, w, h) = (r.x.get(), r.y.get(), r.width.get(), r.height.get());
    let inside = x.checked_add(w).is_some_and(|e| e <= width)
        && y.checked_add(h).is_some_and(|e| e <= height);
    if !inside || (!allow_empty && (w == 0 || h == 0)) {
        return Err(BoundsError::RectOutside {
            x,
            y,
            w,
            h,
            width,
            height,
        });
    }
    Ok(())
}

/// One row of a 2D transfer: `len` bytes from backing offset `src` to image
/// offset `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCopy {
    /// Backing offset.
    pub src: u64,
    /// Image offset.
    pub dst: u64,
    /// Bytes.
    pub len: u64,
}

/// The copies TRANSFER_TO_HOST_2D does for `r` at backing `offset` into a
/// `width`×`height` image whose backing has `backing_len` bytes (QEMU's
/// semantics: row `i` of the rect starts at `offset + i * stride` of the
/// backing, `stride` being the image's). A full-width rect is one copy.
pub fn transfer_rows(
    r: &Rect,
    offset: u64,
    width: u32,
    height: u32,
    backing_len: u64,
) -> Result<Vec<RowCopy>, BoundsError> {
    check_rect(r, width, height, true)?;
    let (x, y, w, h) = (
        u64::from(r.x.get()),
        u64::from(r.y.get()),
        u64::from(r.width.get()),
        u64::from(r.height.get()),
    );
    if w == 0 || h == 0 {
        return Ok(Vec::new());
    }
    let stride = u64::from(width) * BPP;
    let row = w * BPP;
    let ov = |what| BoundsError::Overflow { what };
    // Last byte read: offset + (h-1)*stride + row.
    let end = (h - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(row))
        .and_then(|v| v.checked_add(offset))
        .ok_or(ov("transfer offset"))?;
    if end > backing_len {
        return Err(BoundsError::PastBacking {
            offset,
            end,
            len: backing_len,
        });
    }
    let dst0 = y * stride + x * BPP;
    if x == 0 && w == u64::from(width) {
        return Ok(vec![RowCopy {
            src: offset,
            dst: dst0,
            len: h * stride,
        }]);
    }
    Ok((0..h)
        .map(|i| RowCopy {
            src: offset + i * stride,
            dst: dst0 + i * stride,
            len: row,
        })
        .collect())
}

/// The intersection of two rectangles, `None` if empty.
pub fn intersect(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> Option<(u32, u32, u32, u32)> {
    let x0 = a.0.max(b.0);
    let y0 = a.1.max(b.1);
    let x1 = (a.0 as u64 + a.2 as u64).min(b.0 as u64 + b.2 as u64);
    let y1 = (a.1 as u64 + a.3 as u64).min(b.1 as u64 + b.3 as u64);
    (x1 > x0 as u64 && y1 > y0 as u64)
        .then(|| (x0, y0, (x1 - x0 as u64) as u32, (y1 - y0 as u64) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rects_are_checked_without_overflow() {
        assert!(check_rect(&Rect::new(0, 0, 64, 64), 64, 64, false).is_ok());
        assert!(check_rect(&Rect::new(1, 0, 64, 64), 64, 64, false).is_err());
        assert!(check_rect(&Rect::new(u32::MAX, 0, 2, 1), 64, 64, false).is_err());
        assert!(check_rect(&Rect::new(0, u32::MAX, 1, u32::MAX), 64, 64, false).is_err());
        assert!(check_rect(&Rect::new(0, 0, 0, 0), 64, 64, false).is_err());
        assert!(check_rect(&Rect::new(0, 0, 0, 0), 64, 64, true).is_ok());
    }

    #[test]
    fn transfers_follow_qemu_semantics() {
        // Full width: one copy.
        let rows = transfer_rows(&Rect::new(0, 2, 8, 3), 64, 8, 8, 8 * 8 * 4).unwrap();
        assert_eq!(
            rows,
            vec![RowCopy {
                src: 64,
                dst: 2 * 32,
                len: 3 * 32
            }]
        );
        // Sub-rect: one copy per row, rows a stride apart in both.
        let rows = transfer_rows(&Rect::new(1, 1, 2, 2), 36, 8, 8, 8 * 8 * 4).unwrap();
        assert_eq!(
            rows,
            vec![
                RowCopy {
                    src: 36,
                    dst: 36,
                    len: 8
                },
                RowCopy {
                    src: 68,
                    dst: 68,
                    len: 8
                }
            ]
        );
        // Past the backing, and overflowing offsets.
        assert!(matches!(
            transfer_rows(&Rect::new(0, 0, 8, 8), 4, 8, 8, 256),
            Err(BoundsError::PastBacking { end: 260, .. })
        ));
        assert!(matches!(
            transfer_rows(&Rect::new(0, 0, 8, 8), u64::MAX - 8, 8, 8, u64::MAX),
            Err(BoundsError::Overflow { .. })
        ));
        assert_eq!(
            transfer_rows(&Rect::new(0, 0, 0, 5), 0, 8, 8, 0).unwrap(),
            vec![]
        );
    }

    #[test]
    fn intersections() {
        assert_eq!(
            intersect((0, 0, 10, 10), (5, 5, 10, 10)),
            Some((5, 5, 5, 5))
        );
        assert_eq!(intersect((0, 0, 10, 10), (10, 0, 5, 5)), None);
        assert_eq!(
            intersect((u32::MAX - 1, 0, 10, 10), (0, 0, u32::MAX, 10)),
            Some((u32::MAX - 1, 0, 1, 10))
        );
    }
}
