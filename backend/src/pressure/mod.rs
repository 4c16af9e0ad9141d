//! The host memory-pressure monitor: a thread that watches a
//! [`PressureSource`], runs the [`PressurePolicy`] on what it sees, keeps
//! VMs under their soft limits, and records every shrink.
//!
//! Everything that shrinks — the monitor, the admin socket, soft limits —
//! goes through [`MonitorHandle::shrink`], so each shrink is recorded
//! (time, trigger, target, purged, written back, skipped, duration) for the
//! admin socket and logged.
//!
//! Owns: the source, the policy state, the shrink log. Must not: touch the
//! device or virtio; it only calls the buffer manager.

mod policy;
mod source;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags};

pub use policy::{soft_limit_excess, Decision, PolicyConfig, PressurePolicy};
pub use source::{
    meminfo_field, own_cgroup_pressure_path, parse_trigger, psi_some_avg10, Check, MeminfoSource,
    PressureSource, PsiSource, SourceError, SourceInfo, DEFAULT_TRIGGER, SYSTEMD_DEFAULT_TRIGGER,
};

use crate::manager::BufferManager;
use crate::shrinker::ShrinkRequest;
use crate::types::{OwnerId, ShrinkMode};

/// Shrink records kept for the admin socket.
pub const MAX_RECORDS: usize = 64;

/// Which source to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    /// systemd's variables if set, else the own cgroup's PSI, else the
    /// system's, else meminfo.
    Auto,
    /// `/proc/pressure/memory`.
    System,
    /// The own cgroup v2 `memory.pressure`.
    Cgroup,
    /// `$MEMORY_PRESSURE_WATCH` / `$MEMORY_PRESSURE_WRITE`.
    Systemd,
    /// `/proc/meminfo` against the low watermark.
    Meminfo,
    /// No monitor (admin-triggered shrinks and soft limits still work).
    None,
}

impl SourceChoice {
    /// Parses the CLI spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "psi" | "system" => Self::System,
            "cgroup" => Self::Cgroup,
            "systemd" => Self::Systemd,
            "meminfo" => Self::Meminfo,
            "none" => Self::None,
            other => {
                return Err(format!(
                    "pressure source {other:?} is not auto, psi, cgroup, systemd, meminfo or none"
                ))
            }
        })
    }
}

/// Configuration of the monitor.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Which source.
    pub source: SourceChoice,
    /// PSI trigger.
    pub trigger: String,
    /// MemAvailable watermark of the meminfo fallback.
    pub low_watermark: u64,
    /// How often the meminfo fallback and soft limits are checked.
    pub tick: Duration,
    /// Policy tuning.
    pub policy: PolicyConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            source: SourceChoice::Auto,
            trigger: DEFAULT_TRIGGER.to_string(),
            low_watermark: MeminfoSource::default_watermark(),
            tick: Duration::from_millis(500),
            policy: PolicyConfig::default(),
        }
    }
}

/// One shrink, as the admin socket shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkRecord {
    /// When it started, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What asked for it (`psi`, `cgroup`, `systemd`, `meminfo`,
    /// `injected`, `admin`, `soft-limit:<owner>`, …).
    pub trigger: String,
    /// Bytes asked for.
    pub target: u64,
    /// Mode.
    pub mode: ShrinkMode,
    /// Bytes really released by purging.
    pub purged_bytes: u64,
    /// Objects purged.
    pub purged_objects: u64,
    /// Bytes really released by writeback.
    pub written_back_bytes: u64,
    /// Bytes released by dropping the buffer cache.
    pub cache_bytes: u64,
    /// Objects looked at.
    pub scanned: u64,
    /// Objects skipped (pinned, busy, contended, changed).
    pub skipped: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
}

/// What the monitor knows, for the admin socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorStatus {
    /// The source watched (`None` when there is no monitor).
    pub source: Option<SourceInfo>,
    /// Why the preferred sources were not used.
    pub notes: Vec<String>,
    /// Pressure events seen.
    pub events: u64,
    /// Consecutive windows with pressure now.
    pub streak: u32,
    /// Shrinks per trigger.
    pub shrinks: BTreeMap<String, u64>,
    /// Bytes freed by all shrinks.
    pub freed_bytes: u64,
    /// The last shrinks, oldest first.
    pub recent: Vec<ShrinkRecord>,
}

#[derive(Debug, Default)]
struct Shared {
    status: MonitorStatus,
    records: VecDeque<ShrinkRecord>,
}

enum Control {
    SetTrigger(String, mpsc::Sender<Result<SourceInfo, String>>),
    Inject,
    Stop,
}

