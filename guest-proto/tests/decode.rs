//! Decoding a request of every command type of the spec, and the error
//! every truncated or oversized request gets.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use vgpu_proto::virtio_gpu::*;
use zerocopy::IntoBytes;

const ENTRIES: [MemEntry; 2] = [
    MemEntry {
        addr: zerocopy::little_endian::U64::new(0x10_0000),
        length: zerocopy::little_endian::U32::new(4096),
        padding: zerocopy::little_endian::U32::ZERO,
    },
    MemEntry {
        addr: zerocopy::little_endian::U64::new(0x20_0000),
        length: zerocopy::little_endian::U32::new(8192),
        padding: zerocopy::little_endian::U32::ZERO,
    },
];
const STREAM: &[u8] = &[1, 0, 0, 0, 16, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];

fn hdr(ty: CommandType) -> CtrlHdr {
    let mut h = CtrlHdr::with_type(ty.value());
    h.flags = VIRTIO_GPU_FLAG_FENCE.into();
    h.fence_id = 42.into();
    h.ctx_id = 3.into();
    h
}

/// A well-formed request of each type, with distinctive field values.
fn sample(ty: CommandType) -> Command<'static> {
    use CommandType as T;
    let hdr = hdr(ty);
    match ty {
        T::GetDisplayInfo => Command::GetDisplayInfo(hdr),
        T::ResourceCreate2d => Command::ResourceCreate2d(ResourceCreate2d {
            hdr,
            resource_id: 5.into(),
            format: Format::B8G8R8X8Unorm.value().into(),
            width: 640.into(),
            height: 480.into(),
        }),
        T::ResourceUnref => Command::ResourceUnref(ResourceUnref {
            hdr,
            resource_id: 5.into(),
            ..Default::default()
        }),
        T::SetScanout => Command::SetScanout(SetScanout {
            hdr,
            r: Rect::new(0, 0, 640, 480),
            scanout_id: 0.into(),
            resource_id: 5.into(),
        }),
        T::ResourceFlush => Command::ResourceFlush(ResourceFlush {
            hdr,
            r: Rect::new(1, 2, 3, 4),
            resource_id: 5.into(),
            ..Default::default()
        }),
        T::TransferToHost2d => Command::TransferToHost2d(TransferToHost2d {
            hdr,
            r: Rect::new(0, 0, 64, 64),
            offset: 128.into(),
            resource_id: 5.into(),
            ..Default::default()
        }),
        T::ResourceAttachBacking => Command::ResourceAttachBacking {
            cmd: ResourceAttachBacking {
                hdr,
                resource_id: 5.into(),
                nr_entries: 2.into(),
            },
            entries: &ENTRIES,
        },
        T::ResourceDetachBacking => Command::ResourceDetachBacking(ResourceDetachBacking {
            hdr,
            resource_id: 5.into(),
            ..Default::default()
        }),
        T::GetCapsetInfo => Command::GetCapsetInfo(GetCapsetInfo {
            hdr,
            capset_index: 0.into(),
            ..Default::default()
        }),
        T::GetCapset => Command::GetCapset(GetCapset {
            hdr,
            capset_id: VIRTIO_GPU_CAPSET_DRM.into(),
            capset_version: 0.into(),
        }),
        T::GetEdid => Command::GetEdid(GetEdid {
            hdr,
            scanout: 0.into(),
            ..Default::default()
        }),
        T::ResourceAssignUuid => Command::ResourceAssignUuid(ResourceAssignUuid {
            hdr,
            resource_id: 5.into(),
            ..Default::default()
        }),
        T::ResourceCreateBlob => Command::ResourceCreateBlob {
            cmd: ResourceCreateBlob {
                hdr,
                resource_id: 6.into(),
                blob_mem: BlobMem::Guest.value().into(),
                blob_flags: VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE.into(),
                nr_entries: 2.into(),
                blob_id: 0.into(),
                size: 12288.into(),
            },
            entries: &ENTRIES,
        },
        T::SetScanoutBlob => Command::SetScanoutBlob(SetScanoutBlob {
            hdr,
            r: Rect::new(0, 0, 64, 64),
            scanout_id: 0.into(),
            resource_id: 6.into(),
            width: 64.into(),
            height: 64.into(),
            format: Format::B8G8R8A8Unorm.value().into(),
            strides: [256.into(), 0.into(), 0.into(), 0.into()],
            ..Default::default()
        }),
        T::CtxCreate => {
            let mut debug_name = [0; CTX_DEBUG_NAME_LEN];
            debug_name[..4].copy_from_slice(b"iris");
            Command::CtxCreate(CtxCreate {
                hdr,
                nlen: 4.into(),
                context_init: VIRTIO_GPU_CAPSET_DRM.into(),
                debug_name,
            })
        }
        T::CtxDestroy => Command::CtxDestroy(CtxDestroy { hdr }),
        T::CtxAttachResource => Command::CtxAttachResource(CtxResource {
            hdr,
            resource_id: 6.into(),
            ..Default::default()
        }),
        T::CtxDetachResource => Command::CtxDetachResource(CtxResource {
            hdr,
            resource_id: 6.into(),
            ..Default::default()
        }),
        T::ResourceCreate3d => Command::ResourceCreate3d(ResourceCreate3d {
            hdr,
            resource_id: 7.into(),
            target: 2.into(),
            width: 16.into(),
            height: 16.into(),
            depth: 1.into(),
            array_size: 1.into(),
            ..Default::default()
        }),
        T::TransferToHost3d => Command::TransferToHost3d(TransferHost3d {
            hdr,
            resource_id: 7.into(),
            ..Default::default()
        }),
        T::TransferFromHost3d => Command::TransferFromHost3d(TransferHost3d {
            hdr,
            resource_id: 7.into(),
            level: 1.into(),
            ..Default::default()
        }),
        T::Submit3d => Command::Submit3d {
            cmd: CmdSubmit {
                hdr,
                size: 16.into(),
                ..Default::default()
            },
            data: STREAM,
        },
        T::ResourceMapBlob => Command::ResourceMapBlob(ResourceMapBlob {
            hdr,
            resource_id: 6.into(),
            offset: 0x10000.into(),
            ..Default::default()
        }),
        T::ResourceUnmapBlob => Command::ResourceUnmapBlob(ResourceUnmapBlob {
            hdr,
            resource_id: 6.into(),
            ..Default::default()
        }),
        T::UpdateCursor => Command::UpdateCursor(UpdateCursor {
            hdr,
            resource_id: 8.into(),
            hot_x: 1.into(),
            hot_y: 2.into(),
            ..Default::default()
        }),
        T::MoveCursor => Command::MoveCursor(UpdateCursor {
            hdr,
            pos: CursorPos {
                x: 100.into(),
                y: 200.into(),
                ..Default::default()
            },
            ..Default::default()
        }),
    }
}

