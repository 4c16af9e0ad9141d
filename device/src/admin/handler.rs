//! Carries out admin requests against the buffer manager and the pressure
//! monitor. Holds no lock of its own: every call goes through the buffer
//! manager's API (its locking design applies) or the monitor handle (whose
//! mutex is held only to copy its status out).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use vgpu_backend::pressure::{MonitorHandle, MonitorStatus, ShrinkRecord};
use vgpu_backend::region::RegionInfo;
use vgpu_backend::{
    BufferManager, Madv, ManagerStats, MemoryClass, ObjectFilter, OwnerId, OwnerStats, RegionId,
    ShrinkMode, ShrinkRequest, PURGE_ONLY,
};

use super::metrics;
use super::protocol::{
    EvictReply, ListReply, MetricsReply, ObjectRow, OwnerRow, PressureReply, RegionRow, Reply,
    Request, ScreenshotReply, SetLimitReply, ShrinkRow, SourceRow, StatsReply, DEFAULT_LIST_LIMIT,
    MAX_REQUEST_LINE,
};
use crate::screens::Screens;

/// Most objects one `list` may return.
pub const MAX_LIST_LIMIT: usize = 100_000;

/// Answers admin requests.
#[derive(Debug, Clone)]
pub struct AdminHandler {
    bm: BufferManager,
    monitor: MonitorHandle,
    screens: Option<Screens>,
}

impl AdminHandler {
    /// A handler over `bm`, shrinking through `monitor` (so every shrink is
    /// recorded).
    pub fn new(bm: BufferManager, monitor: MonitorHandle) -> Self {
        Self {
            bm,
            monitor,
            screens: None,
        }
    }

    /// Also answers `screenshot` from what `screens` keeps.
    pub fn with_screens(mut self, screens: Screens) -> Self {
        self.screens = Some(screens);
        self
    }

