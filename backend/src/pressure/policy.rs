//! The pressure policy, kept pure (every call gets the time) so it can be
//! tested at the kernel's real cadence without sleeping:
//!
//! * a **low** signal (usage near a limit, the kernel starting to reclaim)
//!   purges every DONTNEED byte, nothing else: cheap, and what a guest
//!   marked DONTNEED is the first memory anyone should lose;
//! * a **medium** signal (tasks stall: PSI, v1 "medium", v2 "high") is a
//!   policy *step*: the first shrinks in **Lazy** mode; pressure that
//!   persists into the next window **escalates** to **Writeback**, and the
//!   target doubles with each further window (up to a cap);
//! * a **critical** signal (at the hard limit, OOM) steps in Writeback
//!   mode at once;
//! * at most one step per window: signals inside the window of the last
//!   step only purge what became purgeable since (sources like v1
//!   `memory.pressure_level` fire thousands of times a second);
//! * the streak **backs off** only after a whole window without any signal
//!   *following* the window of the last one. A PSI trigger fires at most
//!   once per window, so under pressure that persists its next event comes
//!   a little *after* the window has passed — that must escalate, not
//!   reset;
//! * a step's target covers every DONTNEED byte (the shrinker purges those
//!   first, largest purgeable owner first), plus a share of what the daemon
//!   holds sized from the pressure level (PSI "some avg10").
//!
//! Per-VM soft limits (like cgroup `memory.high`) are separate:
//! [`soft_limit_excess`] lists the VMs over theirs and by how much.

use std::time::{Duration, Instant};

use crate::types::{OwnerId, ShrinkMode};

/// How strong a pressure signal is (the kernel's vmpressure levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Near a limit, or the kernel reclaims easily: purge DONTNEED.
    Low,
    /// Tasks stall on memory: a policy step (Lazy, then escalating).
    Medium,
    /// At the hard limit or out of memory: a Writeback step now.
    Critical,
}

impl Level {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::Critical => "critical",
        }
    }
}

/// Tuning of the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyConfig {
    /// Smallest amount to release beyond the purgeable bytes.
    pub min_target: u64,
    /// Share of held memory released on the first event, in percent, when
    /// the pressure level is lower or unknown.
    pub base_percent: f64,
    /// Most doublings of the target under persistent pressure.
    pub max_escalation: u32,
    /// The escalation window: at most one step per window, and a window
    /// without signals (after the window of the last one) backs off. The
    /// PSI trigger's window (2 s unprivileged).
    pub window: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_target: 16 << 20,
            base_percent: 5.0,
            max_escalation: 4,
            window: Duration::from_secs(2),
        }
    }
}

/// What to shrink now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Bytes to release.
    pub target: u64,
    /// How hard to push WILLNEED objects; `None`: purge DONTNEED only.
    pub mode: Option<ShrinkMode>,
    /// Consecutive windows with pressure, this one included.
    pub streak: u32,
}

/// The escalation state.
#[derive(Debug, Clone)]
pub struct PressurePolicy {
    cfg: PolicyConfig,
    streak: u32,
    last_step: Option<Instant>,
    last_signal: Option<Instant>,
}

impl PressurePolicy {
    /// A policy at rest.
    pub fn new(cfg: PolicyConfig) -> Self {
        Self {
            cfg,
            streak: 0,
            last_step: None,
            last_signal: None,
        }
    }

    /// Consecutive windows with pressure so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// The escalation window.
    pub fn window(&self) -> Duration {
        self.cfg.window
    }

    /// Time passes: back off if it passed quietly. True if it backed off.
    pub fn on_tick(&mut self, now: Instant) -> bool {
        // Quiet means no signal for one whole window after the window in
        // which the last one came (two windows from it).
        let quiet = self
            .last_signal
            .is_some_and(|t| now.saturating_duration_since(t) > 2 * self.cfg.window);
        if quiet {
            self.streak = 0;
            self.last_step = None;
            self.last_signal = None;
        }
        quiet
    }

