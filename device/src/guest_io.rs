//! Moving bytes between guest memory and host buffers without an extra
//! copy: `pwrite` straight from guest memory into a buffer's file, `pread`
//! straight into guest memory, and the validated scatter list a resource's
//! backing is.
//!
//! Buffers mapped in this process (the buffer manager maps every buffer
//! file once) are copied with `memcpy` between `vm-memory` volatile slices;
//! the rest with `pread`/`pwrite`.
//!
//! Owns the only `unsafe` of the device crate that touches guest memory:
//! the `pread`/`pwrite` calls on pointers `vm-memory` vouches for. Views of
//! buffer mappings come safe and bounds-checked from the buffer manager
//! (`Storage::slice`), which owns the mappings.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vgpu_proto::virtio_gpu::MemEntry;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileMemoryError;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile, VolatileSlice,
    WriteVolatile,
};

/// The guest memory type of the daemon.
pub type GuestMem = GuestMemoryMmap<()>;

/// A file at an offset that advances as it is written or read, so that
/// `vm-memory`'s volatile copies can target a buffer's storage directly.
#[derive(Debug)]
pub struct FileAt<'a> {
    fd: BorrowedFd<'a>,
    offset: u64,
}

impl<'a> FileAt<'a> {
    /// Writing or reading starts at `offset` of `fd`.
    pub fn new(fd: BorrowedFd<'a>, offset: u64) -> Self {
        Self { fd, offset }
    }

    fn file_offset(&self) -> Result<libc::off_t, VolatileMemoryError> {
        libc::off_t::try_from(self.offset)
            .map_err(|_| VolatileMemoryError::IOError(io::Error::from(io::ErrorKind::InvalidInput)))
    }

