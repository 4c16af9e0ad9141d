//! Numbers of the virtio-gpu device type (virtio spec 1.2+, section
//! "GPU Device"): feature bits, header flags, command and response types,
//! formats, capset ids, blob memory types and flags, map caching modes.
//!
//! Every value here is checked against `virtio-bindings` in
//! `tests/layout.rs`.

/// Feature bit: the device supports 3D (virgl) commands.
pub const VIRTIO_GPU_F_VIRGL: u32 = 0;
/// Feature bit: the device supports GET_EDID.
pub const VIRTIO_GPU_F_EDID: u32 = 1;
/// Feature bit: the device supports RESOURCE_ASSIGN_UUID.
pub const VIRTIO_GPU_F_RESOURCE_UUID: u32 = 2;
/// Feature bit: the device supports blob resources.
pub const VIRTIO_GPU_F_RESOURCE_BLOB: u32 = 3;
/// Feature bit: the device supports CTX_CREATE.context_init and multiple timelines.
pub const VIRTIO_GPU_F_CONTEXT_INIT: u32 = 4;

/// Header flag: the driver wants a fence for this command.
pub const VIRTIO_GPU_FLAG_FENCE: u32 = 1;
/// Header flag: `ring_idx` selects the fence timeline of the context.
pub const VIRTIO_GPU_FLAG_INFO_RING_IDX: u32 = 2;
/// Number of fence timelines (rings) a context may have: `ring_idx` < 64.
pub const VIRTIO_GPU_MAX_RINGS: u8 = 64;

/// Most scanouts a device may expose.
pub const VIRTIO_GPU_MAX_SCANOUTS: usize = 16;
/// Size of the EDID blob in RESP_OK_EDID.
pub const VIRTIO_GPU_EDID_SIZE: usize = 1024;
/// RESOURCE_CREATE_3D flag: origin at the top row.
pub const VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP: u32 = 1;
/// Low bits of CTX_CREATE.context_init holding the capset id.
pub const VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK: u32 = 0xff;
/// Config-space event: the display configuration changed.
pub const VIRTIO_GPU_EVENT_DISPLAY: u32 = 1;

/// Capset: virgl.
pub const VIRTIO_GPU_CAPSET_VIRGL: u32 = 1;
/// Capset: virgl2.
pub const VIRTIO_GPU_CAPSET_VIRGL2: u32 = 2;
/// Capset: gfxstream Vulkan.
pub const VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN: u32 = 3;
/// Capset: Venus.
pub const VIRTIO_GPU_CAPSET_VENUS: u32 = 4;
/// Capset: cross-domain.
pub const VIRTIO_GPU_CAPSET_CROSS_DOMAIN: u32 = 5;
/// Capset: DRM native context (the only one vgpu offers).
pub const VIRTIO_GPU_CAPSET_DRM: u32 = 6;

/// Blob memory: guest pages only.
pub const VIRTIO_GPU_BLOB_MEM_GUEST: u32 = 1;
/// Blob memory: host-side object of a context.
pub const VIRTIO_GPU_BLOB_MEM_HOST3D: u32 = 2;
/// Blob memory: host-side object with guest pages attached.
pub const VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST: u32 = 3;

/// Blob flag: the blob may be mapped into the host-visible region.
pub const VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE: u32 = 1;
/// Blob flag: the blob may be shared.
pub const VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE: u32 = 2;
/// Blob flag: the blob may be shared across devices.
pub const VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE: u32 = 4;
/// Every defined blob flag.
pub const VIRTIO_GPU_BLOB_FLAGS_ALL: u32 = VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE
    | VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE
    | VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE;

/// MAP_INFO caching mask.
pub const VIRTIO_GPU_MAP_CACHE_MASK: u32 = 0x0f;
/// MAP_INFO: no caching information.
pub const VIRTIO_GPU_MAP_CACHE_NONE: u32 = 0;
/// MAP_INFO: cached.
pub const VIRTIO_GPU_MAP_CACHE_CACHED: u32 = 1;
/// MAP_INFO: uncached.
pub const VIRTIO_GPU_MAP_CACHE_UNCACHED: u32 = 2;
/// MAP_INFO: write-combined.
pub const VIRTIO_GPU_MAP_CACHE_WC: u32 = 3;

