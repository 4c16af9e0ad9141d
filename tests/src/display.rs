//! The frontend's end of the vhost-user-gpu display socket: records every
//! message the backend sends and answers the requests that expect a reply,
//! as QEMU does.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vgpu_proto::virtio_gpu::ResponseType;
use vhost::vhost_user::gpu_message::{
    GpuBackendReq, VhostUserGpuCursorPos, VhostUserGpuCursorUpdate, VhostUserGpuEdidRequest,
    VhostUserGpuHeaderFlag, VhostUserGpuScanout, VhostUserGpuUpdate, VirtioGpuRespDisplayInfo,
    VirtioGpuRespGetEdid, VIRTIO_GPU_MAX_SCANOUTS,
};
use vm_memory::ByteValued;

/// A message the backend sent on the display socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayMsg {
    /// SCANOUT: a scanout shows a `width`×`height` image (0×0: off).
    Scanout {
        /// Scanout.
        scanout: u32,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// UPDATE with its pixels (B, G, R, X).
    Update {
        /// Scanout.
        scanout: u32,
        /// x.
        x: u32,
        /// y.
        y: u32,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Pixels.
        data: Vec<u8>,
    },
    /// CURSOR_POS / CURSOR_POS_HIDE.
    CursorPos {
        /// Scanout.
        scanout: u32,
        /// x.
        x: u32,
        /// y.
        y: u32,
        /// Shown.
        visible: bool,
    },
    /// CURSOR_UPDATE with the 64×64 image.
    CursorUpdate {
        /// Scanout.
        scanout: u32,
        /// Hotspot.
        hot: (u32, u32),
        /// Image (B, G, R, A).
        image: Vec<u8>,
    },
    /// Any other request, by number.
    Other(u32),
}

