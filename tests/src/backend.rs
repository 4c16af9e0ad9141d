//! Starting a backend for the harness to talk to: the vgpu daemon in this
//! process (over a real socket, with its buffer manager at hand for
//! assertions), or any vhost-user-gpu backend program (`{sock}` in its
//! command line is replaced by the socket path).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::Arc;

use vgpu_backend::pressure::{MonitorConfig, MonitorHandle, SourceChoice};
use vgpu_backend::BufferManager;
use vgpu_device::config::DeviceConfig;
use vgpu_device::daemon::Daemon;
use vgpu_device::service::{Service, ServiceConfig};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The `vhost-user-vgpu` binary of this build (in the target directory
/// next to the running test or tool), built with cargo if it is not there
/// yet (a test run of this crate alone).
pub fn daemon_binary() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("vhost-user-vgpu");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "vgpu-device", "--bin", "vhost-user-vgpu"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status()?;
        if !status.success() || !path.exists() {
            return Err(io::Error::other(format!(
                "could not build {}",
                path.display()
            )));
        }
    }
    Ok(path)
}

/// A fresh directory for one backend's socket.
fn socket_dir() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "vgpu-harness-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A running backend.
#[derive(Debug)]
pub struct RunningBackend {
    sock: PathBuf,
    dir: PathBuf,
    service: Option<Arc<Service>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    child: Option<Child>,
}

impl RunningBackend {
    /// The vgpu daemon in this process, serving `connections` connections
    /// one after the other (then its thread ends). Its admin socket is
    /// open and its pressure monitor runs, seeing pressure only when told
    /// (meminfo with a zero watermark).
    pub fn in_process(cfg: DeviceConfig, connections: usize) -> io::Result<Self> {
        Self::with_monitor(
            cfg,
            MonitorConfig {
                source: SourceChoice::Meminfo,
                low_watermark: Some(0),
                ..MonitorConfig::default()
            },
            connections,
        )
    }

    /// As [`Self::in_process`], with this pressure monitor.
    pub fn with_monitor(
        cfg: DeviceConfig,
        monitor: MonitorConfig,
        connections: usize,
    ) -> io::Result<Self> {
        let bm = BufferManager::emulated_with_cache(cfg.device_memory, cfg.buffer_cache)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Self::with_buffer_manager(cfg, monitor, bm, connections)
    }

