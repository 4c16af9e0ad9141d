//! Every virtio-gpu wire struct and constant of vgpu-proto against the
//! bindgen definitions of the Linux uapi header in `virtio-bindings`.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::mem::{offset_of, size_of};

use vgpu_proto::virtio_gpu::*;
use virtio_bindings::virtio_gpu as b;

/// Checks size and every field offset of `$ours` against `$theirs`; field
/// names are the same on both sides (the spec's).
macro_rules! same_layout {
    ($ours:ty, $theirs:ty $(, $field:ident)* $(,)?) => {{
        assert_eq!(
            size_of::<$ours>(),
            size_of::<$theirs>(),
            "size of {}",
            stringify!($ours)
        );
        $(
            assert_eq!(
                offset_of!($ours, $field),
                offset_of!($theirs, $field),
                "offset of {}::{}",
                stringify!($ours),
                stringify!($field)
            );
        )*
    }};
}

#[test]
fn struct_layouts_match_the_kernel_uapi() {
    same_layout!(
        CtrlHdr,
        b::virtio_gpu_ctrl_hdr,
        type_,
        flags,
        fence_id,
        ctx_id,
        ring_idx,
        padding
    );
    same_layout!(Rect, b::virtio_gpu_rect, x, y, width, height);
    same_layout!(
        CursorPos,
        b::virtio_gpu_cursor_pos,
        scanout_id,
        x,
        y,
        padding
    );
    same_layout!(
        UpdateCursor,
        b::virtio_gpu_update_cursor,
        hdr,
        pos,
        resource_id,
        hot_x,
        hot_y,
        padding
    );
    same_layout!(
        ResourceUnref,
        b::virtio_gpu_resource_unref,
        hdr,
        resource_id,
        padding
    );
    same_layout!(
        ResourceCreate2d,
        b::virtio_gpu_resource_create_2d,
        hdr,
        resource_id,
        format,
        width,
        height
    );
    same_layout!(
        SetScanout,
        b::virtio_gpu_set_scanout,
        hdr,
        r,
        scanout_id,
        resource_id
    );
    same_layout!(
        ResourceFlush,
        b::virtio_gpu_resource_flush,
        hdr,
        r,
        resource_id,
        padding
    );
    same_layout!(
        TransferToHost2d,
        b::virtio_gpu_transfer_to_host_2d,
        hdr,
        r,
        offset,
        resource_id,
        padding
    );
    same_layout!(MemEntry, b::virtio_gpu_mem_entry, addr, length, padding);
    same_layout!(
        ResourceAttachBacking,
        b::virtio_gpu_resource_attach_backing,
        hdr,
        resource_id,
        nr_entries
    );
    same_layout!(
        ResourceDetachBacking,
        b::virtio_gpu_resource_detach_backing,
        hdr,
        resource_id,
        padding
    );
    same_layout!(
        DisplayOne,
        b::virtio_gpu_resp_display_info_virtio_gpu_display_one,
        r,
        enabled,
        flags
    );
    same_layout!(
        RespDisplayInfo,
        b::virtio_gpu_resp_display_info,
        hdr,
        pmodes
    );
    same_layout!(Box3d, b::virtio_gpu_box, x, y, z, w, h, d);
    same_layout!(
        TransferHost3d,
        b::virtio_gpu_transfer_host_3d,
        hdr,
        box_,
        offset,
        resource_id,
        level,
        stride,
        layer_stride
    );
    same_layout!(
        ResourceCreate3d,
        b::virtio_gpu_resource_create_3d,
        hdr,
        resource_id,
        target,
        format,
        bind,
        width,
        height,
        depth,
        array_size,
        last_level,
        nr_samples,
        flags,
        padding
    );
    same_layout!(
        CtxCreate,
        b::virtio_gpu_ctx_create,
        hdr,
        nlen,
        context_init,
        debug_name
    );
    same_layout!(CtxDestroy, b::virtio_gpu_ctx_destroy, hdr);
    same_layout!(
        CtxResource,
        b::virtio_gpu_ctx_resource,
        hdr,
        resource_id,
        padding
    );
    same_layout!(CmdSubmit, b::virtio_gpu_cmd_submit, hdr, size, padding);
    same_layout!(
        GetCapsetInfo,
        b::virtio_gpu_get_capset_info,
        hdr,
        capset_index,
        padding
    );
    same_layout!(
        RespCapsetInfo,
        b::virtio_gpu_resp_capset_info,
        hdr,
        capset_id,
        capset_max_version,
        capset_max_size,
        padding
    );
    same_layout!(
        GetCapset,
        b::virtio_gpu_get_capset,
        hdr,
        capset_id,
        capset_version
    );
    // RESP_OK_CAPSET is the header followed by the capset bytes.
    assert_eq!(size_of::<CtrlHdr>(), size_of::<b::virtio_gpu_resp_capset>());
    assert_eq!(
        offset_of!(b::virtio_gpu_resp_capset, capset_data),
        size_of::<CtrlHdr>()
    );
    same_layout!(GetEdid, b::virtio_gpu_cmd_get_edid, hdr, scanout, padding);
    same_layout!(RespEdid, b::virtio_gpu_resp_edid, hdr, size, padding, edid);
    same_layout!(
        VirtioGpuConfig,
        b::virtio_gpu_config,
        events_read,
        events_clear,
        num_scanouts,
        num_capsets
    );
    same_layout!(
        ResourceAssignUuid,
        b::virtio_gpu_resource_assign_uuid,
        hdr,
        resource_id,
        padding
    );
    same_layout!(
        RespResourceUuid,
        b::virtio_gpu_resp_resource_uuid,
        hdr,
        uuid
    );
    same_layout!(
        ResourceCreateBlob,
        b::virtio_gpu_resource_create_blob,
        hdr,
        resource_id,
        blob_mem,
        blob_flags,
        nr_entries,
        blob_id,
        size
    );
    same_layout!(
        SetScanoutBlob,
        b::virtio_gpu_set_scanout_blob,
        hdr,
        r,
        scanout_id,
        resource_id,
        width,
        height,
        format,
        padding,
        strides,
        offsets
    );
    same_layout!(
        ResourceMapBlob,
        b::virtio_gpu_resource_map_blob,
        hdr,
        resource_id,
        padding,
        offset
    );
    same_layout!(
        RespMapInfo,
        b::virtio_gpu_resp_map_info,
        hdr,
        map_info,
        padding
    );
    same_layout!(
        ResourceUnmapBlob,
        b::virtio_gpu_resource_unmap_blob,
        hdr,
        resource_id,
        padding
    );
}

