//! The harness's VMM: connects to a backend's socket, negotiates like QEMU
//! or crosvm, shares guest RAM, sets up the two virtqueues, hands over a
//! display socket and a backend request channel, and then lets tests send
//! virtio-gpu requests the way a guest driver does.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vgpu_proto::virtio_gpu::{Command, CtrlHdr, Response, VirtioGpuConfig};
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, FrontendReqHandler, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;
use zerocopy::FromBytes;

use crate::display::DisplayRecorder;
use crate::guest::{Buffer, GuestRam, SplitQueue, Used};
use crate::hostmem::{HostVisibleRegion, ShmemHandler};

/// The control queue.
pub const CTRL: usize = 0;
/// The cursor queue.
pub const CURSOR: usize = 1;

/// How the harness VMM behaves.
#[derive(Debug, Clone)]
pub struct VmmOptions {
    /// Guest RAM size.
    pub guest_ram: u64,
    /// Queue size.
    pub queue_size: u16,
    /// Virtio features to refuse (the rest of what the backend offers is acked).
    pub refuse_features: u64,
    /// Send GPU_SET_SOCKET with a recording display.
    pub display: bool,
    /// Modes the display reports.
    pub display_modes: Vec<(u32, u32)>,
    /// Negotiate SHMEM and serve SHMEM_MAP into a host-visible region.
    pub shmem: bool,
    /// How long to wait for any completion.
    pub timeout: Duration,
}

impl Default for VmmOptions {
    fn default() -> Self {
        Self {
            guest_ram: 128 << 20,
            queue_size: 256,
            refuse_features: 0,
            display: true,
            display_modes: vec![(1280, 800)],
            shmem: true,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One request of a batch.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Readable segments (each becomes one descriptor).
    pub readable: Vec<Vec<u8>>,
    /// Writable buffer lengths (each one descriptor).
    pub writable: Vec<u32>,
}

impl Request {
    /// A command in one readable descriptor and a response buffer of `resp` bytes.
    pub fn of(bytes: Vec<u8>, resp: u32) -> Self {
        Self {
            readable: vec![bytes],
            writable: if resp > 0 { vec![resp] } else { Vec::new() },
        }
    }
}

/// The harness VMM.
pub struct Vmm {
    frontend: Frontend,
    raw: UnixStream,
    /// Guest RAM.
    pub ram: GuestRam,
    queues: Vec<SplitQueue>,
    /// The display socket's recorder.
    pub display: Option<DisplayRecorder>,
    /// The host-visible region, if SHMEM was negotiated.
    pub hostmem: Option<Arc<HostVisibleRegion>>,
    shmem: Option<Arc<ShmemHandler>>,
    req_thread: Option<JoinHandle<()>>,
    /// Virtio features acked.
    pub features: u64,
    /// Protocol features acked.
    pub protocol: VhostUserProtocolFeatures,
    /// The backend's process, when the caller knows it (benchmarks report
    /// its CPU time per operation).
    pub backend_pid: Option<u32>,
    timeout: Duration,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("features", &self.features)
            .finish()
    }
}

fn vio(e: vhost::Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn vuio(e: vhost::vhost_user::Error) -> io::Error {
    io::Error::other(e.to_string())
}

struct RawFdRef(RawFd);

impl AsRawFd for RawFdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Vmm {
    /// Connects to `socket` (retrying briefly while the backend starts).
    pub fn connect(socket: &Path, opts: VmmOptions) -> io::Result<Vmm> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    log::trace!("connect: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        let raw = stream.try_clone()?;
        let frontend = Frontend::from_stream(stream, 2);
        let offered = frontend.get_features().map_err(vio)?;
        let features = offered & !opts.refuse_features;
        let mut frontend = frontend;
        let mut protocol = VhostUserProtocolFeatures::empty();
        if offered & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let p = frontend.get_protocol_features().map_err(vio)?;
            let mut wanted = VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::BACKEND_REQ
                | VhostUserProtocolFeatures::BACKEND_SEND_FD;
            if opts.shmem {
                wanted |= VhostUserProtocolFeatures::SHMEM;
            }
            protocol = p & wanted;
            frontend.set_protocol_features(protocol).map_err(vio)?;
        }
        frontend.set_owner().map_err(vio)?;

        let mut hostmem = None;
        let mut shmem = None;
        let mut req_thread = None;
        if protocol
            .contains(VhostUserProtocolFeatures::SHMEM | VhostUserProtocolFeatures::BACKEND_REQ)
        {
            let cfg = frontend.get_shmem_config().map_err(vio)?;
            let size = cfg.memory_sizes[1];
            let region = Arc::new(HostVisibleRegion::new(size)?);
            let handler = Arc::new(ShmemHandler {
                region: region.clone(),
                log: Mutex::new(Vec::new()),
                fail_unmaps: std::sync::atomic::AtomicBool::new(false),
                refused: std::sync::atomic::AtomicU64::new(0),
            });
            let mut req = FrontendReqHandler::new(handler.clone()).map_err(vuio)?;
            req.set_reply_ack_flag(protocol.contains(VhostUserProtocolFeatures::REPLY_ACK));
            frontend
                .set_backend_request_fd(&RawFdRef(req.get_tx_raw_fd()))
                .map_err(vio)?;
            req_thread = Some(std::thread::spawn(
                move || while req.handle_request().is_ok() {},
            ));
            hostmem = Some(region);
            shmem = Some(handler);
        }

        let display = if opts.display {
            let (ours, theirs) = UnixStream::pair()?;
            send_gpu_set_socket(&raw, theirs.as_raw_fd())?;
            drop(theirs);
            Some(DisplayRecorder::spawn(ours, opts.display_modes.clone()))
        } else {
            None
        };

        frontend.set_features(features).map_err(vio)?;
        let mut ram = GuestRam::new(opts.guest_ram)?;
        let region = ram
            .mem()
            .iter()
            .next()
            .ok_or_else(|| io::Error::other("no guest RAM region"))?;
        let info = VhostUserMemoryRegionInfo::from_guest_region(region).map_err(vio)?;
        frontend.set_mem_table(&[info]).map_err(vio)?;

        let mut queues = Vec::new();
        let event_idx =
            features & (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX) != 0;
        for index in 0..2 {
            let mut q = SplitQueue::new(&mut ram, opts.queue_size)?;
            q.set_event_idx(event_idx);
            let host = |a: GuestAddress| -> io::Result<u64> {
                ram.mem()
                    .get_host_address(a)
                    .map(|p| p as u64)
                    .map_err(|e| io::Error::other(e.to_string()))
            };
            let config = VringConfigData {
                queue_max_size: opts.queue_size,
                queue_size: opts.queue_size,
                flags: 0,
                desc_table_addr: host(q.desc)?,
                used_ring_addr: host(q.used)?,
                avail_ring_addr: host(q.avail)?,
                log_addr: None,
            };
            frontend
                .set_vring_num(index, opts.queue_size)
                .map_err(vio)?;
            frontend.set_vring_addr(index, &config).map_err(vio)?;
            frontend.set_vring_base(index, 0).map_err(vio)?;
            frontend.set_vring_call(index, &q.call).map_err(vio)?;
            frontend.set_vring_kick(index, &q.kick).map_err(vio)?;
            if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
                frontend.set_vring_enable(index, true).map_err(vio)?;
            }
            queues.push(q);
        }
        Ok(Vmm {
            frontend,
            raw,
            ram,
            queues,
            display,
            hostmem,
            shmem,
            req_thread,
            features,
            protocol,
            backend_pid: None,
            timeout: opts.timeout,
        })
    }

