//! Property tests: encode/decode round trips of every command, response and
//! native-context request, and decoders that never panic on any bytes.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use proptest::prelude::*;
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

fn arb_wire<T: FromBytes + KnownLayout + Immutable + std::fmt::Debug>() -> impl Strategy<Value = T>
{
    proptest::collection::vec(any::<u8>(), size_of::<T>())
        .prop_map(|bytes| T::read_from_bytes(&bytes).expect("exact size"))
}

/// Everything needed to build a `Command` of any type (it borrows its
/// trailing data, so the strategy produces the parts).
#[derive(Debug, Clone)]
struct CommandParts {
    ty: CommandType,
    fixed: Vec<u8>,
    entries: Vec<MemEntry>,
    data: Vec<u8>,
}

fn arb_command_parts() -> impl Strategy<Value = CommandParts> {
    (
        proptest::sample::select(CommandType::ALL),
        proptest::collection::vec(any::<u8>(), 96),
        proptest::collection::vec(arb_wire::<MemEntry>(), 0..12),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(ty, fixed, entries, data)| CommandParts {
            ty,
            fixed,
            entries,
            data,
        })
}

fn read<T: FromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> T {
    T::read_from_prefix(bytes)
        .expect("96 bytes cover every struct")
        .0
}

/// Builds a well-formed, self-consistent command: the header is made valid
/// (type of the variant, ring_idx within 64), counts match the trailing
/// data and CTX_CREATE's nlen is within 64.
fn build(parts: &CommandParts) -> Command<'_> {
    use CommandType as T;
    let mut fixed = parts.fixed.clone();
    fixed[0..4].copy_from_slice(&parts.ty.value().to_le_bytes());
    fixed[20] %= VIRTIO_GPU_MAX_RINGS; // ring_idx
    let entries = (parts.entries.len() as u32).to_le_bytes();
    match parts.ty {
        T::ResourceAttachBacking => fixed[28..32].copy_from_slice(&entries),
        T::ResourceCreateBlob => fixed[36..40].copy_from_slice(&entries),
        T::Submit3d => fixed[24..28].copy_from_slice(&(parts.data.len() as u32).to_le_bytes()),
        _ => {}
    }
    let f = &fixed[..];
    match parts.ty {
        T::GetDisplayInfo => Command::GetDisplayInfo(read(f)),
        T::ResourceCreate2d => Command::ResourceCreate2d(read(f)),
        T::ResourceUnref => Command::ResourceUnref(read(f)),
        T::SetScanout => Command::SetScanout(read(f)),
        T::ResourceFlush => Command::ResourceFlush(read(f)),
        T::TransferToHost2d => Command::TransferToHost2d(read(f)),
        T::ResourceAttachBacking => Command::ResourceAttachBacking {
            cmd: read(f),
            entries: &parts.entries,
        },
        T::ResourceDetachBacking => Command::ResourceDetachBacking(read(f)),
        T::GetCapsetInfo => Command::GetCapsetInfo(read(f)),
        T::GetCapset => Command::GetCapset(read(f)),
        T::GetEdid => Command::GetEdid(read(f)),
        T::ResourceAssignUuid => Command::ResourceAssignUuid(read(f)),
        T::ResourceCreateBlob => Command::ResourceCreateBlob {
            cmd: read(f),
            entries: &parts.entries,
        },
        T::SetScanoutBlob => Command::SetScanoutBlob(read(f)),
        T::CtxCreate => {
            let mut c: CtxCreate = read(f);
            c.nlen = (c.nlen.get() % 65).into();
            Command::CtxCreate(c)
        }
        T::CtxDestroy => Command::CtxDestroy(read(f)),
        T::CtxAttachResource => Command::CtxAttachResource(read(f)),
        T::CtxDetachResource => Command::CtxDetachResource(read(f)),
        T::ResourceCreate3d => Command::ResourceCreate3d(read(f)),
        T::TransferToHost3d => Command::TransferToHost3d(read(f)),
        T::TransferFromHost3d => Command::TransferFromHost3d(read(f)),
        T::Submit3d => Command::Submit3d {
            cmd: read(f),
            data: &parts.data,
        },
        T::ResourceMapBlob => Command::ResourceMapBlob(read(f)),
        T::ResourceUnmapBlob => Command::ResourceUnmapBlob(read(f)),
        T::UpdateCursor => Command::UpdateCursor(read(f)),
        T::MoveCursor => Command::MoveCursor(read(f)),
    }
}

