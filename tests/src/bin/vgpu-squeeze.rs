//! `vgpu-squeeze`: measures the pressure monitor under a real memory
//! squeeze on this host.
//!
//! The daemon binary runs in a cgroup-v1 memory cgroup with a hard limit.
//! A guest (this harness, over the real vhost-user socket) fills blobs and
//! marks part of them DONTNEED. Then a page-cache hog starts in the same
//! cgroup, reading a file in a loop: once the cgroup is full the kernel
//! reclaims and refaults (PSI memory stalls), the daemon's trigger fires and
//! it purges. Reported: time from pressure onset (the cgroup's first failed
//! charge) to purge complete, bytes returned vs purgeable, the memory the
//! daemon holds at the end, and the hog's read throughput — each run once
//! with the monitor and once without (`--pressure-source none`) so the
//! figures are ratios within one run.
//!
//! Needs root and a cgroup-v1 memory controller (cgroup v2 has none here).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vgpu_device::admin::protocol::{PressureReply, StatsReply};
use vgpu_device::admin::{AdminClient, Request};
use vgpu_proto::native::*;
use vgpu_proto::virtio_gpu::Response;
use vgpu_tests::backend::RunningBackend;
use vgpu_tests::cmd::*;
use vgpu_tests::vmm::{Vmm, VmmOptions};

const MIB: u64 = 1 << 20;
const BLOB: u64 = 4 * MIB;
const MEMCG: &str = "/sys/fs/cgroup/memory";
/// Longer than PSI's 2 s averaging period, after which `total=` is current.
const PSI_SETTLE: Duration = Duration::from_millis(2200);

struct Options {
    limit: u64,
    purgeable: u64,
    willneed: u64,
    hog_file: u64,
    settle: Duration,
    hogs: u64,
    trigger: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hog") && args.len() == 5 {
        if let Err(e) = hog(
            Path::new(&args[2]),
            Path::new(&args[3]),
            Path::new(&args[4]),
        ) {
            eprintln!("vgpu-squeeze hog: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("vgpu-squeeze: {e}");
        std::process::exit(1);
    }
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn arg_size(name: &str, default: u64) -> io::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| io::Error::other(format!("{name} needs a value")))?;
            vgpu_device::cli::parse_size(v).map_err(io::Error::other)
        }
        None => Ok(default),
    }
}