#[test]
fn every_command_type_decodes_to_its_typed_command() {
    for ty in CommandType::ALL {
        let cmd = sample(*ty);
        let bytes = cmd.to_bytes();
        let decoded = Command::decode(&bytes).unwrap_or_else(|e| panic!("{ty:?}: {e}"));
        assert_eq!(decoded.command_type(), *ty);
        assert_eq!(decoded, cmd, "{ty:?}");
        assert_eq!(decoded.hdr().fence_id.get(), 42);
    }
}

#[test]
fn trailing_data_is_carried() {
    let bytes = sample(CommandType::ResourceAttachBacking).to_bytes();
    match Command::decode(&bytes).unwrap() {
        Command::ResourceAttachBacking { entries, .. } => {
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[1].addr.get(), 0x20_0000);
            assert_eq!(entries[1].length.get(), 8192);
        }
        other => panic!("{other:?}"),
    }
    let bytes = sample(CommandType::Submit3d).to_bytes();
    assert!(
        matches!(Command::decode(&bytes).unwrap(), Command::Submit3d { data, .. } if data == STREAM)
    );
    let bytes = sample(CommandType::CtxCreate).to_bytes();
    match Command::decode(&bytes).unwrap() {
        Command::CtxCreate(c) => {
            assert_eq!(c.debug_name(), b"iris");
            assert_eq!(c.capset_id(), VIRTIO_GPU_CAPSET_DRM);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_truncated_request_is_an_unspec_error_that_keeps_its_header() {
    for ty in CommandType::ALL {
        let bytes = sample(*ty).to_bytes();
        for cut in [1, 8] {
            let short = &bytes[..bytes.len() - cut];
            let err = Command::decode(short).unwrap_err();
            assert_eq!(
                err.error_code(),
                ErrorCode::Unspec,
                "{ty:?} cut {cut}: {err}"
            );
            if short.len() >= 24 {
                assert!(
                    matches!(err.error, DecodeError::Truncated { command, .. } if command == *ty),
                    "{ty:?}: {err}"
                );
                assert_eq!(err.hdr.map(|h| h.fence_id.get()), Some(42));
            } else {
                assert!(matches!(err.error, DecodeError::HeaderTruncated { .. }));
                assert_eq!(err.hdr, None);
            }
        }
    }
}

#[test]
fn every_oversized_request_is_an_error() {
    for ty in CommandType::ALL {
        let mut bytes = sample(*ty).to_bytes();
        bytes.push(0);
        let err = Command::decode(&bytes).unwrap_err();
        assert!(
            matches!(err.error, DecodeError::TrailingBytes { command, .. } if command == *ty),
            "{ty:?}: {err}"
        );
        assert_eq!(err.error_code(), ErrorCode::Unspec);
    }
}

fn patch_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn counts_beyond_their_caps_are_invalid_parameters() {
    // nr_entries above the cap: rejected before looking at the bytes.
    for (ty, nr_offset) in [
        (CommandType::ResourceAttachBacking, 28),
        (CommandType::ResourceCreateBlob, 36),
    ] {
        let mut bytes = sample(ty).to_bytes();
        patch_u32(&mut bytes, nr_offset, MAX_MEM_ENTRIES + 1);
        let err = Command::decode(&bytes).unwrap_err();
        assert_eq!(
            err.error,
            DecodeError::TooManyEntries {
                command: ty,
                nr_entries: MAX_MEM_ENTRIES + 1,
                max: MAX_MEM_ENTRIES
            }
        );
        assert_eq!(err.error_code(), ErrorCode::InvalidParameter);
        patch_u32(&mut bytes, nr_offset, u32::MAX);
        assert_eq!(
            Command::decode(&bytes).unwrap_err().error_code(),
            ErrorCode::InvalidParameter
        );
        // Within the cap but more than present: truncated.
        patch_u32(&mut bytes, nr_offset, 3);
        assert!(matches!(
            Command::decode(&bytes).unwrap_err().error,
            DecodeError::Truncated { .. }
        ));
    }

    let mut bytes = sample(CommandType::Submit3d).to_bytes();
    patch_u32(&mut bytes, 24, MAX_SUBMIT_3D_BYTES + 1);
    assert_eq!(
        Command::decode(&bytes).unwrap_err().error,
        DecodeError::SubmitTooLarge {
            size: MAX_SUBMIT_3D_BYTES + 1,
            max: MAX_SUBMIT_3D_BYTES
        }
    );
    patch_u32(&mut bytes, 24, 17);
    assert!(matches!(
        Command::decode(&bytes).unwrap_err().error,
        DecodeError::Truncated {
            need: 49,
            have: 48,
            ..
        }
    ));

    let mut bytes = sample(CommandType::CtxCreate).to_bytes();
    patch_u32(&mut bytes, 24, 65);
    assert_eq!(
        Command::decode(&bytes).unwrap_err().error,
        DecodeError::DebugNameTooLong { nlen: 65 }
    );
    patch_u32(&mut bytes, 24, 64);
    assert!(Command::decode(&bytes).is_ok());
}

#[test]
fn huge_and_unknown_requests_are_rejected() {
    let mut bytes = CtrlHdr::with_type(CommandType::GetDisplayInfo.value())
        .as_bytes()
        .to_vec();
    bytes.resize(MAX_REQUEST_BYTES + 1, 0);
    assert!(matches!(
        Command::decode(&bytes).unwrap_err().error,
        DecodeError::RequestTooLarge { .. }
    ));
    for type_ in [0, 0x10e, 0x20a, 0x302, 0x1100, 0x1205, u32::MAX] {
        let bytes = CtrlHdr::with_type(type_).as_bytes().to_vec();
        let err = Command::decode(&bytes).unwrap_err();
        assert_eq!(err.error, DecodeError::UnknownCommand { type_ });
        assert_eq!(err.error_code(), ErrorCode::Unspec);
    }
    let err = Command::decode(&[]).unwrap_err();
    assert_eq!(err.error, DecodeError::HeaderTruncated { len: 0 });
}

#[test]
fn the_largest_valid_requests_decode() {
    let entries = vec![MemEntry::new(0x1000, 4096); MAX_MEM_ENTRIES as usize];
    let cmd = Command::ResourceCreateBlob {
        cmd: ResourceCreateBlob {
            hdr: hdr(CommandType::ResourceCreateBlob),
            nr_entries: MAX_MEM_ENTRIES.into(),
            ..Default::default()
        },
        entries: &entries,
    };
    let bytes = cmd.to_bytes();
    assert_eq!(Command::decode(&bytes).unwrap(), cmd);
    let data = vec![0u8; MAX_SUBMIT_3D_BYTES as usize];
    let cmd = Command::Submit3d {
        cmd: CmdSubmit {
            hdr: hdr(CommandType::Submit3d),
            size: MAX_SUBMIT_3D_BYTES.into(),
            ..Default::default()
        },
        data: &data,
    };
    let bytes = cmd.to_bytes();
    assert_eq!(bytes.len(), MAX_REQUEST_BYTES);
    assert_eq!(Command::decode(&bytes).unwrap(), cmd);
}
