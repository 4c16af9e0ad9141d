//! Responses: the device-side encoder and a guest-side decoder.
//!
//! [`Response::encode`] writes the response header the spec requires: with
//! `FLAG_FENCE` in the request, the response carries the flag, `fence_id`
//! and `ctx_id`; with `FLAG_INFO_RING_IDX`, also that flag and `ring_idx`
//! (QEMU and crosvm echo the same fields).

use zerocopy::{FromBytes, IntoBytes};

use super::consts::{
    ErrorCode, ResponseType, VIRTIO_GPU_EDID_SIZE, VIRTIO_GPU_FLAG_FENCE,
    VIRTIO_GPU_FLAG_INFO_RING_IDX, VIRTIO_GPU_MAX_SCANOUTS,
};
use super::wire::{
    CtrlHdr, DisplayOne, RespCapsetInfo, RespDisplayInfo, RespEdid, RespMapInfo, RespResourceUuid,
};

/// A response to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// OK_NODATA.
    OkNoData,
    /// OK_DISPLAY_INFO: one entry per possible scanout.
    DisplayInfo(Box<[DisplayOne; VIRTIO_GPU_MAX_SCANOUTS]>),
    /// OK_CAPSET_INFO.
    CapsetInfo {
        /// Capset id.
        capset_id: u32,
        /// Highest version.
        max_version: u32,
        /// Size of the capset data.
        max_size: u32,
    },
    /// OK_CAPSET: the capset data.
    Capset(Vec<u8>),
    /// OK_EDID: the EDID bytes (at most 1024; see [`Response::edid`]).
    Edid(Vec<u8>),
    /// OK_RESOURCE_UUID.
    ResourceUuid([u8; 16]),
    /// OK_MAP_INFO: `VIRTIO_GPU_MAP_CACHE_*`.
    MapInfo(u32),
    /// One of the `ERR_*` responses.
    Error(ErrorCode),
}

/// Why response bytes could not be decoded (guest side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseDecodeError {
    /// Fewer bytes than the response type needs.
    #[error("response {type_:#06x} needs {need} bytes, got {have}")]
    Truncated {
        /// Response type.
        type_: u32,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// `ctrl_hdr.type` is not a response.
    #[error("unknown response type {type_:#06x}")]
    UnknownResponse {
        /// The type found.
        type_: u32,
    },
    /// An EDID response whose `size` exceeds the EDID field.
    #[error("EDID size {size} exceeds 1024")]
    EdidTooLarge {
        /// The size found.
        size: u32,
    },
}

impl Response {
    /// An EDID response, refusing blobs longer than the 1024-byte field.
    pub fn edid(bytes: &[u8]) -> Option<Response> {
        (bytes.len() <= VIRTIO_GPU_EDID_SIZE).then(|| Response::Edid(bytes.to_vec()))
    }

    /// The response type on the wire.
    pub fn response_type(&self) -> ResponseType {
        match self {
            Response::OkNoData => ResponseType::OkNoData,
            Response::DisplayInfo(_) => ResponseType::OkDisplayInfo,
            Response::CapsetInfo { .. } => ResponseType::OkCapsetInfo,
            Response::Capset(_) => ResponseType::OkCapset,
            Response::Edid(_) => ResponseType::OkEdid,
            Response::ResourceUuid(_) => ResponseType::OkResourceUuid,
            Response::MapInfo(_) => ResponseType::OkMapInfo,
            Response::Error(code) => ResponseType::from(*code),
        }
    }

