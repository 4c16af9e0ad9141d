//! The shrink log: every shrink the manager ran — whoever asked, the
//! pressure monitor, a soft limit, a quota, the admin socket — with its
//! trigger, target and what it really released, for `vgpuctl pressure`,
//! the metrics and the logs.
//!
//! Owns: the record ring and the per-trigger totals, behind one mutex held
//! only to copy a record in or out. Must not: shrink anything itself.

use std::collections::{BTreeMap, VecDeque};
use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::manager::{BufferManager, Inner};
use crate::shrinker::{ShrinkReport, ShrinkRequest};
use crate::types::ShrinkMode;

/// Shrink records kept.
pub const MAX_RECORDS: usize = 64;

/// One shrink, as the admin socket shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkRecord {
    /// When it started, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What asked for it (`psi`, `cgroup-events`, `watermark`, `meminfo`,
    /// `injected`, `admin`, `purge`, `soft-limit:<owner>`,
    /// `quota:<owner>`, …).
    pub trigger: String,
    /// Bytes asked for.
    pub target: u64,
    /// Mode (`None`: purge only).
    pub mode: Option<ShrinkMode>,
    /// Bytes really released by purging.
    pub purged_bytes: u64,
    /// Objects purged.
    pub purged_objects: u64,
    /// Resident bytes of WILLNEED objects hinted to the kernel.
    pub hinted_bytes: u64,
    /// Bytes really released by writeback.
    pub written_back_bytes: u64,
    /// Bytes released by dropping the buffer cache.
    pub cache_bytes: u64,
    /// Bytes released by punching scratch files.
    pub scratch_bytes: u64,
    /// Objects looked at.
    pub scanned: u64,
    /// Objects skipped (pinned, busy, contended, changed).
    pub skipped: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
}

impl ShrinkRecord {
    /// Bytes really released in all.
    pub fn freed(&self) -> u64 {
        self.purged_bytes + self.written_back_bytes + self.cache_bytes + self.scratch_bytes
    }
}

/// The log's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShrinkLogSnapshot {
    /// Shrinks per trigger kind (the part before any `:`).
    pub shrinks: BTreeMap<String, u64>,
    /// Bytes really released by all shrinks.
    pub freed_bytes: u64,
    /// The last [`MAX_RECORDS`] shrinks, oldest first.
    pub recent: Vec<ShrinkRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct ShrinkLog {
    shrinks: BTreeMap<String, u64>,
    freed_bytes: u64,
    records: VecDeque<ShrinkRecord>,
}

impl Inner {
    fn shrink_log(&self) -> MutexGuard<'_, ShrinkLog> {
        self.shrink_log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records (and logs) a finished shrink.
    pub(crate) fn record_shrink(
        &self,
        trigger: &str,
        at: SystemTime,
        request: &ShrinkRequest,
        report: &ShrinkReport,
    ) -> ShrinkRecord {
        let record = ShrinkRecord {
            at_unix_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            trigger: trigger.to_string(),
            target: request.target,
            mode: report.mode,
            purged_bytes: report.purged_bytes,
            purged_objects: report.purged_objects,
            hinted_bytes: report.hinted_bytes,
            written_back_bytes: report.written_back_bytes,
            cache_bytes: report.cache_bytes,
            scratch_bytes: report.scratch_bytes,
            scanned: report.scanned,
            skipped: report.skipped_total(),
            duration_us: report.duration.as_micros() as u64,
        };
        let mode = report.mode.map_or("purge-only", ShrinkMode::name);
        let target = match request.target {
            u64::MAX => "everything".to_string(),
            t => format!("{t} B"),
        };
        let text = format!(
            "shrink ({trigger}): target {target} {mode}, purged {} B in {} objects, hinted {} B, written back {} B, cache {} B, scratch {} B, scanned {}, skipped {} in {:?}",
            report.purged_bytes,
            report.purged_objects,
            report.hinted_bytes,
            report.written_back_bytes,
            report.cache_bytes,
            report.scratch_bytes,
            report.scanned,
            record.skipped,
            report.duration
        );
        // A quiet shrink (nothing to do) is routine for quota checks and
        // repeated pressure events: keep the log readable.
        if record.freed() > 0 || record.hinted_bytes > 0 || record.scanned > 0 {
            log::info!("{text}");
        } else {
            log::debug!("{text}");
        }
        let mut log = self.shrink_log();
        let kind = trigger.split(':').next().unwrap_or(trigger).to_string();
        *log.shrinks.entry(kind).or_default() += 1;
        log.freed_bytes += record.freed();
        log.records.push_back(record.clone());
        while log.records.len() > MAX_RECORDS {
            log.records.pop_front();
        }
        record
    }
}

impl BufferManager {
    /// Every shrink so far: counts per trigger, bytes freed, the last ones.
    pub fn shrink_log(&self) -> ShrinkLogSnapshot {
        let log = self.inner.shrink_log();
        ShrinkLogSnapshot {
            shrinks: log.shrinks.clone(),
            freed_bytes: log.freed_bytes,
            recent: log.records.iter().cloned().collect(),
        }
    }
}
