//! The cgroups a squeeze runs in: a cgroup-v1 memory cgroup or a cgroup-v2
//! leaf with a hard limit, created for one run and removed after it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where this host mounts the v1 memory controller.
pub const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

/// The cgroup-v2 mount, if there is one (`/sys/fs/cgroup` on a pure v2
/// host, `/sys/fs/cgroup/unified` on a hybrid one).
pub fn v2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| pre.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// Why a cgroup-v2 squeeze cannot run here, if it cannot.
pub fn v2_unavailable() -> Option<String> {
    let Some(mount) = v2_mount() else {
        return Some("no cgroup v2 is mounted".into());
    };
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        None
    } else {
        Some(format!(
            "this host's cgroup v2 ({}) has no memory controller (it offers: {}); the memory controller is bound to the v1 hierarchy",
            mount.display(),
            controllers.trim()
        ))
    }
}

/// Which cgroup version a [`Memcg`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A v1 memory cgroup.
    V1,
    /// A v2 leaf.
    V2,
}

/// A memory cgroup with a hard limit; removed (its processes moved to the
/// parent) when dropped.
#[derive(Debug)]
pub struct Memcg {
    /// Its directory.
    pub dir: PathBuf,
    /// v1 or v2.
    pub version: Version,
}

impl Memcg {
    /// A fresh cgroup `name` limited to `limit` bytes.
    pub fn new(version: Version, name: &str, limit: u64) -> io::Result<Self> {
        let parent = match version {
            Version::V1 => PathBuf::from(V1_MEMORY),
            Version::V2 => {
                let mount = v2_mount().ok_or_else(|| io::Error::other("no cgroup v2"))?;
                // Children get the memory controller from their parent.
                let _ = fs::write(mount.join("cgroup.subtree_control"), "+memory");
                mount
            }
        };
        let dir = parent.join(name);
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir)?;
        let me = Self { dir, version };
        let file = match version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        fs::write(me.dir.join(file), limit.to_string())?;
        Ok(me)
    }

    /// Its `cgroup.procs`.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Moves process `pid` into it.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.procs(), pid.to_string())
    }

    /// A number file of the cgroup (0 if unreadable).
    pub fn read_u64(&self, file: &str) -> u64 {
        fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A `key value` line of one of its files (`memory.stat`,
    /// `memory.events`, …).
    pub fn keyed(&self, file: &str, key: &str) -> u64 {
        fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Charges that failed: v1 `memory.failcnt`; v2 the `max` events
    /// (usage hit the limit and had to reclaim).
    pub fn failed_charges(&self) -> u64 {
        match self.version {
            Version::V1 => self.read_u64("memory.failcnt"),
            Version::V2 => self.keyed("memory.events", "max"),
        }
    }

    /// Shared memory charged to it.
    pub fn shmem(&self) -> u64 {
        match self.version {
            Version::V1 => self.keyed("memory.stat", "shmem"),
            Version::V2 => self.keyed("memory.stat", "shmem"),
        }
    }

    /// Microseconds its tasks stalled on memory ("some"): the cgroup's own
    /// PSI on v2, the host's on v1 (v1 keeps none per cgroup).
    pub fn stall_us(&self) -> u64 {
        match self.version {
            Version::V1 => psi_some_total(Path::new("/proc/pressure/memory")),
            Version::V2 => psi_some_total(&self.dir.join("memory.pressure")),
        }
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        let parent = self.dir.parent().map(|p| p.join("cgroup.procs"));
        for _ in 0..100 {
            if let (Ok(procs), Some(parent)) = (fs::read_to_string(self.procs()), &parent) {
                for pid in procs.lines() {
                    let _ = fs::write(parent, pid);
                }
            }
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Microseconds of "some" memory stall in a PSI file since it began.
pub fn psi_some_total(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("some "))?
                .split_whitespace()
                .find_map(|f| f.strip_prefix("total="))?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
