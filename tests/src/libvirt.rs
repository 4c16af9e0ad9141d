//! A private libvirt for tests: the QEMU driver's daemon (`virtqemud`
//! where the packaging has the modular daemons, else `libvirtd`) in
//! session mode, in the foreground, as an unprivileged user, with every
//! directory it uses (XDG config, cache, runtime, home) under one work
//! directory; and the domains it runs, whose serial console is a
//! unix socket the test reads and writes ([`Domain`] is a
//! [`Console`](crate::guest_run::Console)).
//!
//! Nothing of the host's libvirt is touched: no system daemon, no
//! /etc/libvirt; domains are defined in the session's own configuration
//! and undefined when done.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The unprivileged account a root-run test uses for libvirt (and so for
/// QEMU and the vhost-user daemon libvirt starts).
#[derive(Debug, Clone, Copy)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Account {
    /// `nobody` (65534:65534 on Debian), when running as root; none (the
    /// current user) otherwise.
    pub fn for_tests() -> Option<Self> {
        rustix::process::geteuid().is_root().then_some(Self {
            uid: 65534,
            gid: 65534,
        })
    }
}

/// A session-mode libvirt daemon this process started.
pub struct Libvirt {
    /// The work directory everything lives under.
    pub dir: PathBuf,
    /// The daemon that runs (`virtqemud` or `libvirtd`).
    pub daemon: PathBuf,
    child: Child,
    account: Option<Account>,
    env: Vec<(String, String)>,
}

/// The environment the libvirt daemon and virsh get: only what names the
/// private directories (plus `extra`, which reaches the helpers libvirt
/// starts, as libvirt passes its environment on).
fn session_env(dir: &Path, extra: &[(String, String)]) -> Vec<(String, String)> {
    let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let mut env = vec![
        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), d("home")),
        ("XDG_RUNTIME_DIR".into(), d("run")),
        ("XDG_CONFIG_HOME".into(), d("config")),
        ("XDG_CACHE_HOME".into(), d("cache")),
        ("XDG_DATA_HOME".into(), d("home/.local/share")),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// The QEMU driver's daemon: the modular `virtqemud` if installed (libvirt
/// 9.x in Debian bookworm ships only the monolithic `libvirtd`).
pub fn find_daemon() -> io::Result<PathBuf> {
    ["/usr/sbin/virtqemud", "/usr/sbin/libvirtd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            io::Error::other(
                "no virtqemud or libvirtd: apt-get install libvirt-daemon-driver-qemu libvirt-clients",
            )
        })
}

fn chown_tree(path: &Path, account: Option<Account>) -> io::Result<()> {
    let Some(a) = account else { return Ok(()) };
    std::os::unix::fs::chown(path, Some(a.uid), Some(a.gid))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), account)?;
        }
    }
    Ok(())
}

