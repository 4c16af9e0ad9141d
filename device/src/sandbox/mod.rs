//! Least privilege for the daemon: once start-up is done, the process is
//! confined so that a bug reachable from a guest cannot use more of the
//! host than serving guests needs.
//!
//! Layers, in the order [`confine`] puts them on:
//!
//! 1. **No new privileges** (`PR_SET_NO_NEW_PRIVS`, every thread): no
//!    set-uid binary or file capability can raise what the process holds.
//!    **No capabilities** ([`drop_capabilities`]): both before the first
//!    thread starts, so every thread inherits them.
//! 2. **Landlock** ([`fs`]), also before the first thread: the files the
//!    daemon can reach at all (its sockets' directories, the render node,
//!    the pressure files, its own `/proc`); `--no-landlock` turns it off.
//! 3. **Seccomp** ([`seccomp`]): an allow-list of system calls, with the
//!    arguments checked where they matter (ioctl requests, mmap/mprotect
//!    never executable, madvise advice, fcntl commands, fallocate modes,
//!    clone only for threads). What happens to anything else is
//!    `--seccomp`: `kill` (the default) kills the process, `trap` prints
//!    the system call's name and exits (for bug reports), `log` lets it
//!    through and has the kernel log it (audit), `none` installs nothing.
//!
//! Owns: the order and the report of what was put on. Must not: run
//! before every socket, file and thread the daemon starts with exists
//! (the filter forbids creating them), or in a process that also runs
//! tests (the in-process harness never calls it).

pub mod fs;
pub mod namespaces;
#[cfg(target_arch = "x86_64")]
pub mod seccomp;
pub mod user;

use std::fmt;

/// What a forbidden system call does (`--seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeccompMode {
    /// Kill the process (SIGSYS).
    Kill,
    /// Let it through and have the kernel log it.
    Log,
    /// Print the system call's name and exit (status 159).
    Trap,
    /// No filter.
    None,
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeccompMode::Kill => "kill",
            SeccompMode::Log => "log",
            SeccompMode::Trap => "trap",
            SeccompMode::None => "none",
        })
    }
}

/// What [`confine`] put on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// `--seccomp` as applied.
    pub seccomp: SeccompMode,
    /// System calls the filter allows (0 without one).
    pub allowed_syscalls: usize,
    /// Of those, what each queue worker keeps.
    pub queue_worker_syscalls: usize,
}

impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seccomp {
            SeccompMode::None => write!(f, "no new privileges; no system-call filter (--seccomp none)"),
            mode => write!(
                f,
                "no new privileges; system-call filter on every thread: {} calls allowed ({} in queue workers), anything else: {mode}",
                self.allowed_syscalls, self.queue_worker_syscalls
            ),
        }
    }
}

/// Sets no-new-privileges on the calling thread, which threads it starts
/// inherit: call it before the first thread starts, so that it holds for
/// every thread even under `--seccomp none`.
pub fn no_new_privileges() -> Result<(), String> {
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("setting no-new-privileges: {e}"))
}

/// Drops every capability — effective, permitted, inheritable, ambient
/// and, where the process may (CAP_SETPCAP), the bounding set — from the
/// calling thread, which threads it starts inherit: call it before the
/// first thread starts. The daemon needs none: its sockets, the render
/// node and the cgroup files it arms are its own user's (root's under
/// systemd or libvirt), and PSI triggers whose window is a multiple of
/// 2 s (the default) need no CAP_SYS_RESOURCE. Returns how many capabilities the
/// bounding set lost.
pub fn drop_capabilities() -> Result<usize, String> {
    use rustix::io::Errno;
    use rustix::thread::{
        clear_ambient_capability_set, set_capabilities, CapabilitySet, CapabilitySets,
    };
    let dropped = drop_bounding_set()?;
    match clear_ambient_capability_set() {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(format!("clearing the ambient capabilities: {e}")),
    }
    set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("dropping capabilities: {e}"))?;
    Ok(dropped)
}

/// Empties the bounding set (needs CAP_SETPCAP; without it there is
/// nothing to gain from the set under no-new-privileges), keeping the
/// effective set; how many capabilities it lost.
pub fn drop_bounding_set() -> Result<usize, String> {
    use rustix::io::Errno;
    use rustix::thread::{
        capability_is_in_bounding_set, remove_capability_from_bounding_set, CapabilitySet,
    };
    let mut dropped = 0;
    for cap in CapabilitySet::all().iter() {
        match capability_is_in_bounding_set(cap) {
            Ok(true) => match remove_capability_from_bounding_set(cap) {
                Ok(()) => dropped += 1,
                // Not ours to change (no CAP_SETPCAP): nothing in it can be
                // gained anyway under no-new-privileges.
                Err(Errno::PERM) => break,
                Err(e) => return Err(format!("dropping {cap:?} from the bounding set: {e}")),
            },
            // Unknown to this kernel.
            Ok(false) | Err(Errno::INVAL) => {}
            Err(e) => return Err(format!("reading the bounding set: {e}")),
        }
    }
    Ok(dropped)
}

/// Confines the whole process (every thread, and those started later).
/// Call once, after start-up.
pub fn confine(mode: SeccompMode) -> Result<Confinement, String> {
    no_new_privileges()?;
    if mode == SeccompMode::None {
        return Ok(Confinement {
            seccomp: mode,
            allowed_syscalls: 0,
            queue_worker_syscalls: 0,
        });
    }
    install(mode)
}

