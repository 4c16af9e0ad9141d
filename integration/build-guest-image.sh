#!/usr/bin/env bash
# Builds the guest the real-VM tests boot: a Debian 6.12 kernel and an
# initramfs holding busybox, the virtio-gpu module chain (resolved from the
# modules' own `depends=` metadata; the host has no kmod) and, if given, a
# guest program that /init runs before powering off.
#
#   build-guest-image.sh [GUEST_PROGRAM]
#   build-guest-image.sh --guest-test   # builds the repository's static
#                                       # vgpu-guest-test first and uses it
#
# Everything downloaded is cached outside the repository in
# ${VGPU_CACHE:-$HOME/.cache/vgpu}; rerunning is cheap and idempotent. Only
# Debian's package mirrors are used. Prints the kernel and initramfs paths.
set -euo pipefail

guest_program=""
if [ "${1:-}" = "--guest-test" ]; then
    repo=$(cd "$(dirname "$0")/.." && pwd)
    echo "build-guest-image: building the static guest test program" >&2
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
        cargo build --quiet --release -p vgpu-guest-test --target x86_64-unknown-linux-gnu)
    guest_program="$repo/target/x86_64-unknown-linux-gnu/release/vgpu-guest-test"
elif [ "${1:-}" != "" ]; then
    [ -f "$1" ] || { echo "build-guest-image: no guest program at $1" >&2; exit 1; }
    guest_program=$(realpath "$1")
fi
cache="${VGPU_CACHE:-$HOME/.cache/vgpu}/guest"
mkdir -p "$cache"
cd "$cache"

log() { echo "build-guest-image: $*" >&2; }

# 1. The kernel package (newest 6.12 amd64 the mirrors have), cached.
if [ ! -f kernel.deb ]; then
    find_kernel() {
        apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$' \
            | awk '{print $1}' | sort -V | tail -1
    }
    pkg=$(find_kernel)
    if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
        log "no linux-image-6.12 package in apt's lists: running apt-get update"
        apt-get update -qq >/dev/null
        pkg=$(find_kernel)
    fi
    [ -n "$pkg" ] || { log "no linux-image-6.12.*-amd64 package in apt's lists (run apt-get update as root)"; exit 1; }
    log "downloading $pkg"
    rm -rf dl && mkdir dl && (cd dl && apt-get download "$pkg" >/dev/null)
    mv dl/*.deb kernel.deb && rmdir dl
fi
if [ ! -d kernel ]; then
    rm -rf kernel.tmp && mkdir kernel.tmp && dpkg-deb -x kernel.deb kernel.tmp && mv kernel.tmp kernel
fi
vmlinuz=$(ls kernel/boot/vmlinuz-* | head -1)
kver=$(basename "$vmlinuz" | sed 's/^vmlinuz-//')
moddir="kernel/lib/modules/$kver"

# 2. busybox-static, cached.
if [ ! -x busybox ]; then
    log "downloading busybox-static"
    rm -rf bb && mkdir bb && (cd bb && apt-get download busybox-static >/dev/null && dpkg-deb -x ./*.deb x)
    cp bb/x/bin/busybox busybox && rm -rf bb
fi

# 3. The module chain, dependencies first.
chain=$(python3 - "$moddir" <<'PY'
import lzma, os, re, sys
root = sys.argv[1]
paths = {}
for d, _, files in os.walk(os.path.join(root, "kernel")):
    for f in files:
        if f.endswith((".ko", ".ko.xz")):
            name = f.split(".ko")[0].replace("-", "_")
            paths[name] = os.path.join(d, f)
def deps(name):
    data = open(paths[name], "rb").read()
    if paths[name].endswith(".xz"):
        data = lzma.decompress(data)
    m = re.search(rb"depends=([^\x00]*)\x00", data)
    return [x.decode().replace("-", "_") for x in (m.group(1).split(b",") if m else []) if x]
order, seen = [], set()
def visit(n):
    if n in seen:
        return
    seen.add(n)
    if n not in paths:
        sys.exit(f"module {n} is not in {root}")
    for d in deps(n):
        visit(d)
    order.append(n)
for want in ["virtio_gpu"]:
    visit(want)
print("\n".join(f"{n} {paths[n]}" for n in order))
PY
)

# 4. The initramfs tree.
rm -rf initramfs && mkdir -p initramfs/bin initramfs/lib/modules initramfs/proc initramfs/sys initramfs/dev initramfs/tmp
cp busybox initramfs/bin/busybox
: > initramfs/modules.order
while read -r name path; do
    case "$path" in
        *.xz) python3 -c 'import lzma,sys; open(sys.argv[2],"wb").write(lzma.decompress(open(sys.argv[1],"rb").read()))' \
                  "$path" "initramfs/lib/modules/$name.ko" ;;
        *) cp "$path" "initramfs/lib/modules/$name.ko" ;;
    esac
    echo "$name" >> initramfs/modules.order
done <<< "$chain"
log "module chain: $(tr '\n' ' ' < initramfs/modules.order)"

if [ -n "$guest_program" ]; then
    cp "$guest_program" initramfs/guest-test
    chmod +x initramfs/guest-test
fi

cat > initramfs/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "vgpu-guest: kernel $(uname -r)"
for m in $(cat /modules.order); do
    insmod /lib/modules/$m.ko || echo "vgpu-guest: insmod $m failed"
done
# Wait (bounded) for the DRM device of virtio-gpu to appear.
i=0
while [ ! -e /dev/dri/card0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e /dev/dri/card0 ]; then
    echo "vgpu-guest: virtio-gpu probed: $(ls /dev/dri | tr '\n' ' ')"
else
    echo "vgpu-guest: FAIL no /dev/dri/card0"
fi
for arg in $(cat /proc/cmdline); do
    case "$arg" in vgpu.hold=*) hold=${arg#vgpu.hold=} ;; esac
done
if [ -x /guest-test ]; then
    /guest-test
    echo "vgpu-guest: guest-test exited with $?"
fi
sleep "${hold:-0}"
echo "vgpu-guest: powering off"
poweroff -f
INIT
chmod +x initramfs/init

(cd initramfs && find . | ../busybox cpio -o -H newc 2>/dev/null) | gzip -1 > initramfs.cpio.gz
echo "$cache/$vmlinuz"
echo "$cache/initramfs.cpio.gz"
