#!/usr/bin/env bash
# Builds the Debian package: target/debian/vgpu_<version>_<arch>.deb, and
# prints its path. No packaging tool beyond dpkg-deb (and dpkg-shlibdeps
# when dpkg-dev is there): the package is plain files.
#
#   /usr/libexec/vhost-user-vgpu                  the daemon (vhost-user naming convention)
#   /usr/bin/vgpuctl                              the admin CLI
#   /usr/share/qemu/vhost-user/40-vgpu.json       how QEMU/libvirt find the daemon
#   /usr/lib/systemd/system/vgpu@.service, vgpu@.socket   one daemon per VM, socket-activated
#   /usr/lib/systemd/system/vgpu-metrics.{service,timer}  node_exporter textfile
#   /usr/lib/tmpfiles.d/vgpu.conf                 /run/vgpu
#   /usr/share/man/man1/*.1.gz                    from the clap definitions (vgpu-dist)
#   bash, zsh and fish completions for vgpuctl
#
#   dist/debian/build-deb.sh            # release build, then the package
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { echo "build-deb.sh: $*" >&2; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { log "no version in Cargo.toml's [workspace.package]"; exit 1; }

log "building the release binaries"
cargo build --quiet --release -p vgpu-device --bins -p vgpu-dist

out=target/debian
root="$out/vgpu_${version}_${arch}"
rm -rf "$root"
mkdir -p "$root/DEBIAN"

install -D -m 0755 target/release/vhost-user-vgpu "$root/usr/libexec/vhost-user-vgpu"
install -D -m 0755 target/release/vgpuctl "$root/usr/bin/vgpuctl"
strip --strip-unneeded "$root/usr/libexec/vhost-user-vgpu" "$root/usr/bin/vgpuctl"

# The vhost-user backend descriptor (QEMU's docs/interop/vhost-user.json):
# its type comes from the daemon's own --print-capabilities; QEMU and
# libvirt run --print-capabilities again for the features. Named 40-, not
# the distributions' usual 50-: libvirt takes the first "gpu" descriptor
# in file-name order, and QEMU's own backend (qemu-system-gui, which
# qemu-system-x86 recommends) ships 50-qemu-gpu.json — with 50-vgpu.json
# libvirt would start QEMU's backend, or fail without a render node. An
# admin still overrides either way in /etc/qemu/vhost-user/.
type=$(target/release/vhost-user-vgpu --print-capabilities 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["type"])')
install -d "$root/usr/share/qemu/vhost-user"
cat > "$root/usr/share/qemu/vhost-user/40-vgpu.json" <<JSON
{
  "description": "vgpu: virtio-gpu with host buffer management (emulated device memory without an Intel GPU)",
  "type": "$type",
  "binary": "/usr/libexec/vhost-user-vgpu"
}
JSON

for unit in vgpu@.service vgpu@.socket vgpu-metrics.service vgpu-metrics.timer; do
    install -D -m 0644 "dist/systemd/$unit" "$root/usr/lib/systemd/system/$unit"
done
install -D -m 0644 dist/tmpfiles.d/vgpu.conf "$root/usr/lib/tmpfiles.d/vgpu.conf"

target/release/vgpu-dist man "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
comp=$(mktemp -d)
target/release/vgpu-dist completions "$comp" >/dev/null
install -D -m 0644 "$comp/vgpuctl.bash" "$root/usr/share/bash-completion/completions/vgpuctl"
install -D -m 0644 "$comp/_vgpuctl" "$root/usr/share/zsh/vendor-completions/_vgpuctl"
install -D -m 0644 "$comp/vgpuctl.fish" "$root/usr/share/fish/vendor_completions.d/vgpuctl.fish"
rm -rf "$comp"

install -d "$root/usr/share/doc/vgpu"
gzip -9n -c README.md > "$root/usr/share/doc/vgpu/README.md.gz"
install -m 0644 dist/debian/copyright "$root/usr/share/doc/vgpu/copyright"

# Shared-library dependencies, as dh_shlibdeps would find them.
depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    shl=$(mktemp -d)
    mkdir -p "$shl/debian"
    printf 'Source: vgpu\n\nPackage: vgpu\nArchitecture: any\n' > "$shl/debian/control"
    if found=$(cd "$shl" && dpkg-shlibdeps -O "$OLDPWD/$root/usr/libexec/vhost-user-vgpu" \
        "$OLDPWD/$root/usr/bin/vgpuctl" 2>/dev/null); then
        depends=${found#shlibs:Depends=}
    fi
    rm -rf "$shl"
fi

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
    -e "s/@DEPENDS@/$depends/" -e "s/@SIZE@/$installed_kb/" \
    dist/debian/control.in > "$root/DEBIAN/control"
for script in postinst prerm postrm; do
    install -m 0755 "dist/debian/$script" "$root/DEBIAN/$script"
done

deb="$out/vgpu_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
log "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
