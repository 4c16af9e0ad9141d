//! `vgpu-bench`: a vhost-user virtio-gpu load generator. Runs named
//! scenarios against a backend (vgpu by default), optionally interleaved
//! with another (`--vs`), and prints ops/s, MB/s, p50/p99/p999 and a
//! `RESULT` JSON line per run, then ratios and the project's goals.
//! See BENCHMARKS.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vgpu_tests::bench::scenario::Scenario;
use vgpu_tests::bench::stats::{ratio, Figures, Measurement};
use vgpu_tests::bench::{self, BackendSpec, RunResult, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "vgpu-bench",
    about = "Benchmark vhost-user virtio-gpu backends side by side"
)]
struct Args {
    /// Backend under test: a command line with {sock} (default: the
    /// vhost-user-vgpu next to this program, or --daemon's).
    #[arg(long, conflicts_with = "daemon")]
    backend: Option<String>,
    /// The vhost-user-vgpu to run with the benchmarks' usual arguments
    /// (e.g. the installed /usr/libexec/vhost-user-vgpu).
    #[arg(long, value_name = "PATH", conflicts_with = "socket")]
    daemon: Option<PathBuf>,
    /// Label of --backend.
    #[arg(long, default_value = "vgpu")]
    label: String,
    /// Drive an already running backend listening on this socket instead
    /// of starting one (it must accept connection after connection).
    #[arg(long, conflicts_with = "backend")]
    socket: Option<PathBuf>,
    /// A second backend to compare with, run interleaved (e.g.
    /// '/usr/lib/qemu/vhost-user-gpu -s {sock}').
    #[arg(long)]
    vs: Option<String>,
    /// Label of --vs.
    #[arg(long, default_value = "qemu")]
    vs_label: String,
    /// Rounds (A B A B …); default 3 with --vs, else 1.
    #[arg(long)]
    rounds: Option<usize>,
    /// Timed part of each run, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Requests in flight for 2d-cycle, transfer and flush (comma list).
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    depth: Vec<usize>,
    /// Pin this program and the backends to this CPU (compare pinned: the
    /// machines' cross-CPU wake-ups cost 4-40 us).
    #[arg(long)]
    pin: Option<usize>,
    /// Only scenarios whose name contains one of these.
    #[arg(long)]
    scenario: Vec<String>,
    /// Skip the machine limits and the in-process purge scaling.
    #[arg(long)]
    backends_only: bool,
    /// Seconds-long run of every scenario (for tests): 30 ms each, depth 1
    /// and 4, small purge populations.
    #[arg(long)]
    smoke: bool,
    /// Where backend logs go.
    #[arg(long)]
    work: Option<PathBuf>,
}

/// Figures per (scenario, depth), then per backend, with their round.
type ByKey = BTreeMap<(String, usize), BTreeMap<String, Vec<(usize, Figures)>>>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vgpu-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if let Some(cpu) = args.pin {
        bench::pin_self(cpu).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .ok_or("cannot locate this program")?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vgpu-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let settings = Settings {
        duration: Duration::from_millis(if args.smoke { 30 } else { args.duration_ms }),
        depths: if args.smoke {
            vec![1, 4]
        } else {
            args.depth.clone()
        },
        pin: args.pin,
        work,
    };
    let mut backends = vec![match &args.socket {
        Some(path) => BackendSpec {
            label: args.label.clone(),
            cmdline: path.display().to_string(),
            existing: true,
        },
        None => BackendSpec {
            label: args.label.clone(),
            cmdline: args.backend.clone().unwrap_or_else(|| {
                bench::vgpu_cmdline(
                    &args
                        .daemon
                        .clone()
                        .unwrap_or_else(|| exe_dir.join("vhost-user-vgpu")),
                )
            }),
            existing: false,
        },
    }];
    if let Some(vs) = &args.vs {
        backends.push(BackendSpec {
            label: args.vs_label.clone(),
            cmdline: vs.clone(),
            existing: false,
        });
    }
    let rounds = args.rounds.unwrap_or(if args.vs.is_some() { 3 } else { 1 });
    let wanted = |name: &str| {
        args.scenario.is_empty() || args.scenario.iter().any(|s| name.contains(s.as_str()))
    };
    let scenarios: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| wanted(&s.name()))
        .collect();
    println!(
        "vgpu-bench: {} scenarios x {} rounds, {} ms each, depths {:?}, {}",
        scenarios.len(),
        rounds,
        settings.duration.as_millis(),
        settings.depths,
        settings
            .pin
            .map_or("unpinned".to_string(), |c| format!("pinned to CPU {c}"))
    );
    for b in &backends {
        println!("backend {}: {}", b.label, b.cmdline);
    }
    let mut results: Vec<RunResult> = Vec::new();
    for round in 0..rounds {
        for s in &scenarios {
            let depths: Vec<usize> = if s.uses_depth() {
                settings.depths.clone()
            } else {
                vec![1]
            };
            for &d in &depths {
                for b in &backends {
                    let r = bench::run_one(&settings, b, s, d, round);
                    println!("{}", r.human_line());
                    println!("{}", r.result_line());
                    results.push(r);
                }
            }
        }
        if !args.backends_only {
            for r in machine_limits(&settings, round, args.smoke) {
                println!("{}", r.human_line());
                println!("{}", r.result_line());
                results.push(r);
            }
        }
    }
    if !args.backends_only && wanted("scale/purge") {
        let lives: &[usize] = if args.smoke {
            &[1_000, 10_000]
        } else {
            &[1_000, 10_000, 100_000, 1_000_000]
        };
        for &live in lives {
            let r = local(
                format!("scale/purge/live{live}"),
                0,
                bench::purge::purge_scaling(live, settings.duration),
            );
            println!("{}", r.human_line());
            println!("{}", r.result_line());
            results.push(r);
        }
    }
    summarize(&results, &backends, args.pin.is_some());
    let failed: Vec<&RunResult> = results
        .iter()
        .filter(|r| {
            r.not_run
                .as_deref()
                .is_some_and(|w| w.starts_with("failed"))
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!("{} runs failed (see above)", failed.len()));
    }
    Ok(())
}

