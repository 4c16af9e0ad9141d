//! The frontend's end of the vhost-user-gpu display socket: records every
//! message the backend sends and answers the requests that expect a reply,
//! as QEMU does.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

const REPLY: u32 = 0x4;
/// VHOST_USER_GPU_PROTOCOL_F_EDID.
const PROTOCOL_F_EDID: u64 = 1;

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

fn u32_at(b: &[u8], i: usize) -> u32 {
    b.get(i..i + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_msg(sock: &mut UnixStream, modes: &[(u32, u32)]) -> io::Result<Option<DisplayMsg>> {
    let mut hdr = [0u8; 12];
    if sock.read_exact(&mut hdr).is_err() {
        return Ok(None);
    }
    let (request, size) = (u32_at(&hdr, 0), u32_at(&hdr, 8) as usize);
    let mut body = vec![0u8; size];
    sock.read_exact(&mut body)?;
    let reply = |sock: &mut UnixStream, payload: &[u8]| -> io::Result<()> {
        let mut m = Vec::with_capacity(12 + payload.len());
        m.extend_from_slice(&request.to_le_bytes());
        m.extend_from_slice(&REPLY.to_le_bytes());
        m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        m.extend_from_slice(payload);
        sock.write_all(&m)
    };
    Ok(Some(match request {
        // GET_PROTOCOL_FEATURES: EDID, as QEMU offers (QEMU's own backend
        // refuses to run when the guest acked EDID and the frontend lacks it).
        1 => {
            reply(sock, &PROTOCOL_F_EDID.to_le_bytes())?;
            DisplayMsg::Other(1)
        }
        // GET_EDID {scanout}: virtio_gpu_resp_edid for the scanout's mode.
        11 => {
            let scanout = u32_at(&body, 0) as usize;
            let (w, h) = modes.get(scanout).copied().unwrap_or((1280, 800));
            let edid = vgpu_device::edid::edid_for(
                vgpu_device::config::Mode {
                    width: w,
                    height: h,
                },
                scanout as u32,
            );
            let mut resp = vec![0u8; 24 + 8 + 1024];
            resp[0..4].copy_from_slice(&0x1104u32.to_le_bytes());
            resp[24..28].copy_from_slice(&(edid.len() as u32).to_le_bytes());
            resp[32..32 + edid.len()].copy_from_slice(&edid);
            reply(sock, &resp)?;
            DisplayMsg::Other(11)
        }
        3 => {
            // virtio_gpu_resp_display_info: 24-byte header + 16 × 24.
            let mut info = vec![0u8; 24 + 16 * 24];
            info[0..4].copy_from_slice(&0x1101u32.to_le_bytes());
            for (i, (w, h)) in modes.iter().take(16).enumerate() {
                let at = 24 + i * 24;
                info[at + 8..at + 12].copy_from_slice(&w.to_le_bytes());
                info[at + 12..at + 16].copy_from_slice(&h.to_le_bytes());
                info[at + 16..at + 20].copy_from_slice(&1u32.to_le_bytes());
            }
            reply(sock, &info)?;
            DisplayMsg::Other(3)
        }
        4 | 5 => DisplayMsg::CursorPos {
            scanout: u32_at(&body, 0),
            x: u32_at(&body, 4),
            y: u32_at(&body, 8),
            visible: request == 4,
        },
        6 => DisplayMsg::CursorUpdate {
            scanout: u32_at(&body, 0),
            hot: (u32_at(&body, 12), u32_at(&body, 16)),
            image: body.get(20..).unwrap_or_default().to_vec(),
        },
        7 => DisplayMsg::Scanout {
            scanout: u32_at(&body, 0),
            width: u32_at(&body, 4),
            height: u32_at(&body, 8),
        },
        8 => DisplayMsg::Update {
            scanout: u32_at(&body, 0),
            x: u32_at(&body, 4),
            y: u32_at(&body, 8),
            width: u32_at(&body, 12),
            height: u32_at(&body, 16),
            data: body.get(20..).unwrap_or_default().to_vec(),
        },
        10 => {
            reply(sock, &[])?;
            DisplayMsg::Other(10)
        }
        other => DisplayMsg::Other(other),
    }))
}
