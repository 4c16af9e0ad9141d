//! The memory-pressure monitor: a thread that watches **every** pressure
//! source that exists at once — the daemon's own memory cgroup (v1 or v2
//! events, a usage watermark below its limit, its PSI), the host's PSI,
//! systemd's `$MEMORY_PRESSURE_WATCH`, and `MemAvailable` as the last
//! resort — runs the [`PressurePolicy`] on what they say, keeps VMs under
//! their soft limits, and shrinks through the buffer manager, whose shrink
//! log records every shrink (time, trigger, target, purged, hinted,
//! written back, skipped, duration) for the admin socket.
//!
//! Why all at once: host PSI does not see a squeeze inside a cgroup (the
//! cgroup reclaims cheap page cache and fails charges long before any task
//! stalls 20 ms in 2 s), and a cgroup source does not see the host running
//! short. Each signal is a [`Level`]; the strongest seen in one wake-up
//! goes to the policy.
//!
//! The own cgroup is followed: a daemon can be moved after it started (the
//! system libvirt starts its vhost-user helpers, then moves them into the
//! VM's cgroup), so every tick the monitor looks at `/proc/self/cgroup`
//! and, when it changed, watches the new cgroup's sources instead.
//!
//! Owns: the sources, the policy state, the monitor's counters. Must not:
//! touch the device or virtio; it only calls the buffer manager.

mod cgroup;
mod policy;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

pub use cgroup::{
    MemoryEvents, OwnCgroups, V1PressureLevel, V1Watermark, V2Events, V2Watermark,
    DEFAULT_WATERMARK_PERCENT, V2_WATERMARK_POLL,
};
pub use policy::{soft_limit_excess, Decision, Level, PolicyConfig, PressurePolicy};
pub use source::{
    meminfo_field, own_cgroup_pressure_path, parse_trigger, psi_some_avg10, Check, MeminfoSource,
    PressureSource, PsiSource, SourceError, SourceInfo, DEFAULT_TRIGGER, SYSTEMD_DEFAULT_TRIGGER,
};

use crate::mailbox::Mailbox;
use crate::manager::BufferManager;
pub use crate::shrink_log::{ShrinkRecord, MAX_RECORDS};
use crate::shrinker::ShrinkRequest;
use crate::types::{OwnerId, ShrinkMode};

/// Which sources to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    /// Every source that exists: systemd's variables, the own cgroup
    /// (v1/v2 events, watermark, PSI), the host's PSI; meminfo where there
    /// is no PSI or a low watermark was given.
    Auto,
    /// The host's `/proc/pressure/memory` only.
    System,
    /// The own cgroup's sources only.
    Cgroup,
    /// `$MEMORY_PRESSURE_WATCH` / `$MEMORY_PRESSURE_WRITE` only.
    Systemd,
    /// `/proc/meminfo` against the low watermark only.
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
    /// Which sources.
    pub source: SourceChoice,
    /// PSI trigger (host and own cgroup).
    pub trigger: String,
    /// MemAvailable watermark; given, it is watched whatever else is.
    /// `None`: 5 % of RAM, watched only where there is no PSI.
    pub low_watermark: Option<u64>,
    /// Share of the own cgroup's limit, in percent, above which DONTNEED
    /// buffers are purged (0: no watermark).
    pub cgroup_watermark: u8,
    /// How often soft limits are enforced and sources maintained.
    pub tick: Duration,
    /// How often polled sources (meminfo, the v2 watermark) are read.
    pub poll: Duration,
    /// Policy tuning.
    pub policy: PolicyConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            source: SourceChoice::Auto,
            trigger: DEFAULT_TRIGGER.to_string(),
            low_watermark: None,
            cgroup_watermark: DEFAULT_WATERMARK_PERCENT,
            tick: Duration::from_millis(500),
            poll: Duration::from_millis(50),
            policy: PolicyConfig::default(),
        }
    }
}

