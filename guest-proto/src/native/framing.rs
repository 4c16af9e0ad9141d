//! The "vdrm" framing every DRM native context shares (virglrenderer
//! `drm_hw.h`, Mesa `src/virtio/virtio-gpu/drm_hw.h`): the capset payload,
//! the request and response headers, the shared response-memory header, and
//! the splitting of a SUBMIT_3D stream into requests.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::FromBytes;

use crate::macros::wire_struct;

/// DRM native-context type: Qualcomm msm.
pub const VIRTGPU_DRM_CONTEXT_MSM: u32 = 1;
/// DRM native-context type: AMD amdgpu.
pub const VIRTGPU_DRM_CONTEXT_AMDGPU: u32 = 2;
/// DRM native-context type: Intel i915 (the one vgpu implements).
pub const VIRTGPU_DRM_CONTEXT_I915: u32 = 3;
/// DRM native-context type: Apple asahi.
pub const VIRTGPU_DRM_CONTEXT_ASAHI: u32 = 4;
/// DRM native-context type: Arm panfrost.
pub const VIRTGPU_DRM_CONTEXT_PANFROST: u32 = 5;

/// Capset wire-format version of the i915 context.
pub const I915_WIRE_FORMAT_VERSION: u32 = 1;

wire_struct! {
    /// `virgl_renderer_capset_drm`: the common head of the DRM capset.
    pub struct CapsetDrmHeader {
        /// Version of the context's wire format.
        pub wire_format_version: U32,
        /// Host DRM driver major version.
        pub version_major: U32,
        /// Host DRM driver minor version.
        pub version_minor: U32,
        /// Host DRM driver patch level.
        pub version_patchlevel: U32,
        /// `VIRTGPU_DRM_CONTEXT_*`.
        pub context_type: U32,
        /// Padding.
        pub pad: U32,
    }
}

wire_struct! {
    /// `u.intel` of `virgl_renderer_capset_drm` (virglrenderer and Mesa
    /// `drm_hw.h`): the PCI identity of the host GPU, packed in 8 bytes.
    pub struct CapsetDrmIntel {
        /// PCI bus.
        pub pci_bus: u8,
        /// PCI device.
        pub pci_dev: u8,
        /// PCI function.
        pub pci_func: u8,
        /// PCI revision.
        pub pci_revision_id: u8,
        /// PCI domain.
        pub pci_domain: U16,
        /// PCI device id (Mesa picks its device tables with it).
        pub pci_device_id: U16,
    }
}

/// Size of the union `u` of `virgl_renderer_capset_drm` as every build
/// compiles it: its largest member is `amdgpu` without libdrm's types
/// (`address32_hi`, a flags word and `marketing_name[128]`); `msm` is 96
/// bytes, `intel` 8. (A virglrenderer built with amdgpu support adds
/// libdrm's `amdgpu_gpu_info`; guests zero the capset before reading it
/// and take what the host sends, so a shorter capset reads as zeros.)
pub const CAPSET_DRM_UNION_SIZE: usize = 136;

wire_struct! {
    /// The whole DRM capset as the i915 context sends it: the common head,
    /// `u.intel`, and the rest of the union zeroed (zero is "not supported
    /// by the host" for every capability added later).
    pub struct CapsetDrmI915 {
        /// Common head.
        pub header: CapsetDrmHeader,
        /// `u.intel`.
        pub intel: CapsetDrmIntel,
        /// The rest of the union.
        pub rest: [u8; CAPSET_DRM_UNION_SIZE - size_of::<CapsetDrmIntel>()],
    }
}

wire_struct! {
    /// `vdrm_ccmd_req`: the header of every native-context request.
    pub struct CcmdReq {
        /// Command number.
        pub cmd: U32,
        /// Length of the whole request, header included.
        pub len: U32,
        /// Sequence number; the host writes it to the shmem header when done.
        pub seqno: U32,
        /// Offset of the response in the response memory (commands with one).
        pub rsp_off: U32,
    }
}

wire_struct! {
    /// `vdrm_ccmd_rsp`: the header of every native-context response.
    pub struct CcmdRsp {
        /// Length of the response, header included.
        pub len: U32,
    }
}

wire_struct! {
    /// `vdrm_shmem`: the header of the context's shared response blob.
    pub struct VdrmShmem {
        /// Sequence number of the last request the host finished.
        pub seqno: U32,
        /// Where the response memory starts in the blob.
        pub rsp_mem_offset: U32,
    }
}

wire_struct! {
    /// `i915_shmem`: the i915 context's shared response-blob header.
    pub struct I915Shmem {
        /// Common head.
        pub base: VdrmShmem,
        /// Bit n set: GEM context n was banned (a hang); the guest recreates it.
        pub banned_ctx_mask: U64,
    }
}

/// Size of the response blob Mesa allocates for a context (blob_id 0).
pub const MESA_SHMEM_SIZE: u64 = 0x4000;

