//! The `vhost-user-vgpu` binary: its command line, and that it serves a
//! VMM over a socket path, connection after connection (handed-over
//! sockets: handover.rs).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;
use common::{connect, wait_exit, wait_for};

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vhost::VhostBackend;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-user-vgpu");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp_sock(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vgpu-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("vgpu.sock")
}

#[test]
fn print_capabilities_is_vhost_user_json() {
    // libvirt runs it as root before starting the daemon as its QEMU user
    // with the same environment: it must not create VGPU_LOG_FILE.
    let log = tmp_sock("caps").with_file_name("never.log");
    let o = Command::new(BIN)
        .arg("--print-capabilities")
        .env("VGPU_LOG_FILE", &log)
        .output()
        .unwrap();
    assert!(
        !log.exists(),
        "--print-capabilities created {}",
        log.display()
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["type"], "gpu");
    assert!(v["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "virgl"));
}

#[test]
fn bad_arguments_are_named() {
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--socket-path PATH or --fd N, or start it from a systemd socket unit"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--socket-path", "/tmp/x", "--device-memory", "lots"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--device-memory") && stderr(&o).contains("not a size"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--socket-path", "/tmp/x", "--scanout", "20x20"]);
    assert!(stderr(&o).contains("width 20 is outside"), "{}", stderr(&o));
    let o = run(&["--socket-path", "/tmp/x", "--fd", "3"]);
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let o = run(&["--fd", "987"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--fd 987"), "{}", stderr(&o));
    // fd 0 is /dev/null here: not a socket.
    let o = Command::new(BIN)
        .args(["--fd", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(stderr(&o).contains("is not a socket"), "{}", stderr(&o));
    let o = run(&["--socket-path", "/nonexistent-dir/x.sock"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent-dir/x.sock"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "--socket-path",
        "/nonexistent-dir/x.sock",
        "--no-admin-socket",
    ]);
    assert!(
        stderr(&o).contains("cannot listen on /nonexistent-dir/x.sock"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serves_connection_after_connection_and_exits_on_request() {
    let sock = tmp_sock("serve");
    let mut child = Command::new(BIN)
        .args(["--socket-path", sock.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..3 {
        let f = connect(&sock);
        let features = f.get_features().unwrap();
        assert!(features & (1 << 32) != 0, "VERSION_1");
        f.set_owner().unwrap();
        drop(f);
    }
    assert!(child.try_wait().unwrap().is_none(), "still serving");
    child.kill().unwrap();
    child.wait().unwrap();

    let sock = tmp_sock("once");
    let mut child = Command::new(BIN)
        .args([
            "--socket-path",
            sock.to_str().unwrap(),
            "--exit-on-disconnect",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let f = connect(&sock);
    f.set_owner().unwrap();
    drop(f);
    let status =
        wait_exit(&mut child, Duration::from_secs(10)).expect("exits after the VMM leaves");
    assert!(status.success());
}

const VGPUCTL: &str = env!("CARGO_BIN_EXE_vgpuctl");

fn vgpuctl_json(admin: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new(VGPUCTL)
        .arg("--socket")
        .arg(admin)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Starts the daemon on a fresh socket `name` with `args` and `env`; waits
/// for its admin socket unless `--no-admin-socket` is among the args.
/// Returns the child, the vhost-user socket and the admin socket.
fn daemon(name: &str, args: &[&str], env: &[(&str, String)]) -> (Child, PathBuf, PathBuf) {
    let sock = tmp_sock(name);
    let admin = PathBuf::from(format!("{}.admin", sock.display()));
    let _ = std::fs::remove_file(&admin);
    let child = Command::new(BIN)
        .args(["--socket-path", sock.to_str().unwrap()])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if !args.contains(&"--no-admin-socket") {
        wait_for(&admin);
    }
    (child, sock, admin)
}

#[test]
fn the_admin_socket_sits_beside_the_vhost_user_socket_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (mut child, sock, admin) = daemon("admin", &["--pressure-source", "meminfo"], &[]);
    let mode = std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stats = vgpuctl_json(&admin, &["stats"]);
    assert_eq!(stats["driver"], "emulated");
    assert_eq!(stats["pressure"]["sources"][0]["kind"], "meminfo");
    // A VM connected: its owner shows up.
    let f = connect(&sock);
    f.set_owner().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = vgpuctl_json(&admin, &["stats"]);
        if s["owners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["path"] == "vm1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "vm1 never appeared: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second daemon on the same sockets is refused, naming the problem.
    let o = run(&["--socket-path", sock.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("another daemon is answering"),
        "{}",
        stderr(&o)
    );
    drop(f);
    // The first daemon still serves its vhost-user socket.
    let f = connect(&sock);
    f.set_owner().unwrap();
    drop(f);
    child.kill().unwrap();
    child.wait().unwrap();
    // --no-admin-socket: none.
    let (mut child, sock, admin) = daemon(
        "noadmin",
        &["--no-admin-socket", "--exit-on-disconnect"],
        &[],
    );
    drop(connect(&sock));
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(!admin.exists());
}

#[test]
fn systemd_memory_pressure_variables_choose_the_source() {
    use base64::Engine;
    if !std::path::Path::new("/proc/pressure/memory").exists() {
        eprintln!("skipped: no PSI in this kernel");
        return;
    }
    let trigger = "some 100000 2000000";
    let (mut child, _, admin) = daemon(
        "systemd",
        &[],
        &[
            ("MEMORY_PRESSURE_WATCH", "/proc/pressure/memory".into()),
            (
                "MEMORY_PRESSURE_WRITE",
                base64::engine::general_purpose::STANDARD.encode(format!("{trigger}\0")),
            ),
        ],
    );
    let p = vgpuctl_json(&admin, &["pressure"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let sources = p["sources"].as_array().unwrap();
    let systemd: Vec<&serde_json::Value> =
        sources.iter().filter(|s| s["kind"] == "systemd").collect();
    assert_eq!(systemd.len(), 1, "{p}");
    assert_eq!(systemd[0]["path"], "/proc/pressure/memory");
    assert_eq!(systemd[0]["trigger"], trigger);
    // The host's PSI is the same file: not armed twice.
    assert!(sources.iter().all(|s| s["kind"] != "psi"), "{p}");
}

#[test]
fn a_refused_psi_trigger_is_explained_and_the_daemon_falls_back() {
    if !std::path::Path::new("/proc/pressure/memory").exists() {
        eprintln!("skipped: no PSI in this kernel");
        return;
    }
    let o = run(&[
        "--socket-path",
        "/tmp/x",
        "--pressure-trigger",
        "some 100 20000000",
    ]);
    assert!(
        stderr(&o).contains("window must be 0.5 s to 10 s"),
        "{}",
        stderr(&o)
    );
    // A 1 s window is accepted by the kernel only with CAP_SYS_RESOURCE;
    // either way the daemon runs and says what it watches.
    let (mut child, _, admin) = daemon(
        "refused",
        &[
            "--pressure-source",
            "psi",
            "--pressure-trigger",
            "some 150000 1000000",
        ],
        &[],
    );
    let p = vgpuctl_json(&admin, &["pressure"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let source = &p["sources"][0];
    match source["kind"].as_str().unwrap() {
        "psi" => assert_eq!(source["trigger"], "some 150000 1000000"),
        "meminfo" => assert!(p["notes"].to_string().contains("multiples of 2 s"), "{p}"),
        other => panic!("unexpected source {other}: {p}"),
    }
}

#[test]
fn sigterm_removes_the_sockets_and_exits_cleanly() {
    let (mut child, sock, admin) = daemon("term", &["--pressure-source", "none"], &[]);
    // A VMM is connected meanwhile.
    let f = connect(&sock);
    f.set_owner().unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!sock.exists() && !admin.exists(), "sockets removed");
}

#[test]
fn gpu_auto_without_an_intel_render_node_uses_the_emulated_device_and_says_so() {
    let o = run(&["--print-capabilities"]);
    assert!(o.status.success());
    let err = stderr(&o);
    if !std::path::Path::new("/dev/dri").exists() {
        assert!(
            err.contains("GPU: the emulated device: no render node in /dev/dri"),
            "{err}"
        );
    } else {
        assert!(err.contains("GPU: "), "{err}");
    }
    let o = run(&["--print-capabilities", "--gpu", "emulated"]);
    assert!(
        stderr(&o).contains("the emulated device, as asked"),
        "{}",
        stderr(&o)
    );
    // A render node that is not there is an error naming it.
    let o = run(&[
        "--socket-path",
        "/tmp/vgpu-gpu-test.sock",
        "--gpu",
        "/dev/dri/renderD199",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--gpu /dev/dri/renderD199"),
        "{}",
        stderr(&o)
    );
    // libvirt's --render-node (from "render-node" in the capabilities) is
    // that same choice: used, or refused by name — never ignored.
    let o = run(&[
        "--socket-path",
        "/tmp/vgpu-gpu-test.sock",
        "--render-node=/dev/null",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/dev/null"), "{}", stderr(&o));
    let o = run(&[
        "--print-capabilities",
        "--render-node",
        "/dev/dri/renderD199",
    ]);
    assert!(stderr(&o).contains("/dev/dri/renderD199"), "{}", stderr(&o));
    // The daemon on the emulated device reports the driver to vgpuctl.
    let (mut child, _, admin) = daemon("gpu", &["--gpu", "auto", "--pressure-source", "none"], &[]);
    let stats = vgpuctl_json(&admin, &["stats"]);
    child.kill().unwrap();
    child.wait().unwrap();
    if !std::path::Path::new("/dev/dri").exists() {
        assert_eq!(stats["driver"], "emulated");
    }
}