    /// GET_VRING_BASE: stops queue `index`, as QEMU does on shutdown or
    /// reset; returns the device's next available index.
    pub fn stop_queue(&mut self, index: usize) -> io::Result<u32> {
        self.frontend.get_vring_base(index).map_err(vio)
    }

    /// Offers `req` on `queue` and kicks, without waiting for an answer.
    pub fn offer(&mut self, queue: usize, req: &Request) -> io::Result<()> {
        self.post(queue, req).map(|_| ())
    }

    /// Reads the device config space.
    pub fn config(&mut self) -> io::Result<VirtioGpuConfig> {
        let (_, bytes) = self
            .frontend
            .get_config(0, 16, VhostUserConfigFlags::WRITABLE, &[0u8; 16])
            .map_err(vio)?;
        VirtioGpuConfig::read_from_bytes(&bytes).map_err(|_| io::Error::other("short config"))
    }

    /// Makes the VMM side answer every SHMEM_UNMAP with an error.
    pub fn fail_shmem_unmaps(&self, fail: bool) {
        if let Some(s) = &self.shmem {
            s.fail_unmaps
                .store(fail, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The SHMEM_MAP / SHMEM_UNMAP requests seen: `(map?, offset, len)`.
    pub fn shmem_log(&self) -> Vec<(bool, u64, u64)> {
        self.shmem
            .as_ref()
            .map(|s| s.log.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// SHMEM_MAP / SHMEM_UNMAP requests the frontend refused as QEMU 11.1
    /// would (overlapping maps, unmaps of no exact earlier map).
    pub fn shmem_refusals(&self) -> u64 {
        self.shmem
            .as_ref()
            .map_or(0, |s| s.refused.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The driver side of a queue.
    pub fn queue(&mut self, index: usize) -> &mut SplitQueue {
        &mut self.queues[index]
    }

    /// Sends a batch on `queue` (all in flight at once) and returns, in
    /// order, the bytes the device wrote for each.
    pub fn exchange(&mut self, queue: usize, requests: &[Request]) -> io::Result<Vec<Vec<u8>>> {
        self.ram.reset_scratch();
        let mut placed = Vec::with_capacity(requests.len());
        for req in requests {
            placed.push(self.place(queue, req)?);
        }
        self.queues[queue].kick()?;
        let heads: Vec<u16> = placed.iter().map(|(h, _)| *h).collect();
        let done = self.wait_heads(queue, &heads)?;
        placed
            .iter()
            .map(|(head, out)| {
                let len = done.iter().find(|u| u.head == *head).map_or(0, |u| u.len);
                self.read_response(out, len)
            })
            .collect()
    }

    /// Writes a request into scratch memory and offers it (no kick).
    fn place(
        &mut self,
        queue: usize,
        req: &Request,
    ) -> io::Result<(u16, Vec<(GuestAddress, u32)>)> {
        let mut bufs = Vec::new();
        for seg in &req.readable {
            let addr = self.ram.scratch(seg.len().max(1) as u64)?;
            self.ram
                .mem()
                .write_slice(seg, addr)
                .map_err(io::Error::other)?;
            bufs.push(Buffer {
                addr,
                len: seg.len() as u32,
                write: false,
            });
        }
        let mut out = Vec::new();
        for len in &req.writable {
            let addr = self.ram.scratch(u64::from(*len).max(1))?;
            bufs.push(Buffer {
                addr,
                len: *len,
                write: true,
            });
            out.push((addr, *len));
        }
        let head = self.queues[queue].add(self.ram.mem(), &bufs)?;
        Ok((head, out))
    }

    /// Offers one request without waiting; returns its head and where its
    /// response will be. Call [`Vmm::reset_scratch`] once everything posted
    /// has completed.
    pub fn post(
        &mut self,
        queue: usize,
        req: &Request,
    ) -> io::Result<(u16, Vec<(GuestAddress, u32)>)> {
        let placed = self.place(queue, req)?;
        self.queues[queue].kick()?;
        Ok(placed)
    }

    /// Waits for completions on `queue`, in the order the device used them.
    pub fn wait_used(&mut self, queue: usize, timeout: Duration) -> io::Result<Vec<Used>> {
        let mem = self.ram.mem().clone();
        self.queues[queue].wait(&mem, timeout)
    }

    /// Completions already there, without waiting.
    pub fn poll_used(&mut self, queue: usize) -> io::Result<Vec<Used>> {
        let mem = self.ram.mem().clone();
        self.queues[queue].collect(&mem)
    }

    /// Reads a response a posted request got.
    pub fn read_response(&self, out: &[(GuestAddress, u32)], len: u32) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut left = len as usize;
        for (addr, cap) in out {
            let n = left.min(*cap as usize);
            let mut chunk = vec![0u8; n];
            self.ram
                .mem()
                .read_slice(&mut chunk, *addr)
                .map_err(io::Error::other)?;
            bytes.extend_from_slice(&chunk);
            left -= n;
        }
        Ok(bytes)
    }

    /// Frees the guest memory of requests posted with [`Vmm::post`].
    pub fn reset_scratch(&mut self) {
        self.ram.reset_scratch();
    }

    fn wait_heads(&mut self, queue: usize, heads: &[u16]) -> io::Result<Vec<Used>> {
        let mut done: Vec<Used> = Vec::new();
        let timeout = self.timeout;
        while !heads.iter().all(|h| done.iter().any(|u| u.head == *h)) {
            let mem = self.ram.mem().clone();
            done.extend(self.queues[queue].wait(&mem, timeout)?);
        }
        Ok(done)
    }

    /// Sends one command on the control queue and decodes the response.
    pub fn command(&mut self, cmd: &Command<'_>) -> io::Result<(CtrlHdr, Response)> {
        self.command_on(CTRL, cmd)
    }

    /// Sends one command on `queue` and decodes the response.
    pub fn command_on(
        &mut self,
        queue: usize,
        cmd: &Command<'_>,
    ) -> io::Result<(CtrlHdr, Response)> {
        let out = self.exchange(queue, &[Request::of(cmd.to_bytes(), 4096)])?;
        let bytes = out.into_iter().next().unwrap_or_default();
        Response::decode(&bytes)
            .map_err(|e| io::Error::other(format!("{e} ({} bytes)", bytes.len())))
    }

    /// Sends raw bytes on the control queue, returns what the device wrote.
    pub fn raw(&mut self, bytes: Vec<u8>, resp: u32) -> io::Result<Vec<u8>> {
        Ok(self
            .exchange(CTRL, &[Request::of(bytes, resp)])?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Closes the connection (the backend sees the VMM go away).
    pub fn disconnect(self) {
        drop(self);
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.raw.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.req_thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// VHOST_USER_GPU_SET_SOCKET (33) with one fd, as QEMU sends it.
fn send_gpu_set_socket(sock: &UnixStream, fd: RawFd) -> io::Result<()> {
    let mut hdr = Vec::with_capacity(12);
    hdr.extend_from_slice(&33u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    let sent = sock
        .send_with_fd(&hdr[..], fd)
        .map_err(|e| io::Error::other(e.to_string()))?;
    if sent != hdr.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short GPU_SET_SOCKET",
        ));
    }
    let _ = (&*sock).flush();
    Ok(())
}
