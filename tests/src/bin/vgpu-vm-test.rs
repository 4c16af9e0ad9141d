//! `vgpu-vm-test`: the real-VM test. Boots a Linux guest under QEMU (TCG)
//! against the vgpu daemon, with the guest test program as the client:
//!
//! 1. starts `vhost-user-vgpu`, boots the guest, checks the pattern the
//!    guest scans out is in QEMU's screendump, answers the guest's purge
//!    request through the admin socket, collects the subtest results, and
//!    checks the daemon survived and freed everything the VM held;
//! 2. boots a second guest against the same daemon (reconnect) and checks
//!    the same;
//! 3. with `--qemu11`, boots the guest under QEMU 11.1's generic
//!    vhost-user device, which forwards blobs, context init and the
//!    host-visible region: every subtest must pass (a SKIP is a failure),
//!    the screen is checked in the daemon's own screenshot (there is no
//!    display channel), and QEMU must refuse no shared-memory request;
//! 4. with `--compare`, runs the guest once more against vgpu and once
//!    against QEMU's C backend, both 2D-only (`--no-virgl`: the same
//!    commands reach both), and reports vgpu's timed-loop ops/s as a ratio.
//!
//! On failure it prints the guest's serial log and the daemon's log.
//! Every wait is bounded; it kills only the processes it started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::guest_run::{self, dump, freed, report, report_with, Boot, Host, Screen};
use vgpu_tests::qemu::{GpuDevice, GuestArgs, Vm, VmConfig};

#[derive(Debug, Parser)]
#[command(
    name = "vgpu-vm-test",
    about = "Boot a real guest under QEMU against vgpu and check what it sees"
)]
struct Args {
    #[command(flatten)]
    guest: GuestArgs,
    /// Also run against this vhost-user-gpu backend (QEMU's
    /// /usr/lib/qemu/vhost-user-gpu) and report the ratio.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// QEMU 11.1 (integration/install-qemu.sh prints its wrapper): boot
    /// once more under its generic vhost-user device, where every subtest
    /// must run.
    #[arg(long)]
    qemu11: Option<PathBuf>,
    /// Duration of the guest's timed loop, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    loop_ms: u64,
    /// Longest a boot may take from start to power-off, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout_s: u64,
    /// Where logs, sockets and screendumps go (default: a fresh temp dir).
    #[arg(long)]
    work: Option<PathBuf>,
    /// One boot for newcomers: print the guest's console as it runs, and
    /// `vgpuctl stats` while the guest is up and after it left.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vgpu-vm-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("vgpu-vm-test-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let cfg = VmConfig {
        qemu: args.qemu.clone(),
        kernel: args.guest.kernel.clone(),
        initrd: args.guest.initrd.clone(),
        append: format!(
            "quiet vgpu.loop_ms={}{}",
            args.loop_ms,
            if args.demo { " vgpu.hold=6" } else { "" }
        ),
        memory_mib: 512,
        device: GpuDevice::VhostUserGpu,
    };
    let timeout = Duration::from_secs(args.timeout_s);
    let mut ok = true;

    // 1 and 2: two guests, one daemon.
    let log = work.join("vgpu.log");
    let daemon = RunningBackend::command_logged(
        &format!("{} --socket-path {{sock}}", args.guest.daemon.display()),
        &[],
        Some(&log),
    )
    .map_err(|e| format!("starting {}: {e}", args.guest.daemon.display()))?;
    let admin = PathBuf::from(format!("{}.admin", daemon.socket().display()));
    wait_for(&admin, Duration::from_secs(10))?;
    let mut daemon = daemon;
    if args.demo {
        return demo(args, &cfg, &mut daemon, &admin, &work, timeout);
    }
    for (n, label) in ["first guest", "second guest (reconnect)"]
        .iter()
        .enumerate()
    {
        println!("== vgpu: {label}");
        let host = Host {
            admin: Some(&admin),
            work: &work,
            n,
            timeout,
            live: None,
        };
        let boot = boot_once(&cfg, daemon.socket(), &host);
        ok &= report(&boot, label);
        if !daemon.alive() {
            println!("FAIL daemon: vhost-user-vgpu exited during the {label}");
            ok = false;
            break;
        }
        match freed(&admin) {
            Ok(s) => println!("PASS host: after the {label} powered off: {s}"),
            Err(e) => {
                println!("FAIL host: after the {label} powered off: {e}");
                ok = false;
            }
        }
        if boot.failed() {
            dump(&boot, &log);
        }
    }
    match daemon.terminate(Duration::from_secs(10)) {
        Ok(status) if status.success() && !admin.exists() && !daemon.socket().exists() => {
            println!("PASS shutdown: SIGTERM, exit status 0, sockets removed")
        }
        Ok(status) => {
            println!(
                "FAIL shutdown: {status}; sockets left: {}",
                admin.exists() || daemon.socket().exists()
            );
            ok = false;
        }
        Err(e) => {
            println!("FAIL shutdown: {e}");
            ok = false;
        }
    }
    drop(daemon);

    // 3: under QEMU 11.1's generic device, every path.
    if let Some(qemu11) = &args.qemu11 {
        ok &= qemu11_run(args, &cfg, qemu11, &work, timeout)?;
    }

    // 4: against QEMU's C backend, both 2D-only.
    if let Some(c_backend) = &args.compare {
        let mut rates = Vec::new();
        for (label, cmd) in [
            (
                "vgpu --no-virgl",
                format!(
                    "{} --socket-path {{sock}} --no-virgl --no-admin-socket",
                    args.guest.daemon.display()
                ),
            ),
            (
                "QEMU vhost-user-gpu",
                format!("{} --socket-path {{sock}}", c_backend.display()),
            ),
        ] {
            println!("== comparison: {label}");
            let log = work.join(format!("{}.log", label.replace(' ', "_")));
            let backend = RunningBackend::command_logged(&cmd, &[], Some(&log))
                .map_err(|e| format!("starting {label}: {e}"))?;
            let host = Host {
                admin: None,
                work: &work,
                n: 10 + rates.len(),
                timeout,
                live: None,
            };
            let boot = boot_once(&cfg, backend.socket(), &host);
            ok &= report(&boot, label);
            if boot.failed() {
                dump(&boot, &log);
            }
            rates.push((label, boot.ops_per_s()));
        }
        if let [(_, Some(vgpu)), (_, Some(qemu))] = rates.as_slice() {
            println!(
                "RATIO timed-loop: vgpu {vgpu:.1} ops/s / QEMU vhost-user-gpu {qemu:.1} ops/s = {:.2}x",
                vgpu / qemu
            );
        } else {
            println!("FAIL ratio: a timed loop did not pass: {rates:?}");
            ok = false;
        }
    }
    println!(
        "{}",
        if ok {
            "vgpu-vm-test: all passed"
        } else {
            "vgpu-vm-test: FAILED"
        }
    );
    Ok(ok)
}

