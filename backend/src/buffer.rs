//! `BufferIo`: what the manager and the device do with a buffer's bytes,
//! whichever kind of memory holds them — a memfd of its own
//! ([`ShmemFile`]), a range of the emulated device pool (the pool's
//! `ShmemFile` at an offset), or a GEM object of a host GPU driver
//! ([`crate::intel::GemBuffer`]).
//!
//! Must not: know about objects, owners or placement.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use crate::shmem::{Released, ShmemFile};
use crate::types::ShrinkMode;

/// A buffer's bytes.
pub trait BufferIo: Send + Sync + fmt::Debug {
    /// The descriptor a VMM maps into the guest (a memfd, or a dma-buf).
    fn fd(&self) -> BorrowedFd<'_>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// The buffer's mapping in this process, if it has one (see
    /// [`ShmemFile::mapping`] for the rules).
    fn mapping(&self) -> Option<NonNull<u8>>;
    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Zeroes `offset..offset+len`.
    fn zero(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Frees the pages of `offset..offset+len` now; the bytes released.
    fn punch(&self, offset: u64, len: u64) -> io::Result<u64>;
    /// Hands resident pages to the kernel (MADV_COLD / MADV_PAGEOUT): what
    /// was hinted and what left RAM. Buffers the kernel manages itself
    /// hint and free nothing.
    fn release(&self, _offset: u64, _len: u64, _mode: ShrinkMode) -> io::Result<Released> {
        Ok(Released::default())
    }
    /// Bytes of `offset..offset+len` in RAM now, measured where the
    /// memory allows it (mincore on a memfd's pages).
    fn resident(&self, offset: u64, len: u64) -> io::Result<u64>;
    /// Whether it holds another object's bytes still to be zeroed.
    fn is_stale(&self) -> bool {
        false
    }
    /// Zeroes a stale buffer except `keep` (see [`ShmemFile::clean`]).
    fn clean(&self, _keep: Option<(u64, u64)>) -> io::Result<()> {
        Ok(())
    }
    /// Marks it stale (see [`ShmemFile::mark_stale`]).
    fn mark_stale(&self) {}
    /// Clears the stale mark without zeroing (see [`ShmemFile::clean_done`]).
    fn clean_done(&self) {}
    /// The memfd, for memfd-to-memfd copies that keep holes holes.
    fn as_shmem(&self) -> Option<&ShmemFile> {
        None
    }
    /// The descriptor, about to leave the daemon (mapped into a guest by
    /// the VMM, exported): buffers whose kernel may drop their pages get
    /// them back first and never give them up again (see
    /// [`crate::intel::GemRegion`]).
    fn share(&self) -> io::Result<BorrowedFd<'_>> {
        Ok(self.fd())
    }
    /// The GPU kernel's handle, for buffers that are GEM objects (`None`
    /// also for a GEM object the kernel purged: it is never submitted).
    fn gem_handle(&self) -> Option<u32> {
        None
    }
    /// Whether the GPU kernel purged this buffer's pages itself (a GEM
    /// object it was told DONTNEED): the buffer is dead.
    fn kernel_purged(&self) -> bool {
        false
    }
}

impl BufferIo for ShmemFile {
    fn fd(&self) -> BorrowedFd<'_> {
        ShmemFile::fd(self)
    }
    fn size(&self) -> u64 {
        ShmemFile::size(self)
    }
    fn mapping(&self) -> Option<NonNull<u8>> {
        ShmemFile::mapping(self)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        ShmemFile::write_at(self, offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        ShmemFile::read_at(self, offset, buf)
    }
    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        ShmemFile::zero(self, offset, len)
    }
    fn punch(&self, offset: u64, len: u64) -> io::Result<u64> {
        ShmemFile::punch(self, offset, len)
    }
    fn release(&self, offset: u64, len: u64, mode: ShrinkMode) -> io::Result<Released> {
        ShmemFile::release(self, offset, len, mode)
    }
    fn resident(&self, offset: u64, len: u64) -> io::Result<u64> {
        ShmemFile::resident_in(self, offset, len)
    }
    fn is_stale(&self) -> bool {
        ShmemFile::is_stale(self)
    }
    fn clean(&self, keep: Option<(u64, u64)>) -> io::Result<()> {
        ShmemFile::clean(self, keep)
    }
    fn mark_stale(&self) {
        ShmemFile::mark_stale(self);
    }
    fn clean_done(&self) {
        ShmemFile::clean_done(self);
    }
    fn as_shmem(&self) -> Option<&ShmemFile> {
        Some(self)
    }
}

/// Copies `len` bytes from `src` at `src_offset` to `dst` at `dst_offset`:
/// between memfds in the kernel keeping holes holes, otherwise through the
/// mappings (or read/write in 1 MiB chunks when a side has none).
pub fn copy_between(
    src: &dyn BufferIo,
    src_offset: u64,
    dst: &dyn BufferIo,
    dst_offset: u64,
    len: u64,
) -> io::Result<()> {
    let in_range = |b: &dyn BufferIo, off: u64| off.checked_add(len).is_some_and(|e| e <= b.size());
    if !in_range(src, src_offset) || !in_range(dst, dst_offset) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "copy outside a buffer",
        ));
    }
    if let (Some(s), Some(d)) = (src.as_shmem(), dst.as_shmem()) {
        return s.copy_to(src_offset, d, dst_offset, len);
    }
    let n = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if let (Some(s), Some(d)) = (src.mapping(), dst.mapping()) {
        // SAFETY: both ranges were checked to lie inside their buffers,
        // whose mappings cover them whole and outlive this call; the two
        // buffers are different objects (a copy between regions), so the
        // ranges do not overlap. Guests may map these pages, so this is a
        // byte copy of shared memory, never a Rust reference.
        unsafe {
            std::ptr::copy_nonoverlapping(
                s.as_ptr().add(src_offset as usize),
                d.as_ptr().add(dst_offset as usize),
                n,
            );
        }
        return Ok(());
    }
    let mut buf = vec![0u8; n.min(1 << 20)];
    let mut at = 0u64;
    while at < len {
        let chunk = (len - at).min(buf.len() as u64) as usize;
        src.read_at(src_offset + at, &mut buf[..chunk])?;
        dst.write_at(dst_offset + at, &buf[..chunk])?;
        at += chunk as u64;
    }
    Ok(())
}
