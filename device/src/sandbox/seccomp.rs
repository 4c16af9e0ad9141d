//! The daemon's system-call filter: what it may call once start-up is
//! done (sockets bound, render node opened, pressure sources armed),
//! compiled with rust-vmm's `seccompiler` and installed on every thread
//! at once (TSYNC); threads started later inherit it.
//!
//! Every entry says which code needs it. The list was taken from `strace
//! -f` of the daemon through the real-VM runs (both QEMUs), every
//! `vgpu-bench` scenario, a `vgpu-squeeze` run and every `vgpuctl`
//! command, then checked against the code paths those runs cannot reach
//! (the Intel driver's ioctls, the shrinker's writeback advice, cgroup-v2
//! sources). Start-up calls (`execve`, `bind`, `listen`, `socket`,
//! `chmod`, `rename`, `prlimit64`, signal handlers) are absent: they are
//! done before the filter goes on.
//!
//! Owns: the allow-list and its argument conditions. Must not: install
//! anything (see `super::confine`).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use syscalls::Sysno;

use super::ThreadKind;

/// System calls allowed with any arguments, and who needs them.
const ALLOWED: &[(Sysno, &str)] = &[
    // I/O on eventfds (kicks, calls, purge notices), sockets, memfds,
    // PSI/cgroup/meminfo files (pressure monitor), guest memory (guest_io).
    (Sysno::read, "eventfds, sockets, pressure files"),
    (
        Sysno::write,
        "eventfds (call, purge notices), logs, PSI trigger",
    ),
    (Sysno::readv, "std's vectored socket reads"),
    (Sysno::writev, "std's vectored writes (logs)"),
    (
        Sysno::pread64,
        "BufferManager::read, guest_io, residency of files",
    ),
    (Sysno::pwrite64, "buffer files without a mapping, guest_io"),
    (
        Sysno::lseek,
        "ShmemFile::clear, reading cgroup/PSI files again",
    ),
    (Sysno::close, "every fd"),
    (Sysno::fstat, "std File metadata, memfd sizes"),
    (Sysno::newfstatat, "std metadata"),
    (Sysno::statx, "std metadata"),
    // Files opened after start-up: cgroup v1 event_control and limits when
    // the limit changes (re-arming the watermark), /proc/pressure/memory
    // for a new PSI trigger, /proc/meminfo (MemAvailable source),
    // /proc/self/* (residency, cgroup). Landlock bounds the paths.
    (Sysno::openat, "re-armed pressure sources, /proc reads"),
    (
        Sysno::open,
        "a new PSI trigger (pressure monitor, rustix's open)",
    ),
    (
        Sysno::unlink,
        "removing the sockets at SIGTERM and when the VMM is gone",
    ),
    (Sysno::unlinkat, "removing the sockets at SIGTERM (std)"),
    (Sysno::ftruncate, "sizing a new buffer's memfd"),
    (
        Sysno::memfd_create,
        "a new buffer's file (shmem), the VM's scratch file",
    ),
    (Sysno::copy_file_range, "moving a buffer between placements"),
    (Sysno::mincore, "measured residency (stats, soft limits)"),
    // Memory.
    (
        Sysno::munmap,
        "buffer mappings, guest memory, thread stacks",
    ),
    (Sysno::mremap, "allocator (realloc of large blocks)"),
    (Sysno::brk, "allocator"),
    // Waiting.
    (
        Sysno::epoll_create1,
        "vhost-user-backend's worker per connection",
    ),
    (Sysno::epoll_ctl, "worker and monitor listeners"),
    (Sysno::epoll_wait, "worker, monitor, engine fence set"),
    (Sysno::epoll_pwait, "epoll_wait through glibc"),
    (
        Sysno::poll,
        "waiting for a connection, admin clients, fences",
    ),
    (Sysno::ppoll, "poll through glibc"),
    (
        Sysno::eventfd2,
        "per-connection kick/exit events, purge notices",
    ),
    (Sysno::timerfd_create, "the fence timer of each connection"),
    (Sysno::timerfd_settime, "arming the fence timer"),
    (Sysno::timerfd_gettime, "TimerFd"),
    (
        Sysno::inotify_init1,
        "cgroup-v2 memory.events source when re-armed",
    ),
    (Sysno::inotify_add_watch, "cgroup-v2 memory.events source"),
    (Sysno::futex, "locks, condition variables, thread joins"),
    (
        Sysno::sched_yield,
        "the queue's adaptive polling, spin loops",
    ),
    (Sysno::nanosleep, "std::thread::sleep"),
    (Sysno::clock_nanosleep, "std::thread::sleep through glibc"),
    (
        Sysno::clock_gettime,
        "Instant::now when the vDSO is not used",
    ),
    (
        Sysno::gettimeofday,
        "SystemTime (log timestamps) without the vDSO",
    ),
    (Sysno::restart_syscall, "interrupted sleeps"),
    // Sockets (all AF_UNIX, handed over or accepted).
    (Sysno::accept4, "a VMM connecting, admin clients"),
    (
        Sysno::recvmsg,
        "vhost-user messages with fds (memory table, kicks)",
    ),
    (
        Sysno::sendmsg,
        "vhost-user replies, SHMEM_MAP with fds, display",
    ),
    (Sysno::recvfrom, "admin requests"),
    (Sysno::sendto, "admin replies"),
    (Sysno::shutdown, "closing admin and vhost-user connections"),
    (Sysno::getsockopt, "SO_PEERCRED of admin clients"),
    (Sysno::setsockopt, "admin client timeouts"),
    // Threads (per connection: the frontend handler and the queue
    // worker; per admin client), what glibc does for each.
    (Sysno::set_robust_list, "glibc, each new thread"),
    (Sysno::rseq, "glibc, each new thread"),
    (
        Sysno::sigaltstack,
        "std's stack-overflow guard, each new thread",
    ),
    (Sysno::rt_sigprocmask, "glibc's pthread_create"),
    (
        Sysno::rt_sigreturn,
        "returning from the SIGSYS/SIGTERM handlers",
    ),
    (Sysno::sched_getaffinity, "std's available_parallelism"),
    (Sysno::gettid, "glibc, logging"),
    (Sysno::getpid, "glibc, abort"),
    (Sysno::geteuid, "admin socket: is the client our user"),
    (Sysno::getrandom, "HashMap seeds in new threads"),
    (Sysno::exit, "a thread ending"),
    (Sysno::exit_group, "the process ending (SIGTERM, errors)"),
];

