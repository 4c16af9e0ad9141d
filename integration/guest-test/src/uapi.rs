//! The virtgpu DRM uapi (`include/uapi/drm/virtgpu_drm.h`) and the GEM
//! close ioctl: structs laid out as the kernel's, and one small wrapper
//! per ioctl. Every `unsafe` block here is an ioctl whose argument type
//! matches its opcode.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::ioctl::{ioctl, opcode, Updater};

const DRM: u8 = b'd';
const COMMAND_BASE: u8 = 0x40;

/// `VIRTGPU_PARAM_*`, with the names the test prints.
pub const PARAMS: [(u64, &str); 7] = [
    (1, "3d_features"),
    (2, "capset_query_fix"),
    (3, "resource_blob"),
    (4, "host_visible"),
    (5, "cross_device"),
    (6, "context_init"),
    (7, "supported_capset_ids"),
];

/// `VIRTGPU_BLOB_MEM_HOST3D`.
pub const BLOB_MEM_HOST3D: u32 = 2;
/// `VIRTGPU_BLOB_FLAG_USE_MAPPABLE`.
pub const BLOB_FLAG_USE_MAPPABLE: u32 = 1;
/// `VIRTGPU_BLOB_FLAG_USE_SHAREABLE`.
pub const BLOB_FLAG_USE_SHAREABLE: u32 = 2;
/// `VIRTGPU_CONTEXT_PARAM_CAPSET_ID`.
pub const CONTEXT_PARAM_CAPSET_ID: u64 = 1;
/// `VIRTGPU_CONTEXT_PARAM_NUM_RINGS`.
pub const CONTEXT_PARAM_NUM_RINGS: u64 = 2;

/// `struct drm_virtgpu_getparam` (`value` points at an int).
#[repr(C)]
struct GetParam {
    param: u64,
    value: u64,
}

/// `struct drm_virtgpu_get_caps`.
#[repr(C)]
struct GetCaps {
    cap_set_id: u32,
    cap_set_ver: u32,
    addr: u64,
    size: u32,
    pad: u32,
}

/// `struct drm_virtgpu_map`.
#[repr(C)]
struct Map {
    offset: u64,
    handle: u32,
    pad: u32,
}

/// `struct drm_virtgpu_3d_box`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Box3d {
    /// X.
    pub x: u32,
    /// Y.
    pub y: u32,
    /// Z.
    pub z: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Depth.
    pub d: u32,
}

/// `struct drm_virtgpu_3d_transfer_to_host` (and `_from_host`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Transfer {
    /// GEM handle.
    pub bo_handle: u32,
    /// Region.
    pub box_: Box3d,
    /// Mip level.
    pub level: u32,
    /// Offset in the guest backing.
    pub offset: u32,
    /// Bytes per row in the guest backing.
    pub stride: u32,
    /// Bytes per layer.
    pub layer_stride: u32,
}

/// `struct drm_virtgpu_3d_wait`.
#[repr(C)]
struct Wait {
    handle: u32,
    flags: u32,
}

/// `struct drm_virtgpu_resource_create_blob`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateBlob {
    /// `VIRTGPU_BLOB_MEM_*`.
    pub blob_mem: u32,
    /// `VIRTGPU_BLOB_FLAG_*`.
    pub blob_flags: u32,
    /// Out: GEM handle.
    pub bo_handle: u32,
    /// Out: resource id.
    pub res_handle: u32,
    /// Size.
    pub size: u64,
    /// Padding.
    pub pad: u32,
    /// Bytes of `cmd`.
    pub cmd_size: u32,
    /// Pointer to commands run before the blob is created.
    pub cmd: u64,
    /// Context-local blob id.
    pub blob_id: u64,
}

/// `struct drm_virtgpu_context_set_param`.
#[repr(C)]
struct ContextSetParam {
    param: u64,
    value: u64,
}

/// `struct drm_virtgpu_context_init`.
#[repr(C)]
struct ContextInit {
    num_params: u32,
    pad: u32,
    ctx_set_params: u64,
}