/// The monitor's shared state, and the way to shrink with a record.
#[derive(Clone)]
pub struct MonitorHandle {
    bm: BufferManager,
    shared: Arc<Mutex<Shared>>,
    control: Option<Arc<ControlChannel>>,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle")
            .field("running", &self.control.is_some())
            .finish()
    }
}

struct ControlChannel {
    queue: Mutex<VecDeque<Control>>,
    wake: OwnedFd,
}

impl ControlChannel {
    fn send(&self, c: Control) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(c);
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MonitorHandle {
    /// A handle with no monitor thread: shrinks are still recorded.
    pub fn without_monitor(bm: BufferManager) -> Self {
        Self {
            bm,
            shared: Arc::default(),
            control: None,
        }
    }

    /// Shrinks, records and logs it; returns the record.
    pub fn shrink(&self, trigger: &str, request: &ShrinkRequest) -> ShrinkRecord {
        let started = SystemTime::now();
        let report = self.bm.shrink(request);
        let skipped = report.skipped_pinned
            + report.skipped_busy
            + report.skipped_contended
            + report.skipped_other;
        let record = ShrinkRecord {
            at_unix_ms: started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            trigger: trigger.to_string(),
            target: request.target,
            mode: request.mode,
            purged_bytes: report.purged_bytes,
            purged_objects: report.purged_objects,
            written_back_bytes: report.written_back_bytes,
            cache_bytes: report.cache_bytes,
            scanned: report.scanned,
            skipped,
            duration_us: report.duration.as_micros() as u64,
        };
        log::info!(
            "shrink ({trigger}): target {} B {}, purged {} B in {} objects, written back {} B, cache {} B, scanned {}, skipped {} in {:?}",
            request.target,
            request.mode.name(),
            report.purged_bytes,
            report.purged_objects,
            report.written_back_bytes,
            report.cache_bytes,
            report.scanned,
            skipped,
            report.duration
        );
        let mut s = lock(&self.shared);
        *s.status
            .shrinks
            .entry(trigger.split(':').next().unwrap_or(trigger).to_string())
            .or_default() += 1;
        s.status.freed_bytes += report.freed();
        s.records.push_back(record.clone());
        while s.records.len() > MAX_RECORDS {
            s.records.pop_front();
        }
        record
    }

    /// What the monitor knows now.
    pub fn status(&self) -> MonitorStatus {
        let s = lock(&self.shared);
        let mut status = s.status.clone();
        status.recent = s.records.iter().cloned().collect();
        status
    }

    /// Re-arms the PSI trigger (same kind of source); the old one stays if
    /// the new one is refused.
    pub fn set_trigger(&self, trigger: &str) -> Result<SourceInfo, String> {
        parse_trigger(trigger).map_err(|e| e.to_string())?;
        let control = self
            .control
            .as_ref()
            .ok_or("the pressure monitor is not running")?;
        let (tx, rx) = mpsc::channel();
        control.send(Control::SetTrigger(trigger.to_string(), tx));
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the pressure monitor did not answer".to_string())?
    }

    /// Feeds the policy one pressure event, as if the source had fired.
    pub fn inject(&self) -> Result<(), String> {
        let control = self
            .control
            .as_ref()
            .ok_or("the pressure monitor is not running")?;
        control.send(Control::Inject);
        Ok(())
    }
}

/// The running monitor; stops its thread when dropped.
pub struct PressureMonitor {
    handle: MonitorHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PressureMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PressureMonitor").finish()
    }
}

impl PressureMonitor {
    /// Starts watching. `SourceChoice::None` starts no thread.
    pub fn start(bm: BufferManager, cfg: MonitorConfig) -> io::Result<Self> {
        if cfg.source == SourceChoice::None {
            return Ok(Self {
                handle: MonitorHandle::without_monitor(bm),
                thread: None,
            });
        }
        let (source, notes) = open_source(&cfg);
        Self::start_with_source(bm, cfg, source, notes)
    }

