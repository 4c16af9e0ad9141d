//! `vgpu-libvirt-test`: boots the guest test program through a real
//! libvirt, the way most QEMU users attach devices. A private session-mode
//! libvirt daemon (see `vgpu_tests::libvirt`) defines and starts a TCG
//! domain whose
//! video is `<model type='virtio'/><driver name='vhostuser'/>`: libvirt
//! finds vgpu through the installed vhost-user descriptor
//! (/usr/share/qemu/vhost-user/40-vgpu.json; `--daemon` puts one for a
//! build tree in the session instead), asks it `--print-capabilities`,
//! starts it itself with `--fd=N` (one end of a socket pair, the other
//! QEMU's) and `--virgl` for `accel3d`, and QEMU attaches it as
//! vhost-user-vga. Two boots, without and with `accel3d`:
//!
//! - the daemon libvirt started is found by its admin socket
//!   (`vgpu-<pid>.admin` in `$VGPU_RUNTIME_DIR`, which libvirt passes on);
//!   its command line has `--fd=` and `--virgl` exactly when asked;
//! - the guest's subtests pass (blob and native-context subtests skip:
//!   QEMU's vhost-user-gpu devices forward none of it), the pattern it
//!   scans out is in `virsh screenshot`;
//! - once the guest powers off the daemon exits (its only connection
//!   closed) and removes its admin socket.
//!
//! Run as root it runs libvirt as `nobody`; otherwise as the caller.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use vgpu_tests::guest_run::{self, dump, report, Host, Screen};
use vgpu_tests::libvirt::{domain_xml, Account, Libvirt};