/// `struct drm_virtgpu_execbuffer`.
#[repr(C)]
#[derive(Default)]
struct Execbuffer {
    flags: u32,
    size: u32,
    command: u64,
    bo_handles: u64,
    num_bo_handles: u32,
    fence_fd: i32,
    ring_idx: u32,
    syncobj_stride: u32,
    num_in_syncobjs: u32,
    num_out_syncobjs: u32,
    in_syncobjs: u64,
    out_syncobjs: u64,
}

/// `struct drm_gem_close`.
#[repr(C)]
struct GemClose {
    handle: u32,
    pad: u32,
}

const fn nr(n: u8) -> u8 {
    COMMAND_BASE + n
}

/// Runs an update-style ioctl with opcode `OP` on `value`.
///
/// # Safety
///
/// `OP` must be the opcode whose argument type is `T`, and any pointers
/// inside `value` must be valid for what the kernel reads and writes.
unsafe fn update<const OP: rustix::ioctl::Opcode, T>(
    fd: BorrowedFd<'_>,
    value: &mut T,
) -> io::Result<()> {
    // SAFETY: the caller guarantees `OP` takes a `T` and its pointers are valid.
    unsafe { ioctl(fd, Updater::<OP, T>::new(value)) }.map_err(io::Error::from)
}

/// `DRM_IOCTL_VIRTGPU_GETPARAM`.
pub fn getparam(fd: BorrowedFd<'_>, param: u64) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut p = GetParam {
        param,
        value: &mut value as *mut i32 as u64,
    };
    // SAFETY: GETPARAM takes a drm_virtgpu_getparam; `value` points at a
    // live int the kernel writes.
    unsafe { update::<{ opcode::read_write::<GetParam>(DRM, nr(0x03)) }, _>(fd, &mut p) }?;
    Ok(value)
}

/// `DRM_IOCTL_VIRTGPU_GET_CAPS` into `buf`.
pub fn get_caps(fd: BorrowedFd<'_>, id: u32, version: u32, buf: &mut [u8]) -> io::Result<()> {
    let mut c = GetCaps {
        cap_set_id: id,
        cap_set_ver: version,
        addr: buf.as_mut_ptr() as u64,
        size: u32::try_from(buf.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        pad: 0,
    };
    // SAFETY: GET_CAPS takes a drm_virtgpu_get_caps; `addr` is `buf`,
    // writable for `size` bytes.
    unsafe { update::<{ opcode::read_write::<GetCaps>(DRM, nr(0x09)) }, _>(fd, &mut c) }
}

/// `DRM_IOCTL_VIRTGPU_MAP`: the offset to mmap the object at.
pub fn map_offset(fd: BorrowedFd<'_>, handle: u32) -> io::Result<u64> {
    let mut m = Map {
        offset: 0,
        handle,
        pad: 0,
    };
    // SAFETY: MAP takes a drm_virtgpu_map (no pointers).
    unsafe { update::<{ opcode::read_write::<Map>(DRM, nr(0x01)) }, _>(fd, &mut m) }?;
    Ok(m.offset)
}

/// `DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST`.
pub fn transfer_to_host(fd: BorrowedFd<'_>, t: &Transfer) -> io::Result<()> {
    let mut t = *t;
    // SAFETY: TRANSFER_TO_HOST takes a drm_virtgpu_3d_transfer_to_host (no pointers).
    unsafe { update::<{ opcode::read_write::<Transfer>(DRM, nr(0x07)) }, _>(fd, &mut t) }
}

/// `DRM_IOCTL_VIRTGPU_TRANSFER_FROM_HOST`.
pub fn transfer_from_host(fd: BorrowedFd<'_>, t: &Transfer) -> io::Result<()> {
    let mut t = *t;
    // SAFETY: TRANSFER_FROM_HOST takes a drm_virtgpu_3d_transfer_from_host (no pointers).
    unsafe { update::<{ opcode::read_write::<Transfer>(DRM, nr(0x06)) }, _>(fd, &mut t) }
}

/// `DRM_IOCTL_VIRTGPU_WAIT` (blocking).
pub fn wait(fd: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    let mut w = Wait { handle, flags: 0 };
    // SAFETY: WAIT takes a drm_virtgpu_3d_wait (no pointers).
    unsafe { update::<{ opcode::read_write::<Wait>(DRM, nr(0x08)) }, _>(fd, &mut w) }
}

/// `DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB`.
pub fn create_blob(fd: BorrowedFd<'_>, b: &mut CreateBlob) -> io::Result<()> {
    if b.cmd_size != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "blob commands are not used here",
        ));
    }
    // SAFETY: RESOURCE_CREATE_BLOB takes a drm_virtgpu_resource_create_blob;
    // `cmd_size` is 0, so `cmd` is not read.
    unsafe { update::<{ opcode::read_write::<CreateBlob>(DRM, nr(0x0a)) }, _>(fd, b) }
}

