//! The host's side of a real-VM boot, whoever started the VM (QEMU
//! directly, or libvirt): reads the guest test program's console, answers
//! its markers (screen checks, purge requests through the daemon's admin
//! socket), collects its subtest results, and prints them.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use vgpu_device::admin::protocol::{PressureReply, ScreenshotReply, ShrinkRow, StatsReply};
use vgpu_device::admin::{AdminClient, Request};
use vgpu_guest_test::pattern;
use vgpu_guest_test::pattern::Bars;
use vgpu_guest_test::protocol::{
    BLOB_SCREEN_READY, DONE, PURGE_REQUEST, RESULT_PREFIXES, SCREEN_READY,
};

/// Forwards what `reader` prints, line by line (a trailing CR dropped,
/// invalid UTF-8 replaced, each line after `prefix`), to `tx` from a
/// thread of its own until either side closes.
pub fn forward_lines(
    reader: impl io::Read + Send + 'static,
    prefix: &'static str,
    tx: std::sync::mpsc::Sender<String>,
) {
    use io::BufRead;
    std::thread::spawn(move || {
        for line in io::BufReader::new(reader)
            .split(b'\n')
            .map_while(Result::ok)
        {
            let text = String::from_utf8_lossy(&line);
            if tx
                .send(format!("{prefix}{}", text.trim_end_matches('\r')))
                .is_err()
            {
                return;
            }
        }
    });
}

/// A running guest's serial console and display, as the host sees them.
pub trait Console {
    /// The console's next line, or `None` at `deadline` or when it closed.
    fn next_line(&mut self, deadline: Instant) -> Option<String>;
    /// Writes a line to the guest's console.
    fn send_line(&mut self, line: &str) -> io::Result<()>;
    /// A screendump of the display into `path` (PPM).
    fn screendump(&self, path: &Path) -> io::Result<()>;
    /// Waits (bounded) for the VM to go away after the guest powered off;
    /// stops it if it does not. Whether it went by itself.
    fn wait_exit(&mut self, timeout: Duration) -> bool;
    /// Everything the console printed so far.
    fn take_serial(&mut self) -> Vec<String>;
}

/// What one boot produced.
#[derive(Debug, Default)]
pub struct Boot {
    /// Subtest results: (PASS|FAIL|SKIP, name, detail).
    pub results: Vec<(String, String, String)>,
    /// The host's look at the first pattern the guest put on screen.
    pub screen: Option<Result<String, String>>,
    /// The host's look at the guest's blob scanout, if the guest made one.
    pub blob_screen: Option<Result<String, String>>,
    /// The guest said DONE.
    pub done: bool,
    /// The VM went away by itself after powering off.
    pub exited: bool,
    /// What went wrong on the host's side.
    pub problems: Vec<String>,
    /// Everything the console printed.
    pub serial: Vec<String>,
}

impl Boot {
    /// The result of subtest `name`.
    pub fn result(&self, name: &str) -> Option<&(String, String, String)> {
        self.results.iter().find(|r| r.1 == name)
    }

    /// The timed loop's ops/s, if it passed.
    pub fn ops_per_s(&self) -> Option<f64> {
        let (tag, _, detail) = self.result("timed-loop")?;
        if tag != "PASS" {
            return None;
        }
        detail.split_whitespace().next()?.parse().ok()
    }

    /// Whether anything failed or the guest did not finish.
    pub fn failed(&self) -> bool {
        !self.problems.is_empty() || self.results.iter().any(|r| r.0 == "FAIL") || !self.done
    }
}

/// What the host brings to a boot.
#[derive(Clone, Copy)]
pub struct Host<'a> {
    /// The daemon's admin socket (purge requests; the screen with
    /// [`Screen::Admin`]).
    pub admin: Option<&'a Path>,
    /// Where screendumps go.
    pub work: &'a Path,
    /// The boot's number (screendump names).
    pub n: usize,
    /// Longest the boot may take until the guest powers off.
    pub timeout: Duration,
    /// Prints the console as it comes and is called once the guest test
    /// is done (while the guest holds).
    pub live: Option<&'a dyn Fn(&str)>,
}

