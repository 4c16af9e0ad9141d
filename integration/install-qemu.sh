#!/usr/bin/env bash
# Installs QEMU 10 (Debian bookworm-backports) if qemu-system-x86_64 is
# missing or older than 10: the VMM the real-VM tests attach vgpu to, and
# QEMU's own C vhost-user-gpu backend (/usr/lib/qemu/vhost-user-gpu), the
# baseline of the benchmarks. Idempotent; needs root and Debian's mirrors.
set -euo pipefail

have_qemu10() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    local v
    v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [ "${v:-0}" -ge 10 ] && [ -x /usr/lib/qemu/vhost-user-gpu ]
}

if have_qemu10; then
    echo "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') is installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-qemu.sh: QEMU 10 is missing and installing it needs root" >&2
    exit 1
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "adding ${codename}-backports to apt sources"
    cat > /etc/apt/sources.list.d/vgpu-backports.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
bp="${codename}-backports"
apt-get install -y -qq --no-install-recommends \
    "qemu-system-x86/${bp}" "qemu-system-gui/${bp}" "qemu-system-common/${bp}" \
    "qemu-system-data/${bp}" "seabios/${bp}" "qemu-system-modules-opengl/${bp}" >/dev/null
have_qemu10 || { echo "install-qemu.sh: QEMU 10 still missing after install" >&2; exit 1; }
echo "installed $(qemu-system-x86_64 --version | head -1)"
