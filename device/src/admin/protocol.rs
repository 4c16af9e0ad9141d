//! The admin protocol: JSON lines over a unix socket, one request and one
//! reply per line. Shared by the daemon's server and `vgpuctl`.
//!
//! A request is an object whose `cmd` names the command:
//!
//! ```text
//! {"cmd":"stats"}
//! {"cmd":"list","owner":"vm1","state":"dontneed","limit":100}
//! {"cmd":"purge","owner":"vm1"}
//! {"cmd":"shrink","bytes":67108864,"mode":"writeback"}
//! {"cmd":"evict","region":"device0"}
//! {"cmd":"set-limit","owner":"vm1","quota":2147483648,"soft_limit":"none"}
//! {"cmd":"pressure","trigger":"some 100000 2000000","inject":true}
//! {"cmd":"metrics"}
//! {"cmd":"screenshot","scanout":0}
//! ```
//!
//! The reply is `{"ok":true,"reply":{…}}` or `{"ok":false,"error":"…"}`.
//! The reply types mirror the buffer manager's stats types on purpose: they
//! are the wire format, changed only with the protocol, and they keep the
//! backend crate free of serde.
//! Owners are named by path (`vm1`, `vm1/ctx2:mesa`), by bare name when
//! unique, by id (`owner7` or `7`), or `host` for the root.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest request line accepted, newline excluded.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Per region and owner numbers, and the pressure monitor.
    Stats {},
    /// Objects, optionally of one owner and in one madvise state.
    List {
        /// Owner (and its descendants).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// `willneed`, `dontneed` or `purged`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        /// Most objects to return (default [`DEFAULT_LIST_LIMIT`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Purge every DONTNEED object now.
    Purge {
        /// Only this owner's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Release `bytes`: purge first, then write back.
    Shrink {
        /// Bytes to release.
        bytes: u64,
        /// `lazy` (default) or `writeback`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        /// Only this owner's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Move device-resident objects to system memory.
    Evict {
        /// The region to empty (default: every device region).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// Set a VM's (or context's) quota and soft limit.
    SetLimit {
        /// Owner.
        owner: String,
        /// New quota (absent: unchanged).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quota: Option<LimitValue>,
        /// New soft limit (absent: unchanged).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        soft_limit: Option<LimitValue>,
    },
    /// Show the pressure monitor; optionally change its trigger or feed it
    /// one pressure event.
    Pressure {
        /// New PSI trigger, `some|full <stall_us> <window_us>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<String>,
        /// Feed the policy one event, as if the source had fired.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        inject: bool,
    },
    /// Prometheus text exposition.
    Metrics {},
    /// What a scanout of the served VM shows, as a PNG.
    Screenshot {
        /// The scanout (default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scanout: Option<u32>,
    },
}

/// `screenshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenshotReply {
    /// The scanout.
    pub scanout: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Display updates applied to this image so far.
    pub updates: u64,
    /// The image: an 8-bit RGB PNG, base64 (standard alphabet).
    pub png_base64: String,
}

/// Objects `list` returns unless told otherwise.
pub const DEFAULT_LIST_LIMIT: usize = 1000;

/// A limit: bytes, or `"none"` to remove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    /// Bytes.
    Bytes(u64),
    /// `"none"`.
    Keyword(String),
}

impl LimitValue {
    /// `Some(bytes)`, or `None` for no limit; an unknown keyword is an error.
    pub fn resolve(&self) -> Result<Option<u64>, String> {
        match self {
            LimitValue::Bytes(b) => Ok(Some(*b)),
            LimitValue::Keyword(k) if k == "none" => Ok(None),
            LimitValue::Keyword(k) => Err(format!(
                "limit {k:?} is neither a number of bytes nor \"none\""
            )),
        }
    }
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The result, when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<serde_json::Value>,
    /// What went wrong, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A success.
    pub fn ok(value: serde_json::Value) -> Self {
        Self {
            ok: true,
            reply: Some(value),
            error: None,
        }
    }

    /// A failure.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            reply: None,
            error: Some(msg.into()),
        }
    }
}

