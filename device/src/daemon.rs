//! The connection loop: accept a VMM, serve it until it disconnects, free
//! everything it held, accept the next one. A socket handed over already
//! connected (libvirt's `--fd`: one end of a socket pair whose other end
//! QEMU has) is served once.
//!
//! A `VhostUserDaemon` cannot be reused after a disconnect (the next
//! SET_OWNER would be refused), so each connection gets a fresh backend
//! and daemon; the buffer manager and the listening socket outlive them.

use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vgpu_backend::BufferManager;
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::config::DeviceConfig;
use crate::screens::Screens;
use crate::vhost::VgpuBackend;

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The listening socket could not be set up.
    #[error("cannot listen on {path}")]
    Listen {
        /// Socket path.
        path: String,
        /// Why.
        #[source]
        source: vhost::vhost_user::Error,
    },
    /// A connection could not be served at all.
    #[error("serving a connection failed: {0}")]
    Serve(String),
    /// The buffer manager refused to create the VM's account.
    #[error("creating the VM's buffer account failed")]
    Owner(#[source] vgpu_backend::BoError),
}

/// Where VMMs connect.
pub enum Endpoint {
    /// A socket path to create and listen on.
    Path(String),
    /// A socket handed over (`--fd`, systemd's socket activation): a
    /// listening one is accepted on; a connected one (libvirt's socket
    /// pair) is the VMM's connection.
    Fd(RawFd),
}

/// The VMM connections an endpoint gives.
pub enum Connections {
    /// Accept VMMs one after the other.
    Listening(Listener),
    /// One connection, already made (taken when served).
    Connected(Option<UnixStream>),
}

/// How one connection's daemon starts.
enum Start<'a> {
    Accept(&'a mut Listener),
    Stream(UnixStream),
}

/// Serves connections one after the other (one VM at a time per socket,
/// as vhost-user is). Returns after the first connection if `once`.
pub struct Daemon {
    cfg: Arc<DeviceConfig>,
    bm: BufferManager,
    connections: AtomicU32,
    screens: Screens,
}

impl Daemon {
    /// A daemon with its buffer manager.
    pub fn new(cfg: DeviceConfig, bm: BufferManager) -> Self {
        Self {
            cfg: Arc::new(cfg),
            bm,
            connections: AtomicU32::new(0),
            screens: Screens::default(),
        }
    }

    /// What the served VM's scanouts show (shared with the admin socket).
    pub fn screens(&self) -> &Screens {
        &self.screens
    }

    /// The buffer manager (shared with the admin socket).
    pub fn buffer_manager(&self) -> &BufferManager {
        &self.bm
    }

    /// Creates the socket `path` (replacing a stale one) and listens on it.
    pub fn bind(path: &str) -> Result<Listener, DaemonError> {
        Listener::new(Path::new(path), true).map_err(|source| DaemonError::Listen {
            path: path.to_string(),
            source,
        })
    }

    /// Opens the listening socket, or takes over a handed-over one.
    pub fn listen(endpoint: &Endpoint) -> Result<Connections, DaemonError> {
        match endpoint {
            Endpoint::Path(path) => Self::bind(path).map(Connections::Listening),
            Endpoint::Fd(fd) => {
                // SAFETY: the caller (the CLI) checked that `fd` is an open
                // socket the process owns and hands over; it is borrowed
                // only for the query.
                let borrowed = unsafe { BorrowedFd::borrow_raw(*fd) };
                let listening = rustix::net::sockopt::socket_acceptconn(borrowed)
                    .map_err(|e| DaemonError::Serve(format!("socket {fd}: {e}")))?;
                Ok(if listening {
                    // SAFETY: as above; ownership moves to the listener and
                    // nothing else closes the descriptor.
                    Connections::Listening(unsafe { Listener::from_raw_fd(*fd) })
                } else {
                    // SAFETY: as above; ownership moves to the stream.
                    Connections::Connected(Some(unsafe { UnixStream::from_raw_fd(*fd) }))
                })
            }
        }
    }

    /// Serves connections until one ends and `once` is set (or the
    /// handed-over connection ends), or forever.
    pub fn run(&self, connections: &mut Connections, once: bool) -> Result<(), DaemonError> {
        match connections {
            Connections::Connected(stream) => match stream.take() {
                Some(s) => self.serve(Start::Stream(s)),
                None => Err(DaemonError::Serve(
                    "the handed-over connection was already served".into(),
                )),
            },
            Connections::Listening(listener) => loop {
                self.serve_one(listener)?;
                if once {
                    return Ok(());
                }
            },
        }
    }

    /// Accepts and serves one connection, then frees what it held.
    pub fn serve_one(&self, listener: &mut Listener) -> Result<(), DaemonError> {
        // The VM's account is made once a VMM is knocking, so that between
        // VMs the admin socket shows none.
        wait_for_connection(listener)?;
        self.serve(Start::Accept(listener))
    }

    /// Serves one connection, then frees what it held.
    fn serve(&self, start: Start<'_>) -> Result<(), DaemonError> {
        let n = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let vm = self
            .bm
            .create_owner(&format!("vm{n}"), None)
            .map_err(DaemonError::Owner)?;
        if let Err(e) = self.bm.set_quota(vm, self.cfg.vm_quota) {
            log::warn!("setting the VM quota failed: {e}");
        }
        if let Err(e) = self.bm.set_soft_limit(vm, self.cfg.vm_soft_limit) {
            log::warn!("setting the VM soft limit failed: {e}");
        }
        let backend = Arc::new(
            VgpuBackend::with_screens(self.cfg.clone(), self.bm.clone(), vm, self.screens.clone())
                .map_err(|e| DaemonError::Serve(e.to_string()))?,
        );
        let mut daemon = VhostUserDaemon::new(
            "vhost-user-vgpu".to_string(),
            backend.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(|e| DaemonError::Serve(e.to_string()))?;
        for handler in daemon.get_epoll_handlers() {
            backend
                .register_timer(&handler)
                .map_err(|e| DaemonError::Serve(format!("registering the fence timer: {e}")))?;
        }
        match start {
            Start::Accept(listener) => daemon.start(listener),
            Start::Stream(stream) => daemon.start_with_stream(stream),
        }
        .map_err(|e| DaemonError::Serve(e.to_string()))?;
        log::info!("a VMM connected (connection {n}; its memory is accounted as vm{n})");
        match daemon.wait() {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected,
            )) => log::info!("the VMM of connection {n} disconnected"),
            Err(e) => log::warn!("connection {n} ended with an error: {e}"),
        }
        // Stop the worker (exit event, join) before freeing what it used.
        drop(daemon);
        backend.teardown();
        self.screens.clear();
        match self.bm.destroy_owner(vm) {
            Ok(r) => log::info!(
                "connection {n}: freed everything vm{n} held ({} buffers, {} bytes)",
                r.objects,
                r.bytes
            ),
            Err(e) => log::warn!("connection {n}: teardown failed: {e}"),
        }
        Ok(())
    }
}

/// Blocks until a VMM connects to `listener` (the next accept will not
/// block).
fn wait_for_connection(listener: &Listener) -> Result<(), DaemonError> {
    use std::os::fd::AsRawFd;
    log::info!("waiting for a VMM");
    // SAFETY: the listener owns this fd and outlives the borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(listener.as_raw_fd()) };
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) if !fds[0].revents().is_empty() => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(DaemonError::Serve(format!("waiting for a VMM: {e}"))),
        }
    }
}
