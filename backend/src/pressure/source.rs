//! Where memory-pressure signals come from. Every source is a
//! [`PressureSource`]: a file descriptor to poll (if it has one), how often
//! to look otherwise, and a `check` that says what happened, as a
//! [`Level`]. The monitor watches every source that exists at once.
//!
//! * [`PsiSource`] — a PSI trigger on `/proc/pressure/memory` (the host),
//!   on the daemon's own cgroup v2 `memory.pressure`, or on the path
//!   systemd names in `$MEMORY_PRESSURE_WATCH` (trigger from the base64
//!   `$MEMORY_PRESSURE_WRITE`; a socket path is connected to, `/dev/null`
//!   means "don't watch"). A trigger firing is a *medium* signal.
//! * [`MeminfoSource`] — `MemAvailable` from `/proc/meminfo` against a low
//!   watermark, polled: the last resort where PSI is missing, or when an
//!   operator sets `--low-watermark`.
//! * The daemon's own memory cgroup, v1 and v2: see [`super::cgroup`].
//!
//! The kernel accepts a PSI window only between 500 ms and 10 s, and
//! without CAP_SYS_RESOURCE only in multiples of 2 s; a refused trigger is
//! explained and the caller goes on without it, never crashes.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use rustix::event::PollFlags;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::policy::Level;

/// The trigger used unless told otherwise: 20 ms of "some" stall per 2 s,
/// the most sensitive one that stays silent on an unpressured host (see
/// README: the measurements behind it). 2 s is the shortest window the
/// kernel accepts without CAP_SYS_RESOURCE.
pub const DEFAULT_TRIGGER: &str = "some 20000 2000000";

/// The trigger systemd documents when `$MEMORY_PRESSURE_WRITE` is unset.
pub const SYSTEMD_DEFAULT_TRIGGER: &str = "some 200000 2000000";

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Memory pressure now, this strong.
    Signal(Level),
    /// Nothing this time.
    Quiet,
    /// The source went away (POLLERR: its cgroup was removed).
    Gone,
}

/// Describes a source for logs and the admin socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Short name: `psi`, `cgroup-psi`, `systemd`, `cgroup-v1-pressure`,
    /// `cgroup-v1-watermark`, `cgroup-v2-events`, `cgroup-v2-watermark`,
    /// `meminfo`.
    pub kind: String,
    /// File watched.
    pub path: String,
    /// Trigger, level or watermark, in the source's terms.
    pub trigger: String,
}

/// A source of pressure signals.
pub trait PressureSource: Send + fmt::Debug {
    /// What it is.
    fn info(&self) -> SourceInfo;
    /// What it watches, in words, for the log.
    fn describe(&self) -> String;
    /// The descriptor to poll, and for which events; `None` for polled sources.
    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)>;
    /// How often to check a source that has no descriptor (or also needs
    /// looking at); `None`: only when its descriptor is ready.
    fn poll_every(&self) -> Option<Duration> {
        None
    }
    /// Called when the descriptor is ready, or when a polled source is due.
    fn check(&mut self, ready: PollFlags) -> io::Result<Check>;
    /// Current pressure, percent of time stalled ("some avg10"), if known.
    fn level(&self) -> Option<f64> {
        None
    }
    /// Upkeep every monitor tick (re-read limits, re-arm thresholds).
    fn maintain(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Re-arms a PSI source with another trigger; `None` for sources that
    /// have none.
    fn set_trigger(&mut self, _trigger: &str) -> Option<Result<(), SourceError>> {
        None
    }
}

/// Why a PSI trigger could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file is not there (no PSI in this kernel, or no such cgroup).
    #[error("{path} is not available: {source}")]
    Unavailable {
        /// Path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the trigger.
    #[error("the kernel refused PSI trigger {trigger:?} on {path}: {why}")]
    Refused {
        /// Path.
        path: String,
        /// Trigger.
        trigger: String,
        /// Explanation.
        why: String,
    },
    /// A malformed trigger or environment.
    #[error("{0}")]
    Invalid(String),
    /// Watching is disabled (`$MEMORY_PRESSURE_WATCH=/dev/null`).
    #[error("memory pressure watching is disabled by $MEMORY_PRESSURE_WATCH=/dev/null")]
    Disabled,
}

