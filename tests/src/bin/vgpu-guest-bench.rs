//! `vgpu-guest-bench`: the real-guest benchmark. Boots the guest test
//! program in its benchmark mode (`vgpu.mode=bench`: only the timed loops)
//! under QEMU (TCG) against each backend in turn, interleaved round by
//! round:
//!
//! * QEMU 10's `vhost-user-gpu-pci` (display channel) against QEMU's own C
//!   backend (`/usr/lib/qemu/vhost-user-gpu`), vgpu `--no-virgl` (2D, the
//!   same commands as QEMU's backend gets) and vgpu's default (3D mode);
//! * with `--qemu11`, QEMU 11.1's generic vhost-user device against vgpu.
//!
//! Each boot runs two loops in the guest: `dirtyfb` (write a 256×256
//! rectangle of the 1280×800 framebuffer on screen + DIRTYFB, the path a
//! desktop takes for every frame) and `resources` (create, map, write,
//! transfer, wait and destroy a 256×256 dumb buffer). Every run prints a
//! `RESULT {json}` line (ops/s, the guest's per-update latency, the CPU the
//! backend and QEMU spent per operation); then `RATIO` lines (median of
//! the per-round ratios against QEMU's backend in the same round, with
//! their spread) and `GOAL` lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use vgpu_guest_test::protocol::{DONE, LOOP_START, RESULT_PREFIXES};
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::bench::stats::{ratio, Ratio};
use vgpu_tests::cpu::tree_cpu_ns;
use vgpu_tests::qemu::{GpuDevice, GuestArgs, Vm, VmConfig};

