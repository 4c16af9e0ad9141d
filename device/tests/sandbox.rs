//! The daemon's confinement is live: every thread — those started before
//! the filter and those a VMM connection starts after it — runs with
//! no capabilities, no-new-privileges and the system-call filter, and a call outside the
//! allow-list (the test builds' hook, `VGPU_TEST_FORBIDDEN_SYSCALL`) kills
//! the daemon under `--seccomp kill`, is reported by name under `trap`,
//! and goes through under `log` and `none`; Landlock refuses a file
//! outside the allowed set (`VGPU_TEST_OPEN`).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;
use common::{connect, wait_exit, wait_for};

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vhost::VhostBackend;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-user-vgpu");

fn tmp_sock(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vgpu-sandbox-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("vgpu.sock")
}

fn start(name: &str, args: &[&str], forbidden_call: bool) -> (Child, PathBuf) {
    let env: &[(&str, &str)] = if forbidden_call {
        &[("VGPU_TEST_FORBIDDEN_SYSCALL", "1")]
    } else {
        &[]
    };
    start_with(name, args, env)
}

fn start_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, PathBuf) {
    let sock = tmp_sock(name);
    let mut cmd = Command::new(BIN);
    cmd.arg("--socket-path")
        .arg(&sock)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    (cmd.spawn().unwrap(), sock)
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Kills the daemon and returns what it logged.
fn stop(child: &mut Child) -> String {
    child.kill().unwrap();
    let _ = child.wait();
    stderr_of(child)
}

/// `(thread name, Seccomp, NoNewPrivs, CapEff + CapPrm + CapBnd)` of
/// every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let caps = format!(
            "{} {} {}",
            field("CapEff:"),
            field("CapPrm:"),
            field("CapBnd:")
        );
        out.push((
            field("Name:"),
            field("Seccomp:"),
            field("NoNewPrivs:"),
            caps,
        ));
    }
    out
}

#[test]
fn every_thread_is_filtered_including_those_a_connection_starts() {
    let (mut child, sock) = start("threads", &[], false);
    wait_for(&sock);
    wait_for(&PathBuf::from(format!("{}.admin", sock.display())));
    let before = threads(child.id());
    // A VMM connects: the daemon starts its frontend handler and queue
    // worker threads under the filter, and answers.
    let frontend = connect(&sock);
    frontend.set_owner().unwrap();
    let features = frontend.get_features().unwrap();
    assert_ne!(features, 0);
    let after = threads(child.id());
    assert!(
        after.len() > before.len(),
        "the connection started threads: {before:?} -> {after:?}"
    );
    let none = "0000000000000000 0000000000000000 0000000000000000";
    for (name, seccomp, nnp, caps) in &after {
        assert_eq!(seccomp, "2", "thread {name}: Seccomp (2 = filter)");
        assert_eq!(nnp, "1", "thread {name}: NoNewPrivs");
        assert_eq!(caps, none, "thread {name}: CapEff CapPrm CapBnd");
    }
    drop(frontend);
    let log = stop(&mut child);
    assert!(log.contains("system-call filter on every thread"), "{log}");
    // The queue worker stacked its own filter on its first event; it
    // still runs (the connection answered), and its thread is filtered.
    assert!(!log.contains("narrower system-call filter failed"), "{log}");
}

#[test]
fn a_forbidden_call_kills_the_daemon_under_kill() {
    let (mut child, _sock) = start("kill", &[], true);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("the daemon was killed");
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
    let log = stderr_of(&mut child);
    assert!(!log.contains("let it through"), "{log}");
}

#[test]
fn trap_reports_the_forbidden_call_by_name() {
    let (mut child, _sock) = start("trap", &["--seccomp", "trap"], true);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("the daemon exited");
    assert_eq!(status.code(), Some(128 + libc::SIGSYS), "{status:?}");
    let log = stderr_of(&mut child);
    assert!(
        log.contains("seccomp: forbidden system call acct (163)"),
        "{log}"
    );
}

#[test]
fn log_and_none_let_it_through() {
    for (mode, seccomp) in [("log", "2"), ("none", "0")] {
        let (mut child, sock) = start(mode, &["--seccomp", mode], true);
        wait_for(&PathBuf::from(format!("{}.admin", sock.display())));
        // The hook runs right after confinement; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            wait_exit(&mut child, Duration::from_millis(10)).is_none(),
            "--seccomp {mode}: the daemon must survive"
        );
        for (name, s, nnp, _) in threads(child.id()) {
            assert_eq!(s, seccomp, "--seccomp {mode}, thread {name}");
            assert_eq!(nnp, "1", "--seccomp {mode}, thread {name}");
        }
        let log = stop(&mut child);
        assert!(
            log.contains("the filter let it through"),
            "--seccomp {mode}: {log}"
        );
    }
}

