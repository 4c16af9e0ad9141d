//! `vgpuctl`: the vgpu admin CLI. Talks to the daemon's admin socket; see
//! `vgpuctl --help`.

mod table;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vgpu_device::admin::protocol::{
    EvictReply, ListReply, MetricsReply, PressureReply, ScreenshotReply, SetLimitReply, ShrinkRow,
    StatsReply,
};
use vgpu_device::admin::{AdminClient, ClientError, Request};
use vgpu_device::ctl_cli::{Args, Command};

use table::{bytes, limit, Table};

mod all;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vgpuctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn request(args: &Args) -> Request {
    match &args.command {
        Command::Stats => Request::Stats {},
        Command::List {
            owner,
            state,
            limit,
        } => Request::List {
            owner: owner.clone(),
            state: state.clone(),
            limit: Some(*limit),
        },
        Command::Purge { owner } => Request::Purge {
            owner: owner.clone(),
        },
        Command::Shrink { size, mode, owner } => Request::Shrink {
            bytes: *size,
            mode: Some(mode.clone()),
            owner: owner.clone(),
        },
        Command::Evict { region } => Request::Evict {
            region: region.clone(),
        },
        Command::SetLimit {
            owner,
            quota,
            soft_limit,
        } => Request::SetLimit {
            owner: owner.clone(),
            quota: quota.clone(),
            soft_limit: soft_limit.clone(),
        },
        Command::Pressure { trigger, inject } => Request::Pressure {
            trigger: trigger.clone(),
            inject: *inject,
        },
        Command::Metrics { .. } => Request::Metrics {},
        Command::Screenshot { scanout, .. } => Request::Screenshot {
            scanout: Some(*scanout),
        },
    }
}

fn run(args: &Args) -> Result<String, ClientError> {
    if let Command::SetLimit {
        quota: None,
        soft_limit: None,
        ..
    } = &args.command
    {
        return Err(ClientError::Refused(
            "set-limit needs --quota, --soft-limit or both".into(),
        ));
    }
    let text = if args.all {
        run_all(args)?
    } else {
        run_one(args, &args.socket)?
    };
    match &args.command {
        Command::Metrics {
            textfile: Some(path),
        } => {
            vgpu_device::admin::metrics::write_textfile(path, &text)
                .map_err(|e| ClientError::Refused(format!("writing {}: {e}", path.display())))?;
            Ok(String::new())
        }
        _ => Ok(text),
    }
}

fn connect(args: &Args, socket: &Path) -> Result<AdminClient, ClientError> {
    AdminClient::connect_with_timeout(socket, Duration::from_secs(args.timeout))
}

fn run_all(args: &Args) -> Result<String, ClientError> {
    let connect = |s: &Path| connect(args, s);
    if let Command::Metrics { .. } = &args.command {
        // No daemon left is a valid (empty) scrape, not an error: a stale
        // textfile would report VMs that are gone.
        let sockets = all::sockets(&args.runtime_dir).or_else(|e| {
            if args.runtime_dir.is_dir() {
                Ok(Vec::new())
            } else {
                Err(e)
            }
        })?;
        return Ok(all::metrics(&sockets, &connect));
    }
    let sockets = all::sockets(&args.runtime_dir)?;
    Ok(match &args.command {
        Command::Stats if !args.json => all::stats(&sockets, &connect),
        Command::Shrink {
            size,
            mode,
            owner: None,
        } if !args.json => all::shrink(&sockets, *size, Some(mode.clone()), &connect, &show_shrink),
        Command::Screenshot { .. } => {
            return Err(ClientError::Refused(
                "screenshot takes one daemon: give its --socket instead of --all".into(),
            ))
        }
        _ => all::each(&sockets, &|s| run_one(args, s)),
    })
}