/// Parses `some|full <stall µs> <window µs>` and checks the kernel's limits.
pub fn parse_trigger(trigger: &str) -> Result<(String, u64, u64), SourceError> {
    let parts: Vec<&str> = trigger.split_whitespace().collect();
    let [kind, stall, window] = parts.as_slice() else {
        return Err(SourceError::Invalid(format!(
            "PSI trigger {trigger:?} is not \"some|full <stall_us> <window_us>\""
        )));
    };
    if !matches!(*kind, "some" | "full") {
        return Err(SourceError::Invalid(format!(
            "PSI trigger kind {kind:?} is not some or full"
        )));
    }
    let num = |s: &str| {
        s.parse::<u64>().map_err(|_| {
            SourceError::Invalid(format!(
                "PSI trigger {trigger:?}: {s:?} is not a number of µs"
            ))
        })
    };
    let (stall, window) = (num(stall)?, num(window)?);
    if !(500_000..=10_000_000).contains(&window) || stall == 0 || stall > window {
        return Err(SourceError::Invalid(format!(
            "PSI trigger {trigger:?}: the window must be 0.5 s to 10 s and the stall between 1 µs and the window"
        )));
    }
    Ok((kind.to_string(), stall, window))
}

#[derive(Debug)]
enum Watch {
    /// A PSI file: POLLPRI on trigger, POLLERR when gone.
    Psi(OwnedFd),
    /// A socket or FIFO (systemd's alternative): POLLIN, data discarded.
    Stream(OwnedFd),
}

/// A PSI trigger.
#[derive(Debug)]
pub struct PsiSource {
    kind: &'static str,
    path: PathBuf,
    trigger: String,
    window: Duration,
    watch: Watch,
}

impl PsiSource {
    /// A trigger on the system-wide `/proc/pressure/memory`.
    pub fn system(trigger: &str) -> Result<Self, SourceError> {
        Self::open("psi", Path::new("/proc/pressure/memory"), trigger)
    }

    /// A trigger on this process's cgroup v2 `memory.pressure`.
    pub fn own_cgroup(trigger: &str) -> Result<Self, SourceError> {
        let path = own_cgroup_pressure_path().ok_or_else(|| SourceError::Unavailable {
            path: "<cgroup v2>/memory.pressure".into(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup v2 hierarchy or no memory.pressure in it",
            ),
        })?;
        Self::open("cgroup-psi", &path, trigger)
    }

    /// The source systemd's service protocol describes, if its variables
    /// are set: `Ok(None)` when `$MEMORY_PRESSURE_WATCH` is unset.
    pub fn from_systemd_env() -> Result<Option<Self>, SourceError> {
        let watch = std::env::var_os("MEMORY_PRESSURE_WATCH");
        let write = std::env::var("MEMORY_PRESSURE_WRITE").ok();
        Self::from_systemd_vars(watch.as_deref().map(Path::new), write.as_deref())
    }

    /// [`Self::from_systemd_env`] on given values of
    /// `$MEMORY_PRESSURE_WATCH` and `$MEMORY_PRESSURE_WRITE`.
    pub fn from_systemd_vars(
        watch: Option<&Path>,
        write: Option<&str>,
    ) -> Result<Option<Self>, SourceError> {
        let Some(path) = watch else {
            return Ok(None);
        };
        if path == Path::new("/dev/null") {
            return Err(SourceError::Disabled);
        }
        let trigger = match write {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        SourceError::Invalid(format!("$MEMORY_PRESSURE_WRITE is not base64: {e}"))
                    })?;
                String::from_utf8(bytes)
                    .map_err(|_| SourceError::Invalid("$MEMORY_PRESSURE_WRITE is not text".into()))?
                    .trim_end_matches('\0')
                    .to_string()
            }
            // systemd's documented default.
            None => SYSTEMD_DEFAULT_TRIGGER.to_string(),
        };
        Self::open("systemd", path, &trigger).map(Some)
    }

    /// Opens `path` and arms `trigger` on it.
    pub fn open(kind: &'static str, path: &Path, trigger: &str) -> Result<Self, SourceError> {
        let (_, _, window_us) = parse_trigger(trigger)?;
        let shown = path.display().to_string();
        let unavailable = |e: io::Error| SourceError::Unavailable {
            path: shown.clone(),
            source: e,
        };
        let watch = match rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let is_reg = rustix::fs::fstat(&fd)
                    .map(|st| {
                        rustix::fs::FileType::from_raw_mode(st.st_mode)
                            == rustix::fs::FileType::RegularFile
                    })
                    .unwrap_or(true);
                if is_reg {
                    Watch::Psi(fd)
                } else {
                    Watch::Stream(fd)
                }
            }
            // systemd may hand a socket: connect to it instead.
            Err(Errno::NXIO) => {
                let s = std::os::unix::net::UnixStream::connect(path).map_err(unavailable)?;
                s.set_nonblocking(true).map_err(unavailable)?;
                Watch::Stream(OwnedFd::from(s))
            }
            Err(e) => return Err(unavailable(e.into())),
        };
        let fd = match &watch {
            Watch::Psi(fd) | Watch::Stream(fd) => fd.as_fd(),
        };
        // The kernel wants the trigger with its terminating NUL in one write.
        let mut bytes = trigger.as_bytes().to_vec();
        bytes.push(0);
        match rustix::io::write(fd, &bytes) {
            Ok(_) => {}
            Err(Errno::INVAL) => {
                let why = if window_us % 2_000_000 != 0 {
                    "without CAP_SYS_RESOURCE the kernel only accepts windows that are multiples of 2 s (2000000 µs)"
                        .to_string()
                } else {
                    "EINVAL (window 0.5-10 s, stall below the window, one trigger per file)"
                        .to_string()
                };
                return Err(SourceError::Refused {
                    path: shown,
                    trigger: trigger.to_string(),
                    why,
                });
            }
            Err(e) => {
                return Err(SourceError::Refused {
                    path: shown,
                    trigger: trigger.to_string(),
                    why: io::Error::from(e).to_string(),
                })
            }
        }
        Ok(Self {
            kind,
            path: path.to_path_buf(),
            trigger: trigger.to_string(),
            window: Duration::from_micros(window_us),
            watch,
        })
    }
}