/// Records the display socket's traffic on a thread.
#[derive(Debug)]
pub struct DisplayRecorder {
    msgs: Arc<(Mutex<Vec<DisplayMsg>>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// VHOST_USER_GPU_PROTOCOL_F_EDID as a mask (bit 0). Not
/// `VhostUserGpuProtocolFeatures::EDID`: vhost 0.18 declares the flags by
/// bit number (`EDID = 0`, `DMABUF2 = 1`), so its `EDID.bits()` is 0.
const PROTOCOL_F_EDID: u64 = 1 << 0;

/// The message header (request, flags, payload size; native byte order as
/// the vhost-user spec says). vhost keeps its `VhostUserGpuMsgHeader`
/// private to the crate, so it is read and written by hand here.
const HEADER_BYTES: usize = 12;

impl DisplayRecorder {
    /// Serves `sock` (QEMU's end), answering GET_DISPLAY_INFO with `modes`.
    pub fn spawn(mut sock: UnixStream, modes: Vec<(u32, u32)>) -> Self {
        let msgs: Arc<(Mutex<Vec<DisplayMsg>>, Condvar)> = Arc::default();
        let shared = msgs.clone();
        let thread = std::thread::spawn(move || {
            while let Ok(Some(msg)) = read_msg(&mut sock, &modes) {
                let (lock, cv) = &*shared;
                lock.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
                cv.notify_all();
            }
        });
        Self {
            msgs,
            thread: Some(thread),
        }
    }

    /// Everything recorded so far.
    pub fn messages(&self) -> Vec<DisplayMsg> {
        self.msgs
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until a recorded message satisfies `pred`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&DisplayMsg) -> bool,
    ) -> Option<DisplayMsg> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.msgs;
        let mut msgs = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(m) = msgs.iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            msgs = cv
                .wait_timeout(msgs, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.msgs
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Drop for DisplayRecorder {
    fn drop(&mut self) {
        // The thread ends when the backend closes its end.
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// `T` from the front of `body`, zero-extended when the body is short (as
/// QEMU reads a short message: the missing fields are 0).
fn body_as<T: ByteValued + Default>(body: &[u8]) -> T {
    let mut v = T::default();
    let dst = v.as_mut_slice();
    let n = dst.len().min(body.len());
    dst[..n].copy_from_slice(&body[..n]);
    v
}

/// What follows `T` in `body` (an UPDATE's pixels, a cursor's image).
fn after<T>(body: &[u8]) -> &[u8] {
    body.get(size_of::<T>()..).unwrap_or_default()
}

fn read_msg(sock: &mut UnixStream, modes: &[(u32, u32)]) -> io::Result<Option<DisplayMsg>> {
    let mut hdr = [0u8; HEADER_BYTES];
    if sock.read_exact(&mut hdr).is_err() {
        return Ok(None);
    }
    let field = |i: usize| u32::from_ne_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    let (request, size) = (field(0), field(8) as usize);
    let mut body = vec![0u8; size];
    sock.read_exact(&mut body)?;
    let reply = |sock: &mut UnixStream, payload: &[u8]| -> io::Result<()> {
        let mut m = Vec::with_capacity(HEADER_BYTES + payload.len());
        m.extend_from_slice(&request.to_ne_bytes());
        m.extend_from_slice(&VhostUserGpuHeaderFlag::REPLY.bits().to_ne_bytes());
        m.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
        m.extend_from_slice(payload);
        sock.write_all(&m)
    };
    let Ok(req) = GpuBackendReq::try_from(request) else {
        return Ok(Some(DisplayMsg::Other(request)));
    };
    Ok(Some(match req {
        // EDID, as QEMU offers (QEMU's own backend refuses to run when the
        // guest acked EDID and the frontend lacks it).
        GpuBackendReq::GET_PROTOCOL_FEATURES => {
            reply(sock, &PROTOCOL_F_EDID.to_ne_bytes())?;
            DisplayMsg::Other(request)
        }
        // virtio_gpu_resp_edid for the scanout's mode.
        GpuBackendReq::GET_EDID => {
            let scanout = body_as::<VhostUserGpuEdidRequest>(&body).scanout_id;
            let (w, h) = modes.get(scanout as usize).copied().unwrap_or((1280, 800));
            let edid = vgpu_device::edid::edid_for(
                vgpu_device::config::Mode {
                    width: w,
                    height: h,
                },
                scanout,
            );
            let mut resp = VirtioGpuRespGetEdid::default();
            resp.hdr.type_ = ResponseType::OkEdid.value();
            let n = edid.len().min(resp.edid.len());
            resp.size = n as u32;
            resp.edid[..n].copy_from_slice(&edid[..n]);
            reply(sock, resp.as_slice())?;
            DisplayMsg::Other(request)
        }
        GpuBackendReq::GET_DISPLAY_INFO => {
            let mut info = VirtioGpuRespDisplayInfo::default();
            info.hdr.type_ = ResponseType::OkDisplayInfo.value();
            for (one, &(w, h)) in info
                .pmodes
                .iter_mut()
                .zip(modes)
                .take(VIRTIO_GPU_MAX_SCANOUTS)
            {
                one.r.width = w;
                one.r.height = h;
                one.enabled = 1;
            }
            reply(sock, info.as_slice())?;
            DisplayMsg::Other(request)
        }
        GpuBackendReq::CURSOR_POS | GpuBackendReq::CURSOR_POS_HIDE => {
            let pos = body_as::<VhostUserGpuCursorPos>(&body);
            DisplayMsg::CursorPos {
                scanout: pos.scanout_id,
                x: pos.x,
                y: pos.y,
                visible: req == GpuBackendReq::CURSOR_POS,
            }
        }
        GpuBackendReq::CURSOR_UPDATE => {
            let cursor = body_as::<VhostUserGpuCursorUpdate>(&body);
            DisplayMsg::CursorUpdate {
                scanout: cursor.pos.scanout_id,
                hot: (cursor.hot_x, cursor.hot_y),
                image: after::<VhostUserGpuCursorUpdate>(&body).to_vec(),
            }
        }
        GpuBackendReq::SCANOUT => {
            let scanout = body_as::<VhostUserGpuScanout>(&body);
            DisplayMsg::Scanout {
                scanout: scanout.scanout_id,
                width: scanout.width,
                height: scanout.height,
            }
        }
        GpuBackendReq::UPDATE => {
            let update = body_as::<VhostUserGpuUpdate>(&body);
            DisplayMsg::Update {
                scanout: update.scanout_id,
                x: update.x,
                y: update.y,
                width: update.width,
                height: update.height,
                data: after::<VhostUserGpuUpdate>(&body).to_vec(),
            }
        }
        // DMABUF_UPDATE waits for an empty reply.
        GpuBackendReq::DMABUF_UPDATE => {
            reply(sock, &[])?;
            DisplayMsg::Other(request)
        }
        _ => DisplayMsg::Other(request),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vhost::vhost_user::GpuBackend;

    // The recorder against vhost's own backend end of the socket: what the
    // daemon sends is what the recorder sees, and its replies decode.
    #[test]
    fn the_recorder_speaks_the_crates_protocol() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let rec = DisplayRecorder::spawn(ours, vec![(1024, 768), (640, 480)]);
        let gpu = GpuBackend::from_stream(theirs);

        let features = gpu.get_protocol_features().expect("protocol features");
        assert_eq!({ features.value }, PROTOCOL_F_EDID);
        let info = gpu.get_display_info().expect("display info");
        assert_eq!(info.hdr.type_, ResponseType::OkDisplayInfo.value());
        assert_eq!(
            (info.pmodes[1].r.width, info.pmodes[1].r.height),
            (640, 480)
        );
        assert_eq!(info.pmodes[1].enabled, 1);
        assert_eq!(info.pmodes[2].enabled, 0);
        let edid = gpu
            .get_edid(&VhostUserGpuEdidRequest { scanout_id: 1 })
            .expect("edid");
        assert_eq!(edid.hdr.type_, ResponseType::OkEdid.value());
        let want = vgpu_device::edid::edid_for(
            vgpu_device::config::Mode {
                width: 640,
                height: 480,
            },
            1,
        );
        assert_eq!(&edid.edid[..edid.size as usize], &want[..]);

        gpu.set_scanout(&VhostUserGpuScanout {
            scanout_id: 1,
            width: 640,
            height: 480,
        })
        .expect("scanout");
        let update = VhostUserGpuUpdate {
            scanout_id: 1,
            x: 2,
            y: 3,
            width: 1,
            height: 2,
        };
        gpu.update_scanout(&update, &[1, 2, 3, 4, 5, 6, 7, 8])
            .expect("update");
        let pos = VhostUserGpuCursorPos {
            scanout_id: 1,
            x: 10,
            y: 20,
        };
        gpu.cursor_pos(&pos).expect("cursor");
        gpu.cursor_pos_hide(&pos).expect("cursor hide");
        let image = [7u8; 4 * 64 * 64];
        gpu.cursor_update(
            &VhostUserGpuCursorUpdate {
                pos,
                hot_x: 4,
                hot_y: 5,
            },
            &image,
        )
        .expect("cursor update");
        gpu.update_dmabuf_scanout(&update)
            .expect("DMABUF_UPDATE is answered");

        let last = rec.wait_for(Duration::from_secs(10), |m| {
            *m == DisplayMsg::Other(GpuBackendReq::DMABUF_UPDATE.into())
        });
        assert!(last.is_some(), "{:?}", rec.messages());
        assert_eq!(
            rec.messages(),
            [
                DisplayMsg::Other(1),
                DisplayMsg::Other(3),
                DisplayMsg::Other(11),
                DisplayMsg::Scanout {
                    scanout: 1,
                    width: 640,
                    height: 480
                },
                DisplayMsg::Update {
                    scanout: 1,
                    x: 2,
                    y: 3,
                    width: 1,
                    height: 2,
                    data: vec![1, 2, 3, 4, 5, 6, 7, 8]
                },
                DisplayMsg::CursorPos {
                    scanout: 1,
                    x: 10,
                    y: 20,
                    visible: true
                },
                DisplayMsg::CursorPos {
                    scanout: 1,
                    x: 10,
                    y: 20,
                    visible: false
                },
                DisplayMsg::CursorUpdate {
                    scanout: 1,
                    hot: (4, 5),
                    image: image.to_vec()
                },
                DisplayMsg::Other(10),
            ]
        );
    }

    #[test]
    fn a_short_body_reads_as_zeros() {
        let s: VhostUserGpuScanout = body_as(&[7, 0, 0, 0, 9]);
        assert_eq!((s.scanout_id, s.width, s.height), (7, 9, 0));
        assert!(after::<VhostUserGpuUpdate>(&[0; 4]).is_empty());
    }
}
