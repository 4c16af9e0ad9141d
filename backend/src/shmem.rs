//! `ShmemFile`: a sealed memfd and the page operations the buffer manager
//! needs on it — sparse copies, hole punching, residency, and releasing
//! pages to the kernel — each reporting what *really* happened.
//!
//! Owns: the file descriptor and every system call on it, and the file's
//! one shared mapping in this process (`FileMapping`), made on first use
//! and unmapped with the file. That mapping serves copies (`mapping`),
//! zeroing, residency queries and MADV_COLD / MADV_PAGEOUT. It is never
//! turned into a Rust reference: the guest may write the same pages
//! through the VMM's own mapping, so callers copy through raw pointers or
//! volatile slices only, and only while they hold the object's lock. One
//! mapping, not one per operation, also keeps each page mapped once in
//! this process, which MADV_PAGEOUT requires.
//!
//! Must not: know about objects, owners or placement.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags, SeekFrom};
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};

use crate::types::{ShrinkMode, PAGE_SIZE};

/// Files up to this size are cleared with one memset of the whole file.
const CLEAR_WHOLE_BELOW: u64 = 256 << 10;

/// Longest memfd name Linux accepts (249 bytes, without the terminator).
const MAX_NAME: usize = 249;

/// A memfd sized once at creation and sealed against shrinking and growing,
/// so its size never changes under anyone who maps it (the VMM included).
#[derive(Debug)]
pub struct ShmemFile {
    fd: OwnedFd,
    size: u64,
    map: OnceLock<Option<FileMapping>>,
    /// Reused from another object: its bytes must be zeroed (see `clean`)
    /// before anyone reads them or the descriptor leaves the process.
    stale: AtomicBool,
}

impl ShmemFile {
    /// Creates a sealed memfd of `size` bytes named `name` (visible in
    /// `/proc/<pid>/fd` as `/memfd:<name>`). No page is allocated.
    pub fn create(name: &str, size: u64) -> io::Result<Self> {
        let mut clean: String = name
            .chars()
            .map(|c| if c == '\0' || c == '/' { '_' } else { c })
            .collect();
        while clean.len() > MAX_NAME {
            clean.pop();
        }
        let cname =
            CString::new(clean).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let fd = rustix::fs::memfd_create(&cname, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, size)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Ok(Self {
            fd,
            size,
            map: OnceLock::new(),
            stale: AtomicBool::new(false),
        })
    }

    /// The file's shared read-write mapping in this process (made on first
    /// use; `None` if the kernel refused it, and callers fall back to
    /// `pread`/`pwrite`). Valid for `size()` bytes as long as `self` lives.
    /// Never dereference it as a Rust reference (see the module docs).
    pub fn mapping(&self) -> Option<NonNull<u8>> {
        self.map
            .get_or_init(|| match FileMapping::new(&self.fd, self.size) {
                Ok(m) => Some(m),
                Err(e) => {
                    log::warn!(
                        "mapping a {}-byte buffer failed ({e}); copying with pread/pwrite",
                        self.size
                    );
                    None
                }
            })
            .as_ref()
            .map(|m| m.ptr)
    }

    /// Marks the file as holding another object's bytes: [`Self::clean`]
    /// zeroes them before they can be seen.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Whether [`Self::clean`] still has to zero the file.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Zeroes a stale file, except `keep` (`(offset, len)`), which the
    /// caller is about to overwrite completely; nothing if not stale.
    pub fn clean(&self, keep: Option<(u64, u64)>) -> io::Result<()> {
        if !self.stale.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let done = match keep {
            None => self.clear(),
            Some((offset, len)) => {
                let end = offset.saturating_add(len).min(self.size);
                let offset = offset.min(end);
                self.zero(0, offset)
                    .and_then(|()| self.zero(end, self.size - end))
            }
        };
        if done.is_err() {
            self.mark_stale();
        }
        done
    }

    /// Clears the stale mark without zeroing: the caller has overwritten
    /// what `clean(Some(..))` kept.
    pub fn clean_done(&self) {
        self.stale.store(false, Ordering::Release);
    }

    /// Makes the whole file read as zeros again, keeping its allocated
    /// pages allocated (zeroed in place) and its holes holes: for a file
    /// about to be reused by another object.
    pub fn clear(&self) -> io::Result<()> {
        // Small files: one memset beats asking the kernel where the data is.
        if self.size <= CLEAR_WHOLE_BELOW && self.mapping().is_some() {
            return self.zero(0, self.size);
        }
        for (start, end) in self.data_extents(0, self.size)? {
            self.zero(start, end - start)?;
        }
        Ok(())
    }

