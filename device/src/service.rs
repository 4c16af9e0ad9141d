//! The whole daemon put together: the buffer manager, the pressure
//! monitor, the admin socket and the connection loop. The binary and the
//! test harness both start it this way.
//!
//! Owns: the start-up order (buffer manager, monitor, admin socket, then
//! VMM connections) and the shut-down order (the reverse, on drop).

use std::path::{Path, PathBuf};

use vgpu_backend::intel::detect::{self, GpuChoice};
use vgpu_backend::intel::GemDriver;
use vgpu_backend::pressure::{MonitorConfig, MonitorHandle, PressureMonitor};
use vgpu_backend::BufferManager;

use crate::admin::{bind_private, AdminHandler, AdminServer};
use crate::config::DeviceConfig;
use crate::daemon::Daemon;

/// What to start.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The device.
    pub device: DeviceConfig,
    /// The pressure monitor.
    pub monitor: MonitorConfig,
    /// The admin socket, if any.
    pub admin_socket: Option<PathBuf>,
    /// Which GPU backs buffers (`--gpu`).
    pub gpu: GpuChoice,
    /// Where render nodes are looked for.
    pub dri_dir: PathBuf,
}

impl ServiceConfig {
    /// Defaults: the emulated device, no admin socket, `/dev/dri`.
    pub fn emulated(device: DeviceConfig) -> Self {
        Self {
            device,
            monitor: MonitorConfig::default(),
            admin_socket: None,
            gpu: GpuChoice::Emulated,
            dri_dir: PathBuf::from("/dev/dri"),
        }
    }
}

/// A running daemon, minus its connection loop (see [`Service::daemon`]).
pub struct Service {
    daemon: Daemon,
    monitor: PressureMonitor,
    admin: Option<AdminServer>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("admin", &self.admin_socket())
            .finish()
    }
}

impl Service {
    /// Sets up the buffer manager on the GPU `--gpu` chose (an Intel
    /// render node, or the emulated device), starts the monitor and opens
    /// the admin socket.
    pub fn start(mut cfg: ServiceConfig) -> Result<Self, String> {
        let found = detect::choose(&cfg.gpu, &cfg.dri_dir)?;
        let bm = match &found.kernel {
            Some(kernel) => {
                if let Some(id) = kernel.device_id().and_then(|id| u16::try_from(id).ok()) {
                    cfg.device.pci_device_id = id;
                }
                let driver =
                    GemDriver::new(kernel.clone()).map_err(|e| format!("{}: {e}", found.reason))?;
                BufferManager::new(&driver)
                    .map_err(|e| format!("setting up the buffer manager: {e}"))?
            }
            None => BufferManager::emulated_with_cache(
                cfg.device.device_memory,
                cfg.device.buffer_cache,
            )
            .map_err(|e| format!("setting up the buffer manager: {e}"))?,
        };
        log::info!("GPU: {}", found.reason);
        Self::start_with(cfg, bm)
    }

    /// As [`Self::start`], over a given buffer manager.
    pub fn start_with(cfg: ServiceConfig, bm: BufferManager) -> Result<Self, String> {
        let monitor = PressureMonitor::start(bm.clone(), cfg.monitor)
            .map_err(|e| format!("starting the pressure monitor: {e}"))?;
        let daemon = Daemon::new(cfg.device, bm.clone());
        let admin = match &cfg.admin_socket {
            Some(path) => {
                let listener = bind_private(path)
                    .map_err(|e| format!("admin socket {}: {e}", path.display()))?;
                let handler = AdminHandler::new(bm.clone(), monitor.handle())
                    .with_screens(daemon.screens().clone());
                let server = AdminServer::start(listener, handler, Some(path.clone()))
                    .map_err(|e| format!("admin socket {}: {e}", path.display()))?;
                log::info!("admin socket at {} (vgpuctl --socket {0})", path.display());
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            daemon,
            monitor,
            admin,
        })
    }

    /// The connection loop.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// The buffer manager.
    pub fn buffer_manager(&self) -> &BufferManager {
        self.daemon.buffer_manager()
    }

    /// The monitor's handle (inject events, shrink with a record).
    pub fn monitor(&self) -> MonitorHandle {
        self.monitor.handle()
    }

    /// The admin socket path, if one is open.
    pub fn admin_socket(&self) -> Option<&Path> {
        self.admin.as_ref().and_then(AdminServer::path)
    }
}
