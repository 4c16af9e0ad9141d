//! `vgpuctl --all`: every daemon on the host at once — one per VM, as the
//! systemd units and libvirt run them — found by their admin sockets
//! (`*.admin`) in the runtime directory. `stats` becomes one table for
//! the host; `shrink SIZE` frees SIZE in total, asking the daemons in turn
//! (most charged first) for what is still missing; every other command
//! runs on each daemon and prints its answer under the socket's name.

use std::path::{Path, PathBuf};

use vgpu_device::admin::protocol::{MetricsReply, ShrinkRow, StatsReply};
use vgpu_device::admin::{AdminClient, ClientError, Request};

use crate::table::{bytes, Table};

/// The admin sockets under `dir`, sorted.
pub fn sockets(dir: &Path) -> Result<Vec<PathBuf>, ClientError> {
    use std::os::unix::fs::FileTypeExt;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ClientError::Refused(format!("{}: {e}", dir.display())))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "admin"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(ClientError::Refused(format!(
            "no vgpu admin socket (*.admin) in {}",
            dir.display()
        )));
    }
    Ok(found)
}

fn name(socket: &Path) -> String {
    socket
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".admin").to_string())
        .unwrap_or_default()
}

/// Every daemon's `stats` as one host table.
pub fn stats(
    sockets: &[PathBuf],
    connect: &dyn Fn(&Path) -> Result<AdminClient, ClientError>,
) -> String {
    let mut t = Table::new(&[
        "daemon",
        "driver",
        "up",
        "VMs",
        "objects",
        "charged",
        "resident",
        "purgeable",
    ]);
    let (mut objects, mut charged, mut resident, mut purgeable) = (0u64, 0u64, 0u64, 0u64);
    let mut problems = String::new();
    for s in sockets {
        let reply = connect(s).and_then(|mut c| c.call::<StatsReply>(&Request::Stats {}));
        match reply {
            Ok(r) => {
                let vms: Vec<_> = r
                    .owners
                    .iter()
                    .filter(|o| o.path != "host" && !o.path.contains('/'))
                    .collect();
                let c: u64 = vms.iter().map(|o| o.charged).sum();
                let res: u64 = vms.iter().flat_map(|o| o.resident.values()).sum();
                let p: u64 = vms.iter().map(|o| o.purgeable).sum();
                objects += r.objects;
                charged += c;
                resident += res;
                purgeable += p;
                t.row(vec![
                    name(s),
                    r.driver.clone(),
                    format!("{} s", r.uptime_s),
                    vms.iter()
                        .map(|o| o.path.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    r.objects.to_string(),
                    bytes(c),
                    bytes(res),
                    bytes(p),
                ]);
            }
            Err(e) => problems.push_str(&format!("{}: {e}\n", s.display())),
        }
    }
    t.row(vec![
        format!("host ({} daemons)", sockets.len()),
        String::new(),
        String::new(),
        String::new(),
        objects.to_string(),
        bytes(charged),
        bytes(resident),
        bytes(purgeable),
    ]);
    format!("{}{problems}", t.render())
}

/// Frees `target` bytes in total over every daemon, most charged first.
pub fn shrink(
    sockets: &[PathBuf],
    target: u64,
    mode: Option<String>,
    connect: &dyn Fn(&Path) -> Result<AdminClient, ClientError>,
    show: &dyn Fn(&ShrinkRow) -> String,
) -> String {
    let mut order: Vec<(u64, &PathBuf)> = sockets
        .iter()
        .map(|s| {
            let charged = connect(s)
                .and_then(|mut c| c.call::<StatsReply>(&Request::Stats {}))
                .map(|r| {
                    r.owners
                        .iter()
                        .filter(|o| o.path != "host" && !o.path.contains('/'))
                        .map(|o| o.charged)
                        .sum()
                })
                .unwrap_or(0);
            (charged, s)
        })
        .collect();
    order.sort_by_key(|o| std::cmp::Reverse(o.0));
    let mut out = String::new();
    let mut freed = 0u64;
    for (_, s) in order {
        if freed >= target {
            break;
        }
        let ask = Request::Shrink {
            bytes: target - freed,
            mode: mode.clone(),
            owner: None,
        };
        match connect(s).and_then(|mut c| c.call::<ShrinkRow>(&ask)) {
            Ok(r) => {
                freed += r.purged_bytes + r.written_back_bytes + r.cache_bytes + r.scratch_bytes;
                out.push_str(&format!("{}: {}", name(s), show(&r)));
            }
            Err(e) => out.push_str(&format!("{}: {e}\n", name(s))),
        }
    }
    out.push_str(&format!(
        "host: freed {} of the {} asked for\n",
        bytes(freed),
        bytes(target)
    ));
    out
}

/// Every daemon's Prometheus exposition as one (see
/// `vgpu_device::admin::metrics::merge`): a daemon that does not answer
/// shows as `vgpu_daemon_up 0`, and the others are still reported.
pub fn metrics(
    sockets: &[PathBuf],
    connect: &dyn Fn(&Path) -> Result<AdminClient, ClientError>,
) -> String {
    let parts: Vec<(String, Option<String>)> = sockets
        .iter()
        .map(|s| {
            let text = connect(s)
                .and_then(|mut c| c.call::<MetricsReply>(&Request::Metrics {}))
                .map(|r| r.text);
            if let Err(e) = &text {
                eprintln!("vgpuctl: {}: {e}", s.display());
            }
            (name(s), text.ok())
        })
        .collect();
    vgpu_device::admin::metrics::merge(&parts)
}

/// Runs `one` on every daemon, each answer under its name.
pub fn each(sockets: &[PathBuf], one: &dyn Fn(&Path) -> Result<String, ClientError>) -> String {
    let mut out = String::new();
    for s in sockets {
        out.push_str(&format!("== {}\n", name(s)));
        match one(s) {
            Ok(text) => out.push_str(&text),
            Err(e) => out.push_str(&e.to_string()),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
