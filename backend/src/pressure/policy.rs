//! The pressure policy, i915-like and kept pure so it can be tested with
//! injected events:
//!
//! * a pressure event shrinks in **Lazy** mode; pressure that persists into
//!   the next window **escalates** to **Writeback**, and the target doubles
//!   with each further window (up to a cap);
//! * a quiet window **backs off** to the first step;
//! * the target always covers every DONTNEED byte (the shrinker purges
//!   those first, largest purgeable owner first), plus a share of what the
//!   daemon holds sized from the pressure level (PSI "some avg10").
//!
//! Per-VM soft limits (like cgroup `memory.high`) are separate:
//! [`soft_limit_excess`] lists the VMs over theirs and by how much.

use crate::types::{OwnerId, ShrinkMode};

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
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_target: 16 << 20,
            base_percent: 5.0,
            max_escalation: 4,
        }
    }
}

/// What to shrink now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Bytes to release.
    pub target: u64,
    /// How hard.
    pub mode: ShrinkMode,
    /// Consecutive windows with pressure, this one included.
    pub streak: u32,
}

/// The escalation state.
#[derive(Debug, Clone)]
pub struct PressurePolicy {
    cfg: PolicyConfig,
    streak: u32,
}

impl PressurePolicy {
    /// A policy at rest.
    pub fn new(cfg: PolicyConfig) -> Self {
        Self { cfg, streak: 0 }
    }

    /// Consecutive windows with pressure so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// A pressure event. `held`: bytes the daemon holds; `purgeable`: bytes
    /// of DONTNEED objects; `level`: percent of time stalled, if known.
    pub fn on_pressure(&mut self, held: u64, purgeable: u64, level: Option<f64>) -> Decision {
        self.streak = self.streak.saturating_add(1);
        let mode = if self.streak > 1 {
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
        Decision {
            target,
            mode,
            streak: self.streak,
        }
    }

    /// A window passed without pressure: back off.
    pub fn on_quiet(&mut self) {
        self.streak = 0;
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

    #[test]
    fn first_event_is_lazy_and_covers_every_purgeable_byte() {
        let mut p = PressurePolicy::new(PolicyConfig::default());
        let d = p.on_pressure(1000 * MIB, 100 * MIB, None);
        assert_eq!(d.mode, ShrinkMode::Lazy);
        assert_eq!(d.target, 100 * MIB + 50 * MIB, "purgeable + 5 % of held");
    }

    #[test]
    fn persistent_pressure_escalates_to_writeback_and_doubles() {
        let mut p = PressurePolicy::new(PolicyConfig::default());
        let a = p.on_pressure(1000 * MIB, 0, None);
        let b = p.on_pressure(1000 * MIB, 0, None);
        let c = p.on_pressure(1000 * MIB, 0, None);
        assert_eq!(
            (a.mode, b.mode, c.mode),
            (
                ShrinkMode::Lazy,
                ShrinkMode::Writeback,
                ShrinkMode::Writeback
            )
        );
        assert_eq!(
            (a.target, b.target, c.target),
            (50 * MIB, 100 * MIB, 200 * MIB)
        );
        for _ in 0..10 {
            p.on_pressure(1000 * MIB, 0, None);
        }
        assert_eq!(
            p.on_pressure(1000 * MIB, 0, None).target,
            800 * MIB,
            "capped at 2^4"
        );
    }

    #[test]
    fn a_quiet_window_backs_off() {
        let mut p = PressurePolicy::new(PolicyConfig::default());
        p.on_pressure(1000 * MIB, 0, None);
        p.on_pressure(1000 * MIB, 0, None);
        p.on_quiet();
        let d = p.on_pressure(1000 * MIB, 0, None);
        assert_eq!((d.mode, d.streak), (ShrinkMode::Lazy, 1));
    }

    #[test]
    fn the_target_follows_the_pressure_level_and_never_exceeds_what_is_held() {
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert_eq!(p.on_pressure(1000 * MIB, 0, Some(40.0)).target, 400 * MIB);
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert_eq!(
            p.on_pressure(10 * MIB, 0, None).target,
            10 * MIB,
            "min target capped at held"
        );
        let mut p = PressurePolicy::new(PolicyConfig::default());
        assert_eq!(p.on_pressure(0, 0, None).target, 0);
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