#[test]
fn constants_match_the_kernel_uapi() {
    let pairs: &[(u32, u32, &str)] = &[
        (VIRTIO_GPU_F_VIRGL, b::VIRTIO_GPU_F_VIRGL, "F_VIRGL"),
        (VIRTIO_GPU_F_EDID, b::VIRTIO_GPU_F_EDID, "F_EDID"),
        (
            VIRTIO_GPU_F_RESOURCE_UUID,
            b::VIRTIO_GPU_F_RESOURCE_UUID,
            "F_RESOURCE_UUID",
        ),
        (
            VIRTIO_GPU_F_RESOURCE_BLOB,
            b::VIRTIO_GPU_F_RESOURCE_BLOB,
            "F_RESOURCE_BLOB",
        ),
        (
            VIRTIO_GPU_F_CONTEXT_INIT,
            b::VIRTIO_GPU_F_CONTEXT_INIT,
            "F_CONTEXT_INIT",
        ),
        (
            VIRTIO_GPU_FLAG_FENCE,
            b::VIRTIO_GPU_FLAG_FENCE,
            "FLAG_FENCE",
        ),
        (
            VIRTIO_GPU_FLAG_INFO_RING_IDX,
            b::VIRTIO_GPU_FLAG_INFO_RING_IDX,
            "FLAG_INFO_RING_IDX",
        ),
        (
            VIRTIO_GPU_MAX_SCANOUTS as u32,
            b::VIRTIO_GPU_MAX_SCANOUTS,
            "MAX_SCANOUTS",
        ),
        (
            VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP,
            b::VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP,
            "Y_0_TOP",
        ),
        (
            VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK,
            b::VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK,
            "CAPSET_ID_MASK",
        ),
        (
            VIRTIO_GPU_CAPSET_VIRGL,
            b::VIRTIO_GPU_CAPSET_VIRGL,
            "CAPSET_VIRGL",
        ),
        (
            VIRTIO_GPU_CAPSET_VIRGL2,
            b::VIRTIO_GPU_CAPSET_VIRGL2,
            "CAPSET_VIRGL2",
        ),
        (
            VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN,
            b::VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN,
            "CAPSET_GFXSTREAM_VULKAN",
        ),
        (
            VIRTIO_GPU_CAPSET_VENUS,
            b::VIRTIO_GPU_CAPSET_VENUS,
            "CAPSET_VENUS",
        ),
        (
            VIRTIO_GPU_CAPSET_CROSS_DOMAIN,
            b::VIRTIO_GPU_CAPSET_CROSS_DOMAIN,
            "CAPSET_CROSS_DOMAIN",
        ),
        (
            VIRTIO_GPU_CAPSET_DRM,
            b::VIRTIO_GPU_CAPSET_DRM,
            "CAPSET_DRM",
        ),
        (
            VIRTIO_GPU_EVENT_DISPLAY,
            b::VIRTIO_GPU_EVENT_DISPLAY,
            "EVENT_DISPLAY",
        ),
        (
            VIRTIO_GPU_BLOB_MEM_GUEST,
            b::VIRTIO_GPU_BLOB_MEM_GUEST,
            "BLOB_MEM_GUEST",
        ),
        (
            VIRTIO_GPU_BLOB_MEM_HOST3D,
            b::VIRTIO_GPU_BLOB_MEM_HOST3D,
            "BLOB_MEM_HOST3D",
        ),
        (
            VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST,
            b::VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST,
            "BLOB_MEM_HOST3D_GUEST",
        ),
        (
            VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
            b::VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
            "USE_MAPPABLE",
        ),
        (
            VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE,
            b::VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE,
            "USE_SHAREABLE",
        ),
        (
            VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE,
            b::VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE,
            "USE_CROSS_DEVICE",
        ),
        (
            VIRTIO_GPU_MAP_CACHE_MASK,
            b::VIRTIO_GPU_MAP_CACHE_MASK,
            "MAP_CACHE_MASK",
        ),
        (
            VIRTIO_GPU_MAP_CACHE_NONE,
            b::VIRTIO_GPU_MAP_CACHE_NONE,
            "MAP_CACHE_NONE",
        ),
        (
            VIRTIO_GPU_MAP_CACHE_CACHED,
            b::VIRTIO_GPU_MAP_CACHE_CACHED,
            "MAP_CACHE_CACHED",
        ),
        (
            VIRTIO_GPU_MAP_CACHE_UNCACHED,
            b::VIRTIO_GPU_MAP_CACHE_UNCACHED,
            "MAP_CACHE_UNCACHED",
        ),
        (
            VIRTIO_GPU_MAP_CACHE_WC,
            b::VIRTIO_GPU_MAP_CACHE_WC,
            "MAP_CACHE_WC",
        ),
        (
            u32::from(VIRTIO_GPU_SHM_ID_UNDEFINED),
            b::virtio_gpu_shm_id_VIRTIO_GPU_SHM_ID_UNDEFINED,
            "SHM_ID_UNDEFINED",
        ),
        (
            u32::from(VIRTIO_GPU_SHM_ID_HOST_VISIBLE),
            b::virtio_gpu_shm_id_VIRTIO_GPU_SHM_ID_HOST_VISIBLE,
            "SHM_ID_HOST_VISIBLE",
        ),
        (
            Format::B8G8R8A8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
            "B8G8R8A8",
        ),
        (
            Format::B8G8R8X8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
            "B8G8R8X8",
        ),
        (
            Format::A8R8G8B8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM,
            "A8R8G8B8",
        ),
        (
            Format::X8R8G8B8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM,
            "X8R8G8B8",
        ),
        (
            Format::R8G8B8A8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM,
            "R8G8B8A8",
        ),
        (
            Format::X8B8G8R8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM,
            "X8B8G8R8",
        ),
        (
            Format::A8B8G8R8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM,
            "A8B8G8R8",
        ),
        (
            Format::R8G8B8X8Unorm.value(),
            b::virtio_gpu_formats_VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM,
            "R8G8B8X8",
        ),
    ];
    for (ours, theirs, name) in pairs {
        assert_eq!(ours, theirs, "{name}");
    }
    assert_eq!(Format::ALL.len(), 8, "every spec format is declared");
}