/// `ioctl` requests, checked on the whole request number.
fn ioctl_requests() -> Vec<(u64, &'static str)> {
    let mut v = vec![
        (libc::FIONBIO, "std/vhost: non-blocking sockets"),
        (libc::FIOCLEX, "std: close-on-exec"),
        (libc::TCGETS, "env_logger: is stderr a terminal"),
    ];
    // The Intel driver's DRM, i915 and xe requests (backend/src/intel/uapi).
    v.extend(
        vgpu_backend::intel::uapi::ISSUED
            .iter()
            .map(|&(req, name)| (u64::from(req), name)),
    );
    v
}

/// `madvise` advice values.
const MADVICE: &[(i32, &str)] = &[
    (libc::MADV_DONTNEED, "allocator, thread stacks"),
    (libc::MADV_FREE, "allocator"),
    (libc::MADV_COLD, "shrinker: Lazy (hint pages for reclaim)"),
    (libc::MADV_PAGEOUT, "shrinker: Writeback"),
    (
        libc::MADV_POPULATE_READ,
        "ShmemFile: measuring/populating residency",
    ),
    (libc::MADV_POPULATE_WRITE, "populating a buffer before use"),
];

/// `fcntl` commands.
const FCNTL: &[(i32, &str)] = &[
    (
        libc::F_DUPFD_CLOEXEC,
        "try_clone of fds (guest memory, eventfds)",
    ),
    (libc::F_GETFD, "std"),
    (libc::F_SETFD, "std"),
    (libc::F_GETFL, "non-blocking checks"),
    (libc::F_SETFL, "non-blocking sockets"),
    (libc::F_ADD_SEALS, "sealing a buffer's memfd (size)"),
    (libc::F_GET_SEALS, "checking a memfd's seals"),
];

