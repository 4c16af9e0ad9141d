//! The daemon's own memory cgroup as pressure sources: the squeeze the
//! daemon is actually in, which host-wide PSI often does not show (a
//! cgroup at its limit reclaims cheap page cache and fails charges for a
//! long time before anyone stalls long enough for a PSI trigger).
//!
//! * cgroup v1 — [`V1PressureLevel`]: `memory.pressure_level`
//!   notifications through `cgroup.event_control` and an eventfd (levels
//!   low, medium, critical: the mechanism Android's lmkd used before PSI);
//!   [`V1Watermark`]: a `memory.usage_in_bytes` threshold at a share of
//!   `memory.limit_in_bytes`, notified by the kernel through an eventfd
//!   when usage crosses it (re-armed when the limit changes).
//! * cgroup v2 — [`V2Events`]: `memory.events` (`high`, `max`, `oom`,
//!   `oom_kill` counters), watched with inotify; [`V2Watermark`]:
//!   `memory.current` against a share of the lower of `memory.max` and
//!   `memory.high`, polled (v2 has no threshold notification).
//!
//! The watermarks are *low* signals (purge DONTNEED before the kernel has
//! to reclaim or stall anyone); v1 "low" too, "medium" and v2 `high`
//! events are *medium*, v1 "critical" and v2 `max` / `oom` are *critical*.
//!
//! Must not: shrink anything; the monitor decides.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::policy::Level;
use super::source::{Check, PressureSource, SourceInfo};

/// Default share of a cgroup's limit at which the watermark purges.
pub const DEFAULT_WATERMARK_PERCENT: u8 = 90;

/// How often the v2 watermark reads `memory.current`.
pub const V2_WATERMARK_POLL: Duration = Duration::from_millis(50);

/// Limits at or above this are "no limit" (v1 reports a page-rounded
/// `i64::MAX`).
const UNLIMITED: u64 = 1 << 62;

/// Where the daemon's own memory cgroups are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    /// The v1 memory controller's directory of this process's cgroup.
    pub v1_memory: Option<PathBuf>,
    /// This process's cgroup v2 directory.
    pub v2: Option<PathBuf>,
    /// Whether that is the hierarchy's root (whose PSI is the host's).
    pub v2_is_root: bool,
}

impl OwnCgroups {
    /// Reads `/proc/self/cgroup` and `/proc/self/mountinfo`.
    pub fn of_this_process() -> Self {
        let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::parse(&cgroup, &mounts)
    }

    /// From the texts of `/proc/<pid>/cgroup` and `/proc/<pid>/mountinfo`.
    pub fn parse(cgroup: &str, mountinfo: &str) -> Self {
        let mut v1_rel = None;
        let mut v2_rel = None;
        for line in cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                v2_rel = Some(path.to_string());
            } else if controllers.split(',').any(|c| c == "memory") {
                v1_rel = Some(path.to_string());
            }
        }
        let mut v1_mount = None;
        let mut v2_mount = None;
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let (Some(fstype), _, Some(options)) = (post.next(), post.next(), post.next()) else {
                continue;
            };
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let (Some(root), Some(mount)) = (pre.get(3), pre.get(4)) else {
                continue;
            };
            // Only mounts of the hierarchy's root can be joined with the
            // path /proc/self/cgroup gives.
            if *root != "/" {
                continue;
            }
            match fstype {
                "cgroup2" if v2_mount.is_none() => v2_mount = Some(mount.to_string()),
                "cgroup" if options.split(',').any(|o| o == "memory") && v1_mount.is_none() => {
                    v1_mount = Some(mount.to_string())
                }
                _ => {}
            }
        }
        let join = |mount: Option<String>, rel: Option<&String>| {
            let (mount, rel) = (mount?, rel?.trim_matches('/'));
            Some(match rel {
                "" => PathBuf::from(mount),
                rel => Path::new(&mount).join(rel),
            })
        };
        Self {
            v1_memory: join(v1_mount, v1_rel.as_ref()),
            v2: join(v2_mount, v2_rel.as_ref()),
            v2_is_root: v2_rel.is_some_and(|r| r.trim_matches('/').is_empty()),
        }
    }
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {t:?}", path.display()),
        )
    })
}

fn limit_text(limit: u64) -> String {
    if limit >= UNLIMITED {
        "no limit".into()
    } else {
        format!("{} MiB", limit >> 20)
    }
}

