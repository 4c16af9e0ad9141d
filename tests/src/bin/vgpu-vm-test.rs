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
use vgpu_device::admin::protocol::{PressureReply, ScreenshotReply, ShrinkRow, StatsReply};
use vgpu_device::admin::{AdminClient, Request};
use vgpu_guest_test::pattern;
use vgpu_guest_test::pattern::Bars;
use vgpu_guest_test::protocol::{
    BLOB_SCREEN_READY, DONE, PURGE_REQUEST, RESULT_PREFIXES, SCREEN_READY,
};
use vgpu_tests::backend::RunningBackend;
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

/// What one boot produced.
#[derive(Debug, Default)]
struct Boot {
    results: Vec<(String, String, String)>,
    screen: Option<Result<String, String>>,
    /// The host's look at the guest's blob scanout, if the guest made one.
    blob_screen: Option<Result<String, String>>,
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
    let boot = boot_once(&cfg, daemon.socket(), Some(&admin), work, 20, timeout, None);
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
    let screen = match (cfg.device, admin) {
        (GpuDevice::Generic, Some(a)) => Screen::Admin(a),
        _ => Screen::Qmp,
    };
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
        let look = |bars: Bars, size: &str, file: &str| match screen {
            Screen::Qmp => check_screen(&vm, &work.join(file), bars, size.trim()),
            Screen::Admin(a) => check_screenshot(a, bars, size.trim()),
        };
        if let Some(size) = line.strip_prefix(SCREEN_READY) {
            boot.screen = Some(look(Bars::Forward, size, &format!("screen-{n}.ppm")));
            if let Err(e) = vm.send_line("ok") {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if let Some(size) = line.strip_prefix(BLOB_SCREEN_READY) {
            // The guest reports the result; the host's view goes in too.
            let seen = look(Bars::Mirrored, size, &format!("blob-screen-{n}.ppm"));
            let answer = match &seen {
                Ok(s) => format!("ok, {s}"),
                Err(e) => format!("bad: {e}"),
            };
            boot.blob_screen = Some(seen);
            if let Err(e) = vm.send_line(&answer) {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if let Some(how) = line.strip_prefix(PURGE_REQUEST) {
            let answer = match admin {
                Some(a) => match purge(a, how.trim() == "soft-limit") {
                    Ok(what) => format!("purged {what}"),
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

/// Where the guest's screen is looked at.
#[derive(Clone, Copy)]
enum Screen<'a> {
    /// QEMU's screendump (its display channel).
    Qmp,
    /// The daemon's own screenshot (no display channel).
    Admin(&'a Path),
}

/// The pattern in the daemon's screenshot of scanout 0.
fn check_screenshot(admin: &Path, bars: Bars, size: &str) -> Result<String, String> {
    use base64::Engine;
    let mut last = String::new();
    for _ in 0..20 {
        let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
        match c.call::<ScreenshotReply>(&Request::Screenshot { scanout: Some(0) }) {
            Ok(r) => {
                let png = base64::engine::general_purpose::STANDARD
                    .decode(r.png_base64.as_bytes())
                    .map_err(|e| format!("screenshot is not base64: {e}"))?;
                let (w, h, rgb) = vgpu_device::screens::decode_png(&png)?;
                let px = |x: u32, y: u32| {
                    let o = (y as usize * w as usize + x as usize) * 3;
                    [rgb[o], rgb[o + 1], rgb[o + 2]]
                };
                match pattern::check_bars(bars, w, h, px) {
                    Ok(()) => {
                        return Ok(format!(
                            "{w}x{h} daemon screenshot (no display channel) shows the pattern (guest mode {size}, {} updates)",
                            r.updates
                        ))
                    }
                    Err(e) => last = format!("{w}x{h} daemon screenshot: {e}"),
                }
            }
            Err(e) => last = format!("screenshot: {e}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last)
}

fn check_screen(vm: &Vm, path: &Path, bars: Bars, size: &str) -> Result<String, String> {
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
        match pattern::check_bars(bars, w, h, px) {
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

/// Purges for the guest: with `soft_limit`, first waits (bounded) for the
/// VM's soft limit to take what it takes, then purges the rest through the
/// admin socket. What was purged, and by whom.
fn purge(admin: &Path, soft_limit: bool) -> Result<String, String> {
    let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
    let mut by_soft_limit = 0;
    if soft_limit {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(2000);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && by_soft_limit == 0 {
            let p: PressureReply = c
                .call(&Request::Pressure {
                    trigger: None,
                    inject: false,
                })
                .map_err(|e| e.to_string())?;
            by_soft_limit = p
                .recent
                .iter()
                .filter(|r| r.trigger.starts_with("soft-limit:") && r.at_unix_ms >= since)
                .map(|r| r.purged_bytes)
                .sum();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let r: ShrinkRow = c
        .call(&Request::Purge { owner: None })
        .map_err(|e| e.to_string())?;
    Ok(if soft_limit {
        format!(
            "{} (the soft limit {by_soft_limit}, an admin purge {})",
            by_soft_limit + r.purged_bytes,
            r.purged_bytes
        )
    } else {
        r.purged_bytes.to_string()
    })
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
    report_with(boot, label, false)
}

/// Prints a boot's results; with `no_skips`, a SKIP is a failure, and so
/// is any shared-memory request QEMU refused.
fn report_with(boot: &Boot, label: &str, no_skips: bool) -> bool {
    let mut ok = true;
    for (tag, name, detail) in &boot.results {
        if no_skips && tag == "SKIP" {
            println!("FAIL {name}: skipped where every subtest must run: {detail}");
            ok = false;
        } else {
            println!("{tag} {name}: {detail}");
        }
    }
    if no_skips {
        let refused: Vec<&String> = boot
            .serial
            .iter()
            .filter(|l| l.starts_with("qemu: "))
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("shmem") || l.contains("unmap") || l.contains("mmap")
            })
            .collect();
        if refused.is_empty() {
            println!("PASS shared-memory: QEMU refused no SHMEM_MAP or SHMEM_UNMAP");
        } else {
            for l in refused {
                println!("FAIL shared-memory: {l}");
            }
            ok = false;
        }
    }
    match &boot.screen {
        Some(Ok(s)) => println!("PASS screendump: {s}"),
        Some(Err(e)) => println!("FAIL screendump: {e}"),
        None => println!("FAIL screendump: the guest never said its pattern was on screen"),
    }
    match &boot.blob_screen {
        Some(Ok(s)) => println!("PASS blob-screendump: {s}"),
        Some(Err(e)) => {
            println!("FAIL blob-screendump: {e}");
            ok = false;
        }
        None if no_skips => {
            println!("FAIL blob-screendump: the guest never scanned out a blob");
            ok = false;
        }
        None => {}
    }
    for p in &boot.problems {
        println!("FAIL {label}: {p}");
    }
    ok && !boot.failed() && matches!(boot.screen, Some(Ok(_)))
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