fn arb_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::OkNoData),
        proptest::collection::vec(arb_wire::<DisplayOne>(), VIRTIO_GPU_MAX_SCANOUTS)
            .prop_map(|v| Response::DisplayInfo(Box::new(v.try_into().expect("16 entries")))),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| Response::CapsetInfo {
            capset_id: a,
            max_version: b,
            max_size: c
        }),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Response::Capset),
        proptest::collection::vec(any::<u8>(), 0..=VIRTIO_GPU_EDID_SIZE).prop_map(Response::Edid),
        any::<[u8; 16]>().prop_map(Response::ResourceUuid),
        any::<u32>().prop_map(Response::MapInfo),
        proptest::sample::select(ErrorCode::ALL).prop_map(Response::Error),
    ]
}

/// Parts of an i915 request (it borrows regions, objects and data).
#[derive(Debug, Clone)]
struct NativeParts {
    which: u8,
    a: u64,
    b: u32,
    c: u32,
    regions: Vec<MemoryClassInstance>,
    buffers: Vec<ExecObject2>,
    relocs_per_buffer: Vec<u8>,
    payload: Vec<u8>,
}

fn arb_native_parts() -> impl Strategy<Value = NativeParts> {
    (
        0u8..11,
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(arb_wire::<MemoryClassInstance>(), 1..=16),
        proptest::collection::vec(arb_wire::<ExecObject2>(), 0..6),
        proptest::collection::vec(0u8..4, 6),
        proptest::collection::vec(any::<u8>(), 0..=32).prop_map(|mut v| {
            v.truncate(v.len() / 4 * 4);
            v
        }),
    )
        .prop_map(
            |(which, a, b, c, regions, buffers, relocs_per_buffer, payload)| NativeParts {
                which,
                a,
                b,
                c,
                regions,
                buffers,
                relocs_per_buffer,
                payload,
            },
        )
}

