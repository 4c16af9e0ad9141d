//! Builders for the requests tests and benchmarks send, and small flows
//! built from them (a 2D resource with backing, a native context with its
//! response blob, a GEM object turned into a mappable blob).

use std::io;

use vgpu_proto::native::{self, CcmdBuilder, I915Request, Pending};
use vgpu_proto::virtio_gpu::*;
use vm_memory::{Bytes, GuestAddress};

use crate::vmm::Vmm;

pub use vgpu_proto::virtio_gpu::build::*;

/// Fails unless `r` is OK_NODATA.
pub fn ok(r: Response) -> io::Result<()> {
    match r {
        Response::OkNoData => Ok(()),
        other => Err(io::Error::other(format!(
            "expected OK_NODATA, got {other:?}"
        ))),
    }
}

/// Guest pages filled with `fill`, as one mem entry.
pub fn guest_pages(vmm: &mut Vmm, len: u64, fill: u8) -> io::Result<MemEntry> {
    let addr = vmm.ram.alloc_pages(len)?;
    vmm.ram
        .mem()
        .write_slice(&vec![fill; len as usize], addr)
        .map_err(io::Error::other)?;
    Ok(MemEntry::new(addr.0, len as u32))
}

/// Writes `data` into guest RAM at `addr`.
pub fn poke(vmm: &Vmm, addr: u64, data: &[u8]) -> io::Result<()> {
    vmm.ram
        .mem()
        .write_slice(data, GuestAddress(addr))
        .map_err(io::Error::other)
}

/// A native i915 context with its response blob mapped at `shm_offset`.
#[derive(Debug)]
pub struct NativeContext {
    /// Context id.
    pub ctx: u32,
    /// Resource id of the response blob.
    pub shmem_res: u32,
    /// Where the response blob is mapped in the host-visible region.
    pub shmem_offset: u64,
    /// Size of the response blob.
    pub shmem_size: u64,
    /// Builds request streams.
    pub builder: CcmdBuilder,
}

/// Size of the response blob Mesa uses.
pub const SHMEM_SIZE: u64 = native::MESA_SHMEM_SIZE;

impl NativeContext {
    /// CTX_CREATE (DRM capset), then the response blob (blob_id 0) created
    /// as resource `shmem_res` and mapped at `shm_offset`.
    pub fn create(vmm: &mut Vmm, ctx: u32, shmem_res: u32, shm_offset: u64) -> io::Result<Self> {
        ok(vmm
            .command(&ctx_create(ctx, VIRTIO_GPU_CAPSET_DRM, "harness"))?
            .1)?;
        ok(vmm
            .command(&create_blob(
                ctx,
                shmem_res,
                BlobMem::Host3d,
                VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
                0,
                SHMEM_SIZE,
                &[],
            ))?
            .1)?;
        match vmm.command(&map_blob(shmem_res, shm_offset))?.1 {
            Response::MapInfo(_) => {}
            other => {
                return Err(io::Error::other(format!(
                    "mapping the response blob: {other:?}"
                )))
            }
        }
        Ok(Self {
            ctx,
            shmem_res,
            shmem_offset: shm_offset,
            shmem_size: SHMEM_SIZE,
            builder: CcmdBuilder::new((SHMEM_SIZE - 16) as usize, 1),
        })
    }