/// `fallocate` modes.
const FALLOCATE: &[(i32, &str)] = &[
    (
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        "purging a buffer, emptying scratch files",
    ),
    (0, "reserving a buffer's pages"),
];

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

fn dword(arg: u8, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(|e| e.to_string())
}

fn one_of(arg: u8, values: impl Iterator<Item = u64>) -> Result<Vec<SeccompRule>, String> {
    values
        .map(|v| SeccompRule::new(vec![dword(arg, v)?]).map_err(|e| e.to_string()))
        .collect()
}

/// Every rule, by system-call number.
pub fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut r: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .map(|(s, _)| (i64::from(s.id()), Vec::new()))
        .collect();
    let nr = |s: Sysno| i64::from(s.id());
    r.insert(
        nr(Sysno::ioctl),
        one_of(1, ioctl_requests().into_iter().map(|(req, _)| req))?,
    );
    r.insert(
        nr(Sysno::madvise),
        one_of(2, MADVICE.iter().map(|&(a, _)| a as u64))?,
    );
    r.insert(
        nr(Sysno::fcntl),
        one_of(1, FCNTL.iter().map(|&(c, _)| c as u64))?,
    );
    r.insert(
        nr(Sysno::fallocate),
        one_of(1, FALLOCATE.iter().map(|&(m, _)| m as u64))?,
    );
    // Mappings never executable (buffer files, guest memory, stacks).
    let no_exec = || -> Result<Vec<SeccompRule>, String> {
        let c = cond(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)?;
        Ok(vec![SeccompRule::new(vec![c]).map_err(|e| e.to_string())?])
    };
    r.insert(nr(Sysno::mmap), no_exec()?);
    r.insert(nr(Sysno::mprotect), no_exec()?);
    // Thread names (std's Builder::name); no-new-privileges, which
    // seccompiler sets again when a queue worker stacks its own filter.
    r.insert(
        nr(Sysno::prctl),
        one_of(
            0,
            [libc::PR_SET_NAME as u64, libc::PR_SET_NO_NEW_PRIVS as u64].into_iter(),
        )?,
    );
    // A queue worker stacking its narrower filter: adding a filter only
    // ever takes calls away.
    r.insert(
        nr(Sysno::seccomp),
        one_of(0, [u64::from(libc::SECCOMP_SET_MODE_FILTER)].into_iter())?,
    );
    // Threads, never processes: glibc's pthread_create uses clone3, whose
    // flags live in memory a filter cannot read, so clone3 fails with
    // ENOSYS (a second filter, see `clone3_fallback`) and glibc falls back
    // to clone, allowed only with CLONE_THREAD.
    r.insert(
        nr(Sysno::clone),
        vec![SeccompRule::new(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )?])
        .map_err(|e| e.to_string())?],
    );
    r.insert(nr(Sysno::clone3), Vec::new());
    // abort() on a panic: signals to this process's own threads only.
    r.insert(
        nr(Sysno::tgkill),
        vec![
            SeccompRule::new(vec![dword(0, u64::from(std::process::id()))?])
                .map_err(|e| e.to_string())?,
        ],
    );
    Ok(r)
}

