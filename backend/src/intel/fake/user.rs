//! This process's memory as the fake kernel reaches it through the user
//! pointers of an ioctl: copy_from_user / copy_to_user done with
//! `process_vm_readv` / `process_vm_writev` on the own process, so an
//! inaccessible address fails with EFAULT exactly as in a kernel, instead
//! of faulting the test.

use rustix::io::Errno;

use super::super::uapi::Pod;

/// The most one user copy moves (a kernel's allocation limit; larger
/// requests are ENOMEM, as a failed `kvmalloc` would be).
const MAX_COPY: usize = 64 << 20;

/// User memory during one ioctl. Only [`UserMem::new`] makes one, under
/// the ioctl's contract.
#[derive(Debug)]
pub(super) struct UserMem {
    pid: libc::pid_t,
}

impl UserMem {
    /// For one [`crate::intel::DrmDevice::ioctl`] call.
    ///
    /// # Safety
    ///
    /// Test-only contract, that of `DrmDevice::ioctl`: every address the
    /// fake kernel writes through during the call was passed (in the
    /// argument, or in memory it points at) as memory the kernel may write
    /// for that request, or is not writable memory at all.
    pub unsafe fn new() -> Self {
        Self {
            pid: rustix::process::getpid().as_raw_nonzero().get(),
        }
    }

    fn check(addr: u64, len: usize) -> Result<(), Errno> {
        if len > MAX_COPY {
            return Err(Errno::NOMEM);
        }
        match addr.checked_add(len as u64) {
            Some(_) if addr != 0 || len == 0 => Ok(()),
            _ => Err(Errno::FAULT),
        }
    }

    /// copy_from_user: `len` bytes at `addr`; EFAULT if any is not readable.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        Self::check(addr, len)?;
        let mut buf = vec![0u8; len];
        if len == 0 {
            return Ok(buf);
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: the local iovec covers `buf`, which we own and which is
        // `len` bytes long; the remote side is only read, and the kernel
        // checks it (EFAULT where it is not readable).
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        transferred(n, len).map(|()| buf)
    }

    /// copy_to_user: `data` to `addr`; EFAULT if any byte is not writable
    /// (the bytes before it may have been written, as in a kernel).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        Self::check(addr, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: the local iovec covers `data`, only read. The remote
        // range is memory the ioctl's caller lets the kernel write, or not
        // writable at all (then EFAULT) — `UserMem::new`'s contract.
        let n = unsafe { libc::process_vm_writev(self.pid, &local, 1, &remote, 1, 0) };
        transferred(n, data.len())
    }

    /// A `T` at `addr`.
    pub fn read_pod<T: Pod>(&self, addr: u64) -> Result<T, Errno> {
        T::read_from(&self.read(addr, size_of::<T>())?).ok_or(Errno::FAULT)
    }

    /// `n` consecutive `T`s at `addr`.
    pub fn read_array<T: Pod>(&self, addr: u64, n: usize) -> Result<Vec<T>, Errno> {
        let len = n.checked_mul(size_of::<T>()).ok_or(Errno::NOMEM)?;
        Ok(T::read_all(&self.read(addr, len)?))
    }

    /// `value` to `addr`.
    pub fn write_pod<T: Pod>(&self, addr: u64, value: &T) -> Result<(), Errno> {
        self.write(addr, value.as_bytes())
    }
}

/// A whole copy, or EFAULT for a partial or faulting one; any other
/// failure of the syscall itself (a sandbox refusing it) is passed on as
/// is, so it cannot pass for a bad pointer.
fn transferred(n: isize, len: usize) -> Result<(), Errno> {
    match usize::try_from(n) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(Errno::FAULT),
        Err(_) => {
            match Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::FAULT) {
                Errno::FAULT => Err(Errno::FAULT),
                e => {
                    log::error!("fake kernel: process_vm_readv/writev failed: {e}");
                    Err(e)
                }
            }
        }
    }
}

/// Runs `f` on the ioctl argument decoded as a `T`, then puts the (maybe
/// updated) value back, whatever `f` returned — DRM copies the argument
/// out even when the driver fails.
pub(super) fn with_arg<T: Pod, R>(
    kdata: &mut [u8],
    f: impl FnOnce(&mut T) -> Result<R, Errno>,
) -> Result<R, Errno> {
    let mut v = T::read_from(kdata).ok_or(Errno::INVAL)?;
    let r = f(&mut v);
    if let Some(out) = kdata.get_mut(..size_of::<T>()) {
        out.copy_from_slice(v.as_bytes());
    }
    r
}