#[test]
fn a_bad_mode_is_named() {
    let o = Command::new(BIN)
        .args(["--seccomp", "strict"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("strict") && err.contains("kill"), "{err}");
}

#[test]
fn landlock_refuses_files_outside_the_allowed_set() {
    for (name, args, path, expect) in [
        (
            "ll-etc",
            &[][..],
            "/etc/hostname",
            "opening /etc/hostname failed: Permission denied",
        ),
        ("ll-proc", &[][..], "/proc/meminfo", "opened /proc/meminfo"),
        (
            "ll-off",
            &["--no-landlock"][..],
            "/etc/hostname",
            "opened /etc/hostname",
        ),
    ] {
        let (mut child, sock) = start_with(name, args, &[("VGPU_TEST_OPEN", path)]);
        wait_for(&PathBuf::from(format!("{}.admin", sock.display())));
        std::thread::sleep(Duration::from_millis(300));
        let log = stop(&mut child);
        assert!(log.contains(expect), "{name}: {log}");
        if args.is_empty() {
            assert!(log.contains("Landlock fully enforced"), "{name}: {log}");
        }
    }
}

#[test]
fn user_switches_before_anything_exists() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tmp_sock("user").parent().unwrap().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let root = rustix::process::geteuid().is_root();
    let (mut child, sock) = start_with("user", &["--user", "nobody"], &[]);
    if !root {
        let status = wait_exit(&mut child, Duration::from_secs(10)).expect("refused");
        assert!(!status.success());
        let log = stderr_of(&mut child);
        assert!(log.contains("must start as root"), "{log}");
        return;
    }
    let admin = PathBuf::from(format!("{}.admin", sock.display()));
    // The admin socket is made first, the vhost-user socket just after.
    wait_for(&admin);
    wait_for(&sock);
    // Everything it created is nobody's, and every thread is nobody.
    for path in [&sock, &admin] {
        assert_eq!(
            std::fs::metadata(path).unwrap().uid(),
            65534,
            "{}",
            path.display()
        );
    }
    for t in std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or_default();
        assert_eq!(
            uid.split_whitespace().skip(1).collect::<Vec<_>>(),
            ["65534"; 4],
            "{uid}"
        );
    }
    let log = stop(&mut child);
    assert!(log.contains("running as nobody (uid 65534"), "{log}");
    // Unknown users are named.
    let o = Command::new(BIN)
        .args(["--socket-path"])
        .arg(dir.join("x.sock"))
        .args(["--user", "no-such-user-vgpu"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--user no-such-user-vgpu: no such user"));
}

#[test]
fn private_namespaces_still_serve_a_vmm_outside() {
    let ns = |pid: &str, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let (mut child, sock) = start_with("ns", &["--namespaces", "on"], &[]);
    wait_for(&PathBuf::from(format!("{}.admin", sock.display())));
    let pid = child.id().to_string();
    for kind in ["user", "net", "ipc", "uts"] {
        assert_ne!(ns(&pid, kind), ns("self", kind), "{kind} namespace");
    }
    // A VMM in the host's namespaces connects through the socket path.
    let frontend = connect(&sock);
    frontend.set_owner().unwrap();
    assert_ne!(frontend.get_features().unwrap(), 0);
    drop(frontend);
    let log = stop(&mut child);
    assert!(
        log.contains("private user, network, IPC and UTS namespaces"),
        "{log}"
    );
    // Off: the host's namespaces.
    let (mut child, sock) = start_with("ns-off", &["--namespaces", "off"], &[]);
    wait_for(&PathBuf::from(format!("{}.admin", sock.display())));
    assert_eq!(ns(&child.id().to_string(), "user"), ns("self", "user"));
    child.kill().unwrap();
    let _ = child.wait();
}

/// A daemon in its private user namespace (as libvirt's helpers run:
/// not root, so `--namespaces auto` enters one) still answers root's
/// `vgpuctl` — root shows there as the overflow uid — while other users
/// cannot even connect to its 0600 socket.
#[test]
fn root_reaches_the_admin_socket_of_a_namespaced_daemon() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const VGPUCTL: &str = env!("CARGO_BIN_EXE_vgpuctl");
    let root = rustix::process::geteuid().is_root();
    let dir = tmp_sock("ns-admin").parent().unwrap().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Not nobody: its uid is the overflow uid itself.
    let args: &[&str] = if root {
        &["--user", "4321", "--group", "4321", "--namespaces", "on"]
    } else {
        &["--namespaces", "on"]
    };
    let (mut child, sock) = start_with("ns-admin", args, &[]);
    let admin = PathBuf::from(format!("{}.admin", sock.display()));
    wait_for(&admin);
    let stats = Command::new(VGPUCTL)
        .arg("--socket")
        .arg(&admin)
        .args(["--json", "stats"])
        .output()
        .unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    if root {
        let mut other = Command::new(VGPUCTL);
        other
            .arg("--socket")
            .arg(&admin)
            .arg("stats")
            .uid(1234)
            .gid(1234);
        let o = other.output().unwrap();
        assert!(!o.status.success(), "uid 1234 must not get in");
    }
    let log = stop(&mut child);
    assert!(
        log.contains("private user, network, IPC and UTS namespaces"),
        "{log}"
    );
}