/// The main filter: the rules, and `on_other` for everything else.
pub fn filter(on_other: SeccompAction) -> Result<BpfProgram, String> {
    let f = SeccompFilter::new(rules()?, on_other, SeccompAction::Allow, arch())
        .map_err(|e| e.to_string())?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// The second filter: `clone3` fails with ENOSYS (glibc then uses
/// `clone`, whose flags the main filter checks); everything else is left
/// to the main filter.
pub fn clone3_fallback() -> Result<BpfProgram, String> {
    let rules = BTreeMap::from([(i64::from(Sysno::clone3.id()), Vec::new())]);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .map_err(|e| e.to_string())?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

fn arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
    #[cfg(not(target_arch = "aarch64"))]
    TargetArch::x86_64
}

/// Calls only the admin socket and start-up make.
const ADMIN_SOCKET: &[(Sysno, &str)] = &[
    (
        Sysno::accept4,
        "admin connections are accepted by the admin thread",
    ),
    (Sysno::recvfrom, "admin requests"),
    (Sysno::sendto, "admin replies"),
    (Sysno::getsockopt, "admin peer credentials"),
    (Sysno::setsockopt, "admin timeouts"),
    (Sysno::geteuid, "admin peer check"),
];

/// What a thread kind never needs, on top of the process's list.
fn not_needed(kind: ThreadKind) -> Vec<(Sysno, &'static str)> {
    let files: &[(Sysno, &str)] = &[
        (Sysno::openat, "files are the monitor's and start-up's"),
        (Sysno::open, "files are the monitor's and start-up's"),
        (Sysno::unlink, "sockets are removed by the signal thread"),
        (Sysno::unlinkat, "sockets are removed by the signal thread"),
        (Sysno::inotify_init1, "pressure sources"),
        (Sysno::inotify_add_watch, "pressure sources"),
    ];
    let buffers: &[(Sysno, &str)] = &[
        (
            Sysno::memfd_create,
            "buffers are made by queue workers and admin evictions",
        ),
        (Sysno::ftruncate, "sizing buffers"),
        (Sysno::copy_file_range, "moving buffers"),
        (Sysno::fallocate, "purging buffers"),
        (Sysno::mincore, "residency"),
    ];
    let timers: &[(Sysno, &str)] = &[
        (
            Sysno::timerfd_create,
            "fence timers are made with a connection",
        ),
        (
            Sysno::timerfd_settime,
            "fence timers are armed by queue workers",
        ),
        (Sysno::timerfd_gettime, "fence timers"),
    ];
    let mut v: Vec<(Sysno, &'static str)> = Vec::new();
    match kind {
        ThreadKind::QueueWorker => {
            v.extend_from_slice(files);
            v.extend_from_slice(ADMIN_SOCKET);
        }
        ThreadKind::Frontend => {
            v.extend_from_slice(files);
            v.extend_from_slice(ADMIN_SOCKET);
            v.extend_from_slice(buffers);
            v.extend_from_slice(timers);
        }
        ThreadKind::Monitor => {
            v.extend_from_slice(ADMIN_SOCKET);
            v.extend_from_slice(timers);
        }
        ThreadKind::Admin => {
            v.extend_from_slice(files);
            v.extend_from_slice(timers);
        }
        ThreadKind::Signals => {
            // Only unlink and exit of its own: everything else goes.
            v.extend_from_slice(&files[..2]);
            v.extend_from_slice(&files[4..]);
            // It reads its signal pipe with recv(2).
            v.extend(ADMIN_SOCKET.iter().filter(|(s, _)| *s != Sysno::recvfrom));
            v.extend_from_slice(buffers);
            v.extend_from_slice(timers);
            v.extend_from_slice(&[
                (Sysno::accept4, "no connections"),
                (Sysno::recvmsg, "no vhost-user messages"),
                (Sysno::sendmsg, "no vhost-user messages"),
                (Sysno::epoll_ctl, "no queues"),
                (Sysno::epoll_create1, "no queues"),
                (Sysno::eventfd2, "no queues"),
                (Sysno::pread64, "no buffers"),
                (Sysno::pwrite64, "no buffers"),
                (Sysno::mremap, "no buffers"),
                (Sysno::clone, "starts no thread"),
                (Sysno::clone3, "starts no thread"),
            ]);
        }
    }
    v.sort_by_key(|(s, _)| s.id());
    v.dedup_by_key(|(s, _)| s.id());
    v
}

/// `kind`'s filter: the process's list without what it never needs.
pub fn thread_filter(kind: ThreadKind, on_other: SeccompAction) -> Result<BpfProgram, String> {
    let mut r = rules()?;
    for (s, _) in not_needed(kind) {
        r.remove(&i64::from(s.id()));
    }
    let f =
        SeccompFilter::new(r, on_other, SeccompAction::Allow, arch()).map_err(|e| e.to_string())?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// System calls `kind`'s filter allows.
pub fn thread_count(kind: ThreadKind) -> usize {
    let gone: Vec<i64> = not_needed(kind)
        .iter()
        .map(|(s, _)| i64::from(s.id()))
        .collect();
    rules()
        .map(|r| r.keys().filter(|k| !gone.contains(k)).count())
        .unwrap_or(0)
}

/// How many system calls the filter allows (with or without argument
/// conditions), for the log and README.
pub fn allowed_count() -> usize {
    rules().map(|r| r.len()).unwrap_or(0)
}

/// A system call's name, for the trap report (async-signal-safe: a
/// constant table).
pub fn name_of(nr: i32) -> &'static str {
    usize::try_from(nr)
        .ok()
        .and_then(Sysno::new)
        .map_or("unknown", |s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_and_name_what_they_allow() {
        for action in [
            SeccompAction::KillProcess,
            SeccompAction::Trap,
            SeccompAction::Log,
        ] {
            assert!(!filter(action).unwrap().is_empty());
        }
        assert!(!clone3_fallback().unwrap().is_empty());
        for kind in ThreadKind::ALL {
            assert!(!thread_filter(kind, SeccompAction::KillProcess)
                .unwrap()
                .is_empty());
            assert!(thread_count(kind) < allowed_count(), "{kind:?}");
        }
        assert_eq!(thread_count(ThreadKind::QueueWorker), 72 - 12);
        let r = rules().unwrap();
        assert!(r.contains_key(&i64::from(Sysno::ioctl.id())));
        assert!(!r.contains_key(&i64::from(Sysno::execve.id())), "no exec");
        assert!(
            !r.contains_key(&i64::from(Sysno::bind.id())),
            "start-up only"
        );
        assert_eq!(name_of(Sysno::acct.id()), "acct");
        assert_eq!(name_of(-1), "unknown");
        // README's figures: 70 system calls; 3 std requests and every
        // DRM request the Intel drivers issue.
        assert_eq!(allowed_count(), 72);
        assert_eq!(vgpu_backend::intel::uapi::ISSUED.len(), 27);
        assert_eq!(ioctl_requests().len(), 3 + 27);
        // A guest's IOCTL_SIMPLE reaches the kernel only with requests the
        // filter allows (an Intel host would kill the daemon otherwise).
        let allowed: Vec<u64> = ioctl_requests().iter().map(|r| r.0).collect();
        for req in vgpu_backend::intel::i915::SIMPLE_IOCTLS {
            assert!(allowed.contains(&u64::from(req)), "{req:#x}");
        }
    }

    #[test]
    fn each_thread_kind_keeps_what_readme_says() {
        let counts: Vec<(ThreadKind, usize)> = ThreadKind::ALL
            .iter()
            .map(|&k| (k, thread_count(k)))
            .collect();
        println!("{counts:?}");
        assert_eq!(
            counts,
            [
                (ThreadKind::QueueWorker, 60),
                (ThreadKind::Frontend, 52),
                (ThreadKind::Monitor, 63),
                (ThreadKind::Admin, 63),
                (ThreadKind::Signals, 45),
            ]
        );
    }
}