/// Shared memory region id: undefined.
pub const VIRTIO_GPU_SHM_ID_UNDEFINED: u8 = 0;
/// Shared memory region id of the host-visible region (RESOURCE_MAP_BLOB).
pub const VIRTIO_GPU_SHM_ID_HOST_VISIBLE: u8 = 1;

use crate::macros::u32_enum;

u32_enum! {
    /// A command type the driver puts in `ctrl_hdr.type` (control and cursor queues).
    pub enum CommandType {
        /// 2D: query scanouts.
        GetDisplayInfo = 0x0100,
        /// 2D: create a 2D resource.
        ResourceCreate2d = 0x0101,
        /// Destroy a resource.
        ResourceUnref = 0x0102,
        /// Show a resource on a scanout.
        SetScanout = 0x0103,
        /// Flush a rectangle of a resource to the scanouts showing it.
        ResourceFlush = 0x0104,
        /// Copy from guest backing into the host resource.
        TransferToHost2d = 0x0105,
        /// Attach guest pages as backing.
        ResourceAttachBacking = 0x0106,
        /// Detach guest pages.
        ResourceDetachBacking = 0x0107,
        /// Query a capset's id, version and size by index.
        GetCapsetInfo = 0x0108,
        /// Fetch a capset.
        GetCapset = 0x0109,
        /// Fetch a scanout's EDID.
        GetEdid = 0x010a,
        /// Assign a UUID for cross-device sharing.
        ResourceAssignUuid = 0x010b,
        /// Create a blob resource.
        ResourceCreateBlob = 0x010c,
        /// Show a blob resource on a scanout.
        SetScanoutBlob = 0x010d,
        /// 3D: create a context.
        CtxCreate = 0x0200,
        /// 3D: destroy a context.
        CtxDestroy = 0x0201,
        /// 3D: make a resource visible to a context.
        CtxAttachResource = 0x0202,
        /// 3D: withdraw a resource from a context.
        CtxDetachResource = 0x0203,
        /// 3D: create a virgl 3D resource.
        ResourceCreate3d = 0x0204,
        /// 3D: copy into a 3D resource.
        TransferToHost3d = 0x0205,
        /// 3D: copy out of a 3D resource.
        TransferFromHost3d = 0x0206,
        /// 3D: submit a context command stream.
        Submit3d = 0x0207,
        /// Map a blob into the host-visible region.
        ResourceMapBlob = 0x0208,
        /// Unmap a blob from the host-visible region.
        ResourceUnmapBlob = 0x0209,
        /// Cursor queue: set the cursor image and position.
        UpdateCursor = 0x0300,
        /// Cursor queue: move the cursor.
        MoveCursor = 0x0301,
    }
}

u32_enum! {
    /// A response type the device puts in `ctrl_hdr.type`.
    pub enum ResponseType {
        /// Success without data.
        OkNoData = 0x1100,
        /// Success: display info follows.
        OkDisplayInfo = 0x1101,
        /// Success: capset info follows.
        OkCapsetInfo = 0x1102,
        /// Success: capset data follows.
        OkCapset = 0x1103,
        /// Success: EDID follows.
        OkEdid = 0x1104,
        /// Success: resource UUID follows.
        OkResourceUuid = 0x1105,
        /// Success: map info follows.
        OkMapInfo = 0x1106,
        /// Error: unspecified.
        ErrUnspec = 0x1200,
        /// Error: out of memory.
        ErrOutOfMemory = 0x1201,
        /// Error: invalid scanout id.
        ErrInvalidScanoutId = 0x1202,
        /// Error: invalid resource id.
        ErrInvalidResourceId = 0x1203,
        /// Error: invalid context id.
        ErrInvalidContextId = 0x1204,
        /// Error: invalid parameter.
        ErrInvalidParameter = 0x1205,
    }
}