/// Plays the host's part for a booted guest until it powers off (or the
/// timeout): answers its markers, collects what it printed.
pub fn play(console: &mut dyn Console, screen: Screen<'_>, host: &Host<'_>) -> Boot {
    let Host {
        admin,
        work,
        n,
        timeout,
        live,
    } = *host;
    let mut boot = Boot::default();
    let deadline = Instant::now() + timeout;
    while let Some(line) = console.next_line(deadline) {
        if live.is_some() {
            println!("guest| {line}");
        }
        let look = |bars: Bars, size: &str, file: &str| match screen {
            Screen::Display => check_screen(&*console, &work.join(file), bars, size.trim()),
            Screen::Admin(a) => check_screenshot(a, bars, size.trim()),
        };
        if let Some(size) = line.strip_prefix(SCREEN_READY) {
            boot.screen = Some(look(Bars::Forward, size, &format!("screen-{n}.ppm")));
            if let Err(e) = console.send_line("ok") {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if let Some(size) = line.strip_prefix(BLOB_SCREEN_READY) {
            // The guest reports the result; the host's view goes in too.
            let seen = look(Bars::Mirrored, size, &format!("blob-screen-{n}.ppm"));
            let answer = match &seen {
                Ok(s) => format!("ok, {s}"),
                Err(e) => format!("bad: {e}"),
            };
            boot.blob_screen = Some(seen);
            if let Err(e) = console.send_line(&answer) {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if let Some(how) = line.strip_prefix(PURGE_REQUEST) {
            let answer = match admin {
                Some(a) => match purge(a, how.trim() == "soft-limit") {
                    Ok(what) => format!("purged {what}"),
                    Err(e) => format!("purge unavailable: {e}"),
                },
                None => "purge unavailable: this backend has no admin socket".into(),
            };
            if let Err(e) = console.send_line(&answer) {
                boot.problems.push(format!("answering the guest: {e}"));
            }
        } else if line.starts_with(DONE) {
            boot.done = true;
            if let Some(show) = live {
                show("while the guest is still up (its console framebuffer is a buffer object)");
            }
        } else if let Some(tag) = RESULT_PREFIXES.iter().find(|p| line.starts_with(*p)) {
            let rest = &line[tag.len()..];
            let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
            boot.results
                .push((tag.trim().to_string(), name.to_string(), detail.to_string()));
        }
        if line.contains("powering off") || line.contains("reboot: Power down") {
            break;
        }
    }
    boot.exited = console.wait_exit(Duration::from_secs(30));
    if !boot.exited {
        boot.problems
            .push("the VM did not go away after the guest powered off (killed)".into());
    }
    if !boot.done {
        boot.problems.push(format!(
            "the guest did not finish within {} s",
            timeout.as_secs()
        ));
    }
    boot.serial = console.take_serial();
    boot
}

/// Where the guest's screen is looked at.
#[derive(Clone, Copy)]
pub enum Screen<'a> {
    /// The VMM's screendump (its display channel).
    Display,
    /// The daemon's own screenshot (no display channel).
    Admin(&'a Path),
}

/// The pattern in the daemon's screenshot of scanout 0.
fn check_screenshot(admin: &Path, bars: Bars, size: &str) -> Result<String, String> {
    use base64::Engine;
    let mut last = String::new();
    for _ in 0..20 {
        let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
        match c.call::<ScreenshotReply>(&Request::Screenshot { scanout: Some(0) }) {
            Ok(r) => {
                let png = base64::engine::general_purpose::STANDARD
                    .decode(r.png_base64.as_bytes())
                    .map_err(|e| format!("screenshot is not base64: {e}"))?;
                let (w, h, rgb) = vgpu_device::screens::decode_png(&png)?;
                match shows_bars(bars, w, h, &rgb) {
                    Ok(()) => {
                        return Ok(format!(
                            "{w}x{h} daemon screenshot (no display channel) shows the pattern (guest mode {size}, {} updates)",
                            r.updates
                        ))
                    }
                    Err(e) => last = format!("{w}x{h} daemon screenshot: {e}"),
                }
            }
            Err(e) => last = format!("screenshot: {e}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last)
}

/// Whether a `w`×`h` RGB frame shows the guest's bars.
fn shows_bars(bars: Bars, w: u32, h: u32, rgb: &[u8]) -> Result<(), String> {
    let px = |x: u32, y: u32| {
        let o = (y as usize * w as usize + x as usize) * 3;
        [rgb[o], rgb[o + 1], rgb[o + 2]]
    };
    pattern::check_bars(bars, w, h, px)
}

fn check_screen(
    console: &dyn Console,
    path: &Path,
    bars: Bars,
    size: &str,
) -> Result<String, String> {
    // The display channel may lag the guest's flush by a frame: retry.
    let mut last = String::new();
    for _ in 0..20 {
        console
            .screendump(path)
            .map_err(|e| format!("screendump: {e}"))?;
        let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let (w, h, rgb) = pattern::parse_ppm(&data)?;
        match shows_bars(bars, w, h, rgb) {
            Ok(()) => {
                return Ok(format!(
                    "{w}x{h} screendump shows the pattern (guest mode {size})"
                ))
            }
            Err(e) => last = format!("{w}x{h} screendump: {e}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last)
}

/// Purges for the guest: with `soft_limit`, first waits (bounded) for the
/// VM's soft limit to take what it takes, then purges the rest through the
/// admin socket. What was purged, and by whom.
pub fn purge(admin: &Path, soft_limit: bool) -> Result<String, String> {
    let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
    let mut by_soft_limit = 0;
    if soft_limit {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(2000);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && by_soft_limit == 0 {
            let p: PressureReply = c
                .call(&Request::Pressure {
                    trigger: None,
                    inject: false,
                })
                .map_err(|e| e.to_string())?;
            by_soft_limit = p
                .recent
                .iter()
                .filter(|r| r.trigger.starts_with("soft-limit:") && r.at_unix_ms >= since)
                .map(|r| r.purged_bytes)
                .sum();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let r: ShrinkRow = c
        .call(&Request::Purge { owner: None })
        .map_err(|e| e.to_string())?;
    Ok(if soft_limit {
        format!(
            "{} (the soft limit {by_soft_limit}, an admin purge {})",
            by_soft_limit + r.purged_bytes,
            r.purged_bytes
        )
    } else {
        r.purged_bytes.to_string()
    })
}

/// Checks the host holds nothing for a VM any more.
pub fn freed(admin: &Path) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = AdminClient::connect(admin).map_err(|e| e.to_string())?;
        let s: StatsReply = c.call(&Request::Stats {}).map_err(|e| e.to_string())?;
        let host = &s.owners[0];
        let vms: Vec<&str> = s.owners.iter().skip(1).map(|o| o.path.as_str()).collect();
        if vms.is_empty() && host.charged == 0 && s.objects == 0 {
            return Ok("no VM owner left, 0 objects, 0 bytes charged (vgpuctl stats)".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "still held: owners {vms:?}, {} objects, {} bytes charged",
                s.objects, host.charged
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints a boot's results (a SKIP is not a failure).
pub fn report(boot: &Boot, label: &str) -> bool {
    report_with(boot, label, false)
}

/// Prints a boot's results; with `no_skips`, a SKIP is a failure, and so
/// is any shared-memory request QEMU refused.
pub fn report_with(boot: &Boot, label: &str, no_skips: bool) -> bool {
    let mut ok = true;
    for (tag, name, detail) in &boot.results {
        if no_skips && tag == "SKIP" {
            println!("FAIL {name}: skipped where every subtest must run: {detail}");
            ok = false;
        } else {
            println!("{tag} {name}: {detail}");
        }
    }
    if no_skips {
        let refused: Vec<&String> = boot
            .serial
            .iter()
            .filter(|l| l.starts_with("qemu: "))
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("shmem") || l.contains("unmap") || l.contains("mmap")
            })
            .collect();
        if refused.is_empty() {
            println!("PASS shared-memory: QEMU refused no SHMEM_MAP or SHMEM_UNMAP");
        } else {
            for l in refused {
                println!("FAIL shared-memory: {l}");
            }
            ok = false;
        }
    }
    match &boot.screen {
        Some(Ok(s)) => println!("PASS screendump: {s}"),
        Some(Err(e)) => println!("FAIL screendump: {e}"),
        None => println!("FAIL screendump: the guest never said its pattern was on screen"),
    }
    match &boot.blob_screen {
        Some(Ok(s)) => println!("PASS blob-screendump: {s}"),
        Some(Err(e)) => {
            println!("FAIL blob-screendump: {e}");
            ok = false;
        }
        None if no_skips => {
            println!("FAIL blob-screendump: the guest never scanned out a blob");
            ok = false;
        }
        None => {}
    }
    for p in &boot.problems {
        println!("FAIL {label}: {p}");
    }
    ok && !boot.failed() && matches!(boot.screen, Some(Ok(_)))
}

/// Prints the guest's serial log and the end of the backend's log.
pub fn dump(boot: &Boot, log: &Path) {
    println!("---- guest serial log ----");
    for l in &boot.serial {
        println!("| {l}");
    }
    println!("---- backend log ({}) ----", log.display());
    if let Ok(text) = std::fs::read_to_string(log) {
        for l in text
            .lines()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("| {l}");
        }
    }
    println!("----");
}
