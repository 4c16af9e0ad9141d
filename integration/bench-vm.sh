#!/usr/bin/env bash
# The real-guest benchmark in one command: installs both QEMUs if missing,
# builds the static guest test program and the guest image, builds vgpu and
# the runner (release), then boots the guest in its benchmark mode against
# QEMU's C backend, vgpu --no-virgl and vgpu's default under QEMU 10's
# vhost-user-gpu-pci, and vgpu under QEMU 11.1's generic device, round after
# round (interleaved). Prints a RESULT line per run, RATIO lines (median of
# the per-round ratios, with their spread) and GOAL lines. About 1 minute
# per round and backend. Not part of CI (too slow, and timing on shared
# machines needs rounds).
#
#   integration/bench-vm.sh                 # 3 rounds
#   integration/bench-vm.sh --rounds 5 --only no-virgl --only qemu
#
# Extra arguments go to vgpu-guest-bench (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "bench-vm.sh: $*" >&2; }

integration/install-qemu.sh --qemu10
qemu11=$(integration/install-qemu.sh --qemu11)
[ -x /usr/lib/qemu/vhost-user-gpu ] || { log "no /usr/lib/qemu/vhost-user-gpu (the baseline; package qemu-system-gui)"; exit 1; }

log "building the guest test program and the guest image"
mapfile -t image < <(integration/build-guest-image.sh --guest-test)
[ "${#image[@]}" -eq 2 ] || { log "building the guest image failed"; exit 1; }

log "building the daemon and the runner (release)"
cargo build --quiet --release -p vgpu-device -p vgpu-tests --bins

exec target/release/vgpu-guest-bench \
    --kernel "${image[0]}" --initrd "${image[1]}" \
    --daemon target/release/vhost-user-vgpu \
    --vs /usr/lib/qemu/vhost-user-gpu \
    --qemu11 "$qemu11" "$@"