impl PressureSource for PsiSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: self.kind.to_string(),
            path: self.path.display().to_string(),
            trigger: self.trigger.clone(),
        }
    }

    fn describe(&self) -> String {
        let whose = match self.kind {
            "psi" => "the host's memory pressure",
            "cgroup-psi" => "the memory pressure of the daemon's own cgroup",
            _ => "the memory pressure systemd hands the service",
        };
        let what = match parse_trigger(&self.trigger) {
            Ok((kind, stall, window)) => format!(
                "{} ms of \"{kind}\" stall within {} s",
                stall / 1000,
                window as f64 / 1e6
            ),
            Err(_) => format!("{:?}", self.trigger),
        };
        format!(
            "{whose}: a PSI trigger on {} fires at {what}",
            self.path.display()
        )
    }

    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        Some(match &self.watch {
            Watch::Psi(fd) => (fd.as_fd(), PollFlags::PRI),
            Watch::Stream(fd) => (fd.as_fd(), PollFlags::IN),
        })
    }

    fn check(&mut self, ready: PollFlags) -> io::Result<Check> {
        if ready.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
            return Ok(Check::Gone);
        }
        match &self.watch {
            Watch::Psi(_) if ready.contains(PollFlags::PRI) => Ok(Check::Signal(Level::Medium)),
            Watch::Stream(fd) if ready.contains(PollFlags::IN) => {
                let mut buf = [0u8; 256];
                let mut file = std::fs::File::from(fd.try_clone()?);
                match file.read(&mut buf) {
                    Ok(0) => Ok(Check::Gone),
                    Ok(_) => Ok(Check::Signal(Level::Medium)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Check::Quiet),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(Check::Quiet),
        }
    }

    fn level(&self) -> Option<f64> {
        let path = match self.kind {
            "systemd" if !self.path.starts_with("/proc") && !self.path.starts_with("/sys") => {
                return None
            }
            _ => &self.path,
        };
        psi_some_avg10(path)
    }

    fn set_trigger(&mut self, trigger: &str) -> Option<Result<(), SourceError>> {
        Some(Self::open(self.kind, &self.path.clone(), trigger).map(|s| *self = s))
    }
}

impl PsiSource {
    /// The trigger's window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// "some avg10" of a PSI file, in percent.
pub fn psi_some_avg10(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let avg = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    avg.parse().ok()
}

/// The cgroup v2 `memory.pressure` of this process, if there is one.
pub fn own_cgroup_pressure_path() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
    })?;
    let path = Path::new(&mount)
        .join(rel.trim_start_matches('/'))
        .join("memory.pressure");
    path.exists().then_some(path)
}

/// The fallback without PSI: `MemAvailable` below a watermark is pressure.
#[derive(Debug)]
pub struct MeminfoSource {
    low_watermark: u64,
    period: Duration,
    path: PathBuf,
}

impl MeminfoSource {
    /// Pressure when less than `low_watermark` bytes are available; checked
    /// every `period`.
    pub fn new(low_watermark: u64, period: Duration) -> Self {
        Self {
            low_watermark,
            period,
            path: PathBuf::from("/proc/meminfo"),
        }
    }

    /// Reads another meminfo-format file (tests).
    pub fn with_path(mut self, path: &Path) -> Self {
        self.path = path.to_path_buf();
        self
    }

