//! Resources: what a resource id names, and the bounds arithmetic of
//! transfers, flushes and scanout rectangles — all checked, every operand
//! named in the error.

use vgpu_backend::ObjectId;
use vgpu_proto::virtio_gpu::{BlobMem, Format, Rect};

use crate::guest_io::GuestBacking;

/// Bytes per pixel of every spec format.
pub const BPP: u64 = 4;

/// Declares a guest-chosen id: a `u32` the guest names something by,
/// kept apart from every other number by its type (shown as the number).
macro_rules! guest_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl $name {
            /// Whether this is 0, which names no resource or context.
            pub fn is_zero(self) -> bool {
                self.0 == 0
            }
        }

        impl From<u32> for $name {
            fn from(v: u32) -> Self {
                Self(v)
            }
        }
    };
}

guest_id!(
    /// A resource id (0 names no resource).
    ResourceId
);
guest_id!(
    /// A context id (0 names no context).
    ContextId
);
guest_id!(
    /// A scanout index.
    ScanoutId
);

/// What kind of resource, with its host storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// RESOURCE_CREATE_2D: a host copy of an image.
    Image {
        /// Pixel format.
        format: Format,
        width: u32,
        height: u32,
        /// The host buffer.
        object: ObjectId,
    },
    /// RESOURCE_CREATE_3D of a linear buffer (`width` bytes).
    Buffer {
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
        ctx: Option<ContextId>,
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
    pub id: ResourceId,
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
    pub contexts: Vec<ContextId>,
}

impl Resource {
    /// A resource with nothing attached yet.
    pub fn new(id: ResourceId, kind: ResourceKind) -> Self {
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
        x: u32,
        y: u32,
        w: u32,
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
    /// A transfer stride shorter than a row of the rectangle.
    #[error("stride {stride} is shorter than a {row}-byte row")]
    StrideTooSmall {
        /// The stride given.
        stride: u64,
        /// Bytes of one row.
        row: u64,
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
    pub len: u64,
}

/// Which way a transfer copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Guest backing → host buffer (TRANSFER_TO_HOST_*).
    ToHost,
    /// Host buffer → guest backing (TRANSFER_FROM_HOST_3D).
    FromHost,
}

/// The copies a transfer of rectangle `r` of a `width`×`height` image does
/// at backing `offset`, the backing having `backing_len` bytes: row `i` of
/// the rectangle starts at `offset + i * stride` of the backing, `stride`
/// being the guest's (TRANSFER_*_3D; 0: the image's, as TRANSFER_TO_HOST_2D
/// always is, QEMU's semantics) and at least a row. When the backing and
/// the image have the same stride, a full-width rectangle is one copy.
pub fn transfer_rows(
    r: &Rect,
    offset: u64,
    width: u32,
    height: u32,
    stride: u64,
    backing_len: u64,
) -> Result<Vec<RowCopy>, BoundsError> {
    check_rect(r, width, height, true)?;
    let area = Area::of(r);
    let (x, y, w, h) = (
        u64::from(area.x),
        u64::from(area.y),
        u64::from(area.width),
        u64::from(area.height),
    );
    let image_stride = u64::from(width) * BPP;
    let stride = match stride {
        0 => image_stride,
        s => s,
    };
    let row = w * BPP;
    if stride < row {
        return Err(BoundsError::StrideTooSmall { stride, row });
    }
    if w == 0 || h == 0 {
        return Ok(Vec::new());
    }
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
    let dst0 = y * image_stride + x * BPP;
    if x == 0 && w == u64::from(width) && stride == image_stride {
        return Ok(vec![RowCopy {
            src: offset,
            dst: dst0,
            len: h * stride,
        }]);
    }
    Ok((0..h)
        .map(|i| RowCopy {
            src: offset + i * stride,
            dst: dst0 + i * image_stride,
            len: row,
        })
        .collect())
}

/// A rectangle of an image or a scanout, read once from the guest's
/// [`Rect`]; its far edges are `u64`, so they never overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Area {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Area {
    /// The area a guest rectangle names.
    pub fn of(r: &Rect) -> Self {
        Self {
            x: r.x.get(),
            y: r.y.get(),
            width: r.width.get(),
            height: r.height.get(),
        }
    }

    /// One past the right edge.
    pub fn right(&self) -> u64 {
        u64::from(self.x) + u64::from(self.width)
    }

    /// One past the bottom edge.
    pub fn bottom(&self) -> u64 {
        u64::from(self.y) + u64::from(self.height)
    }

    /// The part both areas cover, `None` if empty.
    pub fn intersect(&self, other: &Area) -> Option<Area> {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        let right = self.right().min(other.right());
        let bottom = self.bottom().min(other.bottom());
        let width = u32::try_from(right.checked_sub(u64::from(x))?).ok()?;
        let height = u32::try_from(bottom.checked_sub(u64::from(y))?).ok()?;
        (width > 0 && height > 0).then_some(Area {
            x,
            y,
            width,
            height,
        })
    }
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
        let rows = transfer_rows(&Rect::new(0, 2, 8, 3), 64, 8, 8, 0, 8 * 8 * 4).unwrap();
        assert_eq!(
            rows,
            vec![RowCopy {
                src: 64,
                dst: 2 * 32,
                len: 3 * 32
            }]
        );
        // Sub-rect: one copy per row, rows a stride apart in both.
        let rows = transfer_rows(&Rect::new(1, 1, 2, 2), 36, 8, 8, 0, 8 * 8 * 4).unwrap();
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
            transfer_rows(&Rect::new(0, 0, 8, 8), 4, 8, 8, 0, 256),
            Err(BoundsError::PastBacking { end: 260, .. })
        ));
        assert!(matches!(
            transfer_rows(&Rect::new(0, 0, 8, 8), u64::MAX - 8, 8, 8, 0, u64::MAX),
            Err(BoundsError::Overflow { .. })
        ));
        assert_eq!(
            transfer_rows(&Rect::new(0, 0, 0, 5), 0, 8, 8, 0, 0).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_guest_stride_spreads_the_rows_out() {
        // 3D: the guest's rows are 64 bytes apart, the image's 32.
        let rows = transfer_rows(&Rect::new(0, 1, 8, 2), 0, 8, 8, 64, 128).unwrap();
        assert_eq!(
            rows,
            vec![
                RowCopy {
                    src: 0,
                    dst: 32,
                    len: 32
                },
                RowCopy {
                    src: 64,
                    dst: 64,
                    len: 32
                }
            ]
        );
        assert_eq!(
            transfer_rows(&Rect::new(0, 0, 8, 2), 0, 8, 8, 16, 1024),
            Err(BoundsError::StrideTooSmall {
                stride: 16,
                row: 32
            })
        );
    }

    #[test]
    fn intersections() {
        let a = |x, y, width, height| Area {
            x,
            y,
            width,
            height,
        };
        assert_eq!(
            a(0, 0, 10, 10).intersect(&a(5, 5, 10, 10)),
            Some(a(5, 5, 5, 5))
        );
        assert_eq!(a(0, 0, 10, 10).intersect(&a(10, 0, 5, 5)), None);
        assert_eq!(
            a(u32::MAX - 1, 0, 10, 10).intersect(&a(0, 0, u32::MAX, 10)),
            Some(a(u32::MAX - 1, 0, 1, 10))
        );
        assert_eq!(
            a(u32::MAX, u32::MAX, u32::MAX, 1).right(),
            2 * u64::from(u32::MAX)
        );
    }
}