/// `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReply {
    /// Driver behind the regions (`emulated`, …).
    pub driver: String,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// Live objects.
    pub objects: u64,
    /// Memory regions.
    pub regions: Vec<RegionRow>,
    /// Owners, the host root first, children after their parent.
    pub owners: Vec<OwnerRow>,
    /// The pressure monitor.
    pub pressure: PressureReply,
}

/// One region in `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionRow {
    /// Name (`system`, `device0`).
    pub name: String,
    /// `system` or `device`.
    pub class: String,
    /// Whether it is an emulation.
    pub emulated: bool,
    /// Capacity (`None`: bounded only by the host).
    pub capacity: Option<u64>,
    /// Bytes handed out.
    pub used: u64,
    /// Bytes of populated objects placed in it (their sizes).
    #[serde(default)]
    pub placed: u64,
    /// Bytes of those objects really in RAM, measured.
    pub resident: u64,
    /// Bytes of DONTNEED objects.
    pub purgeable: u64,
    /// Bytes of freed objects' files kept for reuse (the buffer cache).
    #[serde(default)]
    pub cached: u64,
}

/// One owner (VM or context) in `stats`; numbers include descendants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRow {
    /// Numeric id.
    pub id: u32,
    /// Path (`host`, `vm1`, `vm1/ctx2:mesa`).
    pub path: String,
    /// Live objects.
    pub objects: u64,
    /// Bytes of populated objects and the scratch reservation (what the
    /// quota limits).
    pub charged: u64,
    /// Bytes of populated objects per region name (their sizes).
    #[serde(default)]
    pub placed: BTreeMap<String, u64>,
    /// Bytes of those objects really in RAM per region name, measured.
    pub resident: BTreeMap<String, u64>,
    /// Bytes of DONTNEED objects.
    pub purgeable: u64,
    /// Bytes of pinned objects.
    pub pinned: u64,
    /// Objects purged so far.
    pub purged_objects: u64,
    /// Bytes released by purges so far.
    pub purged_bytes: u64,
    /// Resident bytes hinted to the kernel (MADV_COLD / MADV_PAGEOUT).
    #[serde(default)]
    pub hinted_bytes: u64,
    /// Bytes that left RAM through writeback so far.
    pub written_back_bytes: u64,
    /// Bytes held now behind guest mappings of purged buffers (VMs only).
    #[serde(default)]
    pub scratch_bytes: u64,
    /// Bytes charged for them (VMs only).
    #[serde(default)]
    pub scratch_reserved: u64,
    /// Quota.
    pub quota: Option<u64>,
    /// Soft limit.
    pub soft_limit: Option<u64>,
}

/// The pressure monitor in `stats` and `pressure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PressureReply {
    /// Whether the monitor runs.
    #[serde(default)]
    pub running: bool,
    /// The sources it watches.
    #[serde(default)]
    pub sources: Vec<SourceRow>,
    /// Why other sources are not watched, or stopped being watched.
    pub notes: Vec<String>,
    /// Pressure signals seen (after coalescing).
    pub events: u64,
    /// Consecutive windows with pressure now.
    pub streak: u32,
    /// Shrinks per trigger kind (every shrink: pressure, soft limits,
    /// quotas, admin requests).
    pub shrinks: BTreeMap<String, u64>,
    /// Bytes released by all shrinks.
    pub freed_bytes: u64,
    /// The last shrinks, oldest first.
    pub recent: Vec<ShrinkRow>,
}

/// One pressure source the monitor watches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRow {
    /// Kind (`psi`, `cgroup-psi`, `systemd`, `cgroup-v1-pressure`,
    /// `cgroup-v1-watermark`, `cgroup-v2-events`, `cgroup-v2-watermark`,
    /// `meminfo`).
    pub kind: String,
    /// File watched.
    pub path: String,
    /// Trigger, level or watermark.
    pub trigger: String,
    /// What it watches, in words.
    pub description: String,
    /// Signals it gave so far.
    pub signals: u64,
}