fn run_one(args: &Args, socket: &Path) -> Result<String, ClientError> {
    let mut client = connect(args, socket)?;
    let value = client.request(&request(args))?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&value)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        text.push('\n');
        return Ok(text);
    }
    Ok(match &args.command {
        Command::Stats => show_stats(&decode(value)?),
        Command::List { .. } => show_list(&decode(value)?),
        Command::Purge { .. } | Command::Shrink { .. } => show_shrink(&decode(value)?),
        Command::Evict { .. } => {
            let r: EvictReply = decode(value)?;
            format!(
                "moved {} objects ({}) from {} to system memory; {} left in place\n",
                r.moved_objects,
                bytes(r.moved_bytes),
                if r.regions.is_empty() {
                    "no device region".to_string()
                } else {
                    r.regions.join(", ")
                },
                r.skipped
            )
        }
        Command::SetLimit { .. } => {
            let r: SetLimitReply = decode(value)?;
            format!(
                "{}: quota {}, soft limit {}\n",
                r.owner,
                limit(r.quota),
                limit(r.soft_limit)
            )
        }
        Command::Pressure { .. } => show_pressure(&decode(value)?),
        Command::Metrics { .. } => {
            let r: MetricsReply = decode(value)?;
            r.text
        }
        Command::Screenshot { output, .. } => {
            use base64::Engine;
            let r: ScreenshotReply = decode(value)?;
            let png = base64::engine::general_purpose::STANDARD
                .decode(r.png_base64.as_bytes())
                .map_err(|e| ClientError::Protocol(format!("the PNG is not base64: {e}")))?;
            std::fs::write(output, &png)
                .map_err(|e| ClientError::Refused(format!("writing {}: {e}", output.display())))?;
            format!(
                "scanout {}: {}x{} ({} updates) written to {} ({})\n",
                r.scanout,
                r.width,
                r.height,
                r.updates,
                output.display(),
                bytes(png.len() as u64)
            )
        }
    })
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
}

fn show_stats(s: &StatsReply) -> String {
    let mut out = format!(
        "driver {}, up {} s, {} objects\n\nREGIONS\n",
        s.driver, s.uptime_s, s.objects
    );
    out.push_str(&regions_table(s).render());
    out.push_str("\nOWNERS (resident bytes per region, measured)\n");
    out.push_str(&owners_table(s).render());
    out.push('\n');
    out.push_str(&show_pressure(&s.pressure));
    out
}

fn regions_table(s: &StatsReply) -> Table {
    let mut t = Table::new(&[
        "region",
        "class",
        "capacity",
        "used",
        "placed",
        "resident",
        "purgeable",
        "cached",
    ]);
    for r in &s.regions {
        let class = if r.emulated {
            format!("{} (emulated)", r.class)
        } else {
            r.class.clone()
        };
        t.row(vec![
            r.name.clone(),
            class,
            limit(r.capacity),
            bytes(r.used),
            bytes(r.placed),
            bytes(r.resident),
            bytes(r.purgeable),
            bytes(r.cached),
        ]);
    }
    t
}

fn owners_table(s: &StatsReply) -> Table {
    let regions: Vec<&str> = s.regions.iter().map(|r| r.name.as_str()).collect();
    let mut header = vec!["owner", "objects", "charged"];
    header.extend(regions.iter().copied());
    header.extend([
        "purgeable",
        "pinned",
        "purged",
        "hinted",
        "written-back",
        "scratch",
        "quota",
        "soft-limit",
    ]);
    let mut t = Table::new(&header);
    for o in &s.owners {
        let mut row = vec![o.path.clone(), o.objects.to_string(), bytes(o.charged)];
        row.extend(
            regions
                .iter()
                .map(|r| bytes(o.resident.get(*r).copied().unwrap_or(0))),
        );
        row.extend([
            bytes(o.purgeable),
            bytes(o.pinned),
            bytes(o.purged_bytes),
            bytes(o.hinted_bytes),
            bytes(o.written_back_bytes),
            if o.scratch_reserved == 0 && o.scratch_bytes == 0 {
                "-".into()
            } else {
                format!("{}/{}", bytes(o.scratch_bytes), bytes(o.scratch_reserved))
            },
            limit(o.quota),
            limit(o.soft_limit),
        ]);
        t.row(row);
    }
    t
}

