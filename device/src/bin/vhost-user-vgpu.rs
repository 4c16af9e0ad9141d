//! `vhost-user-vgpu`: the vgpu daemon. See `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vgpu_backend::intel::detect::GpuChoice;
use vgpu_device::cli::{capabilities_json, Cli};
use vgpu_device::daemon::{Daemon, Endpoint};
use vgpu_device::sandbox::fs::FsPaths;
use vgpu_device::service::{Service, ServiceConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // libvirt starts vhost-user helpers with stderr on /dev/null: the log
    // can go to a file instead (opened now, before the sandbox). Not for
    // --print-capabilities: libvirt runs that as root first, and a file it
    // created would be root's, shutting out the daemon it starts next.
    if let Some(path) =
        std::env::var_os("VGPU_LOG_FILE").filter(|p| !p.is_empty() && !cli.print_capabilities)
    {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(file) => {
                logger.target(env_logger::Target::Pipe(Box::new(file)));
            }
            Err(e) => eprintln!(
                "vhost-user-vgpu: VGPU_LOG_FILE={}: {e}; logging to stderr",
                Path::new(&path).display()
            ),
        }
    }
    logger.init();
    if cli.print_capabilities {
        println!("{}", capabilities_json(Path::new("/dev/dri")));
        // Which GPU would back buffers, on stderr (the JSON's schema is QEMU's).
        match vgpu_backend::intel::detect::choose(&cli.gpu_choice(), Path::new("/dev/dri")) {
            Ok(d) => eprintln!("vhost-user-vgpu: GPU: {}", d.reason),
            Err(e) => eprintln!("vhost-user-vgpu: GPU: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vhost-user-vgpu: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    // Read (and cleared) before anything else, single-threaded.
    let activated = if cli.socket_path.is_none() && cli.fd.is_none() {
        vgpu_device::socket_activation::take_listen_fd()?
    } else {
        None
    };
    // Before any thread starts: every thread inherits them.
    let started_as_root = rustix::process::geteuid().is_root();
    let mut dropped = 0;
    if let Some(user) = &cli.user {
        if !started_as_root {
            return Err(format!(
                "--user {user}: the daemon must start as root to switch users"
            ));
        }
        let who = vgpu_device::sandbox::user::resolve(user, cli.group.as_deref())?;
        dropped = vgpu_device::sandbox::drop_bounding_set()?;
        vgpu_device::sandbox::user::switch_to(&who)?;
        log::info!(
            "sandbox: running as {} (uid {}, gid {}, groups {:?})",
            who.name,
            who.uid,
            who.gid,
            who.groups
        );
    }
    if vgpu_device::sandbox::namespaces::wanted(cli.namespaces, started_as_root) {
        vgpu_device::sandbox::namespaces::enter()?;
        log::info!(
            "sandbox: private user, network, IPC and UTS namespaces (--namespaces {})",
            cli.namespaces
        );
    }
    vgpu_device::sandbox::no_new_privileges()?;
    dropped += vgpu_device::sandbox::drop_capabilities()?;
    log::info!("sandbox: no capabilities left ({dropped} removed from the bounding set)");
    if cli.no_landlock {
        log::info!("sandbox: Landlock off (--no-landlock): file access not narrowed");
    } else {
        let paths = FsPaths {
            sockets: cli
                .socket_path
                .iter()
                .map(PathBuf::from)
                .chain(cli.admin_socket_path())
                .collect(),
            pressure_watch: std::env::var_os("MEMORY_PRESSURE_WATCH").map(PathBuf::from),
            render_node: match cli.gpu_choice() {
                GpuChoice::Path(p) => Some(p),
                GpuChoice::Auto | GpuChoice::Emulated => None,
            },
        };
        let level = vgpu_device::sandbox::fs::restrict(&paths)?;
        log::info!("sandbox: {level}");
    }
    let endpoint = match (&cli.socket_path, cli.fd, activated) {
        (Some(path), None, _) => Endpoint::Path(path.clone()),
        (None, Some(fd), _) => {
            check_socket(fd, "--fd")?;
            Endpoint::Fd(fd)
        }
        (None, None, Some(fd)) => {
            check_socket(fd, "socket activation: descriptor")?;
            log::info!("serving the socket systemd passed (socket activation)");
            Endpoint::Fd(fd)
        }
        _ => {
            return Err(
                "give --socket-path PATH or --fd N, or start it from a systemd socket unit \
                 (see --help)"
                    .into(),
            )
        }
    };
    let cfg = cli.config()?;
    match vgpu_backend::host::raise_fd_limit() {
        Ok(n) => log::debug!("open-file limit: {n}"),
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
    // The admin socket first: binding it finds a daemon already serving
    // these sockets before the vhost-user socket (which is replaced
    // unconditionally) is touched.
    let service = Service::start(ServiceConfig {
        device: cfg,
        monitor: cli.monitor_config(),
        admin_socket: cli.admin_socket_path(),
        gpu: cli.gpu_choice(),
        dri_dir: PathBuf::from("/dev/dri"),
    })?;
    let mut connections =
        Daemon::listen(&endpoint).map_err(|e| format!("{e}: {}", source_text(&e)))?;
    let mut sockets: Vec<PathBuf> = service
        .admin_socket()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    if let Endpoint::Path(p) = &endpoint {
        sockets.push(PathBuf::from(p));
    }
    let signals = signal_watch()?;
    // Every socket, file and thread the daemon starts with exists now.
    let confined = vgpu_device::sandbox::confine(cli.seccomp)?;
    log::info!("sandbox: {confined}");
    vgpu_backend::pressure::on_monitor_thread(|| {
        vgpu_device::sandbox::enter(vgpu_device::sandbox::ThreadKind::Monitor)
    });
    exit_on_signal(signals, sockets.clone())?;
    #[cfg(feature = "test-utils")]
    forbidden_call_for_tests();
    #[cfg(feature = "test-utils")]
    open_for_tests();
    let served = service
        .daemon()
        .run(&mut connections, cli.exit_on_disconnect)
        .map_err(|e| e.to_string());
    // The VMM is gone (--exit-on-disconnect, or libvirt's connection
    // closed): nothing may find sockets nobody serves.
    remove_sockets(&sockets);
    served
}

/// The SIGTERM/SIGINT handlers (made before the filter: they need a
/// socket pair), for [`exit_on_signal`].
fn signal_watch() -> Result<signal_hook::iterator::Signals, String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("installing signal handlers: {e}"))
}

/// SIGTERM or SIGINT (systemd stop, Ctrl-C): remove the sockets this
/// daemon created and exit with status 0. A connected VMM sees the
/// vhost-user connection close.
fn exit_on_signal(
    mut signals: signal_hook::iterator::Signals,
    sockets: Vec<PathBuf>,
) -> Result<(), String> {
    use signal_hook::consts::SIGTERM;
    std::thread::Builder::new()
        .name("vgpu-signals".into())
        .spawn(move || {
            vgpu_device::sandbox::enter(vgpu_device::sandbox::ThreadKind::Signals);
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                log::info!("{name}: removing sockets and exiting");
                remove_sockets(&sockets);
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(())
}

/// Removes the sockets this daemon created (best effort: one already gone
/// is fine).
fn remove_sockets(sockets: &[PathBuf]) {
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
}

/// Test builds only: with `VGPU_TEST_FORBIDDEN_SYSCALL` set, makes a
/// system call no allow-list has (`acct`), so a test can see the filter
/// act (killed under `--seccomp kill`, reported under `trap`).
#[cfg(feature = "test-utils")]
fn forbidden_call_for_tests() {
    if std::env::var_os("VGPU_TEST_FORBIDDEN_SYSCALL").is_some() {
        log::warn!("test hook: calling acct(NULL), which the filter forbids");
        // SAFETY: acct(NULL) takes no pointer to memory; without
        // CAP_SYS_PACCT (or with accounting off) it changes nothing.
        let r = unsafe { libc::syscall(libc::SYS_acct, 0usize) };
        log::warn!("test hook: acct returned {r}: the filter let it through");
    }
}

/// Test builds only: with `VGPU_TEST_OPEN=PATH`, opens PATH for reading
/// once confined and logs what happened (Landlock's refusal or success).
#[cfg(feature = "test-utils")]
fn open_for_tests() {
    if let Some(path) = std::env::var_os("VGPU_TEST_OPEN") {
        let path = PathBuf::from(path);
        match std::fs::File::open(&path) {
            Ok(_) => log::warn!("test hook: opened {}", path.display()),
            Err(e) => log::warn!("test hook: opening {} failed: {e}", path.display()),
        }
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// A handed-over descriptor must be an open socket (listening or
/// connected; the daemon tells which). `what` names where it came from.
fn check_socket(fd: i32, what: &str) -> Result<(), String> {
    if fd < 0 {
        return Err(format!("{what} {fd} is not a file descriptor"));
    }
    // SAFETY: only borrowed for the fstat below; ownership stays with the
    // caller (it becomes the listener).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let st = rustix::fs::fstat(borrowed).map_err(|e| format!("{what} {fd}: {e}"))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return Err(format!("{what} {fd} is not a socket"));
    }
    Ok(())
}
