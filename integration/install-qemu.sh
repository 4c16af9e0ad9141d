#!/usr/bin/env bash
# Provides the two VMMs the real-VM tests attach vgpu to, both cached:
#
# * QEMU 10 (Debian bookworm-backports), installed as a system package if
#   qemu-system-x86_64 is missing or older than 10: `vhost-user-gpu-pci`
#   with the display channel, and QEMU's own C vhost-user-gpu backend
#   (/usr/lib/qemu/vhost-user-gpu), the baseline of the benchmarks.
# * QEMU 11.1 (Debian trixie-backports) in a private tree, without touching
#   the host's packages: its generic `vhost-user-test-device-pci` forwards
#   every virtio-gpu feature (blobs, context init) and the vhost-user
#   shared-memory region. The debs (qemu-system-x86 and its ~90 trixie
#   dependencies, libc6 included) are fetched with a private apt state and
#   unpacked with dpkg-deb into ${VGPU_CACHE:-~/.cache/vgpu}/qemu-11.1; a
#   wrapper runs it with that tree's own dynamic loader and libraries.
#
#   integration/install-qemu.sh            # both; prints the QEMU 11.1 wrapper's path
#   integration/install-qemu.sh --qemu10   # only QEMU 10
#   integration/install-qemu.sh --qemu11   # only QEMU 11.1
#
# Idempotent. QEMU 10 needs root; both need Debian's mirrors, and a mirror
# that cannot be reached is named in the error.
set -euo pipefail

want10=1
want11=1
case "${1:-}" in
    --qemu10) want11=0 ;;
    --qemu11) want10=0 ;;
    "") ;;
    *) echo "install-qemu.sh: unknown argument $1 (--qemu10, --qemu11)" >&2; exit 2 ;;
esac

log() { echo "install-qemu.sh: $*" >&2; }
die() { log "$*"; exit 1; }

mirror="${VGPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

have_qemu10() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    local v
    v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [ "${v:-0}" -ge 10 ] && [ -x /usr/lib/qemu/vhost-user-gpu ]
}

install_qemu10() {
    if have_qemu10; then
        log "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') is installed"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "QEMU 10 is missing and installing it needs root"
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding ${codename}-backports to apt sources"
        cat > /etc/apt/sources.list.d/vgpu-backports.sources <<SRC
Types: deb
URIs: ${mirror}
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed: is ${mirror} reachable?"
    local bp="${codename}-backports"
    apt-get install -y -qq --no-install-recommends \
        "qemu-system-x86/${bp}" "qemu-system-gui/${bp}" "qemu-system-common/${bp}" \
        "qemu-system-data/${bp}" "seabios/${bp}" "qemu-system-modules-opengl/${bp}" >/dev/null \
        || die "installing QEMU 10 from ${bp} failed"
    have_qemu10 || die "QEMU 10 still missing after install"
    log "installed $(qemu-system-x86_64 --version | head -1)"
}

install_qemu11() {
    local dir="${VGPU_CACHE:-$HOME/.cache/vgpu}/qemu-11.1"
    local wrapper="$dir/bin/qemu-system-x86_64"
    if [ -x "$wrapper" ] && case "$("$wrapper" --version 2>/dev/null)" in *"version 11.1"*) true ;; *) false ;; esac; then
        log "QEMU 11.1 is cached: $wrapper"
        echo "$wrapper"
        return
    fi
    local apt="$dir/apt"
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp/apt/state/lists/partial" "$dir.tmp/apt/cache/archives/partial" "$dir.tmp/root" "$dir.tmp/bin"
    touch "$dir.tmp/apt/state/status"
    printf 'deb %s trixie main\ndeb %s trixie-backports main\n' "$mirror" "$mirror" \
        > "$dir.tmp/apt/sources.list"
    # Trixie's archive key is in bookworm's debian-archive-keyring (the
    # host's trusted keys); everything else is private.
    local opts=(
        -o "Dir::State=$dir.tmp/apt/state"
        -o "Dir::State::status=$dir.tmp/apt/state/status"
        -o "Dir::Cache=$dir.tmp/apt/cache"
        -o "Dir::Etc::SourceList=$dir.tmp/apt/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=/dev/null"
        -o "Debug::NoLocking=1"
        -o "Acquire::Languages=none"
        -o "APT::Sandbox::User=root"
    )
    log "fetching trixie's package lists into a private apt state"
    apt-get "${opts[@]}" -qq update \
        || die "apt-get update of trixie and trixie-backports failed: is ${mirror} reachable?"
    log "downloading QEMU 11.1 (trixie-backports) and its trixie libraries"
    apt-get "${opts[@]}" -qq -y --download-only --no-install-recommends \
        -t trixie-backports install qemu-system-x86 >/dev/null \
        || die "downloading qemu-system-x86 from trixie-backports failed (${mirror})"
    local n=0
    for deb in "$dir.tmp"/apt/cache/archives/*.deb; do
        dpkg-deb -x "$deb" "$dir.tmp/root" || die "unpacking $(basename "$deb") failed"
        n=$((n + 1))
    done
    local root="$dir/root"
    cat > "$dir.tmp/bin/qemu-system-x86_64" <<WRAP
#!/bin/sh
# QEMU 11.1 from a private tree (integration/install-qemu.sh).
root="$root"
export QEMU_MODULE_DIR="\$root/usr/lib/x86_64-linux-gnu/qemu"
exec "\$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \\
    --library-path "\$root/usr/lib/x86_64-linux-gnu" \\
    "\$root/usr/bin/qemu-system-x86_64" -L "\$root/usr/share/qemu" -L "\$root/usr/share/seabios" "\$@"
WRAP
    chmod +x "$dir.tmp/bin/qemu-system-x86_64"
    rm -rf "$dir.tmp/apt/cache/archives"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    local version devices
    version=$("$wrapper" --version 2>&1 || true)
    case "$version" in
        *"version 11.1"*) ;;
        *) die "the unpacked QEMU does not run: $(echo "$version" | head -3)" ;;
    esac
    devices=$("$wrapper" -device vhost-user-test-device-pci,help 2>&1 || true)
    case "$devices" in
        *virtio-id=*) ;;
        *) die "QEMU 11.1 has no vhost-user-test-device-pci: $(echo "$devices" | head -3)" ;;
    esac
    log "QEMU 11.1 ready ($n packages unpacked): $wrapper"
    echo "$wrapper"
}

[ "$want10" -eq 0 ] || install_qemu10
[ "$want11" -eq 0 ] || install_qemu11