#[derive(Debug, Parser)]
#[command(
    name = "vgpu-libvirt-test",
    about = "Boot a real guest through libvirt, which starts vgpu itself"
)]
struct Args {
    /// The guest kernel (integration/build-guest-image.sh prints it).
    #[arg(long)]
    kernel: PathBuf,
    /// The guest initramfs with the guest test program.
    #[arg(long)]
    initrd: PathBuf,
    /// Use this vhost-user-vgpu (through a descriptor in the session's
    /// ~/.config/qemu/vhost-user) instead of the installed package's.
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// The QEMU binary libvirt runs.
    #[arg(long, default_value = "/usr/bin/qemu-system-x86_64")]
    qemu: PathBuf,
    /// Longest a boot may take from start to power-off, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout_s: u64,
    /// The work directory (default: a fresh one under /tmp; the session's
    /// user must be able to reach it).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// The installed package's descriptor.
const INSTALLED_DESCRIPTOR: &str = "/usr/share/qemu/vhost-user/40-vgpu.json";
/// The binary it names.
const INSTALLED_BINARY: &str = "/usr/libexec/vhost-user-vgpu";

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {
            println!("vgpu-libvirt-test: passed");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("vgpu-libvirt-test: FAILED");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("vgpu-libvirt-test: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An I/O error as a message naming `what` it concerned.
fn failed_at(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Copies `from` to `dir` (readable by the session's user).
fn copy_in(from: &Path, dir: &Path, name: &str, mode: u32) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let to = dir.join(name);
    std::fs::copy(from, &to).map_err(failed_at(from.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
        .map_err(failed_at(to.display()))?;
    Ok(to)
}

fn run(args: &Args) -> Result<bool, String> {
    use std::os::unix::fs::PermissionsExt;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("vgpu-libvirt-test-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&work);
    let guest = work.join("guest");
    std::fs::create_dir_all(&guest).map_err(failed_at(guest.display()))?;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755))
        .map_err(failed_at(work.display()))?;
    std::fs::set_permissions(&guest, std::fs::Permissions::from_mode(0o755))
        .map_err(failed_at(guest.display()))?;
    let kernel = copy_in(&args.kernel, &guest, "vmlinuz", 0o644)?;
    let initrd = copy_in(&args.initrd, &guest, "initrd.gz", 0o644)?;

    let binary = match &args.daemon {
        Some(_) => guest.join("vhost-user-vgpu"),
        None => PathBuf::from(INSTALLED_BINARY),
    };
    let descriptors = match &args.daemon {
        Some(d) => {
            let bin = copy_in(d, &guest, "vhost-user-vgpu", 0o755)?;
            println!(
                "libvirt finds {} through a descriptor in the session",
                bin.display()
            );
            vec![(
                // Sorts before every system descriptor (QEMU's is 50-).
                "10-vgpu-test.json".to_string(),
                serde_json::json!({
                    "description": "vgpu under test",
                    "type": "gpu",
                    "binary": bin,
                })
                .to_string(),
            )]
        }
        None => {
            if !Path::new(INSTALLED_DESCRIPTOR).exists() {
                return Err(format!(
                    "{INSTALLED_DESCRIPTOR} is missing: install the package \
                     (dist/debian/build-deb.sh) or give --daemon"
                ));
            }
            println!("libvirt finds vgpu through the installed {INSTALLED_DESCRIPTOR}");
            Vec::new()
        }
    };

    let session = work.join("session");
    let vgpu_run = session.join("vgpu-run");
    std::fs::create_dir_all(&vgpu_run).map_err(failed_at(vgpu_run.display()))?;
    let daemon_log = vgpu_run.join("vhost-user-vgpu.log");
    // libvirt passes its environment on to the helpers it starts.
    let env = vec![
        (
            "VGPU_RUNTIME_DIR".to_string(),
            vgpu_run.to_string_lossy().into_owned(),
        ),
        (
            "VGPU_LOG_FILE".to_string(),
            daemon_log.to_string_lossy().into_owned(),
        ),
    ];
    let account = Account::for_tests();
    let started = Instant::now();
    let lv = Libvirt::start(&session, account, &env, &descriptors)
        .map_err(|e| format!("starting libvirt: {e}"))?;
    println!(
        "libvirt: {} in session mode{} ({:.1} s to answer): {}",
        lv.daemon.display(),
        if account.is_some() { " as nobody" } else { "" },
        started.elapsed().as_secs_f64(),
        lv.versions()
    );

    let mut ok = true;
    for (n, accel3d) in [false, true].into_iter().enumerate() {
        let label = if accel3d {
            "libvirt accel3d"
        } else {
            "libvirt"
        };
        println!("\n== {label}: a TCG domain with <driver name='vhostuser'/> video");
        ok &= boot(
            args,
            &lv,
            &kernel,
            &initrd,
            &vgpu_run,
            &daemon_log,
            &binary,
            n,
            accel3d,
            label,
        );
    }
    lv.stop().map_err(|e| format!("stopping libvirt: {e}"))?;
    if ok && args.work.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("logs and screenshots: {}", work.display());
    }
    Ok(ok)
}

/// One boot through libvirt; whether everything passed.
#[allow(clippy::too_many_arguments)]
fn boot(
    args: &Args,
    lv: &Libvirt,
    kernel: &Path,
    initrd: &Path,
    vgpu_run: &Path,
    daemon_log: &Path,
    binary: &Path,
    n: usize,
    accel3d: bool,
    label: &str,
) -> bool {
    let name = format!("vgpu-test-{n}");
    let serial = lv.dir.join("vm").join(format!("serial-{n}.sock"));
    let xml_path = lv.dir.join("vm").join(format!("{name}.xml"));
    let xml = domain_xml(
        &name,
        &args.qemu,
        kernel,
        initrd,
        "console=ttyS0 panic=-1 quiet vgpu.loop_ms=3000",
        512,
        &serial,
        accel3d,
    );
    if let Err(e) = std::fs::write(&xml_path, xml) {
        println!("FAIL {label}: writing {}: {e}", xml_path.display());
        return false;
    }
    let before = admin_sockets(vgpu_run);
    let mut domain = match lv.define_and_start(&name, &xml_path, &serial) {
        Ok(d) => d,
        Err(e) => {
            println!("FAIL {label}: {e}");
            print_logs(lv, &name, daemon_log);
            return false;
        }
    };
    let mut ok = true;
    // The daemon libvirt started: its admin socket names its pid.
    let daemon = wait_new_admin_socket(vgpu_run, &before, Duration::from_secs(30));
    match &daemon {
        Some((pid, _)) => match check_command_line(*pid, accel3d, binary) {
            Ok(s) => println!("PASS command-line: {s}"),
            Err(e) => {
                println!("FAIL command-line: {e}");
                ok = false;
            }
        },
        None => {
            println!(
                "FAIL daemon: no vgpu-<pid>.admin appeared in {} (did libvirt start vgpu?)",
                vgpu_run.display()
            );
            ok = false;
        }
    }
    let admin = daemon.as_ref().map(|(_, p)| p.as_path());
    if let Some(a) = admin {
        match admin_sees_the_vm(a) {
            Ok(s) => println!("PASS admin: {s}"),
            Err(e) => {
                println!("FAIL admin: {e}");
                ok = false;
            }
        }
    }
    let work = lv.dir.join("vm");
    let host = Host {
        admin,
        work: &work,
        n,
        timeout: Duration::from_secs(args.timeout_s),
        live: None,
    };
    let boot = guest_run::play(&mut domain, Screen::Display, &host);
    ok &= report(&boot, label);
    drop(domain);
    if let Some((pid, socket)) = &daemon {
        match wait_gone(*pid, socket, Duration::from_secs(15)) {
            Ok(()) => println!(
                "PASS daemon: exited when QEMU closed its connection; {} removed",
                socket.display()
            ),
            Err(e) => {
                println!("FAIL daemon: {e}");
                ok = false;
            }
        }
    }
    if !ok {
        dump(&boot, daemon_log);
        print_logs(lv, &name, daemon_log);
    }
    ok
}

fn print_logs(lv: &Libvirt, name: &str, daemon_log: &Path) {
    println!("---- libvirt's log of the domain ----");
    for l in lv.domain_log(name).lines() {
        println!("| {l}");
    }
    println!("---- libvirt daemon log (last 60 lines) ----");
    let log = lv.log();
    let lines: Vec<&str> = log.lines().collect();
    for l in &lines[lines.len().saturating_sub(60)..] {
        println!("| {l}");
    }
    println!("---- {} ----", daemon_log.display());
    println!(
        "{}",
        std::fs::read_to_string(daemon_log).unwrap_or_default()
    );
}

fn admin_sockets(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "admin"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for an admin socket not in `before`; its pid and path.
fn wait_new_admin_socket(
    dir: &Path,
    before: &[PathBuf],
    timeout: Duration,
) -> Option<(u32, PathBuf)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for p in admin_sockets(dir) {
            if before.contains(&p) {
                continue;
            }
            let pid = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("vgpu-"))
                .and_then(|s| s.parse().ok());
            if let Some(pid) = pid {
                return Some((pid, p));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The daemon's arguments as libvirt gave them: the descriptor's binary,
/// `--fd=N` always, `--virgl` exactly with `accel3d`.
fn check_command_line(pid: u32, accel3d: bool, binary: &Path) -> Result<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| format!("reading pid {pid}'s command line: {e}"))?;
    let argv: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let shown = argv.join(" ");
    if argv.first().map(PathBuf::from).as_deref() != Some(binary) {
        return Err(format!(
            "libvirt did not start {} (the descriptor's binary): {shown}",
            binary.display()
        ));
    }
    if !argv.iter().any(|a| a.starts_with("--fd=")) {
        return Err(format!("no --fd=N: {shown}"));
    }
    let virgl = argv.iter().any(|a| a == "--virgl");
    if virgl != accel3d {
        return Err(format!(
            "--virgl {} with accel3d {}: {shown}",
            if virgl { "given" } else { "missing" },
            if accel3d { "on" } else { "off" }
        ));
    }
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next().unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into());
    Ok(format!("libvirt ran `{shown}` (uid {uid})"))
}

/// Waits for process `pid` to end and `socket` to be gone.
fn wait_gone(pid: u32, socket: &Path, timeout: Duration) -> Result<(), String> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !proc_dir.exists() && !socket.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "after the guest powered off: process {pid} {}, {} {}",
        if proc_dir.exists() {
            "still runs"
        } else {
            "ended"
        },
        socket.display(),
        if socket.exists() {
            "left behind"
        } else {
            "removed"
        }
    ))
}

/// The admin socket of the daemon libvirt started answers (from outside
/// its namespaces, as `vgpuctl --all` would) and shows the VM.
fn admin_sees_the_vm(admin: &Path) -> Result<String, String> {
    use vgpu_device::admin::protocol::StatsReply;
    use vgpu_device::admin::{AdminClient, Request};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats: StatsReply = AdminClient::connect(admin)
            .and_then(|mut c| c.call(&Request::Stats {}))
            .map_err(|e| format!("{}: {e}", admin.display()))?;
        if let Some(vm) = stats.owners.iter().find(|o| o.path == "vm1") {
            return Ok(format!(
                "{} answers: driver {}, vm1 holds {} objects",
                admin.display(),
                stats.driver,
                vm.objects
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{}: no VM after 30 s", admin.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
