//! Each thread kind stacks its narrower system-call filter once it runs
//! — the queue worker (what a guest sends), the vhost-user handler, the
//! admin server, the pressure monitor, the signal thread — and keeps
//! working under it.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use vgpu_proto::virtio_gpu::*;
use vgpu_tests::backend::{daemon_binary, RunningBackend};
use vgpu_tests::cmd::*;
use vgpu_tests::vmm::{Vmm, VmmOptions};

/// `(name, Seccomp_filters)` of every thread of `pid`.
fn filters(pid: u32) -> Vec<(String, u32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (
                field("Name:"),
                field("Seccomp_filters:").parse().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn the_queue_worker_runs_guest_commands_under_its_own_filter() {
    let daemon = daemon_binary().unwrap();
    let b =
        RunningBackend::command(&format!("{} --socket-path {{sock}}", daemon.display())).unwrap();
    let pid = b.pid().unwrap();
    let mut vmm = Vmm::connect(b.socket(), VmmOptions::default()).unwrap();
    // Commands that allocate, map guest memory, copy and free: the
    // worker's whole ordinary path.
    let e = guest_pages(&mut vmm, 64 * 64 * 4, 9).unwrap();
    for _ in 0..3 {
        let (_, r) = vmm
            .command(&create_2d(7, Format::B8G8R8X8Unorm, 64, 64))
            .unwrap();
        assert_eq!(r, Response::OkNoData);
        let (_, r) = vmm.command(&attach_backing(7, &[e])).unwrap();
        assert_eq!(r, Response::OkNoData);
        let (_, r) = vmm
            .command(&transfer_2d(7, Rect::new(0, 0, 64, 64), 0))
            .unwrap();
        assert_eq!(r, Response::OkNoData);
        let (_, r) = vmm.command(&unref(7)).unwrap();
        assert_eq!(r, Response::OkNoData);
    }
    // The admin server and the monitor wake up (a request, an injected
    // pressure event).
    let admin = b
        .admin_socket()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{}.admin", b.socket().display())));
    let mut client = vgpu_device::admin::AdminClient::connect(&admin).unwrap();
    let _: serde_json::Value = client.call(&vgpu_device::admin::Request::Stats {}).unwrap();
    let mut client = vgpu_device::admin::AdminClient::connect(&admin).unwrap();
    let _: serde_json::Value = client
        .call(&vgpu_device::admin::Request::Pressure {
            trigger: None,
            inject: true,
        })
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let threads = filters(pid);
    let process = threads
        .iter()
        .find(|(n, _)| n == "vhost-user-vgpu")
        .map(|t| t.1)
        .unwrap();
    assert!(process >= 2, "the process's filters: {threads:?}");
    let workers: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n == "vring_worker")
        .collect();
    assert!(!workers.is_empty(), "{threads:?}");
    assert!(
        workers.iter().any(|(_, f)| *f == process + 1),
        "a worker that ran commands stacked one more filter: {threads:?}"
    );
    for name in ["vgpu-admin", "vgpu-pressure", "vgpu-signals"] {
        assert!(
            threads.iter().any(|(n, f)| n == name && *f == process + 1),
            "{name} stacked its filter: {threads:?}"
        );
    }
    // The vhost-user handler thread carries the daemon's name too.
    assert!(
        threads
            .iter()
            .filter(|(n, f)| n == "vhost-user-vgpu" && *f == process + 1)
            .count()
            == 1,
        "the handler stacked its filter, the main thread did not: {threads:?}"
    );
    vmm.disconnect();
}