#[test]
fn command_and_response_numbers_match_the_kernel_uapi() {
    use CommandType as C;
    let commands = [
        (
            C::GetDisplayInfo,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_DISPLAY_INFO,
        ),
        (
            C::ResourceCreate2d,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
        ),
        (
            C::ResourceUnref,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_UNREF,
        ),
        (
            C::SetScanout,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SET_SCANOUT,
        ),
        (
            C::ResourceFlush,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_FLUSH,
        ),
        (
            C::TransferToHost2d,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
        ),
        (
            C::ResourceAttachBacking,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
        ),
        (
            C::ResourceDetachBacking,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
        ),
        (
            C::GetCapsetInfo,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_CAPSET_INFO,
        ),
        (
            C::GetCapset,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_CAPSET,
        ),
        (C::GetEdid, b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_EDID),
        (
            C::ResourceAssignUuid,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID,
        ),
        (
            C::ResourceCreateBlob,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB,
        ),
        (
            C::SetScanoutBlob,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SET_SCANOUT_BLOB,
        ),
        (
            C::CtxCreate,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_CREATE,
        ),
        (
            C::CtxDestroy,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_DESTROY,
        ),
        (
            C::CtxAttachResource,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE,
        ),
        (
            C::CtxDetachResource,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE,
        ),
        (
            C::ResourceCreate3d,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_3D,
        ),
        (
            C::TransferToHost3d,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D,
        ),
        (
            C::TransferFromHost3d,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D,
        ),
        (
            C::Submit3d,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SUBMIT_3D,
        ),
        (
            C::ResourceMapBlob,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB,
        ),
        (
            C::ResourceUnmapBlob,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB,
        ),
        (
            C::UpdateCursor,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_UPDATE_CURSOR,
        ),
        (
            C::MoveCursor,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_MOVE_CURSOR,
        ),
    ];
    assert_eq!(commands.len(), C::ALL.len(), "every command is checked");
    for (ours, theirs) in commands {
        assert_eq!(ours.value(), theirs, "{ours:?}");
    }

    use ResponseType as R;
    let responses = [
        (
            R::OkNoData,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_NODATA,
        ),
        (
            R::OkDisplayInfo,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
        ),
        (
            R::OkCapsetInfo,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_CAPSET_INFO,
        ),
        (
            R::OkCapset,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_CAPSET,
        ),
        (R::OkEdid, b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_EDID),
        (
            R::OkResourceUuid,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_RESOURCE_UUID,
        ),
        (
            R::OkMapInfo,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_MAP_INFO,
        ),
        (
            R::ErrUnspec,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_UNSPEC,
        ),
        (
            R::ErrOutOfMemory,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
        ),
        (
            R::ErrInvalidScanoutId,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
        ),
        (
            R::ErrInvalidResourceId,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
        ),
        (
            R::ErrInvalidContextId,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID,
        ),
        (
            R::ErrInvalidParameter,
            b::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
        ),
    ];
    assert_eq!(responses.len(), R::ALL.len(), "every response is checked");
    for (ours, theirs) in responses {
        assert_eq!(ours.value(), theirs, "{ours:?}");
    }
}

