//! The `vhost-user-vgpu` command line (vhost-user backend program
//! conventions: `--socket-path`, `--fd`, `--print-capabilities`), turned
//! into a [`DeviceConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::sandbox::namespaces::NamespaceMode;
use crate::sandbox::SeccompMode;

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

    /// Use this socket, handed over already open: a listening one (VMMs
    /// connect to it, one after another) or a connected one (libvirt's
    /// socket pair; the daemon exits when it closes). Without
    /// --socket-path or --fd, a socket from systemd's socket activation
    /// ($LISTEN_FDS) is used.
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

    /// The render node to use (libvirt's spelling of --gpu PATH, passed
    /// when --print-capabilities lists "render-node").
    #[arg(long, value_name = "PATH", conflicts_with = "gpu")]
    pub render_node: Option<PathBuf>,

    /// Size of the emulated device-local memory pool (e.g. 256M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub device_memory: u64,

    /// Freed buffers' files (with their pages) kept for reuse by new
    /// buffers of the same size, zeroed first; dropped first under memory
    /// pressure. 0 disables it.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub buffer_cache: u64,

    /// What a system call outside the daemon's allow-list does once
    /// start-up is done: kill the process, trap (print its name and exit,
    /// for bug reports), log it and let it through, or none (no filter).
    #[arg(long, value_name = "MODE", default_value_t = SeccompMode::Kill)]
    pub seccomp: SeccompMode,

    /// Started as root: become this user (a name or a number) before
    /// anything else — before any socket, file or thread exists. Its
    /// supplementary groups come from the group database (membership of
    /// `render` gives the render node).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// With --user: the primary group (a name or a number; default: the
    /// user's own).
    #[arg(long, value_name = "GROUP", requires = "user")]
    pub group: Option<String>,

    /// Private namespaces (a user namespace mapping only the daemon's
    /// uid, an empty network namespace, its own IPC and hostname): auto
    /// (when started without root), on, off.
    #[arg(long, value_name = "MODE", default_value_t = NamespaceMode::Auto)]
    pub namespaces: NamespaceMode,

    /// Do not narrow the files the daemon can reach with Landlock (on by
    /// default where the kernel has it).
    #[arg(long)]
    pub no_landlock: bool,

    /// Longest the daemon watches the control queue for the guest's next
    /// command after answering one, in microseconds, instead of sleeping
    /// until kicked. Adaptive: the window grows only while commands come
    /// that fast and is off for a slower or idle guest. 0 disables it.
    #[arg(long, value_name = "US", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub poll_us: u64,

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

    /// The admin control socket (default: <socket-path>.admin; for a
    /// handed-over socket, vgpu-<pid>.admin in $VGPU_RUNTIME_DIR or
    /// /run/vgpu when that directory is writable, else none).
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

/// The size forms, for error messages.
const SIZE_FORMS: &str = "bytes, or a number such as 2 or 1.5 with a unit: K, M, G, T and \
     KiB, MiB, GiB, TiB are powers of 1024, KB, MB, GB, TB powers of 1000";

/// Parses a byte size: plain bytes (`4096`), or a number, whole or decimal,
/// with a unit (`64K`, `1.5G`, `512MiB`, `2GB`), in any case, a space
/// allowed before the unit. The one-letter units K, M, G, T (and P, E) are
/// binary multiples, as they have always been here and are in QEMU's `-m`;
/// so are KiB, MiB, GiB, TiB (Ki, ..., EiB); KB, MB, GB, TB (PB, EB) are
/// decimal, as `bytesize` reads them; B is bytes. The result must be a
/// whole number of bytes that fits in 64 bits.
pub fn parse_size(s: &str) -> Result<u64, String> {
    // A leading '+' parsed before (Rust's integer parsing takes it).
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let not_a_size = |why: &str| format!("{s:?} is not a size: {why} ({SIZE_FORMS})");
    let number_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_len);
    let unit = unit.trim_start();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(not_a_size("no number"));
    }
    if fraction.contains('.') {
        return Err(not_a_size("more than one decimal point"));
    }
    let fraction = fraction.trim_end_matches('0');
    let factor: u64 = match unit {
        "" => 1,
        // One letter: binary, as before (bytesize would read "K" as 1000).
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "p" | "P" => 1 << 50,
        "e" | "E" => 1 << 60,
        _ => match unit.parse::<bytesize::Unit>() {
            Ok(u) => u * 1,
            Err(_) => return Err(not_a_size(&format!("unknown unit {unit:?}"))),
        },
    };
    // Exact decimal arithmetic: digits × factor / 10^(fraction digits).
    let too_large = || format!("{s:?} is too large (at most {} bytes)", u64::MAX);
    let scale = u32::try_from(fraction.len())
        .ok()
        .and_then(|n| 10u128.checked_pow(n))
        .ok_or_else(|| not_a_size("too many decimal places"))?;
    let mantissa: u128 = format!("0{whole}{fraction}")
        .parse()
        .map_err(|_| too_large())?;
    let scaled = mantissa
        .checked_mul(u128::from(factor))
        .ok_or_else(too_large)?;
    if scaled % scale != 0 {
        return Err(not_a_size("not a whole number of bytes"));
    }
    u64::try_from(scaled / scale).map_err(|_| too_large())
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
            poll_max: Duration::from_micros(self.poll_us),
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
        if let Some(p) = &self.admin_socket {
            return Some(p.clone());
        }
        match &self.socket_path {
            Some(p) => Some(PathBuf::from(format!("{p}.admin"))),
            None => handed_over_admin_socket(&runtime_dir(), std::process::id()),
        }
    }

    /// The GPU to drive: `--render-node`, else `--gpu`.
    pub fn gpu_choice(&self) -> GpuChoice {
        match &self.render_node {
            Some(p) => GpuChoice::Path(p.clone()),
            None => self.gpu.clone(),
        }
    }
}

