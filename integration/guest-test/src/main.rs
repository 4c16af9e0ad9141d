//! `vgpu-guest-test`: runs inside the guest, from the initramfs's /init.
//! See the library docs for the output format.

mod card;
mod console;
mod report;
mod subtests;
mod uapi;

use std::time::Duration;

use card::Card;
use report::{Outcome, Report};
use vgpu_guest_test::protocol::{LOOP_START, SCREEN_READY};

/// A `vgpu.NAME=VALUE` kernel parameter.
fn cmdline_param(name: &str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    let key = format!("vgpu.{name}=");
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&key).map(str::to_string))
}

fn millis(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        cmdline_param(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn main() {
    let mut report = Report::default();
    let card = match Card::open() {
        Ok(c) => c,
        Err(e) => {
            report.record("open", Outcome::Fail(format!("/dev/dri/card0: {e}")));
            std::process::exit(report.finish());
        }
    };
    if cmdline_param("mode").as_deref() == Some("bench") {
        // The benchmark boot: only the two timed loops, nothing that waits
        // for the host.
        let iterations = cmdline_param("dirtyfb_n")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000u32)
            .max(1);
        println!("{LOOP_START} dirtyfb-loop");
        report.record(
            "dirtyfb-loop",
            subtests::bench::dirtyfb_loop(&card, iterations),
        );
        println!("{LOOP_START} timed-loop");
        report.record(
            "timed-loop",
            subtests::timed::timed_loop(&card, millis("loop_ms", 3000)),
        );
        std::process::exit(report.finish());
    }
    let (params, outcome) = subtests::params::getparams(&card);
    report.record("getparams", outcome);
    report.record("capsets", subtests::params::capsets(&card, &params));

    let shown = subtests::kms::modeset(&card);
    report.record("kms-modeset", subtests::kms::outcome(&shown));
    if let Ok(s) = &shown {
        let marker = format!("{SCREEN_READY} {}x{}", s.size.0, s.size.1);
        match console::ask(&marker, millis("screen_wait_ms", 60_000)) {
            Ok(Some(_)) => {}
            Ok(None) => println!("vgpu-guest: no answer from the host after the modeset; going on"),
            Err(e) => println!("vgpu-guest: reading the host's answer failed: {e}"),
        }
    }
    drop(shown);

    report.record(
        "timed-loop",
        subtests::timed::timed_loop(&card, millis("loop_ms", 3000)),
    );
    report.record(
        "transfer-round-trip",
        subtests::timed::round_trip(&card, params.get(1) != 0),
    );
    for (name, outcome) in subtests::native::run(&card, &params, millis("purge_wait_ms", 60_000)) {
        report.record(name, outcome);
    }
    std::process::exit(report.finish());
}
