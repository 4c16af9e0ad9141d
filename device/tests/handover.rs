//! Sockets handed to `vhost-user-vgpu` already open, the three ways users
//! start it: `--fd` with a listening socket (a VMM that made it), `--fd`
//! with one end of a socket pair (libvirt: the other end is QEMU's), and
//! systemd's socket activation (`LISTEN_FDS`, from vgpu@.socket).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;
use common::{connect, wait_exit, wait_for};

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vhost::vhost_user::Frontend;
use vhost::VhostBackend;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-user-vgpu");
const VGPUCTL: &str = env!("CARGO_BIN_EXE_vgpuctl");

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vgpu-handover-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Spawns `cmd` with `fd` as its descriptor 3 (as libvirt's
/// virCommandPassFD and systemd do), then closes the parent's copy.
fn spawn_with_fd3(mut cmd: Command, fd: OwnedFd) -> Child {
    let raw = fd.as_raw_fd();
    // SAFETY: runs in the child between fork and exec and only calls dup2
    // or fcntl, which are async-signal-safe; the child gets `fd` as 3.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly then.
            let rc = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(fd);
    child
}

#[test]
fn serves_a_listening_fd_handed_over() {
    let dir = tmp_dir("listening");
    let sock = dir.join("vgpu.sock");
    let fd: OwnedFd = UnixListener::bind(&sock).unwrap().into();
    let mut cmd = Command::new(BIN);
    cmd.args(["--fd", "3", "--exit-on-disconnect", "--no-admin-socket"])
        .stderr(Stdio::null());
    let mut child = spawn_with_fd3(cmd, fd);
    let f = connect(&sock);
    assert!(f.get_features().unwrap() & (1 << 32) != 0);
    drop(f);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}

/// libvirt's qemuExtVhostUserGPUStart: `socketpair`, one end to the
/// backend as `--fd=N` (plus `--virgl` for accel3d), the other to QEMU.
/// The backend serves that one connection, is found by `vgpuctl --all`
/// meanwhile, logs to `VGPU_LOG_FILE`, and exits removing its admin
/// socket when QEMU hangs up.
#[test]
fn serves_a_connected_socket_pair_end_like_libvirt() {
    let runtime = tmp_dir("libvirt");
    let (qemu_end, backend_end) = UnixStream::pair().unwrap();
    let mut cmd = Command::new(BIN);
    // libvirt sends the helper's stderr to /dev/null: VGPU_LOG_FILE.
    let log = runtime.join("daemon.log");
    cmd.args(["--fd=3", "--virgl"])
        .env("VGPU_RUNTIME_DIR", &runtime)
        .env("VGPU_LOG_FILE", &log)
        .stderr(Stdio::null());
    let mut child = spawn_with_fd3(cmd, backend_end.into());
    let admin = runtime.join(format!("vgpu-{}.admin", child.id()));
    wait_for(&admin);

    let f = Frontend::from_stream(qemu_end, 2);
    assert!(
        f.get_features().unwrap() & (1 << 32) != 0,
        "vhost-user features over the handed-over connection"
    );
    f.set_owner().unwrap();
    let o = Command::new(VGPUCTL)
        .args(["--all", "--json", "stats"])
        .env("VGPU_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("vgpu-{}", child.id())),
        "vgpuctl --all lists the daemon libvirt started: {out}"
    );

    drop(f);
    let status = wait_exit(&mut child, Duration::from_secs(10))
        .expect("exits once its only connection closes");
    assert!(status.success(), "{status}");
    assert!(!admin.exists(), "its admin socket is removed at exit");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("a VMM connected") && logged.contains("disconnected"),
        "{logged}"
    );
    let _ = std::fs::remove_dir_all(&runtime);
}

/// Starts the daemon as systemd does for a socket unit: the listening
/// socket as fd 3, `LISTEN_FDS=n` and `LISTEN_PID` = the daemon's own pid
/// (the shell's `$$`, kept across `exec`).
fn socket_activated(fd: OwnedFd, listen_fds: &str, args: &[&str]) -> Child {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS={listen_fds} LISTEN_FDNAMES=vgpu exec \"$0\" \"$@\""
        ))
        .arg(BIN)
        .args(args)
        .stderr(Stdio::piped());
    spawn_with_fd3(cmd, fd)
}

#[test]
fn takes_the_socket_of_a_systemd_socket_unit() {
    let dir = tmp_dir("activation");
    let sock = dir.join("vm1.sock");
    let admin = dir.join("vm1.admin");
    let fd: OwnedFd = UnixListener::bind(&sock).unwrap().into();
    let mut child = socket_activated(
        fd,
        "1",
        &[
            "--admin-socket",
            admin.to_str().unwrap(),
            "--exit-on-disconnect",
        ],
    );
    wait_for(&admin);
    let f = connect(&sock);
    assert!(f.get_features().unwrap() & (1 << 32) != 0);
    f.set_owner().unwrap();
    drop(f);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socket_activation_with_two_sockets_is_refused_by_name() {
    let dir = tmp_dir("activation-two");
    let fd: OwnedFd = UnixListener::bind(dir.join("s")).unwrap().into();
    let child = socket_activated(fd, "2", &["--no-admin-socket"]);
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("socket activation passed 2 sockets"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
