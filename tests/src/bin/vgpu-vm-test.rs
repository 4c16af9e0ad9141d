//! `vgpu-vm-test`: the real-VM test. Boots a Linux guest under QEMU (TCG)
//! against the vgpu daemon, with the guest test program as the client:
//!
//! 1. starts `vhost-user-vgpu`, boots the guest, checks the pattern the
//!    guest scans out is in QEMU's screendump, answers the guest's purge
//!    request through the admin socket, collects the subtest results, and
//!    checks the daemon survived and freed everything the VM held;
//! 2. boots a second guest against the same daemon (reconnect) and checks
//!    the same;
//! 3. with `--compare`, runs the guest once more against vgpu and once
//!    against QEMU's C backend, both 2D-only (`--no-virgl`: the same
//!    commands reach both), and reports vgpu's timed-loop ops/s as a ratio.
//!
//! On failure it prints the guest's serial log and the daemon's log.
//! Every wait is bounded; it kills only the processes it started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use vgpu_device::admin::protocol::{ShrinkRow, StatsReply};
use vgpu_device::admin::{AdminClient, Request};
use vgpu_guest_test::pattern;
use vgpu_guest_test::protocol::{DONE, PURGE_REQUEST, RESULT_PREFIXES, SCREEN_READY};
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::qemu::{Vm, VmConfig};

#[derive(Debug, Parser)]
#[command(
    name = "vgpu-vm-test",
    about = "Boot a real guest under QEMU against vgpu and check what it sees"
)]
struct Args {
    /// Guest kernel (from integration/build-guest-image.sh).
    #[arg(long)]
    kernel: PathBuf,
    /// Guest initramfs holding the guest test program.
    #[arg(long)]
    initrd: PathBuf,
    /// The vgpu daemon binary.
    #[arg(long)]
    daemon: PathBuf,
    /// Also run against this vhost-user-gpu backend (QEMU's
    /// /usr/lib/qemu/vhost-user-gpu) and report the ratio.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
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

/// What one boot produced.
#[derive(Debug, Default)]
struct Boot {
    results: Vec<(String, String, String)>,
    screen: Option<Result<String, String>>,
    done: bool,
    exited: bool,
    problems: Vec<String>,
    serial: Vec<String>,
}

impl Boot {
    fn result(&self, name: &str) -> Option<&(String, String, String)> {
        self.results.iter().find(|r| r.1 == name)
    }

    fn ops_per_s(&self) -> Option<f64> {
        let (tag, _, detail) = self.result("timed-loop")?;
        if tag != "PASS" {
            return None;
        }
        detail.split_whitespace().next()?.parse().ok()
    }

    fn failed(&self) -> bool {
        !self.problems.is_empty() || self.results.iter().any(|r| r.0 == "FAIL") || !self.done
    }
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
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        append: format!(
            "quiet vgpu.loop_ms={}{}",
            args.loop_ms,
            if args.demo { " vgpu.hold=6" } else { "" }
        ),
        memory_mib: 512,
    };
    let timeout = Duration::from_secs(args.timeout_s);
    let mut ok = true;

    // 1 and 2: two guests, one daemon.
    let log = work.join("vgpu.log");
    let daemon = RunningBackend::command_logged(
        &format!("{} --socket-path {{sock}}", args.daemon.display()),
        &[],
        Some(&log),
    )
    .map_err(|e| format!("starting {}: {e}", args.daemon.display()))?;
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
        let boot = boot_once(&cfg, daemon.socket(), Some(&admin), &work, n, timeout, None);
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

