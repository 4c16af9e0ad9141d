//! Prometheus text exposition (format 0.0.4) of the `stats` numbers.
//!
//! The numbers are a snapshot taken per request, not long-lived counters
//! registered up front, so they are written directly rather than through a
//! metrics registry crate: the format is a few lines per family, and the
//! one subtle part — label-value escaping — is done and tested here.

use std::fmt::Write;

use super::protocol::StatsReply;

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The whole exposition.
pub fn render(s: &StatsReply) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };

    f.header(
        "vgpu_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    f.sample("vgpu_uptime_seconds", &[], s.uptime_s);
    f.header("vgpu_objects", "gauge", "Live buffer objects.");
    f.sample("vgpu_objects", &[], s.objects);

    type RegionField = fn(&super::protocol::RegionRow) -> Option<u64>;
    let regions: [(&str, &str, RegionField); 6] = [
        (
            "vgpu_region_capacity_bytes",
            "Bytes the region can hold (absent when bounded only by the host).",
            |r| r.capacity,
        ),
        (
            "vgpu_region_used_bytes",
            "Bytes the region has handed out.",
            |r| Some(r.used),
        ),
        (
            "vgpu_region_placed_bytes",
            "Bytes of populated objects placed in the region (their sizes).",
            |r| Some(r.placed),
        ),
        (
            "vgpu_region_resident_bytes",
            "Bytes of the region's objects really in RAM (measured).",
            |r| Some(r.resident),
        ),
        (
            "vgpu_region_purgeable_bytes",
            "Bytes of DONTNEED objects in the region.",
            |r| Some(r.purgeable),
        ),
        (
            "vgpu_region_cached_bytes",
            "Bytes of freed objects' files kept for reuse.",
            |r| Some(r.cached),
        ),
    ];
    for (name, help, get) in regions {
        f.header(name, "gauge", help);
        for r in &s.regions {
            if let Some(v) = get(r) {
                f.sample(name, &[("region", &r.name)], v);
            }
        }
    }

    type OwnerField = fn(&super::protocol::OwnerRow) -> Option<u64>;
    let owners: [(&str, &str, &str, OwnerField); 12] = [
        (
            "vgpu_owner_objects",
            "gauge",
            "Live objects of the owner and its descendants.",
            |o| Some(o.objects),
        ),
        (
            "vgpu_owner_charged_bytes",
            "gauge",
            "Bytes of populated objects (what the quota limits).",
            |o| Some(o.charged),
        ),
        (
            "vgpu_owner_purgeable_bytes",
            "gauge",
            "Bytes of DONTNEED objects.",
            |o| Some(o.purgeable),
        ),
        (
            "vgpu_owner_pinned_bytes",
            "gauge",
            "Bytes of pinned objects.",
            |o| Some(o.pinned),
        ),
        (
            "vgpu_owner_quota_bytes",
            "gauge",
            "Quota (absent when unlimited).",
            |o| o.quota,
        ),
        (
            "vgpu_owner_soft_limit_bytes",
            "gauge",
            "Soft limit (absent when unset).",
            |o| o.soft_limit,
        ),
        (
            "vgpu_owner_purged_objects_total",
            "counter",
            "Objects purged.",
            |o| Some(o.purged_objects),
        ),
        (
            "vgpu_owner_purged_bytes_total",
            "counter",
            "Bytes released by purges.",
            |o| Some(o.purged_bytes),
        ),
        (
            "vgpu_owner_hinted_bytes_total",
            "counter",
            "Resident bytes the shrinker hinted to the kernel.",
            |o| Some(o.hinted_bytes),
        ),
        (
            "vgpu_owner_written_back_bytes_total",
            "counter",
            "Bytes that left RAM through writeback.",
            |o| Some(o.written_back_bytes),
        ),
        (
            "vgpu_owner_scratch_bytes",
            "gauge",
            "Bytes held behind guest mappings of purged buffers (VMs).",
            |o| Some(o.scratch_bytes),
        ),
        (
            "vgpu_owner_scratch_reserved_bytes",
            "gauge",
            "Bytes charged for them (the scratch reservation).",
            |o| Some(o.scratch_reserved),
        ),
    ];
    for (name, kind, help, get) in owners {
        f.header(name, kind, help);
        for o in &s.owners {
            if let Some(v) = get(o) {
                f.sample(name, &[("owner", &o.path)], v);
            }
        }
    }
    f.header(
        "vgpu_owner_resident_bytes",
        "gauge",
        "Bytes of the owner's objects really in RAM per region (measured).",
    );
    for o in &s.owners {
        for (region, v) in &o.resident {
            f.sample(
                "vgpu_owner_resident_bytes",
                &[("owner", &o.path), ("region", region)],
                *v,
            );
        }
    }

    let p = &s.pressure;
    f.header(
        "vgpu_pressure_events_total",
        "counter",
        "Memory-pressure events seen by the monitor.",
    );
    f.sample("vgpu_pressure_events_total", &[], p.events);
    f.header(
        "vgpu_pressure_source_signals_total",
        "counter",
        "Pressure signals each watched source gave.",
    );
    for src in &p.sources {
        f.sample(
            "vgpu_pressure_source_signals_total",
            &[
                ("source", &src.kind),
                ("path", &src.path),
                ("trigger", &src.trigger),
            ],
            src.signals,
        );
    }
    f.header(
        "vgpu_pressure_streak",
        "gauge",
        "Consecutive windows with memory pressure.",
    );
    f.sample("vgpu_pressure_streak", &[], u64::from(p.streak));
    f.header(
        "vgpu_shrinks_total",
        "counter",
        "Shrinks, by what asked for them.",
    );
    for (trigger, n) in &p.shrinks {
        f.sample("vgpu_shrinks_total", &[("trigger", trigger)], *n);
    }
    f.header(
        "vgpu_shrink_freed_bytes_total",
        "counter",
        "Bytes released by all shrinks.",
    );
    f.sample("vgpu_shrink_freed_bytes_total", &[], p.freed_bytes);
    out
}