/// One source the monitor watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmedSource {
    /// Kind, file and trigger.
    pub info: SourceInfo,
    /// What it watches, in words.
    pub description: String,
    /// Signals it gave so far.
    pub signals: u64,
}

/// What the monitor knows, for the admin socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorStatus {
    /// Whether the monitor watches any pressure source (its thread also
    /// runs without one, for soft limits).
    pub running: bool,
    /// The sources watched.
    pub sources: Vec<ArmedSource>,
    /// Why sources were not armed, or went away.
    pub notes: Vec<String>,
    /// Pressure signals seen (after coalescing per wake-up).
    pub events: u64,
    /// Consecutive windows with pressure now.
    pub streak: u32,
    /// Shrinks per trigger (every shrink of the manager, the monitor's and
    /// everyone else's).
    pub shrinks: BTreeMap<String, u64>,
    /// Bytes freed by all shrinks.
    pub freed_bytes: u64,
    /// The last shrinks, oldest first.
    pub recent: Vec<ShrinkRecord>,
}

#[derive(Debug, Default)]
struct Shared {
    running: bool,
    sources: Vec<ArmedSource>,
    notes: Vec<String>,
    events: u64,
    streak: u32,
}

enum Control {
    SetTrigger(String, mpsc::Sender<Result<Vec<SourceInfo>, String>>),
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

type ControlChannel = Mailbox<Control>;

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

    /// Shrinks under `trigger` (recorded in the manager's shrink log);
    /// returns the record.
    pub fn shrink(&self, trigger: &str, request: &ShrinkRequest) -> ShrinkRecord {
        self.bm.shrink_recorded(trigger, request).1
    }

    /// What the monitor knows now, with the manager's shrink log.
    pub fn status(&self) -> MonitorStatus {
        let log = self.bm.shrink_log();
        let s = lock(&self.shared);
        MonitorStatus {
            running: s.running,
            sources: s.sources.clone(),
            notes: s.notes.clone(),
            events: s.events,
            streak: s.streak,
            shrinks: log.shrinks,
            freed_bytes: log.freed_bytes,
            recent: log.recent,
        }
    }

