#!/usr/bin/env bash
# The real-VM test: installs QEMU 10 if missing and QEMU 11.1 in a private
# tree (cached in ~/.cache/vgpu), builds the static guest test program and
# the guest image, builds the daemon and the runner, then boots guests
# under QEMU (TCG) against vgpu: twice under QEMU 10's vhost-user-gpu-pci
# (display channel, screendump, reconnect), once under QEMU 11.1's generic
# vhost-user device (blobs, native contexts, host-visible memory: every
# subtest must pass, none may skip; the screen is checked in the daemon's
# own screenshot), and once each against vgpu and QEMU's own C backend for
# the ops/s ratio. Prints every result; exits non-zero on any failure,
# after printing the guest's serial log and the daemon's log.
#
#   integration/run-vm.sh            # debug build (what CI uses after cargo test)
#   PROFILE=release integration/run-vm.sh   # release build (for figures)
#
# Extra arguments go to vgpu-vm-test (e.g. --loop-ms 5000).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${PROFILE:-debug}"
case "$profile" in
    debug) profile_flag=() ;;
    release) profile_flag=(--release) ;;
    *) echo "run-vm.sh: PROFILE must be debug or release" >&2; exit 2 ;;
esac

log() { echo "run-vm.sh: $*" >&2; }

integration/install-qemu.sh --qemu10
qemu11=$(integration/install-qemu.sh --qemu11)

log "building the guest test program and the guest image"
mapfile -t image < <(integration/build-guest-image.sh --guest-test)
[ "${#image[@]}" -eq 2 ] || { log "building the guest image failed"; exit 1; }
kernel="${image[0]}"
initrd="${image[1]}"

log "building the daemon and the runner ($profile)"
cargo build --quiet "${profile_flag[@]}" -p vgpu-device -p vgpu-tests --bins

compare=()
if [ -x /usr/lib/qemu/vhost-user-gpu ]; then
    compare=(--compare /usr/lib/qemu/vhost-user-gpu)
else
    log "no /usr/lib/qemu/vhost-user-gpu: skipping the comparison"
fi

exec "target/$profile/vgpu-vm-test" \
    --kernel "$kernel" --initrd "$initrd" \
    --daemon "target/$profile/vhost-user-vgpu" \
    --qemu11 "$qemu11" \
    "${compare[@]}" "$@"
