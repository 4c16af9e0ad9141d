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

#[test]
fn the_readme_shows_the_shipped_socket_unit_and_package_paths() {
    let readme = repo("README.md");
    let socket = repo("dist/systemd/vgpu@.socket");
    assert!(
        readme.contains(&socket),
        "README's socket unit differs from dist/systemd/vgpu@.socket: copy the file into README"
    );
    let build = repo("dist/debian/build-deb.sh");
    for path in [
        "/usr/libexec/vhost-user-vgpu",
        "/usr/bin/vgpuctl",
        "/usr/share/qemu/vhost-user/40-vgpu.json",
    ] {
        assert!(build.contains(path), "build-deb.sh installs {path}");
        assert!(readme.contains(path), "README names {path}");
    }
}