    // 3: against QEMU's C backend, both 2D-only.
    if let Some(c_backend) = &args.compare {
        let mut rates = Vec::new();
        for (label, cmd) in [
            (
                "vgpu --no-virgl",
                format!(
                    "{} --socket-path {{sock}} --no-virgl --no-admin-socket",
                    args.daemon.display()
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
            let boot = boot_once(
                &cfg,
                backend.socket(),
                None,
                &work,
                10 + rates.len(),
                timeout,
                None,
            );
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
    let vgpuctl = args.daemon.with_file_name("vgpuctl");
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
    let boot = boot_once(
        cfg,
        daemon.socket(),
        Some(admin),
        work,
        0,
        timeout,
        Some(&stats),
    );
    stats("after the VM powered off: everything it held is freed");
    let ok = report(&boot, "demo");
    let _ = daemon.terminate(Duration::from_secs(10));
    Ok(ok)
}

/// Boots one guest, plays the host's part, collects what it printed. With
/// `live`, prints the console as it comes and calls `live` once the guest
/// test is done (while the guest holds).
fn boot_once(
    cfg: &VmConfig,
    socket: &Path,
    admin: Option<&Path>,
    work: &Path,
    n: usize,
    timeout: Duration,
    live: Option<&dyn Fn(&str)>,
) -> Boot {
    let mut boot = Boot::default();
    let mut vm = match Vm::boot(cfg, socket, work) {
        Ok(vm) => vm,
        Err(e) => {
            boot.problems.push(format!("starting QEMU: {e}"));
            return boot;
        }
    };
    let deadline = Instant::now() + timeout;
    while let Some(line) = vm.next_line(deadline) {
        if live.is_some() {
            println!("guest| {line}");
        }
        if let Some(size) = line.strip_prefix(SCREEN_READY) {
            let path = work.join(format!("screen-{n}.ppm"));
            boot.screen = Some(check_screen(&vm, &path, size.trim()));
            if let Err(e) = vm.send_line("ok") {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if line.starts_with(PURGE_REQUEST) {
            let answer = match admin {
                Some(a) => match purge(a) {
                    Ok(bytes) => format!("purged {bytes}"),
                    Err(e) => format!("purge unavailable: {e}"),
                },
                None => "purge unavailable: this backend has no admin socket".into(),
            };
            if let Err(e) = vm.send_line(&answer) {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if line.starts_with(DONE) {
            boot.done = true;
            if let Some(show) = live {
                show("while the guest is still up (its console framebuffer is a buffer object)");
            }
        } else if let Some(tag) = RESULT_PREFIXES.iter().find(|p| line.starts_with(*p)) {
            let rest = &line[tag.len()..];
            let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
            boot.results
                .push((tag.trim().to_string(), name.to_string(), detail.to_string()));
        }
        if line.contains("powering off") || line.contains("reboot: Power down") {
            break;
        }
    }
    boot.exited = vm.wait_exit(Duration::from_secs(30));
    if !boot.exited {
        boot.problems
            .push("QEMU did not exit after the guest powered off (killed)".into());
    }
    if !boot.done {
        boot.problems.push(format!(
            "the guest did not finish within {} s",
            timeout.as_secs()
        ));
    }
    boot.serial = std::mem::take(&mut vm.serial);
    boot
}

fn check_screen(vm: &Vm, path: &Path, size: &str) -> Result<String, String> {
    // The display channel may lag the guest's flush by a frame: retry.
    let mut last = String::new();
    for _ in 0..20 {
        vm.screendump(path)
            .map_err(|e| format!("screendump: {e}"))?;
        let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let (w, h, rgb) = pattern::parse_ppm(&data)?;
        let px = |x: u32, y: u32| {
            let o = (y as usize * w as usize + x as usize) * 3;
            [rgb[o], rgb[o + 1], rgb[o + 2]]
        };
        match pattern::check(w, h, px) {
            Ok(()) => {
                return Ok(format!(
                    "{w}x{h} screendump shows the pattern (guest mode {size})"
                ))
            }
            Err(e) => last = format!("{w}x{h} screendump: {e}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last)
}

fn purge(admin: &Path) -> Result<u64, String> {
    let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
    let r: ShrinkRow = c
        .call(&Request::Purge { owner: None })
        .map_err(|e| e.to_string())?;
    Ok(r.purged_bytes)
}

/// Checks the host holds nothing for a VM any more.
fn freed(admin: &Path) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
        let s: StatsReply = c.call(&Request::Stats {}).map_err(|e| e.to_string())?;
        let host = &s.owners[0];
        let vms: Vec<&str> = s.owners.iter().skip(1).map(|o| o.path.as_str()).collect();
        if vms.is_empty() && host.charged == 0 && s.objects == 0 {
            return Ok("no VM owner left, 0 objects, 0 bytes charged (vgpuctl stats)".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "still held: owners {vms:?}, {} objects, {} bytes charged",
                s.objects, host.charged
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn report(boot: &Boot, label: &str) -> bool {
    for (tag, name, detail) in &boot.results {
        println!("{tag} {name}: {detail}");
    }
    match &boot.screen {
        Some(Ok(s)) => println!("PASS screendump: {s}"),
        Some(Err(e)) => println!("FAIL screendump: {e}"),
        None => println!("FAIL screendump: the guest never said its pattern was on screen"),
    }
    for p in &boot.problems {
        println!("FAIL {label}: {p}");
    }
    !boot.failed() && matches!(boot.screen, Some(Ok(_)))
}

fn dump(boot: &Boot, log: &Path) {
    println!("---- guest serial log ----");
    for l in &boot.serial {
        println!("| {l}");
    }
    println!("---- backend log ({}) ----", log.display());
    if let Ok(text) = std::fs::read_to_string(log) {
        for l in text
            .lines()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("| {l}");
        }
    }
    println!("----");
}
