//! `vgpu-dist`: writes the man pages and shell completions the package
//! ships, from the same clap definitions the binaries parse with, so they
//! cannot drift from `--help`.
//!
//! ```text
//! vgpu-dist man DIR          # DIR/vhost-user-vgpu.1, DIR/vgpuctl.1, DIR/vgpuctl-<sub>.1
//! vgpu-dist completions DIR  # DIR/vgpuctl.bash, DIR/_vgpuctl, DIR/vgpuctl.fish
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

/// Make the package's man pages and shell completions.
#[derive(Debug, Parser)]
#[command(name = "vgpu-dist")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Man pages (section 1): the daemon, vgpuctl and each vgpuctl subcommand.
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
    /// vgpuctl's bash, zsh and fish completions.
    Completions {
        /// Where to write them.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let done = match &args.what {
        What::Man { dir } => man_pages(dir),
        What::Completions { dir } => completions(dir),
    };
    match done {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vgpu-dist: {e}");
            ExitCode::FAILURE
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// One page per program and per vgpuctl subcommand (`vgpuctl-stats(1)`
/// and so on, as git and cargo name theirs).
fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    create_dir(dir)?;
    let mut written = Vec::new();
    let daemon = vgpu_device::cli::Cli::command();
    written.push(man_page(dir, daemon, "vhost-user-vgpu")?);
    let ctl = vgpu_device::ctl_cli::Args::command();
    for sub in ctl.get_subcommands() {
        let name = format!("vgpuctl-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("vgpuctl {}", sub.get_name()));
        written.push(man_page(dir, page, &name)?);
    }
    written.push(man_page(dir, ctl, "vgpuctl")?);
    Ok(written)
}

fn man_page(dir: &Path, cmd: clap::Command, name: &str) -> Result<PathBuf, String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(name.to_string())
        .render(&mut out)
        .map_err(|e| format!("rendering {name}(1): {e}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// vgpuctl's completions (the daemon lives in /usr/libexec, off PATH).
fn completions(dir: &Path) -> Result<Vec<PathBuf>, String> {
    create_dir(dir)?;
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = vgpu_device::ctl_cli::Args::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "vgpuctl", dir)
            .map_err(|e| format!("{shell} completions: {e}"))?;
        written.push(path);
    }
    Ok(written)
}
