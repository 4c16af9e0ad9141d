//! `vgpu-squeeze`'s scenarios: the real daemon under a real memory
//! squeeze, with its pressure monitor and without, and how fast it gives
//! memory back.
//!
//! A guest (this harness, over the real vhost-user socket) creates blobs,
//! fills them through the host-visible mapping and marks part of them
//! DONTNEED; then something squeezes memory:
//!
//! * [`Scenario::Cgroup`] — the daemon, the "VMM" (this process) and page-
//!   cache readers share a cgroup-v1 memory cgroup with a hard limit; the
//!   readers fill it. *Onset* is the cgroup's first failed charge.
//! * [`Scenario::Persist`] — the same with a reader file larger than the
//!   limit, so the squeeze outlasts the purge: shows the escalation.
//! * [`Scenario::V2`] — the same in a cgroup-v2 leaf (`memory.max`); onset
//!   is the first `max` event. Needs a v2 memory controller.
//! * [`Scenario::Host`] — no cgroup limit: a hog allocates anonymous
//!   memory until the host's MemAvailable is down to the daemon's low
//!   watermark. Onset is MemAvailable crossing it.
//!
//! *Purged* is the end of the shrink that brought the purged bytes to at
//! least 95 % of the purgeable ones, from the daemon's own shrink records;
//! a purge that finishes before the onset counts as 0 ms (nothing had to
//! wait for it). Every run does the scenario with the monitor (`auto`) and
//! without (`none`), so the stall and failed-charge figures are ratios
//! within one run.

pub mod cgroup;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vgpu_device::admin::protocol::{PressureReply, ShrinkRow, StatsReply};
use vgpu_device::admin::{AdminClient, Request};
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::Response;

use crate::backend::RunningBackend;
use crate::bench::stats::{quantile, ratio, Ratio};
use crate::cmd::*;
use crate::vmm::{Vmm, VmmOptions};
use cgroup::{Memcg, Version};

const MIB: u64 = 1 << 20;
const BLOB: u64 = 4 * MIB;
/// Longer than PSI's 2 s averaging period, after which `total=` is current.
const PSI_SETTLE: Duration = Duration::from_millis(2200);

/// The reaction-time goal: median onset → purged.
pub const GOAL_P50_MS: u64 = 100;
/// The reaction-time goal: slowest run.
pub const GOAL_WORST_MS: u64 = 500;

/// What squeezes memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A cgroup-v1 memory cgroup filled by page-cache readers.
    Cgroup,
    /// As `cgroup`, with a squeeze that outlasts the purge.
    Persist,
    /// A cgroup-v2 leaf filled by page-cache readers.
    V2,
    /// The whole host: MemAvailable down to the low watermark.
    Host,
}

impl Scenario {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cgroup => "cgroup",
            Scenario::Persist => "persist",
            Scenario::V2 => "v2",
            Scenario::Host => "host",
        }
    }
}

/// The set-up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon binary.
    pub daemon: PathBuf,
    /// This binary (for the hogs).
    pub hog_binary: PathBuf,
    /// Scratch directory (hog file, counters).
    pub work: PathBuf,
    /// Cgroup limit.
    pub limit: u64,
    /// DONTNEED bytes the daemon holds.
    pub purgeable: u64,
    /// WILLNEED bytes the daemon holds.
    pub willneed: u64,
    /// The page-cache readers' file.
    pub hog_file: u64,
    /// Page-cache readers.
    pub hogs: u64,
    /// How long each squeeze lasts.
    pub squeeze: Duration,
    /// PSI trigger for the daemon (its default if `None`).
    pub trigger: Option<String>,
    /// The host scenario's low watermark (`None`: 5 % of RAM).
    pub host_watermark: Option<u64>,
    /// Extra arguments for the daemon with its monitor.
    pub daemon_args: Vec<String>,
}