    /// Answers one request line (without its newline).
    pub fn handle_line(&self, line: &[u8]) -> Reply {
        if line.len() > MAX_REQUEST_LINE {
            return Reply::error(format!(
                "request line of {} bytes is longer than the {MAX_REQUEST_LINE}-byte limit",
                line.len()
            ));
        }
        let request: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => return Reply::error(describe_parse_error(line, &e)),
        };
        match self.handle(request) {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::error(e),
        }
    }

    /// Answers one request.
    pub fn handle(&self, request: Request) -> Result<Value, String> {
        match request {
            Request::Stats {} => to_value(&self.stats()),
            Request::List {
                owner,
                state,
                limit,
            } => self.list(owner.as_deref(), state.as_deref(), limit),
            Request::Purge { owner } => {
                self.shrink_for("admin-purge", owner.as_deref(), PURGE_ONLY)
            }
            Request::Shrink { bytes, mode, owner } => {
                let mode = match mode.as_deref() {
                    None | Some("lazy") => ShrinkMode::Lazy,
                    Some("writeback") => ShrinkMode::Writeback,
                    Some(other) => {
                        return Err(format!("shrink mode {other:?} is not lazy or writeback"))
                    }
                };
                self.shrink_for(
                    "admin-shrink",
                    owner.as_deref(),
                    ShrinkRequest::new(bytes, mode),
                )
            }
            Request::Evict { region } => self.evict(region.as_deref()),
            Request::SetLimit {
                owner,
                quota,
                soft_limit,
            } => {
                let (id, path) = self.owner(&owner)?;
                if quota.is_none() && soft_limit.is_none() {
                    return Err("set-limit needs quota, soft_limit or both".into());
                }
                let quota = quota.map(|q| q.resolve()).transpose()?;
                let soft = soft_limit.map(|q| q.resolve()).transpose()?;
                if let Some(q) = quota {
                    self.bm.set_quota(id, q).map_err(|e| e.to_string())?;
                }
                if let Some(s) = soft {
                    self.bm.set_soft_limit(id, s).map_err(|e| e.to_string())?;
                }
                let now = self.bm.owner_stats(id).map_err(|e| e.to_string())?;
                log::info!(
                    "admin: {path}: quota {:?}, soft limit {:?}",
                    now.quota,
                    now.soft_limit
                );
                to_value(&SetLimitReply {
                    owner: path,
                    quota: now.quota,
                    soft_limit: now.soft_limit,
                })
            }
            Request::Pressure { trigger, inject } => {
                if let Some(t) = trigger {
                    self.monitor.set_trigger(&t)?;
                }
                if inject {
                    self.monitor.inject()?;
                }
                to_value(&pressure_reply(&self.monitor.status()))
            }
            Request::Metrics {} => to_value(&MetricsReply {
                text: metrics::render(&self.stats()),
            }),
            Request::Screenshot { scanout } => {
                use base64::Engine;
                let screens = self
                    .screens
                    .as_ref()
                    .ok_or("this daemon keeps no screens")?;
                let scanout = scanout.unwrap_or(0);
                let (frame, png) = screens.png(scanout).map_err(|e| e.to_string())?;
                to_value(&ScreenshotReply {
                    scanout,
                    width: frame.width,
                    height: frame.height,
                    updates: frame.updates,
                    png_base64: base64::engine::general_purpose::STANDARD.encode(png),
                })
            }
        }
    }

    /// The `stats` reply.
    pub fn stats(&self) -> StatsReply {
        let stats = self.bm.stats();
        let paths = owner_paths(&stats);
        let region_names: Vec<String> = stats.regions.iter().map(|r| r.info.name.clone()).collect();
        StatsReply {
            driver: stats.driver.clone(),
            uptime_s: self.bm.uptime_s(),
            objects: stats.objects as u64,
            regions: stats
                .regions
                .iter()
                .map(|r| RegionRow {
                    name: r.info.name.clone(),
                    class: class_name(r.info.class).into(),
                    emulated: r.info.emulated,
                    capacity: r.info.capacity,
                    used: r.used,
                    placed: r.placed,
                    resident: r.resident,
                    purgeable: r.purgeable,
                    cached: r.cached,
                })
                .collect(),
            owners: ordered(&stats, &paths)
                .into_iter()
                .map(|o| owner_row(o, &paths, &region_names))
                .collect(),
            pressure: pressure_reply(&self.monitor.status()),
        }
    }

    /// Shrinks through the monitor handle (so it is recorded), optionally
    /// limited to one owner; the record is the reply.
    fn shrink_for(
        &self,
        trigger: &str,
        owner: Option<&str>,
        request: ShrinkRequest,
    ) -> Result<Value, String> {
        let owner = owner.map(|o| self.owner(o)).transpose()?;
        let trigger = match &owner {
            Some((_, path)) => format!("{trigger}:{path}"),
            None => trigger.to_string(),
        };
        let record = self.monitor.shrink(
            &trigger,
            &ShrinkRequest {
                owner: owner.map(|o| o.0),
                ..request
            },
        );
        to_value(&shrink_row(&record))
    }

    fn list(
        &self,
        owner: Option<&str>,
        state: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Value, String> {
        let owner = owner.map(|o| self.owner(o)).transpose()?;
        let madv = state
            .map(|s| match s {
                "willneed" => Ok(Madv::WillNeed),
                "dontneed" => Ok(Madv::DontNeed),
                "purged" => Ok(Madv::Purged),
                other => Err(format!(
                    "state {other:?} is not willneed, dontneed or purged"
                )),
            })
            .transpose()?;
        let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit > MAX_LIST_LIMIT {
            return Err(format!(
                "limit {limit} is above the most a list returns ({MAX_LIST_LIMIT})"
            ));
        }
        let all = self.bm.list_objects(ObjectFilter {
            owner: owner.map(|o| o.0),
            madv,
        });
        let stats = self.bm.stats();
        let paths = owner_paths(&stats);
        let region_name = |id: RegionId| {
            stats
                .regions
                .get(usize::from(id.0))
                .map_or_else(|| id.to_string(), |r| r.info.name.clone())
        };
        let left_off = all.len().saturating_sub(limit) as u64;
        let objects = all
            .into_iter()
            .take(limit)
            .map(|o| ObjectRow {
                id: o.id.to_string(),
                owner: paths
                    .get(&o.owner)
                    .cloned()
                    .unwrap_or_else(|| o.owner.to_string()),
                size: o.size,
                placement: o.placement.iter().map(|p| region_name(p.region)).collect(),
                region: o.region.map(region_name),
                state: o.madv.name().into(),
                pinned: o.pinned,
                busy: o.busy,
                swapped: o.swapped,
                age_s: o.age_s,
            })
            .collect();
        to_value(&ListReply { objects, left_off })
    }

    fn evict(&self, region: Option<&str>) -> Result<Value, String> {
        let regions = self.bm.regions();
        let chosen: Vec<&RegionInfo> = match region {
            Some(name) => {
                let r = regions.iter().find(|r| r.name == name).ok_or_else(|| {
                    format!(
                        "no region {name:?} (regions: {})",
                        regions
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                if r.class == MemoryClass::System {
                    return Err(format!(
                        "{name} is system memory; evict empties device regions into it"
                    ));
                }
                vec![r]
            }
            None => regions
                .iter()
                .filter(|r| r.class != MemoryClass::System)
                .collect(),
        };
        let mut reply = EvictReply {
            regions: Vec::new(),
            moved_objects: 0,
            moved_bytes: 0,
            skipped: 0,
        };
        for r in chosen {
            let report = self.bm.evict_region(r.id);
            log::info!(
                "admin: evicted {} objects ({} B) from {}, {} left",
                report.moved_objects,
                report.moved_bytes,
                r.name,
                report.skipped
            );
            reply.regions.push(r.name.clone());
            reply.moved_objects += report.moved_objects;
            reply.moved_bytes += report.moved_bytes;
            reply.skipped += report.skipped;
        }
        to_value(&reply)
    }

    /// Resolves an owner by path, unique name, id (`owner7`, `7`) or `host`.
    fn owner(&self, spec: &str) -> Result<(OwnerId, String), String> {
        let stats = self.bm.stats();
        let paths = owner_paths(&stats);
        let by_id = spec
            .strip_prefix("owner")
            .unwrap_or(spec)
            .parse::<u32>()
            .ok()
            .and_then(|n| paths.iter().find(|(id, _)| id.as_u32() == n));
        if let Some((id, path)) = by_id {
            return Ok((*id, path.clone()));
        }
        if let Some((id, path)) = paths.iter().find(|(_, p)| p.as_str() == spec) {
            return Ok((*id, path.clone()));
        }
        let named: Vec<&OwnerStats> = stats.owners.iter().filter(|o| o.name == spec).collect();
        match named.as_slice() {
            [one] => Ok((one.id, paths.get(&one.id).cloned().unwrap_or_default())),
            [] => Err(format!(
                "no owner {spec:?} (owners: {})",
                paths.values().cloned().collect::<Vec<_>>().join(", ")
            )),
            many => Err(format!(
                "owner name {spec:?} is ambiguous: {}",
                many.iter()
                    .filter_map(|o| paths.get(&o.id).cloned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| format!("encoding the reply failed: {e}"))
}

/// An error message that names the problem with a request line.
fn describe_parse_error(line: &[u8], e: &serde_json::Error) -> String {
    if std::str::from_utf8(line).is_err() {
        return "request is not UTF-8 text".into();
    }
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON: {e}")
        }
        serde_json::error::Category::Data => format!("bad request: {e}"),
        serde_json::error::Category::Io => format!("reading the request failed: {e}"),
    }
}

fn class_name(c: MemoryClass) -> &'static str {
    match c {
        MemoryClass::System => "system",
        MemoryClass::Device => "device",
    }
}

/// Every owner's path: `host`, `vm1`, `vm1/ctx2:mesa`.
pub fn owner_paths(stats: &ManagerStats) -> BTreeMap<OwnerId, String> {
    let by_id: BTreeMap<OwnerId, &OwnerStats> = stats.owners.iter().map(|o| (o.id, o)).collect();
    let mut paths = BTreeMap::new();
    for o in &stats.owners {
        let mut parts = Vec::new();
        let mut cur = Some(o);
        // Bounded by the number of owners, in case of a cycle.
        for _ in 0..=stats.owners.len() {
            let Some(c) = cur else { break };
            if c.parent.is_none() {
                break;
            }
            parts.push(c.name.as_str());
            cur = c.parent.and_then(|p| by_id.get(&p).copied());
        }
        parts.reverse();
        let path = if parts.is_empty() {
            o.name.clone()
        } else {
            parts.join("/")
        };
        paths.insert(o.id, path);
    }
    paths
}

/// Owners sorted by path, so children follow their parent.
fn ordered<'a>(stats: &'a ManagerStats, paths: &BTreeMap<OwnerId, String>) -> Vec<&'a OwnerStats> {
    let mut v: Vec<&OwnerStats> = stats.owners.iter().collect();
    v.sort_by_key(|o| {
        (
            o.parent.is_some(),
            paths.get(&o.id).cloned().unwrap_or_default(),
        )
    });
    v
}

fn owner_row(o: &OwnerStats, paths: &BTreeMap<OwnerId, String>, regions: &[String]) -> OwnerRow {
    OwnerRow {
        id: o.id.as_u32(),
        path: paths.get(&o.id).cloned().unwrap_or_else(|| o.name.clone()),
        objects: o.objects,
        charged: o.charged,
        placed: regions
            .iter()
            .zip(&o.placed)
            .map(|(name, bytes)| (name.clone(), *bytes))
            .collect(),
        resident: regions
            .iter()
            .zip(&o.resident)
            .map(|(name, bytes)| (name.clone(), *bytes))
            .collect(),
        purgeable: o.purgeable,
        pinned: o.pinned,
        purged_objects: o.purged_objects,
        purged_bytes: o.purged_bytes,
        hinted_bytes: o.hinted_bytes,
        written_back_bytes: o.written_back_bytes,
        scratch_bytes: o.scratch_bytes,
        scratch_reserved: o.scratch_reserved,
        quota: o.quota,
        soft_limit: o.soft_limit,
    }
}

fn shrink_row(r: &ShrinkRecord) -> ShrinkRow {
    ShrinkRow {
        at_unix_ms: r.at_unix_ms,
        trigger: r.trigger.clone(),
        target: r.target,
        mode: r.mode.map_or("purge-only", |m| m.name()).into(),
        purged_bytes: r.purged_bytes,
        purged_objects: r.purged_objects,
        hinted_bytes: r.hinted_bytes,
        written_back_bytes: r.written_back_bytes,
        cache_bytes: r.cache_bytes,
        scratch_bytes: r.scratch_bytes,
        scanned: r.scanned,
        skipped: r.skipped,
        duration_us: r.duration_us,
    }
}

fn pressure_reply(s: &MonitorStatus) -> PressureReply {
    PressureReply {
        running: s.running,
        sources: s
            .sources
            .iter()
            .map(|a| SourceRow {
                kind: a.info.kind.clone(),
                path: a.info.path.clone(),
                trigger: a.info.trigger.clone(),
                description: a.description.clone(),
                signals: a.signals,
            })
            .collect(),
        notes: s.notes.clone(),
        events: s.events,
        streak: s.streak,
        shrinks: s.shrinks.clone(),
        freed_bytes: s.freed_bytes,
        recent: s.recent.iter().map(shrink_row).collect(),
    }
}
