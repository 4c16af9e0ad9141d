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
    Check, MonitorConfig, PolicyConfig, PressureMonitor, PressureSource, ShrinkRecord,
    SourceChoice, SourceInfo,
};
use vgpu_backend::*;

use common::*;

const MIB: u64 = 1 << 20;

/// A source that fires once per byte written to its pipe.
#[derive(Debug)]
struct PipeSource {
    rx: OwnedFd,
    window: Duration,
}

impl PressureSource for PipeSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "test".into(),
            path: "pipe".into(),
            trigger: "byte".into(),
        }
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
            Ok(1) => Ok(Check::Pressure),
            Ok(_) => Ok(Check::Gone),
            Err(rustix::io::Errno::AGAIN) => Ok(Check::Quiet),
            Err(e) => Err(e.into()),
        }
    }
    fn window(&self) -> Duration {
        self.window
    }
    fn level(&self) -> Option<f64> {
        None
    }
}

struct Rig {
    bm: BufferManager,
    monitor: PressureMonitor,
    tx: OwnedFd,
}

impl Rig {
    fn new(window: Duration) -> Self {
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
                ..PolicyConfig::default()
            },
            ..MonitorConfig::default()
        };
        let monitor = PressureMonitor::start_with_source(
            bm.clone(),
            cfg,
            Box::new(PipeSource { rx, window }),
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
fn an_event_purges_every_dontneed_byte_and_keeps_willneed_data() {
    let rig = Rig::new(Duration::from_secs(2));
    let vm = rig.bm.create_owner("vm1", None).unwrap();
    let keep = rig.objects(vm, 4, MIB, Madv::WillNeed);
    let drop = rig.objects(vm, 6, MIB, Madv::DontNeed);
    rig.fire();
    let r = rig.records(1);
    assert_eq!(r[0].trigger, "test");
    assert_eq!(r[0].mode, ShrinkMode::Lazy, "the first event is lazy");
    assert_eq!(r[0].purged_bytes, 6 * MIB, "exactly the purgeable bytes");
    assert_eq!(r[0].purged_objects, 6);
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
fn persistent_pressure_escalates_to_writeback_and_a_quiet_window_backs_off() {
    let window = Duration::from_millis(300);
    let rig = Rig::new(window);
    let vm = rig.bm.create_owner("vm1", None).unwrap();
    rig.objects(vm, 8, MIB, Madv::WillNeed);
    rig.fire();
    rig.records(1);
    rig.fire();
    rig.fire();
    let r = rig.records(3);
    assert_eq!(
        r.iter().map(|r| r.mode).collect::<Vec<_>>(),
        [
            ShrinkMode::Lazy,
            ShrinkMode::Writeback,
            ShrinkMode::Writeback
        ]
    );
    assert!(
        r[2].target > r[1].target && r[1].target > r[0].target,
        "targets grow: {r:?}"
    );
    assert_eq!(rig.monitor.handle().status().streak, 3);
    // A quiet window: the streak resets and the next event is lazy again.
    std::thread::sleep(window * 3);
    assert_eq!(rig.monitor.handle().status().streak, 0);
    rig.fire();
    let r = rig.records(4);
    assert_eq!((r[3].mode, r[3].target), (ShrinkMode::Lazy, r[0].target));
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
        if s.source.as_ref().is_some_and(|i| i.kind == "meminfo") {
            assert!(!s.notes.is_empty(), "the fall-back is explained");
            break;
        }
        assert!(Instant::now() < deadline, "no fall-back: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_monitor_starts_on_this_host_and_explains_its_choice() {
    let bm = manager(16);
    for source in [
        SourceChoice::Auto,
        SourceChoice::System,
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
        let info = s.source.expect("a source");
        match source {
            SourceChoice::Meminfo => assert_eq!(info.kind, "meminfo"),
            SourceChoice::System if std::path::Path::new("/proc/pressure/memory").exists() => {
                assert!(
                    info.kind == "psi" || !s.notes.is_empty(),
                    "{info:?} {:?}",
                    s.notes
                )
            }
            _ => assert!(!info.kind.is_empty()),
        }
        m.handle().inject().unwrap();
    }
    let none = PressureMonitor::start(
        bm,
        MonitorConfig {
            source: SourceChoice::None,
            ..MonitorConfig::default()
        },
    )
    .unwrap();
    assert!(none.handle().inject().is_err(), "no monitor, no injection");
    assert!(none.handle().set_trigger("some 100000 2000000").is_err());
}
