//! The pressure monitor with injected events: what it shrinks, how it
//! escalates and backs off, soft limits, fairness between owners, and
//! that every shrink is recorded.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use vgpu_backend::pressure::{
    Check, Level, MonitorConfig, OwnCgroups, PolicyConfig, PressureMonitor, PressureSource,
    ShrinkRecord, SourceChoice, SourceInfo, V1PressureLevel, V1Watermark,
};
use vgpu_backend::*;

use common::*;

const MIB: u64 = 1 << 20;

/// A source that fires once per byte written to its pipe, at `level`.
#[derive(Debug)]
struct PipeSource {
    rx: OwnedFd,
    level: Level,
}

impl PressureSource for PipeSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "test".into(),
            path: "pipe".into(),
            trigger: "byte".into(),
        }
    }
    fn describe(&self) -> String {
        "a test pipe".into()
    }
    fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        Some((self.rx.as_fd(), PollFlags::IN))
    }
    fn check(&mut self, ready: PollFlags) -> io::Result<Check> {
        if !ready.contains(PollFlags::IN) {
            return Ok(Check::Quiet);
        }
        let mut b = [0u8; 1];
        match rustix::io::read(&self.rx, &mut b) {
            Ok(1) => Ok(Check::Signal(self.level)),
            Ok(_) => Ok(Check::Gone),
            Err(rustix::io::Errno::AGAIN) => Ok(Check::Quiet),
            Err(e) => Err(e.into()),
        }
    }
}

struct Rig {
    bm: BufferManager,
    monitor: PressureMonitor,
    tx: OwnedFd,
}

impl Rig {
    fn new(window: Duration) -> Self {
        Self::with_level(window, Level::Medium)
    }

    fn with_level(window: Duration, level: Level) -> Self {
        let bm = manager(256);
        let (rx, tx) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )
        .unwrap();
        let cfg = MonitorConfig {
            source: SourceChoice::Auto,
            tick: Duration::from_millis(20),
            policy: PolicyConfig {
                min_target: MIB,
                window,
                ..PolicyConfig::default()
            },
            ..MonitorConfig::default()
        };
        let monitor = PressureMonitor::start_with_sources(
            bm.clone(),
            cfg,
            vec![Box::new(PipeSource { rx, level })],
            vec![],
        )
        .unwrap();
        Self { bm, monitor, tx }
    }

    fn fire(&self) {
        rustix::io::write(&self.tx, &[1]).unwrap();
    }

    /// Waits until `n` shrinks are recorded.
    fn records(&self, n: usize) -> Vec<ShrinkRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.monitor.handle().status().recent;
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} shrinks recorded",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `count` populated objects of `size` for `owner`, advised `madv`.
    fn objects(&self, owner: OwnerId, count: usize, size: u64, madv: Madv) -> Vec<ObjectId> {
        (0..count)
            .map(|i| {
                let id = self
                    .bm
                    .create(owner, size, Placement::system(), Priority::NORMAL)
                    .unwrap();
                fill(&self.bm, id, 0, size, i as u8 + 1);
                self.bm.madvise(id, madv).unwrap();
                id
            })
            .collect()
    }
}

#[test]
fn a_signal_purges_every_dontneed_byte_and_keeps_willneed_data() {
    let rig = Rig::new(Duration::from_secs(2));
    let vm = rig.bm.create_owner("vm1", None).unwrap();
    let keep = rig.objects(vm, 4, MIB, Madv::WillNeed);
    let drop = rig.objects(vm, 6, MIB, Madv::DontNeed);
    rig.fire();
    let r = rig.records(1);
    assert_eq!(r[0].trigger, "test");
    assert_eq!(r[0].mode, Some(ShrinkMode::Lazy), "the first step is lazy");
    assert_eq!(r[0].purged_bytes, 6 * MIB, "exactly the purgeable bytes");
    assert_eq!(r[0].purged_objects, 6);
    // Lazy hints what its target asks beyond the purge (1 MiB here: the
    // minimum), counts what it hinted, and stops: one object, not four.
    assert_eq!(r[0].hinted_bytes, MIB);
    for id in drop {
        assert_eq!(rig.bm.object_info(id).unwrap().madv, Madv::Purged);
    }
    for (i, id) in keep.iter().enumerate() {
        assert!(contents(&rig.bm, *id)
            .unwrap()
            .iter()
            .all(|b| *b == i as u8 + 1));
    }
    let status = rig.monitor.handle().status();
    assert_eq!(status.events, 1);
    assert_eq!(status.freed_bytes, 6 * MIB);
    assert_eq!(status.shrinks.get("test"), Some(&1));
}