/// A framing problem in a SUBMIT_3D stream. The stream cannot be resynced
/// after one, so processing of that SUBMIT_3D stops there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A request header's `len` is shorter than a header, longer than what
    /// remains, or not a multiple of 4.
    #[error("request {cmd} at offset {offset} has len {len} with {remaining} bytes left")]
    BadLength {
        /// Command number.
        cmd: u32,
        /// Offset of the request in the stream.
        offset: usize,
        /// The `len` it claims.
        len: u32,
        /// Bytes left in the stream.
        remaining: usize,
    },
    /// `rsp_off` is not a multiple of 4.
    #[error("request {cmd} at offset {offset} has misaligned rsp_off {rsp_off}")]
    MisalignedResponse {
        /// Command number.
        cmd: u32,
        /// Offset of the request in the stream.
        offset: usize,
        /// The `rsp_off` it asks for.
        rsp_off: u32,
    },
    /// Bytes left over that cannot hold a request header.
    #[error("{remaining} trailing bytes at offset {offset} cannot hold a request")]
    TrailingBytes {
        /// Offset of the leftover.
        offset: usize,
        /// Bytes left.
        remaining: usize,
    },
}

/// One framed request: its header and all its bytes (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCcmd<'a> {
    /// Header.
    pub hdr: CcmdReq,
    /// The whole request, `hdr.len` bytes.
    pub bytes: &'a [u8],
}

impl<'a> RawCcmd<'a> {
    /// The bytes after the header.
    pub fn body(&self) -> &'a [u8] {
        self.bytes.get(size_of::<CcmdReq>()..).unwrap_or(&[])
    }
}

/// Splits a SUBMIT_3D stream into requests with virglrenderer's rules
/// (`len` ≥ 16, ≤ what remains, a multiple of 4; `rsp_off` a multiple of 4;
/// nothing left over). Stops after the first error.
#[derive(Debug, Clone)]
pub struct CcmdIter<'a> {
    stream: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> CcmdIter<'a> {
    /// Iterates over the requests in `stream`.
    pub fn new(stream: &'a [u8]) -> Self {
        Self {
            stream,
            offset: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for CcmdIter<'a> {
    type Item = Result<RawCcmd<'a>, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.stream.get(self.offset..).unwrap_or(&[]);
        if rest.is_empty() {
            return None;
        }
        let offset = self.offset;
        let result = (|| {
            let (hdr, _) =
                CcmdReq::read_from_prefix(rest).map_err(|_| FramingError::TrailingBytes {
                    offset,
                    remaining: rest.len(),
                })?;
            let len = hdr.len.get();
            let bad_length = FramingError::BadLength {
                cmd: hdr.cmd.get(),
                offset,
                len,
                remaining: rest.len(),
            };
            let n = usize::try_from(len).map_err(|_| bad_length.clone())?;
            if n < size_of::<CcmdReq>() || n > rest.len() || n % 4 != 0 {
                return Err(bad_length);
            }
            if hdr.rsp_off.get() % 4 != 0 {
                return Err(FramingError::MisalignedResponse {
                    cmd: hdr.cmd.get(),
                    offset,
                    rsp_off: hdr.rsp_off.get(),
                });
            }
            Ok(RawCcmd {
                hdr,
                bytes: &rest[..n],
            })
        })();
        match &result {
            Ok(raw) => self.offset += raw.bytes.len(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn req(cmd: u32, len: u32, rsp_off: u32) -> Vec<u8> {
        let mut v = CcmdReq {
            cmd: cmd.into(),
            len: len.into(),
            seqno: 1.into(),
            rsp_off: rsp_off.into(),
        }
        .as_bytes()
        .to_vec();
        v.resize(usize::try_from(len).unwrap().max(16), 0xaa);
        v
    }

    #[test]
    fn splits_back_to_back_requests() {
        let mut s = req(2, 24, 0);
        s.extend(req(9, 16, 8));
        let got: Vec<_> = CcmdIter::new(&s).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].hdr.cmd.get(), 2);
        assert_eq!(got[0].body().len(), 8);
        assert_eq!(got[1].hdr.cmd.get(), 9);
    }

    #[test]
    fn bad_lengths_stop_the_stream() {
        for (len, why) in [(8, "short"), (18, "misaligned"), (64, "beyond")] {
            let mut s = req(2, 16, 0);
            let mut bad = req(3, 16, 0);
            bad[4..8].copy_from_slice(&u32::to_le_bytes(len));
            s.extend(bad);
            s.extend(req(4, 16, 0));
            let got: Vec<_> = CcmdIter::new(&s).collect();
            assert_eq!(got.len(), 2, "{why}");
            assert!(got[0].is_ok());
            assert!(
                matches!(
                    got[1],
                    Err(FramingError::BadLength {
                        cmd: 3,
                        offset: 16,
                        ..
                    })
                ),
                "{why}"
            );
        }
    }

    #[test]
    fn misaligned_rsp_off_and_leftovers_are_errors() {
        let s = req(2, 16, 6);
        assert!(matches!(
            CcmdIter::new(&s).next(),
            Some(Err(FramingError::MisalignedResponse { rsp_off: 6, .. }))
        ));
        let mut s = req(2, 16, 0);
        s.extend([0u8; 8]);
        let got: Vec<_> = CcmdIter::new(&s).collect();
        assert_eq!(
            got[1],
            Err(FramingError::TrailingBytes {
                offset: 16,
                remaining: 8
            })
        );
    }
}
