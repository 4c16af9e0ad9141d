//! The guest side of the harness: memfd-backed guest RAM (shared with the
//! backend through SET_MEM_TABLE, as QEMU's `memory-backend-memfd,share=on`
//! does) and a driver-side split virtqueue laid out in it.

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest memory as the harness (the "guest") sees it.
pub type GuestMem = GuestMemoryMmap<()>;

/// Guest RAM: one memfd mapped at guest-physical 0. Long-lived data (queues,
/// backing pages, blobs) is allocated from the front; request and response
/// buffers from a scratch area at the end that is recycled between requests.
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMem,
    size: u64,
    next: u64,
    scratch_start: u64,
    scratch_next: u64,
}

impl GuestRam {
    /// `size` bytes of shared guest RAM.
    pub fn new(size: u64) -> io::Result<Self> {
        let fd =
            rustix::fs::memfd_create(c"vgpu-harness-guest-ram", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, size)?;
        let file = File::from(fd);
        let len =
            usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            len,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(|e| io::Error::other(e.to_string()))?;
        // A quarter of RAM, at least 8 MiB, for requests (SUBMIT_3D streams
        // can be 4 MiB).
        let scratch = (size / 4).max(8 << 20).min(size / 2) & !4095;
        Ok(Self {
            mem,
            size,
            // Page 0 stays unused: address 0 is a classic bug magnet.
            next: 4096,
            scratch_start: size - scratch,
            scratch_next: size - scratch,
        })
    }

    /// The memory.
    pub fn mem(&self) -> &GuestMem {
        &self.mem
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Allocates long-lived memory: `len` bytes aligned to `align`.
    pub fn alloc(&mut self, len: u64, align: u64) -> io::Result<GuestAddress> {
        let limit = self.scratch_start;
        bump(
            &mut self.next,
            len,
            align,
            limit,
            "guest RAM of the harness is exhausted",
        )
    }

    /// Allocates long-lived page-aligned memory.
    pub fn alloc_pages(&mut self, len: u64) -> io::Result<GuestAddress> {
        self.alloc(len.next_multiple_of(4096), 4096)
    }

    /// Allocates request/response memory from the scratch area.
    pub fn scratch(&mut self, len: u64) -> io::Result<GuestAddress> {
        let limit = self.size;
        bump(
            &mut self.scratch_next,
            len,
            8,
            limit,
            "the harness's request area is full",
        )
    }

    /// Recycles the whole scratch area.
    pub fn reset_scratch(&mut self) {
        self.scratch_next = self.scratch_start;
    }
}

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;

/// One buffer of a chain.
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A completed chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// Head descriptor index.
    pub head: u16,
    /// Bytes the device wrote.
    pub len: u32,
}

/// The driver side of a split virtqueue in guest memory.
#[derive(Debug)]
pub struct SplitQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table.
    pub desc: GuestAddress,
    /// Available ring.
    pub avail: GuestAddress,
    /// Used ring.
    pub used: GuestAddress,
    /// Kick eventfd (the backend waits on it).
    pub kick: EventFd,
    /// Call eventfd (the backend signals it).
    pub call: EventFd,
    free: Vec<u16>,
    chains: Vec<Vec<u16>>,
    avail_idx: u16,
    last_used: u16,
    event_idx: bool,
}

impl SplitQueue {
    /// Lays out a queue of `size` entries in `ram`.
    pub fn new(ram: &mut GuestRam, size: u16) -> io::Result<Self> {
        let n = u64::from(size);
        let desc = ram.alloc_pages(16 * n)?;
        let avail = ram.alloc_pages(6 + 2 * n)?;
        let used = ram.alloc_pages(6 + 8 * n)?;
        Ok(Self {
            size,
            desc,
            avail,
            used,
            kick: EventFd::new(EFD_NONBLOCK)?,
            call: EventFd::new(EFD_NONBLOCK)?,
            free: (0..size).rev().collect(),
            chains: vec![Vec::new(); usize::from(size)],
            avail_idx: 0,
            last_used: 0,
            event_idx: false,
        })
    }

    /// Whether VIRTIO_RING_F_EVENT_IDX was negotiated.
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Free descriptors.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains offered and not yet used.
    pub fn in_flight(&self) -> u16 {
        self.avail_idx.wrapping_sub(self.last_used)
    }