#[test]
fn a_low_signal_purges_only_and_repeats_cost_nothing() {
    let rig = Rig::with_level(Duration::from_secs(2), Level::Low);
    let vm = rig.bm.create_owner("vm1", None).unwrap();
    rig.objects(vm, 4, MIB, Madv::WillNeed);
    rig.objects(vm, 3, MIB, Madv::DontNeed);
    rig.fire();
    let r = rig.records(1);
    assert_eq!((r[0].mode, r[0].purged_bytes), (None, 3 * MIB));
    assert_eq!(r[0].hinted_bytes, 0, "WILLNEED buffers untouched");
    // A flood of repeats with nothing purgeable shrinks nothing more.
    for _ in 0..50 {
        rig.fire();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.monitor.handle().status().events < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    rig.objects(vm, 1, MIB, Madv::DontNeed);
    rig.fire();
    let r = rig.records(2);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[1].purged_bytes, MIB);
}

/// A source firing at the kernel's real cadence for a PSI trigger: once
/// per window, a little after it, for as long as the pressure lasts.
#[test]
fn pressure_at_the_kernels_cadence_escalates_and_a_quiet_window_backs_off() {
    let window = Duration::from_millis(200);
    let rig = Rig::new(window);
    let vm = rig.bm.create_owner("vm1", None).unwrap();
    rig.objects(vm, 8, MIB, Madv::WillNeed);
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(window + Duration::from_millis(15));
        }
        rig.fire();
        rig.records(i + 1);
    }
    let r = rig.records(3);
    assert_eq!(
        r.iter().map(|r| r.mode).collect::<Vec<_>>(),
        [
            Some(ShrinkMode::Lazy),
            Some(ShrinkMode::Writeback),
            Some(ShrinkMode::Writeback)
        ]
    );
    assert!(
        r[2].target > r[1].target && r[1].target > r[0].target,
        "targets grow: {r:?}"
    );
    // Writeback reached what Lazy hinted: the swapped list comes first.
    assert!(r[1].hinted_bytes >= r[0].hinted_bytes, "{r:?}");
    assert_eq!(rig.monitor.handle().status().streak, 3);
    // A quiet window after the last signal's: the streak resets and the
    // next signal starts lazy again.
    let deadline = Instant::now() + Duration::from_secs(10);
    std::thread::sleep(window * 2);
    while rig.monitor.handle().status().streak != 0 {
        assert!(Instant::now() < deadline, "the streak never backed off");
        std::thread::sleep(Duration::from_millis(10));
    }
    rig.fire();
    let r = rig.records(4);
    assert_eq!(r[3].mode, Some(ShrinkMode::Lazy));
    assert_eq!(r[3].target, r[0].target);
}

#[test]
fn the_largest_purgeable_owner_is_purged_first() {
    let rig = Rig::new(Duration::from_secs(2));
    let small = rig.bm.create_owner("small", None).unwrap();
    let large = rig.bm.create_owner("large", None).unwrap();
    rig.objects(small, 2, MIB, Madv::DontNeed);
    rig.objects(large, 6, MIB, Madv::DontNeed);
    let record = rig.monitor.handle().shrink(
        "admin",
        &ShrinkRequest {
            purge_only: true,
            ..ShrinkRequest::new(3 * MIB, ShrinkMode::Lazy)
        },
    );
    assert_eq!(record.purged_bytes, 3 * MIB);
    assert_eq!(rig.bm.owner_stats(large).unwrap().purged_bytes, 3 * MIB);
    assert_eq!(
        rig.bm.owner_stats(small).unwrap().purged_bytes,
        0,
        "the small owner is left alone"
    );
    assert_eq!(
        rig.records(1)[0].trigger,
        "admin",
        "admin shrinks are recorded too"
    );
}

