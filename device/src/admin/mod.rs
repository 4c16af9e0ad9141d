//! The admin control socket: what host operators use (through `vgpuctl`)
//! to see where memory is and to purge, shrink, evict and set limits.
//!
//! * [`protocol`] — the JSON-lines requests and replies (shared with
//!   `vgpuctl`);
//! * [`server`] — the socket: mode 0600, peer-uid check, one thread per
//!   client, 64 KiB line limit;
//! * [`handler`] — carries requests out against the buffer manager and the
//!   pressure monitor;
//! * [`metrics`] — the Prometheus text exposition;
//! * [`client`] — the client side.
//!
//! Owns: the socket and its client threads. Must not: touch virtio or a
//! VM's queues; everything goes through the buffer manager's API, whose
//! locking rules (see `vgpu_backend`) make it safe to call from here while
//! device threads and the pressure monitor run.

pub mod client;
pub mod handler;
pub mod metrics;
pub mod protocol;
pub mod server;

pub use client::{AdminClient, ClientError, REPLY_TIMEOUT};
pub use handler::AdminHandler;
pub use protocol::{Reply, Request};
pub use server::{bind_private, AdminServer};
