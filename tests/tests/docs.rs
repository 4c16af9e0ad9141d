//! What README shows is what the repository ships.

#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::path::Path;

fn repo(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap()
}

#[test]
fn the_readme_shows_the_shipped_systemd_unit() {
    let unit = repo("dist/systemd/vgpu@.service");
    let readme = repo("README.md");
    assert!(
        readme.contains(&unit),
        "README's systemd block differs from dist/systemd/vgpu@.service: copy the file into README"
    );
    for line in [
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
}
