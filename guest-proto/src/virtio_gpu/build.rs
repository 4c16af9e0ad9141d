//! Builders of the requests a driver sends, for tests, benchmarks, fuzz
//! targets and the harness: each returns a typed [`Command`] ready to
//! encode, with the header filled in.

use super::*;

/// A header of `ty` with no fence.
pub fn hdr(ty: CommandType) -> CtrlHdr {
    CtrlHdr::with_type(ty.value())
}

/// A header of `ty` on context `ctx`.
pub fn ctx_hdr(ty: CommandType, ctx: u32) -> CtrlHdr {
    let mut h = hdr(ty);
    h.ctx_id = ctx.into();
    h
}

/// A fenced header: `fence_id` on context `ctx`, ring `ring` if given.
pub fn fenced(mut h: CtrlHdr, fence_id: u64, ring: Option<u8>) -> CtrlHdr {
    let mut flags = VIRTIO_GPU_FLAG_FENCE;
    if let Some(r) = ring {
        flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
        h.ring_idx = r;
    }
    h.flags = flags.into();
    h.fence_id = fence_id.into();
    h
}

/// RESOURCE_CREATE_2D.
pub fn create_2d(id: u32, format: Format, width: u32, height: u32) -> Command<'static> {
    Command::ResourceCreate2d(ResourceCreate2d {
        hdr: hdr(CommandType::ResourceCreate2d),
        resource_id: id.into(),
        format: format.value().into(),
        width: width.into(),
        height: height.into(),
    })
}

/// RESOURCE_UNREF.
pub fn unref(id: u32) -> Command<'static> {
    Command::ResourceUnref(ResourceUnref {
        hdr: hdr(CommandType::ResourceUnref),
        resource_id: id.into(),
        padding: 0.into(),
    })
}

/// RESOURCE_ATTACH_BACKING.
pub fn attach_backing(id: u32, entries: &[MemEntry]) -> Command<'_> {
    Command::ResourceAttachBacking {
        cmd: ResourceAttachBacking {
            hdr: hdr(CommandType::ResourceAttachBacking),
            resource_id: id.into(),
            nr_entries: (entries.len() as u32).into(),
        },
        entries,
    }
}

/// RESOURCE_DETACH_BACKING.
pub fn detach_backing(id: u32) -> Command<'static> {
    Command::ResourceDetachBacking(ResourceDetachBacking {
        hdr: hdr(CommandType::ResourceDetachBacking),
        resource_id: id.into(),
        padding: 0.into(),
    })
}

/// TRANSFER_TO_HOST_2D.
pub fn transfer_2d(id: u32, r: Rect, offset: u64) -> Command<'static> {
    Command::TransferToHost2d(TransferToHost2d {
        hdr: hdr(CommandType::TransferToHost2d),
        r,
        offset: offset.into(),
        resource_id: id.into(),
        padding: 0.into(),
    })
}

/// SET_SCANOUT.
pub fn set_scanout(scanout: u32, id: u32, r: Rect) -> Command<'static> {
    Command::SetScanout(SetScanout {
        hdr: hdr(CommandType::SetScanout),
        r,
        scanout_id: scanout.into(),
        resource_id: id.into(),
    })
}

/// The body of UPDATE_CURSOR / MOVE_CURSOR on scanout 0: header `h`
/// (fenced or not), position, image resource and hot spot (both ignored
/// by MOVE_CURSOR).
pub fn cursor(h: CtrlHdr, x: u32, y: u32, resource_id: u32, hot: (u32, u32)) -> UpdateCursor {
    UpdateCursor {
        hdr: h,
        pos: CursorPos {
            scanout_id: 0.into(),
            x: x.into(),
            y: y.into(),
            padding: 0.into(),
        },
        resource_id: resource_id.into(),
        hot_x: hot.0.into(),
        hot_y: hot.1.into(),
        padding: 0.into(),
    }
}

/// RESOURCE_FLUSH.
pub fn flush(id: u32, r: Rect) -> Command<'static> {
    Command::ResourceFlush(ResourceFlush {
        hdr: hdr(CommandType::ResourceFlush),
        r,
        resource_id: id.into(),
        padding: 0.into(),
    })
}

/// CTX_CREATE of a DRM native context.
pub fn ctx_create(ctx: u32, capset: u32, name: &str) -> Command<'static> {
    let mut debug_name = [0u8; CTX_DEBUG_NAME_LEN];
    let n = name.len().min(CTX_DEBUG_NAME_LEN);
    debug_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    Command::CtxCreate(CtxCreate {
        hdr: ctx_hdr(CommandType::CtxCreate, ctx),
        nlen: (n as u32).into(),
        context_init: capset.into(),
        debug_name,
    })
}

/// RESOURCE_CREATE_BLOB.
pub fn create_blob<'a>(
    ctx: u32,
    id: u32,
    mem: BlobMem,
    flags: u32,
    blob_id: u64,
    size: u64,
    entries: &'a [MemEntry],
) -> Command<'a> {
    Command::ResourceCreateBlob {
        cmd: ResourceCreateBlob {
            hdr: ctx_hdr(CommandType::ResourceCreateBlob, ctx),
            resource_id: id.into(),
            blob_mem: mem.value().into(),
            blob_flags: flags.into(),
            nr_entries: (entries.len() as u32).into(),
            blob_id: blob_id.into(),
            size: size.into(),
        },
        entries,
    }
}

/// RESOURCE_MAP_BLOB.
pub fn map_blob(id: u32, offset: u64) -> Command<'static> {
    Command::ResourceMapBlob(ResourceMapBlob {
        hdr: hdr(CommandType::ResourceMapBlob),
        resource_id: id.into(),
        padding: 0.into(),
        offset: offset.into(),
    })
}

/// RESOURCE_UNMAP_BLOB.
pub fn unmap_blob(id: u32) -> Command<'static> {
    Command::ResourceUnmapBlob(ResourceUnmapBlob {
        hdr: hdr(CommandType::ResourceUnmapBlob),
        resource_id: id.into(),
        padding: 0.into(),
    })
}

/// SUBMIT_3D of a native-context stream.
pub fn submit_3d(ctx: u32, stream: &[u8]) -> Command<'_> {
    Command::Submit3d {
        cmd: CmdSubmit {
            hdr: ctx_hdr(CommandType::Submit3d, ctx),
            size: (stream.len() as u32).into(),
            padding: 0.into(),
        },
        data: stream,
    }
}