#[cfg(target_arch = "x86_64")]
fn install(mode: SeccompMode) -> Result<Confinement, String> {
    use seccompiler::SeccompAction;
    let on_other = match mode {
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Trap => {
            trap::install()?;
            SeccompAction::Trap
        }
        SeccompMode::None => return Err("no filter to install".into()),
    };
    let main = seccomp::filter(on_other.clone())?;
    let clone3 = seccomp::clone3_fallback()?;
    let mut per_thread = std::collections::HashMap::new();
    for kind in ThreadKind::ALL {
        per_thread.insert(kind, seccomp::thread_filter(kind, on_other.clone())?);
    }
    // The clone3 filter first: installing a filter calls prctl(2), which
    // the main filter no longer allows.
    seccompiler::apply_filter_all_threads(&clone3)
        .map_err(|e| format!("installing the clone3 filter: {e}"))?;
    seccompiler::apply_filter_all_threads(&main)
        .map_err(|e| format!("installing the system-call filter: {e}"))?;
    // Each thread kind installs its own when it runs (`enter`).
    let _ = THREAD_FILTERS.set(per_thread);
    Ok(Confinement {
        seccomp: mode,
        allowed_syscalls: seccomp::allowed_count(),
        queue_worker_syscalls: seccomp::thread_count(ThreadKind::QueueWorker),
    })
}

/// Each thread kind's narrower filter, once the process is confined.
#[cfg(target_arch = "x86_64")]
static THREAD_FILTERS: std::sync::OnceLock<
    std::collections::HashMap<ThreadKind, seccompiler::BpfProgram>,
> = std::sync::OnceLock::new();

/// The kinds of thread that narrow the process's list further, each on
/// its own once it runs (stacked on the process's filter: both must
/// allow a call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadKind {
    /// Decodes and executes every command a guest sends (per
    /// connection; installs on its first event).
    QueueWorker,
    /// Handles the VMM's vhost-user messages (per connection; installs
    /// when the VMM acknowledges the features).
    Frontend,
    /// The pressure monitor (installs on its first wake-up).
    Monitor,
    /// The admin socket's server and the client threads it starts
    /// (installs on its first wake-up, before any client).
    Admin,
    /// Waits for SIGTERM/SIGINT, removes the sockets and exits.
    Signals,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 5] = [
        ThreadKind::QueueWorker,
        ThreadKind::Frontend,
        ThreadKind::Monitor,
        ThreadKind::Admin,
        ThreadKind::Signals,
    ];
}

/// Called by a thread of `kind` when it runs: the first time on each
/// thread of a confined process, stacks that kind's narrower filter on
/// it (see `seccomp::thread_filter`). A no-op in an unconfined process
/// (the in-process test harness, `--seccomp none`) and on later calls.
pub fn enter(kind: ThreadKind) {
    #[cfg(target_arch = "x86_64")]
    {
        thread_local! {
            static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        // Called on every queue event: after the first time on a thread
        // this is one thread-local read.
        if DONE.with(std::cell::Cell::get) {
            return;
        }
        let Some(filters) = THREAD_FILTERS.get() else {
            return;
        };
        DONE.with(|d| d.set(true));
        let Some(filter) = filters.get(&kind) else {
            return;
        };
        if let Err(e) = seccompiler::apply_filter(filter) {
            // The process-wide filter still holds.
            log::error!("{kind:?} thread: installing its narrower system-call filter failed: {e}");
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kind;
}

#[cfg(not(target_arch = "x86_64"))]
fn install(mode: SeccompMode) -> Result<Confinement, String> {
    Err(format!(
        "--seccomp {mode}: vgpu's system-call filter is written for x86_64 only; use --seccomp none"
    ))
}

/// The SIGSYS handler of `--seccomp trap`.
#[cfg(target_arch = "x86_64")]
mod trap {
    /// Exit status after a trapped system call (128 + SIGSYS).
    pub const EXIT_STATUS: i32 = 128 + libc::SIGSYS;

    pub fn install() -> Result<(), String> {
        // SAFETY: the handler only reads the siginfo it is given, formats
        // into a stack buffer and calls write(2) and _exit(2), which are
        // async-signal-safe.
        unsafe { signal_hook_registry::register_sigaction(libc::SIGSYS, report) }
            .map(|_| ())
            .map_err(|e| format!("installing the SIGSYS handler: {e}"))
    }

    fn report(info: &libc::siginfo_t) {
        // `struct siginfo` for SIGSYS (linux/signal.h `_sigsys`): after
        // si_signo, si_errno, si_code (12 bytes, padded to 16) comes
        // `void *_call_addr`, then `int _syscall`.
        let base = (info as *const libc::siginfo_t).cast::<u8>();
        // SAFETY: siginfo_t is 128 bytes; bytes 24..28 are `_syscall` of
        // a SIGSYS siginfo on x86_64.
        let nr = unsafe { base.add(24).cast::<i32>().read_unaligned() };
        let mut buf = [0u8; 160];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            let n = bytes.len().min(buf.len() - len);
            buf[len..len + n].copy_from_slice(&bytes[..n]);
            len += n;
        };
        put(b"vhost-user-vgpu: seccomp: forbidden system call ");
        put(super::seccomp::name_of(nr).as_bytes());
        put(b" (");
        let mut digits = [0u8; 12];
        let mut i = digits.len();
        let mut v = i64::from(nr).unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        put(&digits[i..]);
        put(b"); exiting. Please report it with the command line.\n");
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `buf` is
        // valid for `len` bytes.
        unsafe {
            libc::write(2, buf.as_ptr().cast(), len);
            libc::_exit(EXIT_STATUS);
        }
    }
}
