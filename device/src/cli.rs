//! The `vhost-user-vgpu` command line (vhost-user backend program
//! conventions: `--socket-path`, `--fd`, `--print-capabilities`), turned
//! into a [`DeviceConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use vgpu_backend::intel::detect::GpuChoice;
use vgpu_backend::pressure::{
    parse_trigger, MonitorConfig, SourceChoice, DEFAULT_TRIGGER, DEFAULT_WATERMARK_PERCENT,
};

use crate::config::{DeviceConfig, Limits, Mode};

/// vgpu: a vhost-user virtio-gpu backend whose guest blobs are host buffers
/// managed like the kernel's TTM (device memory is emulated on hosts
/// without an Intel GPU).
#[derive(Debug, Parser)]
#[command(name = "vhost-user-vgpu", version, about, long_about = None)]
pub struct Cli {
    /// Create and listen on this unix socket (the VMM connects to it).
    #[arg(short = 's', long, value_name = "PATH", conflicts_with = "fd")]
    pub socket_path: Option<String>,

    /// Use this already-listening socket, handed over by the VMM or libvirt.
    #[arg(short = 'f', long, value_name = "N")]
    pub fd: Option<i32>,

    /// Print the JSON capabilities for /usr/share/qemu/vhost-user/*.json and exit.
    #[arg(short = 'c', long)]
    pub print_capabilities: bool,

    /// Offer VIRTIO_GPU_F_VIRGL (the default; needed for context commands
    /// in Linux guests). Accepted for QEMU's convention.
    #[arg(short = 'v', long, conflicts_with = "no_virgl")]
    pub virgl: bool,

    /// Do not offer VIRTIO_GPU_F_VIRGL (QEMU displays without GL refuse a
    /// GL console; no contexts then).
    #[arg(long)]
    pub no_virgl: bool,

    /// The GPU that backs guest buffers: auto (the first i915 or xe render
    /// node in /dev/dri, else the emulated device), emulated, or a render
    /// node path such as /dev/dri/renderD128.
    #[arg(long, value_name = "auto|emulated|PATH", default_value = "auto", value_parser = GpuChoice::parse)]
    pub gpu: GpuChoice,

    /// Size of the emulated device-local memory pool (e.g. 256M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub device_memory: u64,

    /// Freed buffers' files (with their pages) kept for reuse by new
    /// buffers of the same size, zeroed first; dropped first under memory
    /// pressure. 0 disables it.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub buffer_cache: u64,

    /// Host memory one VM may hold (e.g. 2G); unlimited if not given.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub vm_quota: Option<u64>,

    /// Size of the host-visible shared-memory region blobs are mapped into.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub hostmem: u64,

    /// A scanout and its preferred mode, WIDTHxHEIGHT; repeat for more (at most 16).
    #[arg(long = "scanout", value_name = "WxH", value_parser = Mode::parse)]
    pub scanouts: Vec<Mode>,

    /// Emulated execution time of a GEM_EXECBUFFER2, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub exec_delay_us: u64,

    /// Most resources one VM may hold.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_resources)]
    pub max_resources: usize,

    /// Most contexts one VM may hold.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_contexts)]
    pub max_contexts: usize,

    /// Most backing mem entries one VM may hold across its resources.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_backing_entries)]
    pub max_backing_entries: usize,

    /// Most host-visible bytes one VM may have mapped at once (default: the region size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_hostmem_mapped: Option<u64>,

    /// Soft limit of each VM's host memory (like cgroup memory.high): a VM
    /// over it is shrunk back under it without waiting for host pressure.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub vm_soft_limit: Option<u64>,

    /// Exit when the first VMM disconnects instead of waiting for the next.
    #[arg(long)]
    pub exit_on_disconnect: bool,

    /// The admin control socket (default: <socket-path>.admin; none with --fd
    /// unless given).
    #[arg(long, value_name = "PATH", conflicts_with = "no_admin_socket")]
    pub admin_socket: Option<PathBuf>,

    /// Do not open an admin control socket.
    #[arg(long)]
    pub no_admin_socket: bool,

    /// Which memory-pressure sources to watch: auto (every one that exists,
    /// together: systemd's $MEMORY_PRESSURE_WATCH, the daemon's own memory
    /// cgroup — v1 pressure levels and usage watermark, v2 memory.events
    /// and watermark, its PSI — and the host's PSI; MemAvailable where
    /// there is no PSI or --low-watermark is given), psi (the host's only),
    /// cgroup (the own cgroup's only), systemd, meminfo, or none.
    #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = SourceChoice::parse)]
    pub pressure_source: SourceChoice,

    /// PSI trigger for the host's and the own cgroup's PSI: "some|full
    /// STALL_US WINDOW_US". Without CAP_SYS_RESOURCE the kernel accepts
    /// only windows that are multiples of 2 s.
    #[arg(long, value_name = "TRIGGER", default_value = DEFAULT_TRIGGER, value_parser = check_trigger)]
    pub pressure_trigger: String,

    /// Purge DONTNEED buffers when the daemon's own memory cgroup uses
    /// more than this share of its limit (percent, 1-100; 0 turns the
    /// watermark off).
    #[arg(long, value_name = "PERCENT", default_value_t = DEFAULT_WATERMARK_PERCENT, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub cgroup_watermark: u8,