    /// Offers a chain; returns its head. Does not kick.
    pub fn add(&mut self, mem: &GuestMem, buffers: &[Buffer]) -> io::Result<u16> {
        if buffers.is_empty() || buffers.len() > self.free.len() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "not enough free descriptors",
            ));
        }
        let ids: Vec<u16> = (0..buffers.len()).filter_map(|_| self.free.pop()).collect();
        for (i, (b, id)) in buffers.iter().zip(&ids).enumerate() {
            let mut flags = if b.write { VRING_DESC_F_WRITE } else { 0 };
            let next = if i + 1 < ids.len() {
                flags |= VRING_DESC_F_NEXT;
                ids[i + 1]
            } else {
                0
            };
            let at = self.desc.0 + 16 * u64::from(*id);
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&b.addr.0.to_le_bytes());
            d[8..12].copy_from_slice(&b.len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
            mem.write_slice(&d, GuestAddress(at))
                .map_err(io::Error::other)?;
        }
        let head = ids[0];
        self.chains[usize::from(head)] = ids;
        let slot = self.avail.0 + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(slot))
            .map_err(io::Error::other)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.store(
            self.avail_idx.to_le(),
            GuestAddress(self.avail.0 + 2),
            Ordering::Release,
        )
        .map_err(io::Error::other)?;
        Ok(head)
    }

    /// Publishes a raw avail entry without descriptors bookkeeping
    /// (hostile tests: reused or out-of-range heads).
    pub fn add_raw_head(&mut self, mem: &GuestMem, head: u16) -> io::Result<()> {
        let slot = self.avail.0 + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(slot))
            .map_err(io::Error::other)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.store(
            self.avail_idx.to_le(),
            GuestAddress(self.avail.0 + 2),
            Ordering::Release,
        )
        .map_err(io::Error::other)
    }

    /// Tells the device there is work.
    pub fn kick(&self) -> io::Result<()> {
        self.kick.write(1)
    }

    /// Publishes `idx` as the avail index without writing any ring slot or
    /// descriptor: what a buggy or hostile driver may do.
    pub fn publish_bogus_avail_idx(&mut self, mem: &GuestMem, idx: u16) -> io::Result<()> {
        self.avail_idx = idx;
        mem.store(
            idx.to_le(),
            GuestAddress(self.avail.0 + 2),
            Ordering::Release,
        )
        .map_err(io::Error::other)
    }

    /// Completed chains not yet collected.
    pub fn collect(&mut self, mem: &GuestMem) -> io::Result<Vec<Used>> {
        let idx: u16 = u16::from_le(
            mem.load(GuestAddress(self.used.0 + 2), Ordering::Acquire)
                .map_err(io::Error::other)?,
        );
        let mut out = Vec::new();
        while self.last_used != idx {
            let at = self.used.0 + 4 + 8 * u64::from(self.last_used % self.size);
            let id: u32 = u32::from_le(mem.read_obj(GuestAddress(at)).map_err(io::Error::other)?);
            let len: u32 = u32::from_le(
                mem.read_obj(GuestAddress(at + 4))
                    .map_err(io::Error::other)?,
            );
            self.last_used = self.last_used.wrapping_add(1);
            let head = u16::try_from(id)
                .map_err(|_| io::Error::other(format!("used id {id} out of range")))?;
            if let Some(chain) = self.chains.get_mut(usize::from(head)) {
                self.free.append(chain);
            }
            out.push(Used { head, len });
        }
        if self.event_idx {
            // used_event: interrupt me at the next completion.
            let at = self.avail.0 + 4 + 2 * u64::from(self.size);
            mem.write_obj(self.last_used.to_le(), GuestAddress(at))
                .map_err(io::Error::other)?;
        }
        Ok(out)
    }

    /// Waits for at least one completion (or the timeout).
    pub fn wait(&mut self, mem: &GuestMem, timeout: Duration) -> io::Result<Vec<Used>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let done = self.collect(mem)?;
            if !done.is_empty() {
                return Ok(done);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no completion from the device",
                ));
            }
            wait_readable(&self.call, left.min(Duration::from_millis(100)))?;
            let _ = self.call.read();
        }
    }
}

/// Waits until `fd` is readable or the timeout passes.
pub fn wait_readable(fd: &impl std::os::fd::AsRawFd, timeout: Duration) -> io::Result<bool> {
    // SAFETY: borrowed only for this call, while `fd` is alive.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Bump allocation of `len` bytes aligned to `align` from `*next`, below
/// `limit`.
fn bump(
    next: &mut u64,
    len: u64,
    align: u64,
    limit: u64,
    full: &'static str,
) -> io::Result<GuestAddress> {
    let start = next.next_multiple_of(align.max(1));
    let end = start
        .checked_add(len)
        .filter(|e| *e <= limit)
        .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, full))?;
    *next = end;
    Ok(GuestAddress(start))
}