/// One guest under QEMU 11.1's generic vhost-user device.
fn qemu11_run(
    args: &Args,
    cfg: &VmConfig,
    qemu11: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<bool, String> {
    let label = "QEMU 11.1 generic device";
    println!("== vgpu: {label} (blobs, native contexts, host-visible region; no display channel)");
    let log = work.join("vgpu-qemu11.log");
    // A soft limit the guest's pressure subtest goes past.
    let mut daemon = RunningBackend::command_logged(
        &format!(
            "{} --socket-path {{sock}} --vm-soft-limit 16M",
            args.guest.daemon.display()
        ),
        &[],
        Some(&log),
    )
    .map_err(|e| format!("starting {}: {e}", args.guest.daemon.display()))?;
    let admin = PathBuf::from(format!("{}.admin", daemon.socket().display()));
    wait_for(&admin, Duration::from_secs(10))?;
    let cfg = VmConfig {
        qemu: qemu11.to_path_buf(),
        device: GpuDevice::Generic,
        ..cfg.clone()
    };
    let host = Host {
        admin: Some(&admin),
        work,
        n: 20,
        timeout,
        live: None,
    };
    let boot = boot_once(&cfg, daemon.socket(), &host);
    let mut ok = report_with(&boot, label, true);
    if !daemon.alive() {
        println!("FAIL daemon: vhost-user-vgpu exited during the {label} run");
        ok = false;
    } else {
        match freed(&admin) {
            Ok(s) => println!("PASS host: after the {label} guest powered off: {s}"),
            Err(e) => {
                println!("FAIL host: after the {label} guest powered off: {e}");
                ok = false;
            }
        }
    }
    if !ok {
        dump(&boot, &log);
    }
    let _ = daemon.terminate(Duration::from_secs(10));
    Ok(ok)
}

fn wait_for(path: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} never appeared", path.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The demo: one boot, shown as it happens.
fn demo(
    args: &Args,
    cfg: &VmConfig,
    daemon: &mut RunningBackend,
    admin: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<bool, String> {
    let vgpuctl = args.guest.daemon.with_file_name("vgpuctl");
    let stats = |when: &str| {
        println!("\n$ vgpuctl --socket {} stats    # {when}", admin.display());
        match std::process::Command::new(&vgpuctl)
            .arg("--socket")
            .arg(admin)
            .arg("stats")
            .output()
        {
            Ok(o) => print!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => println!("(running {}: {e})", vgpuctl.display()),
        }
    };
    stats("before the VM starts");
    println!("\n== booting the guest (Linux 6.12 under QEMU TCG, GPU = vgpu); its console:");
    let host = Host {
        admin: Some(admin),
        work,
        n: 0,
        timeout,
        live: Some(&stats),
    };
    let boot = boot_once(cfg, daemon.socket(), &host);
    stats("after the VM powered off: everything it held is freed");
    let ok = report(&boot, "demo");
    let _ = daemon.terminate(Duration::from_secs(10));
    Ok(ok)
}

/// Boots one guest under QEMU and plays the host's part (see
/// [`guest_run::play`]).
fn boot_once(cfg: &VmConfig, socket: &Path, host: &Host<'_>) -> Boot {
    let screen = match (cfg.device, host.admin) {
        (GpuDevice::Generic, Some(a)) => Screen::Admin(a),
        _ => Screen::Display,
    };
    match Vm::boot(cfg, socket, host.work) {
        Ok(mut vm) => guest_run::play(&mut vm, screen, host),
        Err(e) => {
            let mut boot = Boot::default();
            boot.problems.push(format!("starting QEMU: {e}"));
            boot
        }
    }
}