fn local(scenario: String, round: usize, m: std::io::Result<Measurement>) -> RunResult {
    let (figures, not_run) = match m {
        Ok(m) => (Some(m.figures()), None),
        Err(e) => (None, Some(format!("failed: {e}"))),
    };
    RunResult {
        scenario,
        depth: 1,
        backend: "machine".into(),
        round,
        figures,
        not_run,
    }
}

fn machine_limits(settings: &Settings, round: usize, smoke: bool) -> Vec<RunResult> {
    let d = settings.duration;
    let mut v = vec![
        local(
            "limit/memcpy/1920x1080".into(),
            round,
            Ok(bench::limit::memcpy(1920 * 1080 * 4, d)),
        ),
        local(
            "limit/punch/1M".into(),
            round,
            bench::limit::punch(1 << 20, d),
        ),
    ];
    if !smoke {
        v.insert(
            1,
            local(
                "limit/memcpy/64M".into(),
                round,
                Ok(bench::limit::memcpy(64 << 20, d)),
            ),
        );
    }
    v
}

/// Median figures per (scenario, depth, backend) and ratios of the first
/// backend to the second, per round.
fn summarize(results: &[RunResult], backends: &[BackendSpec], pinned: bool) {
    let mut by_key: ByKey = BTreeMap::new();
    for r in results {
        if let Some(f) = &r.figures {
            by_key
                .entry((r.scenario.clone(), r.depth))
                .or_default()
                .entry(r.backend.clone())
                .or_default()
                .push((r.round, f.clone()));
        }
    }
    println!(
        "\nSUMMARY (median over rounds; ratio = {} / {} per round)",
        backends[0].label,
        backends.get(1).map_or("-", |b| b.label.as_str())
    );
    let median = |v: &[(usize, Figures)], f: fn(&Figures) -> f64| {
        ratio(&v.iter().map(|(_, x)| f(x)).collect::<Vec<_>>()).map_or(0.0, |r| r.median)
    };
    for ((scenario, depth), per) in &by_key {
        for (label, runs) in per {
            println!(
                "  {scenario:<24} d{depth:<3} {label:<7} {:>11.0} ops/s  p99 {:>9.1} us",
                median(runs, |f| f.ops_per_s),
                median(runs, |f| f.p99_us)
            );
        }
        if let (Some(a), Some(b)) = (
            per.get(&backends[0].label),
            backends.get(1).and_then(|b| per.get(&b.label)),
        ) {
            let ratios: Vec<f64> = a
                .iter()
                .filter_map(|(round, fa)| {
                    let fb = b.iter().find(|(r, _)| r == round)?;
                    Some(fa.ops_per_s / fb.1.ops_per_s)
                })
                .collect();
            if let Some(r) = ratio(&ratios) {
                println!(
                    "RATIO {scenario} d{depth}: {:.2}x [{:.2} .. {:.2}] over {} rounds",
                    r.median,
                    r.min,
                    r.max,
                    ratios.len()
                );
            }
        }
    }
    // Scenarios one backend does not support, said as such.
    for r in results.iter().filter(|r| r.round == 0) {
        if let Some(w) = r
            .not_run
            .as_deref()
            .filter(|w| w.starts_with("unsupported"))
        {
            println!("NOTE {} on {}: {w}", r.scenario, r.backend);
        }
    }
    goals(&by_key, backends, pinned);
}

