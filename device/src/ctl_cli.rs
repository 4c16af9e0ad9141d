//! The `vgpuctl` command line (in the library so the packaging can make
//! its man page and shell completions from the same definition).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin::protocol::LimitValue;
use crate::admin::REPLY_TIMEOUT;
use crate::cli::parse_size;

/// Inspect and control a running vgpu daemon through its admin socket.
#[derive(Debug, Parser)]
#[command(name = "vgpuctl", version, about, long_about = None)]
pub struct Args {
    /// The daemon's admin socket.
    #[arg(
        long,
        value_name = "PATH",
        env = "VGPU_ADMIN_SOCKET",
        default_value = "/tmp/vgpu.sock.admin"
    )]
    pub socket: PathBuf,

    /// Every daemon on the host: each admin socket (`*.admin`) in
    /// --runtime-dir. `stats` shows one table; `shrink SIZE` frees SIZE in
    /// total, most charged daemon first; other commands run on each.
    #[arg(long, global = true)]
    pub all: bool,

    /// Where --all looks for admin sockets (the units' RuntimeDirectory).
    #[arg(
        long,
        value_name = "DIR",
        env = "VGPU_RUNTIME_DIR",
        default_value = "/run/vgpu",
        global = true
    )]
    pub runtime_dir: PathBuf,

    /// Seconds to wait for the daemon's reply.
    #[arg(long, value_name = "SECS", default_value_t = REPLY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub timeout: u64,

    /// Print the daemon's JSON reply instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Memory per region and per VM/context, and the pressure monitor.
    Stats,
    /// Buffer objects.
    List {
        /// Only this owner (vm1, vm1/ctx2:name, owner7) and its descendants.
        #[arg(long)]
        owner: Option<String>,
        /// Only objects in this state.
        #[arg(long, value_parser = ["willneed", "dontneed", "purged"])]
        state: Option<String>,
        /// Most objects to show.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Purge every DONTNEED object now.
    Purge {
        /// Only this owner's.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Release SIZE bytes: purge DONTNEED objects, then write back idle ones.
    Shrink {
        /// Bytes (e.g. 512M, 1.5G, 512MiB; K, M, G, T and KiB... are
        /// powers of 1024, KB, MB... powers of 1000).
        #[arg(value_parser = parse_size)]
        size: u64,
        /// How hard to push in-use buffers out.
        #[arg(long, default_value = "lazy", value_parser = ["lazy", "writeback"])]
        mode: String,
        /// Only this owner's.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Move device-resident buffers to system memory.
    Evict {
        /// Only this region (default: every device region).
        #[arg(long)]
        region: Option<String>,
    },
    /// Set a VM's quota and/or soft limit (SIZE or "none").
    SetLimit {
        /// The VM (vm1) or context.
        owner: String,
        /// Hard cap: allocations beyond it fail.
        #[arg(long, value_parser = parse_limit)]
        quota: Option<LimitValue>,
        /// Above it the VM is shrunk back without waiting for host pressure.
        #[arg(long, value_parser = parse_limit)]
        soft_limit: Option<LimitValue>,
    },
    /// Show the pressure monitor; change its trigger or feed it an event.
    Pressure {
        /// New PSI trigger, "some|full STALL_US WINDOW_US".
        #[arg(long)]
        trigger: Option<String>,
        /// Act as if the source had fired once.
        #[arg(long)]
        inject: bool,
    },
    /// Prometheus text exposition (with --all: every daemon's, one
    /// family each, samples labelled daemon="NAME", plus vgpu_daemon_up).
    Metrics {
        /// Write it to FILE atomically (a temporary file renamed over it)
        /// instead of printing it: for node_exporter's textfile collector
        /// (e.g. /var/lib/prometheus/node-exporter/vgpu.prom).
        #[arg(long, value_name = "FILE")]
        textfile: Option<PathBuf>,
    },
    /// Save what a scanout of the served VM shows as a PNG (works with or
    /// without a VMM display channel).
    Screenshot {
        /// The scanout.
        #[arg(long, default_value_t = 0)]
        scanout: u32,
        /// The PNG file to write.
        #[arg(short = 'o', long = "output", value_name = "FILE.png")]
        output: PathBuf,
    },
}

/// A limit: a size, or `none`.
pub fn parse_limit(s: &str) -> Result<LimitValue, String> {
    if s == "none" {
        return Ok(LimitValue::Keyword("none".into()));
    }
    parse_size(s).map(LimitValue::Bytes)
}