/// `DRM_IOCTL_VIRTGPU_CONTEXT_INIT` with `(param, value)` pairs.
pub fn context_init(fd: BorrowedFd<'_>, params: &[(u64, u64)]) -> io::Result<()> {
    let list: Vec<ContextSetParam> = params
        .iter()
        .map(|&(param, value)| ContextSetParam { param, value })
        .collect();
    let mut c = ContextInit {
        num_params: list.len() as u32,
        pad: 0,
        ctx_set_params: list.as_ptr() as u64,
    };
    // SAFETY: CONTEXT_INIT takes a drm_virtgpu_context_init whose
    // `ctx_set_params` points at `num_params` live entries.
    unsafe { update::<{ opcode::read_write::<ContextInit>(DRM, nr(0x0b)) }, _>(fd, &mut c) }
}

/// `DRM_IOCTL_VIRTGPU_EXECBUFFER`: sends `command` to the context (a
/// SUBMIT_3D), on ring 0.
pub fn execbuffer(fd: BorrowedFd<'_>, command: &[u8]) -> io::Result<()> {
    let mut e = Execbuffer {
        size: u32::try_from(command.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        command: command.as_ptr() as u64,
        fence_fd: -1,
        ..Execbuffer::default()
    };
    // SAFETY: EXECBUFFER takes a drm_virtgpu_execbuffer; `command` points
    // at `size` readable bytes, no handles, syncobjs or fences are passed.
    unsafe { update::<{ opcode::read_write::<Execbuffer>(DRM, nr(0x02)) }, _>(fd, &mut e) }
}

/// `DRM_IOCTL_GEM_CLOSE`.
pub fn gem_close(fd: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    let mut c = GemClose { handle, pad: 0 };
    // SAFETY: GEM_CLOSE takes a drm_gem_close (no pointers); it is _IOW.
    unsafe {
        ioctl(
            fd,
            Updater::<{ opcode::write::<GemClose>(DRM, 0x09) }, GemClose>::new(&mut c),
        )
    }
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes from the kernel header (they are encoded in the opcodes).
    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(size_of::<GetParam>(), 16);
        assert_eq!(size_of::<GetCaps>(), 24);
        assert_eq!(size_of::<Map>(), 16);
        assert_eq!(size_of::<Box3d>(), 24);
        assert_eq!(size_of::<Transfer>(), 44);
        assert_eq!(size_of::<Wait>(), 8);
        assert_eq!(size_of::<CreateBlob>(), 48);
        assert_eq!(size_of::<ContextSetParam>(), 16);
        assert_eq!(size_of::<ContextInit>(), 16);
        assert_eq!(size_of::<Execbuffer>(), 64);
        assert_eq!(size_of::<GemClose>(), 8);
        // DRM_IOWR('d', 0x40 + 0x03, 16 bytes) from the header's macros.
        assert_eq!(opcode::read_write::<GetParam>(DRM, nr(0x03)), 0xc010_6443);
        assert_eq!(opcode::write::<GemClose>(DRM, 0x09), 0x4008_6409);
    }
}