    /// A watermark of 5 % of MemTotal (at least 64 MiB).
    pub fn default_watermark() -> u64 {
        meminfo_field(Path::new("/proc/meminfo"), "MemTotal:")
            .map_or(256 << 20, |t| (t / 20).max(64 << 20))
    }
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo_field(path: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl PressureSource for MeminfoSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "meminfo".into(),
            path: self.path.display().to_string(),
            trigger: format!("MemAvailable < {} bytes", self.low_watermark),
        }
    }

    fn describe(&self) -> String {
        format!(
            "the host's available memory: MemAvailable in {} below {} MiB, checked every {} ms",
            self.path.display(),
            self.low_watermark >> 20,
            self.period.as_millis()
        )
    }

    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        None
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.period)
    }

    fn check(&mut self, _ready: PollFlags) -> io::Result<Check> {
        let avail = meminfo_field(&self.path, "MemAvailable:").ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no MemAvailable in meminfo")
        })?;
        Ok(if avail < self.low_watermark {
            Check::Signal(Level::Medium)
        } else {
            Check::Quiet
        })
    }

    fn level(&self) -> Option<f64> {
        let total = meminfo_field(&self.path, "MemTotal:")? as f64;
        let avail = meminfo_field(&self.path, "MemAvailable:")? as f64;
        Some(((total - avail) / total * 100.0 - 90.0).clamp(0.0, 100.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_validated() {
        assert!(parse_trigger(DEFAULT_TRIGGER).is_ok());
        assert!(parse_trigger("full 70000 1000000").is_ok());
        for bad in [
            "",
            "some",
            "some 1 2 3",
            "maybe 1 1000000",
            "some x 2000000",
            "some 1 100",
            "some 0 2000000",
            "some 3000000 2000000",
        ] {
            assert!(parse_trigger(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn meminfo_fallback_reads_the_watermark() {
        let dir = std::env::temp_dir().join(format!("vgpu-meminfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("meminfo");
        std::fs::write(
            &f,
            "MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 50 kB\n",
        )
        .unwrap();
        let mut low = MeminfoSource::new(100 * 1024, Duration::from_millis(10)).with_path(&f);
        assert_eq!(
            low.check(PollFlags::empty()).unwrap(),
            Check::Signal(Level::Medium)
        );
        let mut ok = MeminfoSource::new(10 * 1024, Duration::from_millis(10)).with_path(&f);
        assert_eq!(ok.check(PollFlags::empty()).unwrap(), Check::Quiet);
        assert!(ok.level().unwrap() > 0.0);
        assert!(MeminfoSource::default_watermark() >= 64 << 20);
    }

    #[test]
    fn a_real_psi_trigger_is_accepted_or_explained() {
        match PsiSource::system(DEFAULT_TRIGGER) {
            Ok(s) => {
                assert_eq!(s.window(), Duration::from_secs(2));
                assert!(s.poll_fd().is_some());
                assert!(s.level().is_some());
            }
            Err(e) => eprintln!("skipped: PSI not usable here: {e}"),
        }
        // A 1 s window: accepted with CAP_SYS_RESOURCE, otherwise refused
        // with the explanation.
        if let Err(SourceError::Refused { why, .. }) = PsiSource::system("some 150000 1000000") {
            assert!(why.contains("multiples of 2 s"), "{why}");
        }
    }

    #[test]
    fn systemd_variables_name_the_file_and_the_trigger() {
        use base64::Engine;
        assert!(PsiSource::from_systemd_vars(None, None).unwrap().is_none());
        assert!(matches!(
            PsiSource::from_systemd_vars(Some(Path::new("/dev/null")), None),
            Err(SourceError::Disabled)
        ));
        assert!(matches!(
            PsiSource::from_systemd_vars(
                Some(Path::new("/proc/pressure/memory")),
                Some("not base64!")
            ),
            Err(SourceError::Invalid(_))
        ));
        // A socket, as systemd may hand one: connected to, trigger written
        // to it, POLLIN on data is pressure.
        let dir = std::env::temp_dir().join(format!("vgpu-systemd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("pressure.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let trigger = "some 100000 2000000";
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{trigger}\0"));
        let mut source = PsiSource::from_systemd_vars(Some(&sock), Some(&encoded))
            .unwrap()
            .unwrap();
        assert_eq!(source.info().kind, "systemd");
        assert_eq!(source.info().trigger, trigger);
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = vec![0u8; trigger.len() + 1];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(
            &got[..trigger.len()],
            trigger.as_bytes(),
            "the trigger is written to the socket"
        );
        assert_eq!(
            source.check(PollFlags::IN).unwrap(),
            Check::Quiet,
            "no data yet"
        );
        io::Write::write_all(&mut peer, b"x").unwrap();
        assert_eq!(
            source.check(PollFlags::IN).unwrap(),
            Check::Signal(Level::Medium)
        );
        drop(peer);
        assert_eq!(source.check(PollFlags::IN).unwrap(), Check::Gone);
        // A PSI file named by systemd, with the default trigger.
        match PsiSource::from_systemd_vars(Some(Path::new("/proc/pressure/memory")), None) {
            Ok(Some(s)) => assert_eq!(s.info().trigger, SYSTEMD_DEFAULT_TRIGGER),
            other => eprintln!("PSI file part skipped: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