/// One shrink (also the reply to `purge` and `shrink`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShrinkRow {
    /// When it started, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What asked for it.
    pub trigger: String,
    /// Bytes asked for.
    pub target: u64,
    /// `lazy`, `writeback` or `purge-only`.
    pub mode: String,
    /// Bytes released by purging.
    pub purged_bytes: u64,
    /// Objects purged.
    pub purged_objects: u64,
    /// Resident bytes of WILLNEED buffers hinted to the kernel.
    #[serde(default)]
    pub hinted_bytes: u64,
    /// Bytes that left RAM through writeback.
    pub written_back_bytes: u64,
    /// Bytes released by dropping the buffer cache.
    #[serde(default)]
    pub cache_bytes: u64,
    /// Bytes released by punching scratch files.
    #[serde(default)]
    pub scratch_bytes: u64,
    /// Objects looked at.
    pub scanned: u64,
    /// Objects skipped (pinned, busy, contended).
    pub skipped: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
}

/// `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// Objects, oldest first.
    pub objects: Vec<ObjectRow>,
    /// Objects that matched but were left off by the limit.
    pub left_off: u64,
}

/// One object in `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRow {
    /// Id (`bo12.0`).
    pub id: String,
    /// Owner path.
    pub owner: String,
    /// Bytes.
    pub size: u64,
    /// Acceptable regions, preferred first.
    pub placement: Vec<String>,
    /// Where the bytes are (`None`: not populated, or purged).
    pub region: Option<String>,
    /// `willneed`, `dontneed`, `purged`.
    pub state: String,
    /// Pin count.
    pub pinned: u32,
    /// Covered by an unsignaled fence.
    pub busy: bool,
    /// Pages handed to the kernel by the shrinker.
    pub swapped: bool,
    /// Seconds since creation.
    pub age_s: u64,
}

/// `evict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictReply {
    /// Regions emptied.
    pub regions: Vec<String>,
    /// Objects moved to system memory.
    pub moved_objects: u64,
    /// Bytes moved.
    pub moved_bytes: u64,
    /// Objects left (pinned, busy or contended).
    pub skipped: u64,
}

/// `set-limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLimitReply {
    /// Owner path.
    pub owner: String,
    /// Quota now.
    pub quota: Option<u64>,
    /// Soft limit now.
    pub soft_limit: Option<u64>,
}

/// `metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsReply {
    /// Prometheus text exposition format 0.0.4.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_fields_are_refused() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"shrink","bytes":4096,"mode":"writeback"}"#).unwrap();
        assert_eq!(
            r,
            Request::Shrink {
                bytes: 4096,
                mode: Some("writeback".into()),
                owner: None
            }
        );
        let r: Request = serde_json::from_str(
            r#"{"cmd":"set-limit","owner":"vm1","quota":"none","soft_limit":5}"#,
        )
        .unwrap();
        let Request::SetLimit {
            quota, soft_limit, ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(quota.unwrap().resolve(), Ok(None));
        assert_eq!(soft_limit.unwrap().resolve(), Ok(Some(5)));
        assert!(LimitValue::Keyword("lots".into()).resolve().is_err());
        for bad in [
            r#"{"cmd":"stats","extra":1}"#,
            r#"{"cmd":"fly"}"#,
            r#"{"cmd":"shrink","bytes":"many"}"#,
            r#"{"cmd":"shrink"}"#,
            r#"{"bytes":1}"#,
            r#"[1,2]"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
        // Round trip of every request kind.
        for r in [
            Request::Stats {},
            Request::Metrics {},
            Request::Purge { owner: None },
            Request::Pressure {
                trigger: None,
                inject: true,
            },
            Request::Evict { region: None },
            Request::List {
                owner: Some("vm1".into()),
                state: None,
                limit: Some(3),
            },
        ] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r, "{text}");
        }
    }
}