fn run() -> io::Result<()> {
    let o = Options {
        limit: arg_size("--limit", 768 * MIB)?,
        purgeable: arg_size("--purgeable", 384 * MIB)?,
        willneed: arg_size("--willneed", 128 * MIB)?,
        hog_file: arg_size("--hog-file", 512 * MIB)?,
        settle: Duration::from_secs(arg_size("--settle-s", 12)?),
        hogs: arg_size("--hogs", 2)?,
        trigger: arg_str("--trigger")
            .unwrap_or_else(|| vgpu_backend::pressure::DEFAULT_TRIGGER.to_string()),
    };
    if !Path::new(MEMCG).join("memory.limit_in_bytes").exists() {
        return Err(io::Error::other(format!(
            "no cgroup-v1 memory controller at {MEMCG}"
        )));
    }
    let daemon = sibling("vhost-user-vgpu")?;
    let work = std::env::temp_dir().join(format!("vgpu-squeeze-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let hog_path = work.join("hog.bin");
    make_file(&hog_path, o.hog_file)?;
    println!(
        "squeeze: cgroup limit {} MiB, daemon holds {} MiB DONTNEED + {} MiB WILLNEED, {} hogs read a {} MiB file; trigger {:?}",
        o.limit >> 20,
        o.purgeable >> 20,
        o.willneed >> 20,
        o.hogs,
        o.hog_file >> 20,
        o.trigger
    );
    let with = scenario(&o, &daemon, &hog_path, &work, true)?;
    let without = scenario(&o, &daemon, &hog_path, &work, false)?;
    println!();
    println!("                         with monitor   without monitor");
    println!(
        "onset -> purge done      {:>9}      {:>9}",
        with.latency
            .map_or("-".into(), |d| format!("{} ms", d.as_millis())),
        without
            .latency
            .map_or("-".into(), |d| format!("{} ms", d.as_millis()))
    );
    println!(
        "purged / purgeable       {:>9.1} %    {:>9.1} %",
        with.returned_pct, without.returned_pct
    );
    println!(
        "daemon shmem at the end  {:>9} MiB  {:>9} MiB",
        with.shmem_end >> 20,
        without.shmem_end >> 20
    );
    println!(
        "memory stall (PSI some)  {:>9} ms   {:>9} ms    ratio {:.2}",
        with.stall_ms,
        without.stall_ms,
        with.stall_ms as f64 / without.stall_ms.max(1) as f64
    );
    println!(
        "failed cgroup charges    {:>9}      {:>9}       ratio {:.2}",
        with.failed_charges,
        without.failed_charges,
        with.failed_charges as f64 / without.failed_charges.max(1) as f64
    );
    println!(
        "hog reads                {:>9} MiB/s {:>9} MiB/s  ratio {:.2}",
        with.hog_mib_s,
        without.hog_mib_s,
        with.hog_mib_s as f64 / without.hog_mib_s.max(1) as f64
    );
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

struct Outcome {
    latency: Option<Duration>,
    returned_pct: f64,
    shmem_end: u64,
    hog_mib_s: u64,
    stall_ms: u64,
    failed_charges: u64,
}

/// Microseconds of "some" memory stall since boot, host-wide.
fn psi_some_total() -> u64 {
    fs::read_to_string("/proc/pressure/memory")
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

fn sibling(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| io::Error::other("no exe dir"))?;
    let p = dir.join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(io::Error::other(format!(
            "{} not found: build it (cargo build --release -p vgpu-device)",
            p.display()
        )))
    }
}

fn make_file(path: &Path, size: u64) -> io::Result<()> {
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

struct Memcg(PathBuf);

impl Memcg {
    fn new(name: &str, limit: u64) -> io::Result<Self> {
        let p = Path::new(MEMCG).join(name);
        let _ = fs::remove_dir(&p);
        fs::create_dir(&p)?;
        fs::write(p.join("memory.limit_in_bytes"), limit.to_string())?;
        Ok(Self(p))
    }
    fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.0.join("cgroup.procs"), pid.to_string())
    }
    fn read_u64(&self, file: &str) -> u64 {
        fs::read_to_string(self.0.join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
    fn stat(&self, key: &str) -> u64 {
        fs::read_to_string(self.0.join("memory.stat"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        // Move anything left to the root, then remove.
        if let Ok(procs) = fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = fs::write(Path::new(MEMCG).join("cgroup.procs"), pid);
            }
        }
        let _ = fs::remove_dir(&self.0);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn scenario(
    o: &Options,
    daemon: &Path,
    hog: &Path,
    work: &Path,
    monitor: bool,
) -> io::Result<Outcome> {
    let label = if monitor {
        "with monitor"
    } else {
        "without monitor"
    };
    println!("\n== {label}");
    let cg = Memcg::new(&format!("vgpu-squeeze-{}", std::process::id()), o.limit)?;
    let source = if monitor { "psi" } else { "none" };
    let backend = RunningBackend::command_with(
        &format!(
            "{} --socket-path {{sock}} --pressure-source {source} --exit-on-disconnect",
            daemon.display()
        ),
        &["--pressure-trigger", &o.trigger],
    )?;
    let pid = backend
        .pid()
        .ok_or_else(|| io::Error::other("no daemon pid"))?;
    cg.add(pid)?;
    // The "VMM" (this process) joins too: blob pages are charged to whoever
    // faults them first, and a VM's slice holds both.
    cg.add(std::process::id())?;
    let admin = PathBuf::from(format!("{}.admin", backend.socket().display()));
    wait_path(&admin)?;
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
    let mut client = AdminClient::connect(&admin).map_err(io::Error::other)?;
    let stats: StatsReply = client.call(&Request::Stats {}).map_err(io::Error::other)?;
    let purgeable = stats.owners[0].purgeable;
    println!(
        "daemon holds {} MiB ({} MiB purgeable); cgroup usage {} MiB, shmem {} MiB",
        stats.owners[0].charged >> 20,
        purgeable >> 20,
        cg.read_u64("memory.usage_in_bytes") >> 20,
        cg.stat("shmem") >> 20
    );
    // PSI's cumulative totals are folded in every 2 s: let them settle.
    std::thread::sleep(PSI_SETTLE);
    let failcnt0 = cg.read_u64("memory.failcnt");
    let stall0 = psi_some_total();
    drop_cache(hog)?;
    let mut hogs = Vec::new();
    for i in 0..o.hogs {
        let c = work.join(format!("hog-{monitor}-{i}.count"));
        fs::write(&c, "0")?;
        hogs.push((start_hog(hog, &cg, &c)?, c));
    }
    let started = Instant::now();
    let mut onset: Option<(Instant, u64)> = None;
    let mut done: Option<u64> = None;
    while started.elapsed() < o.settle {
        if onset.is_none() && cg.read_u64("memory.failcnt") > failcnt0 {
            onset = Some((Instant::now(), now_ms()));
            println!(
                "onset: cgroup full after {} ms",
                started.elapsed().as_millis()
            );
        }
        if monitor && done.is_none() {
            let p: PressureReply = client
                .call(&Request::Pressure {
                    trigger: None,
                    inject: false,
                })
                .map_err(io::Error::other)?;
            let purged: u64 = p.recent.iter().map(|r| r.purged_bytes).sum();
            if purged * 100 >= purgeable * 95 {
                let last = p.recent.iter().rev().find(|r| r.purged_bytes > 0);
                done = last.map(|r| r.at_unix_ms + r.duration_us / 1000);
                for r in &p.recent {
                    println!(
                        "shrink: {} {} target {} MiB purged {} MiB in {} us",
                        r.trigger,
                        r.mode,
                        r.target >> 20,
                        r.purged_bytes >> 20,
                        r.duration_us
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut hog_bytes = 0u64;
    for (mut child, counter) in hogs {
        hog_bytes += fs::read_to_string(&counter)?
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        let _ = child.kill();
        let _ = child.wait();
    }
    let stats: StatsReply = client.call(&Request::Stats {}).map_err(io::Error::other)?;
    let purged = stats.owners[0].purged_bytes;
    let shmem_end = cg.stat("shmem");
    let latency = match (onset, done) {
        (Some((_, t0)), Some(t1)) => Some(Duration::from_millis(t1.saturating_sub(t0))),
        _ => None,
    };
    std::thread::sleep(PSI_SETTLE);
    let stall_ms = psi_some_total().saturating_sub(stall0) / 1000;
    let failed_charges = cg.read_u64("memory.failcnt") - failcnt0;
    let out = Outcome {
        stall_ms,
        failed_charges,
        latency,
        returned_pct: if purgeable == 0 {
            0.0
        } else {
            purged as f64 * 100.0 / purgeable as f64
        },
        shmem_end,
        hog_mib_s: (hog_bytes as f64 / o.settle.as_secs_f64() / MIB as f64) as u64,
    };
    println!(
        "purged {} of {} MiB purgeable; daemon shmem now {} MiB; failcnt +{}; psi {}",
        purged >> 20,
        purgeable >> 20,
        shmem_end >> 20,
        cg.read_u64("memory.failcnt") - failcnt0,
        fs::read_to_string("/proc/pressure/memory")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
    );
    vmm.disconnect();
    drop(backend);
    Ok(out)
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

/// This binary in hog mode, inside the cgroup: reads `file` in a loop and
/// keeps the count of bytes read in `counter`.
fn start_hog(file: &Path, cg: &Memcg, counter: &Path) -> io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg("--hog")
        .arg(file)
        .arg(cg.0.join("cgroup.procs"))
        .arg(counter)
        .stdin(Stdio::null())
        .spawn()
}

/// Hog mode: join the cgroup, then read the file forever.
fn hog(file: &Path, procs: &Path, counter: &Path) -> io::Result<()> {
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
