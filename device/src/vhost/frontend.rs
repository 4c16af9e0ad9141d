//! What the frontend (the VMM) asks through the vhost-user protocol:
//! features, config space, memory, the display and shared-memory channels,
//! ring stops, and the events of the worker's epoll loop.

use super::*;

impl VhostUserBackend for VgpuBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        let mut f = 1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | 1 << VIRTIO_GPU_F_EDID
            | 1 << VIRTIO_GPU_F_RESOURCE_UUID
            | 1 << VIRTIO_GPU_F_RESOURCE_BLOB
            | 1 << VIRTIO_GPU_F_CONTEXT_INIT;
        if self.cfg.virgl {
            f |= 1 << VIRTIO_GPU_F_VIRGL;
        }
        // VIRTIO_F_RING_RESET is offered, and a queue reset is handled the
        // one way vhost-user can deliver it: the protocol has no per-queue
        // reset request (none in the vhost-user spec or in vhost 0.18's
        // request set), so a frontend that resets one queue stops it
        // (GET_VRING_BASE) and starts it again (SET_VRING_NUM/ADDR/BASE,
        // KICK, SET_VRING_ENABLE) — as QEMU's vhost-user-net does.
        // vhost-user-backend 0.24 stops and restarts the ring; `stop_vring`
        // and `settle_restart` drop what the worker held for it and keep
        // the device's resources (module docs, "Stops, restarts and
        // resets").
        //
        // Not offering it would break QEMU 10's vhost-user-gpu-pci, the
        // device the real-VM test boots twice: it offers the guest QEMU's
        // own transport features, RING_RESET among them (on by default
        // since QEMU 7.2; the 7.2 fix that masks the bit by the backend's
        // features, "vhost: mask VIRTIO_F_RING_RESET for vhost and
        // vhost-user devices", left vhost-user-gpu out), a Linux >= 6.0
        // guest acks it, and vhost_user_backend_start() sends the guest's
        // features verbatim in SET_FEATURES. vhost-user-backend refuses a
        // SET_FEATURES carrying a bit the backend does not offer, and the
        // failed request ends the connection: the guest would lose its GPU
        // at DRIVER_OK. (QEMU's vhost-user-gpu and generic vhost-user
        // device forward no queue reset at all — neither has a queue_reset
        // hook — and the Linux virtio-gpu driver never resets one queue.)
        f | 1 << VIRTIO_F_RING_RESET
    }

    fn acked_features(&self, features: u64) {
        // The vhost-user handler thread: narrow its system calls.
        crate::sandbox::enter(crate::sandbox::ThreadKind::Frontend);
        log::debug!("features acked: {features:#x}");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::SHMEM
    }

    fn reset_device(&self) {
        lock(&self.inbox).reset = true;
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE marked the ring not ready before calling this, so
        // the worker takes nothing more from it: its index is the one the
        // frontend gets back. Before the worker's first event nothing was
        // taken from any ring, so there is nothing to keep track of.
        let q = queue_index as usize;
        let Some(base) = self
            .vrings
            .get()
            .and_then(|v| v.get(q))
            .map(|v| v.queue_next_avail())
        else {
            return Ok(());
        };
        if let Some(slot) = lock(&self.inbox).stopped.get_mut(q) {
            log::debug!("queue {q} stopped at index {base}");
            *slot = Some(base);
        }
        Ok(())
    }

    fn set_event_idx(&self, enabled: bool) {
        *lock(&self.event_idx) = enabled;
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = VirtioGpuConfig {
            events_read: 0.into(),
            events_clear: 0.into(),
            num_scanouts: (self.cfg.scanouts.len() as u32).into(),
            num_capsets: u32::from(self.cfg.virgl).into(),
        };
        let bytes = config.as_bytes();
        let mut out = vec![0u8; size as usize];
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        out[..end - start].copy_from_slice(&bytes[start..end]);
        out
    }

    fn set_config(&self, _offset: u32, _buf: &[u8]) -> io::Result<()> {
        // events_clear: vgpu raises no config events of its own (QEMU
        // handles display-change events itself).
        Ok(())
    }

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        *lock(&self.mem) = Some(mem);
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        lock(&self.inbox).mapper = Some(backend);
    }

    fn set_gpu_socket(&self, gpu_backend: GpuBackend) -> io::Result<()> {
        log::info!("display channel connected");
        lock(&self.inbox).display = Some(gpu_backend);
        Ok(())
    }

    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        Ok(VhostUserShMemConfig::new(1, &[0, self.cfg.hostmem_size]))
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        Some((self.exit.0.try_clone().ok()?, self.exit.1.try_clone().ok()?))
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        // This thread runs guest commands: narrow its system calls.
        crate::sandbox::enter(crate::sandbox::ThreadKind::QueueWorker);
        self.vrings.get_or_init(|| vrings.to_vec());
        let Some(mem) = lock(&self.mem).clone() else {
            // Level-triggered: consume the timer and the signaled fences,
            // or the worker would wake for them again and again.
            let mut st = lock(&self.state);
            match device_event {
                TIMER_EVENT => {
                    st.timer.consume();
                }
                FENCE_EVENT => {
                    st.gpu.engine().poll(Instant::now());
                }
                // No guest memory yet, so no guest mappings: just drain.
                PURGE_EVENT => st.gpu.remap_purged(),
                _ => {}
            }
            return Ok(());
        };
        let mut st = lock(&self.state);
        let st = &mut *st;
        self.apply_inbox(st, vrings);
        let result = match device_event {
            CONTROL_QUEUE | CURSOR_QUEUE => self.run_queue(st, vrings, device_event, &mem),
            TIMER_EVENT | FENCE_EVENT => {
                if device_event == TIMER_EVENT {
                    // Never blocks, even if queue work in this wake-up
                    // re-armed or disarmed the timer.
                    st.timer.consume();
                }
                st.gpu.engine().poll(Instant::now());
                match vrings.get(CONTROL_QUEUE as usize) {
                    Some(v) => {
                        self.retire(st, vrings)
                            .and_then(|used| if used { self.signal(v) } else { Ok(()) })
                    }
                    None => Ok(()),
                }
            }
            PURGE_EVENT => {
                st.gpu.remap_purged();
                Ok(())
            }
            other => {
                log::warn!("unexpected event {other}");
                Ok(())
            }
        };
        // Errors here mean the rings themselves are unusable (bad used-ring
        // address): log them and keep the worker alive for the next event.
        if let Err(e) = result.and_then(|()| self.arm_timer(st)) {
            log::error!("queue processing failed: {e}");
        }
        Ok(())
    }
}