    /// Moves past the `n` bytes a pread/pwrite returned (or its error).
    fn advance(&mut self, n: isize) -> Result<usize, VolatileMemoryError> {
        let n = usize::try_from(n)
            .map_err(|_| VolatileMemoryError::IOError(io::Error::last_os_error()))?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl WriteVolatile for FileAt<'_> {
    fn write_volatile<B: BitmapSlice>(
        &mut self,
        buf: &VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard();
        let offset = self.file_offset()?;
        // SAFETY: the fd is valid for the borrow; `guard` keeps `buf.len()`
        // bytes at its pointer readable (VolatileSlice's invariant). The
        // kernel copies them, so concurrent guest writes cannot break Rust's
        // aliasing rules.
        let n = unsafe {
            libc::pwrite(
                self.fd.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        self.advance(n)
    }
}

impl ReadVolatile for FileAt<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard_mut();
        let offset = self.file_offset()?;
        // SAFETY: as in `write_volatile`, for `buf.len()` writable bytes.
        let n = unsafe {
            libc::pread(
                self.fd.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        let n = self.advance(n)?;
        buf.bitmap().mark_dirty(0, n);
        Ok(n)
    }
}

/// Why a backing list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackingError {
    /// An entry's range overflows or leaves guest memory.
    #[error("mem entry {index} ({addr:#x}+{len:#x}) is outside guest memory")]
    OutsideGuestMemory {
        /// Entry index.
        index: usize,
        /// Its address.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// The entries add up to more than the host can address.
    #[error("backing entries add up to more than 2^64 bytes")]
    TooLarge,
}

/// A resource's guest backing: a scatter list of guest-physical ranges,
/// every one checked to lie inside guest memory when attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestBacking {
    entries: Vec<(u64, u32)>,
    /// `starts[i]`: offset of entry `i` in the backing.
    starts: Vec<u64>,
    total: u64,
}

impl GuestBacking {
    /// Validates `entries` against `mem`.
    pub fn new(entries: &[MemEntry], mem: &GuestMem) -> Result<Self, BackingError> {
        let mut out = GuestBacking {
            entries: Vec::with_capacity(entries.len()),
            starts: Vec::with_capacity(entries.len()),
            total: 0,
        };
        for (index, e) in entries.iter().enumerate() {
            let (addr, len) = (e.addr.get(), e.length.get());
            let inside = addr
                .checked_add(u64::from(len))
                .is_some_and(|_| len == 0 || mem.check_range(GuestAddress(addr), len as usize));
            if !inside {
                return Err(BackingError::OutsideGuestMemory { index, addr, len });
            }
            if len == 0 {
                continue;
            }
            out.starts.push(out.total);
            out.entries.push((addr, len));
            out.total = out
                .total
                .checked_add(u64::from(len))
                .ok_or(BackingError::TooLarge)?;
        }
        Ok(out)
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Number of (non-empty) entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The entries, `(guest address, length)`.
    pub fn entries(&self) -> &[(u64, u32)] {
        &self.entries
    }

    /// The guest ranges covering `offset..offset+len` of the backing, or
    /// `None` if that range is not inside it.
    pub fn segments(&self, offset: u64, len: u64) -> Option<Vec<(GuestAddress, usize)>> {
        let end = offset.checked_add(len)?;
        if end > self.total {
            return None;
        }
        let mut out = Vec::new();
        if len == 0 {
            return Some(out);
        }
        let mut i = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.checked_sub(1)?,
        };
        let mut pos = offset;
        while pos < end {
            let (addr, elen) = *self.entries.get(i)?;
            let within = pos - self.starts[i];
            let take = (u64::from(elen) - within).min(end - pos);
            out.push((GuestAddress(addr + within), usize::try_from(take).ok()?));
            pos += take;
            i += 1;
        }
        Some(out)
    }

    /// Copies `len` bytes at `offset` of the backing into `dst`.
    pub fn copy_to_mapped(
        &self,
        mem: &GuestMem,
        offset: u64,
        len: u64,
        dst: &VolatileSlice<'_>,
    ) -> Result<(), CopyError> {
        self.copy_mapped(mem, offset, len, dst, |guest, host| {
            guest.copy_to_volatile_slice(host)
        })
    }

    /// Copies `len` bytes of `src` into the backing at `offset`.
    pub fn copy_from_mapped(
        &self,
        mem: &GuestMem,
        offset: u64,
        len: u64,
        src: &VolatileSlice<'_>,
    ) -> Result<(), CopyError> {
        self.copy_mapped(mem, offset, len, src, |guest, host| {
            host.copy_to_volatile_slice(guest)
        })
    }

    /// Walks the backing's segments of `offset..offset+len` alongside
    /// `mapped`, calling `copy(guest segment, mapped segment)` on each pair.
    fn copy_mapped(
        &self,
        mem: &GuestMem,
        offset: u64,
        len: u64,
        mapped: &VolatileSlice<'_>,
        copy: impl Fn(VolatileSlice<'_>, VolatileSlice<'_>),
    ) -> Result<(), CopyError> {
        self.for_each_segment(offset, len, |addr, at, n| {
            let guest = mem.get_slice(addr, n)?;
            let host = mapped.subslice(at, n)?;
            copy(guest, host);
            Ok::<(), vm_memory::GuestMemoryError>(())
        })
    }

    /// Calls `f(guest address, offset within the range, length)` for each
    /// segment of `offset..offset+len` of the backing, in order.
    fn for_each_segment<E: std::fmt::Display>(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(GuestAddress, usize, usize) -> Result<(), E>,
    ) -> Result<(), CopyError> {
        let segments = self
            .segments(offset, len)
            .ok_or(CopyError::OutOfBacking { offset, len })?;
        let mut at = 0usize;
        for (addr, n) in segments {
            f(addr, at, n).map_err(|e| CopyError::Guest(e.to_string()))?;
            at += n;
        }
        Ok(())
    }

    /// Copies `len` bytes at `offset` of the backing into `fd` at `file_offset`.
    pub fn copy_to_file(
        &self,
        mem: &GuestMem,
        offset: u64,
        len: u64,
        fd: BorrowedFd<'_>,
        file_offset: u64,
    ) -> Result<(), CopyError> {
        let mut dst = FileAt::new(fd, file_offset);
        self.for_each_segment(offset, len, |addr, _, n| {
            mem.write_all_volatile_to(addr, &mut dst, n)
        })
    }

    /// Copies `len` bytes from `fd` at `file_offset` into the backing at `offset`.
    pub fn copy_from_file(
        &self,
        mem: &GuestMem,
        offset: u64,
        len: u64,
        fd: BorrowedFd<'_>,
        file_offset: u64,
    ) -> Result<(), CopyError> {
        let mut src = FileAt::new(fd, file_offset);
        self.for_each_segment(offset, len, |addr, _, n| {
            mem.read_exact_volatile_from(addr, &mut src, n)
        })
    }

    /// Reads `buf.len()` bytes at `offset` of the backing.
    pub fn read(&self, mem: &GuestMem, offset: u64, buf: &mut [u8]) -> Result<(), CopyError> {
        let len = buf.len() as u64;
        self.for_each_segment(offset, len, |addr, at, n| {
            mem.read_slice(&mut buf[at..at + n], addr)
        })
    }
}

/// A copy between guest memory and a host buffer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The range is not inside the backing.
    #[error("range {offset}+{len} is outside the backing")]
    OutOfBacking {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Guest memory changed under us (hot-unplug) or the host write failed.
    #[error("guest memory access failed: {0}")]
    Guest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMem {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0x1000), 0x4000),
            (GuestAddress(0x10000), 0x2000),
        ])
        .unwrap()
    }

    #[test]
    fn entries_outside_guest_memory_are_refused() {
        let m = mem();
        let ok = [
            MemEntry::new(0x1000, 0x1000),
            MemEntry::new(0x10000, 0x2000),
        ];
        let b = GuestBacking::new(&ok, &m).unwrap();
        assert_eq!((b.len(), b.entry_count()), (0x3000, 2));
        for (addr, len) in [
            (0x0, 0x10),
            (0x4800, 0x1000),
            (0x11000, 0x1001),
            (u64::MAX - 4, 0x10),
            (0x6000, 1),
        ] {
            let err = GuestBacking::new(&[MemEntry::new(0x1000, 16), MemEntry::new(addr, len)], &m)
                .unwrap_err();
            assert!(
                matches!(err, BackingError::OutsideGuestMemory { index: 1, .. }),
                "{addr:#x}+{len:#x}"
            );
        }
        // Empty entries are harmless and dropped.
        assert_eq!(
            GuestBacking::new(&[MemEntry::new(0, 0)], &m)
                .unwrap()
                .entry_count(),
            0
        );
    }

    #[test]
    fn segments_split_across_entries() {
        let m = mem();
        let b = GuestBacking::new(
            &[MemEntry::new(0x1000, 0x100), MemEntry::new(0x10000, 0x200)],
            &m,
        )
        .unwrap();
        assert_eq!(
            b.segments(0x80, 0x100).unwrap(),
            vec![(GuestAddress(0x1080), 0x80), (GuestAddress(0x10000), 0x80)]
        );
        assert_eq!(
            b.segments(0x100, 0x200).unwrap(),
            vec![(GuestAddress(0x10000), 0x200)]
        );
        assert!(b.segments(0x100, 0x201).is_none());
        assert!(b.segments(u64::MAX, 2).is_none());
        assert_eq!(b.segments(0x300, 0).unwrap(), vec![]);
    }

    #[test]
    fn copies_reach_the_file_and_come_back() {
        let m = mem();
        m.write_slice(&[1, 2, 3, 4], GuestAddress(0x10fe)).unwrap();
        m.write_slice(&[5, 6], GuestAddress(0x10000)).unwrap();
        let b = GuestBacking::new(
            &[MemEntry::new(0x1000, 0x100), MemEntry::new(0x10000, 0x100)],
            &m,
        )
        .unwrap();
        let f = vgpu_backend::shmem::ShmemFile::create("t", 4096).unwrap();
        b.copy_to_file(&m, 0xfe, 4, f.fd(), 100).unwrap();
        let mut out = [0u8; 4];
        f.read_at(100, &mut out).unwrap();
        assert_eq!(out, [1, 2, 5, 6]);
        f.write_at(0, &[9, 9, 9]).unwrap();
        b.copy_from_file(&m, 0xff, 3, f.fd(), 0).unwrap();
        let mut back = [0u8; 3];
        b.read(&m, 0xff, &mut back).unwrap();
        assert_eq!(back, [9, 9, 9]);
        assert!(b.copy_to_file(&m, 0x1ff, 2, f.fd(), 0).is_err());
    }
}
