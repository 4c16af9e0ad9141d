//! `vgpu-bench`: drives any vhost-user virtio-gpu backend through the
//! frontend harness with named scenarios, and measures the machine's own
//! limits and vgpu's buffer manager in the same run.
//!
//! * [`scenario`] — what each scenario sends and times;
//! * [`limit`] — memcpy and punch-hole, the physical limits;
//! * [`purge`] — shrinker purge time against the number of live objects
//!   (vgpu's buffer manager, in this process);
//! * [`stats`] — percentiles, figures, ratios.
//!
//! A backend is started per scenario run (QEMU's C backend serves one
//! connection per process), from a command line with a `{sock}`
//! placeholder; with two backends their runs interleave A B A B … so the
//! machine's noise hits both alike.

pub mod limit;
pub mod purge;
pub mod scenario;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::backend::RunningBackend;
use crate::vmm::{Vmm, VmmOptions};
use scenario::{NotRun, Scenario};
use stats::Figures;

/// How to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Timed part of each run.
    pub duration: Duration,
    /// Requests in flight for the scenarios where it applies.
    pub depths: Vec<usize>,
    /// Pin this process and the backends to one CPU.
    pub pin: Option<usize>,
    /// Directory for backend logs.
    pub work: PathBuf,
}

/// A backend under test.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    /// Short label (`vgpu`, `qemu`).
    pub label: String,
    /// Command line with `{sock}` (a fresh process per run), or the path of
    /// a socket an already running backend listens on (it must accept one
    /// connection after another).
    pub cmdline: String,
    /// Whether `cmdline` is a socket path.
    pub existing: bool,
}

/// One line of results.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Requests in flight.
    pub depth: usize,
    /// Backend label.
    pub backend: String,
    /// Round.
    pub round: usize,
    /// The figures, if it ran.
    #[serde(flatten)]
    pub figures: Option<Figures>,
    /// Why not, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
}

impl RunResult {
    /// The machine-readable line.
    pub fn result_line(&self) -> String {
        format!("RESULT {}", serde_json::to_string(self).unwrap_or_default())
    }

    /// A human-readable line.
    pub fn human_line(&self) -> String {
        let head = format!(
            "{:<24} d{:<3} {:<6}",
            self.scenario, self.depth, self.backend
        );
        match (&self.figures, &self.not_run) {
            (Some(f), _) => {
                let mut line = format!(
                    "{head} {:>11.0} ops/s {:>10} p50 {:>9.1} us  p99 {:>9.1} us  p999 {:>9.1} us",
                    f.ops_per_s,
                    f.mb_per_s.map_or(String::new(), |m| format!("{m:.0} MB/s")),
                    f.p50_us,
                    f.p99_us,
                    f.p999_us
                );
                if let Some(cpu) = f.backend_cpu_us_per_op {
                    line += &format!("  backend CPU {cpu:.1} us/op");
                }
                for c in &f.per_command {
                    line += &format!(
                        "\n{:<36} {:<8} p50 {:>9.1} us  p99 {:>9.1} us",
                        "", c.command, c.p50_us, c.p99_us
                    );
                }
                line
            }
            (None, Some(why)) => format!("{head} not run: {why}"),
            (None, None) => head,
        }
    }
}

/// Runs `scenario` at `depth` against a fresh instance of `backend`.
pub fn run_one(
    settings: &Settings,
    backend: &BackendSpec,
    scenario: &Scenario,
    depth: usize,
    round: usize,
) -> RunResult {
    let outcome = (|| -> Result<Figures, NotRun> {
        let log = settings.work.join(format!("{}.log", backend.label));
        let cmdline = match settings.pin {
            Some(cpu) => format!("taskset -c {cpu} {}", backend.cmdline),
            None => backend.cmdline.clone(),
        };
        let running = if backend.existing {
            None
        } else {
            Some(
                RunningBackend::command_logged(&cmdline, &[], Some(&log))
                    .map_err(|e| NotRun::Failed(format!("starting {}: {e}", backend.label)))?,
            )
        };
        let socket = running.as_ref().map_or_else(
            || PathBuf::from(&backend.cmdline),
            |r| r.socket().to_path_buf(),
        );
        let mut vmm = Vmm::connect(
            &socket,
            VmmOptions {
                guest_ram: 1536 << 20,
                timeout: Duration::from_secs(30),
                ..VmmOptions::default()
            },
        )
        .map_err(|e| NotRun::Failed(format!("connecting: {e}")))?;
        vmm.backend_pid = running.as_ref().and_then(RunningBackend::pid);
        let m = scenario.run(&mut vmm, settings.duration, depth)?;
        vmm.disconnect();
        drop(running);
        Ok(m.figures())
    })();
    let (figures, not_run) = match outcome {
        Ok(f) => (Some(f), None),
        Err(NotRun::Unsupported(w)) => (None, Some(format!("unsupported: {w}"))),
        Err(NotRun::Failed(w)) => (None, Some(format!("failed: {w}"))),
    };
    RunResult {
        scenario: scenario.name(),
        depth: if scenario.uses_depth() { depth } else { 1 },
        backend: backend.label.clone(),
        round,
        figures,
        not_run,
    }
}

/// Pins this process (all its future threads) to `cpu`.
pub fn pin_self(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(std::io::Error::from)
}

/// The vgpu daemon `daemon` as the benchmarks run it, with the limits the
/// scale scenario needs.
pub fn vgpu_cmdline(daemon: &Path) -> String {
    format!(
        "{} --socket-path {{sock}} --exit-on-disconnect --no-admin-socket --pressure-source none --max-resources 1000000",
        daemon.display()
    )
}
