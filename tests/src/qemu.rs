//! Booting a real guest under QEMU against a vhost-user-gpu backend: the
//! QEMU process (TCG, memfd-backed shared RAM, `vhost-user-gpu-pci` or
//! QEMU 11.1's generic `vhost-user-test-device-pci`), its serial console as
//! lines in and out, and QMP for screendumps.
//!
//! Every wait is bounded; only the QEMU process started here is killed.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Guest initramfs.
    pub initrd: PathBuf,
    /// Extra kernel command line (`vgpu.loop_ms=…`).
    pub append: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// How the GPU is attached.
    pub device: GpuDevice,
}

/// The guest image and the daemon a real-VM runner boots
/// (`integration/build-guest-image.sh` makes the image).
#[derive(Debug, Clone, clap::Args)]
pub struct GuestArgs {
    /// Guest kernel (from integration/build-guest-image.sh).
    #[arg(long)]
    pub kernel: PathBuf,
    /// Guest initramfs holding the guest test program.
    #[arg(long)]
    pub initrd: PathBuf,
    /// The vgpu daemon binary.
    #[arg(long)]
    pub daemon: PathBuf,
}

/// How QEMU attaches the vhost-user GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuDevice {
    /// `vhost-user-gpu-pci`: QEMU's display channel, but only the VIRGL,
    /// EDID and RESOURCE_UUID features reach the guest (QEMU 10 and 11.1).
    VhostUserGpu,
    /// QEMU 11.1's `vhost-user-test-device-pci` as a virtio-gpu (device id
    /// 16, two queues, 16 bytes of config): every feature bit the backend
    /// offers and its shared-memory region reach the guest; no display
    /// channel.
    Generic,
}

impl GpuDevice {
    /// The `-device` argument, on chardev `vgpu`.
    pub fn arg(self) -> &'static str {
        match self {
            GpuDevice::VhostUserGpu => "vhost-user-gpu-pci,chardev=vgpu,id=gpu0",
            GpuDevice::Generic => {
                "vhost-user-test-device-pci,chardev=vgpu,virtio-id=16,num_vqs=2,config_size=16,id=gpu0"
            }
        }
    }
}

/// A running guest.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    qmp_path: PathBuf,
    /// Everything the serial console printed so far.
    pub serial: Vec<String>,
}

impl Vm {
    /// Boots the guest with its GPU on the backend socket `gpu_socket`; the
    /// QMP socket goes in `work`.
    pub fn boot(cfg: &VmConfig, gpu_socket: &Path, work: &Path) -> io::Result<Self> {
        let qmp_path = work.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp_path);
        let mem = format!("{}M", cfg.memory_mib);
        let mut child = Command::new(&cfg.qemu)
            .args([
                "-machine",
                "q35,accel=tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                &mem,
            ])
            .args([
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
            ])
            .args(["-numa", "node,memdev=mem"])
            .arg("-kernel")
            .arg(&cfg.kernel)
            .arg("-initrd")
            .arg(&cfg.initrd)
            .args(["-append", &format!("console=ttyS0 panic=-1 {}", cfg.append)])
            .args(["-nodefaults", "-no-user-config", "-no-reboot"])
            .args(["-vga", "none", "-display", "none"])
            .arg("-chardev")
            .arg(format!("socket,id=vgpu,path={}", gpu_socket.display()))
            .args(["-device", cfg.device.arg()])
            .args(["-serial", "stdio"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no QEMU stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no QEMU stdout"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no QEMU stderr"))?;
        let (tx, lines) = mpsc::channel();
        crate::guest_run::forward_lines(stdout, "", tx.clone());
        crate::guest_run::forward_lines(stderr, "qemu: ", tx);
        Ok(Self {
            child,
            stdin,
            lines,
            qmp_path,
            serial: Vec::new(),
        })
    }

    /// The next console line, waiting until `deadline`; `None` when the
    /// deadline passed or QEMU closed its output.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.serial.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes a line to the guest's console.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes())?;
        self.stdin.flush()
    }

    /// A QMP screendump of the display into `path` (PPM).
    pub fn screendump(&self, path: &Path) -> io::Result<()> {
        let mut qmp = Qmp::connect(&self.qmp_path, Duration::from_secs(10))?;
        qmp.execute(
            "screendump",
            serde_json::json!({ "filename": path.to_string_lossy() }),
        )?;
        Ok(())
    }

    /// Waits (bounded) for QEMU to exit after the guest powered off; kills
    /// it if it does not. Whether it exited by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.serial.push(line);
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // Drain what is left.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.serial.push(line);
                }
                return true;
            }
            if Instant::now() > deadline {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU (only this one).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A QMP connection.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path, timeout: Duration) -> io::Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut q = Self {
            reader: BufReader::new(stream),
            writer,
        };
        q.read_reply()?; // the greeting
        q.execute("qmp_capabilities", serde_json::json!({}))?;
        Ok(q)
    }

    fn read_reply(&mut self) -> io::Result<serde_json::Value> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::other("QMP closed"));
            }
            let v: serde_json::Value = serde_json::from_str(&line).map_err(io::Error::other)?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    fn execute(&mut self, cmd: &str, args: serde_json::Value) -> io::Result<serde_json::Value> {
        let req = serde_json::json!({ "execute": cmd, "arguments": args });
        self.writer.write_all(format!("{req}\n").as_bytes())?;
        let reply = self.read_reply()?;
        if let Some(e) = reply.get("error") {
            return Err(io::Error::other(format!("QMP {cmd}: {e}")));
        }
        Ok(reply)
    }
}

impl crate::guest_run::Console for Vm {
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        Vm::next_line(self, deadline)
    }

    fn send_line(&mut self, line: &str) -> io::Result<()> {
        Vm::send_line(self, line)
    }

    fn screendump(&self, path: &Path) -> io::Result<()> {
        Vm::screendump(self, path)
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        Vm::wait_exit(self, timeout)
    }

    fn take_serial(&mut self) -> Vec<String> {
        std::mem::take(&mut self.serial)
    }
}