    /// Starts watching a given source (tests inject events through one).
    pub fn start_with_source(
        bm: BufferManager,
        cfg: MonitorConfig,
        source: Box<dyn PressureSource>,
        notes: Vec<String>,
    ) -> io::Result<Self> {
        let mut handle = MonitorHandle::without_monitor(bm);
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let control = Arc::new(ControlChannel {
            queue: Mutex::new(VecDeque::new()),
            wake,
        });
        handle.control = Some(control.clone());
        {
            let mut s = lock(&handle.shared);
            s.status.source = Some(source.info());
            s.status.notes = notes.clone();
        }
        for n in &notes {
            log::warn!("pressure monitor: {n}");
        }
        log::info!("pressure monitor: watching {:?}", source.info());
        let worker = Worker {
            handle: handle.clone(),
            control,
            source,
            cfg: cfg.clone(),
            policy: PressurePolicy::new(cfg.policy),
            last_pressure: None,
            soft_backoff: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("vgpu-pressure".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for the admin socket.
    pub fn handle(&self) -> MonitorHandle {
        self.handle.clone()
    }
}

impl Drop for PressureMonitor {
    fn drop(&mut self) {
        if let Some(c) = &self.handle.control {
            c.send(Control::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the chosen source, falling back (with a note saying why) down
/// the chain to the meminfo fallback.
fn open_source(cfg: &MonitorConfig) -> (Box<dyn PressureSource>, Vec<String>) {
    let mut notes = Vec::new();
    let meminfo =
        || Box::new(MeminfoSource::new(cfg.low_watermark, cfg.tick)) as Box<dyn PressureSource>;
    let chain: &[SourceChoice] = match cfg.source {
        SourceChoice::Auto => &[
            SourceChoice::Systemd,
            SourceChoice::Cgroup,
            SourceChoice::System,
        ],
        SourceChoice::Meminfo | SourceChoice::None => &[],
        SourceChoice::System => &[SourceChoice::System],
        SourceChoice::Cgroup => &[SourceChoice::Cgroup],
        SourceChoice::Systemd => &[SourceChoice::Systemd],
    };
    for choice in chain {
        let opened = match choice {
            SourceChoice::Systemd => match PsiSource::from_systemd_env() {
                Ok(Some(s)) => Ok(s),
                Ok(None) => {
                    if cfg.source == SourceChoice::Systemd {
                        notes.push("$MEMORY_PRESSURE_WATCH is not set".into());
                    }
                    continue;
                }
                Err(e) => Err(e),
            },
            SourceChoice::Cgroup => PsiSource::own_cgroup(&cfg.trigger),
            _ => PsiSource::system(&cfg.trigger),
        };
        match opened {
            Ok(s) => return (Box::new(s), notes),
            Err(e) => notes.push(e.to_string()),
        }
    }
    if cfg.source != SourceChoice::Meminfo {
        notes.push("falling back to polling /proc/meminfo MemAvailable".into());
    }
    (meminfo(), notes)
}

struct Worker {
    handle: MonitorHandle,
    control: Arc<ControlChannel>,
    source: Box<dyn PressureSource>,
    cfg: MonitorConfig,
    policy: PressurePolicy,
    last_pressure: Option<Instant>,
    soft_backoff: HashMap<OwnerId, Backoff>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let (pressured, stop) = match self.wait() {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("pressure monitor: {e}; falling back to meminfo");
                    self.fall_back(format!("{e}"));
                    (false, false)
                }
            };
            if stop {
                return;
            }
            if pressured {
                self.on_pressure(&self.source.info().kind.clone());
            } else if self
                .last_pressure
                .is_some_and(|t| t.elapsed() > self.source.window())
            {
                self.policy.on_quiet();
                self.last_pressure = None;
                lock(&self.handle.shared).status.streak = 0;
            }
            self.enforce_soft_limits();
        }
    }

    /// Waits one tick; returns (pressure seen, stop asked).
    fn wait(&mut self) -> io::Result<(bool, bool)> {
        let tick = self.cfg.tick.min(self.source.window());
        let mut fds = vec![PollFd::new(&self.control.wake, PollFlags::IN)];
        let source_fd = self.source.poll_fd();
        if let Some((fd, flags)) = &source_fd {
            fds.push(PollFd::from_borrowed_fd(fd.as_fd(), *flags));
        }
        let ts = rustix::event::Timespec {
            tv_sec: tick.as_secs() as i64,
            tv_nsec: i64::from(tick.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let control_ready = !fds[0].revents().is_empty();
        let source_ready = fds
            .get(1)
            .map(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        let mut pressured = false;
        if control_ready {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.control.wake, &mut buf);
            let queued: Vec<Control> = self
                .control
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .collect();
            for c in queued {
                match c {
                    Control::Stop => return Ok((false, true)),
                    Control::Inject => self.on_pressure("injected"),
                    Control::SetTrigger(t, reply) => {
                        let _ = reply.send(self.rearm(&t));
                    }
                }
            }
        }
        let polled = self.source.poll_fd().is_none();
        if source_ready.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
            // Whatever the source says, polling it again would spin.
            self.fall_back(format!("{} went away", self.source.info().path));
        } else if polled || !source_ready.is_empty() {
            match self.source.check(source_ready)? {
                Check::Pressure => pressured = true,
                Check::Quiet => {}
                Check::Gone => {
                    self.fall_back(format!("{} went away", self.source.info().path));
                }
            }
        }
        Ok((pressured, false))
    }

    fn rearm(&mut self, trigger: &str) -> Result<SourceInfo, String> {
        let info = self.source.info();
        let opened = match info.kind.as_str() {
            "psi" => PsiSource::system(trigger),
            "cgroup" => PsiSource::own_cgroup(trigger),
            "systemd" => PsiSource::open("systemd", std::path::Path::new(&info.path), trigger),
            other => return Err(format!("the {other} source has no PSI trigger")),
        };
        let source = opened.map_err(|e| e.to_string())?;
        self.source = Box::new(source);
        self.cfg.trigger = trigger.to_string();
        let info = self.source.info();
        lock(&self.handle.shared).status.source = Some(info.clone());
        log::info!("pressure monitor: trigger now {trigger:?}");
        Ok(info)
    }

    fn fall_back(&mut self, why: String) {
        self.source = Box::new(MeminfoSource::new(self.cfg.low_watermark, self.cfg.tick));
        let mut s = lock(&self.handle.shared);
        s.status.notes.push(why);
        s.status.source = Some(self.source.info());
    }

    fn on_pressure(&mut self, trigger: &str) {
        let root = self.handle.bm.owner_stats(self.handle.bm.root()).ok();
        let (held, purgeable) = root.map_or((0, 0), |r| (r.charged, r.purgeable));
        let d = self
            .policy
            .on_pressure(held, purgeable, self.source.level());
        self.last_pressure = Some(Instant::now());
        {
            let mut s = lock(&self.handle.shared);
            s.status.events += 1;
            s.status.streak = d.streak;
        }
        self.handle
            .shrink(trigger, &ShrinkRequest::new(d.target, d.mode));
    }

    /// Shrinks every VM over its soft limit back under it. A VM that could
    /// not be brought under (nothing purgeable, no swap to write back to)
    /// is retried with an exponential back-off instead of every tick.
    fn enforce_soft_limits(&mut self) {
        let stats = self.handle.bm.stats();
        let owners: Vec<(OwnerId, u64, Option<u64>)> = stats
            .owners
            .iter()
            .filter(|o| o.id != self.handle.bm.root())
            .map(|o| (o.id, o.charged, o.soft_limit))
            .collect();
        let over = soft_limit_excess(&owners);
        self.soft_backoff
            .retain(|id, _| over.iter().any(|(o, _)| o == id));
        let now = Instant::now();
        for (owner, excess) in over {
            if self.soft_backoff.get(&owner).is_some_and(|b| b.next > now) {
                continue;
            }
            let name = stats
                .owners
                .iter()
                .find(|o| o.id == owner)
                .map_or_else(|| owner.to_string(), |o| o.name.clone());
            let record = self.handle.shrink(
                &format!("soft-limit:{name}"),
                &ShrinkRequest {
                    owner: Some(owner),
                    ..ShrinkRequest::new(excess, ShrinkMode::Writeback)
                },
            );
            let charged_now = self.handle.bm.owner_stats(owner).map_or(0, |o| o.charged);
            let limit = owners
                .iter()
                .find(|o| o.0 == owner)
                .and_then(|o| o.2)
                .unwrap_or(u64::MAX);
            if charged_now > limit && record.purged_bytes + record.written_back_bytes < excess {
                let delay = self
                    .soft_backoff
                    .get(&owner)
                    .map_or(SOFT_LIMIT_RETRY_MIN, |b| {
                        (b.delay * 2).min(SOFT_LIMIT_RETRY_MAX)
                    });
                log::warn!(
                    "{name} stays {} B over its soft limit (nothing more to purge or write back); retrying in {delay:?}",
                    charged_now - limit
                );
                self.soft_backoff.insert(
                    owner,
                    Backoff {
                        next: now + delay,
                        delay,
                    },
                );
            } else {
                self.soft_backoff.remove(&owner);
            }
        }
    }
}

/// First retry delay for a VM that stays over its soft limit.
pub const SOFT_LIMIT_RETRY_MIN: Duration = Duration::from_secs(2);
/// Longest retry delay for a VM that stays over its soft limit.
pub const SOFT_LIMIT_RETRY_MAX: Duration = Duration::from_secs(64);

struct Backoff {
    next: Instant,
    delay: Duration,
}