/// Registers `eventfd` for `args` on `file` of the v1 cgroup `dir`
/// through `cgroup.event_control`.
fn v1_register(dir: &Path, file: &str, args: &str) -> io::Result<OwnedFd> {
    let event = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let target = rustix::fs::open(
        dir.join(file),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let line = format!("{} {} {args}", event.as_raw_fd(), target.as_raw_fd());
    fs::write(dir.join("cgroup.event_control"), line)?;
    // The registration holds the eventfd; `target` only named the file.
    Ok(event)
}

/// Clears an eventfd; `true` if it had been signaled.
fn drain_eventfd(fd: &OwnedFd) -> io::Result<bool> {
    let mut buf = [0u8; 8];
    match rustix::io::read(fd, &mut buf) {
        Ok(_) => Ok(true),
        Err(Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A cgroup-v1 `memory.pressure_level` notification at one level.
#[derive(Debug)]
pub struct V1PressureLevel {
    dir: PathBuf,
    level: Level,
    event: OwnedFd,
}

impl V1PressureLevel {
    /// Registers for `level` events of the v1 memory cgroup `dir`.
    pub fn open(dir: &Path, level: Level) -> io::Result<Self> {
        let event = v1_register(dir, "memory.pressure_level", level.name())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            level,
            event,
        })
    }
}

impl PressureSource for V1PressureLevel {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "cgroup-v1-pressure".into(),
            path: self.dir.join("memory.pressure_level").display().to_string(),
            trigger: self.level.name().into(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "the daemon's own memory cgroup (v1): {}-level reclaim notifications from {}",
            self.level.name(),
            self.dir.join("memory.pressure_level").display()
        )
    }

    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        Some((self.event.as_fd(), PollFlags::IN))
    }

    fn check(&mut self, _ready: PollFlags) -> io::Result<Check> {
        if !drain_eventfd(&self.event)? {
            return Ok(Check::Quiet);
        }
        // The kernel also signals the eventfd when the cgroup goes away.
        if !self.dir.join("memory.usage_in_bytes").exists() {
            return Ok(Check::Gone);
        }
        Ok(Check::Signal(self.level))
    }
}

/// A cgroup-v1 usage threshold at a share of the limit.
#[derive(Debug)]
pub struct V1Watermark {
    dir: PathBuf,
    percent: u8,
    limit: u64,
    threshold: u64,
    event: Option<OwnedFd>,
}

impl V1Watermark {
    /// Watches the v1 memory cgroup `dir` for usage above `percent` % of
    /// its limit (dormant while it has none; armed once one is set).
    pub fn open(dir: &Path, percent: u8) -> io::Result<Self> {
        let mut w = Self {
            dir: dir.to_path_buf(),
            percent: percent.clamp(1, 100),
            limit: 0,
            threshold: 0,
            event: None,
        };
        w.maintain()?;
        Ok(w)
    }

    fn usage(&self) -> io::Result<u64> {
        read_u64(&self.dir.join("memory.usage_in_bytes"))
    }
}

impl PressureSource for V1Watermark {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "cgroup-v1-watermark".into(),
            path: self.dir.join("memory.usage_in_bytes").display().to_string(),
            trigger: match self.event {
                Some(_) => format!("usage >= {} bytes", self.threshold),
                None => "no limit set".into(),
            },
        }
    }

    fn describe(&self) -> String {
        format!(
            "the daemon's own memory cgroup (v1) {}: usage above {} % of its limit ({}), notified by the kernel",
            self.dir.display(),
            self.percent,
            limit_text(self.limit)
        )
    }

    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        self.event.as_ref().map(|e| (e.as_fd(), PollFlags::IN))
    }

    fn check(&mut self, _ready: PollFlags) -> io::Result<Check> {
        let Some(event) = &self.event else {
            return Ok(Check::Quiet);
        };
        if !drain_eventfd(event)? {
            return Ok(Check::Quiet);
        }
        // Crossings go both ways: only usage above the line is a signal.
        match self.usage() {
            Ok(u) if u >= self.threshold => Ok(Check::Signal(Level::Low)),
            Ok(_) => Ok(Check::Quiet),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Check::Gone),
            Err(e) => Err(e),
        }
    }

    fn maintain(&mut self) -> io::Result<()> {
        let limit = read_u64(&self.dir.join("memory.limit_in_bytes"))?;
        if limit == self.limit {
            return Ok(());
        }
        self.limit = limit;
        // Closing the old eventfd unregisters its threshold.
        self.event = None;
        if limit >= UNLIMITED {
            return Ok(());
        }
        self.threshold = limit / 100 * u64::from(self.percent);
        self.event = Some(v1_register(
            &self.dir,
            "memory.usage_in_bytes",
            &self.threshold.to_string(),
        )?);
        log::info!(
            "pressure monitor: {} has a {} limit; purging at {} MiB",
            self.dir.display(),
            limit_text(limit),
            self.threshold >> 20
        );
        Ok(())
    }
}