    /// Re-arms every PSI trigger with `trigger`; each keeps its old one if
    /// the new one is refused. The PSI sources now.
    pub fn set_trigger(&self, trigger: &str) -> Result<Vec<SourceInfo>, String> {
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

    /// Feeds the policy one medium signal, as if a source had fired.
    pub fn inject(&self) -> Result<(), String> {
        let control = self
            .control
            .as_ref()
            .filter(|_| lock(&self.shared).running)
            .ok_or("the pressure monitor watches no source (--pressure-source none)")?;
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
    /// Starts watching. `SourceChoice::None` watches nothing, but the
    /// thread still keeps VMs under their soft limits.
    pub fn start(bm: BufferManager, cfg: MonitorConfig) -> io::Result<Self> {
        let own = CgroupMembership::of_this_process();
        let (sources, notes) = if cfg.source == SourceChoice::None {
            log::info!(
                "pressure monitor: no pressure source (--pressure-source none); soft limits, quotas and admin requests still shrink"
            );
            (Vec::new(), Vec::new())
        } else {
            open_sources(&cfg, &own.cgroups)
        };
        let follow = matches!(cfg.source, SourceChoice::Auto | SourceChoice::Cgroup).then_some(own);
        Self::start_inner(bm, cfg, sources, notes, follow)
    }

    /// Starts watching given sources (tests inject signals through one);
    /// the own cgroup is not followed.
    pub fn start_with_sources(
        bm: BufferManager,
        cfg: MonitorConfig,
        sources: Vec<Box<dyn PressureSource>>,
        notes: Vec<String>,
    ) -> io::Result<Self> {
        Self::start_inner(bm, cfg, sources, notes, None)
    }

    fn start_inner(
        bm: BufferManager,
        cfg: MonitorConfig,
        sources: Vec<Box<dyn PressureSource>>,
        notes: Vec<String>,
        follow: Option<CgroupMembership>,
    ) -> io::Result<Self> {
        let mut handle = MonitorHandle::without_monitor(bm);
        let control = Arc::new(ControlChannel::new()?);
        handle.control = Some(control.clone());
        let now = Instant::now();
        let watched: Vec<Watched> = sources
            .into_iter()
            .map(|source| Watched {
                next_poll: source.poll_every().map(|_| now),
                signals: 0,
                source,
            })
            .collect();
        {
            let mut s = lock(&handle.shared);
            s.running = !watched.is_empty();
            s.notes = notes.clone();
            s.sources = watched.iter().map(Watched::armed).collect();
        }
        if cfg.source != SourceChoice::None {
            log_armed(&watched, &notes);
        }
        let worker = Worker {
            handle: handle.clone(),
            control,
            sources: watched,
            cfg: cfg.clone(),
            policy: PressurePolicy::new(cfg.policy),
            soft_backoff: HashMap::new(),
            next_tick: now,
            follow,
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

fn log_armed(sources: &[Watched], notes: &[String]) {
    if sources.is_empty() {
        log::warn!("pressure monitor: no source could be armed; only soft limits and admin requests shrink");
    } else {
        log::info!(
            "pressure monitor: watching {} source{}:",
            sources.len(),
            if sources.len() == 1 { "" } else { "s" }
        );
        for w in sources {
            log::info!("  - {}", w.source.describe());
        }
    }
    for n in notes {
        log::info!("pressure monitor: not watching {n}");
    }
}

/// Which cgroups this process is in: `/proc/self/cgroup` as read (to see
/// a move cheaply) and what it means.
#[derive(Debug, Clone)]
struct CgroupMembership {
    text: String,
    cgroups: OwnCgroups,
}

impl CgroupMembership {
    fn of_this_process() -> Self {
        Self {
            text: std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            cgroups: OwnCgroups::of_this_process(),
        }
    }
}

/// Whether a source watches the own cgroup (and goes when the daemon is
/// moved to another).
fn is_cgroup_source(info: &SourceInfo) -> bool {
    info.kind.starts_with("cgroup")
}

/// The own cgroup in words, for the log.
fn cgroup_words(c: &OwnCgroups) -> String {
    match (&c.v2, &c.v1_memory) {
        (Some(v2), Some(v1)) => format!("{} (v1 memory {})", v2.display(), v1.display()),
        (Some(v2), None) => v2.display().to_string(),
        (None, Some(v1)) => format!("v1 memory {}", v1.display()),
        (None, None) => "no memory cgroup".into(),
    }
}

/// Opens every source `cfg` asks for that exists here; notes say why the
/// others were not armed.
fn open_sources(
    cfg: &MonitorConfig,
    own: &OwnCgroups,
) -> (Vec<Box<dyn PressureSource>>, Vec<String>) {
    let mut sources: Vec<Box<dyn PressureSource>> = Vec::new();
    let mut notes = Vec::new();
    let want = |c: SourceChoice| cfg.source == SourceChoice::Auto || cfg.source == c;
    if want(SourceChoice::Systemd) {
        match PsiSource::from_systemd_env() {
            Ok(Some(s)) => sources.push(Box::new(s)),
            Ok(None) => {
                if cfg.source == SourceChoice::Systemd {
                    notes.push("systemd's pressure file: $MEMORY_PRESSURE_WATCH is not set".into());
                }
            }
            Err(e) => notes.push(format!("systemd's pressure file: {e}")),
        }
    }
    if want(SourceChoice::Cgroup) {
        open_cgroup_sources(cfg, own, &mut sources, &mut notes);
    }
    let mut host_psi = false;
    let watched = |path: &str, sources: &[Box<dyn PressureSource>]| {
        sources.iter().any(|s| s.info().path == path)
    };
    if want(SourceChoice::System) && watched("/proc/pressure/memory", &sources) {
        host_psi = true;
        notes.push("the host's PSI a second time: systemd's pressure file is the host's".into());
    } else if want(SourceChoice::System) {
        match PsiSource::system(&cfg.trigger) {
            Ok(s) => {
                host_psi = true;
                sources.push(Box::new(s));
            }
            Err(e) => notes.push(format!("the host's PSI: {e}")),
        }
    }
    let meminfo = match cfg.source {
        SourceChoice::Meminfo => true,
        SourceChoice::Auto => cfg.low_watermark.is_some() || !host_psi,
        _ => false,
    };
    if sources.is_empty() && !meminfo {
        notes.push(
            "falling back to polling /proc/meminfo MemAvailable: nothing else could be armed"
                .into(),
        );
    }
    if meminfo || sources.is_empty() {
        let watermark = cfg
            .low_watermark
            .unwrap_or_else(MeminfoSource::default_watermark);
        sources.push(Box::new(MeminfoSource::new(watermark, cfg.poll)));
    } else if cfg.source == SourceChoice::Auto {
        notes.push(
            "the host's MemAvailable: PSI covers the host (set --low-watermark to watch it too)"
                .into(),
        );
    }
    (sources, notes)
}

/// The daemon's own cgroup's sources: v1 levels and watermark, v2 events
/// and watermark, the cgroup's PSI.
pub fn open_cgroup_sources(
    cfg: &MonitorConfig,
    own: &OwnCgroups,
    sources: &mut Vec<Box<dyn PressureSource>>,
    notes: &mut Vec<String>,
) {
    match &own.v1_memory {
        Some(dir) => {
            for level in [Level::Low, Level::Medium, Level::Critical] {
                match V1PressureLevel::open(dir, level) {
                    Ok(s) => sources.push(Box::new(s)),
                    Err(e) => notes.push(format!(
                        "the own cgroup's (v1) {} pressure level: {}: {e}",
                        level.name(),
                        dir.display()
                    )),
                }
            }
            if cfg.cgroup_watermark > 0 {
                match V1Watermark::open(dir, cfg.cgroup_watermark) {
                    Ok(s) => sources.push(Box::new(s)),
                    Err(e) => notes.push(format!(
                        "the own cgroup's (v1) watermark: {}: {e}",
                        dir.display()
                    )),
                }
            }
        }
        None => notes.push("a cgroup-v1 memory controller: not mounted here".into()),
    }
    match &own.v2 {
        Some(dir) if dir.join("memory.events").exists() => {
            match V2Events::open(dir) {
                Ok(s) => sources.push(Box::new(s)),
                Err(e) => notes.push(format!(
                    "the own cgroup's (v2) memory.events: {}: {e}",
                    dir.display()
                )),
            }
            if cfg.cgroup_watermark > 0 {
                match V2Watermark::open(dir, cfg.cgroup_watermark, cfg.poll) {
                    Ok(s) => sources.push(Box::new(s)),
                    Err(e) => notes.push(format!(
                        "the own cgroup's (v2) watermark: {}: {e}",
                        dir.display()
                    )),
                }
            }
        }
        Some(dir) => notes.push(format!(
            "the own cgroup's (v2) memory events: {} has no memory.events (no memory controller for it)",
            dir.display()
        )),
        None => notes.push("cgroup v2: not mounted here".into()),
    }
    match own.v2.as_deref().map(|d| d.join("memory.pressure")) {
        Some(_) if own.v2_is_root => notes.push(
            "the own cgroup's PSI: the daemon runs in the root cgroup, whose PSI is the host's"
                .into(),
        ),
        Some(path) if path.exists() => match PsiSource::open("cgroup-psi", &path, &cfg.trigger) {
            Ok(s) => sources.push(Box::new(s)),
            Err(e) => notes.push(format!("the own cgroup's PSI: {e}")),
        },
        Some(path) => notes.push(format!(
            "the own cgroup's PSI: {} does not exist (the root cgroup's is the host's)",
            path.display()
        )),
        None => {}
    }
}

struct Watched {
    source: Box<dyn PressureSource>,
    next_poll: Option<Instant>,
    signals: u64,
}

impl Watched {
    fn armed(&self) -> ArmedSource {
        ArmedSource {
            info: self.source.info(),
            description: self.source.describe(),
            signals: self.signals,
        }
    }
}

struct Worker {
    handle: MonitorHandle,
    control: Arc<ControlChannel>,
    sources: Vec<Watched>,
    cfg: MonitorConfig,
    policy: PressurePolicy,
    soft_backoff: HashMap<OwnerId, Backoff>,
    next_tick: Instant,
    /// The cgroups the cgroup sources watch, when the own cgroup is
    /// followed.
    follow: Option<CgroupMembership>,
}

/// Run by the monitor thread at every wake-up (the daemon's sandbox
/// narrows the thread's system calls with it).
static THREAD_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Has the monitor thread call `hook` at every wake-up (set once).
pub fn on_monitor_thread(hook: fn()) {
    let _ = THREAD_HOOK.set(hook);
}

impl Worker {
    fn run(mut self) {
        loop {
            if let Some(hook) = THREAD_HOOK.get() {
                hook();
            }
            match self.wait() {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    log::warn!("pressure monitor: poll failed: {e}");
                    std::thread::sleep(self.cfg.tick);
                }
            }
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + self.cfg.tick;
                if self.policy.on_tick(now) {
                    lock(&self.handle.shared).streak = 0;
                }
                self.follow_cgroup_move();
                self.maintain();
                self.enforce_soft_limits();
            }
        }
    }

    /// Waits for a source, the control channel or the next due time, and
    /// acts on what it finds. True when asked to stop.
    fn wait(&mut self) -> io::Result<bool> {
        let now = Instant::now();
        let due = self
            .sources
            .iter()
            .filter_map(|w| w.next_poll)
            .chain(std::iter::once(self.next_tick))
            .min()
            .unwrap_or(self.next_tick);
        let timeout = due.saturating_duration_since(now);
        let mut fds = vec![PollFd::from_borrowed_fd(self.control.fd(), PollFlags::IN)];
        let mut which = Vec::new();
        for (i, w) in self.sources.iter().enumerate() {
            if let Some((fd, flags)) = w.source.poll_fd() {
                fds.push(PollFd::from_borrowed_fd(fd, flags));
                which.push(i);
            }
        }
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let control_ready = !fds[0].revents().is_empty();
        let mut ready = vec![PollFlags::empty(); self.sources.len()];
        for (pfd, &i) in fds[1..].iter().zip(&which) {
            ready[i] = pfd.revents();
        }
        drop(fds);
        if control_ready && self.control_messages() {
            return Ok(true);
        }
        let now = Instant::now();
        let mut strongest: Option<(Level, String)> = None;
        let mut gone = Vec::new();
        for (i, w) in self.sources.iter_mut().enumerate() {
            let polled_due = w.next_poll.is_some_and(|t| t <= now);
            if ready[i].is_empty() && !polled_due {
                continue;
            }
            if polled_due {
                w.next_poll = w.source.poll_every().map(|p| now + p);
            }
            let check = if ready[i].intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
                // Whatever the source says, polling it again would spin.
                Ok(Check::Gone)
            } else {
                w.source.check(ready[i])
            };
            match check {
                Ok(Check::Signal(level)) => {
                    w.signals += 1;
                    if strongest.as_ref().is_none_or(|(l, _)| level > *l) {
                        strongest = Some((level, w.source.info().kind));
                    }
                }
                Ok(Check::Quiet) => {}
                Ok(Check::Gone) => gone.push((i, "it went away".to_string())),
                Err(e) => gone.push((i, e.to_string())),
            }
        }
        self.drop_sources(gone);
        if let Some((level, kind)) = strongest {
            self.on_signal(level, &kind);
        }
        Ok(false)
    }

    /// Handles queued control messages; true on Stop.
    fn control_messages(&mut self) -> bool {
        for c in self.control.drain() {
            match c {
                Control::Stop => return true,
                Control::Inject => self.on_signal(Level::Medium, "injected"),
                Control::SetTrigger(t, reply) => {
                    let _ = reply.send(self.set_trigger(&t));
                }
            }
        }
        false
    }

    fn set_trigger(&mut self, trigger: &str) -> Result<Vec<SourceInfo>, String> {
        let mut psi = Vec::new();
        let mut errors = Vec::new();
        for w in &mut self.sources {
            match w.source.set_trigger(trigger) {
                Some(Ok(())) => psi.push(w.source.info()),
                Some(Err(e)) => errors.push(e.to_string()),
                None => {}
            }
        }
        self.publish_sources();
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        if psi.is_empty() {
            return Err("no PSI trigger is armed".into());
        }
        self.cfg.trigger = trigger.to_string();
        log::info!("pressure monitor: PSI trigger now {trigger:?}");
        Ok(psi)
    }

    fn drop_sources(&mut self, gone: Vec<(usize, String)>) {
        if gone.is_empty() {
            return;
        }
        let mut notes = Vec::new();
        for (i, why) in gone.into_iter().rev() {
            let w = self.sources.remove(i);
            let note = format!("{} ({}): {why}", w.source.info().kind, w.source.info().path);
            log::warn!("pressure monitor: stopped watching {note}");
            notes.push(note);
        }
        let has_meminfo = self
            .sources
            .iter()
            .any(|w| w.source.info().kind == "meminfo");
        if !has_meminfo && !self.sources.iter().any(|w| w.source.info().kind == "psi") {
            let watermark = self
                .cfg
                .low_watermark
                .unwrap_or_else(MeminfoSource::default_watermark);
            let source = MeminfoSource::new(watermark, self.cfg.poll);
            log::info!("pressure monitor: now also watching {}", source.describe());
            notes.push("falling back to polling /proc/meminfo MemAvailable".into());
            self.sources.push(Watched {
                next_poll: Some(Instant::now()),
                signals: 0,
                source: Box::new(source),
            });
        }
        lock(&self.handle.shared).notes.extend(notes);
        self.publish_sources();
    }

    /// When the daemon was moved to another cgroup since the cgroup
    /// sources were opened, watches the new cgroup's instead.
    fn follow_cgroup_move(&mut self) {
        let Some(before) = &self.follow else { return };
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if text == before.text {
            return;
        }
        let now = CgroupMembership::of_this_process();
        if now.cgroups == before.cgroups {
            self.follow = Some(now);
            return;
        }
        let from = cgroup_words(&before.cgroups);
        let to = cgroup_words(&now.cgroups);
        let old = self.sources.len();
        self.sources.retain(|w| !is_cgroup_source(&w.source.info()));
        let dropped = old - self.sources.len();
        let mut fresh = Vec::new();
        let mut notes = Vec::new();
        open_cgroup_sources(&self.cfg, &now.cgroups, &mut fresh, &mut notes);
        log::info!(
            "pressure monitor: the daemon was moved from cgroup {from} to {to} (as libvirt moves \
             its helpers into the VM's): {dropped} sources of the old cgroup dropped, {} of the \
             new one watched",
            fresh.len()
        );
        for n in &notes {
            log::info!("pressure monitor: not watching {n}");
        }
        let at = Instant::now();
        self.sources.extend(fresh.into_iter().map(|source| Watched {
            next_poll: source.poll_every().map(|_| at),
            signals: 0,
            source,
        }));
        {
            let mut shared = lock(&self.handle.shared);
            shared
                .notes
                .push(format!("moved from cgroup {from} to {to}"));
            shared.notes.extend(notes);
        }
        self.follow = Some(now);
        self.publish_sources();
    }

    fn publish_sources(&self) {
        lock(&self.handle.shared).sources = self.sources.iter().map(Watched::armed).collect();
    }

    fn maintain(&mut self) {
        let mut gone = Vec::new();
        for (i, w) in self.sources.iter_mut().enumerate() {
            if let Err(e) = w.source.maintain() {
                gone.push((i, e.to_string()));
            }
        }
        self.drop_sources(gone);
        self.publish_sources();
    }

    fn on_signal(&mut self, level: Level, trigger: &str) {
        let bm = &self.handle.bm;
        let usage = bm.usage(bm.root()).unwrap_or_default();
        let stall = self.sources.iter().find_map(|w| w.source.level());
        let decision =
            self.policy
                .on_signal(Instant::now(), level, usage.charged, usage.purgeable, stall);
        {
            let mut s = lock(&self.handle.shared);
            s.events += 1;
            s.streak = self.policy.streak();
        }
        let Some(d) = decision else {
            return;
        };
        let request = match d.mode {
            None => ShrinkRequest {
                purge_only: true,
                ..ShrinkRequest::new(d.target, ShrinkMode::Lazy)
            },
            Some(mode) => ShrinkRequest::new(d.target, mode),
        };
        bm.shrink_as(trigger, &request);
    }

    /// Shrinks every VM whose measured memory (resident objects and
    /// scratch files) is over its soft limit back under it. A VM that
    /// could not be brought under (nothing purgeable, no swap to write back
    /// to) is retried with an exponential back-off instead of every tick.
    fn enforce_soft_limits(&mut self) {
        let bm = self.handle.bm.clone();
        let limited = bm.soft_limited_owners();
        // Charged bytes bound what is resident: only owners charged above
        // their limit are measured.
        let now = Instant::now();
        let mut over = Vec::new();
        for (owner, name, charged, limit) in &limited {
            // Measuring walks the VM's buffers: not while backing off.
            let purgeable = bm.usage(*owner).map_or(0, |u| u.purgeable);
            let waiting = self
                .soft_backoff
                .get(owner)
                .is_some_and(|b| b.next > now && purgeable <= b.purgeable);
            if charged <= limit || waiting {
                continue;
            }
            let resident = bm.resident_bytes(*owner).unwrap_or(0);
            match soft_limit_excess(&[(*owner, resident, Some(*limit))]).pop() {
                Some((_, excess)) => over.push((*owner, name.clone(), *limit, excess)),
                // Charged above the limit but not that much in RAM: look
                // again after a while rather than every tick.
                None => {
                    self.soft_backoff.insert(
                        *owner,
                        Backoff {
                            next: now + SOFT_LIMIT_RETRY_MIN,
                            delay: Duration::ZERO,
                            purgeable,
                        },
                    );
                }
            }
        }
        self.soft_backoff.retain(|id, b| {
            over.iter().any(|(o, ..)| o == id)
                || (b.next > now && limited.iter().any(|l| l.0 == *id))
        });
        for (owner, name, limit, excess) in over {
            let report = bm.shrink_as(
                &format!("soft-limit:{name}"),
                &ShrinkRequest {
                    owner: Some(owner),
                    ..ShrinkRequest::new(excess, ShrinkMode::Writeback)
                },
            );
            let resident_now = bm.resident_bytes(owner).unwrap_or(0);
            if resident_now > limit && report.counted() < excess {
                let delay = self
                    .soft_backoff
                    .get(&owner)
                    .filter(|b| !b.delay.is_zero())
                    .map_or(SOFT_LIMIT_RETRY_MIN, |b| {
                        (b.delay * 2).min(SOFT_LIMIT_RETRY_MAX)
                    });
                log::warn!(
                    "{name} stays {} B over its soft limit (nothing more to purge or write back); retrying in {delay:?}",
                    resident_now - limit
                );
                self.soft_backoff.insert(
                    owner,
                    Backoff {
                        next: now + delay,
                        delay,
                        purgeable: bm.usage(owner).map_or(0, |u| u.purgeable),
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
    /// The owner's purgeable bytes when it was set: new DONTNEED buffers
    /// end the wait (they are the cheapest memory to give back).
    purgeable: u64,
}