fn show_pressure(p: &PressureReply) -> String {
    let mut out = String::from("PRESSURE\n");
    if !p.running {
        out.push_str("watching no pressure source (--pressure-source none): soft limits, quotas and admin requests still shrink\n");
    }
    for src in &p.sources {
        out.push_str(&format!(
            "watching {} [{} signals]\n",
            src.description, src.signals
        ));
    }
    for n in &p.notes {
        out.push_str(&format!("not watching {n}\n"));
    }
    out.push_str(&format!(
        "events {}, streak {}, freed {} by {} shrinks\n",
        p.events,
        p.streak,
        bytes(p.freed_bytes),
        p.shrinks.values().sum::<u64>()
    ));
    if !p.recent.is_empty() {
        out.push_str("\nRECENT SHRINKS\n");
        out.push_str(&shrinks_table(p).render());
    }
    out
}

fn shrinks_table(p: &PressureReply) -> Table {
    let mut t = Table::new(&[
        "trigger",
        "mode",
        "target",
        "purged",
        "hinted",
        "written-back",
        "cache+scratch",
        "scanned",
        "skipped",
        "time",
    ]);
    for r in p.recent.iter().rev().take(10) {
        t.row(vec![
            r.trigger.clone(),
            r.mode.clone(),
            if r.target == u64::MAX {
                "all".into()
            } else {
                bytes(r.target)
            },
            bytes(r.purged_bytes),
            bytes(r.hinted_bytes),
            bytes(r.written_back_bytes),
            bytes(r.cache_bytes + r.scratch_bytes),
            r.scanned.to_string(),
            r.skipped.to_string(),
            format!("{} us", r.duration_us),
        ]);
    }
    t
}

fn show_shrink(r: &ShrinkRow) -> String {
    format!(
        "freed {} ({} purged from {} objects, {} written back, {} of buffer cache, {} of scratch); hinted {} to the kernel; scanned {}, skipped {} in {} us\n",
        bytes(r.purged_bytes + r.written_back_bytes + r.cache_bytes + r.scratch_bytes),
        bytes(r.purged_bytes),
        r.purged_objects,
        bytes(r.written_back_bytes),
        bytes(r.cache_bytes),
        bytes(r.scratch_bytes),
        bytes(r.hinted_bytes),
        r.scanned,
        r.skipped,
        r.duration_us
    )
}

fn show_list(l: &ListReply) -> String {
    let mut out = objects_table(l).render();
    if l.left_off > 0 {
        out.push_str(&format!("({} more not shown; use --limit)\n", l.left_off));
    }
    out
}