fn build_native<'a>(
    p: &'a NativeParts,
    buffers: &'a mut Vec<ExecObject2>,
    relocs: &'a mut Vec<RelocationEntry>,
) -> I915Request<'a> {
    match p.which {
        0 => getparam(p.b),
        1 => queryparam(p.b, p.c % 4096),
        2 => gem_create(p.a, p.b),
        3 => gem_create_ext(p.a, p.b, p.c, &p.regions),
        4 => gem_set_mmap_mode(p.b, p.c),
        5 => gem_busy(p.b),
        6 => gem_madvise_resource(p.b | 1, p.c % 2),
        7 => gem_madvise_blob(p.b | 1, p.c % 2),
        8 => gem_close(p.b),
        9 => {
            // IOCTL_SIMPLE: payload size is encoded in the ioctl number.
            let size = p.payload.len() as u32;
            let ioctl = (p.c & 0xc000_ffff) | (size << 16);
            I915Request::IoctlSimple {
                req: IoctlSimpleReq {
                    cmd: ioctl.into(),
                    ..Default::default()
                },
                payload: &p.payload,
            }
        }
        _ => {
            *buffers = p.buffers.clone();
            for (b, n) in buffers.iter_mut().zip(&p.relocs_per_buffer) {
                b.relocation_count = u32::from(*n).into();
            }
            let total: u32 = buffers.iter().map(|b| b.relocation_count.get()).sum();
            *relocs = (0..total)
                .map(|i| RelocationEntry {
                    target_handle: i.into(),
                    ..Default::default()
                })
                .collect();
            gem_execbuffer2(p.a, u64::from(p.b), p.c, buffers, relocs)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn commands_round_trip(parts in arb_command_parts()) {
        let cmd = build(&parts);
        let bytes = cmd.to_bytes();
        let decoded = Command::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, cmd);
        prop_assert_eq!(decoded.to_bytes(), bytes);
    }

    #[test]
    fn responses_round_trip_and_echo_the_fence(resp in arb_response(), req in arb_wire::<CtrlHdr>()) {
        let bytes = resp.to_bytes(&req);
        prop_assert_eq!(bytes.len(), resp.encoded_len());
        let (hdr, decoded) = Response::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, resp.clone());
        prop_assert_eq!(hdr.type_.get(), resp.response_type().value());
        let fenced = req.flags.get() & VIRTIO_GPU_FLAG_FENCE != 0;
        prop_assert_eq!(hdr.flags.get() & VIRTIO_GPU_FLAG_FENCE != 0, fenced);
        if fenced {
            prop_assert_eq!(hdr.fence_id, req.fence_id);
            prop_assert_eq!(hdr.ctx_id, req.ctx_id);
        }
    }

    #[test]
    fn native_requests_round_trip(p in arb_native_parts(), seqno in any::<u32>()) {
        let (mut buffers, mut relocs) = (Vec::new(), Vec::new());
        let req = build_native(&p, &mut buffers, &mut relocs);
        let mut stream = Vec::new();
        req.encode(seqno, 8, &mut stream);
        req.encode(seqno.wrapping_add(1), 16, &mut stream);
        let framed: Vec<_> = CcmdIter::new(&stream)
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(framed.len(), 2);
        prop_assert_eq!(framed[1].hdr.seqno.get(), seqno.wrapping_add(1));
        prop_assert_eq!(framed[1].hdr.rsp_off.get(), 16);
        let decoded = I915Request::decode(framed[0]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Encoding fills in the header and the counts; compare re-encodings.
        let mut again = Vec::new();
        decoded.encode(seqno, 8, &mut again);
        prop_assert_eq!(&again[..], framed[0].bytes);
        prop_assert_eq!(decoded.command(), req.command());
        prop_assert_eq!(decoded.response_len(), req.response_len());
    }

    #[test]
    fn command_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Command::decode(&bytes);
    }

    #[test]
    fn decoding_mutated_valid_commands_never_panics(
        parts in arb_command_parts(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = build(&parts).to_bytes();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let end = cut.index(bytes.len() + 1);
        if let Ok(cmd) = Command::decode(&bytes[..end]) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(cmd.to_bytes(), bytes[..end].to_vec());
        }
    }

    #[test]
    fn response_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = Response::decode(&bytes);
    }

    #[test]
    fn native_decoding_never_panics(stream in proptest::collection::vec(any::<u8>(), 0..600)) {
        for raw in CcmdIter::new(&stream) {
            match raw {
                Ok(raw) => { let _ = I915Request::decode(raw); }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn native_decoding_of_mutated_requests_never_panics(
        p in arb_native_parts(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let (mut buffers, mut relocs) = (Vec::new(), Vec::new());
        let req = build_native(&p, &mut buffers, &mut relocs);
        let mut stream = Vec::new();
        req.encode(1, 0, &mut stream);
        for (at, value) in flips {
            let i = at.index(stream.len());
            stream[i] = value;
        }
        for raw in CcmdIter::new(&stream).flatten() {
            let _ = I915Request::decode(raw);
        }
    }
}

#[test]
fn native_decoder_rejects_inconsistent_requests() {
    // Relocation counts that do not add up (virglrenderer trusts them).
    let mut buffers = [exec_object(1), exec_object(2)];
    buffers[0].relocation_count = 2.into();
    let relocs = [RelocationEntry::default(); 1];
    let mut stream = Vec::new();
    gem_execbuffer2(0, 0, 0, &buffers, &relocs).encode(1, 0, &mut stream);
    let raw = CcmdIter::new(&stream).next().unwrap().unwrap();
    assert_eq!(
        I915Request::decode(raw),
        Err(CcmdError::RelocCountMismatch {
            declared: 1,
            sum: 2
        })
    );

    // Madvise naming both or neither object.
    for (res, blob) in [(0u32, 0u32), (3, 4)] {
        let mut stream = Vec::new();
        I915Request::GemMadvise(GemMadviseReq {
            res_id: res.into(),
            blob_id: blob.into(),
            ..Default::default()
        })
        .encode(1, 0, &mut stream);
        let raw = CcmdIter::new(&stream).next().unwrap().unwrap();
        assert!(matches!(
            I915Request::decode(raw),
            Err(CcmdError::MadviseTarget { .. })
        ));
    }

    // Duplicate and unknown create extensions, and region counts.
    let regions = [MemoryClassInstance::new(I915_MEMORY_CLASS_DEVICE, 0)];
    let req = gem_create_ext(4096, 1, 0, &regions);
    let I915Request::GemCreateExt {
        req: fixed,
        extensions,
    } = req
    else {
        unreachable!()
    };
    let twice = I915Request::GemCreateExt {
        req: fixed,
        extensions: vec![extensions[0], extensions[0]],
    };
    let mut stream = Vec::new();
    twice.encode(1, 0, &mut stream);
    let raw = CcmdIter::new(&stream).next().unwrap().unwrap();
    assert_eq!(
        I915Request::decode(raw),
        Err(CcmdError::DuplicateExtension { name: 0 })
    );

    let mut bad = stream.clone();
    // name of the first extension sits at header(16)+fixed(24)+8.
    bad[48..52].copy_from_slice(&7u32.to_le_bytes());
    let raw = CcmdIter::new(&bad).next().unwrap().unwrap();
    assert!(matches!(
        I915Request::decode(raw),
        Err(CcmdError::UnknownExtension { name: 7, .. })
    ));

    let mut bad = stream;
    // num_regions of the first extension: 16+24+32+4.
    bad[76..80].copy_from_slice(&17u32.to_le_bytes());
    let raw = CcmdIter::new(&bad).next().unwrap().unwrap();
    assert_eq!(
        I915Request::decode(raw),
        Err(CcmdError::BadRegionCount { num_regions: 17 })
    );

    // Unknown command numbers, including just past the i915 set.
    for cmd in [0u32, 10, 0xff, 0x102, u32::MAX] {
        let mut stream = CcmdReq {
            cmd: cmd.into(),
            len: 16.into(),
            ..Default::default()
        }
        .as_bytes()
        .to_vec();
        stream.truncate(16);
        let raw = CcmdIter::new(&stream).next().unwrap().unwrap();
        assert_eq!(
            I915Request::decode(raw),
            Err(CcmdError::UnknownCommand { cmd })
        );
    }
}

/// Claims 4 bytes less than `req` has, and drops them: the framing is
/// fine, the command's layout is short.
fn shortened(req: &I915Request<'_>) -> Vec<u8> {
    let mut stream = Vec::new();
    req.encode(1, 0, &mut stream);
    let len = stream.len() - 4;
    stream.truncate(len);
    stream[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    stream
}

#[test]
fn short_native_commands_with_a_tail_are_rejected() {
    // virglrenderer checks hdr->len against the struct plus its tail.
    let regions = [MemoryClassInstance::new(0, 0)];
    let buffers = [exec_object(1)];
    let requests = [
        gem_create_ext(4096, 1, 0, &regions),
        gem_context_create(0),
        gem_execbuffer2(0, 0, 0, &buffers, &[]),
        ioctl_simple(DRM_IOCTL_I915_GEM_CONTEXT_DESTROY, &[0; 8]),
    ];
    for req in &requests {
        let stream = shortened(req);
        let raw = CcmdIter::new(&stream).next().unwrap().unwrap();
        let err = I915Request::decode(raw).unwrap_err();
        assert_eq!(err.errno(), EINVAL, "{:?}: {err}", req.command());
    }
}

#[test]
fn short_fixed_size_native_commands_read_as_zero_extended() {
    // drm_context.c: an older guest's shorter struct reads as if its
    // missing fields were 0.
    let requests = [
        getparam(1),
        queryparam(4, 0),
        gem_create(4096, 1),
        gem_set_mmap_mode(1, 3),
        gem_busy(1),
        gem_madvise_resource(1, 1),
        gem_close(1),
    ];
    for req in &requests {
        let stream = shortened(req);
        let raw = CcmdIter::new(&stream).next().unwrap().unwrap();
        let got = I915Request::decode(raw).unwrap();
        let mut again = Vec::new();
        got.encode(1, 0, &mut again);
        let mut want = Vec::new();
        req.encode(1, 0, &mut want);
        let n = want.len();
        want[n - 4..].fill(0);
        assert_eq!(again, want, "{:?}", req.command());
    }
}
