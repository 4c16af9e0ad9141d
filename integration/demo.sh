#!/usr/bin/env bash
# The one-command demo: starts the vgpu daemon on the emulated device,
# boots a small Linux guest under QEMU whose virtio-gpu is vgpu, shows what
# the guest's test program sees and what the host holds (vgpuctl stats),
# and explains what happened. Needs root for the first run (installs QEMU
# 10 from Debian backports) and downloads a Debian kernel package once
# (cached in ~/.cache/vgpu). About a minute after the first build.
set -euo pipefail
cd "$(dirname "$0")/.."

integration/install-qemu.sh --qemu10 >/dev/null
echo "demo: building (the first time takes a few minutes)"
mapfile -t image < <(integration/build-guest-image.sh --guest-test 2>/dev/null)
[ "${#image[@]}" -eq 2 ] || { echo "demo.sh: building the guest image failed (rerun integration/build-guest-image.sh --guest-test to see why)" >&2; exit 1; }
cargo build --quiet --release -p vgpu-device -p vgpu-tests --bins

out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
target/release/vgpu-vm-test --demo --loop-ms 1000 \
    --kernel "${image[0]}" --initrd "${image[1]}" --daemon target/release/vhost-user-vgpu \
    | tee "$out"
status=${PIPESTATUS[0]}
set -e

# What happened: only the steps this run's output shows.
saw() { grep -qE "$1" "$out"; }
echo
echo "What happened:"
if saw 'vgpuctl --socket'; then
    echo " * vhost-user-vgpu started on the emulated device (256 MiB of emulated"
    echo "   device-local memory, blob buffers in per-object memfds) and listened on a"
    echo "   vhost-user socket, with its admin socket beside it."
fi
if saw '^guest\| '; then
    echo " * QEMU started a VM with \`-device vhost-user-gpu-pci\` and handed vgpu the"
    echo "   GPU's virtqueues and the guest's memory (memfd, shared); the guest's"
    echo "   Linux virtio-gpu driver probed vgpu and the guest test program ran."
fi
saw '^guest\| PASS getparams' && echo " * It read the driver's parameters (GETPARAM)."
saw 'PASS screendump' && echo " * It scanned out an eight-bar pattern, which this script found in QEMU's screendump."
saw '^guest\| PASS timed-loop' && echo " * It ran a timed loop of buffer create / map / write / transfer / destroy."
saw '^guest\| PASS transfer-round-trip' && echo " * It round-tripped data through the host (TRANSFER_TO_HOST, then FROM_HOST)."
if saw '^guest\| SKIP (blob|native)'; then
    echo " * The blob and native-context subtests SKIPped: stock QEMU 10's"
    echo "   vhost-user-gpu-pci does not forward blobs or context init (QEMU 11.1's"
    echo "   generic vhost-user device and crosvm do; integration/run-vm.sh runs them)."
fi
saw 'vm1' && echo " * vgpuctl showed the VM (\"vm1\") and its buffers while it ran."
if [ "$status" -eq 0 ]; then
    echo " * When the guest powered off, vgpu freed everything the VM held and waited"
    echo "   for the next VM."
else
    echo " * The run did not finish cleanly (exit status $status): the output above says"
    echo "   which step failed."
fi
echo "Run the full check with integration/run-vm.sh; see README for operating vgpu."
exit $status