impl ResponseType {
    /// Whether this is one of the error responses.
    pub const fn is_error(self) -> bool {
        self.value() >= 0x1200
    }
}

u32_enum! {
    /// The error a device reports for a command (the `ERR_*` response types).
    pub enum ErrorCode {
        /// VIRTIO_GPU_RESP_ERR_UNSPEC.
        Unspec = 0x1200,
        /// VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY.
        OutOfMemory = 0x1201,
        /// VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID.
        InvalidScanoutId = 0x1202,
        /// VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID.
        InvalidResourceId = 0x1203,
        /// VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID.
        InvalidContextId = 0x1204,
        /// VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER.
        InvalidParameter = 0x1205,
    }
}

u32_enum! {
    /// Pixel formats of RESOURCE_CREATE_2D and SET_SCANOUT_BLOB.
    pub enum Format {
        /// B8G8R8A8_UNORM.
        B8G8R8A8Unorm = 1,
        /// B8G8R8X8_UNORM.
        B8G8R8X8Unorm = 2,
        /// A8R8G8B8_UNORM.
        A8R8G8B8Unorm = 3,
        /// X8R8G8B8_UNORM.
        X8R8G8B8Unorm = 4,
        /// R8G8B8A8_UNORM.
        R8G8B8A8Unorm = 67,
        /// X8B8G8R8_UNORM.
        X8B8G8R8Unorm = 68,
        /// A8B8G8R8_UNORM.
        A8B8G8R8Unorm = 121,
        /// R8G8B8X8_UNORM.
        R8G8B8X8Unorm = 134,
    }
}

impl Format {
    /// Bytes per pixel (every spec format is 32-bit).
    pub const fn bytes_per_pixel(self) -> u32 {
        4
    }
}

u32_enum! {
    /// Where a blob resource's memory lives (RESOURCE_CREATE_BLOB.blob_mem).
    pub enum BlobMem {
        /// Guest pages only (mem entries follow).
        Guest = 1,
        /// A host object of the context, named by blob_id.
        Host3d = 2,
        /// A host object with guest pages attached.
        Host3dGuest = 3,
    }
}

u32_enum! {
    /// Caching of a mapped blob (RESP_OK_MAP_INFO.map_info).
    pub enum MapCache {
        /// No information.
        None = 0,
        /// Cached.
        Cached = 1,
        /// Uncached.
        Uncached = 2,
        /// Write-combined.
        WriteCombined = 3,
    }
}

impl From<ErrorCode> for ResponseType {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Unspec => ResponseType::ErrUnspec,
            ErrorCode::OutOfMemory => ResponseType::ErrOutOfMemory,
            ErrorCode::InvalidScanoutId => ResponseType::ErrInvalidScanoutId,
            ErrorCode::InvalidResourceId => ResponseType::ErrInvalidResourceId,
            ErrorCode::InvalidContextId => ResponseType::ErrInvalidContextId,
            ErrorCode::InvalidParameter => ResponseType::ErrInvalidParameter,
        }
    }
}

/// Gallium texture target of RESOURCE_CREATE_3D (`pipe_texture_target`):
/// a linear buffer.
pub const PIPE_BUFFER: u32 = 0;
/// Gallium texture target: a 2D texture.
pub const PIPE_TEXTURE_2D: u32 = 2;
/// Gallium texture target: a rectangle texture.
pub const PIPE_TEXTURE_RECT: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_numbers() {
        for c in CommandType::ALL {
            assert_eq!(CommandType::from_u32(c.value()), Some(*c));
        }
        for r in ResponseType::ALL {
            assert_eq!(ResponseType::try_from(r.value()), Ok(*r));
        }
        for e in ErrorCode::ALL {
            assert_eq!(ResponseType::from(*e).value(), e.value());
            assert!(ResponseType::from(*e).is_error());
        }
        assert_eq!(Format::from_u32(5), None);
        assert_eq!(CommandType::try_from(0x1100), Err(0x1100));
    }
}