fn goals(by_key: &ByKey, backends: &[BackendSpec], pinned: bool) {
    let a = &backends[0].label;
    let med = |scenario: &str, depth: usize, label: &str, f: fn(&Figures) -> f64| -> Option<f64> {
        let runs = by_key.get(&(scenario.to_string(), depth))?.get(label)?;
        ratio(&runs.iter().map(|(_, x)| f(x)).collect::<Vec<_>>()).map(|r| r.median)
    };
    let line =
        |ok: bool, text: String| println!("GOAL {} {text}", if ok { "met " } else { "MISS" });
    if let Some(b) = backends.get(1).map(|b| &b.label) {
        // One in flight, 256×256: 1.2× pinned; unpinned (cross-CPU
        // wake-ups, which adaptive polling may hide) 1.5×.
        let d1_256 = if pinned { 1.2 } else { 1.5 };
        for (s, depth, want) in [
            ("2d-cycle/64x64", 1, 1.2),
            ("2d-cycle/256x256", 1, d1_256),
            ("2d-cycle/64x64", 16, 1.5),
            ("2d-cycle/256x256", 16, 1.5),
            ("flush/1920x1080", 1, 1.0),
            ("flush/1920x1080", 16, 1.0),
        ] {
            if let (Some(x), Some(y)) = (
                med(s, depth, a, |f| f.ops_per_s),
                med(s, depth, b, |f| f.ops_per_s),
            ) {
                line(
                    x / y >= want,
                    format!("{s} d{depth}: {a}/{b} = {:.2}x (goal >= {want}x)", x / y),
                );
            }
        }
        if let (Some(x), Some(y)) = (
            med("transfer/1920x1080", 1, a, |f| f.mb_per_s.unwrap_or(0.0)),
            med("transfer/1920x1080", 1, b, |f| f.mb_per_s.unwrap_or(0.0)),
        ) {
            line(
                x >= y,
                format!("transfer/1920x1080: {a}/{b} = {:.2}x (goal >= 1x)", x / y),
            );
        }
    }
    let depths: Vec<usize> = by_key
        .keys()
        .filter(|(s, _)| s == "transfer/1920x1080")
        .map(|(_, d)| *d)
        .collect();
    for depth in depths {
        if let (Some(x), Some(m)) = (
            med("transfer/1920x1080", depth, a, |f| {
                f.mb_per_s.unwrap_or(0.0)
            }),
            med("limit/memcpy/1920x1080", 1, "machine", |f| {
                f.mb_per_s.unwrap_or(0.0)
            }),
        ) {
            line(
                x / m >= 0.95,
                format!("transfer/1920x1080 d{depth}: {a} {x:.0} MB/s = {:.2}x memcpy {m:.0} MB/s (goal >= 0.95x)", x / m),
            );
        }
    }
    for kind in ["host3d"] {
        for size in ["4K", "64K", "1M"] {
            let s = format!("blob-cycle/{kind}/{size}");
            if let Some(p99) = med(&s, 1, a, |f| f.p99_us) {
                line(
                    p99 < 50.0,
                    format!("{s}: p99 {p99:.1} us (goal < 50 us pinned)"),
                );
            }
        }
    }
    if let (Some(lo), Some(hi)) = (
        med("scale/live10", 1, a, |f| f.p99_us),
        med("scale/live100000", 1, a, |f| f.p99_us),
    ) {
        line(hi / lo <= 2.0, format!("scale: create/destroy p99 {hi:.1} us at 100k live vs {lo:.1} us at 10 = {:.2}x (goal <= 2x)", hi / lo));
    }
    if let (Some(lo), Some(hi)) = (
        med("scale/purge/live1000", 1, "machine", |f| f.p50_us),
        med("scale/purge/live1000000", 1, "machine", |f| f.p50_us),
    ) {
        line(hi / lo <= 2.0 * 1000.0, format!("scale/purge: purging 1 % at 1M live took {hi:.0} us vs {lo:.0} us at 1k; per purged object {:.2}x (goal <= 2x)", (hi / 1000.0) / lo));
    }
}
