//! Landlock: the files the daemon can reach at all. Applied before the
//! first thread starts (this kernel's Landlock cannot restrict threads
//! that already run), so start-up opens fall under it too, and every
//! thread inherits it.
//!
//! Allowed, and who needs it:
//!
//! * the directories of its sockets (vhost-user and admin): create the
//!   socket, replace a stale one, remove them at exit;
//! * `/dev/dri` (read, write): finding and opening the render node; a
//!   node given by path (`--gpu PATH`, `--render-node PATH`) wherever it
//!   is;
//! * `/sys` (read): render-node detection; `/sys/fs/cgroup` (read, write):
//!   the memory cgroup's files the pressure monitor arms and re-arms
//!   (cgroup v1 `cgroup.event_control`, v2 `memory.pressure` triggers);
//! * `/proc/self` (read), `/proc/meminfo` (read, the MemAvailable
//!   source), `/proc/sys/vm/overcommit_memory` (read, the allocator),
//!   `/proc/pressure` (read, write: PSI triggers);
//! * systemd's `$MEMORY_PRESSURE_WATCH` file, if set (read, write).
//!
//! Nothing else: no `/etc`, no home directories, no other process's
//! `/proc` entries, no other device. Best effort: on a kernel without
//! Landlock (before 5.13) or with an older ABI, what the kernel supports
//! is applied and the level reached is logged.
//!
//! Owns: the ruleset. Must not: run after a thread started.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};

/// The newest ABI these rules were written for.
const ABI_USED: ABI = ABI::V6;

/// What the daemon's files are, for the ruleset.
#[derive(Debug, Clone, Default)]
pub struct FsPaths {
    /// The vhost-user socket and the admin socket (their directories are
    /// allowed).
    pub sockets: Vec<PathBuf>,
    /// `$MEMORY_PRESSURE_WATCH`, if systemd set it.
    pub pressure_watch: Option<PathBuf>,
    /// A render node named by `--gpu PATH` / `--render-node PATH` (read,
    /// write), wherever it is: a node outside /dev/dri (a bind mount, a
    /// symlinked path) would otherwise be refused as "permission denied".
    pub render_node: Option<PathBuf>,
}

/// How far Landlock got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsConfinement {
    /// Every rule is enforced.
    Full,
    /// The kernel enforces part of it (an older ABI).
    Partial,
    /// The kernel has no Landlock.
    None,
}

impl std::fmt::Display for FsConfinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsConfinement::Full => "Landlock fully enforced: files only under the sockets' directories, /dev/dri, /sys (cgroups writable), /proc/self, /proc/meminfo, /proc/pressure",
            FsConfinement::Partial => "Landlock partly enforced (this kernel's Landlock ABI is older than the rules): file access narrowed as far as it supports",
            FsConfinement::None => "Landlock not available in this kernel: file access not narrowed",
        })
    }
}

/// Restricts the calling thread (and every thread it starts) to `paths`.
pub fn restrict(paths: &FsPaths) -> Result<FsConfinement, String> {
    let err = |e: landlock::RulesetError| format!("Landlock: {e}");
    let read = AccessFs::from_read(ABI_USED);
    let read_write = AccessFs::from_all(ABI_USED);
    let sockets = AccessFs::MakeSock | AccessFs::RemoveFile | AccessFs::ReadDir;
    let mut rules: Vec<(PathBuf, landlock::BitFlags<AccessFs>)> = Vec::new();
    for s in &paths.sockets {
        let dir = match s.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        rules.push((dir, sockets));
    }
    rules.push(("/dev/dri".into(), read_write));
    rules.push(("/sys".into(), read));
    rules.push(("/sys/fs/cgroup".into(), read_write));
    rules.push(("/proc/self".into(), read));
    rules.push(("/proc/meminfo".into(), AccessFs::ReadFile.into()));
    rules.push((
        "/proc/sys/vm/overcommit_memory".into(),
        AccessFs::ReadFile.into(),
    ));
    rules.push(("/proc/pressure".into(), read_write));
    if let Some(w) = &paths.pressure_watch {
        rules.push((w.clone(), AccessFs::ReadFile | AccessFs::WriteFile));
    }
    if let Some(node) = &paths.render_node {
        rules.push((node.clone(), read_write));
    }
    let mut created = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_USED))
        .map_err(err)?
        .create()
        .map_err(err)?;
    for (path, access) in rules {
        let Some(fd) = open_existing(&path) else {
            continue;
        };
        // A file takes only file rights; a directory all of them.
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(ABI_USED)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => FsConfinement::Full,
        RulesetStatus::PartiallyEnforced => FsConfinement::Partial,
        _ => FsConfinement::None,
    })
}

/// An `O_PATH` fd of `path`, if it exists (a missing `/dev/dri` or
/// cgroup mount is not an error).
fn open_existing(path: &Path) -> Option<PathFd> {
    PathFd::new(path).ok()
}
