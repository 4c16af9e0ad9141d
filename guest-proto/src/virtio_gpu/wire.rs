//! The virtio-gpu wire structs, field for field as the spec declares them.
//!
//! Every struct is `#[repr(C)]` and built only from little-endian,
//! alignment-1 field types, so `zerocopy` can view any byte range as one
//! without copying, without `unsafe`, and whatever the alignment of the
//! guest's buffer. Sizes and offsets are checked against `virtio-bindings`
//! in `tests/layout.rs`.

use zerocopy::little_endian::{U32, U64};

use super::consts::{VIRTIO_GPU_EDID_SIZE, VIRTIO_GPU_MAX_SCANOUTS};

/// Little-endian `u32` on the wire.
pub type Le32 = U32;
/// Little-endian `u64` on the wire.
pub type Le64 = U64;

use crate::macros::wire_struct;

wire_struct! {
    /// `virtio_gpu_ctrl_hdr`: the header of every request and response.
    pub struct CtrlHdr {
        /// Command or response type.
        pub type_: Le32,
        /// `VIRTIO_GPU_FLAG_*`.
        pub flags: Le32,
        /// Fence id when `FLAG_FENCE` is set.
        pub fence_id: Le64,
        /// 3D context id.
        pub ctx_id: Le32,
        /// Fence timeline when `FLAG_INFO_RING_IDX` is set.
        pub ring_idx: u8,
        /// Padding.
        pub padding: [u8; 3],
    }
}

impl CtrlHdr {
    /// A header with the given type and everything else zero.
    pub fn with_type(type_: u32) -> Self {
        Self {
            type_: type_.into(),
            ..Self::default()
        }
    }
}

wire_struct! {
    /// `virtio_gpu_rect`.
    pub struct Rect {
        /// Left edge.
        pub x: Le32,
        /// Top edge.
        pub y: Le32,
        /// Width.
        pub width: Le32,
        /// Height.
        pub height: Le32,
    }
}

impl Rect {
    /// A rectangle from plain numbers.
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x: x.into(),
            y: y.into(),
            width: width.into(),
            height: height.into(),
        }
    }
}