    /// A pressure signal. `held`: bytes the daemon holds; `purgeable`:
    /// bytes of DONTNEED objects; `level`: percent of time stalled, if
    /// known. `None`: nothing to do (a repeat inside the window, with
    /// nothing new to purge).
    pub fn on_signal(
        &mut self,
        now: Instant,
        signal: Level,
        held: u64,
        purgeable: u64,
        level: Option<f64>,
    ) -> Option<Decision> {
        self.on_tick(now);
        self.last_signal = Some(now);
        let purge_only = || {
            (purgeable > 0).then_some(Decision {
                target: purgeable,
                mode: None,
                streak: self.streak,
            })
        };
        if signal == Level::Low {
            return purge_only();
        }
        // A trigger firing at most once per window can land a hair before
        // our clock says the window passed: allow for scheduling jitter.
        let step_due = self
            .last_step
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.window * 9 / 10);
        if !step_due {
            return purge_only();
        }
        self.last_step = Some(now);
        self.streak = self.streak.saturating_add(1);
        let mode = if self.streak > 1 || signal == Level::Critical {
            ShrinkMode::Writeback
        } else {
            ShrinkMode::Lazy
        };
        let percent = level.unwrap_or(0.0).max(self.cfg.base_percent).min(100.0);
        let doublings = (self.streak - 1).min(self.cfg.max_escalation);
        let sized = ((held as f64) * percent / 100.0) as u64;
        let extra = sized
            .max(self.cfg.min_target)
            .saturating_mul(1 << doublings);
        let target = purgeable.saturating_add(extra).min(held.max(purgeable));
        Some(Decision {
            target,
            mode: Some(mode),
            streak: self.streak,
        })
    }
}