/// The counters of a cgroup-v2 `memory.events` that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times usage went over `memory.high` (throttled, reclaimed).
    pub high: u64,
    /// Times usage hit `memory.max`.
    pub max: u64,
    /// OOM situations.
    pub oom: u64,
    /// Processes the OOM killer killed.
    pub oom_kill: u64,
}

impl MemoryEvents {
    /// Parses `memory.events`.
    pub fn parse(text: &str) -> Self {
        let mut e = Self::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            let v = v.trim().parse().unwrap_or(0);
            match k {
                "high" => e.high = v,
                "max" => e.max = v,
                "oom" => e.oom = v,
                "oom_kill" => e.oom_kill = v,
                _ => {}
            }
        }
        e
    }

    /// What a change from `before` means.
    pub fn signal_since(&self, before: &Self) -> Option<Level> {
        if self.max > before.max || self.oom > before.oom || self.oom_kill > before.oom_kill {
            Some(Level::Critical)
        } else if self.high > before.high {
            Some(Level::Medium)
        } else {
            None
        }
    }
}

/// A cgroup-v2 `memory.events`, watched with inotify.
#[derive(Debug)]
pub struct V2Events {
    path: PathBuf,
    inotify: OwnedFd,
    last: MemoryEvents,
}

impl V2Events {
    /// Watches `dir/memory.events` (the memory controller must be enabled
    /// for the cgroup, else the file is missing).
    pub fn open(dir: &Path) -> io::Result<Self> {
        use rustix::fs::inotify;
        let path = dir.join("memory.events");
        let last = MemoryEvents::parse(&fs::read_to_string(&path)?);
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        inotify::add_watch(&fd, &path, inotify::WatchFlags::MODIFY)?;
        Ok(Self {
            path,
            inotify: fd,
            last,
        })
    }
}

impl PressureSource for V2Events {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "cgroup-v2-events".into(),
            path: self.path.display().to_string(),
            trigger: "high, max, oom".into(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "the daemon's own memory cgroup (v2): high, max and oom events in {}",
            self.path.display()
        )
    }

    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        Some((self.inotify.as_fd(), PollFlags::IN))
    }

    fn check(&mut self, _ready: PollFlags) -> io::Result<Check> {
        let mut buf = [0u8; 1024];
        let mut any = false;
        loop {
            match rustix::io::read(&self.inotify, &mut buf) {
                Ok(0) => break,
                Ok(_) => any = true,
                Err(Errno::AGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if !any {
            return Ok(Check::Quiet);
        }
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
                return Ok(Check::Gone)
            }
            Err(e) => return Err(e),
        };
        let now = MemoryEvents::parse(&text);
        let signal = now.signal_since(&self.last);
        self.last = now;
        Ok(signal.map_or(Check::Quiet, Check::Signal))
    }
}

/// A cgroup-v2 usage watermark, polled.
#[derive(Debug)]
pub struct V2Watermark {
    dir: PathBuf,
    percent: u8,
    every: Duration,
}

impl V2Watermark {
    /// Watches `dir/memory.current` against `percent` % of the lower of
    /// `memory.max` and `memory.high`, every `every`.
    pub fn open(dir: &Path, percent: u8, every: Duration) -> io::Result<Self> {
        read_u64(&dir.join("memory.current"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            percent: percent.clamp(1, 100),
            every,
        })
    }

    fn limit(&self) -> u64 {
        let max = read_u64(&self.dir.join("memory.max")).unwrap_or(u64::MAX);
        let high = read_u64(&self.dir.join("memory.high")).unwrap_or(u64::MAX);
        max.min(high)
    }
}