/// Several daemons' expositions as one (what `vgpuctl --all metrics`
/// prints, one scrape for the host): each family once, in the order first
/// seen, every sample labelled `daemon="NAME"`; `vgpu_daemon_up` says
/// which daemons answered (`None`: it did not, and has no samples).
pub fn merge(daemons: &[(String, Option<String>)]) -> String {
    /// One family: its first HELP and TYPE lines, every daemon's samples.
    #[derive(Default)]
    struct Merged {
        help: Option<String>,
        kind: Option<String>,
        samples: Vec<String>,
    }
    let mut order: Vec<&str> = Vec::new();
    let mut families: std::collections::HashMap<&str, Merged> = Default::default();
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.header(
        "vgpu_daemon_up",
        "gauge",
        "Whether the daemon answered its admin socket (1) or not (0).",
    );
    for (name, text) in daemons {
        f.sample(
            "vgpu_daemon_up",
            &[("daemon", name)],
            u64::from(text.is_some()),
        );
    }
    for (daemon, text) in daemons {
        let Some(text) = text else { continue };
        let label = format!("daemon=\"{}\"", escape_label(daemon));
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (name, sample) = match (line.strip_prefix("# HELP "), line.strip_prefix("# TYPE "))
            {
                (Some(rest), _) | (_, Some(rest)) => {
                    (rest.split(' ').next().unwrap_or_default(), None)
                }
                _ if line.starts_with('#') => continue,
                _ => {
                    let end = line.find(['{', ' ']).unwrap_or(line.len());
                    let (name, rest) = line.split_at(end);
                    let labelled = match rest.strip_prefix('{') {
                        Some(labels) if labels.starts_with('}') => {
                            format!("{name}{{{label}{labels}")
                        }
                        Some(labels) => format!("{name}{{{label},{labels}"),
                        None => format!("{name}{{{label}}}{rest}"),
                    };
                    (name, Some(labelled))
                }
            };
            let family = families.entry(name).or_insert_with(|| {
                order.push(name);
                Merged::default()
            });
            match sample {
                Some(s) => family.samples.push(s),
                None if line.starts_with("# HELP ") => {
                    family.help.get_or_insert_with(|| line.to_string());
                }
                None => {
                    family.kind.get_or_insert_with(|| line.to_string());
                }
            }
        }
    }
    for name in order {
        let m = &families[name];
        for l in m.help.iter().chain(&m.kind).chain(&m.samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Writes `text` to `path` for node_exporter's textfile collector: into a
/// temporary file beside it, then renamed over it, so a scrape never reads
/// half a file.
pub fn write_textfile(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::protocol::{OwnerRow, PressureReply, RegionRow};

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    fn sample_stats() -> StatsReply {
        StatsReply {
            driver: "emulated".into(),
            uptime_s: 5,
            objects: 2,
            regions: vec![RegionRow {
                name: "system".into(),
                class: "system".into(),
                emulated: false,
                capacity: None,
                used: 8192,
                placed: 8192,
                resident: 8192,
                purgeable: 4096,
                cached: 0,
            }],
            owners: vec![OwnerRow {
                id: 1,
                path: "vm1/ctx1:\"odd\"".into(),
                objects: 2,
                charged: 8192,
                placed: [("system".to_string(), 8192)].into(),
                resident: [("system".to_string(), 8192)].into(),
                purgeable: 4096,
                pinned: 0,
                purged_objects: 1,
                purged_bytes: 4096,
                hinted_bytes: 0,
                written_back_bytes: 0,
                scratch_bytes: 0,
                scratch_reserved: 0,
                quota: Some(1 << 30),
                soft_limit: None,
            }],
            pressure: PressureReply::default(),
        }
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let text = render(&sample_stats());
        assert!(text.contains("vgpu_owner_purgeable_bytes{owner=\"vm1/ctx1:\\\"odd\\\"\"} 4096"));
        assert!(
            !text.contains("vgpu_region_capacity_bytes{"),
            "no capacity sample for system"
        );
        assert!(
            !text.contains("vgpu_owner_soft_limit_bytes{"),
            "no soft-limit sample when unset"
        );
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP vgpu_") || line.starts_with("# TYPE vgpu_"),
                    "{line}"
                );
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
            let metric = name.split('{').next().unwrap();
            assert!(
                metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(
                text.contains(&format!("# TYPE {metric} ")),
                "{line} has a TYPE"
            );
        }
    }

    #[test]
    fn merged_expositions_have_each_family_once_and_a_daemon_label() {
        let a = "# HELP vgpu_objects Live buffer objects.\n# TYPE vgpu_objects gauge\nvgpu_objects 3\n\
                 # HELP vgpu_owner_objects O.\n# TYPE vgpu_owner_objects gauge\nvgpu_owner_objects{owner=\"vm1\"} 2\n";
        let b =
            "# HELP vgpu_objects Live buffer objects.\n# TYPE vgpu_objects gauge\nvgpu_objects 5\n";
        let out = merge(&[
            ("vm1".into(), Some(a.into())),
            ("we\"ird".into(), Some(b.into())),
            ("gone".into(), None),
        ]);
        assert_eq!(
            out,
            "# HELP vgpu_daemon_up Whether the daemon answered its admin socket (1) or not (0).\n\
             # TYPE vgpu_daemon_up gauge\n\
             vgpu_daemon_up{daemon=\"vm1\"} 1\n\
             vgpu_daemon_up{daemon=\"we\\\"ird\"} 1\n\
             vgpu_daemon_up{daemon=\"gone\"} 0\n\
             # HELP vgpu_objects Live buffer objects.\n\
             # TYPE vgpu_objects gauge\n\
             vgpu_objects{daemon=\"vm1\"} 3\n\
             vgpu_objects{daemon=\"we\\\"ird\"} 5\n\
             # HELP vgpu_owner_objects O.\n\
             # TYPE vgpu_owner_objects gauge\n\
             vgpu_owner_objects{daemon=\"vm1\",owner=\"vm1\"} 2\n"
        );
    }

    #[test]
    fn a_real_exposition_merges_into_valid_lines() {
        let text = render(&sample_stats());
        let out = merge(&[("d".into(), Some(text.clone()))]);
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        let merged: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("vgpu_daemon_up"))
            .collect();
        assert_eq!(merged.len(), samples);
        assert!(merged.iter().all(|l| l.contains("{daemon=\"d\"")), "{out}");
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("vgpu-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vgpu.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        assert!(write_textfile(&dir.join("missing/x.prom"), "").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