/// Where the units put their sockets and `vgpuctl --all` looks:
/// `$VGPU_RUNTIME_DIR`, else /run/vgpu.
pub fn runtime_dir() -> PathBuf {
    std::env::var_os("VGPU_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNTIME_DIR))
}

/// The runtime directory's default.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/vgpu";

/// The admin socket of a daemon started with a handed-over socket (libvirt
/// gives no name): `vgpu-<pid>.admin` in `dir`, if the daemon may create
/// files there, so that `vgpuctl --all` finds it.
pub fn handed_over_admin_socket(dir: &std::path::Path, pid: u32) -> Option<PathBuf> {
    use rustix::fs::{access, Access};
    if !dir.is_dir() || access(dir, Access::WRITE_OK | Access::EXEC_OK).is_err() {
        return None;
    }
    Some(dir.join(format!("vgpu-{pid}.admin")))
}

/// The `--print-capabilities` JSON (vhost-user.json, type "gpu"): `virgl`
/// always (contexts are offered by default; libvirt passes `--virgl` for
/// `accel3d`), `render-node` only when `dri` has an Intel render node —
/// libvirt then passes `--render-node`, choosing a node itself when the
/// domain names none, and fails the start on a host without any.
pub fn capabilities_json(dri: &std::path::Path) -> String {
    let has_intel_node = vgpu_backend::intel::detect::render_nodes(dri)
        .iter()
        .any(|n| {
            vgpu_backend::intel::detect::drm_driver_name(n)
                .is_ok_and(|(name, _)| name == "i915" || name == "xe")
        });
    capabilities_for(has_intel_node)
}

/// The capabilities JSON, given whether an Intel render node exists.
pub fn capabilities_for(has_intel_node: bool) -> String {
    let mut features = vec!["virgl"];
    if has_intel_node {
        features.push("render-node");
    }
    let caps = serde_json::json!({
        "type": "gpu",
        "features": features,
    });
    serde_json::to_string_pretty(&caps).unwrap_or_else(|_| "{\"type\": \"gpu\"}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        // What parsed before parses the same: bytes, binary K/M/G/T.
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert_eq!(parse_size(" 1G "), Ok(1 << 30));
        assert_eq!(parse_size("007M"), Ok(7 << 20));
        assert_eq!(parse_size("+64K"), Ok(64 << 10));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        // Decimal fractions.
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5M"), Ok(512 << 10));
        assert_eq!(parse_size(".25G"), Ok(256 << 20));
        assert_eq!(parse_size("2.G"), Ok(2 << 30));
        assert_eq!(parse_size("1.0"), Ok(1));
        assert_eq!(parse_size(".000G"), Ok(0));
        assert_eq!(parse_size("8.192KB"), Ok(8192), "exact, not 8191.999…");
        // IEC units are binary, SI units decimal; any case, a space allowed.
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2Ti"), Ok(2 << 40));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4KB"), Ok(4000));
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
        assert_eq!(parse_size("1PB"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_size("15E"), Ok(15 << 60));
        assert_eq!(
            parse_size("1.50000000000000000000000000000000000000000000G"),
            Ok(3 << 29),
            "trailing zeros do not count as precision"
        );
    }

    #[test]
    fn bad_sizes_are_refused_by_name() {
        for (bad, why) in [
            ("", "no number"),
            ("  ", "no number"),
            ("G", "no number"),
            (".", "no number"),
            ("lots", "no number"),
            ("-1G", "no number"),
            ("++1G", "no number"),
            ("1.2.3G", "more than one decimal point"),
            ("5X", "unknown unit \"X\""),
            ("1Gx", "unknown unit \"Gx\""),
            ("1G5", "unknown unit \"G5\""),
            ("1 0", "unknown unit \"0\""),
            ("1.5", "not a whole number of bytes"),
            ("0.1K", "not a whole number of bytes"),
            ("1.0001KB", "not a whole number of bytes"),
            (
                "0.0000000000000000000000000000000000000001",
                "too many decimal places",
            ),
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("{bad:?} is not a size: {why}")),
                "{bad:?}: {err}"
            );
            assert!(err.contains("KiB"), "the error lists the forms: {err}");
        }
        for big in [
            "99999999999T",
            "16777216T",
            "18446744073709551616",
            "16EiB",
            "16E",
            "18446744073709551615K",
            "999999999999999999999999999999999999999999",
        ] {
            let err = parse_size(big).unwrap_err();
            assert!(
                err.starts_with(&format!("{big:?} is too large")),
                "{big:?}: {err}"
            );
        }
    }

    #[test]
    fn size_options_take_the_new_forms_and_keep_their_checks() {
        let cli = Cli::parse_from([
            "vhost-user-vgpu",
            "--hostmem",
            "1.5G",
            "--vm-quota",
            "512MiB",
            "--device-memory",
            "0.5G",
        ]);
        let cfg = cli.config().unwrap();
        assert_eq!(cfg.hostmem_size, 3 << 29);
        assert_eq!(cfg.vm_quota, Some(512 << 20));
        assert_eq!(cfg.device_memory, 512 << 20);
        // 1 GB is not a whole number of 4 KiB pages: the page check stays.
        let cli = Cli::parse_from(["vhost-user-vgpu", "--hostmem", "1GB"]);
        let err = cli.config().unwrap_err();
        assert!(
            err.contains("not a multiple of the 4 KiB page size"),
            "{err}"
        );
        let err = Cli::try_parse_from(["vhost-user-vgpu", "--hostmem", "1.5X"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"1.5X\" is not a size"), "{err}");
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
        assert_eq!(
            cfg.poll_max,
            Duration::from_micros(50),
            "polling on by default"
        );
        let off = Cli::parse_from(["vhost-user-vgpu", "--poll-us", "0"]);
        assert_eq!(off.config().unwrap().poll_max, Duration::ZERO);
        let err = Cli::try_parse_from(["vhost-user-vgpu", "--poll-us", "5000"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("5000") && err.contains("0..=1000"), "{err}");
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
        let with_admin = Cli::parse_from(["vhost-user-vgpu", "--fd", "3", "--admin-socket", "/a"]);
        assert_eq!(with_admin.admin_socket_path(), Some(PathBuf::from("/a")));
        let none = Cli::parse_from(["vhost-user-vgpu", "--fd", "3", "--no-admin-socket"]);
        assert_eq!(none.admin_socket_path(), None);
        assert_eq!(
            Cli::parse_from(["vhost-user-vgpu", "--render-node", "/dev/dri/renderD129"])
                .gpu_choice(),
            GpuChoice::Path(PathBuf::from("/dev/dri/renderD129"))
        );
        assert_eq!(cli.gpu_choice(), GpuChoice::Auto);
        assert!(Cli::try_parse_from([
            "vhost-user-vgpu",
            "--gpu",
            "emulated",
            "--render-node",
            "/dev/dri/renderD128"
        ])
        .is_err());
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
    }

    #[test]
    fn capabilities_list_render_node_only_with_an_intel_node() {
        let v: serde_json::Value = serde_json::from_str(&capabilities_for(false)).unwrap();
        assert_eq!(v["type"], "gpu");
        assert_eq!(v["features"], serde_json::json!(["virgl"]));
        let v: serde_json::Value = serde_json::from_str(&capabilities_for(true)).unwrap();
        assert_eq!(v["features"], serde_json::json!(["virgl", "render-node"]));
        let empty = scratch_dir("caps");
        assert_eq!(capabilities_json(&empty), capabilities_for(false));
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn a_handed_over_socket_gets_an_admin_socket_in_a_writable_runtime_dir() {
        let dir = scratch_dir("runtime");
        assert_eq!(
            handed_over_admin_socket(&dir, 42),
            Some(dir.join("vgpu-42.admin"))
        );
        assert_eq!(handed_over_admin_socket(&dir.join("missing"), 42), None);
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(handed_over_admin_socket(&file, 42), None, "not a directory");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vgpu-cli-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