impl PressureSource for V2Watermark {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "cgroup-v2-watermark".into(),
            path: self.dir.join("memory.current").display().to_string(),
            trigger: format!("{} % of min(memory.max, memory.high)", self.percent),
        }
    }

    fn describe(&self) -> String {
        format!(
            "the daemon's own memory cgroup (v2) {}: memory.current above {} % of its limit ({} now), checked every {} ms",
            self.dir.display(),
            self.percent,
            limit_text(self.limit()),
            self.every.as_millis()
        )
    }

    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        None
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.every)
    }

    fn check(&mut self, _ready: PollFlags) -> io::Result<Check> {
        let current = match read_u64(&self.dir.join("memory.current")) {
            Ok(c) => c,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
                return Ok(Check::Gone)
            }
            Err(e) => return Err(e),
        };
        let limit = self.limit();
        if limit >= UNLIMITED {
            return Ok(Check::Quiet);
        }
        Ok(if current >= limit / 100 * u64::from(self.percent) {
            Check::Signal(Level::Low)
        } else {
            Check::Quiet
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroups_are_found_from_proc() {
        let cgroup = "9:name=systemd:/\n4:memory:/process_api/abc\n3:cpuset:/\n0::/user.slice/vm\n";
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
33 25 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 25 0:30 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
";
        let own = OwnCgroups::parse(cgroup, mountinfo);
        assert_eq!(
            own.v1_memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            own.v2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/user.slice/vm"))
        );
        // A pure v2 host, with a namespaced mount of a subtree ignored.
        let own = OwnCgroups::parse(
            "0::/system.slice/vgpu.service\n",
            "40 1 0:27 /sub /mnt/x rw - cgroup2 cgroup2 rw\n41 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(
            own.v2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/system.slice/vgpu.service"))
        );
        assert_eq!(own.v1_memory, None);
        assert!(!own.v2_is_root);
        let own = OwnCgroups::parse("0::/\n", mountinfo);
        assert_eq!(own.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert!(own.v2_is_root);
    }

    #[test]
    fn memory_events_name_their_level() {
        let a = MemoryEvents::parse("low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n");
        assert_eq!(a.high, 3);
        let b = MemoryEvents::parse("low 0\nhigh 5\nmax 0\noom 0\noom_kill 0\n");
        assert_eq!(b.signal_since(&a), Some(Level::Medium));
        let c = MemoryEvents::parse("low 9\nhigh 5\nmax 1\noom 0\noom_kill 0\n");
        assert_eq!(c.signal_since(&b), Some(Level::Critical));
        assert_eq!(
            c.signal_since(&c),
            None,
            "a change of `low` alone means nothing"
        );
    }

    /// A fake v2 cgroup directory (this host's cgroup v2 has no memory
    /// controller, so the files are written by the test): inotify sees the
    /// writes the way it sees the kernel's updates of memory.events.
    #[test]
    fn v2_sources_on_a_fake_cgroup() {
        let dir = std::env::temp_dir().join(format!("vgpu-v2cg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        )
        .unwrap();
        fs::write(dir.join("memory.current"), "100\n").unwrap();
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        fs::write(dir.join("memory.high"), "max\n").unwrap();
        let mut events = V2Events::open(&dir).unwrap();
        assert_eq!(events.check(PollFlags::IN).unwrap(), Check::Quiet);
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 1\nmax 0\noom 0\noom_kill 0\n",
        )
        .unwrap();
        assert_eq!(
            events.check(PollFlags::IN).unwrap(),
            Check::Signal(Level::Medium)
        );
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 1\nmax 2\noom 0\noom_kill 0\n",
        )
        .unwrap();
        assert_eq!(
            events.check(PollFlags::IN).unwrap(),
            Check::Signal(Level::Critical)
        );
        let mut mark = V2Watermark::open(&dir, 90, V2_WATERMARK_POLL).unwrap();
        assert_eq!(
            mark.check(PollFlags::empty()).unwrap(),
            Check::Quiet,
            "no limit"
        );
        fs::write(dir.join("memory.high"), "1000\n").unwrap();
        assert_eq!(mark.check(PollFlags::empty()).unwrap(), Check::Quiet);
        fs::write(dir.join("memory.current"), "950\n").unwrap();
        assert_eq!(
            mark.check(PollFlags::empty()).unwrap(),
            Check::Signal(Level::Low)
        );
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mark.check(PollFlags::empty()).unwrap(), Check::Gone);
        assert!(events.describe().contains("memory.events"));
    }
}