/// One scenario, once, with or without the monitor.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Monitor on.
    pub monitor: bool,
    /// Squeeze start → onset.
    pub onset_ms: Option<u64>,
    /// Squeeze start → ≥ 95 % purged.
    pub purged_ms: Option<u64>,
    /// Purged / purgeable, percent.
    pub purged_pct: f64,
    /// Shared memory charged to the cgroup at the end.
    pub shmem_end: u64,
    /// Memory stall during the squeeze, ms.
    pub stall_ms: u64,
    /// Failed charges during the squeeze.
    pub failed_charges: u64,
    /// Hog read throughput, MiB/s (the host scenario: MiB the filler holds).
    pub hog_mib_s: u64,
    /// The shrinks during the squeeze, with their start in ms from it.
    pub shrinks: Vec<(i64, ShrinkRow)>,
}

impl Outcome {
    /// Onset → ≥ 95 % purged (0 if the purge was done first; `None` if
    /// it never happened).
    pub fn reaction_ms(&self) -> Option<u64> {
        let purged = self.purged_ms?;
        Some(match self.onset_ms {
            Some(onset) => purged.saturating_sub(onset),
            None => 0,
        })
    }

    /// Whether the monitor escalated (a Writeback shrink).
    pub fn escalated(&self) -> bool {
        self.shrinks.iter().any(|(_, r)| r.mode == "writeback")
    }
}

/// Both halves of one run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The scenario.
    pub scenario: Scenario,
    /// With the monitor.
    pub with: Outcome,
    /// Without it (the baseline).
    pub without: Outcome,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A file of `size` bytes, not in the page cache.
pub fn make_file(path: &Path, size: u64) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    let chunk = vec![0x5au8; MIB as usize];
    for _ in 0..size / MIB {
        f.write_all(&chunk)?;
    }
    f.sync_all()?;
    drop_cache(path)
}