    /// Sends `requests` in one SUBMIT_3D; returns the SUBMIT_3D's response
    /// and where each request's response is.
    pub fn submit(
        &mut self,
        vmm: &mut Vmm,
        requests: &[I915Request<'_>],
    ) -> io::Result<(Response, Vec<Pending>)> {
        let mut pending = Vec::new();
        for r in requests {
            pending.push(
                self.builder
                    .push(r)
                    .map_err(|e| io::Error::other(e.to_string()))?,
            );
        }
        // Like Mesa's vdrm_alloc_rsp: each response slot's `len` says how
        // many bytes the guest's struct has; the host writes no more.
        for p in &pending {
            if let Some(off) = p.rsp_off {
                self.set_response_len(vmm, off, p.rsp_len as u32)?;
            }
        }
        let stream = self.builder.take_stream();
        let (_, resp) = vmm.command(&submit_3d(self.ctx, &stream))?;
        Ok((resp, pending))
    }

    /// Writes `len` into the response slot at `rsp_off`, as the guest does
    /// before sending a request.
    pub fn set_response_len(&self, vmm: &Vmm, rsp_off: u32, len: u32) -> io::Result<()> {
        let region = vmm
            .hostmem
            .as_ref()
            .ok_or_else(|| io::Error::other("no host-visible region"))?;
        region.write(
            self.shmem_offset + 16 + u64::from(rsp_off),
            &len.to_le_bytes(),
        )
    }

    /// The bytes of a response, read through the host-visible mapping.
    pub fn response(&self, vmm: &Vmm, p: &Pending) -> io::Result<Vec<u8>> {
        let off = p
            .rsp_off
            .ok_or_else(|| io::Error::other("request has no response"))?;
        let region = vmm
            .hostmem
            .as_ref()
            .ok_or_else(|| io::Error::other("no host-visible region"))?;
        let mut buf = vec![0u8; p.rsp_len];
        region.read(self.shmem_offset + 16 + u64::from(off), &mut buf)?;
        Ok(buf)
    }

    /// A response decoded as `T`.
    pub fn read<T: zerocopy::FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
        &self,
        vmm: &Vmm,
        p: &Pending,
    ) -> io::Result<T> {
        let bytes = self.response(vmm, p)?;
        T::read_from_prefix(&bytes)
            .map(|(t, _)| t)
            .map_err(|_| io::Error::other("response shorter than its type"))
    }

    /// GEM_CREATE_EXT `blob_id` of `size` in `regions`, then a mappable
    /// HOST3D blob resource `res` for it.
    pub fn gem_blob(
        &mut self,
        vmm: &mut Vmm,
        blob_id: u32,
        res: u32,
        size: u64,
        regions: &[native::MemoryClassInstance],
    ) -> io::Result<()> {
        let (r, _) = self.submit(vmm, &[native::gem_create_ext(size, blob_id, 0, regions)])?;
        ok(r)?;
        ok(vmm
            .command(&create_blob(
                self.ctx,
                res,
                BlobMem::Host3d,
                VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
                u64::from(blob_id),
                size,
                &[],
            ))?
            .1)
    }

    /// GEM_MADVISE of resource `res`; the `retained` answer (an error if
    /// the host refused it).
    pub fn madvise(&mut self, vmm: &mut Vmm, res: u32, madv: u32) -> io::Result<bool> {
        let (r, p) = self.submit(vmm, &[native::gem_madvise_resource(res, madv)])?;
        ok(r)?;
        let rsp = self.read::<native::GemMadviseRsp>(vmm, &p[0])?;
        match rsp.ret.get() {
            0 => Ok(rsp.retained.get() != 0),
            e => Err(io::Error::other(format!("GEM_MADVISE of {res}: errno {e}"))),
        }
    }

    /// IOCTL_SIMPLE of `ioctl` with argument `arg`: the `ret` of its
    /// response and the argument as the host sent it back (empty for ioctls
    /// that write nothing back).
    pub fn ioctl(&mut self, vmm: &mut Vmm, ioctl: u32, arg: &[u8]) -> io::Result<(i32, Vec<u8>)> {
        let (r, p) = self.submit(vmm, &[native::ioctl_simple(ioctl, arg)])?;
        ok(r)?;
        let bytes = self.response(vmm, &p[0])?;
        let rsp = <native::IoctlSimpleRsp as zerocopy::FromBytes>::read_from_prefix(&bytes)
            .map_err(|_| io::Error::other("IOCTL_SIMPLE response too short"))?
            .0;
        if rsp.hdr.len.get() as usize != bytes.len() {
            return Err(io::Error::other(format!(
                "IOCTL_SIMPLE response of {} bytes says len {}",
                bytes.len(),
                rsp.hdr.len.get()
            )));
        }
        Ok((rsp.ret.get(), bytes[8..].to_vec()))
    }

    /// The shared blob's seqno (the last request the host finished).
    pub fn seqno(&self, vmm: &Vmm) -> io::Result<u32> {
        let region = vmm
            .hostmem
            .as_ref()
            .ok_or_else(|| io::Error::other("no host-visible region"))?;
        let mut b = [0u8; 4];
        region.read(self.shmem_offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}