#[test]
fn a_vm_over_its_soft_limit_is_shrunk_back_without_global_pressure() {
    let rig = Rig::new(Duration::from_secs(2));
    let vm1 = rig.bm.create_owner("vm1", None).unwrap();
    let vm2 = rig.bm.create_owner("vm2", None).unwrap();
    rig.objects(vm1, 4, MIB, Madv::WillNeed);
    rig.objects(vm1, 4, MIB, Madv::DontNeed);
    rig.objects(vm2, 4, MIB, Madv::DontNeed);
    rig.bm.set_soft_limit(vm1, Some(5 * MIB)).unwrap();
    let r = rig.records(1);
    assert_eq!(r[0].trigger, "soft-limit:vm1");
    assert_eq!(r[0].mode, Some(ShrinkMode::Writeback));
    assert_eq!(r[0].target, 3 * MIB);
    assert_eq!(
        rig.bm.owner_stats(vm1).unwrap().charged,
        5 * MIB,
        "back under the limit"
    );
    assert_eq!(
        rig.bm.owner_stats(vm2).unwrap().purged_bytes,
        0,
        "other VMs untouched"
    );
    assert_eq!(
        rig.monitor.handle().status().events,
        0,
        "no global pressure involved"
    );
    // Over the limit with nothing left to purge (and no swap): retried with
    // a back-off, not every tick.
    rig.bm.set_soft_limit(vm1, Some(MIB)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let n = rig.monitor.handle().status().recent.len();
    assert!(
        n <= 3,
        "{n} shrinks in 0.5 s with a 20 ms tick: no back-off"
    );
}

#[test]
fn a_source_that_goes_away_falls_back_to_meminfo() {
    let rig = Rig::new(Duration::from_secs(2));
    let Rig { monitor, tx, .. } = rig;
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = monitor.handle().status();
        if s.sources.iter().any(|a| a.info.kind == "meminfo") {
            assert!(
                s.sources.iter().all(|a| a.info.kind != "test"),
                "the gone source is dropped"
            );
            assert!(!s.notes.is_empty(), "the fall-back is explained");
            break;
        }
        assert!(Instant::now() < deadline, "no fall-back: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_monitor_arms_every_source_this_host_has_and_explains_the_rest() {
    let bm = manager(16);
    for source in [
        SourceChoice::Auto,
        SourceChoice::System,
        SourceChoice::Cgroup,
        SourceChoice::Meminfo,
    ] {
        let m = PressureMonitor::start(
            bm.clone(),
            MonitorConfig {
                source,
                ..MonitorConfig::default()
            },
        )
        .unwrap();
        let s = m.handle().status();
        let kinds: Vec<&str> = s.sources.iter().map(|a| a.info.kind.as_str()).collect();
        let psi = std::path::Path::new("/proc/pressure/memory").exists();
        let own = OwnCgroups::of_this_process();
        match source {
            SourceChoice::Meminfo => assert_eq!(kinds, ["meminfo"]),
            SourceChoice::System if psi => assert_eq!(kinds, ["psi"], "{:?}", s.notes),
            SourceChoice::Auto => {
                assert!(
                    kinds.contains(&if psi { "psi" } else { "meminfo" }),
                    "{kinds:?}"
                );
                if own.v1_memory.is_some() {
                    // This host's case: the v1 memory controller's three
                    // levels and the watermark, together with host PSI.
                    assert_eq!(
                        kinds.iter().filter(|k| **k == "cgroup-v1-pressure").count(),
                        3,
                        "{kinds:?} {:?}",
                        s.notes
                    );
                    assert!(kinds.contains(&"cgroup-v1-watermark"), "{kinds:?}");
                }
            }
            SourceChoice::Cgroup => {
                assert!(kinds.iter().all(|k| k.starts_with("cgroup")), "{kinds:?}");
            }
            _ => {}
        }
        // Every source is described in words, every absent one explained.
        for a in &s.sources {
            assert!(!a.description.is_empty() && !a.description.contains("SourceInfo"));
        }
        if source == SourceChoice::Auto
            && own.v2.is_some()
            && kinds.iter().all(|k| !k.starts_with("cgroup-v2"))
        {
            assert!(
                s.notes.iter().any(|n| n.contains("v2")),
                "why no v2 source: {:?}",
                s.notes
            );
        }
        m.handle().inject().unwrap();
    }
    // No source: nothing to inject or re-trigger, but soft limits hold.
    let vm = bm.create_owner("vm-none", None).unwrap();
    let objs: Vec<ObjectId> = (0..4)
        .map(|_| {
            let id = bm
                .create(vm, MIB, Placement::system(), Priority::NORMAL)
                .unwrap();
            fill(&bm, id, 0, MIB, 1);
            bm.madvise(id, Madv::DontNeed).unwrap();
            id
        })
        .collect();
    let none = PressureMonitor::start(
        bm.clone(),
        MonitorConfig {
            source: SourceChoice::None,
            tick: Duration::from_millis(20),
            ..MonitorConfig::default()
        },
    )
    .unwrap();
    let status = none.handle().status();
    assert!(!status.running && status.sources.is_empty());
    assert!(none.handle().inject().is_err(), "no source, no injection");
    assert!(none.handle().set_trigger("some 100000 2000000").is_err());
    bm.set_soft_limit(vm, Some(2 * MIB)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bm.resident_bytes(vm).unwrap() > 2 * MIB {
        assert!(
            Instant::now() < deadline,
            "the soft limit was never enforced"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(objs
        .iter()
        .any(|id| bm.object_info(*id).unwrap().madv == Madv::Purged));
}

/// The cgroup-v1 sources against a real squeeze: a page-cache reader in a
/// fresh memory cgroup crosses the watermark, then the kernel reclaims
/// and sends pressure-level notifications. Needs root and a v1 memory
/// controller (this project's machines have both; elsewhere it says why
/// it did nothing).
#[test]
fn cgroup_v1_watermark_and_pressure_levels_fire_in_a_real_squeeze() {
    let Some(parent) = OwnCgroups::of_this_process().v1_memory else {
        eprintln!("SKIPPED: no cgroup-v1 memory controller on this host");
        return;
    };
    let dir = parent.join(format!("vgpu-test-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&dir) {
        eprintln!(
            "SKIPPED: cannot create a memory cgroup under {}: {e}",
            parent.display()
        );
        return;
    }
    let cleanup = Cleanup(dir.clone());
    let limit = 48 * MIB;
    std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
    let mut watermark = V1Watermark::open(&dir, 50).unwrap();
    assert!(
        watermark.describe().contains("48 MiB"),
        "{}",
        watermark.describe()
    );
    let mut low = V1PressureLevel::open(&dir, Level::Low).unwrap();
    // A 96 MiB file read in a loop inside the cgroup: page cache fills it.
    let file = std::env::temp_dir().join(format!("vgpu-squeeze-{}.bin", std::process::id()));
    std::fs::write(&file, vec![0x5a; (96 * MIB) as usize]).unwrap();
    // Out of this process's page cache, so the reader's cgroup pays for it.
    let f = std::fs::File::open(&file).unwrap();
    f.sync_all().unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let mut reader = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && while :; do cat {} > /dev/null; done",
            dir.display(),
            file.display()
        ))
        .spawn()
        .unwrap();
    let mut seen = (false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(seen.0 && seen.1) && Instant::now() < deadline {
        let mut fds = [
            rustix::event::PollFd::from_borrowed_fd(watermark.poll_fd().unwrap().0, PollFlags::IN),
            rustix::event::PollFd::from_borrowed_fd(low.poll_fd().unwrap().0, PollFlags::IN),
        ];
        let ts = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&ts)).unwrap();
        let (a, b) = (fds[0].revents(), fds[1].revents());
        if watermark.check(a).unwrap() == Check::Signal(Level::Low) {
            seen.0 = true;
        }
        if low.check(b).unwrap() == Check::Signal(Level::Low) {
            seen.1 = true;
        }
    }
    let _ = reader.kill();
    let _ = reader.wait();
    let _ = std::process::Command::new("pkill")
        .arg("-f")
        .arg(file.display().to_string())
        .status();
    let _ = std::fs::remove_file(&file);
    drop(cleanup);
    assert!(seen.0, "the usage threshold never fired");
    assert!(seen.1, "no low-level pressure notification");
}

/// Removes a test cgroup, moving anything left in it to its parent.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let parent = self.0.parent().map(|p| p.join("cgroup.procs"));
        for _ in 0..50 {
            if let (Ok(procs), Some(parent)) = (
                std::fs::read_to_string(self.0.join("cgroup.procs")),
                parent.as_ref(),
            ) {
                for pid in procs.lines() {
                    let _ = std::fs::write(parent, pid);
                }
            }
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