fn drop_cache(path: &Path) -> io::Result<()> {
    let f = fs::File::open(path)?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// `MemAvailable` in bytes.
pub fn mem_available() -> u64 {
    vgpu_backend::pressure::meminfo_field(Path::new("/proc/meminfo"), "MemAvailable:").unwrap_or(0)
}

/// Runs `scenario` with and without the monitor.
pub fn run(o: &Options, scenario: Scenario) -> io::Result<Run> {
    let with = half(o, scenario, true)?;
    let without = half(o, scenario, false)?;
    Ok(Run {
        scenario,
        with,
        without,
    })
}

/// The daemon, the guest's blobs, and the admin client.
struct Rig {
    backend: RunningBackend,
    vmm: Vmm,
    admin: AdminClient,
    purgeable: u64,
}

fn start(o: &Options, monitor: bool, memcg: Option<&Memcg>, extra: &[&str]) -> io::Result<Rig> {
    let source = if monitor { "auto" } else { "none" };
    let cmdline = format!(
        "{} --socket-path {{sock}} --pressure-source {source} --exit-on-disconnect",
        o.daemon.display()
    );
    let mut args: Vec<&str> = extra.to_vec();
    if let Some(t) = &o.trigger {
        args.extend(["--pressure-trigger", t]);
    }
    if monitor {
        args.extend(o.daemon_args.iter().map(String::as_str));
    }
    let log = o.work.join("daemon.log");
    let backend = match memcg {
        Some(cg) => {
            // The daemon arms its sources on the cgroup it starts in, and
            // the "VMM" (this process) faults the blobs' pages: both in it.
            cg.add(std::process::id())?;
            RunningBackend::command_in_cgroup(&cmdline, &args, Some(&log), &cg.procs())?
        }
        None => RunningBackend::command_logged(&cmdline, &args, Some(&log))?,
    };
    let admin_path = PathBuf::from(format!("{}.admin", backend.socket().display()));
    wait_path(&admin_path)?;
    let mut vmm = Vmm::connect(backend.socket(), VmmOptions::default())?;
    let mut nc = NativeContext::create(&mut vmm, 1, 1, 0)?;
    let region = vmm
        .hostmem
        .clone()
        .ok_or_else(|| io::Error::other("no host-visible region"))?;
    let system = [MemoryClassInstance::new(I915_MEMORY_CLASS_SYSTEM, 0)];
    let n_dont = (o.purgeable / BLOB) as u32;
    let n_will = (o.willneed / BLOB) as u32;
    let fill = vec![0xa5u8; BLOB as usize];
    for i in 0..n_dont + n_will {
        let id = i + 2;
        nc.gem_blob(&mut vmm, id, id, BLOB, &system)?;
        let at = 64 * MIB;
        match vmm.command(&map_blob(id, at))?.1 {
            Response::MapInfo(_) => {}
            other => return Err(io::Error::other(format!("map: {other:?}"))),
        }
        region.write(at, &fill)?;
        ok(vmm.command(&unmap_blob(id))?.1)?;
    }
    let reqs: Vec<I915Request<'static>> = (0..n_dont)
        .map(|i| gem_madvise_resource(i + 2, I915_MADV_DONTNEED))
        .collect();
    for chunk in reqs.chunks(32) {
        ok(nc.submit(&mut vmm, chunk)?.0)?;
    }
    let mut admin = AdminClient::connect(&admin_path).map_err(io::Error::other)?;
    let stats: StatsReply = admin.call(&Request::Stats {}).map_err(io::Error::other)?;
    Ok(Rig {
        backend,
        vmm,
        admin,
        purgeable: stats.owners[0].purgeable,
    })
}

fn wait_path(p: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("{} never appeared", p.display())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A process squeezing memory.
struct Hog {
    child: Child,
    counter: PathBuf,
}

impl Hog {
    fn count(&self) -> u64 {
        fs::read_to_string(&self.counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_hog(o: &Options, args: &[&str], counter: &Path) -> io::Result<Hog> {
    fs::write(counter, "0")?;
    let child = Command::new(&o.hog_binary)
        .args(args)
        .arg(counter)
        .stdin(Stdio::null())
        .spawn()?;
    Ok(Hog {
        child,
        counter: counter.to_path_buf(),
    })
}

fn half(o: &Options, scenario: Scenario, monitor: bool) -> io::Result<Outcome> {
    let label = if monitor {
        "with monitor"
    } else {
        "without monitor"
    };
    println!("\n== {} {label}", scenario.name());
    let name = format!("vgpu-squeeze-{}", std::process::id());
    let memcg = match scenario {
        Scenario::Host => None,
        Scenario::V2 => Some(Memcg::new(Version::V2, &name, o.limit)?),
        _ => Some(Memcg::new(Version::V1, &name, o.limit)?),
    };
    let hog_file = o.work.join(format!("hog-{}.bin", scenario.name()));
    let hog_size = match scenario {
        Scenario::Persist => o.hog_file.max(o.limit + o.limit / 2),
        _ => o.hog_file,
    };
    if scenario != Scenario::Host && fs::metadata(&hog_file).map_or(true, |m| m.len() != hog_size) {
        make_file(&hog_file, hog_size)?;
    }
    // The host scenario's watermark, and the daemon told to watch it.
    let watermark = o
        .host_watermark
        .unwrap_or_else(vgpu_backend::pressure::MeminfoSource::default_watermark);
    let watermark_arg = watermark.to_string();
    let extra: Vec<&str> = match scenario {
        Scenario::Host => vec!["--low-watermark", &watermark_arg],
        _ => vec![],
    };
    let mut rig = start(o, monitor, memcg.as_ref(), &extra)?;
    let purgeable = rig.purgeable;
    println!(
        "daemon holds {} MiB purgeable{}",
        purgeable >> 20,
        memcg.as_ref().map_or_else(String::new, |cg| format!(
            "; cgroup shmem {} MiB",
            cg.shmem() >> 20
        ))
    );
    // PSI's cumulative totals are folded in every 2 s: let them settle.
    std::thread::sleep(PSI_SETTLE);
    let failed0 = memcg.as_ref().map_or(0, Memcg::failed_charges);
    let stall_of = |cg: Option<&Memcg>| {
        cg.map_or_else(
            || cgroup::psi_some_total(Path::new("/proc/pressure/memory")),
            Memcg::stall_us,
        )
    };
    let stall0 = stall_of(memcg.as_ref());
    let records0 = recent(&mut rig.admin)?.len();
    let mut hogs = Vec::new();
    let started_us = now_us();
    let started = Instant::now();
    match (&memcg, scenario) {
        (Some(cg), _) => {
            drop_cache(&hog_file)?;
            for i in 0..o.hogs {
                let counter = o.work.join(format!("hog-{monitor}-{i}.count"));
                let procs = cg.procs();
                let args = [
                    "--hog",
                    hog_file.to_str().unwrap_or_default(),
                    procs.to_str().unwrap_or_default(),
                ];
                hogs.push(spawn_hog(o, &args, &counter)?);
            }
        }
        (None, _) => {
            let counter = o.work.join(format!("fill-{monitor}.count"));
            hogs.push(spawn_hog(o, &["--fill", &watermark_arg], &counter)?);
        }
    }
    let mut onset: Option<u64> = None;
    let mut purged: Option<u64> = None;
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    // The host scenario's squeeze lasts `squeeze` from the onset (filling
    // the host takes a while), at most two minutes in all.
    let squeezing = |onset: Option<u64>| match (scenario, onset) {
        (Scenario::Host, None) => started.elapsed() < Duration::from_secs(120),
        (Scenario::Host, Some(t)) => now_us().saturating_sub(t) < o.squeeze.as_micros() as u64,
        _ => started.elapsed() < o.squeeze,
    };
    while squeezing(onset) {
        if onset.is_none() {
            let crossed = match &memcg {
                Some(cg) => cg.failed_charges() > failed0,
                None => mem_available() < watermark,
            };
            if crossed {
                onset = Some(now_us());
            }
        }
        if monitor && purged.is_none() && last_poll.elapsed() >= Duration::from_millis(5) {
            last_poll = Instant::now();
            let r = recent(&mut rig.admin)?;
            let mut sum = 0;
            for row in r.iter().skip(records0) {
                sum += row.purged_bytes;
                if sum * 100 >= purgeable * 95 {
                    purged = Some(row.at_unix_ms * 1000 + row.duration_us);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let hog_bytes: u64 = hogs.iter().map(Hog::count).sum();
    drop(hogs);
    let shrinks: Vec<(i64, ShrinkRow)> = recent(&mut rig.admin)?
        .into_iter()
        .skip(records0)
        .map(|r| ((r.at_unix_ms as i64) - (started_us / 1000) as i64, r))
        .collect();
    let stats: StatsReply = rig
        .admin
        .call(&Request::Stats {})
        .map_err(io::Error::other)?;
    let purged_bytes = stats.owners[0].purged_bytes;
    let shmem_end = memcg.as_ref().map_or(0, Memcg::shmem);
    let failed_charges = memcg
        .as_ref()
        .map_or(0, |cg| cg.failed_charges().saturating_sub(failed0));
    std::thread::sleep(PSI_SETTLE);
    let stall_ms = stall_of(memcg.as_ref()).saturating_sub(stall0) / 1000;
    let since = |t: u64| (t.saturating_sub(started_us)) / 1000;
    let out = Outcome {
        monitor,
        onset_ms: onset.map(since),
        purged_ms: purged.map(since),
        purged_pct: if purgeable == 0 {
            0.0
        } else {
            purged_bytes as f64 * 100.0 / purgeable as f64
        },
        shmem_end,
        stall_ms,
        failed_charges,
        hog_mib_s: match scenario {
            // The filler's figure is what it holds, not a rate.
            Scenario::Host => hog_bytes / MIB,
            _ => (hog_bytes as f64 / o.squeeze.as_secs_f64() / MIB as f64) as u64,
        },
        shrinks,
    };
    print_half(&out, scenario);
    rig.vmm.disconnect();
    drop(rig.backend);
    drop(memcg);
    Ok(out)
}

fn recent(admin: &mut AdminClient) -> io::Result<Vec<ShrinkRow>> {
    let p: PressureReply = admin
        .call(&Request::Pressure {
            trigger: None,
            inject: false,
        })
        .map_err(io::Error::other)?;
    Ok(p.recent)
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v} ms"))
}

fn print_half(o: &Outcome, scenario: Scenario) {
    let onset_word = match scenario {
        Scenario::Host => "MemAvailable below the watermark",
        Scenario::V2 => "first max event",
        _ => "first failed charge",
    };
    println!(
        "{onset_word} at {}; >= 95 % purged at {}; reaction {}",
        ms(o.onset_ms),
        ms(o.purged_ms),
        match (o.monitor, o.reaction_ms(), o.onset_ms) {
            (false, _, _) => "- (no monitor)".to_string(),
            (true, Some(r), Some(_)) => format!("{r} ms"),
            (true, Some(_), None) => "0 ms (purged before any onset)".to_string(),
            (true, None, _) => "never".to_string(),
        }
    );
    let hogs = match scenario {
        Scenario::Host => format!("the filler holds {} MiB", o.hog_mib_s),
        _ => format!("readers {} MiB/s", o.hog_mib_s),
    };
    println!(
        "purged {:.1} % of the purgeable bytes; cgroup shmem at the end {} MiB; stall {} ms; failed charges {}; {hogs}",
        o.purged_pct,
        o.shmem_end >> 20,
        o.stall_ms,
        o.failed_charges,
    );
    for (at, r) in o.shrinks.iter().take(12) {
        println!(
            "  shrink at {at:+} ms: {} {} target {} purged {} MiB hinted {} MiB written back {} MiB in {} us",
            r.trigger,
            r.mode,
            if r.target == u64::MAX {
                "all".into()
            } else {
                format!("{} MiB", r.target >> 20)
            },
            r.purged_bytes >> 20,
            r.hinted_bytes >> 20,
            r.written_back_bytes >> 20,
            r.duration_us
        );
    }
    if o.shrinks.len() > 12 {
        println!("  … {} more shrinks", o.shrinks.len() - 12);
    }
}

/// The summary of several runs of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Runs.
    pub runs: usize,
    /// Each run's onset → ≥ 95 % purged, ms (`None`: never).
    pub reaction_ms: Vec<Option<u64>>,
    /// Median of the runs that purged.
    pub p50_ms: Option<u64>,
    /// Slowest (`None` if any run never purged).
    pub worst_ms: Option<u64>,
    /// Runs that purged ≥ 95 % within the worst-case goal.
    pub within_goal: usize,
    /// Stall with / without the monitor.
    pub stall_ratio: Option<Ratio>,
    /// Failed charges with / without.
    pub failed_charges_ratio: Option<Ratio>,
    /// Runs in which the monitor escalated to Writeback.
    pub escalated: usize,
    /// Whether the reaction goal was met (p50 ≤ 100 ms, worst ≤ 500 ms,
    /// every run).
    pub goal_met: bool,
}

/// Sums up `runs` (of one scenario).
pub fn summarize(scenario: Scenario, runs: &[Run]) -> Summary {
    let reaction: Vec<Option<u64>> = runs.iter().map(|r| r.with.reaction_ms()).collect();
    let mut done: Vec<u64> = reaction.iter().flatten().copied().collect();
    done.sort_unstable();
    let all_done = done.len() == runs.len() && !runs.is_empty();
    let p50 = (!done.is_empty()).then(|| quantile(&done, 0.5));
    let worst = all_done.then(|| done.last().copied().unwrap_or(0));
    let within = runs
        .iter()
        .filter(|r| {
            r.with.reaction_ms().is_some_and(|ms| ms <= GOAL_WORST_MS) && r.with.purged_pct >= 95.0
        })
        .count();
    let ratios = |f: fn(&Outcome) -> u64| {
        let v: Vec<f64> = runs
            .iter()
            .filter(|r| f(&r.without) > 0)
            .map(|r| f(&r.with) as f64 / f(&r.without) as f64)
            .collect();
        ratio(&v)
    };
    Summary {
        scenario: scenario.name().into(),
        runs: runs.len(),
        reaction_ms: reaction,
        p50_ms: p50,
        worst_ms: worst,
        within_goal: within,
        stall_ratio: ratios(|o| o.stall_ms),
        failed_charges_ratio: ratios(|o| o.failed_charges),
        escalated: runs.iter().filter(|r| r.with.escalated()).count(),
        goal_met: all_done
            && p50.is_some_and(|p| p <= GOAL_P50_MS)
            && worst.is_some_and(|w| w <= GOAL_WORST_MS)
            && within == runs.len(),
    }
}

/// Prints a summary.
pub fn print_summary(s: &Summary) {
    let fmt_ratio = |r: &Option<Ratio>| {
        r.as_ref().map_or_else(
            || "-".to_string(),
            |r| format!("{:.2}x [{:.2}-{:.2}]", r.median, r.min, r.max),
        )
    };
    println!(
        "\nSUMMARY {} ({} runs): onset -> >= 95 % purged p50 {}, worst {}; {} of {} within {GOAL_WORST_MS} ms; goal p50 <= {GOAL_P50_MS} ms, worst <= {GOAL_WORST_MS} ms, every run: {}",
        s.scenario,
        s.runs,
        ms(s.p50_ms),
        ms(s.worst_ms),
        s.within_goal,
        s.runs,
        if s.goal_met { "MET" } else { "MISSED" }
    );
    println!(
        "  per run: {}",
        s.reaction_ms
            .iter()
            .map(|r| r.map_or_else(|| "never".into(), |r| format!("{r}")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  with/without the monitor: memory stall {}, failed charges {}; escalated to writeback in {} of {} runs",
        fmt_ratio(&s.stall_ratio),
        fmt_ratio(&s.failed_charges_ratio),
        s.escalated,
        s.runs
    );
}

/// Hog mode: join the cgroup, then read `file` forever, keeping the bytes
/// read in `counter`.
pub fn hog_read(file: &Path, procs: &Path, counter: &Path) -> io::Result<()> {
    fs::write(procs, std::process::id().to_string())?;
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    let mut last = Instant::now();
    loop {
        let mut f = fs::File::open(file)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if last.elapsed() > Duration::from_millis(50) {
                fs::write(counter, total.to_string())?;
                last = Instant::now();
            }
        }
    }
}

/// Fill mode: allocate anonymous memory (populated by the kernel at once)
/// until MemAvailable is at `watermark`, keep it, and keep the bytes held
/// in `counter`.
pub fn hog_fill(watermark: u64, counter: &Path) -> io::Result<()> {
    const CHUNK: u64 = 256 << 20;
    let mut held = 0u64;
    loop {
        let avail = mem_available();
        // Stop a little under the line, never far: others live here too.
        if avail < watermark.saturating_sub(32 * MIB) || avail < 256 * MIB {
            break;
        }
        let step = CHUNK
            .min(avail - watermark.saturating_sub(64 * MIB))
            .max(MIB);
        let len = usize::try_from(step).map_err(io::Error::other)?;
        // SAFETY: a fresh private anonymous mapping the kernel places and
        // populates; it is never unmapped (the process holds it until it is
        // killed) and never read as Rust data.
        unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::POPULATE,
            )?;
        }
        held += step;
        fs::write(counter, held.to_string())?;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
