//! `vgpuctl --all`: every daemon under a runtime directory at once.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;
use common::wait_for;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const DAEMON: &str = env!("CARGO_BIN_EXE_vhost-user-vgpu");
const VGPUCTL: &str = env!("CARGO_BIN_EXE_vgpuctl");

struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn vgpuctl(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(VGPUCTL)
        .arg("--all")
        .arg("--runtime-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn all_daemons_in_one_table_and_one_shrink() {
    let dir = std::env::temp_dir().join(format!("vgpu-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let daemons = Daemons(
        ["vm1", "vm2"]
            .iter()
            .map(|n| {
                Command::new(DAEMON)
                    .arg("--socket-path")
                    .arg(dir.join(format!("{n}.sock")))
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    for n in ["vm1", "vm2"] {
        wait_for(&dir.join(format!("{n}.sock.admin")));
    }
    let (ok, text) = vgpuctl(&dir, &["stats"]);
    assert!(ok, "{text}");
    for row in ["vm1.sock", "vm2.sock", "host (2 daemons)"] {
        assert!(text.lines().any(|l| l.starts_with(row)), "{row}: {text}");
    }
    let (ok, text) = vgpuctl(&dir, &["shrink", "1M"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("host: freed 0 of the 1.0M asked for"),
        "{text}"
    );
    let (ok, text) = vgpuctl(&dir, &["purge"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("== vm1.sock\nfreed") && text.contains("== vm2.sock\nfreed"),
        "{text}"
    );
    let (ok, text) = vgpuctl(&dir, &["screenshot", "-o", "/dev/null"]);
    assert!(!ok && text.contains("give its --socket"), "{text}");
    // One exposition for Prometheus: each family once, a daemon label.
    let (ok, text) = vgpuctl(&dir, &["metrics"]);
    assert!(ok, "{text}");
    for line in [
        "vgpu_daemon_up{daemon=\"vm1.sock\"} 1",
        "vgpu_daemon_up{daemon=\"vm2.sock\"} 1",
        "vgpu_objects{daemon=\"vm1.sock\"} 0",
        "vgpu_objects{daemon=\"vm2.sock\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    assert_eq!(
        text.matches("# TYPE vgpu_objects gauge").count(),
        1,
        "{text}"
    );
    let prom = dir.join("vgpu.prom");
    let (ok, text) = vgpuctl(&dir, &["metrics", "--textfile", prom.to_str().unwrap()]);
    assert!(ok, "{text}");
    let written = std::fs::read_to_string(&prom).unwrap();
    assert!(
        written.contains("vgpu_daemon_up{daemon=\"vm2.sock\"} 1"),
        "{written}"
    );
    drop(daemons);
    let empty: PathBuf = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, text) = vgpuctl(&empty, &["stats"]);
    assert!(
        !ok && text.contains("no vgpu admin socket (*.admin)"),
        "{text}"
    );
    // No daemon left: an empty scrape replaces the last one (no stale VMs).
    let (ok, text) = vgpuctl(&empty, &["metrics", "--textfile", prom.to_str().unwrap()]);
    assert!(ok, "{text}");
    let written = std::fs::read_to_string(&prom).unwrap();
    assert!(!written.contains("daemon="), "{written}");
    let _ = std::fs::remove_dir_all(&dir);
}