    /// As [`Self::in_process`], over a given buffer manager (for example one
    /// on a fake Intel kernel).
    pub fn with_buffer_manager(
        cfg: DeviceConfig,
        monitor: MonitorConfig,
        bm: BufferManager,
        connections: usize,
    ) -> io::Result<Self> {
        let dir = socket_dir()?;
        let sock = dir.join("vgpu.sock");
        let service = Arc::new(
            Service::start_with(
                ServiceConfig {
                    device: cfg,
                    monitor,
                    admin_socket: Some(dir.join("vgpu.sock.admin")),
                    gpu: vgpu_backend::intel::detect::GpuChoice::Emulated,
                    dri_dir: PathBuf::from("/dev/dri"),
                },
                bm,
            )
            .map_err(io::Error::other)?,
        );
        let mut listener =
            Daemon::bind(&sock.to_string_lossy()).map_err(|e| io::Error::other(e.to_string()))?;
        let running = service.clone();
        let thread = std::thread::Builder::new()
            .name("vgpu-daemon".into())
            .spawn(move || {
                for _ in 0..connections {
                    running
                        .daemon()
                        .serve_one(&mut listener)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })?;
        Ok(Self {
            sock,
            dir,
            service: Some(service),
            thread: Some(thread),
            child: None,
        })
    }

    /// Any backend program; `{sock}` in `cmdline` becomes the socket path.
    /// Waits (bounded) for the socket to appear.
    pub fn command(cmdline: &str) -> io::Result<Self> {
        Self::command_with(cmdline, &[])
    }

    /// As [`Self::command`], with `extra` arguments appended verbatim (for
    /// arguments that contain spaces).
    pub fn command_with(cmdline: &str, extra: &[&str]) -> io::Result<Self> {
        Self::command_logged(cmdline, extra, None)
    }

    /// As [`Self::command_with`], with the program's standard error going
    /// to `log` (appended) instead of this process's.
    pub fn command_logged(cmdline: &str, extra: &[&str], log: Option<&Path>) -> io::Result<Self> {
        Self::spawn(cmdline, extra, log, None)
    }

    /// As [`Self::command_logged`], the program started inside the cgroup
    /// whose `cgroup.procs` is `procs` (it joins before it runs, so it
    /// arms its pressure sources on that cgroup).
    pub fn command_in_cgroup(
        cmdline: &str,
        extra: &[&str],
        log: Option<&Path>,
        procs: &Path,
    ) -> io::Result<Self> {
        Self::spawn(cmdline, extra, log, Some(procs))
    }

    fn spawn(
        cmdline: &str,
        extra: &[&str],
        log: Option<&Path>,
        procs: Option<&Path>,
    ) -> io::Result<Self> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => Stdio::inherit(),
        };
        let dir = socket_dir()?;
        let sock = dir.join("backend.sock");
        let line = cmdline.replace("{sock}", &sock.to_string_lossy());
        let mut words = line.split_whitespace();
        let program = words
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty backend command"))?;
        let mut command = match procs {
            // The shell writes its own pid, then becomes the program.
            Some(procs) => {
                let mut c = Command::new("sh");
                c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
                    .arg(procs)
                    .arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = command
            .args(words)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let mut me = Self {
            sock,
            dir,
            service: None,
            thread: None,
            child: Some(child),
        };
        me.wait_for_socket(Duration::from_secs(10))?;
        Ok(me)
    }

    fn wait_for_socket(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.sock.exists() {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!("backend exited early: {status}")));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "backend socket never appeared",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// The in-process daemon's buffer manager.
    pub fn buffer_manager(&self) -> Option<&BufferManager> {
        self.service.as_deref().map(Service::buffer_manager)
    }

    /// The in-process daemon's admin socket.
    pub fn admin_socket(&self) -> Option<&Path> {
        self.service.as_deref().and_then(Service::admin_socket)
    }

    /// The in-process daemon's pressure monitor.
    pub fn monitor(&self) -> Option<MonitorHandle> {
        self.service.as_deref().map(Service::monitor)
    }

    /// Waits (bounded) for the in-process daemon to finish its connections.
    pub fn join(&mut self, timeout: Duration) -> io::Result<()> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        while !t.is_finished() {
            if Instant::now() > deadline {
                self.thread = Some(t);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "daemon did not finish",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match t.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::other("daemon thread panicked")),
        }
    }

    /// The backend program's process id (`None` in process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits (bounded) for the backend program to exit by itself; its exit
    /// status (killed after the timeout).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        self.wait_for_exit(timeout, "the backend did not exit")
    }

    /// Sends the backend program SIGTERM and waits (bounded) for it to
    /// exit; its exit status.
    pub fn terminate(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        sigterm(self.program()?)?;
        self.wait_for_exit(timeout, "the backend did not exit on SIGTERM (killed)")
    }

    fn program(&mut self) -> io::Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| io::Error::other("not a backend program"))
    }

    fn wait_for_exit(
        &mut self,
        timeout: Duration,
        why: &'static str,
    ) -> io::Result<std::process::ExitStatus> {
        wait_or_kill(self.program()?, timeout, why)
    }

    /// Whether the backend program is still running.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => self.thread.as_ref().is_some_and(|t| !t.is_finished()),
        }
    }
}

/// Sends `child` SIGTERM.
pub fn sigterm(child: &Child) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32)
        .ok_or_else(|| io::Error::other("no pid"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    Ok(())
}

/// Waits up to `timeout` for `child` to exit; kills it if it does not and
/// says `why` (a TimedOut error).
pub fn wait_or_kill(
    child: &mut Child,
    timeout: Duration,
    why: &'static str,
) -> io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(io::ErrorKind::TimedOut, why));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for RunningBackend {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
