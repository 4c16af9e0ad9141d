//! The guest side: building a SUBMIT_3D stream of i915 native-context
//! requests the way Mesa's vdrm layer does (sequence numbers, response
//! slots in the shared response memory) and reading the responses back.
//!
//! Used by tests, the vhost-user frontend harness, the benchmark tool and
//! guest programs.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::framing::{CcmdReq, VdrmShmem};
use super::i915::*;
use super::i915_uapi::*;

/// A request placed in the stream: where to look for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Its sequence number; done once the shmem header's seqno reaches it.
    pub seqno: u32,
    /// Offset of its response in the response memory, if it has one.
    pub rsp_off: Option<u32>,
    /// Length of its response.
    pub rsp_len: usize,
}

/// The response memory cannot hold a request's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {need}-byte response does not fit the {size}-byte response memory")]
pub struct NoResponseSpace {
    /// Bytes the response needs.
    pub need: usize,
    /// Bytes of response memory.
    pub size: usize,
}

/// Accumulates requests into one SUBMIT_3D command stream.
#[derive(Debug, Clone)]
pub struct CcmdBuilder {
    stream: Vec<u8>,
    next_seqno: u32,
    rsp_next: usize,
    rsp_size: usize,
}

impl CcmdBuilder {
    /// A builder whose responses go into `rsp_size` bytes of response
    /// memory, numbering requests from `first_seqno`.
    pub fn new(rsp_size: usize, first_seqno: u32) -> Self {
        Self {
            stream: Vec::new(),
            next_seqno: first_seqno,
            rsp_next: 0,
            rsp_size,
        }
    }

    /// Adds a request; allocates its response slot (wrapping to the start
    /// of the response memory like Mesa does).
    pub fn push(&mut self, request: &I915Request<'_>) -> Result<Pending, NoResponseSpace> {
        let rsp_len = request.response_len();
        let rsp_off = match rsp_len {
            None => None,
            Some(len) => {
                let len4 = len.next_multiple_of(4);
                if len4 > self.rsp_size {
                    return Err(NoResponseSpace {
                        need: len,
                        size: self.rsp_size,
                    });
                }
                if self.rsp_next + len4 > self.rsp_size {
                    self.rsp_next = 0;
                }
                let off = self.rsp_next;
                self.rsp_next += len4;
                Some(u32::try_from(off).unwrap_or(u32::MAX))
            }
        };
        let seqno = self.next_seqno;
        self.next_seqno = self.next_seqno.wrapping_add(1);
        request.encode(seqno, rsp_off.unwrap_or(0), &mut self.stream);
        Ok(Pending {
            seqno,
            rsp_off,
            rsp_len: rsp_len.unwrap_or(0),
        })
    }

    /// Appends bytes as they are (hostile tests: malformed requests).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.stream.extend_from_slice(bytes);
    }

    /// The stream built so far.
    pub fn stream(&self) -> &[u8] {
        &self.stream
    }

    /// Takes the stream, leaving the builder empty (seqnos continue).
    pub fn take_stream(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.stream)
    }

    /// The sequence number the next request will get.
    pub fn next_seqno(&self) -> u32 {
        self.next_seqno
    }
}

/// Reads a response struct at `rsp_off` of the response memory `rsp_mem`
/// (the bytes after `rsp_mem_offset` in the shared blob).
pub fn read_response<T: FromBytes + KnownLayout + Immutable>(
    rsp_mem: &[u8],
    rsp_off: u32,
) -> Option<T> {
    let off = usize::try_from(rsp_off).ok()?;
    T::read_from_prefix(rsp_mem.get(off..)?)
        .ok()
        .map(|(v, _)| v)
}

/// Reads the shared blob's header: the last finished seqno and where the
/// response memory starts.
pub fn read_shmem_header(shmem: &[u8]) -> Option<VdrmShmem> {
    VdrmShmem::read_from_prefix(shmem).ok().map(|(v, _)| v)
}

fn hdr() -> CcmdReq {
    CcmdReq::default()
}

/// GETPARAM of `param`.
pub fn getparam(param: u32) -> I915Request<'static> {
    I915Request::GetParam(GetParamReq {
        hdr: hdr(),
        param: param.into(),
        value: 0.into(),
    })
}

/// QUERYPARAM of `query_id` with a result buffer of `length` bytes.
pub fn queryparam(query_id: u32, length: u32) -> I915Request<'static> {
    I915Request::QueryParam(QueryParamReq {
        hdr: hdr(),
        query_id: query_id.into(),
        length: length.into(),
        flags: 0.into(),
        pad: 0.into(),
    })
}

/// GEM_CREATE of `size` bytes filed under `blob_id`.
pub fn gem_create(size: u64, blob_id: u32) -> I915Request<'static> {
    I915Request::GemCreate(GemCreateReq {
        hdr: hdr(),
        size: U64::new(size),
        blob_id: blob_id.into(),
        pad: 0.into(),
    })
}