    /// Bytes [`Response::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Response::OkNoData | Response::Error(_) => size_of::<CtrlHdr>(),
            Response::DisplayInfo(_) => size_of::<RespDisplayInfo>(),
            Response::CapsetInfo { .. } => size_of::<RespCapsetInfo>(),
            Response::Capset(data) => size_of::<CtrlHdr>() + data.len(),
            Response::Edid(_) => size_of::<RespEdid>(),
            Response::ResourceUuid(_) => size_of::<RespResourceUuid>(),
            Response::MapInfo(_) => size_of::<RespMapInfo>(),
        }
    }

    /// Appends the response to the request with header `request` to `out`.
    pub fn encode(&self, request: &CtrlHdr, out: &mut Vec<u8>) {
        let hdr = response_hdr(request, self.response_type());
        out.reserve(self.encoded_len());
        match self {
            Response::OkNoData | Response::Error(_) => out.extend_from_slice(hdr.as_bytes()),
            Response::DisplayInfo(pmodes) => out.extend_from_slice(
                RespDisplayInfo {
                    hdr,
                    pmodes: **pmodes,
                }
                .as_bytes(),
            ),
            Response::CapsetInfo {
                capset_id,
                max_version,
                max_size,
            } => out.extend_from_slice(
                RespCapsetInfo {
                    hdr,
                    capset_id: (*capset_id).into(),
                    capset_max_version: (*max_version).into(),
                    capset_max_size: (*max_size).into(),
                    padding: 0.into(),
                }
                .as_bytes(),
            ),
            Response::Capset(data) => {
                out.extend_from_slice(hdr.as_bytes());
                out.extend_from_slice(data);
            }
            Response::Edid(blob) => {
                let used = blob.len().min(VIRTIO_GPU_EDID_SIZE);
                let mut resp = RespEdid {
                    hdr,
                    size: u32::try_from(used).unwrap_or(0).into(),
                    ..RespEdid::default()
                };
                resp.edid[..used].copy_from_slice(&blob[..used]);
                out.extend_from_slice(resp.as_bytes());
            }
            Response::ResourceUuid(uuid) => {
                out.extend_from_slice(RespResourceUuid { hdr, uuid: *uuid }.as_bytes())
            }
            Response::MapInfo(map_info) => out.extend_from_slice(
                RespMapInfo {
                    hdr,
                    map_info: (*map_info).into(),
                    padding: 0.into(),
                }
                .as_bytes(),
            ),
        }
    }

    /// The response's bytes in a new vector.
    pub fn to_bytes(&self, request: &CtrlHdr) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(request, &mut out);
        out
    }

    /// Decodes response bytes (the guest's side of the exchange).
    pub fn decode(bytes: &[u8]) -> Result<(CtrlHdr, Response), ResponseDecodeError> {
        let (hdr, rest) =
            CtrlHdr::read_from_prefix(bytes).map_err(|_| ResponseDecodeError::Truncated {
                type_: 0,
                need: size_of::<CtrlHdr>(),
                have: bytes.len(),
            })?;
        let type_ = hdr.type_.get();
        let kind =
            ResponseType::from_u32(type_).ok_or(ResponseDecodeError::UnknownResponse { type_ })?;
        fn read<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
            type_: u32,
            bytes: &[u8],
        ) -> Result<T, ResponseDecodeError> {
            T::read_from_prefix(bytes)
                .map(|(v, _)| v)
                .map_err(|_| ResponseDecodeError::Truncated {
                    type_,
                    need: size_of::<T>(),
                    have: bytes.len(),
                })
        }
        let response = match kind {
            ResponseType::OkNoData => Response::OkNoData,
            ResponseType::OkDisplayInfo => {
                Response::DisplayInfo(Box::new(read::<RespDisplayInfo>(type_, bytes)?.pmodes))
            }
            ResponseType::OkCapsetInfo => {
                let r = read::<RespCapsetInfo>(type_, bytes)?;
                Response::CapsetInfo {
                    capset_id: r.capset_id.get(),
                    max_version: r.capset_max_version.get(),
                    max_size: r.capset_max_size.get(),
                }
            }
            ResponseType::OkCapset => Response::Capset(rest.to_vec()),
            ResponseType::OkEdid => {
                let r = read::<RespEdid>(type_, bytes)?;
                let size = r.size.get();
                let used = usize::try_from(size)
                    .ok()
                    .filter(|n| *n <= VIRTIO_GPU_EDID_SIZE)
                    .ok_or(ResponseDecodeError::EdidTooLarge { size })?;
                Response::Edid(r.edid[..used].to_vec())
            }
            ResponseType::OkResourceUuid => {
                Response::ResourceUuid(read::<RespResourceUuid>(type_, bytes)?.uuid)
            }
            ResponseType::OkMapInfo => {
                Response::MapInfo(read::<RespMapInfo>(type_, bytes)?.map_info.get())
            }
            error => match ErrorCode::from_u32(error.value()) {
                Some(code) => Response::Error(code),
                None => return Err(ResponseDecodeError::UnknownResponse { type_ }),
            },
        };
        Ok((hdr, response))
    }
}

impl From<ErrorCode> for Response {
    fn from(code: ErrorCode) -> Self {
        Response::Error(code)
    }
}

/// The header of the response to a request with header `request`.
pub fn response_hdr(request: &CtrlHdr, type_: ResponseType) -> CtrlHdr {
    let req_flags = request.flags.get();
    let mut hdr = CtrlHdr::with_type(type_.value());
    if req_flags & VIRTIO_GPU_FLAG_FENCE != 0 {
        hdr.flags = (VIRTIO_GPU_FLAG_FENCE | (req_flags & VIRTIO_GPU_FLAG_INFO_RING_IDX)).into();
        hdr.fence_id = request.fence_id;
        hdr.ctx_id = request.ctx_id;
        if req_flags & VIRTIO_GPU_FLAG_INFO_RING_IDX != 0 {
            hdr.ring_idx = request.ring_idx;
        }
    }
    hdr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fenced(ring: Option<u8>) -> CtrlHdr {
        let mut hdr = CtrlHdr::with_type(0x0207);
        hdr.flags =
            (VIRTIO_GPU_FLAG_FENCE | ring.map_or(0, |_| VIRTIO_GPU_FLAG_INFO_RING_IDX)).into();
        hdr.fence_id = 0x1122_3344_5566_7788.into();
        hdr.ctx_id = 9.into();
        hdr.ring_idx = ring.unwrap_or(5);
        hdr
    }

    #[test]
    fn fence_ctx_and_ring_are_echoed() {
        let hdr = response_hdr(&fenced(Some(3)), ResponseType::OkNoData);
        assert_eq!(
            hdr.flags.get(),
            VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX
        );
        assert_eq!(hdr.fence_id.get(), 0x1122_3344_5566_7788);
        assert_eq!(hdr.ctx_id.get(), 9);
        assert_eq!(hdr.ring_idx, 3);

        let hdr = response_hdr(&fenced(None), ResponseType::ErrUnspec);
        assert_eq!(hdr.flags.get(), VIRTIO_GPU_FLAG_FENCE);
        assert_eq!(hdr.ring_idx, 0, "ring_idx only with INFO_RING_IDX");
        assert_eq!(hdr.type_.get(), 0x1200);
    }

    #[test]
    fn unfenced_responses_carry_no_fence() {
        let mut req = fenced(Some(2));
        req.flags = 0.into();
        let hdr = response_hdr(&req, ResponseType::OkNoData);
        assert_eq!(hdr, CtrlHdr::with_type(0x1100));
    }

    #[test]
    fn edid_is_bounded() {
        assert!(Response::edid(&[0; 1025]).is_none());
        let r = Response::edid(&[7; 128]).unwrap();
        let bytes = r.to_bytes(&CtrlHdr::default());
        assert_eq!(bytes.len(), 1056);
        assert_eq!(Response::decode(&bytes).unwrap().1, r);
    }
}
