//! The DRM device under the Intel drivers: [`DrmDevice`], the small trait
//! every kernel call of [`super::I915Kernel`] and [`super::XeKernel`] goes
//! through (an ioctl with its argument's bytes, mmap / munmap of the
//! device file, poll of a dma-buf the device exported), and
//! [`RenderNode`], the real one: a render node's descriptor, with every
//! syscall in a small `unsafe` wrapper. Tests put [`super::fake`] in its
//! place, so the drivers' own code — struct building, extension chains,
//! pointer fix-ups, result parsing, error mapping — runs unchanged there.
//!
//! Also the two generic DRM calls both drivers make (`gem_close`,
//! `prime_export`) and `call`, the typed form of an ioctl.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::ioctl::{ioctl, Ioctl, IoctlOutput, Opcode};

use super::uapi::{
    ioc_size, opcode_of, GemClose, Pod, PrimeHandle, DRM_CLOEXEC, DRM_IOCTL_GEM_CLOSE,
    DRM_IOCTL_PRIME_HANDLE_TO_FD, DRM_RDWR,
};

/// A DRM device as the drivers see it: what a render node's descriptor
/// offers. Errors are the kernel's `errno`s.
pub trait DrmDevice: Send + Sync + fmt::Debug {
    /// Runs ioctl `request` with `arg` as its argument: the kernel reads
    /// the first `_IOC_SIZE(request)` bytes (EINVAL if `arg` is shorter)
    /// and, for requests that return data, writes them back in place.
    /// Pointers inside `arg` are this process's user pointers, followed
    /// as the uapi defines for `request`.
    ///
    /// # Safety
    ///
    /// Every pointer the kernel follows from `arg` (directly or through
    /// memory it points at) must be valid for what the kernel reads and
    /// writes through it during the call, or point at no accessible memory
    /// (the kernel then fails with EFAULT).
    unsafe fn ioctl(&self, request: u32, arg: &mut [u8]) -> Result<(), Errno>;

    /// Maps `len` bytes of the device file at `offset` (an mmap offset a
    /// GEM_MMAP_OFFSET gave), shared and read-write.
    fn mmap(&self, offset: u64, len: u64) -> Result<NonNull<u8>, Errno>;

    /// Undoes [`Self::mmap`].
    ///
    /// # Safety
    ///
    /// `ptr` and `len` are a mapping [`Self::mmap`] of this device
    /// returned, and nothing uses it any more.
    unsafe fn munmap(&self, ptr: NonNull<u8>, len: u64);

    /// Waits up to `timeout` (`None`: for ever) for `dmabuf`, a PRIME
    /// export of this device, to be ready for `events` (poll(2): a dma-buf
    /// is writable when no fence is pending, readable when no write
    /// fence is); whether it is.
    fn poll_dmabuf(
        &self,
        dmabuf: BorrowedFd<'_>,
        events: PollFlags,
        timeout: Option<&Timespec>,
    ) -> Result<bool, Errno>;
}

/// Runs `request` with `value` as its argument.
///
/// # Safety
///
/// `request` takes a `T` (`_IOC_SIZE(request) == size_of::<T>()`), and
/// every pointer inside `value` is as [`DrmDevice::ioctl`] requires.
pub(crate) unsafe fn call<T: Pod>(
    dev: &dyn DrmDevice,
    request: u32,
    value: &mut T,
) -> Result<(), Errno> {
    debug_assert_eq!(ioc_size(request), size_of::<T>());
    // SAFETY: forwarded to the caller.
    unsafe { dev.ioctl(request, value.as_bytes_mut()) }
}

/// `DRM_IOCTL_GEM_CLOSE`.
pub(crate) fn gem_close(dev: &dyn DrmDevice, handle: u32) {
    let mut c = GemClose { handle, pad: 0 };
    // SAFETY: GEM_CLOSE takes a drm_gem_close (no pointers).
    let _ = unsafe { call(dev, DRM_IOCTL_GEM_CLOSE, &mut c) };
}

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD` (read-write, close-on-exec).
pub(crate) fn prime_export(dev: &dyn DrmDevice, handle: u32) -> Result<OwnedFd, Errno> {
    let mut p = PrimeHandle {
        handle,
        flags: DRM_CLOEXEC | DRM_RDWR,
        fd: -1,
    };
    // SAFETY: PRIME_HANDLE_TO_FD takes a drm_prime_handle (no pointers).
    unsafe { call(dev, DRM_IOCTL_PRIME_HANDLE_TO_FD, &mut p) }?;
    if p.fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(p.fd) })
}

/// An open render node (`/dev/dri/renderD*`).
#[derive(Debug)]
pub struct RenderNode {
    fd: OwnedFd,
}

impl RenderNode {
    /// Over an open render node's descriptor.
    pub fn new(fd: OwnedFd) -> Self {
        Self { fd }
    }
}

/// An ioctl whose request number is known only at run time, with its
/// argument as bytes.
struct RawIoctl<'a> {
    request: Opcode,
    arg: &'a mut [u8],
}

// SAFETY: `as_ptr` points at `arg`, which holds at least `_IOC_SIZE`
// bytes (checked by the caller) and may be written (IS_MUTATING).
unsafe impl Ioctl for RawIoctl<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.request
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        self.arg.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(
        _out: IoctlOutput,
        _extract_output: *mut std::ffi::c_void,
    ) -> rustix::io::Result<()> {
        Ok(())
    }
}

impl DrmDevice for RenderNode {
    unsafe fn ioctl(&self, request: u32, arg: &mut [u8]) -> Result<(), Errno> {
        if arg.len() < ioc_size(request) {
            return Err(Errno::INVAL);
        }
        loop {
            let raw = RawIoctl {
                request: opcode_of(request),
                arg: &mut *arg,
            };
            // SAFETY: `arg` covers the `_IOC_SIZE` bytes the kernel copies
            // in and out (checked above); the pointers inside it are the
            // caller's promise.
            match unsafe { ioctl(self.fd.as_fd(), raw) } {
                Err(Errno::INTR | Errno::AGAIN) => continue,
                r => return r,
            }
        }
    }

    fn mmap(&self, offset: u64, len: u64) -> Result<NonNull<u8>, Errno> {
        let len = usize::try_from(len).map_err(|_| Errno::INVAL)?;
        // SAFETY: a fresh shared mapping chosen by the kernel at the offset
        // it gave for an object; it replaces no existing memory.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                self.fd.as_fd(),
                offset,
            )
        }?;
        NonNull::new(p.cast::<u8>()).ok_or(Errno::NOMEM)
    }

    unsafe fn munmap(&self, ptr: NonNull<u8>, len: u64) {
        // SAFETY: the caller unmaps a mapping `mmap` made and no longer
        // uses.
        let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len as usize) };
    }

    fn poll_dmabuf(
        &self,
        dmabuf: BorrowedFd<'_>,
        events: PollFlags,
        timeout: Option<&Timespec>,
    ) -> Result<bool, Errno> {
        let mut fds = [PollFd::from_borrowed_fd(dmabuf, events)];
        Ok(rustix::event::poll(&mut fds, timeout)? > 0)
    }
}
