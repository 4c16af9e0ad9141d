//! `vgpu-squeeze`: the pressure monitor of the real daemon under a real
//! memory squeeze on this host: how fast it gives memory back, and what
//! that spares everyone else. See `vgpu_tests::squeeze` for the scenarios
//! and BENCHMARKS.md for the figures.
//!
//! Needs root; the cgroup scenarios need a cgroup-v1 memory controller (or,
//! for `v2`, a cgroup-v2 one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use vgpu_tests::squeeze::{self, cgroup, Options, Scenario};

/// Squeezes memory around the vgpu daemon, with and without its pressure
/// monitor, and reports onset → purged for every run and a summary.
#[derive(Debug, Parser)]
#[command(name = "vgpu-squeeze")]
struct Cli {
    /// How many times each scenario runs (each run: with and without the
    /// monitor).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Scenarios (repeat or comma-separate): cgroup, persist, v2, host.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cgroup")]
    scenario: Vec<Scenario>,
    /// The cgroup's hard limit.
    #[arg(long, default_value = "768M", value_parser = vgpu_device::cli::parse_size)]
    limit: u64,
    /// DONTNEED bytes the daemon holds.
    #[arg(long, default_value = "384M", value_parser = vgpu_device::cli::parse_size)]
    purgeable: u64,
    /// WILLNEED bytes the daemon holds.
    #[arg(long, default_value = "128M", value_parser = vgpu_device::cli::parse_size)]
    willneed: u64,
    /// The page-cache readers' file (persist: at least 1.5 × the limit).
    #[arg(long, default_value = "512M", value_parser = vgpu_device::cli::parse_size)]
    hog_file: u64,
    /// Page-cache readers.
    #[arg(long, default_value_t = 2)]
    hogs: u64,
    /// Seconds each squeeze lasts.
    #[arg(long = "squeeze-s", default_value_t = 10)]
    squeeze_s: u64,
    /// PSI trigger for the daemon (its default otherwise).
    #[arg(long)]
    trigger: Option<String>,
    /// The host scenario's low watermark (default: the daemon's, 5 % of RAM).
    #[arg(long, value_parser = vgpu_device::cli::parse_size)]
    host_watermark: Option<u64>,
    /// An extra argument for the daemon with its monitor (repeat for more),
    /// e.g. `--daemon-arg=--cgroup-watermark --daemon-arg=0`.
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    daemon_args: Vec<String>,
    /// Print the summaries as one JSON line each (`RESULT {...}`).
    #[arg(long)]
    json: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Hog modes, started by the scenarios themselves.
    let hog = match args.get(1).map(String::as_str) {
        Some("--hog") if args.len() == 5 => Some(squeeze::hog_read(
            Path::new(&args[2]),
            Path::new(&args[3]),
            Path::new(&args[4]),
        )),
        Some("--fill") if args.len() == 4 => Some(match args[2].parse() {
            Ok(w) => squeeze::hog_fill(w, Path::new(&args[3])),
            Err(_) => Err(std::io::Error::other("--fill needs a byte count")),
        }),
        _ => None,
    };
    if let Some(result) = hog {
        if let Err(e) = result {
            eprintln!("vgpu-squeeze hog: {e}");
            std::process::exit(1);
        }
        return;
    }
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("vgpu-squeeze: {e}");
        std::process::exit(1);
    }
}

fn sibling(name: &str) -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| std::io::Error::other("no exe dir"))?;
    let p = dir.join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(std::io::Error::other(format!(
            "{} not found: build it (cargo build --release -p vgpu-device)",
            p.display()
        )))
    }
}

fn run(cli: &Cli) -> std::io::Result<()> {
    if cli.runs == 0 {
        return Err(std::io::Error::other("--runs must be at least 1"));
    }
    let work = std::env::temp_dir().join(format!("vgpu-squeeze-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let o = Options {
        daemon: sibling("vhost-user-vgpu")?,
        hog_binary: std::env::current_exe()?,
        work: work.clone(),
        limit: cli.limit,
        purgeable: cli.purgeable,
        willneed: cli.willneed,
        hog_file: cli.hog_file,
        hogs: cli.hogs,
        squeeze: Duration::from_secs(cli.squeeze_s),
        trigger: cli.trigger.clone(),
        host_watermark: cli.host_watermark,
        daemon_args: cli.daemon_args.clone(),
    };
    if !o.daemon_args.is_empty() {
        println!(
            "daemon with its monitor runs with: {}",
            o.daemon_args.join(" ")
        );
    }
    println!(
        "squeeze: cgroup limit {} MiB, daemon holds {} MiB DONTNEED + {} MiB WILLNEED, {} readers of a {} MiB file, {} s per squeeze, {} run(s)",
        o.limit >> 20,
        o.purgeable >> 20,
        o.willneed >> 20,
        o.hogs,
        o.hog_file >> 20,
        cli.squeeze_s,
        cli.runs
    );
    let mut summaries = Vec::new();
    for &scenario in &cli.scenario {
        let missing = match scenario {
            Scenario::V2 => cgroup::v2_unavailable(),
            Scenario::Host => None,
            _ => (!Path::new(cgroup::V1_MEMORY)
                .join("memory.limit_in_bytes")
                .exists())
            .then(|| format!("no cgroup-v1 memory controller at {}", cgroup::V1_MEMORY)),
        };
        if let Some(why) = missing {
            println!("\nscenario {} not run: {why}", scenario.name());
            continue;
        }
        let mut runs = Vec::new();
        for i in 0..cli.runs {
            println!("\n#### {} run {} of {}", scenario.name(), i + 1, cli.runs);
            runs.push(squeeze::run(&o, scenario)?);
        }
        let s = squeeze::summarize(scenario, &runs);
        squeeze::print_summary(&s);
        summaries.push(s);
    }
    if cli.json {
        for s in &summaries {
            println!(
                "RESULT {}",
                serde_json::to_string(s).map_err(std::io::Error::other)?
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
