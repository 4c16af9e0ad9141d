//! Private namespaces, as virtiofsd's `--sandbox namespace` does for a
//! daemon started without root: a user namespace (mapping only the
//! daemon's own uid and gid), and in it a network namespace with nothing
//! in it, its own IPC and hostname. Entered first thing, before any
//! thread, socket or file; what the daemon reaches through paths (its
//! sockets, the render node, cgroup and /proc files) stays reachable
//! with the same ownership checks, and AF_UNIX sockets bound to paths
//! still reach the VMM.
//!
//! What changes for others: admin clients whose uid is not the daemon's
//! show up as the overflow uid (the kernel cannot name an uid the
//! namespace does not map). The admin server accepts that uid in a
//! private namespace ([`unmapped_peer_uid`]): the admin socket is 0600
//! and the daemon's, so the only peers that can connect and not be the
//! daemon's user are processes that may override file permissions —
//! root, who may use it anyway (as `vgpuctl --all` and the metrics timer
//! do for daemons libvirt runs as its QEMU user).
//!
//! Owns: the choice and the entering, and what the admin server needs to
//! know of them. Must not: run once a thread exists.

use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::UnshareFlags;

/// The overflow uid peers outside the private user namespace appear as,
/// once entered; `u32::MAX` (no uid) before.
static UNMAPPED_PEER_UID: AtomicU32 = AtomicU32::new(u32::MAX);

/// In a private user namespace this daemon entered: the uid every peer
/// the namespace does not map appears as (/proc/sys/kernel/overflowuid,
/// read before the sandbox; 65534 by default). `None` otherwise.
pub fn unmapped_peer_uid() -> Option<u32> {
    match UNMAPPED_PEER_UID.load(Ordering::Relaxed) {
        u32::MAX => None,
        uid => Some(uid),
    }
}

/// `--namespaces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NamespaceMode {
    /// When started without root.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

impl std::fmt::Display for NamespaceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NamespaceMode::Auto => "auto",
            NamespaceMode::On => "on",
            NamespaceMode::Off => "off",
        })
    }
}

/// Whether `mode` enters namespaces for a daemon running as root or not.
pub fn wanted(mode: NamespaceMode, root: bool) -> bool {
    match mode {
        NamespaceMode::Auto => !root,
        NamespaceMode::On => true,
        NamespaceMode::Off => false,
    }
}

/// Enters a new user namespace mapping only the current uid and gid, and
/// new network, IPC and UTS namespaces.
pub fn enter() -> Result<(), String> {
    use rustix::process::{dumpable_behavior, set_dumpable_behavior, DumpableBehavior};
    // After a switch from root (--user) the process is not dumpable and
    // its /proc/self files are root's: make them its own for the maps.
    let hidden = dumpable_behavior().ok() == Some(DumpableBehavior::NotDumpable);
    if hidden {
        set_dumpable_behavior(DumpableBehavior::Dumpable)
            .map_err(|e| format!("entering private namespaces (dumpable): {e}"))?;
    }
    let entered = enter_dumpable();
    if hidden {
        let _ = set_dumpable_behavior(DumpableBehavior::NotDumpable);
    }
    entered
}

fn enter_dumpable() -> Result<(), String> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let flags =
        UnshareFlags::NEWUSER | UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    // SAFETY: FILES is not among the flags, so no thread's file table
    // changes; and no other thread exists yet (called before the first).
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|e| format!("entering private namespaces (unshare): {e}"))?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text.as_bytes())
            .map_err(|e| format!("entering private namespaces: /proc/self/{file}: {e}"))
    };
    // An unprivileged process must give up setgroups before mapping gids.
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1\n"))?;
    write("gid_map", format!("{gid} {gid} 1\n"))?;
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534);
    UNMAPPED_PEER_UID.store(overflow, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_without_root() {
        assert!(wanted(NamespaceMode::Auto, false));
        assert!(!wanted(NamespaceMode::Auto, true));
        assert!(wanted(NamespaceMode::On, true));
        assert!(!wanted(NamespaceMode::Off, false));
    }
}