impl Libvirt {
    /// Lays out `dir` (config files included), starts the daemon and waits
    /// (bounded, 90 s: it probes QEMU first) until virsh gets an answer.
    /// `descriptors` are vhost-user descriptor files to put in the
    /// session's `qemu/vhost-user` directory (name, JSON).
    pub fn start(
        dir: &Path,
        account: Option<Account>,
        extra_env: &[(String, String)],
        descriptors: &[(String, String)],
    ) -> io::Result<Self> {
        let daemon = find_daemon()?;
        for sub in [
            "home/.local/share",
            "run",
            "cache",
            "vm",
            "config/libvirt",
            "config/qemu/vhost-user",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700))?;
        // No virtlogd: QEMU's output goes to the domain log file directly.
        std::fs::write(
            dir.join("config/libvirt/qemu.conf"),
            "stdio_handler = \"file\"\n",
        )?;
        let logging = "log_outputs = \"3:stderr\"\n";
        std::fs::write(dir.join("config/libvirt/libvirtd.conf"), logging)?;
        std::fs::write(dir.join("config/libvirt/virtqemud.conf"), logging)?;
        for (name, json) in descriptors {
            std::fs::write(dir.join("config/qemu/vhost-user").join(name), json)?;
        }
        chown_tree(dir, account)?;
        let env = session_env(dir, extra_env);
        let log = std::fs::File::create(dir.join("libvirtd.log"))?;
        let mut cmd = Command::new(&daemon);
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(a) = account {
            cmd.uid(a.uid).gid(a.gid);
        }
        let child = cmd.spawn()?;
        let lv = Self {
            dir: dir.to_path_buf(),
            daemon,
            child,
            account,
            env,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(o) = lv.virsh(&["version"]) {
                if o.status.success() {
                    return Ok(lv);
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} gave no answer within 90 s (log: {})",
                    lv.daemon.display(),
                    lv.dir.join("libvirtd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `virsh -c qemu:///session ARGS` as the session's user.
    pub fn virsh(&self, args: &[&str]) -> io::Result<Output> {
        let mut cmd = Command::new("virsh");
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-c", "qemu:///session"])
            .args(args)
            .stdin(Stdio::null());
        if let Some(a) = self.account {
            cmd.uid(a.uid).gid(a.gid);
        }
        cmd.output()
    }

    /// `virsh ARGS`, its stdout; an error naming the command and its
    /// stderr if it failed.
    pub fn virsh_ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self
            .virsh(args)
            .map_err(|e| format!("virsh {}: {e}", args.join(" ")))?;
        if !o.status.success() {
            return Err(format!(
                "virsh {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// What `virsh version` says (library, daemon and hypervisor).
    pub fn versions(&self) -> String {
        self.virsh_ok(&["version"])
            .map(|v| {
                v.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|e| e)
    }

    /// Defines the domain `xml` (a file in the session) as users do
    /// (`virsh define`), starts it paused, connects to its serial socket
    /// `serial`, then resumes it: nothing the guest prints is lost. The
    /// definition goes when the [`Domain`] is dropped.
    pub fn define_and_start(
        &self,
        name: &str,
        xml: &Path,
        serial: &Path,
    ) -> Result<Domain<'_>, String> {
        chown_tree(xml, self.account).map_err(|e| e.to_string())?;
        self.virsh_ok(&["define", &xml.to_string_lossy()])?;
        if let Err(e) = self.virsh_ok(&["start", "--paused", name]) {
            let _ = self.virsh(&["undefine", name]);
            return Err(e);
        }
        let stream = connect_retry(serial, Duration::from_secs(10))
            .map_err(|e| format!("the serial console {}: {e}", serial.display()))?;
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let (tx, lines) = mpsc::channel();
        crate::guest_run::forward_lines(reader, "", tx);
        self.virsh_ok(&["resume", name])?;
        Ok(Domain {
            lv: self,
            name: name.to_string(),
            writer: stream,
            lines,
            serial: Vec::new(),
            shots: self.dir.join("vm"),
        })
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("libvirtd.log")).unwrap_or_default()
    }

    /// What libvirt logged for domain `name` (QEMU's command line, its
    /// stderr, the external devices it started).
    pub fn domain_log(&self, name: &str) -> String {
        std::fs::read_to_string(
            self.dir
                .join("cache/libvirt/qemu/log")
                .join(format!("{name}.log")),
        )
        .unwrap_or_default()
    }

    /// Stops the daemon (SIGTERM, bounded wait, then SIGKILL).
    pub fn stop(mut self) -> io::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> io::Result<()> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        let _ = crate::backend::sigterm(&self.child);
        // Killed if it does not go in time; that is still stopped.
        match crate::backend::wait_or_kill(&mut self.child, Duration::from_secs(15), "libvirt") {
            Err(e) if e.kind() != io::ErrorKind::TimedOut => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

fn connect_retry(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
}

/// A defined, running domain of a [`Libvirt`], seen through its serial
/// socket.
pub struct Domain<'a> {
    lv: &'a Libvirt,
    name: String,
    writer: UnixStream,
    lines: mpsc::Receiver<String>,
    serial: Vec<String>,
    shots: PathBuf,
}

impl Domain<'_> {
    /// Whether the domain still runs (it is shut off once the guest
    /// powered off: `on_poweroff` is destroy).
    pub fn exists(&self) -> bool {
        self.lv
            .virsh(&["domstate", &self.name])
            .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("shut off"))
            .unwrap_or(false)
    }

    /// Destroys the domain if it is still there.
    pub fn destroy(&self) {
        if self.exists() {
            let _ = self.lv.virsh(&["destroy", &self.name]);
        }
    }
}

impl crate::guest_run::Console for Domain<'_> {
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = self.lines.recv_timeout(left).ok()?;
        self.serial.push(line.clone());
        Some(line)
    }

    fn send_line(&mut self, line: &str) -> io::Result<()> {
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        self.writer.flush()
    }

    /// `virsh screenshot` (QEMU's screendump through libvirt), converted
    /// to PPM when libvirt hands over a PNG.
    fn screendump(&self, path: &Path) -> io::Result<()> {
        // virsh runs as the session's user: it writes into the session.
        let shot = self.shots.join("screenshot");
        let _ = std::fs::remove_file(&shot);
        self.lv
            .virsh_ok(&["screenshot", &self.name, &shot.to_string_lossy()])
            .map_err(io::Error::other)?;
        let data = std::fs::read(&shot)?;
        let ppm = if data.starts_with(b"\x89PNG") {
            let (w, h, rgb) = vgpu_device::screens::decode_png(&data).map_err(io::Error::other)?;
            let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
            out.extend_from_slice(&rgb);
            out
        } else {
            data
        };
        std::fs::write(path, ppm)
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.serial.push(line);
            }
            if !self.exists() {
                return true;
            }
            if Instant::now() > deadline {
                self.destroy();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn take_serial(&mut self) -> Vec<String> {
        std::mem::take(&mut self.serial)
    }
}

impl Drop for Domain<'_> {
    fn drop(&mut self) {
        self.destroy();
        let _ = self.lv.virsh(&["undefine", &self.name]);
    }
}

/// The domain XML: a TCG q35 guest booting `kernel`/`initrd` directly,
/// memfd-backed shared RAM (vhost-user needs it), the serial console on
/// the unix socket `serial`, and the video device libvirt attaches to a
/// vhost-user GPU backend it starts itself (`<driver name='vhostuser'/>`),
/// with `accel3d` asking for `--virgl`. `<acpi/>` because libvirt 9.0
/// otherwise passes `-no-acpi`, which QEMU 10 no longer has.
#[allow(clippy::too_many_arguments)]
pub fn domain_xml(
    name: &str,
    emulator: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    memory_mib: u32,
    serial: &Path,
    accel3d: bool,
) -> String {
    let accel = if accel3d {
        "\n        <acceleration accel3d='yes'/>"
    } else {
        ""
    };
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <serial type='unix'>
      <source mode='bind' path='{serial}'/>
      <target port='0'/>
    </serial>
    <console type='unix'>
      <source mode='bind' path='{serial}'/>
      <target type='serial' port='0'/>
    </console>
    <video>
      <model type='virtio' heads='1'>{accel}
      </model>
      <driver name='vhostuser'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
",
        kernel = kernel.display(),
        initrd = initrd.display(),
        emulator = emulator.display(),
        serial = serial.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_attaches_a_vhostuser_video_and_shared_memfd_memory() {
        let xml = domain_xml(
            "d",
            Path::new("/usr/bin/qemu-system-x86_64"),
            Path::new("/k"),
            Path::new("/i"),
            "console=ttyS0",
            512,
            Path::new("/s.sock"),
            true,
        );
        for part in [
            "<source type='memfd'/>",
            "<access mode='shared'/>",
            "<driver name='vhostuser'/>",
            "<acceleration accel3d='yes'/>",
            "<acpi/>",
            "path='/s.sock'",
        ] {
            assert!(xml.contains(part), "{part}: {xml}");
        }
        let plain = domain_xml(
            "d",
            Path::new("/q"),
            Path::new("/k"),
            Path::new("/i"),
            "",
            512,
            Path::new("/s"),
            false,
        );
        assert!(!plain.contains("acceleration"));
    }
}