    /// Watch MemAvailable too, and see pressure below this size (without
    /// it, MemAvailable is watched only where there is no PSI, against
    /// 5 % of MemTotal, at least 64M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub low_watermark: Option<u64>,
}

fn check_trigger(s: &str) -> Result<String, String> {
    parse_trigger(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Parses a byte size: a number with an optional K, M, G or T suffix
/// (binary multiples), e.g. `4096`, `64K`, `256M`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{s:?} is not a size (a number with an optional K, M, G or T suffix)")
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl Cli {
    /// The device configuration these options describe.
    pub fn config(&self) -> Result<DeviceConfig, String> {
        let scanouts = if self.scanouts.is_empty() {
            DeviceConfig::default().scanouts
        } else {
            self.scanouts.clone()
        };
        if scanouts.len() > vgpu_proto::virtio_gpu::VIRTIO_GPU_MAX_SCANOUTS {
            return Err(format!(
                "{} scanouts given; virtio-gpu has at most 16",
                scanouts.len()
            ));
        }
        if self.hostmem % vgpu_backend::PAGE_SIZE != 0 {
            return Err(format!(
                "--hostmem {} is not a multiple of the 4 KiB page size",
                self.hostmem
            ));
        }
        if self.device_memory != 0 && self.device_memory < vgpu_backend::PAGE_SIZE {
            return Err("--device-memory must be 0 (none) or at least one 4 KiB page".into());
        }
        Ok(DeviceConfig {
            scanouts,
            device_memory: self.device_memory,
            buffer_cache: self.buffer_cache,
            vm_quota: self.vm_quota,
            vm_soft_limit: self.vm_soft_limit,
            hostmem_size: self.hostmem,
            virgl: !self.no_virgl,
            exec_delay: Duration::from_micros(self.exec_delay_us),
            limits: Limits {
                max_resources: self.max_resources,
                max_contexts: self.max_contexts,
                max_backing_entries: self.max_backing_entries,
                max_hostmem_mapped: self.max_hostmem_mapped.unwrap_or(u64::MAX),
                ..Limits::default()
            },
            pci_device_id: 0,
        })
    }
}

impl Cli {
    /// The pressure monitor's configuration.
    pub fn monitor_config(&self) -> MonitorConfig {
        MonitorConfig {
            source: self.pressure_source,
            trigger: self.pressure_trigger.clone(),
            low_watermark: self.low_watermark,
            cgroup_watermark: self.cgroup_watermark,
            ..MonitorConfig::default()
        }
    }

    /// The admin socket path, if there is to be one.
    pub fn admin_socket_path(&self) -> Option<PathBuf> {
        if self.no_admin_socket {
            return None;
        }
        self.admin_socket.clone().or_else(|| {
            self.socket_path
                .as_ref()
                .map(|p| PathBuf::from(format!("{p}.admin")))
        })
    }
}

/// The `--print-capabilities` JSON (vhost-user.json, type "gpu").
pub fn capabilities_json() -> String {
    let caps = serde_json::json!({
        "type": "gpu",
        "features": ["virgl"],
    });
    serde_json::to_string_pretty(&caps).unwrap_or_else(|_| "{\"type\": \"gpu\"}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn options_become_a_config() {
        let cli = Cli::parse_from([
            "vhost-user-vgpu",
            "--socket-path",
            "/tmp/x",
            "--scanout",
            "1920x1080",
            "--scanout",
            "800x600",
            "--no-virgl",
            "--vm-quota",
            "1G",
        ]);
        let cfg = cli.config().unwrap();
        assert_eq!(cfg.scanouts.len(), 2);
        assert!(!cfg.virgl);
        assert_eq!(cfg.vm_quota, Some(1 << 30));
        assert!(
            Cli::try_parse_from(["vhost-user-vgpu", "--socket-path", "a", "--fd", "3"]).is_err()
        );
        assert!(Cli::try_parse_from(["vhost-user-vgpu", "--scanout", "12"]).is_err());
        assert_eq!(cli.admin_socket_path(), Some(PathBuf::from("/tmp/x.admin")));
        assert_eq!(cli.monitor_config().source, SourceChoice::Auto);
        let cli = Cli::parse_from([
            "vhost-user-vgpu",
            "--fd",
            "3",
            "--pressure-source",
            "meminfo",
            "--low-watermark",
            "1G",
            "--vm-soft-limit",
            "512M",
        ]);
        assert_eq!(
            cli.admin_socket_path(),
            None,
            "no default beside an inherited fd"
        );
        assert_eq!(cli.monitor_config().low_watermark, Some(1 << 30));
        assert_eq!(cli.config().unwrap().vm_soft_limit, Some(512 << 20));
        for bad in [
            ["--pressure-source", "vibes"],
            ["--pressure-trigger", "some 1 2"],
            ["--vm-soft-limit", "lots"],
        ] {
            let mut args = vec!["vhost-user-vgpu", "--socket-path", "/tmp/x"];
            args.extend(bad);
            let err = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(err.contains(bad[1]), "{err}");
        }
        let v: serde_json::Value = serde_json::from_str(&capabilities_json()).unwrap();
        assert_eq!(v["type"], "gpu");
    }
}