#[derive(Debug, Parser)]
#[command(
    name = "vgpu-guest-bench",
    about = "Real-guest benchmark: a Linux guest's display and resource loops on vgpu vs QEMU's vhost-user-gpu"
)]
struct Args {
    #[command(flatten)]
    guest: GuestArgs,
    /// QEMU's C backend, the baseline.
    #[arg(long, default_value = "/usr/lib/qemu/vhost-user-gpu")]
    vs: PathBuf,
    /// QEMU 10 binary (vhost-user-gpu-pci).
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// QEMU 11.1 (integration/install-qemu.sh --qemu11 prints it): vgpu is
    /// also measured under its generic vhost-user device.
    #[arg(long)]
    qemu11: Option<PathBuf>,
    /// Rounds; each boots every backend once, in turn.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// DIRTYFB updates per boot.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    dirtyfb_n: u32,
    /// Duration of the resource loop per boot, in milliseconds.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    loop_ms: u64,
    /// Only the backends whose label contains one of these (repeatable):
    /// `qemu`, `no-virgl`, `3d`, `generic`.
    #[arg(long)]
    only: Vec<String>,
    /// Prefix for every backend's command line (a profiler, say
    /// `strace -f -c -o /tmp/s.txt`); CPU figures then include it.
    #[arg(long)]
    wrap: Option<String>,
    /// Extra arguments for vgpu (repeatable), e.g. `--daemon-arg=--poll-us=50`.
    #[arg(long, allow_hyphen_values = true)]
    daemon_arg: Vec<String>,
    /// Longest one boot may take, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout_s: u64,
    /// Where logs and sockets go (default: a fresh temp dir).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// One backend setup.
struct Setup {
    /// Short key (RESULT lines, `--only`).
    key: &'static str,
    label: &'static str,
    qemu: PathBuf,
    device: GpuDevice,
    vmm: &'static str,
    cmdline: String,
}

/// What one loop of one boot measured.
#[derive(Debug, Clone, Serialize)]
struct LoopFigures {
    backend: &'static str,
    vmm: &'static str,
    round: u32,
    #[serde(rename = "loop")]
    name: &'static str,
    ops_per_s: f64,
    ops: u64,
    /// Guest-measured latency of one display update (dirtyfb only).
    median_us: Option<u64>,
    p90_us: Option<u64>,
    /// CPU time the backend process (and its children) spent during the
    /// loop, per operation.
    backend_cpu_us_per_op: Option<f64>,
    /// CPU time QEMU spent during the loop, per operation.
    qemu_cpu_us_per_op: Option<f64>,
}

/// The guest's loops and the names their results carry.
const LOOPS: [(&str, &str); 2] = [("dirtyfb-loop", "dirtyfb"), ("timed-loop", "resources")];

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vgpu-guest-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn setups(args: &Args) -> Vec<Setup> {
    let daemon = args.guest.daemon.display();
    let extra = args.daemon_arg.join(" ");
    let wrap = args
        .wrap
        .as_deref()
        .map(|w| format!("{w} "))
        .unwrap_or_default();
    let mut all = vec![
        Setup {
            key: "qemu",
            label: "QEMU vhost-user-gpu",
            qemu: args.qemu.clone(),
            device: GpuDevice::VhostUserGpu,
            vmm: "QEMU 10",
            cmdline: format!("{wrap}{} --socket-path {{sock}}", args.vs.display()),
        },
        Setup {
            key: "no-virgl",
            label: "vgpu --no-virgl",
            qemu: args.qemu.clone(),
            device: GpuDevice::VhostUserGpu,
            vmm: "QEMU 10",
            cmdline: format!(
                "{wrap}{daemon} --socket-path {{sock}} --no-admin-socket --no-virgl {extra}"
            ),
        },
        Setup {
            key: "3d",
            label: "vgpu (3D mode)",
            qemu: args.qemu.clone(),
            device: GpuDevice::VhostUserGpu,
            vmm: "QEMU 10",
            cmdline: format!("{wrap}{daemon} --socket-path {{sock}} --no-admin-socket {extra}"),
        },
    ];
    if let Some(q) = &args.qemu11 {
        all.push(Setup {
            key: "generic",
            label: "vgpu (generic device)",
            qemu: q.clone(),
            device: GpuDevice::Generic,
            vmm: "QEMU 11.1",
            cmdline: format!("{wrap}{daemon} --socket-path {{sock}} --no-admin-socket {extra}"),
        });
    }
    all.retain(|s| args.only.is_empty() || args.only.iter().any(|o| s.key.contains(o.as_str())));
    all
}

fn run(args: &Args) -> Result<bool, String> {
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("vgpu-guest-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let setups = setups(args);
    if setups.is_empty() {
        return Err(format!(
            "--only {:?} matches no backend (qemu, no-virgl, 3d, generic)",
            args.only
        ));
    }
    let timeout = Duration::from_secs(args.timeout_s);
    let mut all: Vec<LoopFigures> = Vec::new();
    let mut ok = true;
    for round in 1..=args.rounds {
        for s in &setups {
            println!("== round {round}: {} under {}", s.label, s.vmm);
            match boot(args, s, round, &work, timeout) {
                Ok(figures) => {
                    for f in figures {
                        println!("RESULT {}", serde_json::to_string(&f).unwrap_or_default());
                        all.push(f);
                    }
                }
                Err(e) => {
                    println!("FAIL {} under {} (round {round}): {e}", s.label, s.vmm);
                    ok = false;
                }
            }
        }
    }
    report(&setups, &all);
    Ok(ok)
}

/// Boots the guest once against `s`'s backend; the figures of its loops.
fn boot(
    args: &Args,
    s: &Setup,
    round: u32,
    work: &Path,
    timeout: Duration,
) -> Result<Vec<LoopFigures>, String> {
    let log = work.join(format!("{}-{round}.log", s.key));
    let backend = RunningBackend::command_logged(&s.cmdline, &[], Some(&log))
        .map_err(|e| format!("starting `{}`: {e}", s.cmdline))?;
    let backend_pid = backend.pid().ok_or("the backend has no process")?;
    let cfg = VmConfig {
        qemu: s.qemu.clone(),
        kernel: args.guest.kernel.clone(),
        initrd: args.guest.initrd.clone(),
        append: format!(
            "quiet vgpu.mode=bench vgpu.dirtyfb_n={} vgpu.loop_ms={}",
            args.dirtyfb_n, args.loop_ms
        ),
        memory_mib: 512,
        device: s.device,
    };
    let mut vm =
        Vm::boot(&cfg, backend.socket(), work).map_err(|e| format!("starting QEMU: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut started: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    let mut done = false;
    while let Some(line) = vm.next_line(deadline) {
        if let Some(name) = line.strip_prefix(LOOP_START) {
            started.insert(
                name.trim().to_string(),
                (tree_cpu_ns(backend_pid), tree_cpu_ns(vm.pid())),
            );
        } else if let Some(tag) = RESULT_PREFIXES.iter().find(|p| line.starts_with(*p)) {
            let cpu_now = (tree_cpu_ns(backend_pid), tree_cpu_ns(vm.pid()));
            let rest = &line[tag.len()..];
            let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
            let Some(&(_, short)) = LOOPS.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            if tag.trim() != "PASS" {
                failures.push(format!("{name}: {detail}"));
                continue;
            }
            let parsed = parse_loop(detail).ok_or_else(|| format!("unreadable result: {line}"))?;
            let per_op = |before: u64, after: u64| {
                (parsed.ops > 0)
                    .then(|| after.saturating_sub(before) as f64 / 1000.0 / parsed.ops as f64)
            };
            let (backend_cpu, qemu_cpu) = match started.get(name) {
                Some(&(b, q)) => (per_op(b, cpu_now.0), per_op(q, cpu_now.1)),
                None => (None, None),
            };
            figures.push(LoopFigures {
                backend: s.label,
                vmm: s.vmm,
                round,
                name: short,
                ops_per_s: parsed.ops_per_s,
                ops: parsed.ops,
                median_us: parsed.median_us,
                p90_us: parsed.p90_us,
                backend_cpu_us_per_op: backend_cpu,
                qemu_cpu_us_per_op: qemu_cpu,
            });
        } else if line.starts_with(DONE) {
            done = true;
        }
        if line.contains("reboot: Power down") {
            break;
        }
    }
    if !vm.wait_exit(Duration::from_secs(30)) {
        failures.push("QEMU did not exit after the guest powered off (killed)".into());
    }
    let mut backend = backend;
    let _ = backend.terminate(Duration::from_secs(10));
    if !done {
        failures.push(format!(
            "the guest did not finish within {} s",
            timeout.as_secs()
        ));
    }
    if failures.is_empty() {
        Ok(figures)
    } else {
        let tail: Vec<&str> = vm
            .serial
            .iter()
            .rev()
            .take(30)
            .rev()
            .map(String::as_str)
            .collect();
        Err(format!(
            "{}\n-- last console lines:\n{}\n-- backend log: {}",
            failures.join("; "),
            tail.join("\n"),
            log.display()
        ))
    }
}

/// The figures in a loop's PASS detail: `123.4 ops/s (1000 iterations in
/// … ms; … median 812 us, p90 1034 us, …)`.
#[derive(Debug, PartialEq)]
struct Parsed {
    ops_per_s: f64,
    ops: u64,
    median_us: Option<u64>,
    p90_us: Option<u64>,
}

fn parse_loop(detail: &str) -> Option<Parsed> {
    let mut words = detail.split_whitespace();
    let ops_per_s = words.next()?.parse().ok()?;
    let ops = detail
        .split_once('(')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let after = |key: &str| -> Option<u64> {
        detail
            .split_once(key)?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Parsed {
        ops_per_s,
        ops,
        median_us: after("median "),
        p90_us: after("p90 "),
    })
}

fn report(setups: &[Setup], all: &[LoopFigures]) {
    let of = |label: &str, vmm: &str, name: &str| -> BTreeMap<u32, &LoopFigures> {
        all.iter()
            .filter(|f| f.backend == label && f.vmm == vmm && f.name == name)
            .map(|f| (f.round, f))
            .collect()
    };
    for (_, name) in LOOPS {
        for s in setups {
            let rates: Vec<f64> = of(s.label, s.vmm, name)
                .values()
                .map(|f| f.ops_per_s)
                .collect();
            if let Some(r) = ratio(&rates) {
                println!(
                    "OPS {name} {} ({}): {:.0} ops/s [{:.0} .. {:.0}] over {} rounds",
                    s.label,
                    s.vmm,
                    r.median,
                    r.min,
                    r.max,
                    rates.len()
                );
            }
        }
    }
    let Some(base) = setups.iter().find(|s| s.key == "qemu") else {
        println!("(no QEMU backend runs: no ratios)");
        return;
    };
    let mut goals = Vec::new();
    for (_, name) in LOOPS {
        let baseline = of(base.label, base.vmm, name);
        for s in setups.iter().filter(|s| s.key != "qemu") {
            let runs = of(s.label, s.vmm, name);
            let ratios: Vec<f64> = runs
                .iter()
                .filter_map(|(round, f)| Some(f.ops_per_s / baseline.get(round)?.ops_per_s))
                .collect();
            let Some(r) = ratio(&ratios) else { continue };
            let cpu = |m: &BTreeMap<u32, &LoopFigures>| {
                let v: Vec<f64> = m.values().filter_map(|f| f.backend_cpu_us_per_op).collect();
                ratio(&v).map(|r| r.median)
            };
            println!(
                "RATIO {name} {} ({}) / {} ({}): {:.2}x [{:.2} .. {:.2}] over {} rounds; backend CPU per op {} vs {} us",
                s.label,
                s.vmm,
                base.label,
                base.vmm,
                r.median,
                r.min,
                r.max,
                ratios.len(),
                cpu(&runs).map_or("?".into(), |c| format!("{c:.0}")),
                cpu(&baseline).map_or("?".into(), |c| format!("{c:.0}")),
            );
            if name == "dirtyfb" && s.key == "no-virgl" {
                goals.push(("dirtyfb, both 2D, QEMU 10", 1.2, r));
            }
        }
    }
    for (what, goal, r) in goals {
        let Ratio { median, .. } = r;
        println!(
            "GOAL {what}: >= {goal:.1}x QEMU's backend: {} ({median:.2}x)",
            if median >= goal { "met" } else { "NOT met" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_details_parse() {
        let d = "412.5 ops/s (1000 iterations in 2424 ms; 256x256 of a 1280x800 XRGB framebuffer on screen, written + DIRTYFB; per update median 2301 us, p90 2950 us, max 9000 us)";
        assert_eq!(
            parse_loop(d),
            Some(Parsed {
                ops_per_s: 412.5,
                ops: 1000,
                median_us: Some(2301),
                p90_us: Some(2950),
            })
        );
        let t = "466.0 ops/s (1398 iterations in 3000 ms; 256x256 XRGB dumb buffer create, map, write, transfer, wait, destroy)";
        let p = parse_loop(t).expect("parses");
        assert_eq!((p.ops, p.median_us), (1398, None));
        assert_eq!(parse_loop("fast"), None);
    }
}
