//! One descriptor chain: its readable descriptors gathered into one
//! bounded request buffer (a copy, so the guest cannot change a request
//! while it is decoded), its writable descriptors checked to lie in guest
//! memory when collected, and the response written into them.

use super::*;

/// Why a descriptor chain cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The spec puts every readable descriptor before the writable ones.
    #[error("readable descriptor after a writable one")]
    ReadableAfterWritable,
    /// A readable descriptor names memory the guest does not have.
    #[error("request {addr:#x}+{len} outside guest memory")]
    RequestOutsideMemory {
        /// Guest address.
        addr: u64,
        /// Bytes.
        len: u32,
    },
    /// The request is larger than any command.
    #[error("request: {0}")]
    Request(String),
    /// A writable descriptor names memory the guest does not have: the
    /// chain is answered without writing a byte.
    #[error("writable descriptor {addr:#x}+{len} outside guest memory")]
    WritableOutsideMemory {
        /// Guest address.
        addr: u64,
        /// Bytes.
        len: u32,
    },
}

/// What the device took from one descriptor chain: the request (in the
/// caller's buffer) and where the response goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// The writable descriptors' ranges, in chain order.
    pub writable: Vec<(GuestAddress, u32)>,
    /// Why the chain cannot be executed (the first reason; one that
    /// forbids writing wins), if it cannot.
    pub malformed: Option<Malformed>,
}

impl Gathered {
    /// Whether a response may be written into the writable descriptors:
    /// each of them lies in guest memory.
    pub fn answerable(&self) -> bool {
        !matches!(
            self.malformed,
            Some(Malformed::WritableOutsideMemory { .. })
        )
    }

    fn refuse(&mut self, why: Malformed) {
        match why {
            Malformed::WritableOutsideMemory { .. } if self.answerable() => {
                self.malformed = Some(why)
            }
            _ if self.malformed.is_none() => self.malformed = Some(why),
            _ => {}
        }
    }
}

/// Collects a chain's descriptors as the queue loop does: the readable
/// ones' bytes into `request` (cleared first; bounded by its limit, a copy
/// the guest cannot change while it is decoded), the writable ones'
/// ranges — each checked to lie in guest memory — into the result.
pub fn gather<I>(descriptors: I, mem: &GuestMem, request: &mut RequestBuffer) -> Gathered
where
    I: IntoIterator<Item = Descriptor>,
{
    request.clear();
    let mut out = Gathered::default();
    for desc in descriptors {
        let (addr, len) = (desc.addr(), desc.len());
        if desc.is_write_only() {
            // `len` is a u32: it fits a usize on every host vgpu runs on.
            if !GuestMemoryBackend::check_range(mem, addr, len as usize) {
                out.refuse(Malformed::WritableOutsideMemory { addr: addr.0, len });
            }
            out.writable.push((addr, len));
            continue;
        }
        if !out.writable.is_empty() {
            out.refuse(Malformed::ReadableAfterWritable);
            continue;
        }
        match request.grow(len as usize) {
            Ok(buf) => {
                if mem.read_slice(buf, addr).is_err() {
                    out.refuse(Malformed::RequestOutsideMemory { addr: addr.0, len });
                }
            }
            Err(e) => out.refuse(Malformed::Request(e.to_string())),
        }
    }
    out
}

/// Writes `response` into the writable descriptors (checked by [`gather`]
/// to lie in guest memory); returns the bytes written. A response that
/// does not fit becomes ERR_UNSPEC if that fits, else nothing is written:
/// never a byte past what the guest offered.
pub(super) fn write_response(
    scratch: &mut Vec<u8>,
    response: &Response,
    hdr: &CtrlHdr,
    writable: &[(GuestAddress, u32)],
    mem: &GuestMem,
) -> u32 {
    let room: u64 = writable.iter().map(|(_, l)| u64::from(*l)).sum();
    scratch.clear();
    response.encode(hdr, scratch);
    if scratch.len() as u64 > room {
        scratch.clear();
        if room >= size_of::<CtrlHdr>() as u64 {
            Response::Error(ErrorCode::Unspec).encode(hdr, scratch);
        } else {
            return 0;
        }
    }
    let mut done = 0usize;
    for (addr, len) in writable {
        if done >= scratch.len() {
            break;
        }
        let n = (*len as usize).min(scratch.len() - done);
        if n == 0 {
            continue;
        }
        if mem.write_slice(&scratch[done..done + n], *addr).is_err() {
            break;
        }
        done += n;
    }
    done as u32
}
