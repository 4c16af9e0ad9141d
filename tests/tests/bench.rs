//! `vgpu-bench --smoke`: every scenario runs for a few milliseconds against
//! the real daemon binary, and every result line parses. Asserts nothing
//! about speed (that is BENCHMARKS.md's business).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::process::Command;

#[test]
fn every_scenario_completes_and_its_result_parses() {
    let daemon = vgpu_tests::backend::daemon_binary().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bench"))
        .arg("--smoke")
        .arg("--daemon")
        .arg(&daemon)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    let names: Vec<&str> = results
        .iter()
        .filter_map(|r| r["scenario"].as_str())
        .collect();
    for want in [
        "2d-cycle/64x64",
        "2d-cycle/1920x1080",
        "transfer/1920x1080",
        "flush/1920x1080",
        "blob-cycle/host3d/4K",
        "blob-cycle/host3d/64M",
        "gem/batch63",
        "scale/live100000",
        "limit/memcpy/1920x1080",
        "limit/punch/1M",
        "scale/purge/live10000",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in &results {
        assert!(r["not_run"].is_null(), "{r}");
        assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(
            r["p99_us"].as_f64().unwrap() >= r["p50_us"].as_f64().unwrap(),
            "{r}"
        );
    }
    assert!(stdout.contains("SUMMARY"));
}