    /// Zeroes `offset..offset+len` (allocating its pages).
    pub fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check(offset, len)?;
        let n = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match self.mapping() {
            Some(base) => {
                // SAFETY: `offset..offset+len` was checked to lie inside the
                // file, which the mapping covers whole and outlives this call;
                // the caller guarantees nobody else maps the file.
                unsafe { std::ptr::write_bytes(base.as_ptr().add(offset as usize), 0, n) };
                Ok(())
            }
            None => {
                let zeros = vec![0u8; n.min(1 << 20)];
                let mut at = 0u64;
                while at < len {
                    let chunk = (len - at).min(zeros.len() as u64) as usize;
                    self.write_at(offset + at, &zeros[..chunk])?;
                    at += chunk as u64;
                }
                Ok(())
            }
        }
    }

    /// The file descriptor (for SHMEM_MAP into the guest, or `pwrite`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {offset}+{len} outside a {}-byte file", self.size),
            )),
        }
    }

    /// Writes `data` at `offset` (allocating pages as needed).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check(offset, data.len() as u64)?;
        let mut done = 0;
        while done < data.len() {
            match rustix::io::pwrite(&self.fd, &data[done..], offset + done as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` (holes read as zeros, no page
    /// is allocated by reading).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(offset, buf.len() as u64)?;
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::pread(&self.fd, &mut buf[done..], offset + done as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Bytes of pages allocated to the whole file (`st_blocks`).
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok(u64::try_from(st.st_blocks).unwrap_or(0) * 512)
    }

    /// The allocated extents `[start, end)` within `offset..offset+len`,
    /// found with SEEK_DATA / SEEK_HOLE.
    pub fn data_extents(&self, offset: u64, len: u64) -> io::Result<Vec<(u64, u64)>> {
        self.check(offset, len)?;
        let end = offset + len;
        let mut extents = Vec::new();
        let mut pos = offset;
        while pos < end {
            let data = match rustix::fs::seek(&self.fd, SeekFrom::Data(pos)) {
                Ok(d) => d,
                Err(Errno::NXIO) => break,
                Err(e) => return Err(e.into()),
            };
            if data >= end {
                break;
            }
            let hole = rustix::fs::seek(&self.fd, SeekFrom::Hole(data))?.min(end);
            extents.push((data, hole));
            pos = hole;
        }
        Ok(extents)
    }

    /// Bytes allocated within `offset..offset+len`.
    pub fn allocated_in(&self, offset: u64, len: u64) -> io::Result<u64> {
        Ok(self
            .data_extents(offset, len)?
            .iter()
            .map(|(s, e)| e - s)
            .sum())
    }

    /// Frees the pages of `offset..offset+len` (the seed's purge:
    /// `shmem_truncate_range` done immediately). Returns the bytes really
    /// released, measured before and after.
    pub fn punch(&self, offset: u64, len: u64) -> io::Result<u64> {
        if len == 0 {
            return Ok(0);
        }
        let before = self.allocated_in(offset, len)?;
        if before == 0 {
            return Ok(0);
        }
        rustix::fs::fallocate(
            &self.fd,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )?;
        let after = self.allocated_in(offset, len)?;
        Ok(before.saturating_sub(after))
    }

    /// Copies `len` bytes at `src_offset` into `dst` at `dst_offset`,
    /// keeping holes holes: the destination range is punched first, then
    /// only the source's allocated extents are copied, in the kernel
    /// (`copy_file_range`), with a buffered fallback.
    pub fn copy_to(
        &self,
        src_offset: u64,
        dst: &ShmemFile,
        dst_offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.check(src_offset, len)?;
        dst.check(dst_offset, len)?;
        dst.punch(dst_offset, len)?;
        for (start, end) in self.data_extents(src_offset, len)? {
            let rel = start - src_offset;
            copy_range(&self.fd, start, &dst.fd, dst_offset + rel, end - start)?;
        }
        Ok(())
    }

    /// Bytes of `offset..offset+len` resident in RAM (mincore). A file
    /// this process has not mapped yet is looked at through a temporary
    /// mapping of just that range, so asking costs no lasting mapping and
    /// populates nothing.
    pub fn resident_in(&self, offset: u64, len: u64) -> io::Result<u64> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(0);
        }
        let pages = match self.map.get() {
            Some(Some(_)) => self.view(offset, len)?.residency()?,
            _ => {
                let tmp = FileMapping::range(&self.fd, offset, len)?;
                View {
                    ptr: tmp.ptr,
                    len: tmp.len,
                }
                .residency()?
            }
        };
        Ok(pages.iter().filter(|r| **r & 1 != 0).count() as u64 * PAGE_SIZE)
    }

    /// Gives the resident pages of `offset..offset+len` back to the kernel
    /// without losing them: Lazy marks them cold (MADV_COLD, reclaimed first
    /// when the kernel needs memory), Writeback pushes them to swap now
    /// (MADV_PAGEOUT). Only pages no other process maps are affected.
    ///
    /// Reports what was *hinted* (the pages resident when the kernel was
    /// told) apart from what was *freed* (no longer resident afterwards,
    /// measured with mincore): MADV_COLD frees nothing at once, and with no
    /// swap shmem pages cannot leave RAM, so `freed` is then honestly 0.
    pub fn release(&self, offset: u64, len: u64, mode: ShrinkMode) -> io::Result<Released> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(Released::default());
        }
        let map = self.view(offset, len)?;
        let before = map.residency()?;
        let resident_before = before.iter().filter(|r| **r & 1 != 0).count() as u64 * PAGE_SIZE;
        if resident_before == 0 {
            return Ok(Released::default());
        }
        // MADV_COLD / MADV_PAGEOUT act on pages mapped in this process:
        // map exactly the resident runs (populating a hole would allocate).
        for (first, count) in runs(&before) {
            map.advise(first, count, Advice::LinuxPopulateRead)?;
        }
        let advice = match mode {
            ShrinkMode::Lazy => Advice::LinuxCold,
            ShrinkMode::Writeback => Advice::LinuxPageOut,
        };
        map.advise(0, map.pages(), advice)?;
        let after = self.resident_in(offset, len)?;
        Ok(Released {
            hinted: resident_before,
            freed: resident_before.saturating_sub(after),
        })
    }
}

/// What [`ShmemFile::release`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Resident bytes handed to the kernel (MADV_COLD / MADV_PAGEOUT).
    pub hinted: u64,
    /// Bytes no longer resident afterwards.
    pub freed: u64,
}

impl ShmemFile {
    /// The part `offset..offset+len` of the file's mapping.
    fn view(&self, offset: u64, len: u64) -> io::Result<View> {
        let base = self
            .mapping()
            .ok_or_else(|| io::Error::other("the buffer could not be mapped"))?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the caller checked `offset..offset+len` lies in the file,
        // which the mapping covers whole.
        let ptr = unsafe { base.add(offset as usize) };
        Ok(View { ptr, len })
    }
}

/// Maximal runs `(first_page, page_count)` of resident pages.
fn runs(residency: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < residency.len() {
        if residency[i] & 1 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < residency.len() && residency[i] & 1 != 0 {
            i += 1;
        }
        out.push((start, i - start));
    }
    out
}

fn copy_range(
    src: &OwnedFd,
    src_off: u64,
    dst: &OwnedFd,
    dst_off: u64,
    len: u64,
) -> io::Result<()> {
    let (mut off_in, mut off_out, mut left) = (src_off, dst_off, len);
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n as u64,
            Err(Errno::INTR) => continue,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_buffered(src, off_in, dst, off_out, left)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_buffered(
    src: &OwnedFd,
    mut off_in: u64,
    dst: &OwnedFd,
    mut off_out: u64,
    mut left: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20)];
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(buf.len()).min(buf.len());
        let got = match rustix::io::pread(src, &mut buf[..n], off_in) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(got) => got,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut put = 0;
        while put < got {
            match rustix::io::pwrite(dst, &buf[put..got], off_out + put as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => put += w,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        off_in += got as u64;
        off_out += got as u64;
        left -= got as u64;
    }
    Ok(())
}

/// The whole file mapped shared, read-write, in this process.
#[derive(Debug)]
struct FileMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this struct; it is
// only reached through raw pointers by callers that synchronize on the
// object's lock, and unmapped once, on drop.
unsafe impl Send for FileMapping {}
// SAFETY: as above; `&FileMapping` only hands out the base pointer.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    fn new(fd: &OwnedFd, size: u64) -> io::Result<Self> {
        Self::range(fd, 0, size)
    }

    /// `len` bytes of the file from `offset` (page-aligned).
    fn range(fd: &OwnedFd, offset: u64, size: u64) -> io::Result<Self> {
        let len =
            usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address), so
        // it cannot replace any existing memory; callers pass a range inside
        // the file, which is sealed against shrinking, so every byte of the
        // mapping stays backed (a misaligned offset is refused by mmap).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                offset,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Self { ptr, len })
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created; the file (and
        // so every user of the pointer) is being dropped.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A page-aligned part of a file's mapping, for `mincore` and `madvise`.
/// Never dereferenced from Rust.
struct View {
    ptr: NonNull<u8>,
    len: usize,
}

impl View {
    fn pages(&self) -> usize {
        self.len.div_ceil(PAGE_SIZE as usize)
    }

    fn residency(&self) -> io::Result<Vec<u8>> {
        let mut vec = vec![0u8; self.pages()];
        // SAFETY: `ptr..ptr+len` lies in our own live mapping and `vec` has
        // one byte per page of it, as mincore(2) requires.
        let rc = unsafe { libc::mincore(self.ptr.as_ptr().cast(), self.len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(vec)
    }

    fn advise(&self, first_page: usize, pages: usize, advice: Advice) -> io::Result<()> {
        let start = first_page * PAGE_SIZE as usize;
        let len = (pages * PAGE_SIZE as usize).min(self.len.saturating_sub(start));
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our own live mapping; these advices
        // only change page-table and LRU state, never the file's contents.
        unsafe { rustix::mm::madvise(self.ptr.as_ptr().add(start).cast(), len, advice)? };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn created_files_are_sealed_named_and_unpopulated() {
        let f = ShmemFile::create("vgpu:test/obj\0x", MIB).unwrap();
        assert_eq!(f.size(), MIB);
        assert_eq!(f.allocated_bytes().unwrap(), 0);
        let seals = rustix::fs::fcntl_get_seals(f.fd()).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL));
        assert!(
            rustix::fs::ftruncate(f.fd(), 2 * MIB).is_err(),
            "growing is sealed"
        );
        let link = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            f.fd().as_raw_fd()
        }))
        .unwrap();
        assert_eq!(link.to_string_lossy(), "/memfd:vgpu:test_obj_x (deleted)");
    }

    #[test]
    fn writes_reads_and_extents() {
        let f = ShmemFile::create("t", MIB).unwrap();
        f.write_at(8192, b"hello").unwrap();
        let mut buf = [0u8; 5];
        f.read_at(8192, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 5]);
        assert_eq!(f.data_extents(0, MIB).unwrap(), vec![(8192, 12288)]);
        assert_eq!(f.allocated_in(0, MIB).unwrap(), 4096);
        assert_eq!(f.allocated_bytes().unwrap(), 4096);
        assert!(f.write_at(MIB - 2, b"abc").is_err());
        assert!(f.read_at(u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn punch_reports_only_what_was_released() {
        let f = ShmemFile::create("t", MIB).unwrap();
        f.write_at(0, &vec![1u8; 3 * 4096]).unwrap();
        assert_eq!(f.punch(4096, 4096).unwrap(), 4096);
        assert_eq!(f.punch(4096, 4096).unwrap(), 0, "already a hole");
        assert_eq!(f.punch(0, MIB).unwrap(), 2 * 4096);
        assert_eq!(f.allocated_bytes().unwrap(), 0);
        let mut buf = [9u8; 4];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
    }

    #[test]
    fn sparse_copies_keep_holes_and_clear_old_data() {
        let a = ShmemFile::create("a", MIB).unwrap();
        let b = ShmemFile::create("b", 4 * MIB).unwrap();
        a.write_at(3 * 4096, &[7u8; 4096]).unwrap();
        b.write_at(2 * MIB, &[5u8; 8192]).unwrap(); // stale data in the target range
        a.copy_to(0, &b, 2 * MIB, MIB).unwrap();
        assert_eq!(b.allocated_in(2 * MIB, MIB).unwrap(), 4096);
        let mut buf = vec![0u8; MIB as usize];
        b.read_at(2 * MIB, &mut buf).unwrap();
        assert!(buf[..3 * 4096].iter().all(|b| *b == 0));
        assert!(buf[3 * 4096..4 * 4096].iter().all(|b| *b == 7));
        assert!(buf[4 * 4096..].iter().all(|b| *b == 0));
    }

    #[test]
    fn residency_and_release_are_measured() {
        let f = ShmemFile::create("t", MIB).unwrap();
        f.write_at(0, &vec![3u8; 64 * 1024]).unwrap();
        assert_eq!(f.resident_in(0, MIB).unwrap(), 64 * 1024);
        // Lazy hints every resident page and frees nothing at once.
        let lazy = f.release(0, MIB, ShrinkMode::Lazy).unwrap();
        assert_eq!((lazy.hinted, lazy.freed), (64 * 1024, 0));
        let wb = f.release(0, MIB, ShrinkMode::Writeback).unwrap();
        assert_eq!(wb.hinted, 64 * 1024);
        let still = f.resident_in(0, MIB).unwrap();
        assert_eq!(
            wb.freed + still,
            64 * 1024,
            "what left RAM plus what stayed is what was there"
        );
        // Contents survive either way; no hole was populated.
        let mut buf = vec![0u8; 64 * 1024];
        f.read_at(0, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == 3));
        assert_eq!(f.allocated_bytes().unwrap(), 64 * 1024);
    }

    #[test]
    fn resident_runs() {
        assert_eq!(runs(&[1, 1, 0, 1, 0, 0, 1]), vec![(0, 2), (3, 1), (6, 1)]);
        assert_eq!(runs(&[0, 0]), vec![]);
    }
}
