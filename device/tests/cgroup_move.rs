//! A daemon moved to another cgroup after it started — as the system
//! libvirt moves the vhost-user helpers it starts into the VM's cgroup —
//! watches the new cgroup's pressure sources, not the old one's, and
//! survives doing so under its sandbox.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;
use common::wait_for;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vgpu_backend::pressure::OwnCgroups;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-user-vgpu");
const VGPUCTL: &str = env!("CARGO_BIN_EXE_vgpuctl");

/// The cgroup paths the daemon's cgroup sources watch (`vgpuctl pressure`).
fn cgroup_source_paths(admin: &Path) -> Vec<String> {
    let o = Command::new(VGPUCTL)
        .arg("--socket")
        .arg(admin)
        .args(["--json", "pressure"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"].as_str().unwrap_or_default().starts_with("cgroup"))
        .map(|s| s["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Removes the test cgroup once the daemon left it.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_daemon_moved_to_another_cgroup_watches_the_new_one() {
    let own = OwnCgroups::of_this_process();
    let Some(parent) = own.v1_memory.clone().or(own.v2.clone()) else {
        eprintln!("SKIPPED: no memory cgroup (v1) or cgroup v2 here");
        return;
    };
    let child = parent.join(format!("vgpu-move-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&child) {
        eprintln!(
            "SKIPPED cgroup move: cannot create a cgroup under {} ({e}); run as root",
            parent.display()
        );
        return;
    }
    let cleanup = Cleanup(child.clone());
    let dir = std::env::temp_dir().join(format!("vgpu-cgmove-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vgpu.sock");
    let admin = dir.join("vgpu.sock.admin");
    let mut daemon = Command::new(BIN)
        .arg("--socket-path")
        .arg(&sock)
        .args(["--pressure-source", "cgroup"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&admin);
    let child_path = child.to_string_lossy().into_owned();
    let before = cgroup_source_paths(&admin);
    assert!(
        !before.iter().any(|p| p.starts_with(&child_path)),
        "{before:?}"
    );

    // Moved, as libvirt does (all its threads: cgroup.procs).
    std::fs::write(child.join("cgroup.procs"), daemon.id().to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = Vec::new();
    while Instant::now() < deadline {
        after = cgroup_source_paths(&admin);
        if !after.is_empty() && after.iter().all(|p| p.starts_with(&child_path)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon died following the move (its sandbox?)"
    );
    daemon.kill().unwrap();
    let _ = daemon.wait();
    let log = {
        use std::io::Read;
        let mut s = String::new();
        daemon
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !after.is_empty() && after.iter().all(|p| p.starts_with(&child_path)),
        "the cgroup sources still watch {after:?}, not {child_path}; log:\n{log}"
    );
    assert!(log.contains("was moved from cgroup"), "{log}");
}