#[test]
fn native_context_layouts_match_virglrenderer() {
    use vgpu_proto::native::*;
    // Sizes from virglrenderer's drm_hw.h / i915_proto.h and the kernel's
    // i915_drm.h (every i915_proto struct is a multiple of 8 bytes there).
    let sizes: &[(usize, usize, &str)] = &[
        (
            size_of::<CapsetDrmHeader>(),
            24,
            "virgl_renderer_capset_drm head",
        ),
        (size_of::<CapsetDrmIntel>(), 8, "u.intel of the capset"),
        (
            size_of::<CapsetDrmI915>(),
            160,
            "virgl_renderer_capset_drm (union as large as u.amdgpu)",
        ),
        (size_of::<CcmdReq>(), 16, "vdrm_ccmd_req"),
        (size_of::<CcmdRsp>(), 4, "vdrm_ccmd_rsp"),
        (size_of::<VdrmShmem>(), 8, "vdrm_shmem"),
        (size_of::<I915Shmem>(), 16, "i915_shmem"),
        (
            size_of::<IoctlSimpleReq>(),
            24,
            "i915_ccmd_ioctl_simple_req",
        ),
        (size_of::<IoctlSimpleRsp>(), 8, "i915_ccmd_ioctl_simple_rsp"),
        (size_of::<GetParamReq>(), 24, "i915_ccmd_getparam_req"),
        (size_of::<GetParamRsp>(), 16, "i915_ccmd_getparam_rsp"),
        (size_of::<QueryParamReq>(), 32, "i915_ccmd_queryparam_req"),
        (size_of::<QueryParamRsp>(), 16, "i915_ccmd_queryparam_rsp"),
        (
            size_of::<GemContextCreateReq>(),
            24,
            "i915_ccmd_gem_context_create_req",
        ),
        (
            size_of::<GemContextCreateRsp>(),
            16,
            "i915_ccmd_gem_context_create_rsp",
        ),
        (size_of::<GemCreateReq>(), 32, "i915_ccmd_gem_create_req"),
        (
            size_of::<GemCreateExtReq>(),
            40,
            "i915_ccmd_gem_create_ext_req",
        ),
        (
            size_of::<GemExecbuffer2Req>(),
            48,
            "i915_ccmd_gem_execbuffer2_req",
        ),
        (
            size_of::<GemExecbuffer2Rsp>(),
            8,
            "i915_ccmd_gem_execbuffer2_rsp",
        ),
        (
            size_of::<GemSetMmapModeReq>(),
            24,
            "i915_ccmd_gem_set_mmap_mode_req",
        ),
        (size_of::<GemBusyReq>(), 24, "i915_ccmd_gem_busy_req"),
        (size_of::<GemBusyRsp>(), 16, "i915_ccmd_gem_busy_rsp"),
        (size_of::<GemMadviseReq>(), 32, "vgpu GEM_MADVISE req"),
        (size_of::<GemMadviseRsp>(), 16, "vgpu GEM_MADVISE rsp"),
        (size_of::<GemCloseReq>(), 24, "vgpu GEM_CLOSE req"),
        (size_of::<GemCloseRsp>(), 8, "vgpu GEM_CLOSE rsp"),
        (size_of::<UserExtension>(), 32, "i915_user_extension"),
        (
            size_of::<MemoryClassInstance>(),
            4,
            "drm_i915_gem_memory_class_instance",
        ),
        (
            size_of::<GemCreateExtMemoryRegions>(),
            48,
            "drm_i915_gem_create_ext_memory_regions",
        ),
        (
            size_of::<GemCreateExtProtectedContent>(),
            40,
            "drm_i915_gem_create_ext_protected_content",
        ),
        (
            size_of::<GemCreateExtSetPat>(),
            40,
            "drm_i915_gem_create_ext_set_pat",
        ),
        (
            size_of::<GemContextParam>(),
            24,
            "drm_i915_gem_context_param",
        ),
        (
            size_of::<GemContextCreateExtSetparam>(),
            56,
            "drm_i915_gem_context_create_ext_setparam",
        ),
        (size_of::<ExecObject2>(), 56, "drm_i915_gem_exec_object2"),
        (
            size_of::<RelocationEntry>(),
            32,
            "drm_i915_gem_relocation_entry",
        ),
        (
            size_of::<QueryMemoryRegions>(),
            16,
            "drm_i915_query_memory_regions",
        ),
        (
            size_of::<MemoryRegionInfo>(),
            88,
            "drm_i915_memory_region_info",
        ),
    ];
    for (ours, theirs, name) in sizes {
        assert_eq!(ours, theirs, "size of {name}");
    }
    // Offsets that Mesa and virglrenderer rely on.
    assert_eq!(offset_of!(GetParamRsp, ret), 8);
    assert_eq!(offset_of!(GetParamRsp, value), 12);
    assert_eq!(offset_of!(GemExecbuffer2Req, buffer_count), 32);
    assert_eq!(offset_of!(GemExecbuffer2Req, relocs_count), 44);
    assert_eq!(offset_of!(I915Shmem, banned_ctx_mask), 8);
    assert_eq!(offset_of!(CapsetDrmI915, intel), 24);
    assert_eq!(offset_of!(CapsetDrmIntel, pci_domain), 4);
    assert_eq!(offset_of!(CapsetDrmIntel, pci_device_id), 6);
    assert_eq!(offset_of!(MemoryRegionInfo, probed_size), 8);
    assert_eq!(offset_of!(MemoryRegionInfo, probed_cpu_visible_size), 24);
    assert_eq!(offset_of!(ExecObject2, flags), 32);
    assert_eq!(VIRTGPU_DRM_CONTEXT_I915, 3);
    let numbers = [
        (I915Command::IoctlSimple, 1),
        (I915Command::GetParam, 2),
        (I915Command::QueryParam, 3),
        (I915Command::GemCreate, 4),
        (I915Command::GemCreateExt, 5),
        (I915Command::GemContextCreate, 6),
        (I915Command::GemExecbuffer2, 7),
        (I915Command::GemSetMmapMode, 8),
        (I915Command::GemBusy, 9),
        (I915Command::GemMadvise, 0x100),
        (I915Command::GemClose, 0x101),
    ];
    assert_eq!(numbers.len(), I915Command::ALL.len());
    for (cmd, n) in numbers {
        assert_eq!(cmd.value(), n, "{cmd:?}");
        assert_eq!(cmd.is_vgpu_extension(), n >= 0x100);
    }
}