/// The owners over their soft limit and by how many bytes:
/// `(owner, charged, soft_limit)` in, `(owner, excess)` out.
pub fn soft_limit_excess(owners: &[(OwnerId, u64, Option<u64>)]) -> Vec<(OwnerId, u64)> {
    owners
        .iter()
        .filter_map(|(id, charged, limit)| {
            let limit = (*limit)?;
            (*charged > limit).then(|| (*id, charged - limit))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn step(p: &mut PressurePolicy, now: Instant, held: u64, purgeable: u64) -> Option<Decision> {
        p.on_signal(now, Level::Medium, held, purgeable, None)
    }

    #[test]
    fn first_step_is_lazy_and_covers_every_purgeable_byte() {
        let mut p = PressurePolicy::new(PolicyConfig::default());
        let d = step(&mut p, Instant::now(), 1000 * MIB, 100 * MIB).unwrap();
        assert_eq!(d.mode, Some(ShrinkMode::Lazy));
        assert_eq!(d.target, 100 * MIB + 50 * MIB, "purgeable + 5 % of held");
    }

    /// A PSI trigger fires at most once per window: under pressure that
    /// persists, its events come a little after each window (the kernel's
    /// real cadence). Each must escalate; the target doubles.
    #[test]
    fn events_at_the_kernels_cadence_escalate_to_writeback_and_double() {
        let mut p = PressurePolicy::new(PolicyConfig::default());
        let t0 = Instant::now();
        let times = [0, 2_003, 4_010, 6_050, 8_001];
        let d: Vec<Decision> = times
            .iter()
            .map(|&ms| step(&mut p, at(t0, ms), 1000 * MIB, 0).unwrap())
            .collect();
        let modes: Vec<_> = d.iter().map(|d| d.mode).collect();
        assert_eq!(
            modes,
            vec![
                Some(ShrinkMode::Lazy),
                Some(ShrinkMode::Writeback),
                Some(ShrinkMode::Writeback),
                Some(ShrinkMode::Writeback),
                Some(ShrinkMode::Writeback)
            ]
        );
        let targets: Vec<_> = d.iter().map(|d| d.target / MIB).collect();
        assert_eq!(targets, vec![50, 100, 200, 400, 800]);
        assert_eq!(
            step(&mut p, at(t0, 10_004), 1000 * MIB, 0).unwrap().target,
            800 * MIB,
            "capped at 2^4"
        );
        // Events a whole quiet window apart after the last one back off.
        let d = step(&mut p, at(t0, 10_004 + 4_100), 1000 * MIB, 0).unwrap();
        assert_eq!((d.mode, d.streak), (Some(ShrinkMode::Lazy), 1));
    }

    #[test]
    fn an_event_just_after_the_window_escalates_and_a_quiet_window_backs_off() {
        let t0 = Instant::now();
        let mut p = PressurePolicy::new(PolicyConfig::default());
        step(&mut p, t0, 1000 * MIB, 0);
        // Just after the window (the old rule reset here): escalates.
        let d = step(&mut p, at(t0, 2_000 + 30), 1000 * MIB, 0).unwrap();
        assert_eq!(d.streak, 2);
        // Ticks inside the next two windows do not back off...
        assert!(!p.on_tick(at(t0, 2_030 + 3_900)));
        assert_eq!(p.streak(), 2);
        // ...a tick after a whole quiet window does.
        assert!(p.on_tick(at(t0, 2_030 + 4_001)));
        assert_eq!(p.streak(), 0);
    }

    #[test]
    fn repeats_inside_a_window_only_purge_what_is_new() {
        let t0 = Instant::now();
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert!(step(&mut p, t0, 1000 * MIB, 0).is_some());
        assert_eq!(step(&mut p, at(t0, 10), 1000 * MIB, 0), None, "nothing new");
        let d = step(&mut p, at(t0, 20), 1000 * MIB, 8 * MIB).unwrap();
        assert_eq!((d.mode, d.target, d.streak), (None, 8 * MIB, 1));
        // A flood of signals keeps the streak alive but steps once a window.
        for ms in (30..1_790).step_by(7) {
            assert_eq!(step(&mut p, at(t0, ms), 1000 * MIB, 0), None);
        }
        assert_eq!(
            step(&mut p, at(t0, 2_001), 1000 * MIB, 0).unwrap().streak,
            2
        );
    }

    #[test]
    fn low_purges_and_critical_writes_back_at_once() {
        let t0 = Instant::now();
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert_eq!(p.on_signal(t0, Level::Low, 1000 * MIB, 0, None), None);
        let d = p
            .on_signal(t0, Level::Low, 1000 * MIB, 7 * MIB, None)
            .unwrap();
        assert_eq!((d.mode, d.target, d.streak), (None, 7 * MIB, 0));
        let d = p
            .on_signal(at(t0, 5), Level::Critical, 1000 * MIB, 0, None)
            .unwrap();
        assert_eq!((d.mode, d.streak), (Some(ShrinkMode::Writeback), 1));
    }

    #[test]
    fn the_target_follows_the_pressure_level_and_never_exceeds_what_is_held() {
        let t0 = Instant::now();
        let mut p = PressurePolicy::new(PolicyConfig::default());
        let d = p.on_signal(t0, Level::Medium, 1000 * MIB, 0, Some(40.0));
        assert_eq!(d.unwrap().target, 400 * MIB);
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert_eq!(
            step(&mut p, t0, 10 * MIB, 0).unwrap().target,
            10 * MIB,
            "min target capped at held"
        );
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert_eq!(step(&mut p, t0, 0, 0).unwrap().target, 0);
    }

    #[test]
    fn soft_limits_name_the_owners_over_them() {
        let o = |n| OwnerId::from_u32(n);
        let excess = soft_limit_excess(&[
            (o(1), 100, Some(60)),
            (o(2), 50, Some(60)),
            (o(3), 500, None),
        ]);
        assert_eq!(excess, vec![(o(1), 40)]);
    }
}