/// GEM_CREATE_EXT of `size` bytes filed under `blob_id`, placed in
/// `regions` in order of preference (none: the driver's default).
pub fn gem_create_ext(
    size: u64,
    blob_id: u32,
    gem_flags: u32,
    regions: &[MemoryClassInstance],
) -> I915Request<'_> {
    let mut extensions = Vec::new();
    if !regions.is_empty() {
        extensions.push(CreateExtension::MemoryRegions {
            ext: GemCreateExtMemoryRegions {
                base: UserExtension {
                    name: I915_GEM_CREATE_EXT_MEMORY_REGIONS.into(),
                    ..UserExtension::default()
                },
                num_regions: U32::new(u32::try_from(regions.len()).unwrap_or(u32::MAX)),
                ..GemCreateExtMemoryRegions::default()
            },
            regions,
        });
    }
    I915Request::GemCreateExt {
        req: GemCreateExtReq {
            hdr: hdr(),
            size: size.into(),
            blob_id: blob_id.into(),
            gem_flags: gem_flags.into(),
            ext_size: 0.into(),
            pad: 0.into(),
        },
        extensions,
    }
}

/// GEM_SET_MMAP_MODE of a resource.
pub fn gem_set_mmap_mode(res_id: u32, flags: u32) -> I915Request<'static> {
    I915Request::GemSetMmapMode(GemSetMmapModeReq {
        hdr: hdr(),
        res_id: res_id.into(),
        flags: flags.into(),
    })
}

/// GEM_BUSY of a resource.
pub fn gem_busy(res_id: u32) -> I915Request<'static> {
    I915Request::GemBusy(GemBusyReq {
        hdr: hdr(),
        res_id: res_id.into(),
        pad: 0.into(),
    })
}

/// GEM_MADVISE of a resource.
pub fn gem_madvise_resource(res_id: u32, madv: u32) -> I915Request<'static> {
    I915Request::GemMadvise(GemMadviseReq {
        hdr: hdr(),
        res_id: res_id.into(),
        blob_id: 0.into(),
        madv: madv.into(),
        pad: 0.into(),
    })
}

/// GEM_MADVISE of an object not yet a resource.
pub fn gem_madvise_blob(blob_id: u32, madv: u32) -> I915Request<'static> {
    I915Request::GemMadvise(GemMadviseReq {
        hdr: hdr(),
        res_id: 0.into(),
        blob_id: blob_id.into(),
        madv: madv.into(),
        pad: 0.into(),
    })
}

/// GEM_CLOSE of an object not yet a resource.
pub fn gem_close(blob_id: u32) -> I915Request<'static> {
    I915Request::GemClose(GemCloseReq {
        hdr: hdr(),
        blob_id: blob_id.into(),
        pad: 0.into(),
    })
}

/// IOCTL_SIMPLE of `ioctl` with its argument (`_IOC_SIZE(ioctl)` bytes,
/// e.g. a uapi struct's `as_bytes()`).
pub fn ioctl_simple(ioctl: u32, arg: &[u8]) -> I915Request<'_> {
    I915Request::IoctlSimple {
        req: IoctlSimpleReq {
            hdr: hdr(),
            cmd: ioctl.into(),
            pad: 0.into(),
        },
        payload: arg,
    }
}

/// GEM_CONTEXT_CREATE without setparams.
pub fn gem_context_create(flags: u32) -> I915Request<'static> {
    I915Request::GemContextCreate {
        req: GemContextCreateReq {
            hdr: hdr(),
            flags: flags.into(),
            params_size: 0.into(),
        },
        params: Vec::new(),
    }
}

/// GEM_EXECBUFFER2 of `buffers` (handles are resource ids) on GEM context
/// `context_id`; the last buffer is the batch.
pub fn gem_execbuffer2<'a>(
    context_id: u64,
    flags: u64,
    batch_len: u32,
    buffers: &'a [ExecObject2],
    relocs: &'a [RelocationEntry],
) -> I915Request<'a> {
    I915Request::GemExecbuffer2 {
        req: GemExecbuffer2Req {
            hdr: hdr(),
            flags: flags.into(),
            context_id: context_id.into(),
            buffer_count: 0.into(),
            batch_start_offset: 0.into(),
            batch_len: batch_len.into(),
            relocs_count: 0.into(),
        },
        buffers,
        relocs,
    }
}

/// An exec object for resource `res_id` with no relocations.
pub fn exec_object(res_id: u32) -> ExecObject2 {
    ExecObject2 {
        handle: res_id.into(),
        ..ExecObject2::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::framing::CcmdIter;
    use super::*;

    #[test]
    fn responses_get_distinct_aligned_slots_and_wrap() {
        let mut b = CcmdBuilder::new(40, 1);
        let a = b.push(&getparam(4)).unwrap();
        let c = b.push(&gem_create(4096, 1)).unwrap();
        let d = b.push(&gem_busy(3)).unwrap();
        let e = b.push(&gem_busy(3)).unwrap();
        assert_eq!((a.seqno, a.rsp_off, a.rsp_len), (1, Some(0), 16));
        assert_eq!((c.seqno, c.rsp_off), (2, None));
        assert_eq!(d.rsp_off, Some(16));
        assert_eq!(e.rsp_off, Some(0), "wraps when the slot would overrun");
        assert!(b.push(&queryparam(4, 100)).is_err());
        let stream = b.take_stream();
        let decoded: Vec<_> = CcmdIter::new(&stream)
            .map(|r| I915Request::decode(r.unwrap()).unwrap())
            .collect();
        assert_eq!(decoded.len(), 4);
        assert!(b.stream().is_empty());
        assert_eq!(b.next_seqno(), 5);
    }
}