fn objects_table(l: &ListReply) -> Table {
    let mut t = Table::new(&[
        "id",
        "owner",
        "size",
        "placement",
        "region",
        "state",
        "pinned",
        "busy",
        "swapped",
        "age",
    ]);
    for o in &l.objects {
        t.row(vec![
            o.id.clone(),
            o.owner.clone(),
            bytes(o.size),
            o.placement.join(","),
            o.region.clone().unwrap_or_else(|| "-".into()),
            o.state.clone(),
            o.pinned.to_string(),
            yes(o.busy),
            yes(o.swapped),
            format!("{}s", o.age_s),
        ]);
    }
    t
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vgpu_device::admin::protocol::{ObjectRow, OwnerRow, RegionRow, SourceRow};

    const M: u64 = 1 << 20;

    fn region(name: &str, class: &str, emulated: bool, capacity: Option<u64>) -> RegionRow {
        RegionRow {
            name: name.into(),
            class: class.into(),
            emulated,
            capacity,
            used: 64 * M,
            placed: 64 * M,
            resident: 60 * M,
            purgeable: 8 * M,
            cached: 4 * M,
        }
    }

    fn owner(path: &str, quota: Option<u64>, scratch: (u64, u64)) -> OwnerRow {
        let resident: BTreeMap<String, u64> =
            [("system".into(), 71 * M), ("device0".into(), 60 * M)]
                .into_iter()
                .collect();
        OwnerRow {
            id: 1,
            path: path.into(),
            objects: 40,
            charged: 164 * M,
            placed: resident.clone(),
            resident,
            purgeable: 40 * M,
            pinned: 8 * M,
            purged_objects: 3,
            purged_bytes: 12 * M,
            hinted_bytes: 16 * M,
            written_back_bytes: 0,
            scratch_bytes: scratch.0,
            scratch_reserved: scratch.1,
            quota,
            soft_limit: Some(2 << 30),
        }
    }

    fn shrink(trigger: &str, target: u64) -> ShrinkRow {
        ShrinkRow {
            at_unix_ms: 1,
            trigger: trigger.into(),
            target,
            mode: "lazy".into(),
            purged_bytes: 12 * M,
            purged_objects: 3,
            hinted_bytes: 0,
            written_back_bytes: 0,
            cache_bytes: M,
            scratch_bytes: 0,
            scanned: 40,
            skipped: 1,
            duration_us: 250,
        }
    }

    fn stats() -> StatsReply {
        StatsReply {
            driver: "emulated".into(),
            uptime_s: 812,
            objects: 40,
            regions: vec![
                region("system", "system", false, None),
                region("device0", "device", true, Some(256 * M)),
            ],
            owners: vec![
                owner("host", None, (0, 0)),
                owner("vm1", Some(4 << 30), (M, 4 * M)),
            ],
            pressure: PressureReply {
                running: true,
                sources: vec![SourceRow {
                    description: "the host's memory pressure".into(),
                    signals: 3,
                    ..SourceRow::default()
                }],
                recent: vec![shrink("psi", 32 * M), shrink("admin", u64::MAX)],
                ..PressureReply::default()
            },
        }
    }

    fn list() -> ListReply {
        ListReply {
            objects: vec![ObjectRow {
                id: "obj7".into(),
                owner: "vm1/ctx1:mesa".into(),
                size: 4 * M,
                placement: vec!["device".into(), "system".into()],
                region: None,
                state: "dontneed".into(),
                pinned: 1,
                busy: false,
                swapped: true,
                age_s: 12,
            }],
            left_off: 2,
        }
    }

    // The REGIONS table once had 6 column names for 7 cells: the cached
    // figure showed under no header. Every table has one cell per column.
    #[test]
    fn every_row_has_as_many_cells_as_the_header() {
        let s = stats();
        let l = list();
        for (name, t) in [
            ("REGIONS", regions_table(&s)),
            ("OWNERS", owners_table(&s)),
            ("RECENT SHRINKS", shrinks_table(&s.pressure)),
            ("list", objects_table(&l)),
        ] {
            assert!(!t.header().is_empty(), "{name}");
            assert_eq!(t.ragged_rows(), Vec::<usize>::new(), "{name}: {t:?}");
        }
        // One column per region in OWNERS.
        assert_eq!(owners_table(&s).header().len(), 11 + s.regions.len());
    }

    // What the README shows: columns two spaces apart, figures right-aligned.
    #[test]
    fn stats_and_lists_read_as_aligned_columns() {
        assert_eq!(show_stats(&stats()), STATS_TEXT);
        assert_eq!(show_list(&list()), LIST_TEXT);
    }

    const STATS_TEXT: &str = r#"driver emulated, up 812 s, 40 objects

REGIONS
region   class              capacity   used  placed  resident  purgeable  cached
system   system                    -  64.0M   64.0M     60.0M       8.0M    4.0M
device0  device (emulated)    256.0M  64.0M   64.0M     60.0M       8.0M    4.0M

OWNERS (resident bytes per region, measured)
owner  objects  charged  system  device0  purgeable  pinned  purged  hinted  written-back    scratch  quota  soft-limit
host        40   164.0M   71.0M    60.0M      40.0M    8.0M   12.0M   16.0M             0          -      -        2.0G
vm1         40   164.0M   71.0M    60.0M      40.0M    8.0M   12.0M   16.0M             0  1.0M/4.0M   4.0G        2.0G

PRESSURE
watching the host's memory pressure [3 signals]
events 0, streak 0, freed 0 by 0 shrinks

RECENT SHRINKS
trigger  mode  target  purged  hinted  written-back  cache+scratch  scanned  skipped    time
admin    lazy  all      12.0M       0             0           1.0M       40        1  250 us
psi      lazy  32.0M    12.0M       0             0           1.0M       40        1  250 us
"#;

    const LIST_TEXT: &str = r#"id    owner          size  placement      region  state     pinned  busy  swapped  age
obj7  vm1/ctx1:mesa  4.0M  device,system       -  dontneed       1  no    yes      12s
(2 more not shown; use --limit)
"#;
}