wire_struct! {
    /// `virtio_gpu_cursor_pos`.
    pub struct CursorPos {
        /// Scanout the cursor is on.
        pub scanout_id: Le32,
        /// X position.
        pub x: Le32,
        /// Y position.
        pub y: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_update_cursor` (UPDATE_CURSOR and MOVE_CURSOR).
    pub struct UpdateCursor {
        /// Header.
        pub hdr: CtrlHdr,
        /// Position.
        pub pos: CursorPos,
        /// Cursor image resource (UPDATE_CURSOR only; 0 hides it).
        pub resource_id: Le32,
        /// Hotspot X.
        pub hot_x: Le32,
        /// Hotspot Y.
        pub hot_y: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resource_unref`.
    pub struct ResourceUnref {
        /// Header.
        pub hdr: CtrlHdr,
        /// Resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resource_create_2d`.
    pub struct ResourceCreate2d {
        /// Header.
        pub hdr: CtrlHdr,
        /// New resource id.
        pub resource_id: Le32,
        /// `Format`.
        pub format: Le32,
        /// Width in pixels.
        pub width: Le32,
        /// Height in pixels.
        pub height: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_set_scanout`.
    pub struct SetScanout {
        /// Header.
        pub hdr: CtrlHdr,
        /// Part of the resource shown.
        pub r: Rect,
        /// Scanout.
        pub scanout_id: Le32,
        /// Resource (0 disables the scanout).
        pub resource_id: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resource_flush`.
    pub struct ResourceFlush {
        /// Header.
        pub hdr: CtrlHdr,
        /// Damaged rectangle.
        pub r: Rect,
        /// Resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_transfer_to_host_2d`.
    pub struct TransferToHost2d {
        /// Header.
        pub hdr: CtrlHdr,
        /// Rectangle of the resource to update.
        pub r: Rect,
        /// Byte offset of the rectangle's first pixel in the backing.
        pub offset: Le64,
        /// Resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_mem_entry`: one guest-physical range of backing.
    pub struct MemEntry {
        /// Guest-physical address.
        pub addr: Le64,
        /// Length in bytes.
        pub length: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

impl MemEntry {
    /// An entry from plain numbers.
    pub fn new(addr: u64, length: u32) -> Self {
        Self {
            addr: addr.into(),
            length: length.into(),
            padding: 0.into(),
        }
    }
}

wire_struct! {
    /// `virtio_gpu_resource_attach_backing`; `nr_entries` mem entries follow.
    pub struct ResourceAttachBacking {
        /// Header.
        pub hdr: CtrlHdr,
        /// Resource.
        pub resource_id: Le32,
        /// Number of `MemEntry` that follow.
        pub nr_entries: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resource_detach_backing`.
    pub struct ResourceDetachBacking {
        /// Header.
        pub hdr: CtrlHdr,
        /// Resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// One scanout in `virtio_gpu_resp_display_info`.
    pub struct DisplayOne {
        /// Preferred position and size.
        pub r: Rect,
        /// Non-zero when the scanout is enabled.
        pub enabled: Le32,
        /// Flags.
        pub flags: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resp_display_info`.
    pub struct RespDisplayInfo {
        /// Header.
        pub hdr: CtrlHdr,
        /// One entry per possible scanout.
        pub pmodes: [DisplayOne; VIRTIO_GPU_MAX_SCANOUTS],
    }
}

wire_struct! {
    /// `virtio_gpu_box`.
    pub struct Box3d {
        /// X.
        pub x: Le32,
        /// Y.
        pub y: Le32,
        /// Z.
        pub z: Le32,
        /// Width.
        pub w: Le32,
        /// Height.
        pub h: Le32,
        /// Depth.
        pub d: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_transfer_host_3d` (TRANSFER_TO_HOST_3D and TRANSFER_FROM_HOST_3D).
    pub struct TransferHost3d {
        /// Header.
        pub hdr: CtrlHdr,
        /// Box.
        pub box_: Box3d,
        /// Offset in the backing.
        pub offset: Le64,
        /// Resource.
        pub resource_id: Le32,
        /// Mip level.
        pub level: Le32,
        /// Row stride.
        pub stride: Le32,
        /// Layer stride.
        pub layer_stride: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resource_create_3d`.
    pub struct ResourceCreate3d {
        /// Header.
        pub hdr: CtrlHdr,
        /// New resource id.
        pub resource_id: Le32,
        /// Gallium texture target.
        pub target: Le32,
        /// Format.
        pub format: Le32,
        /// Bind flags.
        pub bind: Le32,
        /// Width.
        pub width: Le32,
        /// Height.
        pub height: Le32,
        /// Depth.
        pub depth: Le32,
        /// Array size.
        pub array_size: Le32,
        /// Last mip level.
        pub last_level: Le32,
        /// Samples.
        pub nr_samples: Le32,
        /// `VIRTIO_GPU_RESOURCE_FLAG_*`.
        pub flags: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

/// Length of CTX_CREATE's debug name field.
pub const CTX_DEBUG_NAME_LEN: usize = 64;

wire_struct! {
    /// `virtio_gpu_ctx_create`.
    pub struct CtxCreate {
        /// Header (`ctx_id` names the new context).
        pub hdr: CtrlHdr,
        /// Length of the debug name.
        pub nlen: Le32,
        /// Low 8 bits: capset id of the context type (CONTEXT_INIT).
        pub context_init: Le32,
        /// Debug name, `nlen` bytes used.
        pub debug_name: [u8; CTX_DEBUG_NAME_LEN],
    }
}

impl CtxCreate {
    /// The used part of the debug name (`nlen` is validated by the decoder;
    /// an out-of-range `nlen` yields the whole field).
    pub fn debug_name(&self) -> &[u8] {
        let n = usize::try_from(self.nlen.get()).unwrap_or(usize::MAX);
        self.debug_name.get(..n).unwrap_or(&self.debug_name)
    }

    /// The capset id requested through `context_init` (0: none given).
    pub fn capset_id(&self) -> u32 {
        self.context_init.get() & super::consts::VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK
    }
}

wire_struct! {
    /// `virtio_gpu_ctx_destroy`.
    pub struct CtxDestroy {
        /// Header (`ctx_id` names the context).
        pub hdr: CtrlHdr,
    }
}

wire_struct! {
    /// `virtio_gpu_ctx_resource` (CTX_ATTACH_RESOURCE and CTX_DETACH_RESOURCE).
    pub struct CtxResource {
        /// Header (`ctx_id` names the context).
        pub hdr: CtrlHdr,
        /// Resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_cmd_submit`; `size` bytes of command stream follow.
    pub struct CmdSubmit {
        /// Header (`ctx_id` names the context).
        pub hdr: CtrlHdr,
        /// Bytes of command stream that follow.
        pub size: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_get_capset_info`.
    pub struct GetCapsetInfo {
        /// Header.
        pub hdr: CtrlHdr,
        /// Index below `num_capsets`.
        pub capset_index: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resp_capset_info`.
    pub struct RespCapsetInfo {
        /// Header.
        pub hdr: CtrlHdr,
        /// Capset id.
        pub capset_id: Le32,
        /// Highest version.
        pub capset_max_version: Le32,
        /// Size of the capset data.
        pub capset_max_size: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_get_capset`.
    pub struct GetCapset {
        /// Header.
        pub hdr: CtrlHdr,
        /// Capset id.
        pub capset_id: Le32,
        /// Version wanted.
        pub capset_version: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_cmd_get_edid`.
    pub struct GetEdid {
        /// Header.
        pub hdr: CtrlHdr,
        /// Scanout.
        pub scanout: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resp_edid`.
    pub struct RespEdid {
        /// Header.
        pub hdr: CtrlHdr,
        /// Bytes of `edid` used.
        pub size: Le32,
        /// Padding.
        pub padding: Le32,
        /// EDID blob.
        pub edid: [u8; VIRTIO_GPU_EDID_SIZE],
    }
}

wire_struct! {
    /// `virtio_gpu_resource_assign_uuid`.
    pub struct ResourceAssignUuid {
        /// Header.
        pub hdr: CtrlHdr,
        /// Resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resp_resource_uuid`.
    pub struct RespResourceUuid {
        /// Header.
        pub hdr: CtrlHdr,
        /// UUID bytes.
        pub uuid: [u8; 16],
    }
}

wire_struct! {
    /// `virtio_gpu_resource_create_blob`; `nr_entries` mem entries follow.
    pub struct ResourceCreateBlob {
        /// Header (`ctx_id` for HOST3D blobs).
        pub hdr: CtrlHdr,
        /// New resource id.
        pub resource_id: Le32,
        /// `BlobMem`.
        pub blob_mem: Le32,
        /// `VIRTIO_GPU_BLOB_FLAG_*`.
        pub blob_flags: Le32,
        /// Number of `MemEntry` that follow.
        pub nr_entries: Le32,
        /// Context-local object id (HOST3D*).
        pub blob_id: Le64,
        /// Size in bytes.
        pub size: Le64,
    }
}

wire_struct! {
    /// `virtio_gpu_set_scanout_blob`.
    pub struct SetScanoutBlob {
        /// Header.
        pub hdr: CtrlHdr,
        /// Part of the blob shown.
        pub r: Rect,
        /// Scanout.
        pub scanout_id: Le32,
        /// Blob resource (0 disables the scanout).
        pub resource_id: Le32,
        /// Width of the blob image.
        pub width: Le32,
        /// Height of the blob image.
        pub height: Le32,
        /// `Format`.
        pub format: Le32,
        /// Padding.
        pub padding: Le32,
        /// Plane strides.
        pub strides: [Le32; 4],
        /// Plane offsets.
        pub offsets: [Le32; 4],
    }
}

wire_struct! {
    /// `virtio_gpu_resource_map_blob`.
    pub struct ResourceMapBlob {
        /// Header.
        pub hdr: CtrlHdr,
        /// Blob resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
        /// Offset in the host-visible region.
        pub offset: Le64,
    }
}

wire_struct! {
    /// `virtio_gpu_resp_map_info`.
    pub struct RespMapInfo {
        /// Header.
        pub hdr: CtrlHdr,
        /// `VIRTIO_GPU_MAP_CACHE_*`.
        pub map_info: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_resource_unmap_blob`.
    pub struct ResourceUnmapBlob {
        /// Header.
        pub hdr: CtrlHdr,
        /// Blob resource.
        pub resource_id: Le32,
        /// Padding.
        pub padding: Le32,
    }
}

wire_struct! {
    /// `virtio_gpu_config`: the device config space.
    pub struct VirtioGpuConfig {
        /// Pending events (`VIRTIO_GPU_EVENT_*`), read-only to the driver.
        pub events_read: Le32,
        /// Events the driver acknowledges (write-to-clear).
        pub events_clear: Le32,
        /// Number of scanouts.
        pub num_scanouts: Le32,
        /// Number of capsets.
        pub num_capsets: Le32,
    }
}
