//! systemd socket activation (`sd_listen_fds(3)`): a socket unit listens
//! on the VM's socket and starts the service on the first connection,
//! passing the listening socket as descriptor 3 with `LISTEN_PID` (this
//! process) and `LISTEN_FDS` (how many) in the environment.
//!
//! Owns only reading and clearing those variables; the socket itself is
//! checked and served by the daemon like any `--fd`.

use std::os::fd::RawFd;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The socket systemd passed this process, if any: reads `LISTEN_PID` and
/// `LISTEN_FDS`, then removes them (and `LISTEN_FDNAMES`) so nothing this
/// process starts inherits them, as `sd_listen_fds(1)` does, and marks the
/// descriptor close-on-exec.
pub fn take_listen_fd() -> Result<Option<RawFd>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let fd = listen_fd(pid.as_deref(), fds.as_deref(), std::process::id())?;
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Called at start-up, before any thread exists.
        std::env::remove_var(var);
    }
    if let Some(fd) = fd {
        // SAFETY: systemd passed `fd` open to this process (LISTEN_PID is
        // ours); only borrowed to set its flag.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| format!("socket activation: descriptor {fd}: {e}"))?;
    }
    Ok(fd)
}

/// Which descriptor the variables name, for process `own_pid`: none when
/// they are absent, name another process (they were inherited), or pass
/// no socket; an error when they are malformed or pass more than one (a
/// daemon serves one VM's socket).
pub fn listen_fd(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    own_pid: u32,
) -> Result<Option<RawFd>, String> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("socket activation: LISTEN_PID={pid:?} is not a process id"))?;
    if pid != own_pid {
        return Ok(None);
    }
    let n: u32 = fds
        .trim()
        .parse()
        .map_err(|_| format!("socket activation: LISTEN_FDS={fds:?} is not a number"))?;
    match n {
        0 => Ok(None),
        1 => Ok(Some(LISTEN_FDS_START)),
        n => Err(format!(
            "socket activation passed {n} sockets; vhost-user-vgpu serves one \
             (give the socket unit a single ListenStream=)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_process_s_single_socket_is_taken() {
        assert_eq!(listen_fd(None, None, 7), Ok(None));
        assert_eq!(listen_fd(Some("7"), None, 7), Ok(None));
        assert_eq!(listen_fd(Some("7"), Some("1"), 7), Ok(Some(3)));
        assert_eq!(listen_fd(Some("8"), Some("1"), 7), Ok(None), "inherited");
        assert_eq!(listen_fd(Some("7"), Some("0"), 7), Ok(None));
        let two = listen_fd(Some("7"), Some("2"), 7).unwrap_err();
        assert!(two.contains("2 sockets"), "{two}");
        let bad = listen_fd(Some("x"), Some("1"), 7).unwrap_err();
        assert!(bad.contains("LISTEN_PID"), "{bad}");
        let bad = listen_fd(Some("7"), Some("one"), 7).unwrap_err();
        assert!(bad.contains("LISTEN_FDS"), "{bad}");
    }
}
