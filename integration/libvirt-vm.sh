#!/usr/bin/env bash
# The libvirt test: installs Debian's libvirt QEMU driver if missing,
# builds the guest image and the runner, then boots the guest through a
# private session-mode libvirt that finds vgpu through its vhost-user
# descriptor and starts it itself (tests/src/bin/vgpu-libvirt-test.rs).
#
#   integration/libvirt-vm.sh                 # the installed package's vgpu
#   integration/libvirt-vm.sh --daemon PATH   # a build tree's daemon instead
#
# Root: libvirt, QEMU and vgpu then run as nobody. Extra arguments go to
# vgpu-libvirt-test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "libvirt-vm.sh: $*" >&2; }

integration/install-qemu.sh --qemu10
if ! command -v virsh >/dev/null 2>&1 || \
    { [ ! -x /usr/sbin/virtqemud ] && [ ! -x /usr/sbin/libvirtd ]; }; then
    log "installing libvirt's QEMU driver (Debian packages)"
    apt-get install -y -qq --no-install-recommends \
        libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients >/dev/null; }
fi
log "$(dpkg-query -W -f '${Package} ${Version}\n' libvirt-daemon-driver-qemu libvirt-clients | tr '\n' ' ')"

log "building the guest test program and the guest image"
mapfile -t image < <(integration/build-guest-image.sh --guest-test)
[ "${#image[@]}" -eq 2 ] || { log "building the guest image failed"; exit 1; }

log "building the runner"
cargo build --quiet -p vgpu-tests --bin vgpu-libvirt-test

exec target/debug/vgpu-libvirt-test --kernel "${image[0]}" --initrd "${image[1]}" "$@"
